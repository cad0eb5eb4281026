//! `LISTEN herald_work` on a dedicated connection: a publish (or a failover)
//! on any node wakes this node's dispatcher at once. The dispatcher's idle
//! poll is the backstop for a notification lost while reconnecting.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

/// The channel every publish notifies.
pub(super) const CHANNEL: &str = "herald_work";

/// Listens until `stop`, reconnecting with backoff when the connection drops.
pub(super) async fn run(config: tokio_postgres::Config, work: Arc<Notify>, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(200);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            ended = listen_once(&config, &work) => {
                if let Err(error) = ended {
                    tracing::debug!(%error, "the LISTEN connection ended; reconnecting");
                } else {
                    backoff = Duration::from_millis(200);
                }
            }
        }
        // Something may have been published while we were not listening.
        work.notify_one();
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One connection's life: returns when it closes.
async fn listen_once(config: &tokio_postgres::Config, work: &Notify) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let sql = format!("LISTEN {CHANNEL}");
    {
        let listen = client.batch_execute(&sql);
        tokio::pin!(listen);
        // The connection must be driven while LISTEN runs.
        loop {
            tokio::select! {
                done = &mut listen => { done?; break; }
                message = messages.next() => match message {
                    Some(Ok(AsyncMessage::Notification(_))) => work.notify_one(),
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Err(error),
                    None => return Ok(()),
                },
            }
        }
    }
    work.notify_one();
    while let Some(message) = messages.next().await {
        if let AsyncMessage::Notification(_) = message? {
            work.notify_one();
        }
    }
    // The client lives until here: dropping it would close the connection.
    drop(client);
    Ok(())
}
