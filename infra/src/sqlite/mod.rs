//! SQLite adapters for the embedded profile: the event store and the read models,
//! each in its own file under the data directory. One process serves from them; operator
//! commands (`plaza projections ...`) may open them beside it.

mod event_store;
mod read_models;

pub use event_store::SqliteEventStore;
pub use read_models::SqliteReadModels;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, TryLockError};

use rusqlite::{Connection, OpenFlags};

/// Opens a connection in WAL mode. `synchronous` is FULL for the event store (an
/// acknowledged append survives power loss) and NORMAL for rebuildable read models;
/// `page_size` is the page size of a file this call creates (SQLite's default if None).
fn open_connection(path: &Path, synchronous: &str, page_size: Option<u32>) -> rusqlite::Result<Connection> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    }
    crate::files::private_file(path).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    let conn =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Every statement of every projection stays prepared (rusqlite keeps 16 by default,
    // fewer than one projection uses, so a batch would prepare them over and over).
    conn.set_prepared_statement_cache_capacity(512);
    // Plans never depend on bound values: otherwise a statement whose plan SQLite
    // derived from a parameter (any `LIMIT ?`) is compiled again at every execution,
    // which was 14 % of the CPU of a GraphQL list query.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    if let Some(size) = page_size {
        // Takes effect when this connection creates the file (a database in WAL mode
        // keeps the page size it was made with).
        conn.pragma_update(None, "page_size", size)?;
    }
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// A few read connections (WAL lets readers run beside the writer), taken in turn.
struct ReaderPool {
    connections: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl ReaderPool {
    fn open(path: &Path, size: usize) -> rusqlite::Result<Self> {
        let connections = (0..size).map(|_| open_connection(path, "NORMAL", None).map(Mutex::new)).collect::<Result<_, _>>()?;
        Ok(Self { connections, next: AtomicUsize::new(0) })
    }

    /// Runs `f` on a free connection, the next in turn if none is free.
    fn with<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let count = self.connections.len();
        for i in 0..count {
            match self.connections[(start + i) % count].try_lock() {
                Ok(conn) => return f(&conn),
                Err(TryLockError::Poisoned(poisoned)) => return f(&poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        f(&self.connections[start % count].lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}
