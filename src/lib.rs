//! trawl: a Prometheus-compatible metrics scraper built to run as one small pod per node.
//!
//! # Overview
//!
//! A sample's path, in module order:
//!
//! ```text
//!  config ──► discovery ──► relabel (targets) ──► scrape loop per target
//!  (Prometheus or                                   │ fetch: GET, gzip, body cap
//!   collector dialect)                              │ parse: exposition tokens, zero-copy
//!                                                   │ labels + metric relabel (cached per series,
//!                                                   │   label sets and strings interned)
//!                                                   │ staleness, up/scrape_* series
//!                                                   ▼
//!                                        ring: bounded hand-off (batches)
//!                                                   │ fan-out: every endpoint gets every sample
//!                                                   ▼
//!                      remote_write: queue → request (tenant split, RW 2.0 or 1.0, snappy)
//!                                    → POST, retry, backoff; disk buffer when the receiver lags
//!                      (no remote_write configured: printed to stdout as exposition text)
//! ```
//!
//! Around it: [`budget`] (`--memory.limit`: scrapes skip while memory is over budget),
//! [`staleness`] (last series per target on disk, for stale markers after a restart), [`admin`]
//! (`/metrics`, `/targets`, `/service-discovery`, the targets API, `/-/reload`), and reload in
//! place ([`app`]: unchanged jobs keep running, changed ones are reconfigured).
//!
//! # Tasks
//!
//! Only [`app`] spawns long-lived tasks: one discovery task per job with file SD, one manager per
//! job ([`scrape::run_job`]), one scrape loop per target, one fan-out task, the remote-write
//! sender tasks of each endpoint, and the web server ([`admin`]).
//!
//! # Memory bounds
//!
//! - Scrape bodies: `body_size_limit` per target (after gzip decoding), buffers reused.
//! - Hand-off: [`app::HANDOFF_BATCHES`] scrapes in flight; scrape loops wait when it is full.
//! - Remote write: `queue_config.capacity` samples per endpoint; the fan-out waits when full.
//! - Series cache: per target, entries unused for two scrapes are freed, with the interned label
//!   sets and strings only they used (and each set's cached remote-write label fields).
//!   `tests/pipeline_alloc.rs` checks that churn does not grow the heap.
//! - Overall: `--memory.limit` (default: 90 % of the cgroup limit) skips scrapes while resident
//!   memory is above 90 % of it.
//!
//! # Disk (`--storage.path` only)
//!
//! - Remote write: a segment log per endpoint of requests the receiver did not take within
//!   `batch_send_deadline`, replayed in order; capped by `disk_buffer.max_bytes` (default 1 GiB)
//!   and `disk_buffer.max_age` (see `remote_write::disk`).
//! - Staleness: one file per target with its last series set ([`staleness`]).
//! - One process per path: `DIR/lock` is held exclusively while trawl runs.
//! - The disk buffer's writes, fsyncs and reads run in Tokio's blocking pool, so an outage never
//!   stalls a runtime worker that scrapes.
//!
//! # Unsafe
//!
//! None: `unsafe_code` is denied crate-wide.

pub mod admin;
pub mod app;
pub mod budget;
pub mod config;
pub mod discovery;
pub mod encode;
pub mod fetch;
pub mod http_client;
pub mod labels;
pub mod parse;
pub mod prompb;
pub mod relabel;
pub mod remote_write;
pub mod ring;
pub mod scrape;
pub mod sigv4;
pub mod staleness;
pub mod telemetry;

/// The `User-Agent` trawl sends on scrapes and remote writes.
pub const USER_AGENT: &str = concat!("trawl/", env!("CARGO_PKG_VERSION"));
