//! The process's shutdown trigger: SIGTERM or SIGINT (Ctrl-C).

use std::future::Future;

/// Installs the SIGTERM and SIGINT handlers at once and returns a future that resolves on
/// the first of them.
///
/// The handlers are registered when this is *called*, not when the future is first
/// polled: callers call it before announcing that herald is listening, so a supervisor
/// (or a test) that sends SIGTERM right after seeing "listening" gets a graceful shutdown
/// rather than the default action, which kills the process.
pub fn signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate())
            .inspect_err(|e| tracing::error!(error = %e, "cannot listen for SIGTERM"));
        let int = signal(SignalKind::interrupt())
            .inspect_err(|e| tracing::error!(error = %e, "cannot listen for SIGINT"));
        async move {
            let term = async {
                match term {
                    Ok(mut s) => s.recv().await,
                    Err(_) => std::future::pending().await,
                }
            };
            let int = async {
                match int {
                    Ok(mut s) => s.recv().await,
                    Err(_) => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = int => tracing::info!("SIGINT received"),
                _ = term => tracing::info!("SIGTERM received"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("SIGINT received");
        } else {
            tracing::error!("cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    }
}
