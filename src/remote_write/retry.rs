//! One remote-write request, retried until it is accepted, refused, or the sender is stopped.
//!
//! What this is: the HTTP POST with the spec's headers, the classification of its outcome
//! (2xx sent; 5xx, 429 when enabled, network errors and timeouts retried; anything else dropped),
//! and the wait between tries (jittered exponential backoff, or the server's `Retry-After`).
//! What this is not: batching or encoding; the body arrives encoded and is resent byte for byte,
//! so a retry carries exactly the samples (and timestamps) of the first try. Whether a 2.0 body
//! is refused as unsupported is decided here ([`Outcome::Unsupported`]); what to do about it
//! (re-encode as 1.0) is [`super::request`]'s job.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};

use http_body_util::{BodyExt as _, Full};
use hyper::StatusCode;
use hyper::header::{self, HeaderName, HeaderValue};
use rand::Rng as _;
use tokio_util::sync::CancellationToken;

use super::config::{TenantConfig, header as rw_header};
use super::metrics::RemoteWriteMetrics;
use super::record::{Body, Proto};
use crate::config::common::HttpClientConfig;
use crate::http_client::{self, Client};

/// Most bytes of an error response body kept for the log (Prometheus keeps 1 KiB too).
const ERROR_BODY_LOG_BYTES: usize = 1024;
/// Most bytes of a response body read (and discarded) so the connection can be reused; a longer
/// body is abandoned with its connection.
const DRAIN_BODY_MAX_BYTES: usize = 64 * 1024;
/// Longest `Retry-After` honoured. A server may ask for more, but an agent without a disk
/// buffer that stops sending for longer only turns back-pressure into lost scrapes.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(300);
/// Backoff delays are shortened by a random fraction below this, so shards and agents that
/// failed together don't retry in lock-step, while delays still never shrink between tries
/// (each is at least 0.8 × the last).
const JITTER_FRACTION: f64 = 0.2;

/// The receiver of one endpoint (the remote-write server, never a scrape target): everything
/// needed to POST to it.
pub(crate) struct Receiver {
    /// Endpoint name for logs.
    pub name: String,
    /// Where to POST.
    pub uri: hyper::Uri,
    /// Configured extra headers (checked: none is reserved).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Auth settings; credential files are read per request.
    pub http: Auth,
    /// The pooled client.
    pub client: Client,
    /// Deadline of one try, body included.
    pub remote_timeout: Duration,
    /// First backoff.
    pub min_backoff: Duration,
    /// Longest backoff.
    pub max_backoff: Duration,
    /// Whether 429 is retried.
    pub retry_on_http_429: bool,
    /// Split requests by tenant (read by [`super::request`]).
    pub tenant: Option<TenantConfig>,
    /// Where outcomes are counted.
    pub metrics: Arc<RemoteWriteMetrics>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").field("name", &self.name).field("uri", &self.uri).finish_non_exhaustive()
    }
}

/// How requests authenticate: the HTTP client config's header (credential files read per
/// request; oauth2 is the client's own), or a SigV4 signature over the body.
#[derive(Debug, Default)]
pub(crate) struct Auth {
    /// basic/bearer/authorization settings.
    pub http: HttpClientConfig,
    /// Signs every request when set (`sigv4`).
    pub sigv4: Option<crate::sigv4::Signer>,
}

/// The `X-Prometheus-Remote-Write-*-Written` headers of a 2xx answer (RW 2.0 §"Response").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Written {
    /// Samples the receiver says it wrote.
    pub samples: Option<u64>,
    /// Native histograms written.
    pub histograms: Option<u64>,
    /// Exemplars written.
    pub exemplars: Option<u64>,
}

impl Written {
    fn from_headers(h: &hyper::HeaderMap) -> Written {
        let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
        Written {
            samples: get(rw_header::SAMPLES_WRITTEN),
            histograms: get(rw_header::HISTOGRAMS_WRITTEN),
            exemplars: get(rw_header::EXEMPLARS_WRITTEN),
        }
    }

    fn any(&self) -> bool {
        self.samples.is_some() || self.histograms.is_some() || self.exemplars.is_some()
    }
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Accepted (2xx).
    Sent,
    /// A 2.0 body the receiver does not take (415; 400 before any 2.0 request was confirmed;
    /// a 2xx without `*-Written` headers): nothing was counted; the caller re-encodes as 1.0.
    Unsupported,
    /// Refused with a non-retryable answer; the samples are dropped.
    Failed,
    /// The sender was stopped before the request was accepted.
    Cancelled,
}

/// One failed try. `Retry` errors (5xx, 429 when enabled, network, timeout) are retried; `Drop`
/// errors (other non-2xx answers) drop the request's samples, as the spec requires.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TryError {
    /// Worth retrying, after `retry_after` if the server said so.
    #[error("{reason}")]
    Retry {
        /// What happened.
        reason: String,
        /// The server's `Retry-After`, already capped.
        retry_after: Option<Duration>,
    },
    /// Not worth retrying.
    #[error("HTTP {status}: {body}")]
    Drop {
        /// The status.
        status: StatusCode,
        /// The start of the response body, verbatim (lossy only for invalid UTF-8).
        body: String,
    },
}

impl Receiver {
    /// Sends `body` until it is accepted, refused, found unsupported, or `stop` is cancelled.
    /// Counts every outcome but [`Outcome::Unsupported`] in the metrics.
    pub(crate) async fn send(&self, body: &Body, stop: &CancellationToken) -> Outcome {
        let (samples, highest_ms) = (body.samples, body.highest_ms);
        let m = &*self.metrics;
        let mut backoff = self.min_backoff;
        let mut tries: u32 = 0;
        loop {
            if stop.is_cancelled() {
                return Outcome::Cancelled;
            }
            tries += 1;
            let result = tokio::select! {
                biased;
                _ = stop.cancelled() => return Outcome::Cancelled,
                r = tokio::time::timeout(self.remote_timeout, self.try_once(body)) => r,
            };
            let err = match result {
                Ok(Ok(written)) => {
                    if body.proto == Proto::V2 {
                        // RW 2.0: a 2xx without any Written header SHOULD be read as 415 (a 1.x
                        // receiver that decoded an empty WriteRequest from a 2.0 body).
                        if !written.any() {
                            return Outcome::Unsupported;
                        }
                        m.v2_confirmed.store(true, Relaxed);
                    }
                    self.count_written(body, written);
                    m.samples_sent_total.fetch_add(samples as u64, Relaxed);
                    m.exemplars_sent_total.fetch_add(body.exemplars as u64, Relaxed);
                    m.bytes_sent_total.fetch_add(body.bytes.len() as u64, Relaxed);
                    m.requests_success_total.fetch_add(1, Relaxed);
                    m.highest_sent_timestamp_ms.fetch_max(highest_ms, Relaxed);
                    if tries > 1 {
                        tracing::info!(endpoint = %self.name, samples, tries, "Remote write succeeded after retrying.");
                    }
                    return Outcome::Sent;
                }
                Ok(Err(TryError::Drop { status, .. }))
                    if body.proto == Proto::V2
                        && (status == StatusCode::UNSUPPORTED_MEDIA_TYPE
                            || (status == StatusCode::BAD_REQUEST && !m.v2_confirmed.load(Relaxed))) =>
                {
                    // RW 2.0: 415 means "not this message"; 1.x receivers answer 400 to a body
                    // they cannot parse. A 400 after 2.0 was confirmed is a real refusal.
                    return Outcome::Unsupported;
                }
                Ok(Err(e)) => e,
                Err(_elapsed) => TryError::Retry {
                    reason: format!("no response within remote_timeout ({:?})", self.remote_timeout),
                    retry_after: None,
                },
            };
            m.record_error(err.to_string());
            match err {
                TryError::Drop { status, body: text } => {
                    m.samples_failed_total.fetch_add(samples as u64, Relaxed);
                    m.requests_failed_total.fetch_add(1, Relaxed);
                    tracing::error!(
                        endpoint = %self.name,
                        status = status.as_u16(),
                        samples,
                        response = %text,
                        "Remote write refused a batch with a non-retryable status; its samples are dropped."
                    );
                    return Outcome::Failed;
                }
                TryError::Retry { reason, retry_after } => {
                    m.requests_retried_total.fetch_add(1, Relaxed);
                    m.samples_retried_total.fetch_add(samples as u64, Relaxed);
                    let wait = match retry_after {
                        Some(d) => d,
                        None => jittered(backoff, rand::rng().random::<f64>()),
                    };
                    tracing::warn!(
                        endpoint = %self.name,
                        error = %reason,
                        samples,
                        tries,
                        wait_ms = wait.as_millis() as u64,
                        retry_after = retry_after.is_some(),
                        "Remote write failed; retrying the same request."
                    );
                    tokio::select! {
                        biased;
                        _ = stop.cancelled() => return Outcome::Cancelled,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    backoff = (backoff * 2).min(self.max_backoff);
                }
            }
        }
    }

    /// Counts the `*-Written` headers; a 2.0 answer confirming fewer samples or exemplars than
    /// sent is counted, and logged the first time only (the receiver dropped some, e.g. as
    /// duplicates or out of order, or does not confirm exemplars at all: then every request
    /// would log it).
    fn count_written(&self, body: &Body, w: Written) {
        let m = &*self.metrics;
        m.samples_written_total.fetch_add(w.samples.unwrap_or(0), Relaxed);
        m.histograms_written_total.fetch_add(w.histograms.unwrap_or(0), Relaxed);
        m.exemplars_written_total.fetch_add(w.exemplars.unwrap_or(0), Relaxed);
        if body.proto != Proto::V2 {
            return; // RW 2.0: never read 1.0 answers' headers (a missing header is not 0 there).
        }
        let samples_short = (body.samples as u64).saturating_sub(w.samples.unwrap_or(0));
        let exemplars_short = (body.exemplars as u64).saturating_sub(w.exemplars.unwrap_or(0));
        if samples_short > 0 || exemplars_short > 0 {
            m.samples_unwritten_total.fetch_add(samples_short, Relaxed);
            m.exemplars_unwritten_total.fetch_add(exemplars_short, Relaxed);
            m.requests_partially_written_total.fetch_add(1, Relaxed);
            if !m.partially_written_warned.swap(true, Relaxed) {
                tracing::warn!(
                    endpoint = %self.name,
                    samples = body.samples,
                    samples_written = w.samples.unwrap_or(0),
                    exemplars = body.exemplars,
                    exemplars_written = w.exemplars.unwrap_or(0),
                    "Remote write 2.0 receiver accepted the request but confirmed fewer items than \
                     sent. Logged once for this endpoint; trawl_remote_write_requests_partially_written_total \
                     and trawl_remote_write_unwritten_total count every occurrence."
                );
            }
        }
    }

    /// One POST, with the response classified.
    async fn try_once(&self, body: &Body) -> Result<Written, TryError> {
        let mut builder = hyper::Request::post(self.uri.clone())
            .header(header::CONTENT_ENCODING, "snappy")
            .header(header::CONTENT_TYPE, body.proto.content_type())
            .header(rw_header::VERSION, body.proto.version())
            .header(header::USER_AGENT, crate::USER_AGENT);
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        if let Some(tenant) = &body.tenant {
            builder = builder.header(rw_header::ORG_ID, tenant);
        }
        // A credentials file that can't be read may be mid-rotation: retry, as Prometheus does
        // for any error of its HTTP round trip.
        match http_client::auth_header(&self.http.http) {
            Ok(Some(auth)) => builder = builder.header(header::AUTHORIZATION, auth),
            Ok(None) => {}
            Err(e) => return Err(TryError::Retry { reason: format!("credentials: {e}"), retry_after: None }),
        }
        let mut request = builder.body(Full::new(body.bytes.clone())).map_err(|e| TryError::Retry {
            reason: format!("building the request: {e}"),
            retry_after: None,
        })?;
        // SigV4 signs the headers above and the body, so it comes last; credentials that cannot
        // be fetched (STS or a metadata endpoint down) are retried like a network error.
        if let Some(signer) = &self.http.sigv4 {
            signer
                .sign(&mut request, &body.bytes, SystemTime::now())
                .await
                .map_err(|e| TryError::Retry { reason: e.to_string(), retry_after: None })?;
        }
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| TryError::Retry { reason: error_chain(&e), retry_after: None })?;
        let status = response.status();
        let retry_after =
            response.headers().get(header::RETRY_AFTER).and_then(|v| parse_retry_after(v, SystemTime::now()));
        let written = Written::from_headers(response.headers());
        let mut body = response.into_body();
        if status.is_success() {
            // Never interpreted; read only so the connection goes back to the pool.
            drain(&mut body, DRAIN_BODY_MAX_BYTES, None).await;
            return Ok(written);
        }
        let mut text = Vec::new();
        drain(&mut body, DRAIN_BODY_MAX_BYTES, Some(&mut text)).await;
        let text = truncate_utf8_lossy(&text, ERROR_BODY_LOG_BYTES);
        let retryable =
            status.is_server_error() || (status == StatusCode::TOO_MANY_REQUESTS && self.retry_on_http_429);
        if retryable {
            Err(TryError::Retry { reason: format!("HTTP {status}: {text}"), retry_after })
        } else {
            Err(TryError::Drop { status, body: text })
        }
    }
}

/// Reads up to `max` bytes of `body`, keeping the first [`ERROR_BODY_LOG_BYTES`] in `keep`.
async fn drain(body: &mut hyper::body::Incoming, max: usize, mut keep: Option<&mut Vec<u8>>) {
    let mut read = 0;
    while read <= max {
        let Some(Ok(frame)) = body.frame().await else { return };
        if let Ok(data) = frame.into_data() {
            read += data.len();
            if let Some(keep) = keep.as_deref_mut() {
                let room = ERROR_BODY_LOG_BYTES.saturating_sub(keep.len());
                keep.extend_from_slice(&data[..data.len().min(room)]);
            }
        }
    }
}

/// The first `max` bytes as text, cut at a character boundary, invalid UTF-8 replaced.
fn truncate_utf8_lossy(bytes: &[u8], max: usize) -> String {
    let mut s = String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).into_owned();
    if bytes.len() > max {
        // The cut may have split a character into a trailing U+FFFD; drop it and mark the cut.
        if s.ends_with('\u{FFFD}') {
            s.pop();
        }
        s.push('…');
    }
    s
}

/// `backoff` shortened by `unit × JITTER_FRACTION` of itself; `unit` is uniform in [0, 1).
fn jittered(backoff: Duration, unit: f64) -> Duration {
    backoff.mul_f64(1.0 - JITTER_FRACTION * unit.clamp(0.0, 1.0))
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3), capped at
/// [`RETRY_AFTER_MAX`]. A date in the past, zero or garbage gives `None`: use the backoff.
fn parse_retry_after(v: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let s = v.to_str().ok()?.trim();
    let d = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        // Digits only; too many digits to parse means "very long".
        Duration::from_secs(s.parse::<u64>().unwrap_or(u64::MAX).min(RETRY_AFTER_MAX.as_secs()))
    } else {
        httpdate::parse_http_date(s).ok()?.duration_since(now).ok()?
    };
    (!d.is_zero()).then(|| d.min(RETRY_AFTER_MAX))
}

/// An error with its sources, `a: b: c`, so "connection refused" isn't hidden behind
/// "client error (Connect)".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let v = |s: &str| parse_retry_after(&HeaderValue::from_str(s).unwrap(), now);
        assert_eq!(v("1"), Some(Duration::from_secs(1)));
        assert_eq!(v(" 30 "), Some(Duration::from_secs(30)));
        assert_eq!(v("0"), None, "zero: fall back to the backoff");
        assert_eq!(v("86400"), Some(RETRY_AFTER_MAX), "capped");
        assert_eq!(v("99999999999999999999999"), Some(RETRY_AFTER_MAX), "overflow is capped, not an error");
        assert_eq!(v("-5"), None);
        assert_eq!(v("soon"), None);
        let in_ten = httpdate::fmt_http_date(now + Duration::from_secs(10));
        assert_eq!(v(&in_ten), Some(Duration::from_secs(10)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(10));
        assert_eq!(v(&past), None, "a date in the past: use the backoff");
    }

    #[test]
    fn jitter_never_lengthens_and_never_shrinks_much() {
        let b = Duration::from_millis(1000);
        assert_eq!(jittered(b, 0.0), b);
        assert!(jittered(b, 0.999) >= Duration::from_millis(800));
        assert!(jittered(b, 0.5) < b);
    }

    #[test]
    fn truncation_keeps_text_verbatim() {
        assert_eq!(truncate_utf8_lossy(b"out of order sample", 1024), "out of order sample");
        assert_eq!(truncate_utf8_lossy("ééé".as_bytes(), 3), "é…", "cut mid-character");
        assert_eq!(truncate_utf8_lossy(b"abcdef", 3), "abc…");
    }
}
