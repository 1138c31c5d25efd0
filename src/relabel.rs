//! PLACEHOLDER until the relabel engine lands: same API, no rules applied.
use crate::config::common::Duration;
use crate::labels::{self, Labels};

#[derive(Clone, Debug, serde::Deserialize, PartialEq)]
pub struct RelabelConfig {
    #[serde(default)]
    pub action: Option<String>,
}

pub fn process(_rules: &[RelabelConfig], _labels: &mut Labels) -> bool {
    true
}

pub struct TargetDefaults<'a> {
    pub job: &'a str,
    pub scheme: &'a str,
    pub metrics_path: &'a str,
    pub params: &'a [(String, Vec<String>)],
    pub scrape_interval: Duration,
    pub scrape_timeout: Duration,
}
pub enum TargetOutcome {
    Keep(ScrapeTarget),
    Drop,
}
#[derive(Clone, Debug, PartialEq)]
pub struct ScrapeTarget {
    pub labels: Labels,
    pub url: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub params: Vec<(String, String)>,
}
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TargetError(pub String);

pub fn populate_target(
    discovered: &Labels,
    d: &TargetDefaults,
    _rules: &[RelabelConfig],
) -> Result<TargetOutcome, TargetError> {
    let Some(addr) = discovered.get(labels::ADDRESS) else { return Ok(TargetOutcome::Drop) };
    let mut l = discovered.clone();
    l.set(labels::JOB, d.job);
    l.set(labels::INSTANCE, addr);
    let url = format!("{}://{}{}", d.scheme, addr, d.metrics_path);
    l.retain(|x| !x.name.starts_with("__"));
    Ok(TargetOutcome::Keep(ScrapeTarget {
        labels: l,
        url,
        interval: d.scrape_interval,
        timeout: d.scrape_timeout,
        params: vec![],
    }))
}
