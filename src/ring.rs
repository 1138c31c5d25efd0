//! The hand-off between scrape tasks and the remote-write senders.
//!
//! In this first form a batch of samples per scrape travels through a bounded Tokio channel per
//! endpoint; the lock-free sample ring over interned series ids replaces it (issue: hot path).
//! What stays: the queue is bounded, and a full queue is back-pressure on the scraper, counted,
//! never a silent drop.

use std::sync::Arc;

use crate::labels::Labels;

/// One sample on its way out: the full, sorted label set (with `__name__`), a timestamp in
/// milliseconds since the epoch and the value (StaleNaN marks staleness).
#[derive(Clone, Debug)]
pub struct Sample {
    /// The series' labels, shared between the samples of a series and across endpoints.
    pub series: Arc<Labels>,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The value; see [`STALE_NAN`] for staleness markers.
    pub value: f64,
}

/// A scrape's worth of samples, handed over as one unit so per-series order is kept.
pub type Batch = Vec<Sample>;

/// Prometheus' staleness marker: a NaN with this exact bit pattern (`value.StaleNaN`).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker as an f64. Compare with [`is_stale_nan`], never with `==`.
pub const STALE_NAN: f64 = f64::from_bits(STALE_NAN_BITS);

/// Whether `v` is the staleness marker (not just any NaN).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}
