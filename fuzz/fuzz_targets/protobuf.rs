//! Fuzz target for protobuf pages (the reader, the translation to series, native histograms).
//! Asserts properties, not just "no panic":
//! - a page either fails its scrape with an error or gives a batch;
//! - every native histogram in a batch is one the remote-write decoder reads, and valid as
//!   Prometheus' agent checks it (non-negative buckets, counts that add up for integers);
//! - the same page processed twice gives the same samples (the translation keeps no state that
//!   changes what a page means).
//!
//! The first input byte picks the settings (native histograms on/off, classic kept, a bucket
//! limit); the rest is the body.

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use trawl::batch::Batch;
use trawl::labels::Labels;
use trawl::parse::Format;
use trawl::scrape::JobSettings;
use trawl::scrape::page::Page;

fn run(page: &mut Page, body: &[u8], ts: i64) -> Option<Vec<(Vec<u8>, u64)>> {
    let mut batch = Batch::new();
    page.process_page(body, Format::PrometheusProto, ts, &mut batch).ok()?;
    for (at, h) in &batch.histograms {
        assert!((*at as usize) < batch.len(), "a histogram belongs to a sample");
        let h = trawl::prompb::Histogram::decode(&h[..]).expect("histograms decode");
        assert!((-4..=8).contains(&h.schema), "schema {} passed validation", h.schema);
        assert!(h.positive_counts.iter().chain(&h.negative_counts).all(|c| *c >= 0.0 || c.is_nan()));
        let spans = |s: &[trawl::prompb::BucketSpan]| s.iter().map(|s| s.length as usize).sum::<usize>();
        if h.count_int.is_some() {
            assert_eq!(spans(&h.positive_spans), h.positive_deltas.len());
            assert_eq!(spans(&h.negative_spans), h.negative_deltas.len());
        } else {
            assert_eq!(spans(&h.positive_spans), h.positive_counts.len());
            assert_eq!(spans(&h.negative_spans), h.negative_counts.len());
        }
    }
    Some(batch.iter().map(|s| (s.record.to_vec(), s.value.to_bits())).collect())
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let settings = JobSettings {
        scrape_native_histograms: selector & 1 != 0,
        always_scrape_classic_histograms: selector & 2 != 0,
        native_histogram_bucket_limit: u64::from(selector >> 4),
        ..JobSettings::default()
    };
    let target = Labels::from_pairs([("instance", "h:1"), ("job", "j")]);
    let mut a = Page::new(Arc::new(settings), target, Arc::default());
    let first = run(&mut a, body, 1_000);
    let second = run(&mut a, body, 1_000);
    // The second scrape of an identical page adds no stale markers and changes no sample.
    assert_eq!(first, second, "the same page twice");
});
