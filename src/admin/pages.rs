//! The pages a person reads in a browser: `/targets` and `/service-discovery`, rendered on the
//! server as plain HTML (no JavaScript), from the same view as `/api/v1/targets`.
//!
//! What this is: Prometheus' two target pages, with the same columns (endpoint, state, labels,
//! last scrape, duration, error; discovered labels beside the labels kept after relabeling).
//! What this is not: a UI framework; the pages are formatted strings with every value escaped.

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::labels::Labels;
use crate::scrape::{Health, PoolView, TargetsView};

/// Escapes text for HTML element content and double-quoted attributes.
fn esc(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

const STYLE: &str = "body{font-family:sans-serif;margin:1em 2em;color:#222}\
nav a{margin-right:1em}table{border-collapse:collapse;width:100%;margin-bottom:2em}\
th,td{border:1px solid #ccc;padding:4px 6px;text-align:left;vertical-align:top;font-size:14px}\
th{background:#f3f3f3}.up{color:#fff;background:#2e7d32}.down{color:#fff;background:#c62828}\
.unknown{background:#eee}.label{display:inline-block;background:#e3ecf7;border-radius:3px;\
padding:1px 4px;margin:1px;font-family:monospace;font-size:12px}.error{color:#c62828}\
.dropped{color:#777}";

fn page(title: &str, body: &str) -> String {
    let mut s = String::with_capacity(body.len() + 1024);
    s.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>");
    esc(title, &mut s);
    let _ = write!(
        s,
        " - trawl</title><style>{STYLE}</style></head><body>\n<nav><b>trawl</b> \
         <a href=\"/targets\">Targets</a><a href=\"/service-discovery\">Service Discovery</a>\
         <a href=\"/metrics\">Metrics</a></nav>\n<h1>"
    );
    esc(title, &mut s);
    s.push_str("</h1>\n");
    s.push_str(body);
    s.push_str("</body></html>\n");
    s
}

fn labels_html(l: &Labels, out: &mut String) {
    for l in l.iter() {
        out.push_str("<span class=\"label\">");
        esc(&l.name, out);
        out.push_str("=\"");
        esc(&l.value, out);
        out.push_str("\"</span> ");
    }
}

/// "1.234s ago", as Prometheus' page shows the last scrape; "never" before the first.
fn ago(t: Option<SystemTime>, now: SystemTime) -> String {
    match t {
        None => "never".into(),
        Some(t) => match now.duration_since(t) {
            Ok(d) => format!("{:.3}s ago", d.as_secs_f64()),
            Err(_) => "just now".into(),
        },
    }
}

fn duration(secs: f64) -> String {
    if secs < 1.0 { format!("{:.3}ms", secs * 1e3) } else { format!("{secs:.3}s") }
}

/// `id` attribute of a pool's section: the job name with everything but `[A-Za-z0-9_-]` as `_`.
fn anchor(job: &str) -> String {
    job.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// The `/targets` page. `only_unhealthy` (`?state=unhealthy`) hides targets that are up;
/// `pool` (`?pool=job`) shows one pool.
pub fn targets(view: &TargetsView, only_unhealthy: bool, pool: Option<&str>) -> String {
    let pools = view.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let now = SystemTime::now();
    let mut b = String::new();
    b.push_str(
        "<p>Show: <a href=\"/targets\">all</a> | <a href=\"/targets?state=unhealthy\">unhealthy</a></p>\n",
    );
    if pools.is_empty() {
        b.push_str("<p>No scrape pools.</p>\n");
    }
    for (job, p) in pools.iter().filter(|(job, _)| pool.is_none_or(|want| want == job.as_str())) {
        let statuses: Vec<_> =
            p.active.iter().map(|t| t.status.lock().unwrap_or_else(|e| e.into_inner()).clone()).collect();
        let up = statuses.iter().filter(|s| s.health == Health::Up).count();
        let _ = write!(b, "<section class=\"pool\" id=\"pool-{}\" data-pool=\"", anchor(job));
        esc(job, &mut b);
        b.push_str("\"><h2>");
        esc(job, &mut b);
        let _ = writeln!(b, " ({up}/{} up)</h2>", p.active.len());
        b.push_str(
            "<table><thead><tr><th>Endpoint</th><th>State</th><th>Labels</th><th>Last Scrape</th>\
             <th>Scrape Duration</th><th>Error</th></tr></thead><tbody>\n",
        );
        for (t, st) in p.active.iter().zip(&statuses) {
            if only_unhealthy && st.health == Health::Up {
                continue;
            }
            let state = st.health.as_str();
            let _ =
                write!(b, "<tr class=\"target\" data-state=\"{state}\"><td class=\"endpoint\"><a href=\"");
            esc(&t.target.url, &mut b);
            b.push_str("\">");
            esc(&t.target.url, &mut b);
            let _ = write!(
                b,
                "</a></td><td class=\"state {state}\">{}</td><td class=\"labels\">",
                state.to_ascii_uppercase()
            );
            labels_html(&t.target.labels, &mut b);
            let _ = write!(
                b,
                "</td><td class=\"last-scrape\">{}</td><td class=\"duration\">{}</td><td class=\"error\">",
                ago(st.last_scrape, now),
                if st.last_scrape.is_some() { duration(st.last_scrape_duration) } else { String::new() }
            );
            esc(&st.last_error, &mut b);
            b.push_str("</td></tr>\n");
        }
        b.push_str("</tbody></table></section>\n");
    }
    page("Targets", &b)
}

/// The `/service-discovery` page: per pool, every discovered label set beside what relabeling
/// made of it (the target's labels, or "Dropped").
pub fn service_discovery(view: &TargetsView) -> String {
    let pools = view.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut b = String::new();
    b.push_str("<ul>\n");
    for (job, p) in &pools {
        let _ = write!(b, "<li><a href=\"#sd-{}\">", anchor(job));
        esc(job, &mut b);
        let _ = writeln!(
            b,
            "</a> ({} / {} active targets)</li>",
            p.active.len(),
            p.active.len() + p.dropped.len()
        );
    }
    b.push_str("</ul>\n");
    for (job, p) in &pools {
        pool_sd(job, p, &mut b);
    }
    page("Service Discovery", &b)
}

fn pool_sd(job: &str, p: &PoolView, b: &mut String) {
    let _ = write!(b, "<section class=\"pool\" id=\"sd-{}\" data-pool=\"", anchor(job));
    esc(job, b);
    b.push_str("\"><h2>");
    esc(job, b);
    b.push_str(
        "</h2>\n<table><thead><tr><th>Discovered Labels</th><th>Target Labels</th></tr></thead><tbody>\n",
    );
    for t in &p.active {
        b.push_str("<tr class=\"active\"><td class=\"discovered\">");
        labels_html(&t.discovered, b);
        b.push_str("</td><td class=\"kept\">");
        labels_html(&t.target.labels, b);
        b.push_str("</td></tr>\n");
    }
    for d in &p.dropped {
        b.push_str("<tr class=\"dropped\"><td class=\"discovered\">");
        labels_html(d, b);
        b.push_str("</td><td class=\"kept\">Dropped</td></tr>\n");
    }
    b.push_str("</tbody></table></section>\n");
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::scrape::{ActiveTarget, TargetStatus};

    fn view() -> TargetsView {
        let target = crate::relabel::ScrapeTarget {
            labels: Labels::from_pairs([("instance", "a:1"), ("job", "j<1>")]),
            url: "http://a:1/metrics?x=\"y\"".into(),
            interval: crate::config::Duration::from_secs(15),
            timeout: crate::config::Duration::from_secs(10),
            params: Vec::new(),
        };
        let status = TargetStatus {
            health: Health::Down,
            last_error: "server returned HTTP status 500 <oops>".into(),
            last_scrape: Some(SystemTime::now()),
            last_scrape_duration: 0.012,
        };
        let pool = PoolView {
            active: vec![ActiveTarget {
                discovered: Labels::from_pairs([("__address__", "a:1")]),
                target,
                status: Arc::new(Mutex::new(status)),
            }],
            dropped: vec![Labels::from_pairs([("__address__", "b:2")])],
        };
        Arc::new(Mutex::new([("j<1>".to_string(), pool)].into()))
    }

    #[test]
    fn targets_page_escapes_and_shows_every_column() {
        let html = targets(&view(), false, None);
        for want in [
            "j&lt;1&gt; (0/1 up)",                          // pool header with counts
            "http://a:1/metrics?x=&quot;y&quot;",           // endpoint, escaped
            "class=\"state down\">DOWN<",                   // state
            "instance=\"a:1\"",                             // labels
            "s ago</td>",                                   // last scrape
            "12.000ms",                                     // duration
            "server returned HTTP status 500 &lt;oops&gt;", // error, escaped
        ] {
            assert!(html.contains(want), "{want} missing in\n{html}");
        }
        assert!(!html.contains("<oops>"), "unescaped text");
        assert!(!html.contains("<script"), "no JavaScript");
        let healthy_only = targets(&view(), true, None);
        assert!(healthy_only.contains("DOWN"), "a down target is unhealthy");
        assert!(!targets(&view(), false, Some("other")).contains("DOWN"), "pool filter");
    }

    #[test]
    fn service_discovery_page_shows_kept_and_dropped() {
        let html = service_discovery(&view());
        assert!(html.contains("(1 / 2 active targets)"), "{html}");
        assert!(html.contains("__address__=\"b:2\"</span> </td><td class=\"kept\">Dropped"), "{html}");
        assert!(html.contains("<td class=\"kept\"><span class=\"label\">instance="), "{html}");
    }
}
