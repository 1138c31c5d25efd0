//! Fuzz target for the staleness state file (`trawl::staleness`), read back at every start from
//! `--storage.path`. Asserts:
//! - any bytes: `decode` answers `None` or a set, never panics; a set it accepts can be walked
//!   (`for_each` errs or not, never panics) and written and read back to the same set;
//! - round trip: records made into a set, written as a file and read back, are the same set
//!   with the same records.

#![no_main]

use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use trawl::fuzzing::staleness_file;
use trawl::labels::Labels;
use trawl::scrape::LastSeries;
use trawl::staleness::decode;

fuzz_target!(|data: &[u8]| {
    let none = Labels::new();
    if let Some(set) = decode(data, &none) {
        let _ = set.for_each(|_| {});
        assert_eq!(decode(&staleness_file(&set), &none), Some(set), "an accepted set does not round-trip");
    }

    let mut u = Unstructured::new(data);
    let mut records: Vec<Vec<u8>> = Vec::new();
    while records.len() < 32 && !u.is_empty() {
        let len = u.int_in_range(0..=48usize).unwrap_or(0);
        records.push(u.bytes(len).unwrap_or_default().to_vec());
    }
    let set = LastSeries::encode(records.iter().map(Vec::as_slice));
    let back = decode(&staleness_file(&set), &none).expect("a written file reads back");
    assert_eq!(back, set, "round trip");
    let mut walked = Vec::new();
    back.for_each(|r| walked.push(r.to_vec())).expect("a written set walks");
    let mut want = Vec::new();
    set.for_each(|r| want.push(r.to_vec())).expect("a built set walks");
    assert_eq!(walked, want);
});
