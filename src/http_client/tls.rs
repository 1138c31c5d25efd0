//! Server certificate verification that accepts what Go's `crypto/x509` (and so Prometheus)
//! accepts where webpki is stricter: a certificate from `ca_file` presented as the server's own.
//!
//! What this is: a [`ServerCertVerifier`] around rustls' webpki verifier. Go's
//! `Certificate.Verify` does not build a chain when the leaf itself is in the trust pool
//! (`if opts.Roots.contains(c) { candidateChains = [][]*Certificate{{c}} }`, verify.go) and never
//! looks at the leaf's basic constraints, so a self-signed CA certificate (what
//! `openssl req -x509` makes by default) that a server presents, and that is also the `ca_file`,
//! is accepted there; webpki refuses it with `CaUsedAsEndEntity`. The rule here, exactly:
//!
//! - only when webpki's verdict is `CaUsedAsEndEntity`, and the presented leaf is byte for byte
//!   one of the certificates in `ca_file`, is the leaf accepted without a chain;
//! - it must still pass what Go checks of such a leaf: its validity period (webpki checks it
//!   before the basic constraints, so an expired one fails with `Expired` first), the host name
//!   against its subject alternative names, and, when it has an extended key usage extension,
//!   that the extension allows `serverAuth` or any usage (`checkChainForKeyUsage`);
//! - everything else is webpki's verdict unchanged: a CA certificate that is not itself in
//!   `ca_file` is refused even if a `ca_file` certificate signed it (Go would accept that one: a
//!   difference left, see `tests/http_client.rs`), and system roots never get this exception.
//!
//! What this is not: a verifier of its own; signatures of the handshake are webpki's.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

/// webpki's verifier plus Go's exception for a `ca_file` certificate used as the leaf.
#[derive(Debug)]
pub(super) struct Verifier {
    inner: Arc<WebPkiServerVerifier>,
    /// The certificates of `ca_file`, as DER.
    ca_certs: Vec<CertificateDer<'static>>,
}

impl Verifier {
    pub(super) fn new(inner: Arc<WebPkiServerVerifier>, ca_certs: Vec<CertificateDer<'static>>) -> Verifier {
        Verifier { inner, ca_certs }
    }
}

/// Whether rustls' error is webpki's `CaUsedAsEndEntity`.
fn is_ca_used_as_end_entity(e: &rustls::Error) -> bool {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::Other(o)) => {
            o.0.downcast_ref::<webpki::Error>() == Some(&webpki::Error::CaUsedAsEndEntity)
        }
        _ => false,
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict =
            self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
        match verdict {
            Err(e)
                if is_ca_used_as_end_entity(&e) && self.ca_certs.iter().any(|c| c[..] == end_entity[..]) =>
            {
                let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
                rustls::client::verify_server_name(&parsed, server_name)?;
                if !eku_allows_server_auth(end_entity).unwrap_or(false) {
                    return Err(CertificateError::InvalidPurpose.into());
                }
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// id-ce-extKeyUsage (2.5.29.37), DER OID contents.
const OID_EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25];
/// id-kp-serverAuth (1.3.6.1.5.5.7.3.1).
const OID_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
/// anyExtendedKeyUsage (2.5.29.37.0).
const OID_ANY_EKU: &[u8] = &[0x55, 0x1d, 0x25, 0x00];

/// Go's `checkChainForKeyUsage` for a one-certificate chain and the `serverAuth` usage: no (or
/// an empty) extended key usage allows everything; otherwise it must list `serverAuth` or
/// `anyExtendedKeyUsage`. `None` when the DER cannot be read (webpki parsed it already, so only
/// an extension webpki skips could cause that).
///
/// A hand-written walk of the few DER elements needed (Certificate → tbsCertificate → [3]
/// extensions → extKeyUsage), rather than an X.509 crate: webpki does not expose the extension,
/// and this one lookup on a certificate already parsed by webpki does not warrant one.
fn eku_allows_server_auth(cert: &[u8]) -> Option<bool> {
    let (_, certificate, _) = der(cert, 0x30)?;
    let (_, mut tbs, _) = der(certificate, 0x30)?;
    let mut extensions = None;
    while !tbs.is_empty() {
        let (tag, value, rest) = der_any(tbs)?;
        if tag == 0xa3 {
            extensions = Some(der(value, 0x30)?.1);
        }
        tbs = rest;
    }
    let Some(mut exts) = extensions else { return Some(true) };
    while !exts.is_empty() {
        let (_, ext, rest) = der(exts, 0x30)?;
        exts = rest;
        let (_, oid, mut ext_rest) = der(ext, 0x06)?;
        if oid != OID_EXT_KEY_USAGE {
            continue;
        }
        if ext_rest.first() == Some(&0x01) {
            ext_rest = der(ext_rest, 0x01)?.2; // critical
        }
        let (_, octets, _) = der(ext_rest, 0x04)?;
        let (_, mut purposes, _) = der(octets, 0x30)?;
        if purposes.is_empty() {
            return Some(true);
        }
        while !purposes.is_empty() {
            let (_, purpose, rest) = der(purposes, 0x06)?;
            if purpose == OID_SERVER_AUTH || purpose == OID_ANY_EKU {
                return Some(true);
            }
            purposes = rest;
        }
        return Some(false);
    }
    Some(true)
}

/// One DER element with the expected tag: (tag, contents, what follows).
fn der(input: &[u8], tag: u8) -> Option<(u8, &[u8], &[u8])> {
    let r = der_any(input)?;
    (r.0 == tag).then_some(r)
}

/// One DER element (single-byte tags, definite lengths of up to four bytes).
fn der_any(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths() {
        assert_eq!(der_any(&[0x04, 0x02, 1, 2, 9]), Some((0x04, &[1u8, 2][..], &[9u8][..])));
        assert_eq!(der_any(&[0x04, 0x81, 0x01, 7]), Some((0x04, &[7u8][..], &[][..])));
        assert_eq!(der_any(&[0x04, 0x03, 1]), None, "truncated");
        assert_eq!(der_any(&[0x04, 0x80]), None, "indefinite length is not DER");
    }
}
