//! WAL checkpoints on their own thread and connection.
//!
//! SQLite's automatic checkpoint runs inside the committing connection, so
//! the writer would pay for copying WAL pages into the database at every
//! 1000th page. Here the writer runs with `wal_autocheckpoint=0` and this
//! thread checkpoints in PASSIVE mode (never blocking the writer or
//! readers), keeping commits short.
//!
//! Bounded WAL: under continuous writes a PASSIVE checkpoint never lets the
//! log start over, so the WAL file would grow without limit. Once it holds
//! more than `MAX_WAL_PAGES`, a TRUNCATE checkpoint waits for a quiet
//! moment (pausing the writer for the few milliseconds it takes to copy the
//! remaining pages) and resets the file to zero bytes.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

/// Look at the WAL this often.
const INTERVAL: Duration = Duration::from_millis(100);
/// Reset the WAL once it holds this many pages (4 KiB each): 64 MiB.
const MAX_WAL_PAGES: i64 = 16 * 1024;

pub(super) fn spawn(conn: Connection, closing: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("herald-sqlite-checkpoint".into())
        .spawn(move || {
            while !closing.load(Ordering::SeqCst) {
                std::thread::sleep(INTERVAL);
                if let Err(error) = checkpoint_if_grown(&conn) {
                    tracing::warn!(%error, "WAL checkpoint failed; will retry");
                }
            }
        })
}

fn checkpoint_if_grown(conn: &Connection) -> rusqlite::Result<()> {
    // Each returns (busy, frames in the WAL, frames checkpointed); a
    // PASSIVE call with nothing to do is cheap.
    let checkpoint = |mode: &str| -> rusqlite::Result<(i64, i64, i64)> {
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
    };
    let (_, wal_frames, _) = checkpoint("PASSIVE")?;
    if wal_frames > MAX_WAL_PAGES {
        let (busy, frames, done) = checkpoint("TRUNCATE")?;
        tracing::debug!(wal_frames, busy, frames, done, "reset the WAL");
    }
    Ok(())
}

pub(super) fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}
