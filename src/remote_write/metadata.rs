//! Remote write 1.0 metadata: every `metadata_config.send_interval`, the TYPE, HELP and UNIT of
//! every metric family the active targets exposed, sent as `WriteRequest.metadata` in requests
//! of their own.
//!
//! What this is: Prometheus' `MetadataWatcher` and `QueueManager.AppendWatcherMetadata`. Each
//! interval (the first one after `send_interval`, as Prometheus' ticker does) the entries of
//! all active targets are collected, deduplicated on (family, type, help, unit) in the order
//! first seen, and sent in requests of at most `max_samples_per_send` entries, each retried as
//! a sample request is ([`super::retry`]); one that is refused is counted
//! (`trawl_remote_write_metadata_failed_total`) and logged, and the next one goes on. Remote
//! write 2.0 carries metadata inline with each series, so nothing is sent here while the
//! endpoint speaks 2.0 (Prometheus: "no op for any newer proto format"); after a fallback to
//! 1.0 it is. What this is not: where the entries come from (the scrape loops' family tables,
//! handed in as a [`MetadataSource`] by the app, so this floor imports nothing of scraping).
//!
//! With `tenant` configured, metadata goes to `tenant.default` (it belongs to no series, so to
//! no tenant label); without a default tenant it is not sent.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use prost::Message as _;
use tokio_util::sync::CancellationToken;

use super::config::MetadataConfig;
use super::record::{Body, Proto};
use super::retry::{Outcome, Receiver};
use crate::batch::Metadata;

/// The metric families of all active targets: (family name, its TYPE/HELP/UNIT), in any order,
/// duplicates allowed. Called once per `send_interval`.
pub type MetadataSource = Arc<dyn Fn() -> Vec<(Box<str>, Arc<Metadata>)> + Send + Sync>;

/// The entries of `all`, deduplicated on all four fields, in the order first seen.
fn unique(all: Vec<(Box<str>, Arc<Metadata>)>) -> Vec<(Box<str>, Arc<Metadata>)> {
    let mut seen = std::collections::HashSet::with_capacity(all.len());
    all.into_iter()
        .filter(|(name, m)| seen.insert((name.clone(), m.kind as u8, m.help.clone(), m.unit.clone())))
        .collect()
}

/// One request body (snappy-compressed `WriteRequest` with only `metadata`) for `entries`.
fn encode(entries: &[(Box<str>, Arc<Metadata>)]) -> Result<Bytes, snap::Error> {
    let req = crate::prompb::WriteRequest {
        timeseries: Vec::new(),
        metadata: entries
            .iter()
            .map(|(name, m)| crate::prompb::MetricMetadata {
                r#type: crate::encode::v2::metric_type(m.kind),
                metric_family_name: name.to_string(),
                help: m.help.clone(),
                unit: m.unit.clone(),
            })
            .collect(),
    };
    Ok(Bytes::from(snap::raw::Encoder::new().compress_vec(&req.encode_to_vec())?))
}

/// Sends the metadata of `source` to `receiver` every `cfg.send_interval` until `stop`.
pub(crate) async fn run(
    receiver: &Receiver,
    cfg: MetadataConfig,
    source: MetadataSource,
    stop: CancellationToken,
) {
    let tenant = match &receiver.tenant {
        None => None,
        Some(t) => match t.default.as_deref().map(hyper::header::HeaderValue::try_from) {
            Some(Ok(v)) => Some(v),
            _ => {
                tracing::info!(endpoint = %receiver.name, "Remote-write metadata is not sent: requests are split by tenant and no tenant.default is set.");
                return;
            }
        },
    };
    let interval = cfg.send_interval.get();
    let per_request = cfg.max_samples_per_send.max(1);
    let mut next = tokio::time::Instant::now() + interval;
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        next = tokio::time::Instant::now() + interval;
        if receiver.metrics.protocol_v2.load(Relaxed) {
            continue;
        }
        let entries = unique(source());
        for chunk in entries.chunks(per_request) {
            let bytes = match encode(chunk) {
                Ok(b) => b,
                Err(e) => {
                    receiver.metrics.metadata_failed_total.fetch_add(chunk.len() as u64, Relaxed);
                    tracing::error!(endpoint = %receiver.name, error = %e, "Remote-write metadata could not be encoded.");
                    continue;
                }
            };
            let len = bytes.len();
            let body = Body {
                bytes,
                proto: Proto::V1,
                samples: 0,
                exemplars: 0,
                highest_ms: 0,
                tenant: tenant.clone(),
            };
            match receiver.send(&body, &stop).await {
                Outcome::Sent => {
                    receiver.metrics.metadata_sent_total.fetch_add(chunk.len() as u64, Relaxed);
                    receiver.metrics.metadata_bytes_total.fetch_add(len as u64, Relaxed);
                }
                Outcome::Cancelled => return,
                Outcome::Failed | Outcome::Unsupported => {
                    receiver.metrics.metadata_failed_total.fetch_add(chunk.len() as u64, Relaxed);
                    tracing::error!(endpoint = %receiver.name, count = chunk.len(), "Remote-write metadata was refused; it is sent again at the next interval.");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::MetricType;

    fn md(kind: MetricType, help: &str) -> Arc<Metadata> {
        Arc::new(Metadata { kind, help: help.into(), unit: String::new() })
    }

    #[test]
    fn unique_keeps_the_first_of_equal_entries_in_order() {
        let a = md(MetricType::Counter, "A.");
        let all = vec![
            ("a_total".into(), a.clone()),
            ("b".into(), md(MetricType::Gauge, "B.")),
            // Another target's equal entry (another Arc): one entry.
            ("a_total".into(), md(MetricType::Counter, "A.")),
            // The same family with other help: both, as Prometheus' set keeps them.
            ("a_total".into(), md(MetricType::Counter, "Other.")),
        ];
        let got: Vec<(String, String)> =
            unique(all).into_iter().map(|(n, m)| (n.to_string(), m.help.clone())).collect();
        let want = [("a_total", "A."), ("b", "B."), ("a_total", "Other.")];
        assert_eq!(got, want.map(|(n, h)| (n.to_string(), h.to_string())));
    }

    #[test]
    fn requests_hold_only_metadata_with_prometheus_type_numbers() {
        let body = encode(&[
            ("http_requests_total".into(), md(MetricType::Counter, "Requests.")),
            ("latency_seconds".into(), md(MetricType::Histogram, "")),
        ])
        .unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let req = crate::prompb::WriteRequest::decode(raw.as_slice()).unwrap();
        assert!(req.timeseries.is_empty());
        let got: Vec<(i32, &str, &str)> =
            req.metadata.iter().map(|m| (m.r#type, m.metric_family_name.as_str(), m.help.as_str())).collect();
        // prompb.MetricMetadata.MetricType: COUNTER = 1, HISTOGRAM = 3.
        assert_eq!(got, [(1, "http_requests_total", "Requests."), (3, "latency_seconds", "")]);
    }
}
