//! One scrape request: GET a target's page into a caller-owned buffer.
//!
//! What this is: the HTTP part of a scrape, with the headers Prometheus sends (`Accept` for the
//! formats we parse, `Accept-Encoding: gzip`, `X-Prometheus-Scrape-Timeout-Seconds`), the timeout,
//! gzip decoding and the body size limit, all into buffers the scrape loop reuses between scrapes.
//! What this is not: parsing; the bytes are handed on untouched with the response content type.

use std::io::Read;

use bytes::{Buf, Bytes};
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderValue};

use crate::http_client::Client;

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
    /// The timeout elapsed before the whole body arrived.
    #[error("context deadline exceeded")]
    Timeout,
    /// The (decompressed) body is over `body_size_limit`.
    #[error("body size limit exceeded ({0} bytes)")]
    BodyTooLarge(u64),
    /// The gzip stream is corrupt or truncated.
    #[error("gzip decoding failed: {0}")]
    Gzip(std::io::Error),
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
    /// Body limit in bytes after decompression; 0 = none.
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
    /// The decoded page.
    pub body: Vec<u8>,
    raw: Vec<u8>,
}

/// Buffers kept for reuse, at most [`POOL_MAX_BUFFERS`].
static POOL: std::sync::Mutex<Vec<Buffers>> = std::sync::Mutex::new(Vec::new());
/// More than this many scrapes in flight at once is rare on one node; beyond it, buffers are
/// freed after use rather than kept.
const POOL_MAX_BUFFERS: usize = 8;
/// Buffers grown past this (a very large page) are freed after use, not kept for everyone.
const POOL_MAX_BUFFER_BYTES: usize = 4 << 20;

impl Buffers {
    /// Buffers from the pool, or new empty ones.
    pub fn take() -> Buffers {
        POOL.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_default()
    }

    /// Returns the buffers to the pool (or frees them; see [`POOL_MAX_BUFFER_BYTES`]).
    pub fn give_back(self) {
        if self.body.capacity().max(self.raw.capacity()) > POOL_MAX_BUFFER_BYTES {
            return;
        }
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

/// Performs one scrape request. The body ends up in `bufs.body`.
pub async fn fetch(client: &Client, req: &Request, bufs: &mut Buffers) -> Result<Response, FetchError> {
    match tokio::time::timeout(req.timeout, fetch_inner(client, req, bufs)).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::Timeout),
    }
}

async fn fetch_inner(client: &Client, req: &Request, bufs: &mut Buffers) -> Result<Response, FetchError> {
    let mut builder = hyper::Request::get(req.uri.clone())
        .header(header::ACCEPT, req.accept.clone())
        .header(header::USER_AGENT, crate::USER_AGENT)
        .header("X-Prometheus-Scrape-Timeout-Seconds", format!("{}", req.timeout.as_secs_f64()));
    builder = builder.header(header::ACCEPT_ENCODING, if req.gzip { "gzip" } else { "identity" });
    if let Some(auth) = &req.auth {
        builder = builder.header(header::AUTHORIZATION, auth.clone());
    }
    let request = builder.body(Full::new(Bytes::new())).map_err(|e| FetchError::Http(e.to_string()))?;
    let resp = client.request(request).await.map_err(|e| FetchError::Http(error_chain(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(FetchError::Status(status.to_string()));
    }
    let content_type =
        resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let gzipped = resp
        .headers()
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let limit = if req.body_limit == 0 { u64::MAX } else { req.body_limit };

    // Read frame by frame into the reused buffer, stopping as soon as the limit is crossed, so a
    // huge or endless body costs at most `limit` bytes of memory.
    let target = if gzipped { &mut bufs.raw } else { &mut bufs.body };
    target.clear();
    let mut body = resp.into_body();
    let mut wire_bytes: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| FetchError::Http(error_chain(&e)))?;
        if let Ok(mut data) = frame.into_data() {
            wire_bytes += data.remaining() as u64;
            if !gzipped && wire_bytes > limit {
                return Err(FetchError::BodyTooLarge(limit));
            }
            while data.has_remaining() {
                let chunk = data.chunk();
                target.extend_from_slice(chunk);
                let n = chunk.len();
                data.advance(n);
            }
        }
    }
    if gzipped {
        bufs.body.clear();
        // Read at most limit+1 bytes: one byte past the limit proves the body is too large
        // without inflating a gzip bomb any further.
        let mut dec = flate2::bufread::GzDecoder::new(&bufs.raw[..]).take(limit.saturating_add(1));
        dec.read_to_end(&mut bufs.body).map_err(FetchError::Gzip)?;
        if bufs.body.len() as u64 > limit {
            return Err(FetchError::BodyTooLarge(limit));
        }
    }
    Ok(Response { content_type, wire_bytes })
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
