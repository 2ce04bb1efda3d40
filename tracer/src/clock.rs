//! The clocks, and the one place that turns the kernel's boot-clock timestamps
//! into wall-clock text.
//!
//! Events carry CLOCK_BOOTTIME ns (it keeps counting through suspend, unlike
//! CLOCK_MONOTONIC); adding the boot epoch (CLOCK_REALTIME - CLOCK_BOOTTIME)
//! gives ns since the Unix epoch. That offset moves when the wall clock is set
//! (NTP's first sync, an admin's `date -s`), so nothing long-lived keeps it: a
//! [`WallMap`] reads it afresh (at most every [`WALL_MAP_REFRESH_NS`]), and a
//! one-shot view reads [`boot_epoch_ns`] once per answer. Every view formats
//! timestamps through the three functions here, so that `tracer ps`,
//! `tracer containers`, the event lines and the container stories agree:
//!
//! - [`format_time_ms`]: `HH:MM:SS.mmm`, local time (event and story lines).
//! - [`format_start`]: START as `ps` shows it (procps' rules): `HH:MM` if it was
//!   today, `MonDD` earlier this year, else the year; local time.
//! - [`format_rfc3339`]: RFC 3339 UTC with ns, `2026-05-19T22:00:00.000000001Z`
//!   (every `time` and `start_time` in JSON).
//!
//! Local time comes from jiff: `TZ` if set, else `/etc/localtime`, read at run
//! time (so the static musl build, which has no libc time zone code worth the
//! name, follows the host) and re-checked by jiff every few minutes. Each format
//! has an inner function taking the zone, which the tests call with fixed ones.

use std::cell::Cell;

use jiff::{Timestamp, tz::TimeZone};

/// Wall-clock time of boot now, ns since the Unix epoch: CLOCK_REALTIME -
/// CLOCK_BOOTTIME. For a view made once (one `ps` answer); anything that lives
/// on formats through a [`WallMap`].
pub fn boot_epoch_ns() -> i128 {
    let (wall, boot) = SystemClocks.wall_and_boot();
    wall - boot
}

/// How long a [`WallMap`] keeps the boot epoch it read, ns (monotonic): a step
/// of the wall clock shows in the times formatted at most this long after it.
///
/// Why not read it for every line: here (a VM, clocksource tsc) the two
/// clock_gettime calls cost 310 ns a line together, more than the rest of a JSON
/// line, and the coarse monotonic clock that paces them 35 ns.
pub const WALL_MAP_REFRESH_NS: i128 = 100_000_000;

/// Where a [`WallMap`] reads the time: the system's clocks, or a test's.
pub trait Clocks: Send {
    /// CLOCK_REALTIME and CLOCK_BOOTTIME now, ns.
    fn wall_and_boot(&self) -> (i128, i128);
    /// A clock cheap to read that paces the reads of the other two, ns.
    fn pace(&self) -> i128;
}

/// The kernel's clocks (vDSO calls, no system call).
pub struct SystemClocks;

impl Clocks for SystemClocks {
    fn wall_and_boot(&self) -> (i128, i128) {
        (now(libc::CLOCK_REALTIME), now(libc::CLOCK_BOOTTIME))
    }

    fn pace(&self) -> i128 {
        // Jiffy resolution (1 to 10 ms): plenty for a 100 ms pace.
        now(libc::CLOCK_MONOTONIC_COARSE)
    }
}

/// The mapping of boot-clock timestamps to wall time, kept fresh: the boot
/// epoch is read again when [`WALL_MAP_REFRESH_NS`] have passed, so a daemon
/// started before the wall clock was set shows right times once it is. Every
/// timestamp, older or newer than the step, maps with the offset of now (the
/// wall clock's best knowledge), so the times of two events differ by what
/// their boot-clock timestamps do.
pub struct WallMap {
    clocks: Box<dyn Clocks>,
    /// The boot epoch last read, and the pace clock's time to read it again.
    offset: Cell<i128>,
    next_read: Cell<i128>,
}

impl WallMap {
    /// The mapping by the system's clocks.
    pub fn system() -> WallMap {
        WallMap::with_clocks(SystemClocks)
    }

    /// The mapping by the given clocks (tests step them).
    pub fn with_clocks(clocks: impl Clocks + 'static) -> WallMap {
        WallMap { clocks: Box::new(clocks), offset: Cell::new(0), next_read: Cell::new(i128::MIN) }
    }

    /// A mapping that never moves: `boot_epoch_ns` (tests).
    #[cfg(test)]
    pub fn fixed(boot_epoch_ns: i128) -> WallMap {
        struct Fixed(i128);
        impl Clocks for Fixed {
            fn wall_and_boot(&self) -> (i128, i128) {
                (self.0, 0)
            }
            fn pace(&self) -> i128 {
                0
            }
        }
        WallMap::with_clocks(Fixed(boot_epoch_ns))
    }

    /// The boot epoch (ns since the Unix epoch of boot-clock 0), as read at most
    /// [`WALL_MAP_REFRESH_NS`] ago: what the `boot_epoch_ns` arguments take.
    pub fn offset(&self) -> i128 {
        let pace = self.clocks.pace();
        if pace >= self.next_read.get() {
            let (wall, boot) = self.clocks.wall_and_boot();
            self.offset.set(wall - boot);
            self.next_read.set(pace.saturating_add(WALL_MAP_REFRESH_NS));
        }
        self.offset.get()
    }
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

/// The local time zone: `TZ`, else `/etc/localtime`; UTC when neither names one
/// (as the C library does). jiff caches it, so this is cheap enough per line.
pub fn local_zone() -> TimeZone {
    TimeZone::system()
}

/// The wall-clock instant of a boot-clock timestamp. Clamped to jiff's range
/// (years -9999 to 9999), which only a corrupt timestamp could leave.
pub fn wall(boot_epoch_ns: i128, ts_ns: u64) -> Timestamp {
    let ns = boot_epoch_ns + i128::from(ts_ns);
    Timestamp::from_nanosecond(ns).unwrap_or(if ns < 0 { Timestamp::MIN } else { Timestamp::MAX })
}

/// `HH:MM:SS.mmm` local time of a boot-clock timestamp.
pub fn format_time_ms(boot_epoch_ns: i128, ts_ns: u64) -> String {
    time_ms_in(&local_zone(), wall(boot_epoch_ns, ts_ns))
}

/// `HH:MM:SS.mmm` of `t` in `tz`.
pub fn time_ms_in(tz: &TimeZone, t: Timestamp) -> String {
    let d = tz.to_datetime(t);
    format!("{:02}:{:02}:{:02}.{:03}", d.hour(), d.minute(), d.second(), d.millisecond())
}

/// START as `ps` shows it, local time, of a boot-clock timestamp, judged against
/// the time now.
pub fn format_start(boot_epoch_ns: i128, ts_ns: u64) -> String {
    start_in(&local_zone(), wall(boot_epoch_ns, ts_ns), wall(boot_epoch_ns, boot_now_ns()))
}

/// START as `ps` shows it (procps' `pr_stime`): `HH:MM` if `t` is on the same
/// day as `now` in `tz`, `MonDD` if in the same year, else the year.
pub fn start_in(tz: &TimeZone, t: Timestamp, now: Timestamp) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (d, today) = (tz.to_datetime(t), tz.to_datetime(now));
    if d.year() != today.year() {
        d.year().to_string()
    } else if d.day_of_year() != today.day_of_year() {
        // jiff's months are 1 to 12: the table cannot miss.
        let month = usize::try_from(d.month() - 1).ok().and_then(|m| MONTHS.get(m)).copied().unwrap_or("???");
        format!("{month}{:02}", d.day())
    } else {
        format!("{:02}:{:02}", d.hour(), d.minute())
    }
}

/// RFC 3339 UTC time of a boot-clock timestamp, always with 9 digits of ns (the
/// JSON writer caches all but those and the `Z` per second).
pub fn format_rfc3339(boot_epoch_ns: i128, ts_ns: u64) -> String {
    rfc3339(wall(boot_epoch_ns, ts_ns))
}

/// RFC 3339 UTC of `t`, with ns: `2026-05-19T22:00:00.000000001Z`.
pub fn rfc3339(t: Timestamp) -> String {
    format!("{t:.9}")
}

#[cfg(test)]
mod tests {
    use jiff::tz::{self, TimeZone};

    use super::*;

    const SEC: i128 = 1_000_000_000;
    /// 2026-05-19T22:00:00Z.
    const MAY19_22H: i128 = 1_779_228_000 * SEC;

    fn at(epoch_ns: i128) -> Timestamp {
        wall(epoch_ns, 0)
    }

    /// Central European Time with its summer time, as a POSIX TZ rule: no
    /// zoneinfo files needed.
    fn paris() -> TimeZone {
        TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").expect("a valid POSIX TZ rule")
    }

    #[test]
    fn boot_epoch_is_in_the_past() {
        let now = super::now(libc::CLOCK_REALTIME);
        let boot = boot_epoch_ns();
        assert!(boot > 0 && boot < now, "boot {boot} now {now}");
    }

    /// Clocks a test sets: the wall clock steps, the boot clock (which also
    /// paces) only advances.
    #[derive(Clone, Default)]
    struct TestClocks(std::sync::Arc<std::sync::Mutex<TestNow>>);

    #[derive(Default)]
    struct TestNow {
        wall: i128,
        boot: i128,
        reads: u32,
    }

    impl TestClocks {
        fn at(wall: i128, boot: i128) -> TestClocks {
            TestClocks(std::sync::Arc::new(std::sync::Mutex::new(TestNow { wall, boot, reads: 0 })))
        }
        fn now(&self) -> std::sync::MutexGuard<'_, TestNow> {
            self.0.lock().unwrap_or_else(|e| e.into_inner())
        }
        fn advance(&self, ns: i128) {
            let mut n = self.now();
            n.wall += ns;
            n.boot += ns;
        }
    }

    impl Clocks for TestClocks {
        fn wall_and_boot(&self) -> (i128, i128) {
            let mut n = self.now();
            n.reads += 1;
            (n.wall, n.boot)
        }
        fn pace(&self) -> i128 {
            self.now().boot
        }
    }

    #[test]
    fn a_wall_clock_step_shows_in_the_times_formatted_after_it() {
        // Booted 10 s ago by the boot clock, with the wall clock still at its
        // unset value (1970-01-01T00:16:40Z) when the daemon started.
        let clocks = TestClocks::at(1_000 * SEC, 10 * SEC);
        let map = WallMap::with_clocks(clocks.clone());
        let before = 9 * SEC as u64; // an event 1 s before the step
        assert_eq!(format_rfc3339(map.offset(), before), "1970-01-01T00:16:39.000000000Z");
        // NTP sets the wall clock to 2026-05-19T22:00:10Z; the boot clock does not move.
        clocks.now().wall = MAY19_22H + 10 * SEC;
        // Within the pace the epoch read before holds (one read so far)...
        assert_eq!(map.offset(), 990 * SEC);
        assert_eq!(clocks.now().reads, 1);
        // ...and once it is over, the mapping is the new one: the event from
        // before the step and one after it map with the offset of now, their
        // boot-clock timestamps unchanged, 1.05 s apart as on the boot clock.
        clocks.advance(WALL_MAP_REFRESH_NS);
        let after = before + 1_050_000_000;
        assert_eq!(format_rfc3339(map.offset(), before), "2026-05-19T22:00:09.000000000Z");
        assert_eq!(format_rfc3339(map.offset(), after), "2026-05-19T22:00:10.050000000Z");
        assert_eq!(time_ms_in(&TimeZone::UTC, wall(map.offset(), after)), "22:00:10.050");
        assert_eq!(map.offset(), MAY19_22H);
        assert_eq!(clocks.now().reads, 2, "one read per pace, however many lines");
        // A step back (an admin's `date -s`) is followed the same way.
        clocks.now().wall -= 3600 * SEC;
        clocks.advance(WALL_MAP_REFRESH_NS);
        assert_eq!(format_rfc3339(map.offset(), after), "2026-05-19T21:00:10.050000000Z");
    }

    #[test]
    fn the_system_wall_map_agrees_with_the_boot_epoch() {
        // Both read the same two clocks; only a wall-clock step between the two
        // reads (none in a test run) could part them by more than a second.
        let map = WallMap::system();
        let (a, b) = (map.offset(), boot_epoch_ns());
        assert!((a - b).abs() < SEC, "map {a} epoch {b}");
        assert_eq!(WallMap::fixed(MAY19_22H).offset(), MAY19_22H);
    }

    #[test]
    fn boot_clock_timestamps_add_to_the_boot_epoch() {
        assert_eq!(wall(MAY19_22H, 1_500_000_000).as_nanosecond(), MAY19_22H + 1_500_000_000);
        assert_eq!(wall(-5 * SEC, 2_000_000_000).as_nanosecond(), -3 * SEC);
        assert_eq!(wall(i128::MAX / 2, 0), Timestamp::MAX);
        assert_eq!(wall(i128::MIN / 2, 0), Timestamp::MIN);
    }

    #[test]
    fn time_ms_in_a_zone() {
        let t = at(MAY19_22H + 3_723 * SEC + 456_789_000);
        assert_eq!(time_ms_in(&TimeZone::UTC, t), "23:02:03.456");
        // Two hours east in May (summer time): past midnight already.
        assert_eq!(time_ms_in(&paris(), t), "01:02:03.456");
        assert_eq!(time_ms_in(&TimeZone::fixed(tz::offset(-5)), t), "18:02:03.456");
        // Milliseconds are cut, not rounded.
        assert_eq!(time_ms_in(&TimeZone::UTC, at(999_999_999)), "00:00:00.999");
        assert_eq!(time_ms_in(&TimeZone::UTC, at(-1)), "23:59:59.999");
    }

    #[test]
    fn start_like_ps() {
        let utc = TimeZone::UTC;
        // Now: 2026-05-20 10:30 UTC.
        let now = at(MAY19_22H + (12 * 3600 + 30 * 60) * SEC);
        assert_eq!(start_in(&utc, at(MAY19_22H + 12 * 3600 * SEC), now), "10:00");
        assert_eq!(start_in(&utc, at(MAY19_22H + 2 * 3600 * SEC), now), "00:00");
        assert_eq!(start_in(&utc, at(MAY19_22H + 3600 * SEC), now), "May19");
        assert_eq!(start_in(&utc, at(MAY19_22H - 130 * 86_400 * SEC), now), "Jan09");
        // 2025-12-31 23:00 UTC: the year before.
        let new_year = 1_767_222_000 * SEC;
        assert_eq!(start_in(&utc, at(new_year), now), "2025");
        assert_eq!(start_in(&utc, at(new_year), at(new_year + 7200 * SEC)), "2025");
        assert_eq!(start_in(&utc, at(new_year + 7200 * SEC), at(new_year + 7200 * SEC)), "01:00");
        // Local time: in Paris 2025-12-31 23:00 UTC is already new year's day.
        assert_eq!(start_in(&paris(), at(new_year), at(new_year + 7200 * SEC)), "00:00");
        // And in Paris 2026-05-19 22:00 UTC is the 20th, 00:00: today.
        assert_eq!(start_in(&paris(), at(MAY19_22H), now), "00:00");
        assert_eq!(start_in(&paris(), at(MAY19_22H - SEC), now), "May19");
    }

    #[test]
    fn start_follows_summer_time_of_the_day_it_names() {
        // 2026-03-29 is the day Paris moves to summer time at 01:00 UTC. A process
        // from 00:30 UTC (01:30 CET) seen at 12:00 UTC (14:00 CEST): the offset of
        // its own moment, not of now.
        let spring = 1_774_742_400 * SEC; // 2026-03-29T00:00:00Z
        let now = at(spring + 12 * 3600 * SEC);
        assert_eq!(start_in(&paris(), at(spring + 1800 * SEC), now), "01:30");
        assert_eq!(start_in(&paris(), at(spring + 3 * 3600 * SEC), now), "05:00");
    }

    #[test]
    fn rfc3339_utc_with_ns() {
        assert_eq!(format_rfc3339(0, 1_500_000_000), "1970-01-01T00:00:01.500000000Z");
        assert_eq!(format_rfc3339(MAY19_22H, 1), "2026-05-19T22:00:00.000000001Z");
        assert_eq!(format_rfc3339(MAY19_22H, 0), "2026-05-19T22:00:00.000000000Z");
        assert_eq!(format_rfc3339(-1, 0), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(rfc3339(at(1_700_000_000_123_456_789)), "2023-11-14T22:13:20.123456789Z");
    }

    #[test]
    fn local_formats_use_the_local_zone() {
        // Whatever this machine's zone, the wrappers and the inner functions agree.
        let boot = boot_epoch_ns();
        let ts = boot_now_ns();
        let tz = local_zone();
        assert_eq!(format_time_ms(boot, ts), time_ms_in(&tz, wall(boot, ts)));
        assert_eq!(format_start(boot, ts), start_in(&tz, wall(boot, ts), wall(boot, ts)));
    }
}
