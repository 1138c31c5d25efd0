//! Fuzz target for the disk buffer's segment reader (`remote_write::record`), through
//! `trawl::fuzzing::read_segment`, which reads as the buffer's replayer does. Asserts:
//! - round trip: the records written are read back exactly, in order, with no damage counted;
//! - after damage (bytes flipped in a stretch, and/or the file cut short) the reader answers,
//!   never panics, always moves forward (`read_segment` asserts it), and loses nothing silently:
//!   every record the damage did not touch is read back, in order, and if any record before the
//!   cut is missing, the damage was counted.
//!
//! Record bodies never contain the record magic here. A body that embeds a whole valid record
//! (magic, length and a matching CRC) could make the reader's resync land inside a damaged
//! record and, if the embedded record ran past it, skip the next intact one; real bodies are
//! snappy-compressed protobuf, which would have to carry such a record byte for byte.

#![no_main]

use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use trawl::fuzzing::{Record, encode_record, read_segment};

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut records: Vec<Record> = Vec::new();
    let mut spans = Vec::new(); // byte range of each record in the segment
    let mut segment = Vec::new();
    let n = u.int_in_range(0..=6u8).unwrap_or(0);
    for _ in 0..n {
        let samples: u32 = u.arbitrary().unwrap_or(0);
        let newest: i64 = u.arbitrary().unwrap_or(0);
        let len = u.int_in_range(0..=64usize).unwrap_or(0);
        let mut body = u.bytes(len).unwrap_or_default().to_vec();
        // No magic inside a body (see the module docs).
        while let Some(i) = body.windows(4).position(|w| w == b"TRWL") {
            body[i] = b't';
        }
        let start = segment.len();
        encode_record(samples, newest, &body, &mut segment);
        spans.push(start..segment.len());
        records.push((samples, newest, body));
    }

    // Round trip.
    let clean = read_segment(&segment);
    assert_eq!(clean.records, records, "records read back differ from those written");
    assert_eq!(clean.corrupt, 0, "damage counted in an undamaged segment");

    // Damage: flip the bytes of one stretch, then maybe cut the file.
    if segment.is_empty() {
        return;
    }
    let mut damaged = segment.clone();
    let from = u.int_in_range(0..=segment.len() - 1).unwrap_or(0);
    let len = u.int_in_range(0..=16usize).unwrap_or(0).min(segment.len() - from);
    let flip: u8 = u.int_in_range(1..=255).unwrap_or(0x5a);
    for b in &mut damaged[from..from + len] {
        *b ^= flip;
    }
    let cut = if u.arbitrary().unwrap_or(false) {
        u.int_in_range(0..=segment.len()).unwrap_or(segment.len())
    } else {
        segment.len()
    };
    damaged.truncate(cut);
    let scan = read_segment(&damaged);

    let touched = |s: &std::ops::Range<usize>| len > 0 && s.start < from + len && from < s.end;
    let intact: Vec<&Record> =
        records.iter().zip(&spans).filter(|(_, s)| s.end <= cut && !touched(s)).map(|(r, _)| r).collect();
    // Every intact record comes back, in order (a subsequence of what was read).
    let mut read = scan.records.iter();
    for r in &intact {
        assert!(read.any(|got| got == *r), "an undamaged record was lost: {r:?}");
    }
    // A record that started before the cut and is not intact was damaged or cut: counted.
    let lost = records.iter().zip(&spans).filter(|(_, s)| s.start < cut).count() - intact.len();
    if lost > 0 {
        assert!(scan.corrupt > 0, "{lost} record(s) lost without the damage being counted");
    }
    if scan.corrupt == 0 {
        assert_eq!(scan.records.len(), intact.len(), "records appeared from nowhere");
    }
});
