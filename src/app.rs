//! Wiring: builds the stages from a [`Config`], owns the channels, spawns every long-lived task
//! and shuts them down in order (stop scrapes → drain the hand-off → flush remote write).
//!
//! What this is: the only module that knows all the others. What this is not: policy; each
//! stage's behaviour lives in its own module.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::admin;
use crate::config::{self, Config};
use crate::discovery;
use crate::labels::{self, Labels};
use crate::remote_write::Endpoint;
use crate::ring::{Batch, is_stale_nan};
use crate::scrape::{self, TargetsView};
use crate::telemetry::Metrics;

/// Batches in flight between the scrape loops and the fan-out to endpoints. Each holds one
/// scrape of one target, so this bounds the hand-off at 256 scrapes; beyond it scrape loops wait
/// (back-pressure), they do not drop.
pub const HANDOFF_BATCHES: usize = 256;

/// How long shutdown may take to flush what is queued before giving up and counting the rest
/// as dropped. Kubernetes' default termination grace period is 30 s; we stay under it.
pub const FLUSH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

/// Command-line settings the app needs.
#[derive(Clone, Debug)]
pub struct Options {
    /// `--config.file`.
    pub config_file: PathBuf,
    /// `--web.listen-address`.
    pub listen_address: String,
    /// `--storage.path`: where the remote-write disk buffers and the staleness state live;
    /// `None` keeps everything in memory.
    pub storage_path: Option<PathBuf>,
}

/// Runs trawl until `shutdown` is cancelled, then flushes and returns.
pub async fn run(opts: Options, shutdown: CancellationToken) -> anyhow::Result<()> {
    let cfg = config::load(&opts.config_file)?;
    let metrics = Arc::new(Metrics::default());
    metrics.config_last_reload_successful.store(1, Ordering::Relaxed);
    metrics.config_last_reload_success_timestamp_seconds.store(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
        Ordering::Relaxed,
    );

    let addr: SocketAddr = opts
        .listen_address
        .parse()
        .with_context(|| format!("invalid --web.listen-address {:?}", opts.listen_address))?;
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(address = %listener.local_addr().unwrap_or(addr), "Listening.");

    let endpoints = start_endpoints(&cfg, opts.storage_path.as_deref())?;
    let staleness = match &opts.storage_path {
        Some(root) => Some(Arc::new(crate::staleness::Store::open(root)?)),
        None => None,
    };
    // The web server reads the endpoints' counters only, so shutdown can take the endpoints back.
    let eps: Vec<_> = endpoints.iter().map(|e| (e.name().to_owned(), e.metrics().clone())).collect();
    let disks: Vec<_> =
        endpoints.iter().filter_map(|e| Some((e.name().to_owned(), e.disk_metrics()?.clone()))).collect();
    let endpoints = Arc::new(endpoints);
    let targets: TargetsView = TargetsView::default();
    let state = Arc::new(admin::State {
        metrics: metrics.clone(),
        extra: Arc::new(move || {
            let mut s = String::new();
            crate::remote_write::RemoteWriteMetrics::render_all(
                eps.iter().map(|(n, m)| (n.as_str(), m.as_ref())),
                &mut s,
            );
            if !disks.is_empty() {
                let d: Vec<_> = disks.iter().map(|(n, m)| (n.as_str(), m.as_ref())).collect();
                crate::remote_write::DiskMetrics::render_all(&d, &mut s);
            }
            s
        }),
        targets: targets.clone(),
        ready: false.into(),
    });
    let web_stop = CancellationToken::new();
    let web = tokio::spawn(admin::serve(listener, state.clone(), web_stop.clone()));

    let (out_tx, out_rx) = mpsc::channel::<Batch>(HANDOFF_BATCHES);
    let mut fanout = tokio::spawn(fan_out(out_rx, endpoints.clone(), metrics.clone()));

    let scrape_stop = CancellationToken::new();
    let mut jobs = Vec::new();
    for sc in &cfg.scrape_configs {
        let client = crate::http_client::build(sc.tls_config.as_ref())
            .with_context(|| format!("job {:?}: building the HTTP client", sc.job()))?;
        let rx = discovery::spawn_job(sc, scrape_stop.clone());
        jobs.push(tokio::spawn(scrape::run_job(
            Arc::new(sc.clone()),
            rx,
            client,
            out_tx.clone(),
            targets.clone(),
            metrics.job(sc.job()),
            staleness.clone(),
            scrape_stop.clone(),
        )));
    }
    drop(out_tx);
    state.ready.store(true, Ordering::Relaxed);
    tracing::info!(
        jobs = cfg.scrape_configs.len(),
        remote_write = cfg.remote_write.len(),
        config = %opts.config_file.display(),
        "Started."
    );

    shutdown.cancelled().await;
    tracing::info!("Shutting down: stopping scrapes and flushing queued samples.");
    state.ready.store(false, Ordering::Relaxed);
    scrape_stop.cancel();
    let deadline = tokio::time::Instant::now() + FLUSH_DEADLINE;
    for j in jobs {
        let _ = j.await;
    }
    // The fan-out ends once every scrape loop has dropped its sender.
    if tokio::time::timeout_at(deadline, &mut fanout).await.is_err() {
        tracing::error!("Scrape loops did not stop before the flush deadline; their last batches are lost.");
        fanout.abort();
        let _ = fanout.await;
    }
    let endpoints = Arc::try_unwrap(endpoints).unwrap_or_else(|_| {
        tracing::error!("Remote-write endpoints still in use at shutdown; queued samples are not flushed.");
        Vec::new()
    });
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    for e in endpoints {
        e.shutdown(remaining).await;
    }
    web_stop.cancel();
    let _ = web.await;
    tracing::info!("Stopped.");
    Ok(())
}

fn start_endpoints(cfg: &Config, storage: Option<&std::path::Path>) -> anyhow::Result<Vec<Endpoint>> {
    let external = Arc::new(Labels::from_pairs(
        cfg.global.external_labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    ));
    let mut out = Vec::new();
    for rw in &cfg.remote_write {
        let client = crate::http_client::build(rw.tls_config.as_ref())
            .with_context(|| format!("remote_write {}: building the HTTP client", rw.url))?;
        out.push(
            Endpoint::start_with_storage(rw.clone(), external.clone(), client, storage)
                .with_context(|| format!("remote_write {}", rw.url))?,
        );
    }
    Ok(out)
}

/// Hands every batch to every endpoint (each gets each sample), or prints it when there is none.
async fn fan_out(mut rx: mpsc::Receiver<Batch>, endpoints: Arc<Vec<Endpoint>>, metrics: Arc<Metrics>) {
    let mut text = Vec::with_capacity(64 * 1024);
    while let Some(batch) = rx.recv().await {
        if endpoints.is_empty() {
            text.clear();
            write_exposition(&batch, &mut text);
            let mut stdout = std::io::stdout().lock();
            if stdout.write_all(&text).and_then(|_| stdout.flush()).is_err() {
                // stdout closed (e.g. piped into `head`): keep running, stop printing.
                continue;
            }
            metrics.samples_printed.fetch_add(batch.len() as u64, Ordering::Relaxed);
            continue;
        }
        let n = endpoints.len();
        let mut batch = Some(batch);
        for (i, e) in endpoints.iter().enumerate() {
            let b =
                if i + 1 == n { batch.take().unwrap_or_default() } else { batch.clone().unwrap_or_default() };
            if e.send(b).await.is_err() {
                tracing::error!(endpoint = e.name(), "Remote-write queue closed; batch lost.");
            }
        }
    }
}

/// Writes samples as exposition text lines `name{labels} value timestamp_ms`; staleness markers
/// are written as `NaN` with a `# stale` comment, so the debug output shows them.
pub fn write_exposition(batch: &Batch, out: &mut Vec<u8>) {
    for s in batch {
        let name = s.series.get(labels::METRIC_NAME).unwrap_or("");
        out.extend_from_slice(name.as_bytes());
        let mut first = true;
        for l in s.series.iter().filter(|l| l.name != labels::METRIC_NAME) {
            out.push(if first { b'{' } else { b',' });
            first = false;
            out.extend_from_slice(l.name.as_bytes());
            out.extend_from_slice(b"=\"");
            out.extend_from_slice(labels::escape_value(&l.value).as_bytes());
            out.push(b'"');
        }
        if !first {
            out.push(b'}');
        }
        out.push(b' ');
        format_value(s.value, out);
        out.push(b' ');
        out.extend_from_slice(itoa::Buffer::new().format(s.timestamp_ms).as_bytes());
        if is_stale_nan(s.value) {
            out.extend_from_slice(b" # stale");
        }
        out.push(b'\n');
    }
}

/// Formats a value as Prometheus' text format does: `NaN`, `+Inf`, `-Inf`, integers without a
/// fraction, otherwise the shortest round-tripping decimal.
pub fn format_value(v: f64, out: &mut Vec<u8>) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        out.extend_from_slice(itoa::Buffer::new().format(v as i64).as_bytes());
    } else {
        out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::{STALE_NAN, Sample};

    #[test]
    fn exposition_lines() {
        let s = |l: &[(&str, &str)], v: f64| Sample {
            series: Arc::new(Labels::from_pairs(l.iter().copied())),
            timestamp_ms: 1000,
            value: v,
        };
        let mut out = Vec::new();
        write_exposition(
            &vec![
                s(&[("__name__", "up"), ("job", "a\"b")], 1.0),
                s(&[("__name__", "x")], 0.25),
                s(&[("__name__", "x")], STALE_NAN),
                s(&[("__name__", "y")], f64::NEG_INFINITY),
            ],
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "up{job=\"a\\\"b\"} 1 1000\nx 0.25 1000\nx NaN 1000 # stale\ny -Inf 1000\n"
        );
    }
}
