//! The web endpoints on `--web.listen-address`: `/metrics`, `/-/healthy`, `/-/ready`,
//! `/api/v1/targets` and the debug endpoints of [`api`] (`status/config`, `status/flags`,
//! `status/buildinfo`, `targets/metadata`, `targets/relabel_steps`) in Prometheus' JSON shapes,
//! the `/targets` and `/service-discovery` pages with the relabeling debugger ([`pages`]), and
//! `POST /-/reload` when `--web.enable-lifecycle` is set.
//!
//! What this is: a small hyper 1 HTTP/1.1 server over read-only views of the running agent.
//! What this is not: a control plane; the one thing it can change is asking for a reload, which
//! the app performs exactly as on SIGHUP.

pub mod api;
pub mod pages;

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::scrape::TargetsView;
use crate::telemetry::Metrics;

/// A reload request, as `POST /-/reload` and SIGHUP send it to [`crate::app`]; a sender in it
/// gets the outcome (`None` for SIGHUP, which has no one to answer). Declared here, by the
/// side that sends it over HTTP, so that `admin` does not depend on `app`.
pub type ReloadRequest = Option<tokio::sync::oneshot::Sender<Result<(), String>>>;

/// What the web server reads.
pub struct State {
    /// trawl's own counters.
    pub metrics: Arc<Metrics>,
    /// The targets of every job.
    pub targets: TargetsView,
    /// Set once the config is loaded and scrape loops are started.
    pub ready: AtomicBool,
    /// Where `POST /-/reload` asks for a reload; `None` without `--web.enable-lifecycle`.
    pub reload: Option<tokio::sync::mpsc::Sender<ReloadRequest>>,
    /// The config running now (replaced by each successful reload).
    pub config: Mutex<Arc<Config>>,
    /// The command-line flags and their values, for `/api/v1/status/flags`.
    pub flags: Vec<(String, String)>,
}

/// Serves until `shutdown`. The listener is bound by the caller so a bad address fails at start.
pub async fn serve(listener: TcpListener, state: Arc<State>, shutdown: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "Accepting a web connection failed.");
                    continue;
                }
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, req).await) }
            });
            let _ =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    r
}

async fn route(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    const HTML: &str = "text/html; charset=utf-8";
    let q = req.uri().query().unwrap_or("").to_owned();
    let param =
        |k: &str| form_urlencoded::parse(q.as_bytes()).find(|(n, _)| n == k).map(|(_, v)| v.into_owned());
    let json = |r: Result<serde_json::Value, api::BadData>| match r {
        Ok(v) => text(StatusCode::OK, "application/json", v.to_string()),
        Err(e) => text(StatusCode::BAD_REQUEST, "application/json", e.json().to_string()),
    };
    match req.uri().path() {
        "/-/reload" => reload(state, req.method()).await,
        "/targets" => text(
            StatusCode::OK,
            HTML,
            pages::targets(
                &state.targets,
                param("state").as_deref() == Some("unhealthy"),
                param("pool").as_deref(),
            ),
        ),
        "/service-discovery" => match (param("pool"), param("target")) {
            (Some(pool), Some(id)) => match pages::relabeling(&state.targets, &pool, &id) {
                Some(html) => text(StatusCode::OK, HTML, html),
                None => text(
                    StatusCode::NOT_FOUND,
                    PLAIN,
                    format!("No discovered target {id} in scrape pool {pool:?} (any more).\n"),
                ),
            },
            _ => text(StatusCode::OK, HTML, pages::service_discovery(&state.targets)),
        },
        "/api/v1/status/config" => {
            let cfg = state.config.lock().unwrap_or_else(|e| e.into_inner()).clone();
            json(Ok(api::status_config(&cfg)))
        }
        "/api/v1/status/flags" => json(Ok(api::status_flags(&state.flags))),
        "/api/v1/status/buildinfo" => json(Ok(api::status_buildinfo())),
        "/api/v1/targets/metadata" => json(api::targets_metadata(
            &state.targets,
            param("match_target").as_deref(),
            param("metric").as_deref(),
            param("limit").as_deref(),
        )),
        "/api/v1/targets/relabel_steps" => json(api::relabel_steps(
            &state.targets,
            param("scrapePool").as_deref(),
            param("labels").as_deref(),
        )),
        "/metrics" => {
            text(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", state.metrics.render())
        }
        "/-/healthy" => text(StatusCode::OK, PLAIN, "trawl is Healthy.\n".into()),
        "/-/ready" => {
            if state.ready.load(Ordering::Relaxed) {
                text(StatusCode::OK, PLAIN, "trawl is Ready.\n".into())
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "Service Unavailable\n".into())
            }
        }
        "/api/v1/targets" => {
            let body =
                targets_json(&state.targets, param("state").as_deref(), param("scrapePool").as_deref());
            text(StatusCode::OK, "application/json", body.to_string())
        }
        "/" => {
            let mut r = text(StatusCode::FOUND, PLAIN, "Found: /targets\n".into());
            r.headers_mut()
                .insert(hyper::header::LOCATION, hyper::header::HeaderValue::from_static("/targets"));
            r
        }
        _ => text(StatusCode::NOT_FOUND, PLAIN, "404 page not found\n".into()),
    }
}

/// `/-/reload`: POST or PUT, as Prometheus; 200 once the new config runs, 500 with the reason
/// when it was rejected (the old one keeps running), 403 without `--web.enable-lifecycle`.
async fn reload(state: &State, method: &hyper::Method) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if method != hyper::Method::POST && method != hyper::Method::PUT {
        return text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "Only POST or PUT requests allowed\n".into());
    }
    let Some(reload) = &state.reload else {
        return text(StatusCode::FORBIDDEN, PLAIN, "Lifecycle API is not enabled.\n".into());
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    if reload.send(Some(tx)).await.is_err() {
        return text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "shutting down\n".into());
    }
    match rx.await {
        Ok(Ok(())) => text(StatusCode::OK, PLAIN, String::new()),
        Ok(Err(e)) => {
            text(StatusCode::INTERNAL_SERVER_ERROR, PLAIN, format!("failed to reload config: {e}\n"))
        }
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "shutting down\n".into()),
    }
}

/// The `/api/v1/targets` document, as Prometheus shapes it.
pub fn targets_json(view: &TargetsView, state: Option<&str>, pool: Option<&str>) -> serde_json::Value {
    use api::labels_json;
    use serde_json::json;
    let want_active = matches!(state, None | Some("") | Some("any") | Some("active"));
    let want_dropped = matches!(state, None | Some("") | Some("any") | Some("dropped"));
    let v = view.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut active = Vec::new();
    let mut dropped = Vec::new();
    for (job, p) in &v {
        if pool.is_some_and(|want| want != job) {
            continue;
        }
        if want_active {
            for t in &p.active {
                let st = t.status.lock().unwrap_or_else(|e| e.into_inner()).clone();
                active.push(json!({
                    "discoveredLabels": labels_json(&t.discovered),
                    "labels": labels_json(&t.target.labels),
                    "scrapePool": job,
                    "scrapeUrl": t.target.url,
                    "globalUrl": t.target.url,
                    "lastError": st.last_error,
                    "lastScrape": rfc3339(st.last_scrape),
                    "lastScrapeDuration": st.last_scrape_duration,
                    "health": st.health.as_str(),
                    "scrapeInterval": t.target.interval.to_string(),
                    "scrapeTimeout": t.target.timeout.to_string(),
                }));
            }
        }
        if want_dropped {
            for d in &p.dropped {
                dropped.push(json!({ "discoveredLabels": labels_json(d) }));
            }
        }
    }
    json!({"status": "success", "data": {"activeTargets": active, "droppedTargets": dropped}})
}

/// RFC 3339 with nanoseconds in UTC, as Go's `time.Time` marshals; the zero time when unset.
pub fn rfc3339(t: Option<SystemTime>) -> String {
    let Some(d) = t.and_then(|t| t.duration_since(UNIX_EPOCH).ok()) else {
        return "0001-01-01T00:00:00Z".into();
    };
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut s = String::with_capacity(32);
    let _ =
        write!(s, "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60);
    let nanos = d.subsec_nanos();
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_like_go() {
        assert_eq!(rfc3339(None), "0001-01-01T00:00:00Z");
        let t = UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 500_000_000);
        assert_eq!(rfc3339(Some(t)), "2023-11-14T22:13:20.5Z");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(Some(t)), "2000-02-29T00:00:00Z");
    }
}
