//! Fuzz target for the request envelope inside a disk-buffer record (`remote_write::record`),
//! what the replayer reads back into a request. Asserts:
//! - whatever bytes the reader accepts are exactly the bytes the writer makes of the result
//!   (the format has one encoding per request, so nothing is read loosely);
//! - a request written and read back is the same request (protocol, exemplars, tenant, body).

#![no_main]

use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use trawl::fuzzing::{Envelope, decode_envelope, encode_envelope};

fuzz_target!(|data: &[u8]| {
    if let Some(e) = decode_envelope(data) {
        assert_eq!(encode_envelope(&e).as_deref(), Some(data), "accepted bytes re-encode differently: {e:?}");
    }

    let mut u = Unstructured::new(data);
    let tenant_len = u.int_in_range(0..=40usize).unwrap_or(0);
    let e = Envelope {
        v2: u.arbitrary().unwrap_or(false),
        exemplars: u.arbitrary().unwrap_or(0),
        tenant: (tenant_len > 0).then(|| u.bytes(tenant_len).unwrap_or_default().to_vec()),
        wire: u.take_rest().to_vec(),
    };
    // `None`: a tenant the sender would never make (not a valid header value).
    if let Some(bytes) = encode_envelope(&e) {
        assert_eq!(decode_envelope(&bytes), Some(e), "round trip");
    }
});
