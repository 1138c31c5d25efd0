//! What to say about a key trawl does not know: a Prometheus setting trawl does not support yet,
//! a typo of one it does ("did you mean"), or neither.
//!
//! What this is: the keys of Prometheus' config blocks (`config/config.go` of
//! prometheus/prometheus, `config/http_config.go` of prometheus/common, the service discovery
//! names registered under `discovery/`), each block recognised by the keys trawl expects in it.
//! A key that Prometheus has in that block and trawl does not is "not supported yet"; anything
//! else is an unknown key, with the nearest expected key when it is a likely typo.
//! What this is not: validation; serde-saphyr finds the unknown key and its line.

/// The keys of Prometheus' `HTTPClientConfig` and `ProxyConfig`, inline in every block that makes
/// HTTP requests.
const HTTP_CLIENT: &[&str] = &[
    "basic_auth",
    "authorization",
    "oauth2",
    "bearer_token",
    "bearer_token_file",
    "tls_config",
    "follow_redirects",
    "enable_http2",
    "proxy_url",
    "no_proxy",
    "proxy_from_environment",
    "proxy_connect_header",
    "http_headers",
];

/// The service discovery mechanisms Prometheus registers (`<name>_sd_configs`), plus
/// `static_configs`.
const SD_CONFIGS: &[&str] = &[
    "aws_sd_configs",
    "azure_sd_configs",
    "consul_sd_configs",
    "digitalocean_sd_configs",
    "dns_sd_configs",
    "docker_sd_configs",
    "dockerswarm_sd_configs",
    "ec2_sd_configs",
    "ecs_sd_configs",
    "elasticache_sd_configs",
    "eureka_sd_configs",
    "file_sd_configs",
    "gce_sd_configs",
    "hetzner_sd_configs",
    "http_sd_configs",
    "ionos_sd_configs",
    "kubernetes_sd_configs",
    "kuma_sd_configs",
    "lightsail_sd_configs",
    "linode_sd_configs",
    "marathon_sd_configs",
    "msk_sd_configs",
    "nerve_sd_configs",
    "nomad_sd_configs",
    "oci_sd_configs",
    "openstack_sd_configs",
    "outscale_sd_configs",
    "ovhcloud_sd_configs",
    "puppetdb_sd_configs",
    "rds_sd_configs",
    "scaleway_sd_configs",
    "serverset_sd_configs",
    "stackit_sd_configs",
    "static_configs",
    "triton_sd_configs",
    "uyuni_sd_configs",
    "vultr_sd_configs",
];

/// One Prometheus config block: how to recognise it from the keys trawl expects there, and the
/// keys Prometheus accepts in it.
struct Block {
    /// What the message calls it.
    name: &'static str,
    /// Keys that trawl expects only in this block (all of them must be expected).
    signature: &'static [&'static str],
    /// Prometheus' keys of the block, apart from `HTTP_CLIENT` and `SD_CONFIGS`.
    keys: &'static [&'static str],
    /// Whether the block also holds the HTTP client keys.
    http_client: bool,
    /// Whether the block also holds the service discovery lists.
    sd_configs: bool,
}

/// Prometheus' blocks, from prometheus/prometheus `config/config.go` and `discovery/**` and
/// prometheus/common `config/http_config.go` (main branch, 2026). Order matters only where
/// signatures overlap: more specific first.
const BLOCKS: &[Block] = &[
    block(
        "the top level",
        &["scrape_configs", "remote_write"],
        &[
            "global",
            "runtime",
            "alerting",
            "rule_files",
            "scrape_config_files",
            "scrape_configs",
            "storage",
            "tracing",
            "remote_write",
            "remote_read",
            "otlp",
        ],
    ),
    block(
        "global",
        &["external_labels"],
        &[
            "scrape_interval",
            "scrape_timeout",
            "scrape_protocols",
            "evaluation_interval",
            "rule_query_offset",
            "query_log_file",
            "scrape_failure_log_file",
            "external_labels",
            "body_size_limit",
            "sample_limit",
            "target_limit",
            "label_limit",
            "label_name_length_limit",
            "label_value_length_limit",
            "keep_dropped_targets",
            "metric_name_validation_scheme",
            "metric_name_escaping_scheme",
            "scrape_native_histograms",
            "convert_classic_histograms_to_nhcb",
            "always_scrape_classic_histograms",
            "extra_scrape_metrics",
        ],
    ),
    Block {
        name: "scrape_configs",
        signature: &["job_name"],
        keys: &[
            "job_name",
            "honor_labels",
            "honor_timestamps",
            "track_timestamps_staleness",
            "params",
            "scrape_interval",
            "scrape_timeout",
            "scrape_protocols",
            "fallback_scrape_protocol",
            "scrape_native_histograms",
            "always_scrape_classic_histograms",
            "convert_classic_histograms_to_nhcb",
            "scrape_failure_log_file",
            "metrics_path",
            "scheme",
            "enable_compression",
            "body_size_limit",
            "sample_limit",
            "target_limit",
            "label_limit",
            "label_name_length_limit",
            "label_value_length_limit",
            "native_histogram_bucket_limit",
            "native_histogram_min_bucket_factor",
            "keep_dropped_targets",
            "metric_name_validation_scheme",
            "metric_name_escaping_scheme",
            "extra_scrape_metrics",
            "relabel_configs",
            "metric_relabel_configs",
        ],
        http_client: true,
        sd_configs: true,
    },
    Block {
        name: "remote_write",
        signature: &["remote_timeout", "write_relabel_configs"],
        keys: &[
            "url",
            "remote_timeout",
            "headers",
            "write_relabel_configs",
            "name",
            "send_exemplars",
            "send_native_histograms",
            "round_robin_dns",
            "protobuf_message",
            "failed_request_logging",
            "queue_config",
            "metadata_config",
            "sigv4",
            "azuread",
            "google_iam",
        ],
        http_client: true,
        sd_configs: false,
    },
    block(
        "queue_config",
        &["max_shards", "batch_send_deadline"],
        &[
            "capacity",
            "max_shards",
            "min_shards",
            "max_samples_per_send",
            "batch_send_deadline",
            "min_backoff",
            "max_backoff",
            "retry_on_http_429",
            "sample_age_limit",
        ],
    ),
    block("metadata_config", &["send", "send_interval"], &["send", "send_interval", "max_samples_per_send"]),
    Block {
        name: "kubernetes_sd_configs",
        signature: &["role", "api_server", "kubeconfig_file"],
        keys: &["api_server", "role", "kubeconfig_file", "namespaces", "selectors", "attach_metadata"],
        http_client: true,
        sd_configs: false,
    },
    block(
        "kubernetes_sd_configs attach_metadata",
        &["node", "namespace"],
        &["node", "namespace", "deployment", "job", "cronjob"],
    ),
    block("kubernetes_sd_configs namespaces", &["own_namespace", "names"], &["own_namespace", "names"]),
    Block {
        name: "http_sd_configs",
        signature: &["url", "refresh_interval"],
        keys: &["url", "refresh_interval"],
        http_client: true,
        sd_configs: false,
    },
    block("file_sd_configs", &["files", "refresh_interval"], &["files", "refresh_interval"]),
    block("static_configs", &["targets", "labels"], &["targets", "labels"]),
    block(
        "basic_auth",
        &["username", "password_file"],
        &["username", "username_file", "username_ref", "password", "password_file", "password_ref"],
    ),
    block(
        "authorization",
        &["credentials", "credentials_file"],
        &["type", "credentials", "credentials_file", "credentials_ref"],
    ),
    block(
        "oauth2",
        &["client_id", "token_url"],
        &[
            "client_id",
            "client_secret",
            "client_secret_file",
            "client_secret_ref",
            "client_certificate_key_id",
            "client_certificate_key",
            "client_certificate_key_file",
            "client_certificate_key_ref",
            "grant_type",
            "signature_algorithm",
            "iss",
            "audience",
            "claims",
            "scopes",
            "token_url",
            "endpoint_params",
            "tls_config",
            "proxy_url",
            "no_proxy",
            "proxy_from_environment",
            "proxy_connect_header",
        ],
    ),
    block(
        "tls_config",
        &["insecure_skip_verify", "ca_file"],
        &[
            "ca",
            "cert",
            "key",
            "ca_file",
            "cert_file",
            "key_file",
            "ca_ref",
            "cert_ref",
            "key_ref",
            "server_name",
            "insecure_skip_verify",
            "min_version",
            "max_version",
        ],
    ),
    block(
        "relabel_configs",
        &["source_labels", "target_label"],
        &["source_labels", "separator", "regex", "modulus", "target_label", "replacement", "action"],
    ),
];

/// A block without the HTTP client keys or discovery lists.
const fn block(
    name: &'static str,
    signature: &'static [&'static str],
    keys: &'static [&'static str],
) -> Block {
    Block { name, signature, keys, http_client: false, sd_configs: false }
}

impl Block {
    fn has(&self, key: &str) -> bool {
        self.keys.contains(&key)
            || (self.http_client && HTTP_CLIENT.contains(&key))
            || (self.sd_configs && SD_CONFIGS.contains(&key))
    }
}

/// The Prometheus block whose trawl counterpart expects `expected`, if it is one of them.
fn block_of(expected: &[&str]) -> Option<&'static Block> {
    BLOCKS.iter().find(|b| b.signature.iter().all(|s| expected.contains(s)))
}

/// The expected key nearest to `field`, when it is close enough to be a typo: at most two edits,
/// and fewer than half of the key (so `url` is not a typo of `name`).
fn nearest<'a>(field: &str, expected: &[&'a str]) -> Option<&'a str> {
    expected
        .iter()
        .map(|e| (strsim::damerau_levenshtein(field, e), *e))
        .filter(|(d, e)| *d <= 2 && *d * 2 < e.len().max(field.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, e)| e)
}

/// The reason given for an unknown key `field` in a block where trawl expects `expected`.
pub fn reason(field: &str, expected: &[&str]) -> String {
    if let Some(b) = block_of(expected)
        && b.has(field)
    {
        return format!(
            "`{field}` is a Prometheus setting (in {}) that trawl does not support yet; remove it \
             to run this config with trawl",
            b.name
        );
    }
    match nearest(field, expected) {
        Some(near) => format!("unknown field `{field}`; did you mean `{near}`?"),
        None => format!("unknown field `{field}`, expected one of {}", expected.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys trawl expects in a scrape config and in `global` (a subset, enough to be
    /// recognised).
    const SCRAPE: &[&str] = &["job_name", "scrape_interval", "relabel_configs", "proxy_url", "oauth2"];
    const GLOBAL: &[&str] = &["scrape_interval", "external_labels", "sample_limit"];

    #[test]
    fn unsupported_typo_or_unknown() {
        // (field, expected keys, fragment of the reason, why)
        let cases: &[(&str, &[&str], &str, &str)] = &[
            (
                "consul_sd_configs",
                SCRAPE,
                "`consul_sd_configs` is a Prometheus setting (in scrape_configs) that trawl does not support yet",
                "a discovery mechanism trawl lacks",
            ),
            ("native_histogram_bucket_limit", SCRAPE, "does not support yet", "a scrape setting trawl lacks"),
            ("http_headers", SCRAPE, "does not support yet", "an HTTP client setting trawl lacks"),
            (
                "target_limit",
                GLOBAL,
                "(in global) that trawl does not support",
                "a global setting trawl lacks",
            ),
            ("scrape_intervall", SCRAPE, "did you mean `scrape_interval`?", "a typo"),
            ("relabel_config", SCRAPE, "did you mean `relabel_configs`?", "a missing s"),
            ("proxy_ulr", SCRAPE, "did you mean `proxy_url`?", "swapped letters"),
            ("bogus", SCRAPE, "unknown field `bogus`, expected one of job_name", "neither"),
            (
                "url",
                &["name", "x_y"],
                "unknown field `url`, expected",
                "short keys are not typos of each other",
            ),
            (
                "rule_files",
                &["global", "scrape_configs", "remote_write"],
                "Prometheus setting (in the top level)",
                "a server feature",
            ),
        ];
        for (field, expected, want, why) in cases {
            let got = reason(field, expected);
            assert!(got.contains(want), "{why}: {got}");
        }
    }

    #[test]
    fn every_block_is_recognised_by_its_own_keys_only() {
        for b in BLOCKS {
            assert_eq!(block_of(b.keys).map(|x| x.name), Some(b.name), "{}", b.name);
        }
    }
}
