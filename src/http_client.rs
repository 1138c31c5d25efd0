//! The HTTP client shared by scrapes and remote write: hyper 1 over rustls (ring), plus the
//! `Authorization` header from Prometheus' auth settings.
//!
//! What this is: client construction from a `tls_config` and auth-header resolution. Credential
//! files are read on every call, so rotated tokens and passwords are picked up without a reload.
//! What this is not: request logic; see [`crate::fetch`] and [`crate::remote_write`].

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{HttpClientConfig, TlsConfig};

/// The client type every stage uses (pooled, HTTP/1.1, http and https).
pub type Client = hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client or credential that cannot be set up. Not retryable for client construction (the
/// config must change); retryable for credential files (the next request reads them again).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file named in the config could not be read.
    #[error("reading {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{0}")]
    Pem(String),
    /// rustls refused the settings.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// A setting trawl does not support yet.
    #[error("{0} is not supported")]
    Unsupported(&'static str),
    /// A credential is not a valid header value.
    #[error("credentials are not a valid header value")]
    HeaderValue,
}

static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// Builds a client for `tls` (None: system roots, verification on).
pub fn build(tls: Option<&TlsConfig>) -> Result<Client, Error> {
    let default = TlsConfig::default();
    let tls = tls.unwrap_or(&default);
    if tls.server_name.is_some() {
        return Err(Error::Unsupported("tls_config.server_name"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone()).with_protocol_versions(
        match tls.min_version.as_deref() {
            Some("TLS13") => TLS13_ONLY,
            _ => rustls::DEFAULT_VERSIONS,
        },
    )?;
    let builder = if tls.insecure_skip_verify {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    } else {
        builder.with_root_certificates(roots(tls)?)
    };
    let config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| Error::Pem(format!("{}: {e}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| Error::Pem(format!("{}: {e}", key.display())))?;
            builder.with_client_auth_cert(certs, key)?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(Error::Pem("tls_config needs both cert_file and key_file".into())),
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        // Scrape targets and receivers close idle connections at their own pace; 90 s matches
        // Go's default transport, which is what Prometheus' targets are used to.
        .pool_idle_timeout(std::time::Duration::from_secs(90))
        .build(https))
}

fn roots(tls: &TlsConfig) -> Result<rustls::RootCertStore, Error> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = &tls.ca_file {
        let certs = CertificateDer::pem_file_iter(ca)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| Error::Pem(format!("{}: {e}", ca.display())))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(Error::Pem(format!("{}: no certificate found", ca.display())));
        }
        return Ok(roots);
    }
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if roots.is_empty() {
        // A scratch image without a CA bundle: fall back to the Mozilla roots compiled in.
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    Ok(roots)
}

/// `insecure_skip_verify`: accepts any server certificate (signatures are still checked).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn read_secret(path: &std::path::Path) -> Result<String, Error> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|source| Error::File { path: path.display().to_string(), source })
}

/// The `Authorization` header for `cfg`, reading credential files now (so rotation works).
pub fn auth_header(cfg: &HttpClientConfig) -> Result<Option<HeaderValue>, Error> {
    let value = if let Some(b) = &cfg.basic_auth {
        let password = match (&b.password, &b.password_file) {
            (_, Some(f)) => read_secret(f)?,
            (Some(p), None) => p.clone(),
            (None, None) => String::new(),
        };
        Some(format!("Basic {}", base64(format!("{}:{password}", b.username).as_bytes())))
    } else if let Some(a) = &cfg.authorization {
        let kind = a.kind.as_deref().unwrap_or("Bearer");
        let cred = match (&a.credentials, &a.credentials_file) {
            (_, Some(f)) => read_secret(f)?,
            (Some(c), None) => c.clone(),
            (None, None) => String::new(),
        };
        Some(format!("{kind} {cred}"))
    } else if let Some(f) = &cfg.bearer_token_file {
        Some(format!("Bearer {}", read_secret(f)?))
    } else {
        cfg.bearer_token.as_ref().map(|t| format!("Bearer {t}"))
    };
    value
        .map(|v| {
            let mut h = HeaderValue::from_str(&v).map_err(|_| Error::HeaderValue)?;
            h.set_sensitive(true);
            Ok(h)
        })
        .transpose()
}

/// Standard base64 with padding (RFC 4648 §4), for basic auth.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::common::{Authorization, BasicAuth};

    #[test]
    fn base64_rfc4648_vectors() {
        for (i, o) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy")] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn auth_headers() {
        let basic = HttpClientConfig {
            basic_auth: Some(BasicAuth {
                username: "u".into(),
                password: Some("p".into()),
                password_file: None,
            }),
            ..Default::default()
        };
        assert_eq!(auth_header(&basic).unwrap().unwrap(), "Basic dTpw");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "one\n").unwrap();
        let bearer = HttpClientConfig { bearer_token_file: Some(f.clone()), ..Default::default() };
        assert_eq!(auth_header(&bearer).unwrap().unwrap(), "Bearer one");
        std::fs::write(&f, "two").unwrap();
        assert_eq!(auth_header(&bearer).unwrap().unwrap(), "Bearer two", "a rotated token is re-read");
        let custom = HttpClientConfig {
            authorization: Some(Authorization {
                kind: Some("Token".into()),
                credentials: Some("x".into()),
                credentials_file: None,
            }),
            ..Default::default()
        };
        assert_eq!(auth_header(&custom).unwrap().unwrap(), "Token x");
        assert!(auth_header(&HttpClientConfig::default()).unwrap().is_none());
    }

    #[test]
    fn clients_build() {
        assert!(build(None).is_ok());
        let insecure = TlsConfig { insecure_skip_verify: true, ..Default::default() };
        assert!(build(Some(&insecure)).is_ok());
        let missing = TlsConfig { ca_file: Some("/nonexistent/ca.pem".into()), ..Default::default() };
        assert!(build(Some(&missing)).is_err());
    }
}
