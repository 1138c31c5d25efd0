//! A fake Kubernetes API server over real HTTP, for driving discovery through kube-rs.
//!
//! It serves list and watch for pods, nodes and services in the real JSON shapes (`PodList` with
//! `metadata.resourceVersion`; watch as newline-delimited `{"type": ADDED|MODIFIED|DELETED|
//! BOOKMARK|ERROR, "object": …}`), honours `fieldSelector` (any dotted path, `=`, `==`, `!=`) and
//! `labelSelector` (`=`, `==`, `!=`, `in`, `notin`, existence, `!key`), cluster-wide and
//! namespaced paths, `resourceVersion` (a watch from before the compaction point gets a 410 Gone
//! ERROR event, forcing a re-list), `allowWatchBookmarks` and `timeoutSeconds`. Tests add, modify
//! and delete objects, compact history, and restart the server (every connection dropped, the
//! same port bound again, the stored objects kept, as etcd keeps them). Every request is logged.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// One change, as a watch reports it.
#[derive(Clone, Debug)]
struct Change {
    rv: u64,
    resource: String,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct State {
    rv: u64,
    /// (resource, namespace, name) → object.
    objects: BTreeMap<(String, String, String), Value>,
    history: Vec<Change>,
    /// Watches from a resourceVersion below this get 410 Gone.
    compacted: u64,
    requests: Vec<String>,
}

/// The fake API server.
pub struct FakeApiServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<Change>,
    stop: Mutex<CancellationToken>,
}

type Body = BoxBody<Bytes, Infallible>;

impl FakeApiServer {
    /// Starts on a free loopback port.
    pub async fn start() -> Arc<FakeApiServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (events, _) = broadcast::channel(4096);
        let s = Arc::new(FakeApiServer {
            addr,
            state: Arc::default(),
            events,
            stop: Mutex::new(CancellationToken::new()),
        });
        s.clone().serve(listener);
        s
    }

    fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) {
        let stop = self.stop.lock().unwrap().clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
                };
                let (me, stop) = (self.clone(), stop.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let me = me.clone();
                        async move { Ok::<_, Infallible>(me.handle(req)) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = conn => {}
                    }
                });
            }
        });
    }

    /// Drops every connection and serves again on the same port, keeping the objects.
    pub async fn restart(self: &Arc<Self>) {
        let old = std::mem::replace(&mut *self.stop.lock().unwrap(), CancellationToken::new());
        old.cancel();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        self.clone().serve(listener);
    }

    /// A kubeconfig pointing at this server.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\n\
             users:\n- name: fake\n  user:\n    token: fake-token\n",
            self.addr
        )
    }

    /// Every request so far, as `path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Forgets history up to now: watches from an older resourceVersion get 410 Gone.
    pub fn compact(&self) {
        let mut st = self.state.lock().unwrap();
        st.compacted = st.rv + 1;
        st.history.clear();
    }

    /// Creates or replaces an object of `resource` ("pods", "nodes", "services").
    pub fn apply(&self, resource: &str, mut object: Value) {
        let mut st = self.state.lock().unwrap();
        st.rv += 1;
        let rv = st.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let key = key_of(resource, &object);
        let kind = if st.objects.contains_key(&key) { "MODIFIED" } else { "ADDED" };
        st.objects.insert(key, object.clone());
        let c = Change { rv, resource: resource.to_owned(), kind, object };
        st.history.push(c.clone());
        let _ = self.events.send(c);
    }

    /// Deletes an object.
    pub fn delete(&self, resource: &str, namespace: &str, name: &str) {
        let mut st = self.state.lock().unwrap();
        let Some(mut object) =
            st.objects.remove(&(resource.to_owned(), namespace.to_owned(), name.to_owned()))
        else {
            return;
        };
        st.rv += 1;
        let rv = st.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let c = Change { rv, resource: resource.to_owned(), kind: "DELETED", object };
        st.history.push(c.clone());
        let _ = self.events.send(c);
    }

    fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let query: BTreeMap<String, String> = req
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), decode(v)))
            .collect();
        self.state.lock().unwrap().requests.push(req.uri().to_string());
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (namespace, resource) = match parts.as_slice() {
            ["api", "v1", "namespaces", ns, res] => (Some(ns.to_string()), res.to_string()),
            ["api", "v1", res] => (None, res.to_string()),
            _ => return reply(404, json!({"kind": "Status", "code": 404, "message": "not found"})),
        };
        let fields = query.get("fieldSelector").cloned().unwrap_or_default();
        let labels = query.get("labelSelector").cloned().unwrap_or_default();
        let matches = move |o: &Value| {
            namespace.as_deref().is_none_or(|ns| o["metadata"]["namespace"].as_str() == Some(ns))
                && field_match(&fields, o)
                && label_match(&labels, o)
        };
        if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
            let from: u64 = query.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
            let bookmarks = query.get("allowWatchBookmarks").is_some_and(|v| v == "true");
            let timeout = query.get("timeoutSeconds").and_then(|v| v.parse().ok()).unwrap_or(300u64);
            return self.watch(resource, from, bookmarks, timeout, Box::new(matches));
        }
        let st = self.state.lock().unwrap();
        let items: Vec<Value> = st
            .objects
            .iter()
            .filter(|((r, _, _), o)| *r == resource && matches(o))
            .map(|(_, o)| o.clone())
            .collect();
        let kind = format!("{}List", kind_of(&resource));
        reply(
            200,
            json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}),
        )
    }

    fn watch(
        &self,
        resource: String,
        from: u64,
        bookmarks: bool,
        timeout_secs: u64,
        matches: Box<dyn Fn(&Value) -> bool + Send + Sync>,
    ) -> Response<Body> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
        let mut live = self.events.subscribe();
        let (backlog, compacted, current) = {
            let st = self.state.lock().unwrap();
            (st.history.iter().filter(|c| c.rv > from).cloned().collect::<Vec<_>>(), st.compacted, st.rv)
        };
        let stop = self.stop.lock().unwrap().clone();
        tokio::spawn(async move {
            let line = |v: Value| Bytes::from(format!("{v}\n"));
            if from != 0 && from < compacted {
                let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": format!("too old resource version: {from} ({compacted})"), "reason": "Expired", "code": 410});
                let _ = tx.send(line(json!({"type": "ERROR", "object": status}))).await;
                return;
            }
            // Without a resourceVersion a watch starts at "now", as the API server's "any" does.
            let mut last = if from == 0 { current } else { from };
            let start = last;
            for c in backlog.into_iter().filter(|c| c.rv > start) {
                if c.resource == resource && matches(&c.object) {
                    last = c.rv;
                    if tx.send(line(json!({"type": c.kind, "object": c.object}))).await.is_err() {
                        return;
                    }
                }
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout_secs);
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep_until(deadline) => return,
                    _ = tick.tick(), if bookmarks => {
                        let kind = kind_of(&resource);
                        let bm = json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": "v1",
                            "metadata": {"resourceVersion": last.to_string()}}});
                        if tx.send(line(bm)).await.is_err() { return; }
                    }
                    c = live.recv() => match c {
                        Ok(c) if c.rv > last && c.resource == resource => {
                            last = c.rv;
                            if matches(&c.object) && tx.send(line(json!({"type": c.kind, "object": c.object}))).await.is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    },
                }
            }
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
        });
        let mut r = Response::new(StreamBody::new(stream).boxed());
        r.headers_mut().insert("content-type", "application/json".parse().unwrap());
        r
    }
}

fn reply(status: u16, v: Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())).boxed());
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    r.headers_mut().insert("content-type", "application/json".parse().unwrap());
    r
}

fn kind_of(resource: &str) -> &'static str {
    match resource {
        "pods" => "Pod",
        "nodes" => "Node",
        "services" => "Service",
        "namespaces" => "Namespace",
        _ => "Unknown",
    }
}

fn key_of(resource: &str, o: &Value) -> (String, String, String) {
    (
        resource.to_owned(),
        o["metadata"]["namespace"].as_str().unwrap_or("").to_owned(),
        o["metadata"]["name"].as_str().unwrap_or("").to_owned(),
    )
}

fn decode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h =
                    std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a.b.c=v,x!=y` against the object's JSON.
fn field_match(sel: &str, o: &Value) -> bool {
    sel.split(',').filter(|t| !t.is_empty()).all(|term| {
        let (path, want, eq) = if let Some((p, v)) = term.split_once("!=") {
            (p, v, false)
        } else if let Some((p, v)) = term.split_once("==") {
            (p, v, true)
        } else if let Some((p, v)) = term.split_once('=') {
            (p, v, true)
        } else {
            return false;
        };
        let mut cur = o;
        for part in path.split('.') {
            cur = &cur[part];
        }
        let got = cur.as_str().unwrap_or("");
        (got == want) == eq
    })
}

/// Label selector terms against `metadata.labels`.
fn label_match(sel: &str, o: &Value) -> bool {
    let labels = &o["metadata"]["labels"];
    let get = |k: &str| labels[k].as_str();
    // Split on commas outside parentheses.
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0, 0);
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
    terms.into_iter().map(str::trim).filter(|t| !t.is_empty()).all(|t| {
        if let Some((k, rest)) = t.split_once(" notin ") {
            let set: Vec<&str> =
                rest.trim_matches(|c| c == '(' || c == ')' || c == ' ').split(',').map(str::trim).collect();
            return get(k.trim()).is_none_or(|v| !set.contains(&v));
        }
        if let Some((k, rest)) = t.split_once(" in ") {
            let set: Vec<&str> =
                rest.trim_matches(|c| c == '(' || c == ')' || c == ' ').split(',').map(str::trim).collect();
            return get(k.trim()).is_some_and(|v| set.contains(&v));
        }
        if let Some((k, v)) = t.split_once("!=") {
            return get(k) != Some(v);
        }
        if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
            return get(k) == Some(v);
        }
        if let Some(k) = t.strip_prefix('!') {
            return get(k).is_none();
        }
        get(t).is_some()
    })
}

#[test]
fn selectors() {
    let o = json!({"metadata": {"name": "p", "labels": {"app": "web", "tier": "fe"}}, "spec": {"nodeName": "node-a"}});
    assert!(field_match("spec.nodeName=node-a", &o));
    assert!(!field_match("spec.nodeName=node-b", &o));
    assert!(field_match("spec.nodeName!=node-b,metadata.name=p", &o));
    assert!(label_match("app=web,tier in (fe, be)", &o));
    assert!(label_match("!missing,app", &o));
    assert!(!label_match("tier notin (fe)", &o));
    assert_eq!(decode("spec.nodeName%3Dnode-a"), "spec.nodeName=node-a");
}
