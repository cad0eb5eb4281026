//! `LISTEN` on dedicated connections: `herald_work` (a publish or a
//! failover on any node wakes this node's dispatcher at once) and
//! `herald_operations` (an operation changed on some node: wake its `:wait`
//! long-polls here). Each channel has its own connection, reconnecting
//! with backoff; after a (re)connect the handler is told that
//! notifications may have been missed. The dispatcher's idle poll and the
//! waiters' timeouts are the backstops.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

/// The channel every publish notifies.
pub(super) const CHANNEL: &str = "herald_work";

/// What a notification does: `Some(payload)` for one notification, `None`
/// when some may have been missed (connected or reconnected).
pub(super) type Handler = Arc<dyn Fn(Option<&str>) + Send + Sync>;

/// Wakes `work` on every `herald_work` notification until `stop`.
pub(super) async fn run(config: tokio_postgres::Config, work: Arc<Notify>, stop: CancellationToken) {
    let handler: Handler = Arc::new(move |_| work.notify_one());
    run_channel(config, CHANNEL, handler, stop).await;
}

/// Listens on `channel` until `stop`, reconnecting with backoff when the
/// connection drops.
pub(super) async fn run_channel(
    config: tokio_postgres::Config,
    channel: &'static str,
    handler: Handler,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            ended = listen_once(&config, channel, &handler) => {
                if let Err(error) = ended {
                    tracing::debug!(%error, channel, "the LISTEN connection ended; reconnecting");
                } else {
                    backoff = Duration::from_millis(200);
                }
            }
        }
        // Something may have happened while we were not listening.
        handler(None);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One connection's life: returns when it closes.
async fn listen_once(
    config: &tokio_postgres::Config,
    channel: &str,
    handler: &Handler,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let sql = format!("LISTEN {channel}");
    {
        let listen = client.batch_execute(&sql);
        tokio::pin!(listen);
        // The connection must be driven while LISTEN runs.
        loop {
            tokio::select! {
                done = &mut listen => { done?; break; }
                message = messages.next() => match message {
                    Some(Ok(AsyncMessage::Notification(note))) => handler(Some(note.payload())),
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Err(error),
                    None => return Ok(()),
                },
            }
        }
    }
    handler(None);
    while let Some(message) = messages.next().await {
        if let AsyncMessage::Notification(note) = message? {
            handler(Some(note.payload()));
        }
    }
    // The client lives until here: dropping it would close the connection.
    drop(client);
    Ok(())
}
