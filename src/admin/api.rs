//! The debug endpoints of Prometheus' HTTP API that an agent can answer, in Prometheus' JSON
//! shapes (`web/api/v1/api.go`): `/api/v1/status/config`, `/api/v1/status/flags`,
//! `/api/v1/status/buildinfo`, `/api/v1/targets/metadata` and `/api/v1/targets/relabel_steps`.
//!
//! What this is: pure functions from the running agent's views to `serde_json` values; errors are
//! Prometheus' `{"status":"error","errorType":"bad_data","error":…}` with HTTP 400. What this is
//! not: PromQL; `match_target` takes a label selector (`{job="a",instance=~"x.*"}`), which is all
//! Prometheus uses it for.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::config::{Config, ScrapeConfig};
use crate::labels::Labels;
use crate::parse::MetricType;
use crate::relabel::RelabelConfig;
use crate::scrape::TargetsView;

/// A request Prometheus would answer with `bad_data` (HTTP 400). Not retryable: the request must
/// change.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadData(pub String);

impl BadData {
    /// The error document, as Prometheus shapes it.
    pub fn json(&self) -> Value {
        json!({"status": "error", "errorType": "bad_data", "error": self.0})
    }
}

fn success(data: Value) -> Value {
    json!({"status": "success", "data": data})
}

/// The labels as a JSON object.
pub fn labels_json(l: &Labels) -> Value {
    Value::Object(l.iter().map(|l| (l.name.to_string(), Value::String(l.value.to_string()))).collect())
}

/// `/api/v1/status/config`: the loaded config as YAML, secrets hidden
/// ([`crate::config::dump`]).
pub fn status_config(cfg: &Config) -> Value {
    success(json!({ "yaml": crate::config::dump::to_yaml(cfg) }))
}

/// `/api/v1/status/flags`: every command-line flag and its value.
pub fn status_flags(flags: &[(String, String)]) -> Value {
    success(Value::Object(flags.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect()))
}

/// `/api/v1/status/buildinfo`. The version is the crate's; revision, branch, build user and date
/// come from `TRAWL_REVISION`, `TRAWL_BRANCH`, `TRAWL_BUILD_USER` and `TRAWL_BUILD_DATE` at build
/// time (empty when unset, as a plain `go build` of Prometheus leaves them); `goVersion` is
/// empty, trawl is not Go.
pub fn status_buildinfo() -> Value {
    success(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "revision": option_env!("TRAWL_REVISION").unwrap_or(""),
        "branch": option_env!("TRAWL_BRANCH").unwrap_or(""),
        "buildUser": option_env!("TRAWL_BUILD_USER").unwrap_or(""),
        "buildDate": option_env!("TRAWL_BUILD_DATE").unwrap_or(""),
        "goVersion": "",
    }))
}

/// Prometheus' name of a metric type (`model.MetricType`).
fn type_name(t: MetricType) -> &'static str {
    match t {
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Histogram => "histogram",
        MetricType::GaugeHistogram => "gaugehistogram",
        MetricType::Summary => "summary",
        MetricType::Info => "info",
        MetricType::StateSet => "stateset",
        MetricType::Unknown => "unknown",
    }
}

/// `/api/v1/targets/metadata?match_target=…&metric=…&limit=…`: per active target (matching the
/// selector), the TYPE, HELP and UNIT of each metric family it exposed in its last scrapes, or of
/// `metric` only (then without the `metric` key, as Prometheus answers). At most `limit` entries
/// when given (`-1`: no limit).
pub fn targets_metadata(
    view: &TargetsView,
    match_target: Option<&str>,
    metric: Option<&str>,
    limit: Option<&str>,
) -> Result<Value, BadData> {
    let limit: i64 = match limit.filter(|l| !l.is_empty()) {
        Some(l) => l.parse().map_err(|_| BadData("limit must be a number".into()))?,
        None => -1,
    };
    let matchers = match match_target.filter(|m| !m.is_empty()) {
        Some(m) => {
            parse_selector(m).map_err(|e| BadData(format!("invalid parameter \"match_target\": {e}")))?
        }
        None => Vec::new(),
    };
    let metric = metric.filter(|m| !m.is_empty());
    let pools = view.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut out = Vec::new();
    'targets: for p in pools.values() {
        for t in &p.active {
            if limit >= 0 && out.len() as i64 >= limit {
                break 'targets;
            }
            if !matchers.iter().all(|m| m.matches(&t.target.labels)) {
                continue;
            }
            let families = t.status.lock().unwrap_or_else(|e| e.into_inner()).metadata.clone();
            let target = labels_json(&t.target.labels);
            for (name, md) in families.iter() {
                let entry = |with_name: bool| {
                    let mut e = json!({
                        "target": target,
                        "type": type_name(md.kind),
                        "help": md.help,
                        "unit": md.unit,
                    });
                    if with_name {
                        e["metric"] = Value::String(name.to_string());
                    }
                    e
                };
                match metric {
                    None => out.push(entry(true)),
                    Some(m) if m == &**name => out.push(entry(false)),
                    Some(_) => {}
                }
            }
        }
    }
    Ok(success(Value::Array(out)))
}

/// One relabel rule as Prometheus marshals `relabel.Config` to JSON.
pub fn rule_json(r: &RelabelConfig) -> Value {
    let mut m = serde_json::Map::new();
    if !r.source_labels.is_empty() {
        m.insert("source_labels".into(), json!(r.source_labels));
    }
    m.insert("separator".into(), json!(r.separator));
    m.insert("regex".into(), json!(r.regex_source));
    if r.modulus != 0 {
        m.insert("modulus".into(), json!(r.modulus));
    }
    if !r.target_label.is_empty() {
        m.insert("target_label".into(), json!(r.target_label));
    }
    m.insert("replacement".into(), json!(r.replacement));
    m.insert("action".into(), json!(r.action.to_string()));
    Value::Object(m)
}

/// `/api/v1/targets/relabel_steps?scrapePool=…&labels={…}`: each of the pool's
/// `relabel_configs` with the labels after it and whether the target is still kept, as
/// Prometheus 3 answers it (after a drop: `{}` and `keep: false`).
pub fn relabel_steps(view: &TargetsView, pool: Option<&str>, labels: Option<&str>) -> Result<Value, BadData> {
    let pool =
        pool.filter(|p| !p.is_empty()).ok_or_else(|| BadData("no scrapePool parameter provided".into()))?;
    let labels =
        labels.filter(|l| !l.is_empty()).ok_or_else(|| BadData("no labels parameter provided".into()))?;
    let map: std::collections::BTreeMap<String, String> =
        serde_json::from_str(labels).map_err(|e| BadData(format!("error parsing labels: {e}")))?;
    let input = Labels::from_pairs(map);
    let sc = pool_config(view, pool)?;
    let steps = crate::relabel::steps(&sc.relabel_configs, &input);
    let out: Vec<Value> = sc
        .relabel_configs
        .iter()
        .zip(steps)
        .map(|(rule, after)| {
            json!({
                "rule": rule_json(rule),
                "output": after.as_ref().map(labels_json).unwrap_or_else(|| json!({})),
                "keep": after.is_some(),
            })
        })
        .collect();
    Ok(success(json!({ "steps": out })))
}

/// The config the running scrape pool `pool` relabeled its targets with.
pub fn pool_config(view: &TargetsView, pool: &str) -> Result<Arc<ScrapeConfig>, BadData> {
    view.lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(pool)
        .and_then(|p| p.config.clone())
        .ok_or_else(|| BadData(format!("error retrieving scrape config: scrape pool {pool:?} not found")))
}

/// A label matcher of a selector.
#[derive(Debug)]
struct Matcher {
    name: String,
    op: Op,
    value: String,
    regex: Option<regex::Regex>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Re,
    Nre,
}

impl Matcher {
    /// As Prometheus' `labels.Matcher`: a missing label has the value `""`; regexes are anchored.
    fn matches(&self, l: &Labels) -> bool {
        let v = l.get(&self.name).unwrap_or("");
        match self.op {
            Op::Eq => v == self.value,
            Op::Ne => v != self.value,
            Op::Re => self.regex.as_ref().is_some_and(|r| r.is_match(v)),
            Op::Nre => !self.regex.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }
}

/// Parses `{name op "value", …}`, optionally preceded by a metric name (a `__name__` matcher), as
/// PromQL's metric selector; values in double or single quotes or backticks, with Go escapes in
/// the quoted forms.
fn parse_selector(s: &str) -> Result<Vec<Matcher>, String> {
    let s = s.trim();
    let (name, rest) = match s.find('{') {
        Some(i) => (s[..i].trim(), s[i..].trim()),
        None => (s, ""),
    };
    let mut out = Vec::new();
    if !name.is_empty() {
        if !crate::labels::is_valid_metric_name(name) {
            return Err(format!("invalid metric name {name:?}"));
        }
        out.push(Matcher { name: "__name__".into(), op: Op::Eq, value: name.into(), regex: None });
    }
    if rest.is_empty() {
        return if out.is_empty() { Err("empty selector".into()) } else { Ok(out) };
    }
    let body = rest
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .ok_or_else(|| format!("unbalanced braces in {s:?}"))?;
    let mut chars = body.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                chars.next();
            } else {
                break;
            }
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let op = match (chars.next(), chars.peek().copied()) {
            (Some('='), Some('~')) => Op::Re,
            (Some('!'), Some('=')) => Op::Ne,
            (Some('!'), Some('~')) => Op::Nre,
            (Some('='), _) => Op::Eq,
            (c, _) => return Err(format!("expected a matcher operator after {name:?}, found {c:?}")),
        };
        if op != Op::Eq {
            chars.next();
        }
        if !crate::labels::is_valid_label_name(&name) {
            return Err(format!("invalid label name {name:?}"));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let quote = chars.next().filter(|q| matches!(q, '"' | '\'' | '`'));
        let Some(quote) = quote else { return Err(format!("expected a quoted value for {name:?}")) };
        let mut value = String::new();
        let mut closed = false;
        while let Some(c) = chars.next() {
            match c {
                c if c == quote => {
                    closed = true;
                    break;
                }
                '\\' if quote != '`' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some('t') => value.push('\t'),
                    Some(e) => value.push(e),
                    None => break,
                },
                c => value.push(c),
            }
        }
        if !closed {
            return Err(format!("unterminated value for {name:?}"));
        }
        let regex = match op {
            Op::Re | Op::Nre => {
                Some(crate::relabel::compile(&value).map_err(|e| format!("invalid regex {value:?}: {e}"))?)
            }
            _ => None,
        };
        out.push(Matcher { name, op, value, regex });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_as_prometheus_matchers() {
        let l = Labels::from_pairs([("job", "node"), ("instance", "10.0.0.1:9100")]);
        // (selector, matches, why)
        let cases: &[(&str, bool, &str)] = &[
            ("{job=\"node\"}", true, "equality"),
            ("{job='node', instance=~\"10\\\\..*\"}", true, "single quotes and an escaped regex"),
            ("{instance=~\"10\"}", false, "regexes are anchored"),
            ("{job!=\"node\"}", false, "inequality"),
            ("{team=\"\"}", true, "a missing label is empty"),
            ("{team!~\".+\"}", true, "negative regex on a missing label"),
            ("{job=`node`}", true, "backticks"),
            ("up{job=\"node\"}", false, "a metric name matches __name__, which targets lack"),
        ];
        for (sel, want, why) in cases {
            let m = parse_selector(sel).unwrap_or_else(|e| panic!("{why}: {e}"));
            assert_eq!(m.iter().all(|m| m.matches(&l)), *want, "{why}: {sel}");
        }
        for bad in ["{job=node}", "{job=\"x\"", "{1a=\"x\"}", "{job~\"x\"}", ""] {
            assert!(parse_selector(bad).is_err(), "{bad:?} is refused");
        }
    }
}
