//! One batch out of the queue → its requests: split by tenant, encoded as 2.0 or 1.0, sent, and
//! re-encoded as 1.0 when the receiver turns 2.0 down.
//!
//! What this is: the per-shard encoders and the protocol choice. An endpoint configured for 2.0
//! sends 2.0 until a request comes back [`Outcome::Unsupported`] (415; 400 before any 2.0
//! request was confirmed; a 2xx without `*-Written` headers, which is what a 1.x receiver
//! answers after decoding an empty `WriteRequest` from a 2.0 body: RW 2.0 says to read that as
//! 415). Then the endpoint switches to 1.0 for good (all shards: the flag is the endpoint's),
//! says so once at WARN, and the same samples are re-encoded and sent as 1.0, so nothing is
//! lost. What this is not: HTTP and retries ([`super::retry`]) or batching ([`super::queue`]).
//!
//! # Tenants
//!
//! With `tenant` configured, a batch is split by the value of `tenant.label` (after external
//! labels and write relabeling) and each part is its own request with that value as
//! `X-Scope-OrgID`: a request never mixes tenants. A series always has one tenant, so its
//! samples stay in order. Series without the label go to `tenant.default`, or are dropped and
//! counted when there is none.

use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use hyper::header::HeaderValue;
use tokio_util::sync::CancellationToken;

use super::config::TenantConfig;
use super::record::{Body, Proto};
use super::retry::{Outcome, Receiver};
use crate::batch::{self, Batch, Slice};
use crate::encode::{self, EncodeError};
use crate::labels::Labels;

/// A shard's encoders; the 2.0 one is built on first use.
pub(crate) struct Encoders {
    v1: encode::Encoder,
    v2: Option<encode::v2::Encoder>,
}

impl Encoders {
    /// Encoders for batches whose records hold the external labels already. A batch carries
    /// exemplars only when its endpoint sends them (`Endpoint::send`), so 1.0 writes those it has.
    pub(crate) fn new() -> Self {
        Encoders { v1: encode::Encoder::new().with_exemplars(true), v2: None }
    }

    /// Sends the samples of `slices` as one request per tenant. `Cancelled` as soon as one
    /// request is; otherwise `Sent` (every part accepted) or `Failed` (some part refused and
    /// counted).
    pub(crate) async fn send(
        &mut self,
        receiver: &Receiver,
        slices: &[Slice<'_>],
        stop: &CancellationToken,
    ) -> Outcome {
        let mut outcome = Outcome::Sent;
        for body in self.bodies(receiver, slices) {
            match send_body(receiver, body, stop).await {
                Outcome::Cancelled => return Outcome::Cancelled,
                Outcome::Failed => outcome = Outcome::Failed,
                Outcome::Sent | Outcome::Unsupported => {}
            }
        }
        outcome
    }

    /// The samples of `slices` as request bodies, one per tenant, in the protocol the endpoint
    /// speaks now. Samples without a tenant (and no default) are dropped and counted here.
    pub(crate) fn bodies(&mut self, receiver: &Receiver, slices: &[Slice<'_>]) -> Vec<Body> {
        let proto = if receiver.metrics.protocol_v2.load(Relaxed) { Proto::V2 } else { Proto::V1 };
        let Some(cfg) = &receiver.tenant else {
            return self.encode(receiver, slices, proto, None).into_iter().collect();
        };
        let (parts, tenants) = split_by_tenant(Batch::from_slices(slices, |_| true), cfg);
        let mut out = Vec::with_capacity(parts.len());
        for (part, tenant) in parts.into_iter().zip(tenants) {
            if part.is_empty() {
                continue;
            }
            let Some(tenant) = tenant else {
                let n = part.len() as u64;
                receiver.metrics.samples_dropped_no_tenant_total.fetch_add(n, Relaxed);
                tracing::warn!(endpoint = %receiver.name, samples = n, label = %cfg.label, "Remote-write samples without a tenant label were dropped.");
                continue;
            };
            out.extend(self.encode(receiver, &[part.whole()], proto, Some(tenant)));
        }
        out
    }

    /// Encodes the samples of `slices`; an encoding error drops them (logged and counted: the
    /// same samples would fail the same way again).
    fn encode(
        &mut self,
        receiver: &Receiver,
        slices: &[Slice<'_>],
        proto: Proto,
        tenant: Option<HeaderValue>,
    ) -> Option<Body> {
        let samples: usize = slices.iter().map(|s| s.range.len()).sum();
        let result: Result<(Bytes, i64, usize), EncodeError> = match proto {
            Proto::V1 => match self.v1.encode_slices(slices) {
                Ok(b) => {
                    let b = Bytes::copy_from_slice(b);
                    Ok((b, self.v1.highest_timestamp_ms(), 0))
                }
                Err(e) => Err(e),
            },
            Proto::V2 => {
                let enc = self.v2.get_or_insert_with(encode::v2::Encoder::new);
                match enc.encode_slices(slices) {
                    Ok(b) => {
                        let b = Bytes::copy_from_slice(b);
                        Ok((b, enc.highest_timestamp_ms(), enc.exemplar_count()))
                    }
                    Err(e) => Err(e),
                }
            }
        };
        match result {
            Ok((bytes, highest_ms, exemplars)) => {
                Some(Body { bytes, proto, samples, exemplars, highest_ms, tenant })
            }
            Err(e) => {
                tracing::error!(endpoint = %receiver.name, samples, error = %e, "Remote-write batch could not be encoded; its samples are dropped.");
                receiver.metrics.samples_failed_total.fetch_add(samples as u64, Relaxed);
                None
            }
        }
    }
}

/// Sends one request body. A 2.0 body the receiver turns down switches the endpoint to 1.0
/// for good (one WARN) and is converted and sent again as 1.0, so nothing is lost; that also
/// covers 2.0 bodies written to the disk buffer before the receiver was known to be old.
pub(crate) async fn send_body(receiver: &Receiver, body: Body, stop: &CancellationToken) -> Outcome {
    match receiver.send(&body, stop).await {
        Outcome::Unsupported if body.proto == Proto::V2 => {
            if receiver.metrics.protocol_v2.swap(false, Relaxed) {
                tracing::warn!(
                    endpoint = %receiver.name,
                    "Remote-write receiver does not accept remote write 2.0; falling back to 1.0 (prometheus.WriteRequest) for this endpoint."
                );
            }
            let Some(v1) = to_v1(receiver, &body) else { return Outcome::Failed };
            match receiver.send(&v1, stop).await {
                Outcome::Unsupported => Outcome::Failed,
                other => other,
            }
        }
        // Never for 1.0 bodies; counted as refused so the queue moves on.
        Outcome::Unsupported => Outcome::Failed,
        other => other,
    }
}

/// Largest decompressed 2.0 body [`to_v1`] reads (a request is a few MB at most).
const MAX_CONVERT_BYTES: usize = 256 << 20;

/// The same samples, exemplars and native histograms as a 1.0 body (metadata and start
/// timestamps have no place in 1.0 and are left out). `None`, logged and counted, if the body
/// does not decode.
fn to_v1(receiver: &Receiver, body: &Body) -> Option<Body> {
    let req = match crate::prompb::v2::decode_snappy(&body.bytes, MAX_CONVERT_BYTES) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(endpoint = %receiver.name, error = %e, samples = body.samples, "A 2.0 request could not be converted to 1.0; its samples are dropped.");
            receiver.metrics.samples_failed_total.fetch_add(body.samples as u64, Relaxed);
            return None;
        }
    };
    let samples = v1_batch(&req, body.samples);
    let mut enc = encode::Encoder::new().with_exemplars(true);
    match enc.encode(&samples) {
        Ok(bytes) => Some(Body {
            bytes: Bytes::copy_from_slice(bytes),
            proto: Proto::V1,
            samples: samples.len(),
            exemplars: samples.exemplars.len(),
            highest_ms: body.highest_ms,
            tenant: body.tenant.clone(),
        }),
        Err(e) => {
            tracing::error!(endpoint = %receiver.name, error = %e, "A converted 1.0 request could not be encoded; its samples are dropped.");
            receiver.metrics.samples_failed_total.fetch_add(body.samples as u64, Relaxed);
            None
        }
    }
}

/// Splits `batch` by tenant: the parts, and each part's `X-Scope-OrgID` (`None`: no tenant,
/// to be dropped). The label is looked up in the series' record (external labels included).
fn split_by_tenant(batch: Batch, cfg: &TenantConfig) -> (Vec<Batch>, Vec<Option<HeaderValue>>) {
    let mut names: Vec<String> = Vec::new();
    let mut headers: Vec<Option<HeaderValue>> = Vec::new();
    // Part of the samples whose tenant value is not a valid header value or is missing
    // without a default; created on first use.
    let mut none: Option<usize> = None;
    let mut index: Vec<usize> = Vec::with_capacity(batch.len());
    for s in batch.iter() {
        let found = batch::label_value(s.record, &cfg.label).and_then(|v| std::str::from_utf8(v).ok());
        let value = found.or(cfg.default.as_deref());
        let part = match value {
            Some(v) => match names.iter().position(|n| n == v) {
                Some(p) => p,
                None => {
                    names.push(v.to_owned());
                    headers.push(HeaderValue::try_from(v).ok());
                    names.len() - 1
                }
            },
            None => *none.get_or_insert_with(|| {
                names.push(String::new());
                headers.push(None);
                names.len() - 1
            }),
        };
        index.push(part);
    }
    let mut i = 0;
    let parts = batch.split_by(names.len().max(1), |_| {
        i += 1;
        index[i - 1]
    });
    (parts, headers)
}

/// The samples, exemplars and native histograms of a decoded 2.0 request, as a batch for the
/// 1.0 encoder.
fn v1_batch(req: &crate::prompb::v2::Request, capacity: usize) -> Batch {
    let symbol = |i: u32| req.symbols.get(i as usize).map(String::as_str).unwrap_or_default();
    // External labels are already in the 2.0 body.
    let mut samples = Batch::with_capacity(capacity, 0);
    for ts in &req.timeseries {
        let labels = Labels::from_pairs(ts.labels_refs.chunks_exact(2).map(|p| (symbol(p[0]), symbol(p[1]))));
        for s in &ts.samples {
            samples.push_labels(&labels, s.timestamp, s.value);
        }
        // Exemplars are in a 2.0 body only when the endpoint sends them (`send_exemplars`),
        // and 1.0 carries them too; they go with the series' last sample.
        if !ts.samples.is_empty() {
            for e in &ts.exemplars {
                samples.push_exemplar(batch::Exemplar {
                    labels: Labels::from_pairs(
                        e.labels_refs.chunks_exact(2).map(|p| (symbol(p[0]), symbol(p[1]))),
                    ),
                    value: e.value,
                    timestamp_ms: e.timestamp,
                });
            }
        }
        // Native histograms have the same message in 1.0, less the 2.0 start timestamp; the
        // batch stores fields 1 to 16 without the timestamp, which the encoder adds.
        for h in &ts.histograms {
            let mut h = h.clone();
            let t = std::mem::take(&mut h.timestamp);
            h.start_timestamp = 0;
            samples.push_labels(&labels, t, 0.0);
            samples.push_histogram(prost::Message::encode_to_vec(&h).into_boxed_slice());
        }
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Sample;
    use std::sync::Arc;

    fn s(pairs: &[(&str, &str)], t: i64) -> Sample {
        Sample { series: Arc::new(Labels::from_pairs(pairs.iter().copied())), timestamp_ms: t, value: 0.0 }
    }

    #[test]
    fn v2_bodies_become_v1_with_histograms_and_exemplars() {
        use prost::Message as _;
        let mut batch: Batch = vec![s(&[("__name__", "a")], 5)].into();
        batch.push_exemplar(batch::Exemplar {
            labels: Labels::from_pairs([("trace_id", "t")]),
            value: 2.0,
            timestamp_ms: 4,
        });
        let h = crate::prompb::Histogram {
            count_int: Some(3),
            sum: 1.5,
            schema: 2,
            zero_count_int: Some(1),
            positive_spans: vec![crate::prompb::BucketSpan { offset: 1, length: 2 }],
            positive_deltas: vec![1, 0],
            ..Default::default()
        };
        batch.push(s(&[("__name__", "h")], 6));
        batch.push_histogram(h.encode_to_vec().into_boxed_slice());
        let mut v2 = encode::v2::Encoder::new();
        v2.encode(&batch).unwrap();
        let req = crate::prompb::v2::Request::decode(v2.proto()).unwrap();
        let mut v1 = encode::Encoder::new().with_exemplars(true);
        v1.encode(&v1_batch(&req, 2)).unwrap();
        let got = crate::prompb::WriteRequest::decode(v1.proto().as_slice()).unwrap();
        assert_eq!(got.timeseries[0].samples.len(), 1);
        assert_eq!(got.timeseries[0].exemplars.len(), 1);
        let back = &got.timeseries[1].histograms[0];
        assert_eq!(back.timestamp, 6);
        assert_eq!(crate::prompb::Histogram { timestamp: 0, ..back.clone() }, h, "the same histogram");
    }

    #[test]
    fn tenants_split_without_mixing() {
        let cfg = TenantConfig { label: "namespace".into(), default: None };
        let batch: Batch = vec![
            s(&[("namespace", "a")], 1),
            s(&[("namespace", "b")], 2),
            s(&[("x", "1")], 3),
            s(&[("namespace", "a")], 4),
        ]
        .into();
        let (parts, tenants) = split_by_tenant(batch, &cfg);
        let got: Vec<(Option<&str>, Vec<i64>)> = parts
            .iter()
            .zip(&tenants)
            .map(|(p, t)| {
                (t.as_ref().and_then(|t| t.to_str().ok()), p.iter().map(|s| s.timestamp_ms).collect())
            })
            .collect();
        assert_eq!(got, [(Some("a"), vec![1, 4]), (Some("b"), vec![2]), (None, vec![3])]);
    }

    #[test]
    fn tenant_from_default_or_external_labels() {
        // (external labels, default, expected tenant of a series without the label, why)
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>, Option<&'a str>, &'a str);
        let cases: &[Case] = &[
            (&[], Some("shared"), Some("shared"), "default when the label is missing"),
            (
                &[("namespace", "ext")],
                Some("shared"),
                Some("ext"),
                "an external label counts before the default",
            ),
            (&[], None, None, "no label, no default: dropped"),
        ];
        for (external, default, want, why) in cases {
            let cfg = TenantConfig { label: "namespace".into(), default: default.map(str::to_owned) };
            let batch = Batch::from(vec![s(&[("x", "1")], 1)])
                .with_external(&Arc::new(Labels::from_pairs(external.iter().copied())));
            let (_, tenants) = split_by_tenant(batch, &cfg);
            assert_eq!(tenants[0].as_ref().and_then(|t| t.to_str().ok()), *want, "{why}");
        }
    }
}
