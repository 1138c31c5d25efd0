//! PLACEHOLDER until the TLS-capable client lands.
use bytes::Bytes;
use http_body_util::Full;
pub type Client =
    hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;
#[derive(Debug, thiserror::Error)]
#[error("http client: {0}")]
pub struct Error(String);
pub fn build(_tls: Option<&crate::config::TlsConfig>) -> Result<Client, Error> {
    Ok(hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http())
}
pub fn auth_header(
    _c: &crate::config::HttpClientConfig,
) -> Result<Option<hyper::header::HeaderValue>, Error> {
    Ok(None)
}
