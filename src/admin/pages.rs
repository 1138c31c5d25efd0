//! The pages a person reads in a browser: `/targets`, `/service-discovery` and its relabeling
//! debugger, rendered on the server as plain HTML (no JavaScript), from the same view as
//! `/api/v1/targets`.
//!
//! What this is: Prometheus' two target pages, with the same columns (endpoint, state, labels,
//! last scrape, duration, error; discovered labels beside the labels kept after relabeling), and
//! for any discovered target the answer to "why is my pod (not) scraped?": each
//! `relabel_configs` rule with the labels before and after it, and the rule that dropped it,
//! replayed with [`relabel::steps`] (the rule code that ran) on the config the pool ran with.
//! What this is not: a UI framework; the pages are formatted strings with every value escaped.

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::labels::Labels;
use crate::relabel::{self, RelabelConfig, TargetOutcome};
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
.dropped{color:#777}.added{background:#c8e6c9}.changed{background:#fff3c4}\
.removed{background:#ffcdd2;text-decoration:line-through}.rule{font-family:monospace;font-size:12px;\
white-space:pre}tr.drop td{background:#ffebee}tr.skipped td{color:#999}.outcome{font-size:16px;\
padding:6px;border-left:4px solid #888}.outcome.kept{border-color:#2e7d32}\
.outcome.dropped,.outcome.invalid{border-color:#c62828;color:#222}.steps td.rule{width:40%}\
.unchanged{color:#777}details{margin-top:4px;font-size:12px}summary{color:#555;cursor:pointer}";

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
        "</h2>\n<table><thead><tr><th>Discovered Labels</th><th>Target Labels</th><th>Relabeling</th>\
         </tr></thead><tbody>\n",
    );
    let mut row = |class: &str, discovered: &Labels, kept: Option<&Labels>| {
        let _ = write!(b, "<tr class=\"{class}\"><td class=\"discovered\">");
        labels_html(discovered, b);
        b.push_str("</td><td class=\"kept\">");
        match kept {
            Some(l) => labels_html(l, b),
            None => b.push_str("Dropped"),
        }
        b.push_str("</td><td><a class=\"debug\" href=\"");
        esc(&debugger_link(job, discovered), b);
        b.push_str("\">show relabeling</a></td></tr>\n");
    };
    for t in &p.active {
        row("active", &t.discovered, Some(&t.target.labels));
    }
    for d in &p.dropped {
        row("dropped", d, None);
    }
    b.push_str("</tbody></table></section>\n");
}

/// A stable id of a discovered label set within its pool, for the debugger's link.
pub fn target_id(discovered: &Labels) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(discovered.to_string().as_bytes()))
}

/// The relabeling debugger's address for a discovered target of `job`.
fn debugger_link(job: &str, discovered: &Labels) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("pool", job)
        .append_pair("target", &target_id(discovered))
        .finish();
    format!("/service-discovery?{query}")
}

/// A rule as its YAML keys, defaults left out except the action.
fn rule_text(r: &RelabelConfig) -> String {
    let mut s = format!("action: {}", r.action);
    if !r.source_labels.is_empty() {
        let _ = write!(s, "\nsource_labels: [{}]", r.source_labels.join(", "));
    }
    if r.separator != ";" {
        let _ = write!(s, "\nseparator: {:?}", r.separator);
    }
    if r.regex_source != "(.*)" {
        let _ = write!(s, "\nregex: {}", r.regex_source);
    }
    if r.modulus != 0 {
        let _ = write!(s, "\nmodulus: {}", r.modulus);
    }
    if !r.target_label.is_empty() {
        let _ = write!(s, "\ntarget_label: {}", r.target_label);
    }
    if r.replacement != "$1" {
        let _ = write!(s, "\nreplacement: {}", r.replacement);
    }
    s
}

/// What a rule changed (labels added, changed, removed, marked), then every label after it, folded.
fn diff_html(before: &Labels, after: &Labels, out: &mut String) {
    let span = |class: &str, name: &str, value: &str, out: &mut String| {
        let _ = write!(out, "<span class=\"{class}\">");
        esc(name, out);
        out.push_str("=\"");
        esc(value, out);
        out.push_str("\"</span> ");
    };
    let mut changed = false;
    for l in after.iter() {
        let class = match before.get(&l.name) {
            None => "label added",
            Some(v) if v != &*l.value => "label changed",
            Some(_) => continue,
        };
        changed = true;
        span(class, &l.name, &l.value, out);
    }
    for l in before.iter().filter(|l| !after.contains(&l.name)) {
        changed = true;
        span("label removed", &l.name, &l.value, out);
    }
    if !changed {
        out.push_str("<span class=\"unchanged\">no change</span>");
    }
    let _ = write!(out, "<details><summary>all {} labels</summary>", after.len());
    labels_html(after, out);
    out.push_str("</details>");
}

/// The relabeling debugger (`/service-discovery?pool=JOB&target=ID`): the discovered labels of
/// one target, each `relabel_configs` rule with the labels after it (changes marked) and the rule
/// that dropped it, then what became of it. `None` when the pool or target is not (any more)
/// discovered.
pub fn relabeling(view: &TargetsView, job: &str, id: &str) -> Option<String> {
    let pools = view.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let p = pools.get(job)?;
    let sc = p.config.clone()?;
    let active = p.active.iter().find(|t| target_id(&t.discovered) == id);
    let discovered = match active {
        Some(t) => t.discovered.clone(),
        None => p.dropped.iter().find(|d| target_id(d) == id)?.clone(),
    };
    let rules = &sc.relabel_configs;
    let steps = relabel::steps(rules, &discovered);
    let params = sc.param_list();
    let outcome = relabel::populate_target(&discovered, &sc.target_defaults(&params), rules);

    let mut b = String::new();
    b.push_str("<p>Scrape pool <b class=\"pool-name\">");
    esc(job, &mut b);
    b.push_str("</b> · <a href=\"/service-discovery\">back to Service Discovery</a></p>\n");
    b.push_str("<h2>Discovered labels</h2>\n<p class=\"discovered\">");
    labels_html(&discovered, &mut b);
    b.push_str("</p>\n<h2>relabel_configs, step by step</h2>\n");
    if rules.is_empty() {
        b.push_str("<p class=\"no-rules\">The job has no relabel_configs.</p>\n");
    } else {
        b.push_str(
            "<table class=\"steps\"><thead><tr><th>#</th><th>Rule</th><th>What the rule did \
             (<span class=\"added\">added</span>, <span class=\"changed\">changed</span>, \
             <span class=\"removed\">removed</span>)</th></tr></thead><tbody>\n",
        );
        let mut before = &discovered;
        let mut dropped_seen = false;
        for (i, (rule, after)) in rules.iter().zip(&steps).enumerate() {
            let class = match after {
                Some(_) => "step kept",
                None if !dropped_seen => "step drop",
                None => "step skipped",
            };
            let _ = write!(b, "<tr class=\"{class}\"><td>{}</td><td class=\"rule\">", i + 1);
            esc(&rule_text(rule), &mut b);
            b.push_str("</td><td class=\"after\">");
            match after {
                Some(l) => {
                    diff_html(before, l, &mut b);
                    before = l;
                }
                None if !dropped_seen => {
                    dropped_seen = true;
                    b.push_str("<b>Dropped by this rule.</b>");
                }
                None => b.push_str("not reached"),
            }
            b.push_str("</td></tr>\n");
        }
        b.push_str("</tbody></table>\n");
    }
    b.push_str("<h2>Outcome</h2>\n");
    // Whether the replay agrees with the view: kept ones are active, dropped ones dropped, and an
    // invalid target is listed in neither.
    let agrees = match &outcome {
        Ok(TargetOutcome::Keep { target, .. }) => {
            b.push_str("<p class=\"outcome kept\">Scraped at <code class=\"url\">");
            esc(&target.url, &mut b);
            b.push_str("</code> with the labels ");
            labels_html(&target.labels, &mut b);
            b.push_str(
                "<br><small>After relabeling, <code>__address__</code> gets the scheme's port if it has \
                 none, <code>instance</code> defaults to it, and labels starting with <code>__</code> \
                 are removed.</small></p>\n",
            );
            active.is_some()
        }
        Ok(TargetOutcome::Drop { .. }) => {
            let n = steps.iter().position(Option::is_none).map_or(0, |i| i + 1);
            let action = rules.get(n.saturating_sub(1)).map(|r| r.action.to_string()).unwrap_or_default();
            let _ = writeln!(
                b,
                "<p class=\"outcome dropped\">Dropped by rule {n} (<code>{action}</code>): the target is \
                 not scraped.</p>"
            );
            active.is_none()
        }
        Err(e) => {
            b.push_str("<p class=\"outcome invalid\">Kept by relabeling, but not a valid target: ");
            esc(&e.to_string(), &mut b);
            b.push_str(" (Prometheus lists it nowhere and logs it).</p>\n");
            false
        }
    };
    if !agrees {
        b.push_str(
            "<p class=\"note\">The pool has not applied this config to its targets yet; reload the \
             page.</p>\n",
        );
    }
    Some(page("Relabeling", &b))
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
            ..Default::default()
        };
        let pool = PoolView {
            active: vec![ActiveTarget {
                discovered: Labels::from_pairs([("__address__", "a:1")]),
                target,
                status: Arc::new(Mutex::new(status)),
            }],
            dropped: vec![Labels::from_pairs([("__address__", "b:2")])],
            config: None,
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

    /// A pool of one discovered set whose rules leave it without an address.
    fn invalid_target_view() -> (TargetsView, Labels) {
        let cfg = crate::config::load_str(
            "scrape_configs:\n  - job_name: j\n    relabel_configs:\n      - {action: labeldrop, regex: __address__}\n",
            std::path::Path::new("/t.yml"),
        )
        .unwrap();
        let discovered = Labels::from_pairs([("__address__", "a:1"), ("job", "j")]);
        let pool = PoolView {
            active: Vec::new(),
            dropped: Vec::new(),
            config: Some(Arc::new(cfg.scrape_configs[0].clone())),
        };
        let view: TargetsView = Arc::new(Mutex::new([("j".to_string(), pool)].into()));
        (view, discovered)
    }

    #[test]
    fn relabeling_page_says_why_a_kept_set_is_no_target() {
        let (view, discovered) = invalid_target_view();
        assert!(relabeling(&view, "j", &target_id(&discovered)).is_none(), "not listed: not found");
        view.lock().unwrap().get_mut("j").unwrap().dropped.push(discovered.clone());
        let html = relabeling(&view, "j", &target_id(&discovered)).expect("found");
        for want in [
            "<span class=\"label removed\">__address__=\"a:1\"</span>", // what the rule did
            "not a valid target: no address",                           // the outcome
            "has not applied this config",                              // the view disagrees
        ] {
            assert!(html.contains(want), "{want} in {html}");
        }
        assert!(relabeling(&view, "other", &target_id(&discovered)).is_none(), "unknown pool");
    }

    #[test]
    fn service_discovery_page_shows_kept_and_dropped() {
        let html = service_discovery(&view());
        assert!(html.contains("(1 / 2 active targets)"), "{html}");
        assert!(html.contains("__address__=\"b:2\"</span> </td><td class=\"kept\">Dropped</td>"), "{html}");
        let link = format!(
            "/service-discovery?pool=j%3C1%3E&amp;target={}",
            target_id(&Labels::from_pairs([("__address__", "b:2")]))
        );
        assert!(html.contains(&link), "a link to the debugger, escaped: {link} in {html}");
        assert!(html.contains("<td class=\"kept\"><span class=\"label\">instance="), "{html}");
    }
}
