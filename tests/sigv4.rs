//! SigV4: the signing algorithm against AWS's published test suite (`tests/data/sigv4`), remote
//! write signed by the trawl binary and checked by a receiver that recomputes the signature, and
//! temporary credentials from a scripted STS (`AssumeRole` with the base credentials' own
//! signature checked, `AssumeRoleWithWebIdentity`), cached until they near expiry.

#[path = "support/peers.rs"]
mod peers;
mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use support::{Gate, TEXT, TestTarget, Trawl, eventually};
use trawl::sigv4::{SigV4Config, Signer, canonical_request, clean_path, signature, string_to_sign};

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// One case of the suite: `request.txt` parsed as method, path, query, headers and body.
struct Case {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn parse_request(text: &str) -> Case {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let first = lines.next().expect("request line");
    let target = first.strip_prefix(first.split(' ').next().unwrap()).unwrap().trim();
    let target = target.strip_suffix("HTTP/1.1").expect("HTTP/1.1").trim();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(':').expect("header line");
            (k.to_owned(), v.to_owned())
        })
        .collect();
    Case {
        method: first.split(' ').next().unwrap().to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body: body.as_bytes().to_vec(),
    }
}

#[test]
fn aws_signature_v4_test_suite() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/sigv4");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 30, "the suite is there: {}", cases.len());
    let read = |dir: &Path, f: &str| std::fs::read_to_string(dir.join(f)).unwrap().replace("\r\n", "\n");
    for dir in &cases {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let ctx: serde_json::Value = serde_json::from_str(&read(dir, "context.json")).unwrap();
        let mut case = parse_request(&read(dir, "request.txt"));
        let ts: jiff::Timestamp = ctx["timestamp"].as_str().unwrap().parse().expect("RFC 3339 timestamp");
        let (amz_date, date) = trawl::sigv4::amz_dates(SystemTime::from(ts));
        let payload = sha256_hex(&case.body);
        case.headers.push(("X-Amz-Date".into(), amz_date.clone()));
        if let Some(token) = ctx["credentials"]["token"].as_str()
            && !ctx["omit_session_token"].as_bool().unwrap_or(false)
        {
            case.headers.push(("X-Amz-Security-Token".into(), token.into()));
        }
        if ctx["sign_body"].as_bool() == Some(true) {
            case.headers.push(("x-amz-content-sha256".into(), payload.clone()));
        }
        let path =
            if ctx["normalize"].as_bool() == Some(true) { clean_path(&case.path) } else { case.path.clone() };
        let canonical = canonical_request(&case.method, &path, &case.query, &case.headers, &payload);
        assert_eq!(
            canonical.text,
            read(dir, "header-canonical-request.txt").trim_end(),
            "{name}: canonical request"
        );
        let (region, service) = (ctx["region"].as_str().unwrap(), ctx["service"].as_str().unwrap());
        let scope = format!("{date}/{region}/{service}/aws4_request");
        let sts = string_to_sign(&amz_date, &scope, &canonical.text);
        assert_eq!(sts, read(dir, "header-string-to-sign.txt").trim_end(), "{name}: string to sign");
        let secret = ctx["credentials"]["secret_access_key"].as_str().unwrap();
        let sig = signature(secret, &date, region, service, &sts);
        assert_eq!(sig, read(dir, "header-signature.txt").trim(), "{name}: signature");
    }
}

/// Checks one received request's SigV4 signature as a receiver does: recomputes it from the
/// request (method, path, the headers named in `SignedHeaders`, the body) with the secret key.
/// Returns the access key id it was signed with.
fn verify(
    method: &str,
    path: &str,
    headers: &hyper::HeaderMap,
    body: &[u8],
    secret: &str,
    service: &str,
) -> Result<String, String> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).ok_or("no Authorization")?;
    let rest =
        auth.strip_prefix("AWS4-HMAC-SHA256 Credential=").ok_or_else(|| format!("not SigV4: {auth}"))?;
    let (credential, rest) = rest.split_once(", SignedHeaders=").ok_or("no SignedHeaders")?;
    let (signed, sig) = rest.split_once(", Signature=").ok_or("no Signature")?;
    let parts: Vec<&str> = credential.split('/').collect();
    let [key, date, region, svc, "aws4_request"] = parts[..] else {
        return Err(format!("bad credential {credential}"));
    };
    if svc != service {
        return Err(format!("signed for service {svc}, want {service}"));
    }
    let mut list = Vec::new();
    for name in signed.split(';') {
        for v in headers.get_all(name) {
            list.push((name.to_owned(), v.to_str().map_err(|e| e.to_string())?.to_owned()));
        }
        if headers.get(name).is_none() {
            return Err(format!("signed header {name} not sent"));
        }
    }
    let canonical = canonical_request(method, path, "", &list, &sha256_hex(body));
    if canonical.signed_headers != signed {
        return Err(format!("SignedHeaders {signed} is not the sorted list {}", canonical.signed_headers));
    }
    let amz_date = headers.get("x-amz-date").and_then(|v| v.to_str().ok()).ok_or("no X-Amz-Date")?;
    let sts = string_to_sign(amz_date, &format!("{date}/{region}/{svc}/aws4_request"), &canonical.text);
    let want = signature(secret, date, region, svc, &sts);
    if want != sig {
        return Err(format!("signature mismatch: got {sig}, want {want}\n{}", canonical.text));
    }
    Ok(key.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_is_signed_for_amp() {
    let target = TestTarget::start().await;
    target.route("/metrics", |_| (200, TEXT, b"signed_metric 1\n".to_vec()));
    let gate = Gate::start(None, |_| 200).await;
    let config = format!(
        r#"
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: j
    static_configs: [{{targets: ['{}']}}]
remote_write:
  - url: {}
    headers: {{X-Team: a}}
    sigv4:
      region: eu-west-1
      access_key: AKIDEXAMPLE
      secret_key: wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
    queue_config: {{batch_send_deadline: 100ms}}
"#,
        target.host(),
        gate.url()
    );
    let trawl = Trawl::start(&config).await;
    let got = eventually(Duration::from_secs(30), async || (gate.requests() >= 2).then_some(())).await;
    assert!(got.is_some(), "no remote write:\n{}", trawl.proc.log());
    for r in gate.requests.lock().unwrap().iter() {
        let key = verify(
            "POST",
            "/api/v1/write",
            &r.headers,
            &r.body,
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "aps",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(key, "AKIDEXAMPLE");
        let auth = r.headers["authorization"].to_str().unwrap();
        assert!(auth.contains("/eu-west-1/aps/aws4_request"), "{auth}");
        for h in [
            "content-encoding",
            "content-length",
            "content-type",
            "host",
            "x-amz-date",
            "x-prometheus-remote-write-version",
            "x-team",
        ] {
            assert!(auth.contains(h), "{h} is signed: {auth}");
        }
        assert!(!auth.contains("user-agent"), "User-Agent is never signed: {auth}");
    }
}

/// A scripted STS: `AssumeRole` (whose own SigV4 signature, made with the base credentials, is
/// checked) and `AssumeRoleWithWebIdentity`; answers credentials that expire after `lifetime`.
struct FakeSts {
    url: String,
    calls: Arc<AtomicU64>,
    forms: Arc<Mutex<Vec<String>>>,
}

async fn fake_sts(base_secret: &'static str, lifetime: Duration) -> FakeSts {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let calls = Arc::new(AtomicU64::new(0));
    let forms: Arc<Mutex<Vec<String>>> = Arc::default();
    let (c, f) = (calls.clone(), forms.clone());
    peers::serve(listener, move |req: hyper::Request<hyper::body::Incoming>| {
        let (c, f) = (c.clone(), f.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let form = String::from_utf8_lossy(&body).into_owned();
            f.lock().unwrap().push(form.clone());
            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
            let action = if form.contains("Action=AssumeRoleWithWebIdentity") {
                "AssumeRoleWithWebIdentity"
            } else {
                if let Err(e) = verify("POST", "/", &parts.headers, &body, base_secret, "sts") {
                    return (
                        403,
                        "text/xml",
                        format!("<ErrorResponse><Error><Message>{e}</Message></Error></ErrorResponse>")
                            .into_bytes(),
                    );
                }
                "AssumeRole"
            };
            let expires = jiff::Timestamp::try_from(SystemTime::now() + lifetime).unwrap();
            let xml = format!(
                "<{action}Response><{action}Result><Credentials><AccessKeyId>ASIATEMP{n}</AccessKeyId>\
                 <SecretAccessKey>temp-secret-{n}</SecretAccessKey><SessionToken>token-{n}</SessionToken>\
                 <Expiration>{expires}</Expiration></Credentials></{action}Result></{action}Response>"
            );
            (200, "text/xml", xml.into_bytes())
        }
    });
    FakeSts { url, calls, forms }
}

/// Signs a request to `https://aps.example/api/v1/write` and returns its headers.
async fn sign(signer: &Signer) -> hyper::HeaderMap {
    let body = b"payload";
    let mut req = hyper::Request::post("https://aps-workspaces.example/workspaces/ws-1/api/v1/remote_write")
        .body(Full::new(Bytes::from_static(body)))
        .unwrap();
    signer.sign(&mut req, body, SystemTime::now()).await.expect("signed");
    req.headers().clone()
}

/// A signer for `sigv4` block `yaml` whose STS is `sts`.
fn signer_with_sts(sts: &FakeSts, yaml: &str) -> Signer {
    let cfg: SigV4Config = serde_saphyr::from_str(yaml).unwrap();
    let url = sts.url.clone();
    Signer::with_env(&cfg, &move |k| (k == "AWS_ENDPOINT_URL_STS").then(|| url.clone())).unwrap()
}

fn key_of(h: &hyper::HeaderMap) -> String {
    let auth = h["authorization"].to_str().unwrap();
    auth.split("Credential=").nth(1).unwrap().split('/').next().unwrap().to_owned()
}

#[tokio::test]
async fn role_arn_assumes_a_role_through_sts_and_caches_it() {
    let sts = fake_sts("base-secret", Duration::from_secs(3600)).await;
    let signer = signer_with_sts(
        &sts,
        "region: us-east-1\naccess_key: AKIABASE\nsecret_key: base-secret\nrole_arn: arn:aws:iam::123:role/writer\nexternal_id: ext-1\n",
    );
    for _ in 0..3 {
        let h = sign(&signer).await;
        assert_eq!(key_of(&h), "ASIATEMP1", "signed with the assumed role's key");
        assert_eq!(h["x-amz-security-token"], "token-1");
        assert!(h["authorization"].to_str().unwrap().contains("x-amz-security-token"), "the token is signed");
        verify("POST", "/workspaces/ws-1/api/v1/remote_write", &h, b"payload", "temp-secret-1", "aps")
            .unwrap();
    }
    assert_eq!(sts.calls.load(Ordering::SeqCst), 1, "assumed once, then cached");
    let form = sts.forms.lock().unwrap()[0].clone();
    for part in [
        "Action=AssumeRole",
        "RoleArn=arn%3Aaws%3Aiam%3A%3A123%3Arole%2Fwriter",
        "ExternalId=ext-1",
        "Version=2011-06-15",
    ] {
        assert!(form.contains(part), "{part} in {form}");
    }
}

#[tokio::test]
async fn credentials_near_expiry_are_fetched_again() {
    // 20 s left is inside the 30 s refresh window: every use fetches new credentials.
    let sts = fake_sts("base-secret", Duration::from_secs(20)).await;
    let signer = signer_with_sts(
        &sts,
        "region: us-east-1\naccess_key: AKIABASE\nsecret_key: base-secret\nrole_arn: arn:aws:iam::123:role/writer\n",
    );
    assert_eq!(key_of(&sign(&signer).await), "ASIATEMP1");
    assert_eq!(key_of(&sign(&signer).await), "ASIATEMP2");
    assert_eq!(sts.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn web_identity_from_the_environment() {
    let sts = fake_sts("unused", Duration::from_secs(3600)).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "eyJ.projected.token\n").unwrap();
    let env: Vec<(&str, String)> = vec![
        ("AWS_ENDPOINT_URL_STS", sts.url.clone()),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token.display().to_string()),
        ("AWS_ROLE_ARN", "arn:aws:iam::123:role/irsa".into()),
        ("AWS_REGION", "ap-south-1".into()),
    ];
    let cfg = SigV4Config::default();
    let signer =
        Signer::with_env(&cfg, &move |k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())).unwrap();
    assert_eq!(signer.region(), "ap-south-1");
    let h = sign(&signer).await;
    assert_eq!(key_of(&h), "ASIATEMP1");
    let form = sts.forms.lock().unwrap()[0].clone();
    assert!(form.contains("Action=AssumeRoleWithWebIdentity"), "{form}");
    assert!(form.contains("WebIdentityToken=eyJ.projected.token"), "the token file, trimmed: {form}");
    assert!(h.get("x-amz-security-token").is_some());
}

/// A scripted metadata service: the container credentials endpoint (`GET /creds`, which wants
/// the authorization token) and IMDSv2 (`PUT /latest/api/token`, then the role and its
/// credentials with that token). Counts the credential answers.
async fn fake_metadata() -> (String, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let served = Arc::new(AtomicU64::new(0));
    let s = served.clone();
    peers::serve(listener, move |req: hyper::Request<hyper::body::Incoming>| {
        let s = s.clone();
        async move {
            let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let creds = |key: &str| {
                let expires =
                    jiff::Timestamp::try_from(SystemTime::now() + Duration::from_secs(3600)).unwrap();
                format!(
                    r#"{{"AccessKeyId":"{key}","SecretAccessKey":"meta-secret","Token":"meta-token","Expiration":"{expires}"}}"#
                )
            };
            match (req.method().as_str(), req.uri().path()) {
                ("GET", "/creds") if header("authorization").as_deref() == Some("pod-identity-token") => {
                    s.fetch_add(1, Ordering::SeqCst);
                    (200, "application/json", creds("ASIACONTAINER").into_bytes())
                }
                ("PUT", "/latest/api/token") if header("x-aws-ec2-metadata-token-ttl-seconds").is_some() => {
                    (200, "text/plain", b"imds-session".to_vec())
                }
                ("GET", "/latest/meta-data/iam/security-credentials/")
                    if header("x-aws-ec2-metadata-token").as_deref() == Some("imds-session") =>
                {
                    (200, "text/plain", b"node-role\n".to_vec())
                }
                ("GET", "/latest/meta-data/iam/security-credentials/node-role")
                    if header("x-aws-ec2-metadata-token").as_deref() == Some("imds-session") =>
                {
                    s.fetch_add(1, Ordering::SeqCst);
                    (200, "application/json", creds("ASIANODE").into_bytes())
                }
                _ => (401, "text/plain", b"no".to_vec()),
            }
        }
    });
    (url, served)
}

#[tokio::test]
async fn container_and_instance_metadata_credentials() {
    let (url, served) = fake_metadata().await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("eks-pod-identity-token");
    std::fs::write(&token, "pod-identity-token\n").unwrap();
    // (environment, access key signed with, why)
    type Case = (Vec<(&'static str, String)>, &'static str, &'static str);
    let cases: Vec<Case> = vec![
        (
            vec![
                ("AWS_CONTAINER_CREDENTIALS_FULL_URI", format!("{url}/creds")),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token.display().to_string()),
            ],
            "ASIACONTAINER",
            "EKS Pod Identity: the container endpoint with the token file",
        ),
        (
            vec![("AWS_EC2_METADATA_SERVICE_ENDPOINT", url.clone())],
            "ASIANODE",
            "the node's instance role, IMDSv2",
        ),
    ];
    for (mut env, key, why) in cases {
        env.push(("HOME", "/nonexistent".into()));
        let signer = Signer::with_env(&serde_saphyr::from_str("region: eu-west-1\n").unwrap(), &move |k| {
            env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
        })
        .unwrap();
        let before = served.load(Ordering::SeqCst);
        for _ in 0..2 {
            let h = sign(&signer).await;
            assert_eq!(key_of(&h), key, "{why}");
            assert_eq!(h["x-amz-security-token"], "meta-token", "{why}");
            verify("POST", "/workspaces/ws-1/api/v1/remote_write", &h, b"payload", "meta-secret", "aps")
                .unwrap();
        }
        assert_eq!(served.load(Ordering::SeqCst) - before, 1, "{why}: fetched once, then cached");
    }
}
