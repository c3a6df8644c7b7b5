//! The herald binary: parse the config, start logging, bind, serve until SIGTERM/SIGINT.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use herald::server::raise_fd_limit;
use herald::{shutdown, telemetry, Config, Server};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    telemetry::init(config.log_format);
    tracing::info!(?config, "starting herald {}", env!("CARGO_PKG_VERSION"));
    raise_fd_limit(&config);
    let server = match Server::bind(config.clone()) {
        Ok(server) => server,
        Err(e) => {
            tracing::error!(listen = %config.listen, error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    match &server.state().verifier {
        Some(v) => tracing::info!(algorithm = ?v.algorithm(), "authentication on: every WebSocket and API call needs a bearer token"),
        None => tracing::warn!("authentication OFF: no JWT key configured (--jwt-secret, --jwt-secret-file, --jwt-public-key-file); anyone who can reach herald may connect and call the API"),
    }
    // Handlers first, then the "listening" line: a SIGTERM sent as soon as that line
    // appears must shut down gracefully.
    let signal = shutdown::signal();
    match server.local_addr() {
        Ok(addr) => tracing::info!(%addr, "listening"),
        Err(e) => tracing::warn!(error = %e, "listening on an unknown address"),
    }
    server.run(signal).await;
    ExitCode::SUCCESS
}
