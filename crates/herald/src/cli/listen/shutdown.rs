//! Graceful stop on Ctrl-C (SIGINT) or SIGTERM.
//!
//! The handlers are registered when [`signals`] is called, before the
//! listening address is printed, so a signal sent as soon as the address
//! appears stops the receiver cleanly instead of killing it.

use std::future::Future;

/// Registers the handlers now; the returned future completes on the first signal.
///
/// # Errors
/// If the operating system refuses the signal handlers.
pub fn signals() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            // An error here means no Ctrl-C handler: then run until killed.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}
