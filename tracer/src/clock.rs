//! Converting the kernel's boot-clock timestamps to wall-clock time.

/// Wall-clock time of boot, ns since the Unix epoch: CLOCK_REALTIME - CLOCK_BOOTTIME.
pub fn boot_epoch_ns() -> i128 {
    now(libc::CLOCK_REALTIME) - now(libc::CLOCK_BOOTTIME)
}

/// The boot clock now, ns (the clock event timestamps use).
pub fn boot_now_ns() -> u64 {
    now(libc::CLOCK_BOOTTIME).max(0) as u64
}

fn now(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// Seconds as the C library's `time_t` (64 bits on every 64-bit Linux libc).
#[cfg_attr(
    target_env = "musl",
    expect(deprecated, reason = "the libc crate warns of musl's 32-bit time_t, which 64-bit targets never had")
)]
fn time_t(secs: i128) -> libc::time_t {
    secs as libc::time_t
}

/// Broken-down local time of `epoch_ns`.
fn local(epoch_ns: i128) -> (libc::tm, u32) {
    let secs = time_t(epoch_ns.div_euclid(1_000_000_000));
    let nanos = epoch_ns.rem_euclid(1_000_000_000) as u32;
    // SAFETY: an all-zero tm is valid; localtime_r fills it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to a time_t and a tm we own.
    unsafe { libc::localtime_r(&secs, &mut tm) };
    (tm, nanos)
}

/// Local time's offset from UTC now, seconds.
pub fn utc_offset_s() -> i32 {
    let (tm, _) = local(now(libc::CLOCK_REALTIME));
    tm.tm_gmtoff as i32
}

/// `HH:MM:SS.mmm` local time of a boot-clock timestamp.
pub fn format_time_ms(boot_epoch_ns: i128, ts_ns: u64) -> String {
    let (tm, nanos) = local(boot_epoch_ns + i128::from(ts_ns));
    format!("{:02}:{:02}:{:02}.{:03}", tm.tm_hour, tm.tm_min, tm.tm_sec, nanos / 1_000_000)
}

/// `HH:MM` if today, else `MonDD`, as ps shows START.
pub fn format_start(boot_epoch_ns: i128, ts_ns: u64) -> String {
    let (tm, _) = local(boot_epoch_ns + i128::from(ts_ns));
    let (today, _) = local(now(libc::CLOCK_REALTIME));
    if tm.tm_yday == today.tm_yday && tm.tm_year == today.tm_year {
        format!("{:02}:{:02}", tm.tm_hour, tm.tm_min)
    } else {
        const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
        format!("{}{:02}", MONTHS.get(tm.tm_mon as usize).copied().unwrap_or("???"), tm.tm_mday)
    }
}

/// RFC 3339 UTC time of a boot-clock timestamp, with ns.
pub fn format_rfc3339(boot_epoch_ns: i128, ts_ns: u64) -> String {
    let t = boot_epoch_ns + i128::from(ts_ns);
    let secs = time_t(t.div_euclid(1_000_000_000));
    let nanos = t.rem_euclid(1_000_000_000);
    // SAFETY: as in `local`.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers.
    unsafe { libc::gmtime_r(&secs, &mut tm) };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        nanos
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn boot_epoch_is_in_the_past() {
        let now = super::now(libc::CLOCK_REALTIME);
        let boot = super::boot_epoch_ns();
        assert!(boot > 0 && boot < now, "boot {boot} now {now}");
    }

    #[test]
    fn rfc3339_of_epoch() {
        assert_eq!(super::format_rfc3339(0, 1_500_000_000), "1970-01-01T00:00:01.500000000Z");
    }
}
