//! Ring buffer records, as hostile as they come: each chunk of the input is
//! one record, decoded and fed through the whole pipeline (trackers,
//! aggregates, the JSON live log), a drain every 16 records with loss counts
//! taken from the input too, then a summary's worth of reports. Any panic is
//! a bug: records are never trusted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcptrace::{
    aggregate::{ports::Ports, stats::Stats},
    kernel::decode,
    model::{PerKind, RecordKind},
    pipeline::{Pipeline, Settings, filter::Filter},
    render::{
        JsonPrinter, LiveLog, Printer,
        clock::{WallClock, Zone},
    },
};
use tcptrace_common::TransitionEvent;

fuzz_target!(|data: &[u8]| {
    let mut pipeline = Pipeline::new(Settings {
        filter: Filter::default(),
        kernel: Default::default(),
        // Small, so that the bounds are reached too.
        max_sockets: 8,
        hz: Some(250),
        records: true,
    });
    let Ok(clock) = WallClock::new(Zone::Utc) else {
        return;
    };
    let mut printer = Printer::Json(JsonPrinter::new(clock));
    let mut out = std::io::sink();
    let (mut stats, mut ports) = (Stats::new(), Ports::default());
    let mut sink = (
        (&mut stats, &mut ports),
        LiveLog {
            printer: &mut printer,
            out: &mut out,
        },
    );
    let mut lost = PerKind::default();
    for (i, record) in data.chunks(size_of::<TransitionEvent>()).enumerate() {
        let _ = pipeline.record(decode::decode(record), &mut sink);
        if i % 16 == 15 {
            // Any counts (a fall dates nothing), any time the input says.
            let kind = RecordKind::ALL[usize::from(record[0]) % RecordKind::ALL.len()];
            lost = PerKind::of(&[(kind, u64::from(record[1]))]);
            let now = record.get(8..16).map_or(0, |b| {
                u64::from_le_bytes(b.try_into().unwrap_or_default())
            });
            let _ = pipeline.end_batch(lost, now, now, &mut sink);
        }
    }
    let _ = pipeline.end_batch(lost, u64::MAX / 4, u64::MAX / 4, &mut sink);
    let _ = pipeline.finish(u64::MAX / 4, &mut sink);
    let _ = pipeline.open().count();
    let _ = pipeline.timewait_sockets().count();
});
