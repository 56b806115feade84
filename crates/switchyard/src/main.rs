//! `switchyard`: one binary, one subcommand per role.
#![forbid(unsafe_code)]

mod cli;
mod run;

use clap::Parser;

/// mimalloc instead of the system allocator: the proxy allocates small, short-lived
/// objects per request on several threads, where it measurably beats glibc's malloc
/// (see docs/benchmarks.md). Built without transparent huge pages (`no_thp`): with them,
/// 10,000 routes cost ~30 MiB more RSS for the same heap. `switchyard_alloc` calls it
/// the way std calls malloc (its plain entry points for the alignments malloc gives).
#[global_allocator]
static GLOBAL: switchyard_alloc::Allocator = switchyard_alloc::Allocator;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    init_logging(cli.log_format);
    match run::run(cli) {
        Ok(code) => code,
        Err(e) => {
            if switchyard_controller::status::json_logs() {
                let line = serde_json::json!({"level": "ERROR", "message": "exiting", "error": format!("{e:#}")});
                eprintln!("{line}");
            } else {
                eprintln!("switchyard: error: {e:#}");
            }
            std::process::ExitCode::from(2)
        }
    }
}

/// Logs go to stderr, as text or JSON (`--log-format`); `SWITCHYARD_LOG` (or `RUST_LOG`)
/// sets the filter, default `info`. (The access log is the proxy's, on stdout.)
fn init_logging(format: cli::LogFormat) {
    use std::io::IsTerminal;
    let filter = std::env::var("SWITCHYARD_LOG").or_else(|_| std::env::var("RUST_LOG")).unwrap_or_else(|_| "info".to_owned());
    let builder = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(filter)).with_writer(std::io::stderr);
    match format {
        cli::LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        cli::LogFormat::Json => {
            // Lines printed outside `tracing` (listeners, condition changes) follow.
            switchyard_controller::status::use_json_logs();
            builder.json().flatten_event(true).with_current_span(false).with_span_list(false).init();
        }
    }
}
