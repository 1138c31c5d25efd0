//! The `trawl` binary: flags in Prometheus' style → logging → Tokio runtime → [`trawl::app::run`].
//!
//! `anyhow` lives here and in `app` only. Exit codes: 0 after a clean shutdown on SIGTERM/SIGINT,
//! 1 for a config that does not load (with file:line:reason) or a failed check.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand, ValueEnum};
use mimalloc::MiMalloc;
use tokio_util::sync::CancellationToken;

// mimalloc v2 (not the crate's default v3: its bundled v3.3.2 crashes with SIGSEGV during
// thread heap init, mimalloc_rust issue #168, fix still open): it keeps freed memory per thread
// and fragments less than glibc malloc under pod churn. Built
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
    /// Address to listen on for /metrics, /targets, /service-discovery (with the relabeling
    /// debugger), /api/v1/targets, /api/v1/targets/metadata, /api/v1/targets/relabel_steps,
    /// /api/v1/status/{config,flags,buildinfo}, /-/healthy, /-/ready and /-/reload.
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
    /// `service.telemetry.logs.level` in the collector dialect, else info; re-read at every
    /// reload].
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
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let flags = flag_values(&matches);
    // A collector config may set the level itself. This read happens before logging starts,
    // so it is silent; the real load in `app::run` reports any problem (and re-applies the
    // level, as every reload does).
    let from_config = match (&cli.command, cli.log_level) {
        (None, None) => trawl::config::load(&cli.config_file).ok().and_then(|c| c.log_level),
        _ => None,
    };
    let format = match cli.log_format {
        LogFormat::Logfmt => trawl::logging::Format::Logfmt,
        LogFormat::Json => trawl::logging::Format::Json,
    };
    let level = trawl::logging::init(cli.log_level.map(LogLevel::as_str), from_config.as_deref(), format);
    match cli.command {
        Some(Command::Check { what: Check::Config { files } }) => check_config(&files),
        Some(Command::Check { what: Check::Metrics { format } }) => check_metrics(format),
        None => run(cli, flags, level),
    }
}

/// Every top-level flag with its value as given or defaulted (`""` when unset), for
/// `/api/v1/status/flags`, as Prometheus lists its flags.
fn flag_values(matches: &clap::ArgMatches) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for arg in Cli::command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        let value = match matches.try_get_raw(arg.get_id().as_str()) {
            Ok(Some(values)) => {
                values.map(|v| v.to_string_lossy().into_owned()).collect::<Vec<_>>().join(",")
            }
            _ => String::new(),
        };
        out.push((long.to_owned(), value));
    }
    out.sort();
    out
}

impl LogLevel {
    fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
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
                // Once, on stderr, as promtool prints it.
                eprintln!("  FAILED: {e}");
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

fn run(cli: Cli, flags: Vec<(String, String)>, log_level: trawl::logging::Level) -> ExitCode {
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
        flags,
        log_level: Some(log_level),
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
            // Said once: the log line is the error (stderr, in the chosen log format).
            tracing::error!(error = format!("{e:#}"), "Cannot run; exiting.");
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
