//! `switchyard`: one binary, one subcommand per role.
#![forbid(unsafe_code)]

mod cli;
mod run;

use clap::Parser;

/// mimalloc instead of the system allocator: the proxy allocates small, short-lived
/// objects per request on several threads, where it measurably beats glibc's malloc
/// (see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    init_logging();
    match run::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("switchyard: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Logs go to stderr; `SWITCHYARD_LOG` (or `RUST_LOG`) sets the filter, default `info`.
fn init_logging() {
    use std::io::IsTerminal;
    let filter = std::env::var("SWITCHYARD_LOG").or_else(|_| std::env::var("RUST_LOG")).unwrap_or_else(|_| "info".to_owned());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
