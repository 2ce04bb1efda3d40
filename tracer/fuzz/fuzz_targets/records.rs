//! The ring buffer's and the task iterator's records: `records` splits a stream,
//! `Record::decode` and `Event::decode` read one record. Nothing panics; the
//! records of a stream are its prefix, in order; a decoded event's variable
//! parts lie within its record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::events::{Body, Event, Record, records};

/// The fixed part of a record: the header (kind, size, ts_ns, cpu, pad).
const HEADER: usize = 24;

fn check_event(rec: &[u8], ev: &Event) {
    match &ev.body {
        Body::Exec { argv, .. } => {
            assert!(argv.raw.len() < rec.len(), "argv of {} bytes in a record of {}", argv.raw.len(), rec.len());
            let _ = argv.args().count();
            let _ = argv.joined();
        }
        Body::Snapshot { argv, .. } => {
            assert!(argv.raw.len() < rec.len(), "argv of {} bytes in a record of {}", argv.raw.len(), rec.len());
            let _ = argv.args().count();
            let _ = argv.joined();
        }
        Body::ProcessExit { status, .. } | Body::ThreadExit { status } => {
            let _ = status.to_string();
        }
        _ => {}
    }
    let _ = ev.task.comm.to_string();
}

fn check_record(rec: &[u8]) {
    match Record::decode(rec) {
        Ok(Record::Event(ev)) => {
            check_event(rec, &ev);
            assert_eq!(Event::decode(rec).as_ref(), Ok(&ev), "Record::decode and Event::decode disagree");
        }
        Ok(Record::Cgroup(cg)) => {
            assert!(cg.path.starts_with('/'), "cgroup path {:?} is not absolute", cg.path);
            assert!(Event::decode(rec).is_err(), "a cgroup record decoded as an event");
        }
        Err(_) => {
            if let Ok(ev) = Event::decode(rec) {
                panic!("Event::decode accepted what Record::decode refused: {ev:?}");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check_record(data);
    let mut at = 0;
    for rec in records(data) {
        let Ok(rec) = rec else { break };
        assert!(rec.len() >= HEADER, "a record of {} bytes", rec.len());
        assert_eq!(rec, &data[at..at + rec.len()], "records are not the stream's prefix");
        at += rec.len();
        check_record(rec);
    }
    assert!(at <= data.len());
});
