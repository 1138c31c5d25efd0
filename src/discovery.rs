//! Target discovery: `static_configs`, `file_sd_configs`, `http_sd_configs` (see [`http`]) and
//! `kubernetes_sd_configs` (see [`kubernetes`]), as target groups per job.
//!
//! What this is: the providers that turn config into discovered label sets (each with
//! `__address__` plus its group's labels, and `__meta_filepath` for file SD), published on a watch
//! channel per job so the scrape manager sees every change. What this is not: relabeling or
//! scraping; see [`crate::relabel::populate_target`] and [`crate::scrape`].
//!
//! File SD re-reads a file when its modification time or size changes (checked every
//! [`FILE_POLL_INTERVAL`]) and at `refresh_interval` regardless, as Prometheus does with fsnotify
//! plus a periodic refresh. A file that fails to parse keeps its previous targets and logs an
//! error, as Prometheus does; a file that disappears drops its targets.

pub mod http;
pub mod kubernetes;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde::Deserialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{FileSdConfig, ScrapeConfig};
use crate::labels::{self, Labels};

/// How often file SD checks its files for changes: fast enough that a changed target list is
/// picked up within about a second, cheap enough (one `stat` per file) to be negligible.
pub const FILE_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// All label sets discovered for one job, in a stable order.
pub type Discovered = Arc<Vec<Labels>>;

/// A target group as Prometheus reads it for file and HTTP SD (`targetgroup.Group`'s JSON:
/// unknown keys are errors, missing `targets` is none).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetGroup {
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// The label sets of target groups: each target's `__address__`, its group's labels and the
/// provider's `meta` label; an invalid label name is an error.
fn group_targets(groups: Vec<TargetGroup>, meta: (&str, &str)) -> Result<Vec<Labels>, String> {
    let mut out = Vec::new();
    for g in groups {
        for k in g.labels.keys() {
            if !labels::is_valid_label_name(k) {
                return Err(format!("invalid label name {k:?}"));
            }
        }
        for t in g.targets {
            let mut l = Labels::from_pairs(g.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            l.set(labels::ADDRESS, t);
            l.set(meta.0, meta.1);
            out.push(l);
        }
    }
    Ok(out)
}

/// A file SD file that could not be used. Retryable: the file is read again when it changes.
#[derive(Debug, thiserror::Error)]
pub enum FileSdError {
    /// Reading failed.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The content is not a list of target groups.
    #[error("{path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The label sets of a `static_configs` list.
pub fn static_targets(sc: &ScrapeConfig) -> Vec<Labels> {
    let mut out = Vec::new();
    for group in &sc.static_configs {
        for t in &group.targets {
            let mut l = Labels::from_pairs(group.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            l.set(labels::ADDRESS, t.as_str());
            out.push(l);
        }
    }
    out
}

/// Reads one file SD file (JSON or YAML by extension) into label sets.
pub fn read_file(path: &Path) -> Result<Vec<Labels>, FileSdError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| FileSdError::Read { path: path.to_owned(), source })?;
    let is_json = path.extension().is_some_and(|e| e == "json");
    let groups: Vec<TargetGroup> = if is_json {
        serde_json::from_str(&text)
            .map_err(|e| FileSdError::Parse { path: path.to_owned(), reason: e.to_string() })?
    } else if text.trim().is_empty() {
        Vec::new()
    } else {
        serde_saphyr::from_str(&text).map_err(|e| FileSdError::Parse {
            path: path.to_owned(),
            reason: e.without_snippet().to_string(),
        })?
    };
    let filepath = path.to_string_lossy();
    group_targets(groups, ("__meta_filepath", filepath.as_ref()))
        .map_err(|reason| FileSdError::Parse { path: path.to_owned(), reason })
}

/// Expands a file SD or `scrape_config_files` pattern: a plain path, or a glob (`*`, `?`) in the
/// last path element only, as Prometheus' `filepath.Glob` use allows in practice. Matches come
/// sorted, as Go's `Glob` returns them.
pub(crate) fn expand_pattern(pattern: &str) -> Vec<PathBuf> {
    let p = Path::new(pattern);
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !name.contains(['*', '?', '[']) {
        return vec![p.to_owned()];
    }
    let dir = p.parent().unwrap_or(Path::new("."));
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|f| f.file_name().and_then(|n| n.to_str()).is_some_and(|n| glob_match(name, n)))
        .collect();
    out.sort();
    out
}

/// Shell-style match of `*` and `?` (no character classes; `[` matches literally).
fn glob_match(pat: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pat.chars().collect(), s.chars().collect());
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Runs discovery for one job until `cancel`: static targets plus every provider (file SD,
/// Kubernetes SD), merged and published on the returned channel whenever any of them changes.
pub fn spawn_job(sc: &ScrapeConfig, cancel: CancellationToken) -> watch::Receiver<Discovered> {
    let statics = static_targets(sc);
    let mut providers: Vec<watch::Receiver<Discovered>> = Vec::new();
    if !sc.file_sd_configs.is_empty() {
        providers.push(spawn_file_sd(sc.job().to_owned(), sc.file_sd_configs.clone(), cancel.clone()));
    }
    for k in &sc.kubernetes_sd_configs {
        providers.push(spawn_kubernetes(k.clone(), sc.job().to_owned(), cancel.clone()));
    }
    for h in &sc.http_sd_configs {
        providers.push(http::spawn(h.clone(), sc.job().to_owned(), cancel.clone()));
    }
    let (tx, rx) = watch::channel(Arc::new(statics.clone()));
    tokio::spawn(async move {
        loop {
            let mut all = statics.clone();
            for p in providers.iter_mut() {
                all.extend(p.borrow_and_update().iter().cloned());
            }
            tx.send_if_modified(|cur| {
                let changed = **cur != all;
                if changed {
                    *cur = Arc::new(std::mem::take(&mut all));
                }
                changed
            });
            if providers.is_empty() {
                // Nothing will change: keep the sender alive until cancelled so receivers do not
                // see a closed channel as "no targets".
                cancel.cancelled().await;
                return;
            }
            let changed =
                futures_util::future::select_all(providers.iter_mut().map(|p| Box::pin(p.changed())));
            tokio::select! {
                _ = cancel.cancelled() => return,
                (r, _, _) = changed => if r.is_err() { return },
            }
        }
    });
    rx
}

/// How long to wait before setting up Kubernetes discovery again after it failed to start.
const KUBERNETES_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// Kubernetes SD for one config: starts it (retrying, with an error log, while the client cannot
/// be set up, e.g. a kubeconfig or token not yet mounted) and forwards its target lists.
fn spawn_kubernetes(
    cfg: kubernetes::KubernetesSdConfig,
    job: String,
    cancel: CancellationToken,
) -> watch::Receiver<Discovered> {
    let (tx, rx) = watch::channel(Discovered::default());
    tokio::spawn(async move {
        // The same reason again is logged at debug: not being in a cluster does not change.
        let mut last_error = String::new();
        let mut inner = loop {
            match kubernetes::spawn(&cfg, cancel.clone()).await {
                Ok(r) => break r,
                Err(e) => {
                    let e = e.to_string();
                    if e == last_error {
                        tracing::debug!(job, error = e, "Kubernetes discovery still cannot start; retrying.");
                    } else {
                        let retry_s = KUBERNETES_RETRY.as_secs();
                        tracing::error!(
                            job,
                            error = e,
                            retry_s,
                            "Kubernetes discovery cannot start; retrying."
                        );
                        last_error = e;
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(KUBERNETES_RETRY) => {}
                    }
                }
            }
        };
        loop {
            tx.send_replace(inner.borrow_and_update().clone());
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = inner.changed() => if r.is_err() { return },
            }
        }
    });
    rx
}

/// File SD for one job: re-reads changed files, publishes their targets.
fn spawn_file_sd(
    job: String,
    files: Vec<FileSdConfig>,
    cancel: CancellationToken,
) -> watch::Receiver<Discovered> {
    let (tx, rx) = watch::channel(Discovered::default());
    tokio::spawn(async move {
        let mut state = FileSdState::default();
        let mut last_full = tokio::time::Instant::now();
        loop {
            let force = last_full.elapsed() >= min_refresh(&files);
            if force {
                last_full = tokio::time::Instant::now();
            }
            if state.poll(&job, &files, force) {
                let all: Vec<Labels> = state.by_file.values().flat_map(|g| g.1.iter().cloned()).collect();
                tx.send_replace(Arc::new(all));
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(FILE_POLL_INTERVAL) => {}
            }
        }
    });
    rx
}

fn min_refresh(files: &[FileSdConfig]) -> std::time::Duration {
    files.iter().map(|f| f.refresh_interval.get()).min().unwrap_or(std::time::Duration::from_secs(300))
}

/// A file's modification time and size: when either changes, the file is read again.
type Stamp = Option<(SystemTime, u64)>;

/// What file SD last read: per file, its stamp and label sets.
#[derive(Default)]
struct FileSdState {
    by_file: BTreeMap<PathBuf, (Stamp, Vec<Labels>)>,
    first: bool,
}

impl FileSdState {
    /// Re-reads changed files; returns whether the target set changed.
    fn poll(&mut self, job: &str, cfgs: &[FileSdConfig], force: bool) -> bool {
        let mut changed = !self.first;
        self.first = true;
        let mut present = Vec::new();
        for cfg in cfgs {
            for pattern in &cfg.files {
                present.extend(expand_pattern(pattern));
            }
        }
        let before = self.by_file.len();
        self.by_file.retain(|p, _| present.contains(p));
        changed |= self.by_file.len() != before;
        for path in present {
            let stamp = std::fs::metadata(&path).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
            let entry = self.by_file.get(&path);
            if !force && entry.is_some_and(|e| e.0 == stamp) {
                continue;
            }
            match read_file(&path) {
                Ok(sets) => {
                    if entry.is_none_or(|e| e.1 != sets) {
                        changed = true;
                    }
                    self.by_file.insert(path, (stamp, sets));
                }
                Err(e) => {
                    tracing::error!(job, error = %e, "Error reading file SD file; keeping its previous targets.");
                    // Remember the stamp so a broken file is not re-read (and re-logged) every poll.
                    let prev = self.by_file.remove(&path).map(|e| e.1).unwrap_or_default();
                    self.by_file.insert(path, (stamp, prev));
                }
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*.json", "a.json"));
        assert!(!glob_match("*.json", "a.yml"));
        assert!(glob_match("t?.yml", "t1.yml"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn file_sd_json_and_yaml() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("a.json");
        std::fs::write(&j, r#"[{"targets":["h:1","h:2"],"labels":{"env":"x"}}]"#).unwrap();
        let got = read_file(&j).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].get("__address__"), Some("h:2"));
        assert_eq!(got[0].get("env"), Some("x"));
        assert_eq!(got[0].get("__meta_filepath"), Some(j.to_str().unwrap()));
        let y = dir.path().join("b.yml");
        std::fs::write(&y, "- targets: ['h:3']\n").unwrap();
        assert_eq!(read_file(&y).unwrap()[0].get("__address__"), Some("h:3"));
        std::fs::write(&y, "- targets: ['h:3']\n  bogus: 1\n").unwrap();
        assert!(read_file(&y).is_err(), "unknown fields are errors, as in Prometheus");
    }

    #[test]
    fn file_sd_keeps_previous_targets_on_a_broken_file() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("a.json");
        std::fs::write(&j, r#"[{"targets":["h:1"]}]"#).unwrap();
        let cfgs = vec![FileSdConfig {
            files: vec![dir.path().join("*.json").to_string_lossy().into_owned()],
            refresh_interval: crate::config::Duration::from_secs(300),
        }];
        let mut st = FileSdState::default();
        assert!(st.poll("j", &cfgs, false));
        std::fs::write(&j, "[{").unwrap();
        st.poll("j", &cfgs, true);
        assert_eq!(st.by_file.values().next().unwrap().1.len(), 1, "previous targets kept");
        std::fs::remove_file(&j).unwrap();
        assert!(st.poll("j", &cfgs, false), "a removed file drops its targets");
        assert!(st.by_file.is_empty());
    }
}
