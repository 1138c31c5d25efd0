//! Prometheus 3's content negotiation settings: `scrape_protocols`, `fallback_scrape_protocol`,
//! `metric_name_validation_scheme` and `metric_name_escaping_scheme`, with the defaults a job takes
//! from `global`, and the `Accept` header they make.
//!
//! What this is: the config values (spelled and checked as Prometheus' `config.ScrapeProtocol`
//! and `model.ValidationScheme` are), [`resolve`] (the part of `ScrapeConfig.Validate` that fills
//! them in from `global`, with its messages), and [`accept_header`] (`scrape.acceptHeader`).
//! What this is not: picking a parser for a response; that is
//! [`crate::parse::format_from_content_type`].

use std::fmt;

use serde::{Deserialize, Deserializer};

/// One exposition protocol a scrape may ask for (`config.ScrapeProtocol`). Case-sensitive names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScrapeProtocol {
    /// `PrometheusProto`: delimited protobuf `MetricFamily` messages.
    PrometheusProto,
    /// `PrometheusText0.0.4`.
    PrometheusText0_0_4,
    /// `PrometheusText1.0.0` (text with quoted UTF-8 names).
    PrometheusText1_0_0,
    /// `OpenMetricsText0.0.1`.
    OpenMetricsText0_0_1,
    /// `OpenMetricsText1.0.0`.
    OpenMetricsText1_0_0,
}

/// Every protocol, for the "supported" list of the error message (Prometheus sorts the names).
const ALL: [ScrapeProtocol; 5] = [
    ScrapeProtocol::OpenMetricsText0_0_1,
    ScrapeProtocol::OpenMetricsText1_0_0,
    ScrapeProtocol::PrometheusProto,
    ScrapeProtocol::PrometheusText0_0_4,
    ScrapeProtocol::PrometheusText1_0_0,
];

/// Prometheus' `DefaultScrapeProtocols`: text formats only, OpenMetrics first.
pub const DEFAULT_SCRAPE_PROTOCOLS: [ScrapeProtocol; 4] = [
    ScrapeProtocol::OpenMetricsText1_0_0,
    ScrapeProtocol::OpenMetricsText0_0_1,
    ScrapeProtocol::PrometheusText1_0_0,
    ScrapeProtocol::PrometheusText0_0_4,
];

/// Prometheus' `DefaultProtoFirstScrapeProtocols`, a job's default when it scrapes native
/// histograms (`scrape_native_histograms: true`).
pub const DEFAULT_PROTO_FIRST_SCRAPE_PROTOCOLS: [ScrapeProtocol; 5] = [
    ScrapeProtocol::PrometheusProto,
    ScrapeProtocol::OpenMetricsText1_0_0,
    ScrapeProtocol::OpenMetricsText0_0_1,
    ScrapeProtocol::PrometheusText1_0_0,
    ScrapeProtocol::PrometheusText0_0_4,
];

impl ScrapeProtocol {
    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            ScrapeProtocol::PrometheusProto => "PrometheusProto",
            ScrapeProtocol::PrometheusText0_0_4 => "PrometheusText0.0.4",
            ScrapeProtocol::PrometheusText1_0_0 => "PrometheusText1.0.0",
            ScrapeProtocol::OpenMetricsText0_0_1 => "OpenMetricsText0.0.1",
            ScrapeProtocol::OpenMetricsText1_0_0 => "OpenMetricsText1.0.0",
        }
    }

    /// The media range offered for it (`config.ScrapeProtocolsHeaders`).
    pub fn header(self) -> &'static str {
        match self {
            ScrapeProtocol::PrometheusProto => {
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
            }
            ScrapeProtocol::PrometheusText0_0_4 => "text/plain;version=0.0.4",
            ScrapeProtocol::PrometheusText1_0_0 => "text/plain;version=1.0.0",
            ScrapeProtocol::OpenMetricsText0_0_1 => "application/openmetrics-text;version=0.0.1",
            ScrapeProtocol::OpenMetricsText1_0_0 => "application/openmetrics-text;version=1.0.0",
        }
    }

    /// The media type alone (`HeaderMediaType`): what `fallback_scrape_protocol` stands for.
    pub fn media_type(self) -> &'static str {
        let h = self.header();
        h.split(';').next().unwrap_or(h)
    }

    /// Reads a config spelling; the error is `ScrapeProtocol.Validate`'s.
    pub fn parse(s: &str) -> Result<ScrapeProtocol, String> {
        ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| {
            let names: Vec<&str> = ALL.iter().map(|p| p.name()).collect();
            format!("unknown scrape protocol {s}, supported: [{}]", names.join(" "))
        })
    }
}

impl fmt::Display for ScrapeProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A protocol name as written: kept as text so that an unknown one fails in [`resolve`] with
/// Prometheus' message and the job's name, not as a bare YAML error.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct ProtocolName(pub String);

/// `metric_name_validation_scheme`: which metric and label names a scrape accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ValidationScheme {
    /// Not set here (empty or absent): the job takes the global one, the global one `utf8`.
    #[default]
    Unset,
    /// `legacy`: `[a-zA-Z_:][a-zA-Z0-9_:]*` metric names, `[a-zA-Z_][a-zA-Z0-9_]*` label names.
    Legacy,
    /// `utf8`: any non-empty UTF-8 name (Prometheus 3's default).
    Utf8,
}

impl<'de> Deserialize<'de> for ValidationScheme {
    /// `model.ValidationScheme.UnmarshalYAML`: `""` leaves it unset; anything but `legacy` and
    /// `utf8` is an error.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Option::<String>::deserialize(d)?.unwrap_or_default();
        match s.as_str() {
            "" => Ok(ValidationScheme::Unset),
            "legacy" => Ok(ValidationScheme::Legacy),
            "utf8" => Ok(ValidationScheme::Utf8),
            other => Err(serde::de::Error::custom(format!("unrecognized ValidationScheme: {other:?}"))),
        }
    }
}

/// `metric_name_escaping_scheme`: how a target is asked to escape names that are not legacy
/// names (the `escaping` parameter of the `Accept` header, `model.EscapingScheme`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EscapingScheme {
    /// `allow-utf-8`: send names as they are.
    AllowUtf8,
    /// `underscores`: invalid characters become `_`.
    Underscores,
    /// `dots`: `.` becomes `_dot_`, `_` becomes `__`, others `_`.
    Dots,
    /// `values`: `U__` plus hex code points.
    Values,
}

impl EscapingScheme {
    /// The spelling in configs and headers.
    pub fn as_str(self) -> &'static str {
        match self {
            EscapingScheme::AllowUtf8 => "allow-utf-8",
            EscapingScheme::Underscores => "underscores",
            EscapingScheme::Dots => "dots",
            EscapingScheme::Values => "values",
        }
    }

    fn parse(s: &str) -> Option<EscapingScheme> {
        [EscapingScheme::AllowUtf8, EscapingScheme::Underscores, EscapingScheme::Dots, EscapingScheme::Values]
            .into_iter()
            .find(|e| e.as_str() == s)
    }
}

/// The negotiation settings of one job after [`resolve`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiation {
    /// The protocols offered, most wanted first.
    pub protocols: Vec<ScrapeProtocol>,
    /// The protocol a response with a blank or unknown `Content-Type` is read as, if any.
    pub fallback: Option<ScrapeProtocol>,
    /// `true` for `utf8` validation, `false` for `legacy`.
    pub utf8_names: bool,
    /// The escaping asked of targets.
    pub escaping: EscapingScheme,
}

/// What [`resolve`] reads: a job's own values and the global ones, as written.
pub struct Written<'a> {
    /// The job's name, for messages.
    pub job: &'a str,
    /// The job's `scrape_protocols`.
    pub protocols: Option<&'a [ProtocolName]>,
    /// `global.scrape_protocols`.
    pub global_protocols: Option<&'a [ProtocolName]>,
    /// The job's effective `scrape_native_histograms` (already defaulted from global).
    pub native_histograms: bool,
    /// The job's `fallback_scrape_protocol`.
    pub fallback: Option<&'a str>,
    /// The job's `metric_name_validation_scheme`.
    pub validation: ValidationScheme,
    /// `global.metric_name_validation_scheme`.
    pub global_validation: ValidationScheme,
    /// The job's `metric_name_escaping_scheme`.
    pub escaping: Option<&'a str>,
    /// `global.metric_name_escaping_scheme`.
    pub global_escaping: Option<&'a str>,
}

/// Checks `global.scrape_protocols` as `GlobalConfig.UnmarshalYAML` does.
pub fn validate_global_protocols(protocols: &[ProtocolName]) -> Result<(), String> {
    validate_protocols(protocols).map(drop).map_err(|e| format!("{e} for global config"))
}

/// `validateAcceptScrapeProtocols`: not empty, no name twice (case-insensitively), all known.
fn validate_protocols(protocols: &[ProtocolName]) -> Result<Vec<ScrapeProtocol>, String> {
    if protocols.is_empty() {
        return Err("scrape_protocols cannot be empty".into());
    }
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::with_capacity(protocols.len());
    for p in protocols {
        let lower = p.0.to_lowercase();
        if seen.contains(&lower) {
            let all: Vec<&str> = protocols.iter().map(|p| p.0.as_str()).collect();
            return Err(format!("duplicated protocol in scrape_protocols, got [{}]", all.join(" ")));
        }
        out.push(ScrapeProtocol::parse(&p.0).map_err(|e| format!("scrape_protocols: {e}"))?);
        seen.push(lower);
    }
    Ok(out)
}

/// The negotiation part of `ScrapeConfig.Validate`, in its order and with its messages: the
/// job's protocols (its own; else the global ones; else the proto-first defaults when it scrapes
/// native histograms; else the text defaults), its fallback, and its validation and escaping
/// schemes (a job's escaping follows its own validation scheme when it sets one, else the
/// global escaping, which follows the global validation scheme).
pub fn resolve(w: &Written<'_>) -> Result<Negotiation, String> {
    let job = w.job;
    let protocols = match (w.protocols, w.global_protocols) {
        (Some(p), _) | (None, Some(p)) => validate_protocols(p),
        (None, None) if w.native_histograms => Ok(DEFAULT_PROTO_FIRST_SCRAPE_PROTOCOLS.to_vec()),
        (None, None) => Ok(DEFAULT_SCRAPE_PROTOCOLS.to_vec()),
    }
    .map_err(|e| format!("{e} for scrape config with job name {job:?}"))?;
    let fallback = match w.fallback.filter(|f| !f.is_empty()) {
        Some(f) => Some(ScrapeProtocol::parse(f).map_err(|e| {
            format!("invalid fallback_scrape_protocol for scrape config with job name {job:?}: {e}")
        })?),
        None => None,
    };
    let global_validation = match w.global_validation {
        ValidationScheme::Unset => ValidationScheme::Utf8,
        v => v,
    };
    let (validation, local_unset) = match w.validation {
        ValidationScheme::Unset => (global_validation, true),
        v => (v, false),
    };
    let global_escaping = match w.global_escaping.filter(|e| !e.is_empty()) {
        None if global_validation == ValidationScheme::Legacy => EscapingScheme::Underscores,
        None => EscapingScheme::AllowUtf8,
        Some(e) => EscapingScheme::parse(e).ok_or_else(|| {
            format!(
                "unknown global name escaping method specified, must be one of 'allow-utf-8', 'underscores', \
                 'dots', or 'values', got {e:?}"
            )
        })?,
    };
    let escaping = match w.escaping.filter(|e| !e.is_empty()) {
        None if local_unset => global_escaping,
        None if validation == ValidationScheme::Legacy => EscapingScheme::Underscores,
        None => EscapingScheme::AllowUtf8,
        Some(e) => EscapingScheme::parse(e).ok_or_else(|| {
            format!(
                "unknown scrape config name escaping method specified, must be one of 'allow-utf-8', \
                 'underscores', 'dots', or 'values', got {e:?}"
            )
        })?,
    };
    if escaping == EscapingScheme::AllowUtf8 && validation != ValidationScheme::Utf8 {
        return Err("utf8 metric names requested but validation scheme is not set to UTF8".into());
    }
    Ok(Negotiation { protocols, fallback, utf8_names: validation == ValidationScheme::Utf8, escaping })
}

/// The `Accept` header of a scrape (`scrape.acceptHeader`): the protocols in order with `q`
/// falling from `0.(N+1)` (N = the 5 protocols Prometheus knows) by 0.1 each, the 1.0.0 text
/// formats with the `escaping` parameter, and `*/*` last.
pub fn accept_header(protocols: &[ScrapeProtocol], escaping: EscapingScheme) -> String {
    let mut out = String::new();
    let mut weight = ALL.len() + 1;
    for p in protocols {
        out.push_str(p.header());
        if matches!(p, ScrapeProtocol::PrometheusText1_0_0 | ScrapeProtocol::OpenMetricsText1_0_0) {
            out.push_str(";escaping=");
            out.push_str(escaping.as_str());
        }
        out.push_str(&format!(";q=0.{weight},"));
        weight = weight.saturating_sub(1);
    }
    out.push_str(&format!("*/*;q=0.{weight}"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_header_equals_prometheus_3() {
        use EscapingScheme::*;
        // (protocols, escaping, expected, why): the four cases of Prometheus' own table test
        // (scrape/scrape_test.go `TestAcceptHeader`, at d15adb9), strings copied from there,
        // then the config-driven cases of this brief.
        let cases: &[(&[ScrapeProtocol], EscapingScheme, &str, &str)] = &[
            (
                &DEFAULT_SCRAPE_PROTOCOLS,
                Underscores,
                "application/openmetrics-text;version=1.0.0;escaping=underscores;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=underscores;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
                "Prometheus: default scrape protocols with underscore escaping",
            ),
            (
                &DEFAULT_PROTO_FIRST_SCRAPE_PROTOCOLS,
                Dots,
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;escaping=dots;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=dots;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
                "Prometheus: default proto first scrape protocols with dots escaping",
            ),
            (
                &DEFAULT_SCRAPE_PROTOCOLS,
                AllowUtf8,
                "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
                "Prometheus: default scrape protocols with no escaping",
            ),
            (
                &DEFAULT_PROTO_FIRST_SCRAPE_PROTOCOLS,
                AllowUtf8,
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
                "Prometheus: default proto first scrape protocols with no escaping",
            ),
            (
                &[ScrapeProtocol::PrometheusText0_0_4],
                AllowUtf8,
                "text/plain;version=0.0.4;q=0.6,*/*;q=0.5",
                "one old protocol: no escaping parameter, q starts at 0.6 whatever the count",
            ),
        ];
        for (protocols, escaping, want, why) in cases {
            assert_eq!(accept_header(protocols, *escaping), *want, "{why}");
        }
    }

    fn names(v: &[&str]) -> Vec<ProtocolName> {
        v.iter().map(|s| ProtocolName((*s).to_owned())).collect()
    }

    fn written<'a>(job: &'a str) -> Written<'a> {
        Written {
            job,
            protocols: None,
            global_protocols: None,
            native_histograms: false,
            fallback: None,
            validation: ValidationScheme::Unset,
            global_validation: ValidationScheme::Unset,
            escaping: None,
            global_escaping: None,
        }
    }

    #[test]
    #[allow(clippy::type_complexity)] // a case table: one tuple per row reads best
    fn protocols_default_and_propagate_as_in_prometheus() {
        let text = DEFAULT_SCRAPE_PROTOCOLS.to_vec();
        let proto = DEFAULT_PROTO_FIRST_SCRAPE_PROTOCOLS.to_vec();
        let global = names(&["PrometheusText0.0.4"]);
        let own = names(&["OpenMetricsText1.0.0"]);
        // (job's, global's, native histograms, expected, why)
        let cases: Vec<(Option<&[ProtocolName]>, Option<&[ProtocolName]>, bool, Vec<ScrapeProtocol>, &str)> = vec![
            (None, None, false, text.clone(), "nothing set: the text defaults"),
            (None, None, true, proto, "scrape_native_histograms puts protobuf first"),
            (
                None,
                Some(&global),
                true,
                vec![ScrapeProtocol::PrometheusText0_0_4],
                "a global list wins over it",
            ),
            (
                Some(&own),
                Some(&global),
                false,
                vec![ScrapeProtocol::OpenMetricsText1_0_0],
                "the job's own wins",
            ),
        ];
        for (protocols, global_protocols, native, want, why) in cases {
            let w = Written { protocols, global_protocols, native_histograms: native, ..written("j") };
            assert_eq!(resolve(&w).unwrap().protocols, want, "{why}");
        }
    }

    #[test]
    fn bad_values_fail_with_prometheus_messages() {
        let empty = names(&[]);
        let dup = names(&["PrometheusProto", "prometheusproto"]);
        let unknown = names(&["Proto"]);
        // (written, expected message, why)
        let cases: Vec<(Written<'_>, &str, &str)> = vec![
            (
                Written { protocols: Some(&empty), ..written("j") },
                "scrape_protocols cannot be empty for scrape config with job name \"j\"",
                "empty list",
            ),
            (
                Written { protocols: Some(&dup), ..written("j") },
                "duplicated protocol in scrape_protocols, got [PrometheusProto prometheusproto] for scrape config with job name \"j\"",
                "duplicates compare case-insensitively",
            ),
            (
                Written { protocols: Some(&unknown), ..written("j") },
                "scrape_protocols: unknown scrape protocol Proto, supported: [OpenMetricsText0.0.1 OpenMetricsText1.0.0 PrometheusProto PrometheusText0.0.4 PrometheusText1.0.0] for scrape config with job name \"j\"",
                "unknown name, sorted list",
            ),
            (
                Written { fallback: Some("text"), ..written("j") },
                "invalid fallback_scrape_protocol for scrape config with job name \"j\": unknown scrape protocol text, supported: [OpenMetricsText0.0.1 OpenMetricsText1.0.0 PrometheusProto PrometheusText0.0.4 PrometheusText1.0.0]",
                "unknown fallback",
            ),
            (
                Written {
                    validation: ValidationScheme::Legacy,
                    escaping: Some("allow-utf-8"),
                    ..written("j")
                },
                "utf8 metric names requested but validation scheme is not set to UTF8",
                "legacy names cannot ask for UTF-8",
            ),
            (
                Written { global_escaping: Some("bogus"), ..written("j") },
                "unknown global name escaping method specified, must be one of 'allow-utf-8', 'underscores', 'dots', or 'values', got \"bogus\"",
                "unknown global escaping",
            ),
            (
                Written { escaping: Some("bogus"), ..written("j") },
                "unknown scrape config name escaping method specified, must be one of 'allow-utf-8', 'underscores', 'dots', or 'values', got \"bogus\"",
                "unknown job escaping",
            ),
        ];
        for (w, want, why) in cases {
            assert_eq!(resolve(&w).unwrap_err(), want, "{why}");
        }
        assert_eq!(
            validate_global_protocols(&empty).unwrap_err(),
            "scrape_protocols cannot be empty for global config"
        );
    }

    #[test]
    #[allow(clippy::type_complexity)] // a case table: one tuple per row reads best
    fn escaping_follows_validation_as_in_prometheus() {
        use EscapingScheme::*;
        use ValidationScheme::*;
        // (job validation, global validation, job escaping, global escaping, expected, why)
        let cases: &[(
            ValidationScheme,
            ValidationScheme,
            Option<&str>,
            Option<&str>,
            (bool, EscapingScheme),
            &str,
        )] = &[
            (Unset, Unset, None, None, (true, AllowUtf8), "Prometheus 3's default"),
            (Unset, Legacy, None, None, (false, Underscores), "global legacy: underscores"),
            (
                Legacy,
                Unset,
                None,
                None,
                (false, Underscores),
                "job legacy: underscores, not the global allow-utf-8",
            ),
            (Utf8, Legacy, None, None, (true, AllowUtf8), "job utf8 under global legacy"),
            (
                Unset,
                Unset,
                None,
                Some("dots"),
                (true, Dots),
                "the global escaping is taken when validation is unset",
            ),
            (Utf8, Unset, None, Some("dots"), (true, AllowUtf8), "a job's own validation decides instead"),
            (Legacy, Unset, Some("values"), None, (false, Values), "explicit escaping"),
        ];
        for (validation, global_validation, escaping, global_escaping, want, why) in cases {
            let w = Written {
                validation: *validation,
                global_validation: *global_validation,
                escaping: *escaping,
                global_escaping: *global_escaping,
                ..written("j")
            };
            let n = resolve(&w).unwrap();
            assert_eq!((n.utf8_names, n.escaping), *want, "{why}");
        }
    }
}
