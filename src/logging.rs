//! trawl's own log lines: logfmt (as Prometheus writes them) or JSON, on stderr, at a level that a
//! config reload can change.
//!
//! What this is: the subscriber set up once by `main`, and [`Level`], the handle the app uses to
//! re-apply the level after each reload: `--log.level` when given, else the config's (the
//! collector dialect's `service.telemetry.logs.level`), else `info`. What this is not: trawl's
//! metrics ([`crate::telemetry`]).

use std::fmt;
use std::sync::{Arc, Mutex};

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// The level used when neither the flag nor the config sets one.
pub const DEFAULT_LEVEL: &str = "info";

/// The levels `--log.level` and `service.telemetry.logs.level` accept, lower case.
pub const LEVELS: [&str; 4] = ["debug", "info", "warn", "error"];

/// The output format of log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `ts=… level=info caller=module msg="…" key=value`, as Prometheus writes.
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// Changes the level of the running subscriber. Cheap to clone.
#[derive(Clone)]
pub struct Level {
    handle: reload::Handle<EnvFilter, Registry>,
    /// `--log.level`, which wins over the config.
    flag: Option<&'static str>,
    /// The level in effect.
    current: Arc<Mutex<&'static str>>,
}

impl fmt::Debug for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Level").field("flag", &self.flag).field("current", &self.current()).finish()
    }
}

/// `level` as one of [`LEVELS`] (any case; `warning` is `warn`, as in the collector), or `None`.
pub fn parse_level(level: &str) -> Option<&'static str> {
    let l = level.to_ascii_lowercase();
    let l = if l == "warning" { "warn".to_owned() } else { l };
    LEVELS.iter().copied().find(|x| *x == l)
}

/// The filter for trawl at `level`; libraries (hyper, rustls, kube) stay at warn so debug stays
/// readable. kube-runtime's watcher stays at error: it warns about every 403 with a debug dump of
/// the API server's `Status`, and hands the same error to trawl, which logs it in one line with
/// what to do (`discovery::kubernetes`).
fn filter(level: &str) -> EnvFilter {
    EnvFilter::new(format!("warn,kube_runtime::watcher=error,trawl={level}"))
}

impl Level {
    /// The level in effect.
    pub fn current(&self) -> &'static str {
        *self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Re-applies the level after a config (re)load: the flag if given, else `config_level`, else
    /// [`DEFAULT_LEVEL`]. An unknown config level is logged and ignored.
    pub fn apply(&self, config_level: Option<&str>) {
        let from_config = config_level.and_then(|l| {
            let parsed = parse_level(l);
            if parsed.is_none() {
                tracing::warn!(
                    level = l,
                    "Unknown log level in the config; want debug, info, warn or error."
                );
            }
            parsed
        });
        let want = self.flag.or(from_config).unwrap_or(DEFAULT_LEVEL);
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if *current == want {
            return;
        }
        let before = *current;
        // Said at whichever of the two levels shows info lines.
        let shows_info = |l: &str| matches!(l, "debug" | "info");
        if shows_info(before) {
            tracing::info!(from = before, to = want, "Log level changed.");
        }
        match self.handle.reload(filter(want)) {
            Ok(()) => {
                *current = want;
                drop(current);
                if !shows_info(before) {
                    tracing::info!(from = before, to = want, "Log level changed.");
                }
            }
            Err(e) => {
                drop(current);
                tracing::error!(error = %e, "Cannot change the log level.");
            }
        }
    }
}

/// Installs the subscriber on stderr at `flag` (`--log.level`), else `config_level`, else info.
/// Returns the handle to change the level later; call once.
pub fn init(flag: Option<&str>, config_level: Option<&str>, format: Format) -> Level {
    let flag = flag.and_then(parse_level);
    let level = flag.or(config_level.and_then(parse_level)).unwrap_or(DEFAULT_LEVEL);
    let (filter, handle) = reload::Layer::new(filter(level));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        Format::Json => registry.with(fmt.json().flatten_event(true)).init(),
        Format::Logfmt => registry.with(fmt.event_format(logfmt::Logfmt)).init(),
    }
    Level { handle, flag, current: Arc::new(Mutex::new(level)) }
}

/// Logs as `ts=… level=info caller=module msg="…" key=value`, the logfmt Prometheus writes.
mod logfmt {
    use std::fmt;

    use tracing::field::{Field, Visit};
    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
    use tracing_subscriber::registry::LookupSpan;

    pub struct Logfmt;

    struct Fields<'a> {
        out: &'a mut String,
        msg: Option<String>,
    }

    fn quote(v: &str, out: &mut String) {
        if !v.is_empty() && !v.contains([' ', '"', '=', '\n', '\\']) {
            out.push_str(v);
        } else {
            out.push('"');
            for c in v.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
    }

    impl Visit for Fields<'_> {
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "message" {
                self.msg = Some(value.to_owned());
            } else {
                self.out.push(' ');
                self.out.push_str(field.name());
                self.out.push('=');
                quote(value, self.out);
            }
        }
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            self.record_str(field, &format!("{value:?}"));
        }
    }

    impl<S, N> FormatEvent<S, N> for Logfmt
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
    {
        fn format_event(
            &self,
            _: &FmtContext<'_, S, N>,
            mut w: Writer<'_>,
            ev: &tracing::Event<'_>,
        ) -> fmt::Result {
            let meta = ev.metadata();
            let mut fields = String::new();
            let mut v = Fields { out: &mut fields, msg: None };
            ev.record(&mut v);
            let msg = v.msg.take().unwrap_or_default();
            let mut line = String::with_capacity(128);
            line.push_str("ts=");
            line.push_str(&crate::admin::rfc3339(Some(std::time::SystemTime::now())));
            line.push_str(" level=");
            line.push_str(&meta.level().as_str().to_ascii_lowercase());
            line.push_str(" caller=");
            line.push_str(meta.target());
            line.push_str(" msg=");
            quote(&msg, &mut line);
            line.push_str(&fields);
            writeln!(w, "{line}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_like_the_flag_and_the_collector() {
        // (written, parsed, why)
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("debug", Some("debug"), "the flag's spelling"),
            ("INFO", Some("info"), "the collector's upper case"),
            ("warning", Some("warn"), "the collector's `warning`"),
            ("verbose", None, "unknown"),
        ];
        for (written, want, why) in cases {
            assert_eq!(parse_level(written), *want, "{why}");
        }
    }
}
