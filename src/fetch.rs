//! One scrape request: GET a target's page into a caller-owned buffer, bounded in bytes, time
//! and memory.
//!
//! What this is: the HTTP part of a scrape, with the headers Prometheus sends (`Accept` for the
//! formats we parse, `Accept-Encoding: gzip`, `X-Prometheus-Scrape-Timeout-Seconds`). The body is
//! decoded as it arrives (gzip, including multi-member streams as Go's reader reads them, and
//! zlib `deflate`), frame by frame, into a buffer from a pool, and every decoded byte counts
//! against the body limit and, with `--memory.limit`, the scrape's memory reservation: a
//! gzip bomb stops at the limit after inflating at most one network frame past it, a stored-block
//! gzip stops when the decoded bytes reach the limit, a page whose `Content-Length` is over the
//! limit is refused before its first byte is read. Everything runs under the scrape's deadline:
//! connect, headers, every frame, decoding. What this is not: parsing; the bytes are handed on
//! untouched with the response content type.

use std::io::Write as _;

use bytes::{Buf, Bytes};
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderValue};
use tokio::time::Instant;

use crate::budget::{Refused, Reservation};
use crate::http_client::Client;

/// The body limit when a job sets no `body_size_limit` (nor does `global`): 64 MiB.
///
/// Prometheus reads bodies unbounded by default; so does Vector's prometheus source. trawl runs
/// beside whatever a node runs, so a buggy or hostile target must not take it over its memory.
/// The largest real pages are kube-state-metrics' in big clusters, ~30 MB at 500 nodes
/// (nebius-solutions-library#1093), and those are scraped centrally, not by a node's agent;
/// node-local pages (node exporter, cAdvisor, kubelet, applications) are kilobytes to a few MB.
/// vmagent's default is 16 MiB (`-promscrape.maxScrapeSize`). 64 MiB keeps the biggest real
/// pages with room to spare; set `body_size_limit` for more.
pub const DEFAULT_BODY_LIMIT_BYTES: u64 = 64 << 20;

/// What a scrape request can fail with. All are per-scrape failures (`up` = 0); the next scrape
/// tries again, so every kind is retryable at the loop's interval and never fatal.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The target URL does not parse.
    #[error("invalid URL {0:?}")]
    Url(String),
    /// Connecting or talking HTTP failed.
    #[error("{0}")]
    Http(String),
    /// The target answered with a non-2xx status.
    #[error("server returned HTTP status {0}")]
    Status(String),
    /// The deadline (`scrape_timeout`) passed before the whole body arrived and was decoded.
    #[error("context deadline exceeded")]
    Timeout,
    /// The (decoded) body is over the body limit.
    #[error("body size limit exceeded ({0} bytes)")]
    BodyTooLarge(u64),
    /// The gzip or deflate stream is corrupt or truncated.
    #[error("decoding the {encoding} body failed: {error}")]
    Decode {
        /// `gzip` or `deflate`.
        encoding: &'static str,
        /// What the decoder said.
        error: std::io::Error,
    },
    /// A `Content-Encoding` trawl did not ask for and cannot decode.
    #[error("unsupported Content-Encoding {0:?}")]
    Encoding(String),
    /// The memory budget refused the memory the body needs.
    #[error(transparent)]
    Memory(#[from] Refused),
}

/// The parts of a request that stay the same for every scrape of a target.
#[derive(Clone, Debug)]
pub struct Request {
    /// Full URL with query parameters.
    pub uri: hyper::Uri,
    /// The `Accept` header.
    pub accept: HeaderValue,
    /// Ask for gzip.
    pub gzip: bool,
    /// Timeout in seconds as sent in `X-Prometheus-Scrape-Timeout-Seconds`.
    pub timeout: std::time::Duration,
    /// Body limit in bytes after decoding; never 0 (see [`DEFAULT_BODY_LIMIT_BYTES`]).
    pub body_limit: u64,
    /// Authorization header value, if any (resolved per scrape so rotated files are re-read).
    pub auth: Option<HeaderValue>,
}

/// Buffers for one scrape's body, taken from a process-wide pool for the scrape and given back
/// after it, so steady-state scrapes do not allocate bodies and idle targets hold none. A node's
/// targets scrape at spread-out phases, so a few buffers serve hundreds of targets: per-target
/// buffers held ~250 KB per target between scrapes, ~200 MB at 400 targets × 2,500 series
/// (`perf/compare.py`, RSS per series 1,221 B before the pool).
#[derive(Default, Debug)]
pub struct Buffers {
    body: Body,
}

/// A body buffer: on the heap up to [`POOL_MAX_BUFFER_BYTES`], past that an anonymous memory
/// map as large as the body may get.
///
/// Why a map for big bodies: its pages are resident only once written, it is never copied to
/// grow, and dropping it unmaps it, so the memory is the OS's again at once. On the heap, a
/// 64 MiB body grew by copies (old and new resident together) and, freed, stayed resident until
/// the allocator's thread ran again: a gzip bomb held at trawl's default cap kept trawl at
/// ~100 MiB between its scrapes, peaking at ~150 MiB; in a map, its RSS goes back to the base
/// after each one.
#[derive(Debug)]
enum Body {
    Heap(Vec<u8>),
    Mapped { map: memmap2::MmapMut, len: usize },
}

impl Default for Body {
    fn default() -> Self {
        Body::Heap(Vec::new())
    }
}

impl Body {
    fn as_slice(&self) -> &[u8] {
        match self {
            Body::Heap(v) => v,
            Body::Mapped { map, len } => &map[..*len],
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn clear(&mut self) {
        match self {
            Body::Heap(v) => v.clear(),
            Body::Mapped { .. } => *self = Body::default(),
        }
    }

    /// Makes room for the body to reach `want` bytes, of at most `limit`.
    fn reserve(&mut self, want: usize, limit: usize) {
        match self {
            Body::Heap(v) if want <= POOL_MAX_BUFFER_BYTES => {
                if v.capacity() < want {
                    let cap = (2 * v.capacity()).clamp(want, POOL_MAX_BUFFER_BYTES);
                    v.reserve_exact(cap - v.len());
                }
            }
            Body::Heap(v) => {
                // Past the pool's size: move to a map of the rest of the limit (address space
                // only). If the OS refuses the mapping, grow on the heap as before.
                match memmap2::MmapMut::map_anon(limit.max(want)) {
                    Ok(mut map) => {
                        let len = v.len();
                        map[..len].copy_from_slice(v);
                        *self = Body::Mapped { map, len };
                    }
                    Err(_) => v.reserve(want - v.len()),
                }
            }
            Body::Mapped { .. } => {}
        }
    }

    /// Appends `bytes` (room was made by [`Body::reserve`]).
    fn extend(&mut self, bytes: &[u8]) {
        match self {
            Body::Heap(v) => v.extend_from_slice(bytes),
            Body::Mapped { map, len } => {
                let end = *len + bytes.len();
                if end <= map.len() {
                    map[*len..end].copy_from_slice(bytes);
                    *len = end;
                }
            }
        }
    }
}

/// Buffers kept for reuse, at most [`POOL_MAX_BUFFERS`].
static POOL: std::sync::Mutex<Vec<Buffers>> = std::sync::Mutex::new(Vec::new());
/// More than this many scrapes in flight at once is rare on one node; beyond it, buffers are
/// freed after use rather than kept.
const POOL_MAX_BUFFERS: usize = 8;
/// Buffers grown past this (a very large page) are freed after use, not kept for everyone.
const POOL_MAX_BUFFER_BYTES: usize = 4 << 20;
/// After decoding this much (1 MiB) out of one frame, the scrape yields to the runtime, so a
/// bomb that inflates a 16 KiB frame into megabytes shares the worker with other scrapes.
const YIELD_AFTER_DECODED_BYTES: usize = 1 << 20;

impl Buffers {
    /// Buffers from the pool, or new empty ones.
    pub fn take() -> Buffers {
        POOL.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_default()
    }

    /// The decoded page.
    pub fn body(&self) -> &[u8] {
        self.body.as_slice()
    }

    /// Returns the buffers to the pool (or frees them: a map, see [`Body`]).
    pub fn give_back(mut self) {
        if matches!(self.body, Body::Mapped { .. }) {
            return;
        }
        self.body.clear();
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOL_MAX_BUFFERS {
            pool.push(self);
        }
    }
}

/// What came back, besides the body in [`Buffers::body`].
#[derive(Debug, Default)]
pub struct Response {
    /// The response `Content-Type`, if any.
    pub content_type: Option<String>,
    /// Bytes received on the wire (compressed size when gzip).
    pub wire_bytes: u64,
}

/// The body's `Content-Encoding`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
    Deflate,
}

/// Performs one scrape request by `deadline`. The body ends up in `bufs.body`; with a
/// `reservation`, it is grown as the body grows, and a refusal fails the scrape.
pub async fn fetch(
    client: &Client,
    req: &Request,
    bufs: &mut Buffers,
    deadline: Instant,
    reservation: Option<&mut Reservation>,
) -> Result<Response, FetchError> {
    let mut builder = hyper::Request::get(req.uri.clone())
        .header(header::ACCEPT, req.accept.clone())
        .header(header::USER_AGENT, crate::USER_AGENT)
        .header("X-Prometheus-Scrape-Timeout-Seconds", format!("{}", req.timeout.as_secs_f64()));
    builder = builder.header(header::ACCEPT_ENCODING, if req.gzip { "gzip" } else { "identity" });
    if let Some(auth) = &req.auth {
        builder = builder.header(header::AUTHORIZATION, auth.clone());
    }
    let request = builder.body(Full::new(Bytes::new())).map_err(|e| FetchError::Http(e.to_string()))?;
    let resp = tokio::time::timeout_at(deadline, client.request(request))
        .await
        .map_err(|_| FetchError::Timeout)?
        .map_err(|e| FetchError::Http(error_chain(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(FetchError::Status(status.to_string()));
    }
    let headers = resp.headers();
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let encoding = match headers.get(header::CONTENT_ENCODING).map(|v| v.as_bytes()) {
        None => Encoding::Identity,
        Some(v) if v.eq_ignore_ascii_case(b"identity") || v.is_empty() => Encoding::Identity,
        Some(v) if v.eq_ignore_ascii_case(b"gzip") || v.eq_ignore_ascii_case(b"x-gzip") => Encoding::Gzip,
        Some(v) if v.eq_ignore_ascii_case(b"deflate") => Encoding::Deflate,
        Some(v) => return Err(FetchError::Encoding(String::from_utf8_lossy(v).into_owned())),
    };
    let limit = req.body_limit;
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let mut sink = Sink { out: &mut bufs.body, limit, reservation, refused: None };
    sink.out.clear();
    if encoding == Encoding::Identity
        && let Some(n) = length
    {
        // The page's size is known: refuse it before reading a byte, or make room once.
        if n > limit {
            return Err(FetchError::BodyTooLarge(limit));
        }
        sink.reserve(n as usize).map_err(|e| sink.error(e))?;
    }
    let mut decoder = match encoding {
        Encoding::Identity => Decoder::Identity(sink),
        Encoding::Gzip => Decoder::Gzip(flate2::write::MultiGzDecoder::new(sink)),
        Encoding::Deflate => Decoder::Deflate(flate2::write::ZlibDecoder::new(sink)),
    };
    let mut body = resp.into_body();
    let mut wire_bytes: u64 = 0;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(FetchError::Timeout),
            Ok(None) => break,
            Ok(Some(frame)) => frame.map_err(|e| FetchError::Http(error_chain(&e)))?,
        };
        let Ok(mut data) = frame.into_data() else { continue };
        wire_bytes += data.remaining() as u64;
        let before = decoder.decoded();
        while data.has_remaining() {
            let chunk = data.chunk();
            decoder.write(chunk)?;
            let n = chunk.len();
            data.advance(n);
        }
        if decoder.decoded() - before > YIELD_AFTER_DECODED_BYTES {
            tokio::task::yield_now().await;
            if Instant::now() >= deadline {
                return Err(FetchError::Timeout);
            }
        }
    }
    decoder.finish()?;
    Ok(Response { content_type, wire_bytes })
}

/// Where decoded bytes go: the body buffer, within the limit and the reservation.
struct Sink<'a> {
    out: &'a mut Body,
    limit: u64,
    reservation: Option<&'a mut Reservation>,
    /// Why the last write was refused, for [`Sink::error`].
    refused: Option<FetchError>,
}

impl Sink<'_> {
    /// Makes room for `more` bytes, or says why not (the limit, or the memory budget).
    fn reserve(&mut self, more: usize) -> Result<(), std::io::Error> {
        let want = self.out.len() as u64 + more as u64;
        if want > self.limit {
            self.refused = Some(FetchError::BodyTooLarge(self.limit));
            return Err(std::io::Error::other("body size limit exceeded"));
        }
        if let Some(r) = self.reservation.as_deref_mut()
            && let Err(e) = r.grow_to(want, self.limit)
        {
            self.refused = Some(FetchError::Memory(e));
            return Err(std::io::Error::other("memory budget"));
        }
        self.out.reserve(want as usize, self.limit as usize);
        Ok(())
    }

    /// The error a failed write stands for.
    fn error(&mut self, e: std::io::Error) -> FetchError {
        self.refused.take().unwrap_or(FetchError::Http(e.to_string()))
    }
}

impl std::io::Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.reserve(buf.len())?;
        self.out.extend(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The body's decoder, writing into a [`Sink`].
enum Decoder<'a> {
    Identity(Sink<'a>),
    Gzip(flate2::write::MultiGzDecoder<Sink<'a>>),
    Deflate(flate2::write::ZlibDecoder<Sink<'a>>),
}

impl<'a> Decoder<'a> {
    fn sink(&mut self) -> &mut Sink<'a> {
        match self {
            Decoder::Identity(s) => s,
            Decoder::Gzip(d) => d.get_mut(),
            Decoder::Deflate(d) => d.get_mut(),
        }
    }

    /// Bytes decoded so far.
    fn decoded(&mut self) -> usize {
        self.sink().out.len()
    }

    fn encoding(&self) -> &'static str {
        match self {
            Decoder::Identity(_) => "identity",
            Decoder::Gzip(_) => "gzip",
            Decoder::Deflate(_) => "deflate",
        }
    }

    /// Decodes `chunk` of the wire bytes into the sink.
    fn write(&mut self, chunk: &[u8]) -> Result<(), FetchError> {
        let r = match self {
            Decoder::Identity(s) => s.write_all(chunk),
            Decoder::Gzip(d) => d.write_all(chunk),
            Decoder::Deflate(d) => d.write_all(chunk),
        };
        r.map_err(|e| self.failed(e))
    }

    /// The end of the body: a compressed stream must be complete.
    fn finish(mut self) -> Result<(), FetchError> {
        let r = match &mut self {
            Decoder::Identity(_) => Ok(()),
            Decoder::Gzip(d) => d.try_finish(),
            Decoder::Deflate(d) => d.try_finish(),
        };
        r.map_err(|e| self.failed(e))
    }

    /// The error for a failed write or finish: a refusal of the sink, or a decoding error.
    fn failed(&mut self, e: std::io::Error) -> FetchError {
        let encoding = self.encoding();
        match self.sink().refused.take() {
            Some(refused) => refused,
            None => FetchError::Decode { encoding, error: e },
        }
    }
}

/// Decodes `wire` (split into `frame`-byte pieces) as `encoding` into a buffer, with `limit`.
#[cfg(test)]
fn decode_all(encoding: Encoding, wire: &[u8], frame: usize, limit: u64) -> Result<Vec<u8>, FetchError> {
    let mut out = Body::default();
    let sink = Sink { out: &mut out, limit, reservation: None, refused: None };
    let mut d = match encoding {
        Encoding::Identity => Decoder::Identity(sink),
        Encoding::Gzip => Decoder::Gzip(flate2::write::MultiGzDecoder::new(sink)),
        Encoding::Deflate => Decoder::Deflate(flate2::write::ZlibDecoder::new(sink)),
    };
    for chunk in wire.chunks(frame.max(1)) {
        d.write(chunk)?;
    }
    d.finish()?;
    Ok(out.as_slice().to_vec())
}

/// Flattens an error and its sources into one line, as Go's wrapped errors read.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let t = src.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = src.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn half(mut v: Vec<u8>) -> Vec<u8> {
        v.truncate(v.len() / 2);
        v
    }

    #[test]
    fn bodies_decode_within_the_limit() {
        let page = b"m 1\n".repeat(10_000);
        let two_members = [gzip(&page[..20_000]), gzip(&page[20_000..])].concat();
        let bomb = [gzip(&vec![b'a'; 1 << 20]), gzip(&vec![b'a'; 1 << 20])].concat().repeat(8);
        // (encoding, wire bytes, limit, outcome, why)
        type Case<'a> = (Encoding, Vec<u8>, u64, Result<usize, &'a str>, &'a str);
        let cases: Vec<Case> = vec![
            (Encoding::Identity, page.clone(), 1 << 20, Ok(page.len()), "plain"),
            (Encoding::Gzip, gzip(&page), 1 << 20, Ok(page.len()), "gzip"),
            (Encoding::Gzip, two_members, 1 << 20, Ok(page.len()), "two gzip members, as Go reads them"),
            (Encoding::Deflate, zlib(&page), 1 << 20, Ok(page.len()), "deflate (zlib)"),
            (Encoding::Identity, page.clone(), 1000, Err("body size limit exceeded"), "plain over the limit"),
            (Encoding::Gzip, gzip(&page), 1000, Err("body size limit exceeded"), "decoded bytes count"),
            (Encoding::Gzip, bomb, 3 << 20, Err("body size limit exceeded"), "a bomb stops at the limit"),
            (Encoding::Gzip, half(gzip(&page)), 1 << 20, Err("decoding the gzip body failed"), "truncated"),
            (
                Encoding::Deflate,
                half(zlib(&page)),
                1 << 20,
                Err("decoding the deflate body failed"),
                "truncated",
            ),
            (
                Encoding::Gzip,
                b"not gzip at all".to_vec(),
                1 << 20,
                Err("decoding the gzip body failed"),
                "garbage",
            ),
        ];
        for (encoding, wire, limit, want, why) in cases {
            for frame in [7, 16 << 10] {
                let got = decode_all(encoding, &wire, frame, limit);
                match (&got, want) {
                    (Ok(out), Ok(n)) => assert_eq!(out.len(), n, "{why}, {frame}-byte frames"),
                    (Err(e), Err(w)) => {
                        assert!(e.to_string().starts_with(w), "{why}, {frame}-byte frames: {e}")
                    }
                    _ => panic!("{why}, {frame}-byte frames: got {:?}, want {want:?}", got.map(|o| o.len())),
                }
            }
        }
    }
}
