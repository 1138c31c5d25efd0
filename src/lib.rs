//! trawl: a Prometheus-compatible metrics scraper built to run as one small pod per node.
//!
//! # Overview
//!
//! A sample's path, in module order:
//!
//! ```text
//!  config ──► discovery ──► relabel (targets) ──► scrape: a loop per target
//!  (Prometheus or                                   │ fetch: GET, gzip, body cap
//!   collector dialect)                              │ parse: exposition tokens, zero-copy (text,
//!                                                   │   OpenMetrics; a protobuf page becomes text
//!                                                   │   lines plus side lists, scrape::protobuf;
//!                                                   │   native histograms: histogram)
//!                                                   │ page: series table (16 B a series), relabeling
//!                                                   │   once per new series, the series' record
//!                                                   │   written from the page bytes, staleness
//!                                                   │   from the compressed last series set
//!                                                   ▼
//!                                   batch: records + points, bounded hand-off (channel)
//!                                                   │ fan-out: every endpoint gets every sample
//!                                                   ▼
//!                      remote_write: queue → shard → request (tenant split; 1.0: the
//!                                    batch frames as they lie; 2.0: interned; snappy) → POST, retry,
//!                                    backoff; disk buffer when the receiver lags
//!                      (no remote_write configured: printed to stdout as exposition text)
//! ```
//!
//! Around it: [`budget`] (`--memory.limit`: a ceiling, kept by refusing the scrape that would
//! cross it),
//! [`staleness`] (last series per target on disk, for stale markers after a restart), [`admin`]
//! (`/metrics`, `/targets`, `/service-discovery` with its relabeling debugger, the targets and
//! status APIs, `/-/reload`), [`logging`] (logfmt or JSON, the level re-applied at reload), and
//! reload in place ([`app`]: unchanged jobs keep running, changed ones are reconfigured).
//!
//! # Tasks
//!
//! Long-lived tasks are spawned in five places, each owning what it spawns (a cancellation
//! token or a channel it closes ends them):
//!
//! - [`app`]: the fan-out, one manager per job ([`scrape::run_job`]), the budget sampler, the
//!   SIGHUP forwarder and the web server ([`admin`]);
//! - [`scrape`]: a job's manager, one scrape loop per target;
//! - [`discovery`]: per job, one task per provider (file, HTTP, Kubernetes) and the task that
//!   merges them; the Kubernetes provider one watch task per watched resource and one that builds
//!   targets from them (`discovery::kubernetes`);
//! - [`remote_write`]: per endpoint, its queue's shards, resharding loop and disk replay;
//! - [`admin`]: one task per HTTP connection.
//!
//! # Memory bounds
//!
//! - Per target: 16 bytes per series in its table and its compressed last series set (a few
//!   bytes per series); no label text per series (`tests/pipeline_alloc.rs`: ≤ 48 B per series,
//!   steady and under churn). Entries unused for two scrapes are evicted.
//! - Scrape bodies: `body_size_limit` per target, 64 MiB when none is set
//!   ([`fetch::DEFAULT_BODY_LIMIT_BYTES`]), counted in decoded bytes as they arrive (gzip and
//!   deflate included) and checked against `Content-Length` before the first byte; bodies up to
//!   4 MiB come from a process-wide pool of at most 8 buffers, bigger ones from anonymous maps
//!   unmapped after the scrape. Time: `scrape_timeout` covers connect, headers, body, decoding
//!   and parsing; pages over 4 MiB are parsed in `block_in_place`, and decoding yields to the
//!   runtime after every MiB it makes of one frame.
//! - Hand-off: [`app::HANDOFF_BATCHES`] scrapes in flight; a scrape loop reserves its place
//!   before scraping, so waiting loops hold nothing.
//! - Remote write: `queue_config.capacity` samples per endpoint (their records, ~100–300 bytes
//!   each); the fan-out waits when full.
//! - Overall: `--memory.limit` (default: 90 % of the cgroup limit) is a ceiling: a scrape reserves
//!   its memory before it grows, and the one whose page or samples would cross the limit fails
//!   (`up` 0, the reason as `lastError`), leaving an eighth of it for small scrapes.
//!
//! # Disk (`--storage.path` only)
//!
//! - Remote write: a segment log per endpoint of requests the receiver did not take within
//!   `batch_send_deadline`, replayed in order; capped by `disk_buffer.max_bytes` (default 1 GiB)
//!   and `disk_buffer.max_age` (see `remote_write::disk`).
//! - Staleness: one file per target with its last series set ([`staleness`]).
//! - One process per path: `DIR/lock` is held exclusively while trawl runs.
//! - The disk buffer's writes, fsyncs and reads, and the staleness files' reads, writes and
//!   removals, run in Tokio's blocking pool, so a slow disk or an outage never stalls a runtime
//!   worker that scrapes.
//!
//! # Unsafe
//!
//! None: `unsafe_code` is denied crate-wide.

// Control plane.
pub mod config;
pub mod discovery;
pub mod relabel;
// Data plane, in the order a page goes through it: scraped (fetched, parsed, its series
// labelled), handed off in batches, queued per endpoint, encoded into the protobuf messages,
// and POSTed.
pub mod scrape;
pub mod fetch;
pub mod parse;
pub mod labels;
pub mod histogram;
pub mod batch;
pub mod remote_write;
pub mod encode;
pub mod prompb;
// Around it.
pub mod staleness;
pub mod budget;
pub mod http_client;
pub mod sigv4;
pub mod telemetry;
pub mod logging;
pub mod admin;
pub mod app;
// For the fuzz targets only (`fuzz/`).
#[doc(hidden)]
pub mod fuzzing;

/// The `User-Agent` trawl sends on scrapes and remote writes.
pub const USER_AGENT: &str = concat!("trawl/", env!("CARGO_PKG_VERSION"));

/// Now, in milliseconds since the Unix epoch (0 if the clock is before it). The one wall-clock
/// reading of the self-metrics' timestamps and the remote-write age limits.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
