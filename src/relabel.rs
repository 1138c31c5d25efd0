//! Relabeling exactly as Prometheus does it (`model/relabel/relabel.go`), for targets
//! (`relabel_configs`) and samples (`metric_relabel_configs`, `write_relabel_configs`), plus the
//! target lifecycle around it (`scrape.PopulateLabels`).
//!
//! What this is: a pure function over a [`Labels`] set and a list of validated rules. Rules are
//! checked when the config is deserialized, so a bad regex or a missing field is an error with the
//! file and line. What this is not: caching; the scrape loop caches the outcome per series.
//!
//! Go and Rust regexes differ in a few places; [`go_regex`] translates Go's meaning: Perl classes
//! (`\d \w \s \b`) are ASCII in Go and Unicode in Rust, and `\Q…\E` does not exist in Rust.
//! Anchoring follows Prometheus 3 (`^(?s:…)$`, so `.` matches a newline); Prometheus 2 used
//! `^(?:…)$`, which differs only for values containing newlines.

use std::fmt;

use regex::Regex;
use serde::Deserialize;

use crate::config::common::Duration;
use crate::labels::{self, Labels};

/// A relabel rule that cannot be used. Not retryable: the config must change.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RelabelError(String);

/// What a rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Set `target_label` to the expanded `replacement` when `regex` matches.
    Replace,
    /// Drop the set unless `regex` matches.
    Keep,
    /// Drop the set when `regex` matches.
    Drop,
    /// Drop the set unless the joined source values equal `target_label`'s value.
    KeepEqual,
    /// Drop the set when the joined source values equal `target_label`'s value.
    DropEqual,
    /// Set `target_label` to md5(joined) mod `modulus`.
    HashMod,
    /// Copy labels whose name matches to the name given by `replacement`.
    LabelMap,
    /// Remove labels whose name matches.
    LabelDrop,
    /// Remove labels whose name does not match.
    LabelKeep,
    /// Set `target_label` to the lower-cased joined values.
    Lowercase,
    /// Set `target_label` to the upper-cased joined values.
    Uppercase,
}

impl Action {
    fn parse(s: &str) -> Option<Action> {
        // Prometheus matches action names case-insensitively.
        Some(match s.to_ascii_lowercase().as_str() {
            "replace" => Action::Replace,
            "keep" => Action::Keep,
            "drop" => Action::Drop,
            "keepequal" => Action::KeepEqual,
            "dropequal" => Action::DropEqual,
            "hashmod" => Action::HashMod,
            "labelmap" => Action::LabelMap,
            "labeldrop" => Action::LabelDrop,
            "labelkeep" => Action::LabelKeep,
            "lowercase" => Action::Lowercase,
            "uppercase" => Action::Uppercase,
            _ => return None,
        })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::KeepEqual => "keepequal",
            Action::DropEqual => "dropequal",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
            Action::Lowercase => "lowercase",
            Action::Uppercase => "uppercase",
        })
    }
}

const DEFAULT_SEPARATOR: &str = ";";
const DEFAULT_REGEX: &str = "(.*)";
const DEFAULT_REPLACEMENT: &str = "$1";

/// One validated rule.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "RawRelabelConfig")]
pub struct RelabelConfig {
    /// Labels whose values are joined as the input.
    pub source_labels: Vec<String>,
    /// Joins the source values.
    pub separator: String,
    /// The regex as written.
    pub regex_source: String,
    /// The anchored, Go-compatible compiled regex.
    pub regex: Regex,
    /// For hashmod.
    pub modulus: u64,
    /// Label to write (may contain `$1`-style references for replace).
    pub target_label: String,
    /// Replacement template.
    pub replacement: String,
    /// The action.
    pub action: Action,
}

impl PartialEq for RelabelConfig {
    fn eq(&self, o: &Self) -> bool {
        self.source_labels == o.source_labels
            && self.separator == o.separator
            && self.regex_source == o.regex_source
            && self.modulus == o.modulus
            && self.target_label == o.target_label
            && self.replacement == o.replacement
            && self.action == o.action
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelabelConfig {
    #[serde(default)]
    source_labels: Option<Vec<String>>,
    #[serde(default)]
    separator: Option<String>,
    #[serde(default)]
    regex: Option<RegexValue>,
    #[serde(default)]
    modulus: Option<u64>,
    #[serde(default)]
    target_label: Option<String>,
    #[serde(default)]
    replacement: Option<String>,
    #[serde(default)]
    action: Option<String>,
}

/// YAML may give a regex as a number or boolean (`regex: true` in the DaemonSet config).
#[derive(Deserialize)]
#[serde(untagged)]
enum RegexValue {
    S(String),
    B(bool),
    I(i64),
    F(f64),
}

impl RegexValue {
    fn into_string(self) -> String {
        match self {
            RegexValue::S(s) => s,
            RegexValue::B(b) => b.to_string(),
            RegexValue::I(i) => i.to_string(),
            RegexValue::F(f) => f.to_string(),
        }
    }
}

/// Prometheus' `relabelTarget`: a label name, possibly with `$1`/`${1}` references.
fn valid_relabel_target(s: &str) -> bool {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^(?:(?:[a-zA-Z_]|\$(?:\{[0-9A-Za-z_]+\}|[0-9A-Za-z_]+))+[0-9A-Za-z_]*)+$")
            .expect("static regex")
    })
    .is_match(s)
}

impl TryFrom<RawRelabelConfig> for RelabelConfig {
    type Error = String;
    fn try_from(r: RawRelabelConfig) -> Result<Self, String> {
        let action = match r.action.as_deref() {
            None => Action::Replace,
            Some("") => return Err("relabel action cannot be empty".into()),
            Some(a) => Action::parse(a).ok_or_else(|| format!("unknown relabel action {a:?}"))?,
        };
        let separator = r.separator.clone().unwrap_or_else(|| DEFAULT_SEPARATOR.into());
        let regex_source = r.regex.map(RegexValue::into_string).unwrap_or_else(|| DEFAULT_REGEX.into());
        let regex = compile(&regex_source).map_err(|e| format!("invalid regex {regex_source:?}: {e}"))?;
        let modulus = r.modulus.unwrap_or(0);
        let target_label = r.target_label.clone().unwrap_or_default();
        let replacement = r.replacement.clone().unwrap_or_else(|| DEFAULT_REPLACEMENT.into());
        let source_labels = r.source_labels.clone().unwrap_or_default();
        for s in &source_labels {
            if !labels::is_valid_label_name(s) {
                return Err(format!("{s:?} is not a valid label name"));
            }
        }
        use Action::*;
        if action == HashMod && modulus == 0 {
            return Err("relabel configuration for hashmod requires non-zero modulus".into());
        }
        let needs_target =
            matches!(action, Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual);
        if needs_target && target_label.is_empty() {
            return Err(format!("relabel configuration for {action} action requires 'target_label' value"));
        }
        if matches!(action, Replace | Lowercase | Uppercase | KeepEqual | DropEqual)
            && !valid_relabel_target(&target_label)
        {
            return Err(format!("{target_label:?} is invalid 'target_label' for {action} action"));
        }
        if matches!(action, Lowercase | Uppercase | KeepEqual | DropEqual)
            && replacement != DEFAULT_REPLACEMENT
        {
            return Err(format!("'replacement' can not be set for {action} action"));
        }
        if action == LabelMap && !valid_relabel_target(&replacement) {
            return Err(format!("{replacement:?} is invalid 'replacement' for {action} action"));
        }
        if action == HashMod && !labels::is_valid_label_name(&target_label) {
            return Err(format!("{target_label:?} is invalid 'target_label' for {action} action"));
        }
        if matches!(action, KeepEqual | DropEqual)
            && (regex_source != DEFAULT_REGEX
                || modulus != 0
                || separator != DEFAULT_SEPARATOR
                || replacement != DEFAULT_REPLACEMENT)
        {
            return Err(format!(
                "{action} action requires only 'source_labels' and `target_label`, and no other fields"
            ));
        }
        if matches!(action, LabelDrop | LabelKeep)
            && (r.source_labels.is_some()
                || !target_label.is_empty()
                || modulus != 0
                || separator != DEFAULT_SEPARATOR
                || replacement != DEFAULT_REPLACEMENT)
        {
            return Err(format!("{action} action requires only 'regex', and no other fields"));
        }
        Ok(RelabelConfig {
            source_labels,
            separator,
            regex_source,
            regex,
            modulus,
            target_label,
            replacement,
            action,
        })
    }
}

/// Compiles a relabel regex with Prometheus' anchoring and Go's meaning.
pub fn compile(re: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?s:{})$", go_regex(re)))
}

/// Rewrites Go (RE2) regex syntax whose meaning differs in Rust's `regex`:
/// `\d \D \w \W \s \S` become their ASCII classes (Go's are ASCII-only), `\b \B` become ASCII
/// word boundaries, and `\Q…\E` becomes an escaped literal.
pub fn go_regex(re: &str) -> String {
    let mut out = String::with_capacity(re.len() + 8);
    let mut chars = re.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(n) = chars.next() else {
                    out.push('\\');
                    break;
                };
                let rep: Option<&str> = match (n, in_class) {
                    ('d', false) => Some("[0-9]"),
                    ('D', false) => Some("[^0-9]"),
                    ('w', false) => Some("[0-9A-Za-z_]"),
                    ('W', false) => Some("[^0-9A-Za-z_]"),
                    ('s', false) => Some("[\\t\\n\\f\\r ]"),
                    ('S', false) => Some("[^\\t\\n\\f\\r ]"),
                    ('d', true) => Some("0-9"),
                    ('w', true) => Some("0-9A-Za-z_"),
                    ('s', true) => Some("\\t\\n\\f\\r "),
                    ('b', false) => Some("(?-u:\\b)"),
                    ('B', false) => Some("(?-u:\\B)"),
                    _ => None,
                };
                if let Some(r) = rep {
                    out.push_str(r);
                } else if n == 'Q' && !in_class {
                    let mut lit = String::new();
                    while let Some(c) = chars.next() {
                        if c == '\\' && chars.peek() == Some(&'E') {
                            chars.next();
                            break;
                        }
                        lit.push(c);
                    }
                    out.push_str(&regex::escape(&lit));
                } else {
                    out.push('\\');
                    out.push(n);
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                // A `]` (or `^]`) right after the opening bracket is a literal.
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
                if chars.peek() == Some(&']') {
                    out.push_str("\\]");
                    chars.next();
                }
            }
            '[' if in_class => {
                // `[:alpha:]` inside a class; copy through to the closing `:]`.
                if chars.peek() == Some(&':') {
                    out.push('[');
                    for c in chars.by_ref() {
                        out.push(c);
                        if c == ']' {
                            break;
                        }
                    }
                } else {
                    out.push_str("\\[");
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            c => out.push(c),
        }
    }
    out
}

/// Applies `rules` in order; returns false when the set is dropped.
pub fn process(rules: &[RelabelConfig], l: &mut Labels) -> bool {
    rules.iter().all(|r| apply(r, l))
}

/// Applies `rules` one at a time to `input`, with the same rule code as [`process`], and returns
/// the labels after each rule: `None` from the rule that dropped the set on (the relabeling
/// debugger's view, and Prometheus' `/api/v1/targets/relabel_steps`, which shows the rules after
/// a drop with no labels and `keep: false`).
pub fn steps(rules: &[RelabelConfig], input: &Labels) -> Vec<Option<Labels>> {
    let mut l = input.clone();
    let mut kept = true;
    rules
        .iter()
        .map(|r| {
            kept = kept && apply(r, &mut l);
            kept.then(|| l.clone())
        })
        .collect()
}

fn joined(r: &RelabelConfig, l: &Labels) -> String {
    let mut s = String::new();
    for (i, name) in r.source_labels.iter().enumerate() {
        if i > 0 {
            s.push_str(&r.separator);
        }
        s.push_str(l.get(name).unwrap_or(""));
    }
    s
}

fn apply(r: &RelabelConfig, l: &mut Labels) -> bool {
    let val = joined(r, l);
    match r.action {
        Action::Drop => !r.regex.is_match(&val),
        Action::Keep => r.regex.is_match(&val),
        Action::DropEqual => l.get(&r.target_label).unwrap_or("") != val,
        Action::KeepEqual => l.get(&r.target_label).unwrap_or("") == val,
        Action::Replace => {
            let Some(caps) = r.regex.captures(&val) else { return true };
            let mut target = String::new();
            caps.expand(&r.target_label, &mut target);
            if !labels::is_valid_label_name(&target) {
                return true;
            }
            let mut res = String::new();
            caps.expand(&r.replacement, &mut res);
            l.set(target, res);
            true
        }
        Action::Lowercase => {
            l.set(r.target_label.clone(), val.to_lowercase());
            true
        }
        Action::Uppercase => {
            l.set(r.target_label.clone(), val.to_uppercase());
            true
        }
        Action::HashMod => {
            let digest = md5::compute(val.as_bytes());
            let mut last = [0u8; 8];
            last.copy_from_slice(&digest.0[8..16]);
            l.set(r.target_label.clone(), (u64::from_be_bytes(last) % r.modulus).to_string());
            true
        }
        Action::LabelMap => {
            // Over a snapshot: labels added by this rule are not matched again.
            let snapshot = l.clone();
            for x in snapshot.iter() {
                if r.regex.is_match(&x.name) {
                    let name = r.regex.replace_all(&x.name, r.replacement.as_str()).into_owned();
                    l.set(name, x.value.clone());
                }
            }
            true
        }
        Action::LabelDrop => {
            l.retain(|x| !r.regex.is_match(&x.name));
            true
        }
        Action::LabelKeep => {
            l.retain(|x| r.regex.is_match(&x.name));
            true
        }
    }
}

/// Job-level defaults for [`populate_target`].
#[derive(Debug)]
pub struct TargetDefaults<'a> {
    /// The job name.
    pub job: &'a str,
    /// Default scheme.
    pub scheme: &'a str,
    /// Default metrics path.
    pub metrics_path: &'a str,
    /// URL parameters of the job.
    pub params: &'a [(String, Vec<String>)],
    /// Default interval.
    pub scrape_interval: Duration,
    /// Default timeout.
    pub scrape_timeout: Duration,
}

/// A target after relabeling: what to scrape and with which labels.
#[derive(Clone, Debug, PartialEq)]
pub struct ScrapeTarget {
    /// The labels attached to the target's samples (no `__` labels).
    pub labels: Labels,
    /// `scheme://address/path?params`.
    pub url: String,
    /// Scrape interval (from `__scrape_interval__`).
    pub interval: Duration,
    /// Scrape timeout (from `__scrape_timeout__`).
    pub timeout: Duration,
    /// The query parameters in the URL.
    pub params: Vec<(String, String)>,
}

/// What became of a discovered label set.
#[derive(Debug)]
pub enum TargetOutcome {
    /// Scrape it. `discovered` is the set before relabeling, with the job defaults added, as
    /// Prometheus shows it in `discoveredLabels`.
    Keep {
        /// The target.
        target: ScrapeTarget,
        /// Labels before relabeling.
        discovered: Labels,
    },
    /// Dropped by relabeling.
    Drop {
        /// Labels before relabeling.
        discovered: Labels,
    },
}

/// A discovered target that Prometheus would reject (not shown as active or dropped).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TargetError(pub String);

/// Prometheus' `PopulateLabels` (2.42): job defaults, relabeling, address checks, interval and
/// timeout from labels, `__meta_*` removal and the `instance` default.
pub fn populate_target(
    discovered: &Labels,
    d: &TargetDefaults<'_>,
    rules: &[RelabelConfig],
) -> Result<TargetOutcome, TargetError> {
    let mut l = discovered.clone();
    for (name, value) in [
        (labels::JOB, d.job.to_string()),
        (labels::SCRAPE_INTERVAL, d.scrape_interval.to_string()),
        (labels::SCRAPE_TIMEOUT, d.scrape_timeout.to_string()),
        (labels::METRICS_PATH, d.metrics_path.to_string()),
        (labels::SCHEME, d.scheme.to_string()),
    ] {
        if !l.contains(name) {
            l.set(name, value);
        }
    }
    for (k, v) in d.params {
        let name = format!("{}{k}", labels::PARAM_PREFIX);
        if let Some(first) = v.first()
            && !l.contains(&name)
        {
            l.set(name, first.as_str());
        }
    }
    let pre = l.clone();
    if !process(rules, &mut l) {
        return Ok(TargetOutcome::Drop { discovered: pre });
    }
    let Some(mut addr) = l.get(labels::ADDRESS).map(str::to_owned) else {
        return Err(TargetError("no address".into()));
    };
    let scheme = l.get(labels::SCHEME).unwrap_or("").to_owned();
    // Prometheus 2.x adds the scheme's default port to an address without one (3.x does not);
    // we follow the Prometheus our differential tests run against.
    if needs_port(&addr) {
        match scheme.as_str() {
            "http" | "" => addr.push_str(":80"),
            "https" => addr.push_str(":443"),
            _ => return Err(TargetError(format!("invalid scheme: {:?}", d.scheme))),
        }
        l.set(labels::ADDRESS, addr.as_str());
    }
    if addr.contains('/') {
        return Err(TargetError(format!("{addr:?} is not a valid hostname")));
    }
    let interval_s = l.get(labels::SCRAPE_INTERVAL).unwrap_or("").to_owned();
    let interval = Duration::parse(&interval_s)
        .map_err(|e| TargetError(format!("error parsing scrape interval: {e}")))?;
    if interval.get().is_zero() {
        return Err(TargetError("scrape interval cannot be 0".into()));
    }
    let timeout_s = l.get(labels::SCRAPE_TIMEOUT).unwrap_or("").to_owned();
    let timeout =
        Duration::parse(&timeout_s).map_err(|e| TargetError(format!("error parsing scrape timeout: {e}")))?;
    if timeout.get().is_zero() {
        return Err(TargetError("scrape timeout cannot be 0".into()));
    }
    if timeout > interval {
        return Err(TargetError(format!(
            "scrape timeout cannot be greater than scrape interval ({timeout_s:?} > {interval_s:?})"
        )));
    }
    l.retain(|x| !x.name.starts_with("__meta_"));
    if !l.contains(labels::INSTANCE) {
        l.set(labels::INSTANCE, addr.as_str());
    }
    // URL: the job's params, overridden by `__param_*` labels (first value only), sorted by key.
    let mut params: Vec<(String, Vec<String>)> = d.params.to_vec();
    for x in l.iter() {
        if let Some(k) = x.name.strip_prefix(labels::PARAM_PREFIX) {
            match params.iter_mut().find(|(pk, _)| pk == k) {
                Some((_, vs)) if !vs.is_empty() => vs[0] = x.value.to_string(),
                Some((_, vs)) => vs.push(x.value.to_string()),
                None => params.push((k.to_owned(), vec![x.value.to_string()])),
            }
        }
    }
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let flat: Vec<(String, String)> =
        params.iter().flat_map(|(k, vs)| vs.iter().map(move |v| (k.clone(), v.clone()))).collect();
    let path = escape_path(l.get(labels::METRICS_PATH).unwrap_or(""));
    // Go's url.URL.String puts a "/" between a host and a path that lacks one.
    let slash = if path.is_empty() || path.starts_with('/') { "" } else { "/" };
    let mut url = format!("{scheme}://{addr}{slash}{path}");
    if !flat.is_empty() {
        url.push('?');
        let q: Vec<String> =
            flat.iter().map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v))).collect();
        url.push_str(&q.join("&"));
    }
    let mut final_labels = l;
    final_labels.retain(|x| !x.name.starts_with(labels::RESERVED_PREFIX));
    Ok(TargetOutcome::Keep {
        target: ScrapeTarget { labels: final_labels, url, interval, timeout, params: flat },
        discovered: pre,
    })
}

/// Go's `net.SplitHostPort` fails on the address but succeeds once a port is appended.
fn needs_port(addr: &str) -> bool {
    split_host_port(addr).is_none() && split_host_port(&format!("{addr}:1234")).is_some()
}

/// A simplified `net.SplitHostPort`: `host:port` or `[v6]:port`, at most one colon outside
/// brackets.
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    let i = s.rfind(':')?;
    let (host, port) = (&s[..i], &s[i + 1..]);
    if let Some(h) = host.strip_prefix('[') {
        let h = h.strip_suffix(']')?;
        if h.contains(['[', ']']) {
            return None;
        }
        return Some((h, port));
    }
    if host.contains([':', '[', ']']) || port.contains(['[', ']']) {
        return None;
    }
    Some((host, port))
}

/// Go's `url.QueryEscape`: unreserved characters kept, space as `+`, the rest percent-encoded.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Go's `url.URL.EscapedPath` for a plain path: keeps unreserved, `/` and the sub-delimiters Go
/// leaves in paths; percent-encodes the rest.
fn escape_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'~'
            | b'/'
            | b'!'
            | b'$'
            | b'&'
            | b'\''
            | b'('
            | b')'
            | b'*'
            | b'+'
            | b','
            | b';'
            | b'='
            | b':'
            | b'@' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests;
