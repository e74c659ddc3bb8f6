use std::borrow::Cow;
use std::path::Path;
use std::sync::{Arc, Mutex};

use std::collections::{BTreeMap, BTreeSet};

use plaza_projections::db::{BOOKKEEPING_DDL, TRACK_PARTITION, UPSERT_PARTITION};
use plaza_projections::partitions::{Consumed, PartitionState, Tally, admit};
use plaza_projections::{ReadModelDb, ReadModelError, Row, SqlValue, Statement};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, TransactionBehavior, params};

use super::{ReaderPool, open_connection};

/// Read models in one SQLite file: one writer connection for projectors, a few
/// readers for queries.
pub struct SqliteReadModels {
    writer: Arc<Mutex<Connection>>,
    readers: Arc<ReaderPool>,
}

fn db_error(error: impl std::fmt::Display) -> ReadModelError {
    ReadModelError::Database(error.to_string())
}

impl SqliteReadModels {
    pub fn open(path: &Path) -> Result<Self, ReadModelError> {
        let writer = open_connection(path, "NORMAL").map_err(db_error)?;
        for statement in BOOKKEEPING_DDL {
            writer.execute_batch(statement).map_err(db_error)?;
        }
        let readers = ReaderPool::open(path, 4).map_err(db_error)?;
        Ok(Self { writer: Arc::new(Mutex::new(writer)), readers: Arc::new(readers) })
    }

    async fn with_writer<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, ReadModelError> {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(db_error)?
        .map_err(db_error)
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

#[async_trait::async_trait]
impl ReadModelDb for SqliteReadModels {
    async fn migrate(&self, projection: &str, ddl: &[&'static str]) -> Result<(), ReadModelError> {
        let ddl = ddl.to_vec();
        let projection = projection.to_owned();
        self.with_writer(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for statement in ddl {
                tx.execute_batch(statement)?;
            }
            tx.execute("INSERT INTO projection_checkpoints (projection, position) VALUES (?1, 0) ON CONFLICT DO NOTHING", [projection])?;
            tx.commit()
        })
        .await
    }

    async fn checkpoint(&self, projection: &str) -> Result<u64, ReadModelError> {
        let rows = self.query("SELECT position FROM projection_checkpoints WHERE projection = $1", vec![projection.into()]).await?;
        rows.first().map_or(Ok(0), |row| row.int(0).map(|p| p as u64))
    }

    async fn apply(&self, projection: &str, statements: Vec<Statement>, position: u64) -> Result<(), ReadModelError> {
        let projection = projection.to_owned();
        self.with_writer(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            execute_all(&tx, statements)?;
            tx.execute("UPDATE projection_checkpoints SET position = ?2 WHERE projection = ?1", params![projection, position as i64])?;
            tx.commit()
        })
        .await
    }

    async fn query(&self, sql: &'static str, params: Vec<SqlValue>) -> Result<Vec<Row>, ReadModelError> {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            readers.with(|conn| {
                let mut stmt = conn.prepare_cached(&sqlite_sql(sql))?;
                let columns = stmt.column_count();
                let mut rows = stmt.query(rusqlite::params_from_iter(params.into_iter().map(to_sqlite)))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    out.push(Row((0..columns).map(|i| row.get_ref(i).map(from_sqlite)).collect::<rusqlite::Result<_>>()?));
                }
                Ok::<_, rusqlite::Error>(out)
            })
        })
        .await
        .map_err(db_error)?
        .map_err(db_error)
    }

    async fn execute(&self, statement: Statement) -> Result<u64, ReadModelError> {
        self.with_writer(move |conn| {
            let mut prepared = conn.prepare_cached(&sqlite_sql(statement.sql))?;
            prepared.execute(rusqlite::params_from_iter(statement.params.into_iter().map(to_sqlite))).map(|n| n as u64)
        })
        .await
    }

    async fn track_partitions(&self, projection: &str, topic: &str, partitions: i32) -> Result<(), ReadModelError> {
        let statements: Vec<Statement> =
            (0..partitions).map(|p| Statement::new(TRACK_PARTITION, [projection.into(), topic.into(), SqlValue::Int(p.into())])).collect();
        self.with_writer(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            execute_all(&tx, statements)?;
            tx.commit()
        })
        .await
    }

    async fn apply_consumed(&self, projection: &str, topic: &str, batch: Vec<Consumed>) -> Result<Tally, ReadModelError> {
        let (projection, topic) = (projection.to_owned(), topic.to_owned());
        self.with_writer(move |conn| {
            // The writer connection is this process's only one and SQLite has one writer at
            // a time (BEGIN IMMEDIATE): the states read here cannot change underneath.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let partitions: BTreeSet<i32> = batch.iter().map(|c| c.partition).collect();
            let mut states = BTreeMap::new();
            {
                let mut read = tx.prepare_cached(
                    "SELECT next_offset, position FROM projection_partitions WHERE projection = ?1 AND topic = ?2 AND kafka_partition = ?3",
                )?;
                for partition in &partitions {
                    let mut rows = read.query(params![projection, topic, partition])?;
                    if let Some(row) = rows.next()? {
                        states.insert(*partition, PartitionState { next_offset: row.get(0)?, position: row.get::<_, i64>(1)? as u64 });
                    }
                }
            }
            let admitted = admit(&mut states, batch);
            execute_all(&tx, admitted.statements)?;
            for partition in &partitions {
                let state = states[partition];
                tx.prepare_cached(&sqlite_sql(UPSERT_PARTITION))?.execute(params![
                    projection,
                    topic,
                    partition,
                    state.next_offset,
                    state.position as i64
                ])?;
            }
            tx.commit()?;
            Ok(admitted.tally)
        })
        .await
    }
}

fn execute_all(tx: &rusqlite::Transaction<'_>, statements: Vec<Statement>) -> rusqlite::Result<()> {
    for statement in statements {
        let mut prepared = tx.prepare_cached(&sqlite_sql(statement.sql))?;
        prepared.execute(rusqlite::params_from_iter(statement.params.into_iter().map(to_sqlite)))?;
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
