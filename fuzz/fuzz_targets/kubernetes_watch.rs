//! Fuzz target for the Kubernetes watch-event decoding of the `pod` role: one line of a watch
//! response decoded as kube's watcher decodes it, and the pod built into targets
//! (`trawl::fuzzing::kubernetes_pod_event`). Asserts:
//! - any bytes: an error or targets, never a panic;
//! - a well-formed ADDED event (a pod with an IP and container ports made from the input)
//!   decodes, and yields one target per port, at `<ip>:<port>`, with the pod's name and
//!   namespace.

#![no_main]

use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use trawl::fuzzing::kubernetes_pod_event;

fuzz_target!(|data: &[u8]| {
    let _ = kubernetes_pod_event(data);

    let mut u = Unstructured::new(data);
    let ip: [u8; 4] = u.arbitrary().unwrap_or([10, 0, 0, 1]);
    let ip = format!("{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3]);
    let ports: Vec<u16> =
        (0..u.int_in_range(1..=4u8).unwrap_or(1)).map(|_| u.arbitrary().unwrap_or(80)).collect();
    let name: String = u.arbitrary().unwrap_or_default();
    let namespace: String = u.arbitrary().unwrap_or_default();
    let event = serde_json::json!({
        "type": "ADDED",
        "object": {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
            "spec": {"containers": [{
                "name": "c",
                "ports": ports.iter().map(|p| serde_json::json!({"containerPort": p})).collect::<Vec<_>>(),
            }]},
            "status": {"podIP": ip},
        },
    });
    let line = serde_json::to_vec(&event).expect("serialises");
    let targets = kubernetes_pod_event(&line).expect("a well-formed event decodes").expect("it holds a pod");
    assert_eq!(targets.len(), ports.len(), "one target per port");
    for (t, p) in targets.iter().zip(&ports) {
        assert_eq!(t.get("__address__"), Some(format!("{ip}:{p}").as_str()));
        // An empty label value is no label, as in Prometheus.
        assert_eq!(t.get("__meta_kubernetes_namespace").unwrap_or_default(), namespace);
        assert_eq!(t.get("__meta_kubernetes_pod_name").unwrap_or_default(), name);
    }
});
