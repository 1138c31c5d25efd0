//! The `trawl` binary: flags in Prometheus' style → logging → Tokio runtime → [`trawl::app::run`].
//!
//! `anyhow` lives here and in `app` only. Exit codes: 0 after a clean shutdown on SIGTERM/SIGINT,
//! 1 for a config that does not load (with file:line:reason) or a failed check.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use mimalloc::MiMalloc;
use tokio_util::sync::CancellationToken;

// mimalloc v2 (not the crate's default v3, which has a thread-init crash; see crates.md): it
// keeps freed memory per thread and fragments less than glibc malloc under pod churn. Built
// without transparent huge pages (`no_thp`): with them, a 2 MiB page is resident as soon as one
// byte of it is, ~25 MiB of trawl's RSS at 1M series (perf/README.md).
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// mimalloc's `mi_option_purge_delay` (v2's `mimalloc.h`, `mi_option_e`: the 16th option).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
const _: () = assert!(MI_OPTION_PURGE_DELAY == libmimalloc_sys::mi_option_eager_commit_delay + 1);

/// Makes mimalloc give memory back to the OS as soon as it is freed, not 10 ms later.
///
/// mimalloc purges delayed frees only when the thread that freed them allocates again, so
/// memory a scrape of a large (or hostile) page freed stayed resident while its worker went on
/// to small pages or idled: with the default, a target sending a 10 MB-limited gzip bomb every
/// 2 s took trawl from 23 to 86 MiB and kept it there; immediate purging held it at 32 MiB
/// (peak 48); at 1M series the steady RSS went from 115 to 97 MiB. `--memory.limit` reads RSS, so
/// freed memory that stays resident would also refuse scrapes for nothing. The cost is a
/// `madvise` per freed page run, not seen in the side-by-side's CPU (perf/README.md).
#[allow(unsafe_code)]
fn return_freed_memory_at_once() {
    // SAFETY: `mi_option_set` stores a value in mimalloc's option table (a plain array of
    // longs), valid at any time and from any thread (mimalloc.h); the option index is checked
    // against the crate's own constants above. It takes no pointers.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

#[derive(Parser, Debug)]
#[command(
    name = "trawl",
    version,
    about = "A Prometheus-compatible metrics scraper: one small pod per node."
)]
struct Cli {
    /// Configuration file path (Prometheus format).
    #[arg(long = "config.file", default_value = "trawl.yml")]
    config_file: PathBuf,
    /// Address to listen on for /metrics, /targets, /service-discovery, /api/v1/targets,
    /// /-/healthy, /-/ready and /-/reload.
    #[arg(long = "web.listen-address", default_value = "0.0.0.0:9464")]
    listen_address: String,
    /// Enable reloading the config over HTTP (POST /-/reload), as Prometheus' flag does.
    /// SIGHUP reloads either way.
    #[arg(long = "web.enable-lifecycle")]
    enable_lifecycle: bool,
    /// Memory ceiling: a scrape whose page or samples would take trawl's memory over it is
    /// refused (up 0, with the reason). A size (256MiB), `auto` (90 % of the container's cgroup
    /// limit, if any) or `none`.
    #[arg(long = "memory.limit", default_value = "auto")]
    memory_limit: String,
    /// Directory for state that must survive a restart: the remote-write disk buffers (batches
    /// the receiver did not take in time, replayed in order) and each target's last series (for
    /// stale markers after a restart). Unset: memory only, as Prometheus' agent without a WAL.
    #[arg(long = "storage.path")]
    storage_path: Option<PathBuf>,
    /// Only log messages with the given severity or above [default: the config's
    /// `service.telemetry.logs.level` in the collector dialect, else info].
    #[arg(long = "log.level", value_enum)]
    log_level: Option<LogLevel>,
    /// Output format of log messages.
    #[arg(long = "log.format", value_enum, default_value = "logfmt")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check files, like promtool.
    Check {
        #[command(subcommand)]
        what: Check,
    },
}

#[derive(Subcommand, Debug)]
enum Check {
    /// Check that a config file loads: exit 0, or 1 with file:line: reason.
    Config {
        /// Config files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Check an exposition page read from stdin: exit 0, or 1 with the offending line.
    Metrics {
        /// The format of the page.
        #[arg(long, value_enum, default_value = "text")]
        format: MetricsFormat,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Logfmt,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum MetricsFormat {
    Text,
    Openmetrics,
}

fn main() -> ExitCode {
    return_freed_memory_at_once();
    let cli = Cli::parse();
    let level = cli.log_level.unwrap_or_else(|| {
        // A collector config may set the level itself. This read happens before logging starts,
        // so it is silent; the real load in `app::run` reports any problem.
        let from_config = match &cli.command {
            None => trawl::config::load(&cli.config_file).ok().and_then(|c| c.log_level),
            Some(_) => None,
        };
        from_config.and_then(|l| LogLevel::from_str(&l, true).ok()).unwrap_or(LogLevel::Info)
    });
    init_logging(level, cli.log_format);
    match cli.command {
        Some(Command::Check { what: Check::Config { files } }) => check_config(&files),
        Some(Command::Check { what: Check::Metrics { format } }) => check_metrics(format),
        None => run(cli),
    }
}

fn check_config(files: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for f in files {
        println!("Checking {}", f.display());
        match trawl::config::load_with_dialect(f) {
            Ok((cfg, dialect)) => println!(
                "  SUCCESS: {} scrape configs, {} remote_write endpoints (dialect: {dialect})",
                cfg.scrape_configs.len(),
                cfg.remote_write.len()
            ),
            Err(e) => {
                println!("  FAILED: {e}");
                eprintln!("{e}");
                ok = false;
            }
        }
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn check_metrics(format: MetricsFormat) -> ExitCode {
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("error reading stdin: {e}");
        return ExitCode::FAILURE;
    }
    let format = match format {
        MetricsFormat::Text => trawl::parse::Format::PrometheusText,
        MetricsFormat::Openmetrics => trawl::parse::Format::OpenMetrics,
    };
    match trawl::parse::check(&input, format) {
        Ok(stats) => {
            println!("{} samples in {} families", stats.samples, stats.families);
            ExitCode::SUCCESS
        }
        Err(e) => {
            let line = input.split(|b| *b == b'\n').nth(e.line.saturating_sub(1)).unwrap_or(&[]);
            eprintln!("error: {e}\n  {}", String::from_utf8_lossy(line));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "Cannot start the runtime.");
            return ExitCode::FAILURE;
        }
    };
    let memory_limit = match trawl::budget::parse_limit(&cli.memory_limit) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("trawl: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = trawl::app::Options {
        config_file: cli.config_file,
        listen_address: cli.listen_address,
        enable_lifecycle: cli.enable_lifecycle,
        memory_limit,
        storage_path: cli.storage_path,
    };
    let result = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            s.cancel();
        });
        trawl::app::run(opts, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "Exiting.");
            eprintln!("trawl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        // Without signal handlers the only way out is a kill; wait forever.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "Received a signal."),
        _ = int.recv() => tracing::info!(signal = "SIGINT", "Received a signal."),
    }
}

fn init_logging(level: LogLevel, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let level = match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    };
    // Our own level for trawl; libraries (hyper, rustls) stay at warn so debug stays readable.
    let filter = EnvFilter::new(format!("warn,trawl={level}"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Logfmt => builder.event_format(logfmt::Logfmt).init(),
    }
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
            line.push_str(&trawl::admin::rfc3339(Some(std::time::SystemTime::now())));
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
