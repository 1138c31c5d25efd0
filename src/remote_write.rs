//! PLACEHOLDER until the sender lands.
use crate::labels::Labels;
use crate::ring::Batch;
use std::sync::Arc;

#[derive(Clone, Debug, serde::Deserialize, PartialEq)]
pub struct RemoteWriteConfig {
    pub url: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tls_config: Option<crate::config::TlsConfig>,
}

#[derive(Default, Debug)]
pub struct RemoteWriteMetrics;
impl RemoteWriteMetrics {
    pub fn render(&self, _endpoint: &str, _out: &mut String) {}
}

#[derive(Debug, thiserror::Error)]
#[error("remote write: {0}")]
pub struct Error(String);

pub struct Endpoint {
    name: String,
    m: Arc<RemoteWriteMetrics>,
}
impl Endpoint {
    pub fn start(
        cfg: RemoteWriteConfig,
        _external_labels: Arc<Labels>,
        _client: crate::http_client::Client,
    ) -> Result<Endpoint, Error> {
        Ok(Endpoint { name: cfg.name.unwrap_or(cfg.url), m: Arc::default() })
    }
    pub async fn send(&self, _batch: Batch) -> Result<(), Error> {
        Ok(())
    }
    pub fn metrics(&self) -> &Arc<RemoteWriteMetrics> {
        &self.m
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub async fn shutdown(self, _deadline: std::time::Duration) {}
}
