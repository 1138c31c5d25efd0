//! Entry points for the fuzz targets in `fuzz/`: thin wrappers around the crate-private readers
//! of untrusted bytes, so the targets test the real code without making its internals public.
//!
//! What this is: one function per reader, plus the writer each round trip needs. What this is
//! not: an API; it is hidden from the docs and may change with the targets.

use bytes::Bytes;
use hyper::header::HeaderValue;

use crate::labels::Labels;
use crate::remote_write::record::{self, Body, Proto, Read, RecordMeta};
use crate::scrape::LastSeries;

/// One disk-buffer record: its sample count, newest timestamp (ms) and body.
pub type Record = (u32, i64, Vec<u8>);

/// Appends one disk-buffer record to a segment, as the disk buffer writes it.
pub fn encode_record(samples: u32, newest_ms: i64, body: &[u8], out: &mut Vec<u8>) {
    record::encode_record(RecordMeta { samples, newest_ms }, body, out);
}

/// What [`read_segment`] found.
#[derive(Debug, Default)]
pub struct Scan {
    /// The records read, in order.
    pub records: Vec<Record>,
    /// Damaged stretches skipped (each counted once, as `corrupt_records_total` counts them).
    pub corrupt: usize,
}

/// Reads a whole segment the way the disk buffer's reader does: record after record, and after
/// damage on from the next record that checks out (`resync`), counting the damage.
pub fn read_segment(segment: &[u8]) -> Scan {
    let mut scan = Scan::default();
    let mut at = 0u64;
    loop {
        // A byte slice cannot fail to read; an error would be a bug in the reader.
        match record::read_record(&segment, at).expect("reading a slice cannot fail") {
            Read::Record { meta, body, next } => {
                assert!(next > at, "the reader moves forward");
                scan.records.push((meta.samples, meta.newest_ms, body.to_vec()));
                at = next;
            }
            Read::End => return scan,
            Read::Corrupt(_) => {
                scan.corrupt += 1;
                match record::resync(&segment, at).expect("reading a slice cannot fail") {
                    Some(next) => {
                        assert!(next > at, "resync moves forward");
                        at = next;
                    }
                    None => return scan,
                }
            }
        }
    }
}

/// A request as the disk buffer's envelope holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// Remote write 2.0 (else 1.0).
    pub v2: bool,
    /// Exemplars in the request.
    pub exemplars: u32,
    /// `X-Scope-OrgID`, if any.
    pub tenant: Option<Vec<u8>>,
    /// The wire body.
    pub wire: Vec<u8>,
}

/// The envelope's bytes; `None` if `tenant` is not a valid header value (or empty, or over
/// `u16::MAX` bytes: the sender never makes such a tenant).
pub fn encode_envelope(e: &Envelope) -> Option<Vec<u8>> {
    let tenant = match &e.tenant {
        Some(t) if t.is_empty() || t.len() > u16::MAX as usize => return None,
        Some(t) => Some(HeaderValue::from_bytes(t).ok()?),
        None => None,
    };
    let body = Body {
        bytes: Bytes::copy_from_slice(&e.wire),
        proto: if e.v2 { Proto::V2 } else { Proto::V1 },
        samples: 0,
        exemplars: e.exemplars as usize,
        highest_ms: 0,
        tenant,
    };
    Some(record::envelope(&body))
}

/// Reads an envelope as the replayer does; `None` if the bytes are not one.
pub fn decode_envelope(raw: &[u8]) -> Option<Envelope> {
    let b = record::from_envelope(Bytes::copy_from_slice(raw), 0, 0)?;
    Some(Envelope {
        v2: b.proto == Proto::V2,
        exemplars: u32::try_from(b.exemplars).ok()?,
        tenant: b.tenant.map(|t| t.as_bytes().to_vec()),
        wire: b.bytes.to_vec(),
    })
}

/// A staleness state file's bytes for `series`, as [`crate::staleness::save`] writes them.
pub fn staleness_file(series: &LastSeries) -> Vec<u8> {
    crate::staleness::encode(series)
}

/// Decodes one Kubernetes watch event on pods (one line of a watch response, as kube's watcher
/// decodes it) and builds the event's pod into targets as the `pod` role does: `Ok(None)` for
/// an event without a pod (bookmark, error status).
pub fn kubernetes_pod_event(line: &[u8]) -> Result<Option<Vec<Labels>>, serde_json::Error> {
    use kube::core::WatchEvent;
    let event: WatchEvent<k8s_openapi::api::core::v1::Pod> = serde_json::from_slice(line)?;
    Ok(match event {
        WatchEvent::Added(pod) | WatchEvent::Modified(pod) | WatchEvent::Deleted(pod) => {
            Some(crate::discovery::kubernetes::targets::pod_targets(&pod, None, None))
        }
        WatchEvent::Bookmark(_) | WatchEvent::Error(_) => None,
    })
}
