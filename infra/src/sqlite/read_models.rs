use std::borrow::Cow;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use plaza_projections::db::{LockGuard, TRACK_PARTITION, UPSERT_PARTITION};
use plaza_projections::dead_letters::{Changes, PARKED_STREAMS, plan};
use plaza_projections::generations::{BOOKKEEPING_DDL, GUARD, Step, TAKES_CHANGES, Tables};
use plaza_projections::partitions::{Consumed, PartitionState, Tally, admit};
use plaza_projections::{ReadModelDb, ReadModelError, Row, SqlValue, Statement};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, TransactionBehavior, params};

use super::{ReaderPool, open_connection};

/// Read models in one SQLite file: one writer connection for projectors, a few
/// readers for queries.
pub struct SqliteReadModels {
    path: std::path::PathBuf,
    writer: Arc<Mutex<Writer>>,
    readers: Arc<ReaderPool>,
}

/// The writer connection and the transaction it may hold open for rebuilds: batches of
/// generations being built, uncommitted for as long as [`Tables::hold_commits`] allows.
/// Another process's writer waits that long for SQLite's write lock (within its busy
/// timeout, 5 s); this process's own writes commit the held batches first and do not
/// wait.
struct Writer {
    conn: Connection,
    /// When the open transaction began, and the generations whose batches it holds.
    held: Option<(Instant, BTreeSet<(&'static str, u64)>)>,
    /// Generations whose held batches were rolled back, until their rebuild hears of it.
    lost: BTreeSet<(&'static str, u64)>,
    /// The log's size, in pages, at which a commit checkpoints it (`wal_autocheckpoint`).
    checkpoint_pages: u32,
}

/// Live projections checkpoint the log every 1,000 pages (8 MB). A checkpoint ends
/// with an fsync of the database file, and on one disk that fsync makes the event
/// store's own fsyncs, the ones each acknowledged command waits for, wait for it
/// too: with checkpoints of 10,000 pages, embedded writes stalled for 20 to 250 ms
/// every few seconds (a scheduler trace showed appends blocked in `fsync` while the
/// projector's thread checkpointed; docs/benchmarks.md, issue 13's seventh round).
/// A rebuild's held batches keep the 10,000 pages their figures were measured with:
/// a larger log writes a page its batches change again and again to the database
/// fewer times, and nobody waits for a rebuild's fsyncs.
const LIVE_CHECKPOINT_PAGES: u32 = 1_000;
const REBUILD_CHECKPOINT_PAGES: u32 = 10_000;

impl Writer {
    /// Sets the size of the log at which a commit checkpoints it, if it differs.
    fn checkpoint_every(&mut self, pages: u32) -> rusqlite::Result<()> {
        if self.checkpoint_pages != pages {
            self.conn.execute_batch(&format!("PRAGMA wal_autocheckpoint = {pages}"))?;
            self.checkpoint_pages = pages;
        }
        Ok(())
    }

    /// Commits the held batches, if any. If that fails, or SQLite already rolled them back
    /// (it does after some errors), their generations are remembered as lost.
    fn commit_held(&mut self) -> rusqlite::Result<()> {
        let mut committed = Ok(());
        if self.held.is_some() && !self.conn.is_autocommit() {
            committed = self.conn.execute_batch("COMMIT");
            if committed.is_ok() {
                self.held = None;
            }
        }
        // Still held: the commit failed, or SQLite had rolled the transaction back.
        self.drop_held();
        committed
    }

    /// Rolls back whatever is still held; its generations are lost.
    fn drop_held(&mut self) {
        if let Some((_, generations)) = self.held.take() {
            if !self.conn.is_autocommit() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            self.lost.extend(generations);
        }
    }

    /// [`ReadModelError::Uncommitted`], once, if the generation lost held batches.
    fn check_lost(&mut self, (projection, generation): (&'static str, u64)) -> Result<(), ReadModelError> {
        match self.lost.remove(&(projection, generation)) {
            true => Err(ReadModelError::Uncommitted(projection, generation)),
            false => Ok(()),
        }
    }

    /// Applies one batch inside the held transaction (opened if needed) and commits it
    /// once that is `at_most` old. Held batches stand or fall together: if one
    /// fails, all are rolled back ([`ReadModelError::Uncommitted`]) and the rebuild
    /// goes back to its checkpoint. (A savepoint per batch would keep the others, but
    /// copies every page a batch changes, which cost as much as the commits saved.)
    /// Returns why the generation refused the batch, if it did.
    fn apply_held(
        &mut self,
        tables: &Tables,
        changes: Vec<Changes>,
        after: u64,
        position: u64,
        at_most: Duration,
    ) -> Result<Option<ReadModelError>, ReadModelError> {
        let generation = (tables.projection(), tables.generation());
        if self.conn.is_autocommit() {
            self.drop_held(); // SQLite rolled it back
        }
        self.check_lost(generation)?;
        if self.held.is_none() {
            self.checkpoint_every(REBUILD_CHECKPOINT_PAGES).map_err(db_error)?;
            self.conn.execute_batch("BEGIN IMMEDIATE").map_err(db_error)?;
            self.held = Some((Instant::now(), BTreeSet::new()));
        }
        let (since, generations) = self.held.as_mut().expect("opened above");
        generations.insert(generation);
        let since = *since;
        let outcome = (|| -> rusqlite::Result<Option<ReadModelError>> {
            if let Some(refused) = guard(&self.conn, tables, after, position)? {
                return Ok(Some(refused));
            }
            execute_all(&self.conn, planned(&self.conn, tables, changes)?, Some(tables))?;
            Ok(None)
        })();
        let outcome = outcome.and_then(|refused| {
            if since.elapsed() >= at_most {
                self.commit_held()?;
            }
            Ok(refused)
        });
        match outcome {
            Ok(refused) => {
                self.check_lost(generation)?;
                Ok(refused)
            }
            Err(error) => {
                tracing::warn!(projection = generation.0, generation = generation.1, %error, "a rebuild's uncommitted batches are rolled back");
                self.drop_held();
                self.lost.remove(&generation);
                Err(ReadModelError::Uncommitted(generation.0, generation.1))
            }
        }
    }
}

impl Drop for Writer {
    /// A rebuild stopped on purpose keeps the batches it applied.
    fn drop(&mut self) {
        let _ = self.commit_held();
    }
}

fn db_error(error: impl std::fmt::Display) -> ReadModelError {
    ReadModelError::Database(error.to_string())
}

impl SqliteReadModels {
    pub fn open(path: &Path) -> Result<Self, ReadModelError> {
        // A projector writes rows all over its tables (likes of any video by any user), a
        // rebuild millions of them. Measured on a rebuild of the content projection, with
        // SQLite's defaults most of the time went to a 2 MB page cache spilling dirty
        // pages and reading them back, statement journals in temporary files, and a
        // checkpoint of the log every 1,000 pages of 4 KiB (see `REBUILD_CHECKPOINT_PAGES`
        // for what rebuilds use now). The cache is an upper bound: a small
        // database uses what it has. Pages of 8 KiB (a new file's; SQLite's default is 4)
        // made that rebuild about 14 % faster: B-trees of two keys of 36-character ids are
        // shallower with them.
        let writer = open_connection(path, "NORMAL", Some(8192)).map_err(db_error)?;
        writer.execute_batch("PRAGMA cache_size = -262144; PRAGMA temp_store = MEMORY;").map_err(db_error)?;
        for statement in BOOKKEEPING_DDL {
            writer.execute_batch(statement).map_err(db_error)?;
        }
        let readers = ReaderPool::open(path, 4).map_err(db_error)?;
        let mut writer = Writer { conn: writer, held: None, lost: BTreeSet::new(), checkpoint_pages: 0 };
        writer.checkpoint_every(LIVE_CHECKPOINT_PAGES).map_err(db_error)?;
        Ok(Self { path: path.to_owned(), writer: Arc::new(Mutex::new(writer)), readers: Arc::new(readers) })
    }

    /// Runs `f` on the writer, on a blocking thread.
    async fn on_writer<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Writer) -> Result<T, ReadModelError> + Send + 'static,
    ) -> Result<T, ReadModelError> {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || f(&mut writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))).await.map_err(db_error)?
    }

    /// Runs `f` on the writer connection once held batches are committed.
    async fn with_writer<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, ReadModelError> {
        self.on_writer(move |writer| {
            writer.commit_held().map_err(db_error)?;
            writer.checkpoint_every(LIVE_CHECKPOINT_PAGES).map_err(db_error)?;
            f(&mut writer.conn).map_err(db_error)
        })
        .await
    }
}

/// SQLite reads `$1` as a named parameter numbered by first appearance; `?1` is
/// numbered as written, which is what the shared SQL means.
fn sqlite_sql(sql: &str) -> Cow<'_, str> {
    if !sql.contains('$') {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn to_sqlite(value: SqlValue) -> Value {
    match value {
        SqlValue::Null => Value::Null,
        SqlValue::Int(v) => Value::Integer(v),
        SqlValue::Text(v) => Value::Text(v),
    }
}

fn from_sqlite(value: ValueRef<'_>) -> SqlValue {
    match value {
        ValueRef::Null => SqlValue::Null,
        ValueRef::Integer(v) => SqlValue::Int(v),
        ValueRef::Real(v) => SqlValue::Int(v as i64),
        ValueRef::Text(v) | ValueRef::Blob(v) => SqlValue::Text(String::from_utf8_lossy(v).into_owned()),
    }
}

/// Why a generation refuses a batch after checkpoint `after`, if it does
/// ([`GUARD`]); the first statement of every applying transaction (BEGIN IMMEDIATE:
/// nobody else writes until it ends).
fn guard(tx: &Connection, tables: &Tables, after: u64, position: u64) -> rusqlite::Result<Option<ReadModelError>> {
    let (projection, generation) = (tables.projection(), tables.generation() as i64);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let changed = tx.prepare_cached(&sqlite_sql(GUARD))?.execute(params![projection, generation, position as i64, now, after as i64])?;
    if changed > 0 {
        return Ok(None);
    }
    let takes_changes = tx.prepare_cached(&sqlite_sql(TAKES_CHANGES))?.exists(params![projection, generation])?;
    Ok(Some(match takes_changes {
        true => ReadModelError::Uncommitted(tables.projection(), tables.generation()),
        false => stopped(tables),
    }))
}

/// The statements applying `changes`, after the guard: events of streams with a dead
/// letter are parked behind it.
fn planned(tx: &Connection, tables: &Tables, changes: Vec<Changes>) -> rusqlite::Result<Vec<Statement>> {
    let mut parked = HashSet::new();
    let mut read = tx.prepare_cached(&sqlite_sql(PARKED_STREAMS))?;
    let mut rows = read.query(params![tables.projection(), tables.generation() as i64])?;
    while let Some(row) = rows.next()? {
        parked.insert(row.get::<_, String>(0)?);
    }
    Ok(plan(tables, changes, &mut parked))
}

fn stopped(tables: &Tables) -> ReadModelError {
    ReadModelError::Stopped(tables.projection(), tables.generation())
}

#[async_trait::async_trait]
impl ReadModelDb for SqliteReadModels {
    async fn transact(&self, steps: Vec<Step>) -> Result<bool, ReadModelError> {
        self.with_writer(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for step in steps {
                let changed = tx
                    .prepare(&sqlite_sql(&step.statement.sql))?
                    .execute(rusqlite::params_from_iter(step.statement.params.into_iter().map(to_sqlite)))?;
                if step.required && changed == 0 {
                    return Ok(false);
                }
            }
            tx.commit().map(|()| true)
        })
        .await
    }

    async fn apply(&self, tables: Arc<Tables>, changes: Vec<Changes>, after: u64, position: u64) -> Result<(), ReadModelError> {
        let refused = match tables.hold_commits() {
            Some(at_most) => self.on_writer(move |writer| writer.apply_held(&tables, changes, after, position, at_most)).await?,
            None => {
                self.with_writer(move |conn| {
                    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    if let Some(refused) = guard(&tx, &tables, after, position)? {
                        return Ok(Some(refused));
                    }
                    let statements = planned(&tx, &tables, changes)?;
                    execute_all(&tx, statements, Some(&tables))?;
                    tx.commit().map(|()| None)
                })
                .await?
            }
        };
        refused.map_or(Ok(()), Err)
    }

    async fn commit_held(&self, tables: &Tables) -> Result<(), ReadModelError> {
        let generation = (tables.projection(), tables.generation());
        self.on_writer(move |writer| {
            let committed = writer.commit_held();
            writer.check_lost(generation)?;
            committed.map_err(db_error)
        })
        .await
    }

    /// Runs on the caller's thread. A query of the read API takes microseconds from the
    /// page cache, and handing it to a blocking thread and back cost more than that:
    /// 13 to 17 % of the CPU of a `user(id)` query went to waking the pool's threads
    /// (perf, issue 13). The few queries that take milliseconds (a feed's ranking, once
    /// per second or per viewer) hold a runtime thread that long, on CPUs they would
    /// have used anyway.
    async fn query(&self, sql: &'static str, params: Vec<SqlValue>) -> Result<Vec<Row>, ReadModelError> {
        self.readers
            .with(|conn| {
                let mut stmt = conn.prepare_cached(&sqlite_sql(sql))?;
                let columns = stmt.column_count();
                let mut rows = stmt.query(rusqlite::params_from_iter(params.into_iter().map(to_sqlite)))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    out.push(Row((0..columns).map(|i| row.get_ref(i).map(from_sqlite)).collect::<rusqlite::Result<_>>()?));
                }
                Ok::<_, rusqlite::Error>(out)
            })
            .map_err(db_error)
    }

    async fn execute(&self, statement: Statement) -> Result<u64, ReadModelError> {
        self.with_writer(move |conn| {
            let mut prepared = conn.prepare_cached(&sqlite_sql(&statement.sql))?;
            prepared.execute(rusqlite::params_from_iter(statement.params.into_iter().map(to_sqlite))).map(|n| n as u64)
        })
        .await
    }

    async fn track_partitions(&self, tables: Arc<Tables>, topic: &str, partitions: i32) -> Result<(), ReadModelError> {
        let statements: Vec<Statement> = (0..partitions)
            .map(|p| {
                Statement::new(
                    TRACK_PARTITION,
                    [tables.projection().into(), SqlValue::Int(tables.generation() as i64), topic.into(), SqlValue::Int(p.into())],
                )
            })
            .collect();
        self.with_writer(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            execute_all(&tx, statements, None)?;
            tx.commit()
        })
        .await
    }

    async fn apply_consumed(&self, tables: Arc<Tables>, topic: &str, batch: Vec<Consumed>) -> Result<Tally, ReadModelError> {
        let topic = topic.to_owned();
        let target = tables.clone();
        let tally = self
            .with_writer(move |conn| {
                // The writer connection is this process's only one and SQLite has one writer at
                // a time (BEGIN IMMEDIATE): the states read here cannot change underneath.
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let (projection, generation) = (tables.projection(), tables.generation() as i64);
                if guard(&tx, &tables, 0, 0)?.is_some() {
                    return Ok(None);
                }
                let partitions: BTreeSet<i32> = batch.iter().map(|c| c.partition).collect();
                let mut states = BTreeMap::new();
                {
                    let mut read = tx.prepare_cached(
                        "SELECT next_offset, position FROM generation_partitions
                         WHERE projection = ?1 AND generation = ?2 AND topic = ?3 AND kafka_partition = ?4",
                    )?;
                    for partition in &partitions {
                        let mut rows = read.query(params![projection, generation, topic, partition])?;
                        if let Some(row) = rows.next()? {
                            states.insert(*partition, PartitionState { next_offset: row.get(0)?, position: row.get::<_, i64>(1)? as u64 });
                        }
                    }
                }
                let admitted = admit(&mut states, batch);
                let statements = planned(&tx, &tables, admitted.changes)?;
                execute_all(&tx, statements, Some(&tables))?;
                for partition in &partitions {
                    let state = states[partition];
                    tx.prepare_cached(&sqlite_sql(UPSERT_PARTITION))?.execute(params![
                        projection,
                        generation,
                        topic,
                        partition,
                        state.next_offset,
                        state.position as i64
                    ])?;
                }
                tx.commit()?;
                Ok(Some(admitted.tally))
            })
            .await?;
        tally.ok_or_else(|| stopped(&target))
    }

    async fn try_lock(&self, name: &str) -> Result<Option<LockGuard>, ReadModelError> {
        // A file beside the database, locked by the kernel: released when the process
        // holding it dies, however it dies.
        let mut path = self.path.clone().into_os_string();
        path.push(format!(".{name}.lock"));
        // Private, as everything in the data directory is.
        let file = std::os::unix::fs::OpenOptionsExt::mode(std::fs::OpenOptions::new().create(true).truncate(false).write(true), 0o600)
            .open(&path)
            .map_err(db_error)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Box::new(file))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(error)) => Err(db_error(error)),
        }
    }
}

/// Runs the statements, on the tables of one generation when `tables` is given.
///
/// A generation's statements are coalesced ([`Tables::coalesce`]) without multi-row
/// statements: a statement costs SQLite no round trip, and a multi-row one would need a
/// statement journal, which cost as much as it saved (measured on a rebuild of the
/// content projection). Their texts are one `Arc` each per text, so each is converted and
/// looked up in the connection's cache once per batch, not once per row.
fn execute_all(tx: &Connection, statements: Vec<Statement>, tables: Option<&Tables>) -> rusqlite::Result<()> {
    let Some(tables) = tables else {
        for statement in statements {
            let mut prepared = tx.prepare_cached(&sqlite_sql(&statement.sql))?;
            prepared.execute(rusqlite::params_from_iter(statement.params.into_iter().map(to_sqlite)))?;
        }
        return Ok(());
    };
    // By the text's address; the Arc is kept, so the address is not reused meanwhile.
    let mut prepared: HashMap<usize, (Arc<str>, rusqlite::CachedStatement<'_>)> = HashMap::new();
    for (sql, params) in tables.coalesce(statements, false) {
        let (_, runnable) = match prepared.entry(Arc::as_ptr(&sql) as *const u8 as usize) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let runnable = tx.prepare_cached(&sqlite_sql(&sql))?;
                entry.insert((sql, runnable))
            }
        };
        runnable.execute(rusqlite::params_from_iter(params.into_iter().map(to_sqlite)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::sqlite_sql;

    #[test]
    fn dollar_placeholders_become_numbered_question_marks() {
        assert_eq!(sqlite_sql("UPDATE t SET a = $2 WHERE b = $1 AND c = '$x'"), "UPDATE t SET a = ?2 WHERE b = ?1 AND c = '$x'");
        assert_eq!(sqlite_sql("SELECT 1"), "SELECT 1");
    }
}
