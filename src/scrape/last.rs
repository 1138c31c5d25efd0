//! The records of a target's last successful scrape, deflate-compressed: what its stale markers
//! are written from.
//!
//! What this is: the staleness set's label text, kept once per target instead of once per
//! series. A series that vanishes from the page, or every series of a failed scrape or a removed
//! target, gets a stale marker with exactly the labels its last sample was sent with (as
//! Prometheus' scrape cache keeps each series' label set for this). It is rewritten only when
//! the set of series changes, and read only when a series vanished, so a steady target pays
//! nothing per scrape. With `--storage.path` the same bytes are the target's staleness file
//! ([`crate::staleness`]). What this is not: the decision of what is stale ([`super::page`]).
//!
//! Why deflate (level 1): on the dense-node pages of `perf/compare.py` the records are 113–327
//! bytes a series and compress to 4–19 bytes (target and external labels repeat on every
//! record); snappy kept 3–5× more. Compressing runs on a set change only.

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use prost::encoding::{decode_varint, encode_varint};

/// Largest uncompressed size accepted from a file (64 MiB): far above a real target's series
/// (10,000 series of 300 bytes are 3 MB) and small enough to inflate in one go.
pub const MAX_RAW_BYTES: usize = 64 << 20;

/// Compressed bytes that do not inflate to records: only possible for bytes from a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("damaged series set")]
pub struct LastError;

/// The records of one series set, compressed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LastSeries {
    count: u32,
    raw_len: u32,
    deflated: Box<[u8]>,
}

thread_local! {
    /// Uncompressed bytes, reused by [`LastSeries::encode`] and [`LastSeries::for_each`].
    static RAW: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Buffers above this are not kept in the thread's scratch after use (1 MiB).
const KEEP_SCRATCH_BYTES: usize = 1 << 20;

impl LastSeries {
    /// The records of `records`, in order.
    pub fn encode<'a>(records: impl IntoIterator<Item = &'a [u8]>) -> LastSeries {
        RAW.with_borrow_mut(|raw| {
            raw.clear();
            let mut count = 0u32;
            for r in records {
                encode_varint(r.len() as u64, raw);
                raw.extend_from_slice(r);
                count += 1;
            }
            let out = deflate(raw);
            let raw_len = raw.len() as u32;
            if raw.capacity() > KEEP_SCRATCH_BYTES {
                *raw = Vec::new();
            }
            LastSeries { count, raw_len, deflated: out.into_boxed_slice() }
        })
    }

    /// Calls `f` with each record, in order.
    pub fn for_each(&self, mut f: impl FnMut(&[u8])) -> Result<(), LastError> {
        if self.count == 0 {
            return Ok(());
        }
        RAW.with_borrow_mut(|raw| {
            let result = inflate(&self.deflated, self.raw_len as usize, raw).and_then(|()| {
                let mut rest = &raw[..];
                for _ in 0..self.count {
                    let len = decode_varint(&mut rest).map_err(|_| LastError)? as usize;
                    let record = rest.get(..len).ok_or(LastError)?;
                    f(record);
                    rest = &rest[len..];
                }
                if rest.is_empty() { Ok(()) } else { Err(LastError) }
            });
            if raw.capacity() > KEEP_SCRATCH_BYTES {
                *raw = Vec::new();
            }
            result
        })
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.deflated.len()
    }

    /// The bytes a file keeps: `count: u32 LE | raw length: u32 LE | deflate stream`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.deflated.len());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.raw_len.to_le_bytes());
        out.extend_from_slice(&self.deflated);
        out
    }

    /// Reads [`to_bytes`](Self::to_bytes) back, checking that it inflates to `count` records.
    pub fn from_bytes(b: &[u8]) -> Result<LastSeries, LastError> {
        let (head, deflated) = b.split_first_chunk::<8>().ok_or(LastError)?;
        let count = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let raw_len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if raw_len as usize > MAX_RAW_BYTES {
            return Err(LastError);
        }
        let last = LastSeries { count, raw_len, deflated: deflated.into() };
        last.for_each(|_| {})?;
        Ok(last)
    }
}

/// Raw deflate at level 1 of `input`, into a buffer of about the compressed size.
fn deflate(input: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::fast(), false);
    let mut out = Vec::with_capacity(input.len() / 8 + 64);
    loop {
        let consumed = c.total_in() as usize;
        match c.compress_vec(&input[consumed..], &mut out, FlushCompress::Finish) {
            Ok(Status::StreamEnd) => break,
            // Out of room: grow and go on.
            Ok(_) => out.reserve(out.capacity().max(64)),
            // Only on misuse of the stream; an empty set stays correct (no stale markers).
            Err(_) => return Vec::new(),
        }
    }
    out.shrink_to_fit();
    out
}

/// Inflates `deflated`, which must come to exactly `raw_len` bytes, into `out`.
fn inflate(deflated: &[u8], raw_len: usize, out: &mut Vec<u8>) -> Result<(), LastError> {
    out.clear();
    out.reserve(raw_len);
    let mut d = Decompress::new(false);
    loop {
        let consumed = d.total_in() as usize;
        let before = out.len();
        match d.decompress_vec(&deflated[consumed..], out, FlushDecompress::Finish) {
            Ok(Status::StreamEnd) => break,
            Ok(_) if out.len() == before && d.total_in() as usize == consumed => return Err(LastError),
            Ok(_) if out.len() >= raw_len => return Err(LastError),
            Ok(_) => out.reserve(raw_len - out.len()),
            Err(_) => return Err(LastError),
        }
    }
    if out.len() == raw_len { Ok(()) } else { Err(LastError) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let records: Vec<Vec<u8>> = (0..1000).map(|i| format!("record {i} job=x").into_bytes()).collect();
        let last = LastSeries::encode(records.iter().map(Vec::as_slice));
        assert_eq!(last.len(), 1000);
        assert!(last.heap_bytes() < 1000 * 16, "{} bytes for 1000 similar records", last.heap_bytes());
        let mut got = Vec::new();
        last.for_each(|r| got.push(r.to_vec())).unwrap();
        assert_eq!(got, records);
        let back = LastSeries::from_bytes(&last.to_bytes()).unwrap();
        assert_eq!(back, last);
        assert!(LastSeries::encode(std::iter::empty()).is_empty());
        let bytes = last.to_bytes();
        // (bytes, why)
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (bytes[..bytes.len() - 3].to_vec(), "truncated stream"),
            ([&2000u32.to_le_bytes()[..], &bytes[4..]].concat(), "more records than the stream holds"),
            (
                [&bytes[..4], &(MAX_RAW_BYTES as u32 + 1).to_le_bytes()[..], &bytes[8..]].concat(),
                "raw size over the cap",
            ),
            (vec![1, 0, 0, 0, 5, 0, 0, 0, 0xff, 0xff], "not deflate"),
            (vec![1, 2, 3], "shorter than the header"),
        ];
        for (b, why) in cases {
            assert_eq!(LastSeries::from_bytes(&b), Err(LastError), "{why}");
        }
    }
}
