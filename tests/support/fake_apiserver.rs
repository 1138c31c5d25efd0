//! A fake Kubernetes API server for tests: LIST and WATCH over plain HTTP/1.1 on `127.0.0.1:0`.
//!
//! What this is: enough of the API server's list/watch contract to drive a real client (kube-rs)
//! through the situations discovery must survive, with the real JSON shapes:
//! - Resources: pods, services, endpoints (core/v1, namespaced), nodes and namespaces (core/v1,
//!   cluster-scoped), endpointslices (`discovery.k8s.io/v1`, namespaced); cluster-wide paths
//!   (`/api/v1/pods`) and namespaced ones (`/api/v1/namespaces/{ns}/pods`).
//! - LIST answers `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"N"},"items":[…]}`
//!   (items without kind/apiVersion, as the real server sends them).
//! - WATCH (`watch=1`) streams newline-delimited `{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR",
//!   "object":…}` from `resourceVersion` (a version older than the last [`FakeApiServer::compact`]
//!   answers 410 Gone, as an ERROR event or as HTTP 410, see [`GoneMode`]); `resourceVersion` unset
//!   or `0` first replays the current objects as ADDED. `allowWatchBookmarks` gets a BOOKMARK after
//!   every idle [`FakeApiServer::set_bookmark_interval`]; `timeoutSeconds` ends the stream.
//! - `fieldSelector`: `path=value`, `path==value`, `path!=value` on any dotted JSON path
//!   (`spec.nodeName`, `metadata.name`, `metadata.namespace`, …), comma-joined.
//!   `labelSelector`: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`. A watch
//!   follows objects across the selector: an update that makes an object match is sent as ADDED,
//!   one that makes it stop matching as DELETED, as the real server does.
//! - Every request is recorded ([`FakeApiServer::requests`]), so tests can assert what was asked.
//! - The test changes objects ([`FakeApiServer::apply`], [`FakeApiServer::delete`]), drops history
//!   ([`FakeApiServer::compact`]), ends open watches with 410 ([`FakeApiServer::expire_watches`])
//!   and restarts the server ([`FakeApiServer::stop`], [`FakeApiServer::start_again`]): all
//!   connections are dropped and it comes back on the same port with the same objects.
//!
//! What this is not: a validating server (no schema, admission, RBAC, pagination `continue`
//! tokens, or GET of single objects).
//!
//! Other test files include it with `#[path = "support/fake_apiserver.rs"] mod fake_apiserver;`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

type Body = BoxBody<Bytes, Infallible>;

/// How a watch from a compacted resourceVersion is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoneMode {
    /// HTTP 200 and one `ERROR` event carrying a 410 `Status` (what API servers usually send).
    ErrorEvent,
    /// HTTP 410 with a `Status` body.
    Http410,
}

/// A resource kind the fake serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Pod,
    Service,
    Endpoints,
    EndpointSlice,
    Node,
    Namespace,
}

impl Kind {
    const ALL: [Kind; 6] =
        [Kind::Pod, Kind::Service, Kind::Endpoints, Kind::EndpointSlice, Kind::Node, Kind::Namespace];

    /// The `kind` field of one object.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::Service => "Service",
            Kind::Endpoints => "Endpoints",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Node => "Node",
            Kind::Namespace => "Namespace",
        }
    }

    /// The resource name in URL paths.
    pub fn resource(self) -> &'static str {
        match self {
            Kind::Pod => "pods",
            Kind::Service => "services",
            Kind::Endpoints => "endpoints",
            Kind::EndpointSlice => "endpointslices",
            Kind::Node => "nodes",
            Kind::Namespace => "namespaces",
        }
    }

    fn api_version(self) -> &'static str {
        if self == Kind::EndpointSlice { "discovery.k8s.io/v1" } else { "v1" }
    }

    fn namespaced(self) -> bool {
        !matches!(self, Kind::Node | Kind::Namespace)
    }

    fn from_name(kind: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == kind)
    }

    fn from_resource(group_version: &str, resource: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.resource() == resource && k.api_version() == group_version)
    }
}

/// One request the server received.
#[derive(Clone, Debug)]
pub struct Request {
    /// `GET`, …
    pub method: String,
    /// The path, e.g. `/api/v1/namespaces/default/pods`.
    pub path: String,
    /// The raw (still percent-encoded) query string.
    pub query: String,
    /// The decoded query parameters.
    pub params: BTreeMap<String, String>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// When it arrived.
    pub at: Instant,
}

impl Request {
    /// Whether this is a watch (`watch=1` or `watch=true`).
    pub fn is_watch(&self) -> bool {
        matches!(self.params.get("watch").map(String::as_str), Some("1" | "true"))
    }
    /// The resource, the last path segment (`pods`, `nodes`, …).
    pub fn resource(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or_default()
    }
    /// A decoded query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

#[derive(Clone, Debug)]
struct HistoryEvent {
    rv: u64,
    kind: Kind,
    kind_of_event: &'static str,
    object: Value,
    previous: Option<Value>,
}

struct State {
    rv: u64,
    objects: BTreeMap<(Kind, String, String), Value>,
    history: Vec<HistoryEvent>,
    compacted: u64,
    expire_epoch: u64,
    requests: Vec<Request>,
    gone_mode: GoneMode,
    bookmark_interval: Duration,
}

struct Inner {
    state: Mutex<State>,
    /// Bumped on every change, compaction and expiry; watch streams wait on it.
    generation: watch::Sender<u64>,
    open_watches: AtomicUsize,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn bump(&self) {
        self.generation.send_modify(|g| *g += 1);
    }
}

/// The fake API server. Dropping it stops it.
pub struct FakeApiServer {
    inner: Arc<Inner>,
    addr: SocketAddr,
    running: Mutex<Option<CancellationToken>>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(t) = self.running.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.cancel();
        }
    }
}

impl FakeApiServer {
    /// Starts an empty server on `127.0.0.1` with a free port.
    pub async fn start() -> FakeApiServer {
        let (generation, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                rv: 1,
                objects: BTreeMap::new(),
                history: Vec::new(),
                compacted: 0,
                expire_epoch: 0,
                requests: Vec::new(),
                gone_mode: GoneMode::ErrorEvent,
                bookmark_interval: Duration::from_secs(1),
            }),
            generation,
            open_watches: AtomicUsize::new(0),
        });
        let mut server =
            FakeApiServer { inner, addr: SocketAddr::from(([127, 0, 0, 1], 0)), running: Mutex::new(None) };
        server.addr = server.listen().await;
        server
    }

    async fn listen(&self) -> SocketAddr {
        let socket = TcpSocket::new_v4().expect("socket");
        // Coming back on the same port right after dropping connections needs SO_REUSEADDR.
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket.bind(self.addr).expect("bind 127.0.0.1");
        let listener = socket.listen(1024).expect("listen");
        let addr = listener.local_addr().expect("local addr");
        let cancel = CancellationToken::new();
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = Some(cancel.clone());
        let inner = self.inner.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = cancel.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(_) => continue,
                    },
                };
                let (inner, cancel) = (inner.clone(), cancel.clone());
                tokio::spawn(async move {
                    let svc_cancel = cancel.clone();
                    let service = hyper::service::service_fn(move |req| {
                        let (inner, cancel) = (inner.clone(), svc_cancel.clone());
                        async move { Ok::<_, Infallible>(handle(&inner, req, cancel)) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = conn => {}
                    }
                });
            }
        });
        addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Writes a kubeconfig that points at this server (no credentials) into `dir`.
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\nusers:\n- name: fake\n  user: {{}}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\n",
            self.url()
        );
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    /// Stops serving: the listener closes and every open connection (watches included) is dropped.
    pub async fn stop(&self) {
        if let Some(t) = self.running.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.cancel();
        }
        // Let the connection tasks observe the cancellation and close their sockets.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    /// Serves again on the same port, with the same objects and history.
    pub async fn start_again(&self) {
        let addr = self.listen().await;
        assert_eq!(addr, self.addr, "came back on another port");
    }

    /// [`stop`](Self::stop), wait `down`, [`start_again`](Self::start_again).
    pub async fn restart(&self, down: Duration) {
        self.stop().await;
        tokio::time::sleep(down).await;
        self.start_again().await;
    }

    /// Creates or replaces an object (`kind`, `metadata.name` and, for namespaced kinds,
    /// `metadata.namespace` are required); watchers get ADDED or MODIFIED. Returns its new
    /// resourceVersion.
    pub fn apply(&self, mut object: Value) -> u64 {
        let kind = object["kind"].as_str().and_then(Kind::from_name).expect("object kind");
        let name = object["metadata"]["name"].as_str().expect("metadata.name").to_owned();
        let ns = if kind.namespaced() {
            object["metadata"]["namespace"].as_str().expect("metadata.namespace").to_owned()
        } else {
            String::new()
        };
        let mut s = self.inner.lock();
        s.rv += 1;
        let rv = s.rv;
        object["apiVersion"] = kind.api_version().into();
        object["metadata"]["resourceVersion"] = rv.to_string().into();
        if object["metadata"]["uid"].is_null() {
            object["metadata"]["uid"] = format!("uid-{}-{ns}-{name}", kind.resource()).into();
        }
        let previous = s.objects.insert((kind, ns, name), object.clone());
        let kind_of_event = if previous.is_some() { "MODIFIED" } else { "ADDED" };
        s.history.push(HistoryEvent { rv, kind, kind_of_event, object, previous });
        drop(s);
        self.inner.bump();
        rv
    }

    /// Deletes an object; watchers get DELETED. Returns whether it existed.
    pub fn delete(&self, kind: Kind, namespace: &str, name: &str) -> bool {
        let mut s = self.inner.lock();
        let ns = if kind.namespaced() { namespace.to_owned() } else { String::new() };
        let Some(mut object) = s.objects.remove(&(kind, ns, name.to_owned())) else { return false };
        s.rv += 1;
        let rv = s.rv;
        object["metadata"]["resourceVersion"] = rv.to_string().into();
        s.history.push(HistoryEvent { rv, kind, kind_of_event: "DELETED", object, previous: None });
        drop(s);
        self.inner.bump();
        true
    }

    /// The current object, if any.
    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<Value> {
        let ns = if kind.namespaced() { namespace.to_owned() } else { String::new() };
        self.inner.lock().objects.get(&(kind, ns, name.to_owned())).cloned()
    }

    /// Drops the event history up to now, as etcd compaction does: a later watch from an older
    /// resourceVersion gets 410 Gone, and so does an open watch that had not yet sent every
    /// dropped event.
    pub fn compact(&self) {
        let mut s = self.inner.lock();
        s.compacted = s.rv;
        s.history.clear();
        drop(s);
        self.inner.bump();
    }

    /// Ends every open watch with an ERROR 410 event, as an API server does when a watcher falls
    /// out of its watch cache.
    pub fn expire_watches(&self) {
        self.inner.lock().expire_epoch += 1;
        self.inner.bump();
    }

    /// How a watch from a compacted resourceVersion is refused (default [`GoneMode::ErrorEvent`]).
    pub fn set_gone_mode(&self, mode: GoneMode) {
        self.inner.lock().gone_mode = mode;
    }

    /// How long a watch with `allowWatchBookmarks` stays idle before a BOOKMARK (default 1 s).
    pub fn set_bookmark_interval(&self, d: Duration) {
        self.inner.lock().bookmark_interval = d;
    }

    /// The current (latest) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.inner.lock().rv
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Request> {
        self.inner.lock().requests.clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.inner.lock().requests.clear();
    }

    /// Watch streams open right now.
    pub fn open_watches(&self) -> usize {
        self.inner.open_watches.load(Ordering::SeqCst)
    }
}

// === request handling ===

fn handle(inner: &Arc<Inner>, req: hyper::Request<Incoming>, cancel: CancellationToken) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let params = parse_query(&query);
    let request = Request {
        method: req.method().to_string(),
        path: path.clone(),
        query,
        params: params.clone(),
        authorization: req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        at: Instant::now(),
    };
    let watching = request.is_watch();
    inner.lock().requests.push(request);

    if req.method() != hyper::Method::GET {
        return status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "only GET is served");
    }
    let Some((kind, namespace)) = route(&path) else {
        return status(StatusCode::NOT_FOUND, "NotFound", &format!("no resource at {path}"));
    };
    let selectors = match Selectors::parse(&params) {
        Ok(s) => s,
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", &e),
    };
    let query = Query { kind, namespace, selectors };
    if watching { watch_response(inner, query, &params, cancel) } else { list_response(inner, &query) }
}

/// `(kind, namespace)` of a collection path.
fn route(path: &str) -> Option<(Kind, Option<String>)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group_version, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => ("v1", rest),
        ["apis", group, version, rest @ ..] => {
            (if *group == "discovery.k8s.io" && *version == "v1" { "discovery.k8s.io/v1" } else { "" }, rest)
        }
        _ => return None,
    };
    match rest {
        [resource] => Kind::from_resource(group_version, resource).map(|k| (k, None)),
        ["namespaces", ns, resource] => {
            let k = Kind::from_resource(group_version, resource)?;
            k.namespaced().then(|| (k, Some((*ns).to_owned())))
        }
        _ => None,
    }
}

fn full(status_code: StatusCode, body: Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *r.status_mut() = status_code;
    r.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    r
}

fn status_object(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    full(code, status_object(code.as_u16(), reason, message))
}

struct Query {
    kind: Kind,
    namespace: Option<String>,
    selectors: Selectors,
}

impl Query {
    fn matches(&self, kind: Kind, object: &Value) -> bool {
        kind == self.kind
            && self.namespace.as_deref().is_none_or(|ns| object["metadata"]["namespace"].as_str() == Some(ns))
            && self.selectors.matches(object)
    }
}

fn list_response(inner: &Inner, q: &Query) -> Response<Body> {
    let s = inner.lock();
    let items: Vec<Value> = s
        .objects
        .iter()
        .filter(|((k, _, _), o)| q.matches(*k, o))
        .map(|(_, o)| {
            // List items carry no kind/apiVersion on the wire.
            let mut o = o.clone();
            if let Some(m) = o.as_object_mut() {
                m.remove("kind");
                m.remove("apiVersion");
            }
            o
        })
        .collect();
    full(
        StatusCode::OK,
        json!({
            "kind": format!("{}List", q.kind.name()),
            "apiVersion": q.kind.api_version(),
            "metadata": {"resourceVersion": s.rv.to_string()},
            "items": items,
        }),
    )
}

fn watch_response(
    inner: &Arc<Inner>,
    q: Query,
    params: &BTreeMap<String, String>,
    cancel: CancellationToken,
) -> Response<Body> {
    let from = params.get("resourceVersion").map(String::as_str).unwrap_or_default();
    let bookmarks = matches!(params.get("allowWatchBookmarks").map(String::as_str), Some("true" | "1"));
    let timeout = params.get("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()).map(Duration::from_secs);
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let mut initial = Vec::new();
    let cursor;
    {
        let s = inner.lock();
        if from.is_empty() || from == "0" {
            // "Start at most recent": the current objects as ADDED, then changes.
            for ((k, _, _), o) in &s.objects {
                if q.matches(*k, o) {
                    initial.push(event_line("ADDED", o.clone()));
                }
            }
            cursor = s.rv;
        } else {
            let Ok(rv) = from.parse::<u64>() else {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!("invalid resourceVersion {from:?}"),
                );
            };
            if rv < s.compacted {
                let message = format!("too old resource version: {rv} ({})", s.compacted);
                return match s.gone_mode {
                    GoneMode::Http410 => status(StatusCode::GONE, "Gone", &message),
                    GoneMode::ErrorEvent => {
                        let line = event_line("ERROR", status_object(410, "Expired", &message));
                        full_stream(StatusCode::OK, line)
                    }
                };
            }
            cursor = rv;
        }
    }
    let inner = inner.clone();
    tokio::spawn(async move {
        inner.open_watches.fetch_add(1, Ordering::SeqCst);
        stream_watch(&inner, q, cursor, initial, bookmarks, timeout, tx, cancel).await;
        inner.open_watches.fetch_sub(1, Ordering::SeqCst);
    });
    let body = StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    }));
    let mut r = Response::new(BodyExt::boxed(body));
    r.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    r
}

fn full_stream(code: StatusCode, line: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(line).boxed());
    *r.status_mut() = code;
    r
}

fn event_line(kind_of_event: &str, object: Value) -> Bytes {
    let mut s = json!({"type": kind_of_event, "object": object}).to_string();
    s.push('\n');
    Bytes::from(s)
}

#[allow(clippy::too_many_arguments)]
async fn stream_watch(
    inner: &Inner,
    q: Query,
    mut cursor: u64,
    initial: Vec<Bytes>,
    bookmarks: bool,
    timeout: Option<Duration>,
    tx: mpsc::Sender<Bytes>,
    cancel: CancellationToken,
) {
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut generation = inner.generation.subscribe();
    let epoch = inner.lock().expire_epoch;
    for line in initial {
        if tx.send(line).await.is_err() {
            return;
        }
    }
    loop {
        let (lines, ended, interval) = {
            let s = inner.lock();
            let mut lines = Vec::new();
            let mut ended = false;
            if s.expire_epoch != epoch || cursor < s.compacted {
                let message = format!("too old resource version: {cursor} ({})", s.compacted.max(cursor + 1));
                lines.push(event_line("ERROR", status_object(410, "Expired", &message)));
                ended = true;
            } else {
                for e in s.history.iter().filter(|e| e.rv > cursor) {
                    let now = q.matches(e.kind, &e.object);
                    let before = e.previous.as_ref().is_some_and(|p| q.matches(e.kind, p));
                    let sent = match (e.kind_of_event, before, now) {
                        ("ADDED", _, true) => Some("ADDED"),
                        ("MODIFIED", true, true) => Some("MODIFIED"),
                        ("MODIFIED", false, true) => Some("ADDED"),
                        ("MODIFIED", true, false) => Some("DELETED"),
                        ("DELETED", _, true) => Some("DELETED"),
                        _ => None,
                    };
                    if let Some(t) = sent {
                        lines.push(event_line(t, e.object.clone()));
                    }
                }
                cursor = s.rv;
            }
            (lines, ended, s.bookmark_interval)
        };
        for line in lines {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        if ended {
            return;
        }
        let sleep_until = match deadline {
            Some(d) => d.min(tokio::time::Instant::now() + interval),
            None => tokio::time::Instant::now() + interval,
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tx.closed() => return,
            changed = generation.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep_until(sleep_until) => {
                if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                    return;
                }
                if bookmarks {
                    let rv = inner.lock().rv;
                    // Everything up to `rv` that matches has been sent above.
                    if rv == cursor {
                        let object = json!({"kind": q.kind.name(), "apiVersion": q.kind.api_version(),
                                            "metadata": {"resourceVersion": rv.to_string()}});
                        if tx.send(event_line("BOOKMARK", object)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

// === selectors ===

struct Selectors {
    fields: Vec<(String, bool, String)>,
    labels: Vec<LabelRequirement>,
}

enum LabelRequirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl Selectors {
    fn parse(params: &BTreeMap<String, String>) -> Result<Selectors, String> {
        let mut fields = Vec::new();
        for term in params.get("fieldSelector").map(String::as_str).unwrap_or_default().split(',') {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let (k, eq, v) = if let Some((k, v)) = term.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = term.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = term.split_once('=') {
                (k, true, v)
            } else {
                return Err(format!("invalid field selector term {term:?}"));
            };
            fields.push((k.trim().to_owned(), eq, v.trim().to_owned()));
        }
        let mut labels = Vec::new();
        let sel = params.get("labelSelector").map(String::as_str).unwrap_or_default();
        let (mut depth, mut start) = (0, 0);
        let mut terms = Vec::new();
        for (i, c) in sel.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    terms.push(&sel[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        terms.push(&sel[start..]);
        for term in terms.into_iter().map(str::trim).filter(|t| !t.is_empty()) {
            let set = |s: &str| -> Result<Vec<String>, String> {
                let s = s.trim();
                let inner =
                    s.strip_prefix('(').and_then(|s| s.strip_suffix(')')).ok_or(format!("bad set {s:?}"))?;
                Ok(inner.split(',').map(|v| v.trim().to_owned()).collect())
            };
            let req = if let Some(k) = term.strip_prefix('!') {
                LabelRequirement::NotExists(k.trim().to_owned())
            } else if let Some((k, v)) = term.split_once("!=") {
                LabelRequirement::NotEquals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                LabelRequirement::Equals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, rest)) = term.split_once(" notin ") {
                LabelRequirement::NotIn(k.trim().to_owned(), set(rest)?)
            } else if let Some((k, rest)) = term.split_once(" in ") {
                LabelRequirement::In(k.trim().to_owned(), set(rest)?)
            } else if term.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) {
                LabelRequirement::Exists(term.to_owned())
            } else {
                return Err(format!("invalid label selector term {term:?}"));
            };
            labels.push(req);
        }
        Ok(Selectors { fields, labels })
    }

    fn matches(&self, object: &Value) -> bool {
        let field_ok = self.fields.iter().all(|(path, eq, want)| {
            let mut v = object;
            for part in path.split('.') {
                v = &v[part];
            }
            let got = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (got == *want) == *eq
        });
        let labels = &object["metadata"]["labels"];
        let get = |k: &str| labels[k].as_str();
        let label_ok = self.labels.iter().all(|r| match r {
            LabelRequirement::Equals(k, v) => get(k) == Some(v.as_str()),
            LabelRequirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            LabelRequirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelRequirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            LabelRequirement::Exists(k) => get(k).is_some(),
            LabelRequirement::NotExists(k) => get(k).is_none(),
        });
        field_ok && label_ok
    }
}

/// `application/x-www-form-urlencoded` decoding of a query string.
fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex =
                    std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
