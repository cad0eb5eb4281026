//! WAL checkpoints on their own thread and connection.
//!
//! SQLite's automatic checkpoint runs inside the committing connection, so
//! the writer would pay for copying WAL pages into the database at every
//! 1000th page. Here the writer runs with `wal_autocheckpoint=0` and this
//! thread checkpoints in PASSIVE mode (never blocking the writer or
//! readers) whenever the WAL has grown, keeping commits short.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

/// Look at the WAL this often.
const INTERVAL: Duration = Duration::from_millis(100);
/// Checkpoint once the WAL holds this many pages (4 KiB each).
const PAGES_BEFORE_CHECKPOINT: i64 = 1000;

pub(super) fn spawn(conn: Connection, closing: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("herald-sqlite-checkpoint".into()).spawn(move || {
        while !closing.load(Ordering::SeqCst) {
            std::thread::sleep(INTERVAL);
            if let Err(error) = checkpoint_if_grown(&conn) {
                tracing::warn!(%error, "WAL checkpoint failed; will retry");
            }
        }
    })
}

fn checkpoint_if_grown(conn: &Connection) -> rusqlite::Result<()> {
    // Returns (busy, frames in WAL, frames checkpointed); a PASSIVE call with
    // nothing to do is cheap.
    let (_, wal_frames, done): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
    if wal_frames > PAGES_BEFORE_CHECKPOINT && done < wal_frames {
        tracing::debug!(wal_frames, done, "WAL checkpoint could not finish (readers active); next round continues");
    }
    Ok(())
}

pub(super) fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}
