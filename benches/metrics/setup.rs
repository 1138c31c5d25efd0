//! The metrics to render: 10 jobs and 2 endpoints with disk buffers, registered as `app` does.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use trawl::remote_write::{DiskMetrics, EndpointsSection, RemoteWriteMetrics};
use trawl::telemetry::Metrics;

pub fn renderer() -> impl Fn() -> String {
    let m = Arc::new(Metrics::default());
    for j in 0..10 {
        let job = m.job(&format!("kubernetes-pods-{j}"));
        job.scrapes.store(1000 + j, Relaxed);
        job.samples_scraped.store(123_456_789, Relaxed);
    }
    let endpoints = (0..2)
        .map(|i| {
            let rw = Arc::new(RemoteWriteMetrics::default());
            rw.samples_sent_total.store(987_654_321, Relaxed);
            rw.highest_sent_timestamp_ms.store(1_764_000_000_123, Relaxed);
            (format!("https://mimir-{i}.example/api/v1/push"), rw, Some(Arc::new(DiskMetrics::default())))
        })
        .collect();
    m.set_section("remote_write", Arc::new(EndpointsSection { endpoints }));
    move || m.render()
}
