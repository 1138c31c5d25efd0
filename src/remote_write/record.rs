//! The on-disk record format, one file for both sides: the segment record the disk buffer
//! writes and reads (header, CRC, metadata), and the envelope inside it, a request [`Body`]
//! exactly as the sender POSTs it.
//!
//! What this is: bytes in, bytes out: [`read_record`] and [`resync`] read through a [`Source`]
//! (a segment file the caller opened, or a byte slice in tests and fuzzing), and every reader of
//! untrusted bytes here answers an error, never panics. What this is not: the segment files,
//! cursor and caps ([`super::disk`]) or the HTTP request ([`super::retry`]).
//!
//! ```text
//! record   = magic "TRWL" | len: u32 LE | crc32(len ‖ payload): u32 LE | payload[len]
//! payload  = samples: u32 LE | newest timestamp (ms): i64 LE | envelope
//! envelope = proto: u8 (1|2) | exemplars: u32 LE | tenant length: u16 LE | tenant | wire body
//! ```

use std::fs::File;
use std::os::unix::fs::FileExt as _;

use bytes::Bytes;
use hyper::header::HeaderValue;

/// Record marker; also what the reader searches for to resynchronise after damage.
const MAGIC: [u8; 4] = *b"TRWL";
/// Magic, length and CRC, in bytes.
pub(super) const HEADER_BYTES: usize = 12;
/// Samples count and newest timestamp at the start of a payload, in bytes.
pub(super) const META_BYTES: usize = 12;
/// Largest payload accepted when reading, in bytes (64 MiB). A request is a few hundred KiB at
/// most (`max_samples_per_send` samples); a larger length is damage, not data.
const MAX_PAYLOAD_BYTES: u32 = 64 << 20;

/// The wire protocol of one request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Proto {
    /// `prometheus.WriteRequest`, remote write 1.0.
    V1,
    /// `io.prometheus.write.v2.Request`, remote write 2.0.
    V2,
}

impl Proto {
    /// The `Content-Type` (RW 2.0 §"Content-Type": the `proto` parameter names the message;
    /// 1.0 receivers expect the bare type).
    pub(super) fn content_type(self) -> &'static str {
        match self {
            Proto::V1 => "application/x-protobuf",
            Proto::V2 => "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        }
    }

    /// `X-Prometheus-Remote-Write-Version` (0.1.0 MUST toward 1.x receivers).
    pub(super) fn version(self) -> &'static str {
        match self {
            Proto::V1 => "0.1.0",
            Proto::V2 => "2.0.0",
        }
    }
}

/// One request body and what it holds.
#[derive(Clone, Debug)]
pub(crate) struct Body {
    /// The snappy-compressed protobuf.
    pub bytes: Bytes,
    /// Its protocol.
    pub proto: Proto,
    /// Samples in it.
    pub samples: usize,
    /// Exemplars in it.
    pub exemplars: usize,
    /// Its newest sample timestamp, in ms.
    pub highest_ms: i64,
    /// `X-Scope-OrgID` for this request, if the endpoint splits by tenant.
    pub tenant: Option<HeaderValue>,
}

/// A body as the disk buffer stores it: `[proto: u8 (1|2)][exemplars: u32 LE][tenant length:
/// u16 LE][tenant][wire body]`, so a replayed request is sent exactly as it would have been.
pub(crate) fn envelope(body: &Body) -> Vec<u8> {
    let tenant = body.tenant.as_ref().map(HeaderValue::as_bytes).unwrap_or_default();
    let tenant = &tenant[..tenant.len().min(u16::MAX as usize)];
    let mut out = Vec::with_capacity(7 + tenant.len() + body.bytes.len());
    out.push(match body.proto {
        Proto::V1 => 1,
        Proto::V2 => 2,
    });
    out.extend_from_slice(&(body.exemplars as u32).to_le_bytes());
    out.extend_from_slice(&(tenant.len() as u16).to_le_bytes());
    out.extend_from_slice(tenant);
    out.extend_from_slice(&body.bytes);
    out
}

/// Reads an [`envelope`] back; `None` if it is not one (a damaged record that passed its CRC).
pub(crate) fn from_envelope(mut raw: Bytes, samples: usize, highest_ms: i64) -> Option<Body> {
    if raw.len() < 7 {
        return None;
    }
    let proto = match raw[0] {
        1 => Proto::V1,
        2 => Proto::V2,
        _ => return None,
    };
    let exemplars = u32::from_le_bytes([raw[1], raw[2], raw[3], raw[4]]) as usize;
    let tenant_len = u16::from_le_bytes([raw[5], raw[6]]) as usize;
    if raw.len() < 7 + tenant_len {
        return None;
    }
    let tenant = match tenant_len {
        0 => None,
        n => Some(HeaderValue::from_bytes(&raw[7..7 + n]).ok()?),
    };
    let bytes = raw.split_off(7 + tenant_len);
    Some(Body { bytes, proto, samples, exemplars, highest_ms, tenant })
}

/// What a record says about its request besides the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordMeta {
    /// Samples in the request.
    pub samples: u32,
    /// Newest sample timestamp in the request, in ms since the epoch.
    pub newest_ms: i64,
}

/// Appends one encoded record to `out`.
pub(crate) fn encode_record(meta: RecordMeta, body: &[u8], out: &mut Vec<u8>) {
    let len = (META_BYTES + body.len()) as u32;
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&len.to_le_bytes());
    let crc_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let payload_at = out.len();
    out.extend_from_slice(&meta.samples.to_le_bytes());
    out.extend_from_slice(&meta.newest_ms.to_le_bytes());
    out.extend_from_slice(body);
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(&out[payload_at..]);
    out[crc_at..payload_at].copy_from_slice(&h.finalize().to_le_bytes());
}

/// The outcome of reading at one offset.
#[derive(Debug, PartialEq)]
pub(crate) enum Read {
    /// A valid record, and the offset after it.
    Record { meta: RecordMeta, body: Bytes, next: u64 },
    /// Nothing more at this offset (end of the data).
    End,
    /// Something other than a valid record starts here.
    Corrupt(&'static str),
}

/// Reads positionally from a segment; `len` is the file's length when the read started.
pub(crate) trait Source {
    fn len(&self) -> u64;
    /// Fills `buf` from `offset`; false if the data ends first.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<bool>;
}

impl Source for (&File, u64) {
    fn len(&self) -> u64 {
        self.1
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<bool> {
        if offset + buf.len() as u64 > self.1 {
            return Ok(false);
        }
        match self.0.read_exact_at(buf, offset) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl Source for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<bool> {
        let Some(src) = usize::try_from(offset).ok().and_then(|o| self.get(o..o.checked_add(buf.len())?))
        else {
            return Ok(false);
        };
        buf.copy_from_slice(src);
        Ok(true)
    }
}

pub(crate) fn read_record(src: &impl Source, offset: u64) -> std::io::Result<Read> {
    if offset >= src.len() {
        return Ok(Read::End);
    }
    let mut header = [0u8; HEADER_BYTES];
    if !src.read_at(&mut header, offset)? {
        return Ok(Read::Corrupt("truncated record header"));
    }
    let [m0, m1, m2, m3, l0, l1, l2, l3, c0, c1, c2, c3] = header;
    if [m0, m1, m2, m3] != MAGIC {
        return Ok(Read::Corrupt("bad record magic"));
    }
    let len = u32::from_le_bytes([l0, l1, l2, l3]);
    if len > MAX_PAYLOAD_BYTES || (len as usize) < META_BYTES {
        return Ok(Read::Corrupt("record length out of range"));
    }
    let mut payload = vec![0u8; len as usize];
    if !src.read_at(&mut payload, offset + HEADER_BYTES as u64)? {
        return Ok(Read::Corrupt("truncated record"));
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&[l0, l1, l2, l3]);
    h.update(&payload);
    if h.finalize() != u32::from_le_bytes([c0, c1, c2, c3]) {
        return Ok(Read::Corrupt("record checksum mismatch"));
    }
    let (meta, body) = payload.split_at(META_BYTES);
    let mut samples = [0u8; 4];
    samples.copy_from_slice(&meta[..4]);
    let mut newest = [0u8; 8];
    newest.copy_from_slice(&meta[4..]);
    let meta = RecordMeta { samples: u32::from_le_bytes(samples), newest_ms: i64::from_le_bytes(newest) };
    let body = Bytes::copy_from_slice(body);
    Ok(Read::Record { meta, body, next: offset + HEADER_BYTES as u64 + len as u64 })
}

/// After damage at `offset`: the offset of the next valid record, or `None` if none follows.
/// Searches for the magic from `offset + 1`, reading in blocks; every candidate is checked in
/// full, so a stray "TRWL" inside a body is skipped too.
pub(crate) fn resync(src: &impl Source, offset: u64) -> std::io::Result<Option<u64>> {
    const BLOCK: usize = 64 << 10;
    let mut at = offset + 1;
    let mut buf = vec![0u8; BLOCK + MAGIC.len() - 1];
    while at < src.len() {
        let n = ((src.len() - at) as usize).min(buf.len());
        if !src.read_at(&mut buf[..n], at)? {
            return Ok(None);
        }
        let mut from = 0;
        while let Some(i) = memchr::memmem::find(&buf[from..n], &MAGIC) {
            let candidate = at + (from + i) as u64;
            if let Read::Record { .. } = read_record(src, candidate)? {
                return Ok(Some(candidate));
            }
            from += i + 1;
        }
        if n < buf.len() {
            return Ok(None);
        }
        at += (n - (MAGIC.len() - 1)) as u64;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn meta(samples: u32, newest_ms: i64) -> RecordMeta {
        RecordMeta { samples, newest_ms }
    }

    fn records(n: usize) -> Vec<u8> {
        let mut buf = Vec::new();
        for i in 0..n {
            encode_record(meta(i as u32, i as i64 * 1000), format!("body-{i}").as_bytes(), &mut buf);
        }
        buf
    }

    fn read_all(buf: &[u8]) -> (Vec<RecordMeta>, usize) {
        let (mut out, mut corrupt, mut at) = (Vec::new(), 0, 0u64);
        loop {
            match read_record(&buf, at).unwrap() {
                Read::Record { meta, next, .. } => {
                    out.push(meta);
                    at = next;
                }
                Read::End => return (out, corrupt),
                Read::Corrupt(_) => {
                    corrupt += 1;
                    match resync(&buf, at).unwrap() {
                        Some(o) => at = o,
                        None => return (out, corrupt),
                    }
                }
            }
        }
    }

    #[test]
    fn record_round_trip() {
        let mut buf = Vec::new();
        encode_record(meta(7, -3), b"hello", &mut buf);
        assert_eq!(buf.len(), HEADER_BYTES + META_BYTES + 5);
        let got = read_record(&buf.as_slice(), 0).unwrap();
        assert_eq!(
            got,
            Read::Record { meta: meta(7, -3), body: Bytes::from_static(b"hello"), next: buf.len() as u64 }
        );
        assert_eq!(read_record(&buf.as_slice(), buf.len() as u64).unwrap(), Read::End);
    }

    #[test]
    fn damage_is_detected_and_skipped() {
        let clean = records(3);
        let first = HEADER_BYTES + META_BYTES + "body-0".len();
        // (byte to flip, records still readable, why)
        let cases: &[(usize, usize, &str)] = &[
            (0, 2, "bad magic in the first record: the other two survive"),
            (5, 2, "a length byte: CRC (over the length too) or range check fails"),
            (9, 2, "a CRC byte"),
            (HEADER_BYTES + 1, 2, "a samples byte"),
            (first - 1, 2, "the last body byte of the first record"),
            (first + HEADER_BYTES + 2, 2, "inside the second record"),
            (clean.len() - 1, 2, "the last byte of the file"),
        ];
        for &(at, want, why) in cases {
            let mut buf = clean.clone();
            buf[at] ^= 0x5a;
            let (ok, corrupt) = read_all(&buf);
            assert_eq!(ok.len(), want, "{why}");
            assert_eq!(corrupt, 1, "{why}: counted once");
        }
    }

    #[test]
    fn garbage_never_panics_or_hangs() {
        // (input, why)
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"TRWL", "magic only"),
            (b"TRWL\xff\xff\xff\xff\0\0\0\0", "huge length"),
            (b"TRWL\x00\x00\x00\x00\0\0\0\0", "length below the metadata size"),
            (b"TRWLTRWLTRWLTRWL", "magics all the way"),
        ];
        for (input, why) in cases {
            let (ok, _) = read_all(input);
            assert!(ok.is_empty(), "{why}");
        }
    }

    proptest! {
        /// Truncating the file anywhere inside the last record keeps every earlier record and
        /// reports the tail once (what a SIGKILL during a write can leave).
        #[test]
        fn truncation_inside_the_last_record(n in 1usize..5, cut in 0usize..1000) {
            let full = records(n);
            let last_start = records(n - 1).len();
            let cut = last_start + cut % (full.len() - last_start);
            let (ok, corrupt) = read_all(&full[..cut]);
            prop_assert_eq!(ok.len(), n - 1);
            prop_assert_eq!(corrupt, usize::from(cut > last_start));
        }

        /// Arbitrary bytes: no panic, and every step moves forward (read_all terminates).
        #[test]
        fn arbitrary_bytes_are_safe(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = read_all(&bytes);
        }
    }

    #[test]
    fn truncation_at_every_offset_of_the_last_record() {
        let full = records(3);
        let last_start = records(2).len();
        for cut in last_start..full.len() {
            let (ok, _) = read_all(&full[..cut]);
            assert_eq!(ok.len(), 2, "cut at {cut}");
        }
    }

    #[test]
    fn envelope_round_trips_and_rejects_junk() {
        let body = |proto, tenant: Option<&str>| Body {
            bytes: Bytes::from_static(b"wire"),
            proto,
            samples: 3,
            exemplars: 2,
            highest_ms: 7,
            tenant: tenant.map(|t| HeaderValue::from_str(t).unwrap()),
        };
        for b in [body(Proto::V1, None), body(Proto::V2, Some("team-a"))] {
            let back = from_envelope(Bytes::from(envelope(&b)), 3, 7).expect("reads back");
            assert_eq!(
                (back.bytes, back.proto, back.exemplars, back.tenant),
                (b.bytes.clone(), b.proto, b.exemplars, b.tenant.clone())
            );
        }
        // (bytes, why)
        let junk: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"\x03\0\0\0\0\0\0wire", "unknown protocol byte"),
            (b"\x01\0\0\0\0\x09\0ab", "tenant longer than the record"),
            (b"\x01\0\0\0", "shorter than the header"),
        ];
        for (raw, why) in junk {
            assert!(from_envelope(Bytes::copy_from_slice(raw), 1, 1).is_none(), "{why}");
        }
    }
}
