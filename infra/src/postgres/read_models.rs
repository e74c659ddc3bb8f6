use std::error::Error;

use bytes::BytesMut;
use deadpool_postgres::{Pool, Transaction};
use futures_util::future::try_join_all;
use std::collections::{BTreeMap, BTreeSet, HashSet};

use std::sync::Arc;

use plaza_projections::db::{LockGuard, TRACK_PARTITION, UPSERT_PARTITION};
use plaza_projections::dead_letters::{Changes, PARKED_STREAMS, plan};
use plaza_projections::generations::{BOOKKEEPING_DDL, GUARD, Step, TAKES_CHANGES, Tables};
use plaza_projections::partitions::{Consumed, PartitionState, Tally, admit};
use plaza_projections::{ReadModelDb, ReadModelError, Row, SqlValue, Statement};
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

/// Read models in PostgreSQL. A batch's statements are pipelined on one connection
/// inside one transaction together with the checkpoint update.
pub struct PgReadModels {
    pool: Pool,
    /// Set once the bookkeeping tables are known to exist.
    bookkeeping: tokio::sync::OnceCell<()>,
}

/// Serialises concurrent migrations of several processes.
const MIGRATION_LOCK: i64 = 0x0070_6c61_7a62;

fn db_error(error: impl std::error::Error) -> ReadModelError {
    ReadModelError::Database(super::describe(&error))
}

impl PgReadModels {
    /// Builds the pool; connections open lazily, so this does not fail when the server
    /// is down (readiness checks report it).
    pub fn connect(url: &str) -> Result<Self, ReadModelError> {
        let config = super::parse_url(url).map_err(ReadModelError::Database)?;
        Ok(Self { pool: super::pool(&config, 16).map_err(ReadModelError::Database)?, bookkeeping: tokio::sync::OnceCell::new() })
    }

    /// A pooled connection, the bookkeeping tables created first (once per process).
    async fn client(&self) -> Result<deadpool_postgres::Object, ReadModelError> {
        let client = self.pool.get().await.map_err(db_error)?;
        self.bookkeeping
            .get_or_try_init(|| async {
                client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await.map_err(db_error)?;
                let created = client.batch_execute(&BOOKKEEPING_DDL.join(";\n")).await.map_err(db_error);
                client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await.map_err(db_error)?;
                created
            })
            .await?;
        Ok(client)
    }
}

/// Binds a [`SqlValue`] to whatever integer or text type the statement expects.
#[derive(Debug)]
struct PgValue<'a>(&'a SqlValue);

impl ToSql for PgValue<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self.0 {
            SqlValue::Null => Ok(IsNull::Yes),
            SqlValue::Int(v) if *ty == Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
            SqlValue::Int(v) if *ty == Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
            SqlValue::Int(v) => v.to_sql(ty, out),
            SqlValue::Text(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn bind(params: &[SqlValue]) -> Vec<PgValue<'_>> {
    params.iter().map(PgValue).collect()
}

fn refs<'a>(values: &'a [PgValue<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

fn from_pg(row: &tokio_postgres::Row, index: usize) -> Result<SqlValue, ReadModelError> {
    let ty = row.columns()[index].type_();
    let value = match *ty {
        Type::INT8 => row.try_get::<_, Option<i64>>(index).map(|v| v.map(SqlValue::Int)),
        Type::INT4 => row.try_get::<_, Option<i32>>(index).map(|v| v.map(|v| SqlValue::Int(v.into()))),
        Type::INT2 => row.try_get::<_, Option<i16>>(index).map(|v| v.map(|v| SqlValue::Int(v.into()))),
        Type::BOOL => row.try_get::<_, Option<bool>>(index).map(|v| v.map(|v| SqlValue::Int(v.into()))),
        _ => row.try_get::<_, Option<String>>(index).map(|v| v.map(SqlValue::Text)),
    };
    Ok(value.map_err(db_error)?.unwrap_or(SqlValue::Null))
}

fn stopped(tables: &Tables) -> ReadModelError {
    ReadModelError::Stopped(tables.projection(), tables.generation())
}

/// Why a generation refuses a batch after checkpoint `after`, if it does ([`GUARD`]);
/// the first statement of every applying transaction, so it holds the generation's row
/// until the transaction ends.
async fn guard(tx: &Transaction<'_>, tables: &Tables, after: u64, position: u64) -> Result<Option<ReadModelError>, ReadModelError> {
    let (projection, generation) = (tables.projection(), tables.generation() as i64);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let statement = tx.prepare_cached(GUARD).await.map_err(db_error)?;
    let changed = tx.execute(&statement, &[&projection, &generation, &(position as i64), &now, &(after as i64)]).await.map_err(db_error)?;
    if changed > 0 {
        return Ok(None);
    }
    let takes_changes = tx.query_opt(TAKES_CHANGES, &[&projection, &generation]).await.map_err(db_error)?.is_some();
    Ok(Some(match takes_changes {
        true => ReadModelError::Uncommitted(tables.projection(), tables.generation()),
        false => stopped(tables),
    }))
}

/// A projector's transactions commit without waiting for their WAL to reach the disk
/// (as SQLite's read models commit with `synchronous=NORMAL`): PostgreSQL syncs it
/// within `wal_writer_delay`, and a crash can lose the last commits it acknowledged.
/// The guard then finds the stored checkpoint behind the projector's and refuses its
/// next batch, and the projector goes on from the stored checkpoint, so nothing is
/// skipped. Commits whose loss nothing would catch stay durable: the event store's,
/// and those of [`ReadModelDb::apply_consumed`] (Kafka's consumer would not fetch a
/// lost batch again) and [`ReadModelDb::transact`].
const ASYNCHRONOUS_COMMIT: &str = "SET LOCAL synchronous_commit = off";

/// The statements applying `changes`, after the guard: events of streams with a dead
/// letter are parked behind it.
async fn planned(tx: &Transaction<'_>, tables: &Tables, changes: Vec<Changes>) -> Result<Vec<Statement>, ReadModelError> {
    let statement = tx.prepare_cached(PARKED_STREAMS).await.map_err(db_error)?;
    let rows = tx.query(&statement, &[&tables.projection(), &(tables.generation() as i64)]).await.map_err(db_error)?;
    let mut parked: HashSet<String> = rows.iter().map(|row| row.get(0)).collect();
    Ok(plan(tables, changes, &mut parked))
}

#[async_trait::async_trait]
impl ReadModelDb for PgReadModels {
    async fn transact(&self, steps: Vec<Step>) -> Result<bool, ReadModelError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        // Concurrent DDL of several processes can collide in PostgreSQL's catalogs.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(db_error)?;
        for step in steps {
            let values = bind(&step.statement.params);
            let changed = tx.execute(&*step.statement.sql, &refs(&values)).await.map_err(db_error)?;
            if step.required && changed == 0 {
                return Ok(false);
            }
        }
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn apply(&self, tables: Arc<Tables>, changes: Vec<Changes>, after: u64, position: u64) -> Result<(), ReadModelError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let (_, refused) =
            tokio::try_join!(async { tx.batch_execute(ASYNCHRONOUS_COMMIT).await.map_err(db_error) }, guard(&tx, &tables, after, position))?;
        if let Some(refused) = refused {
            return Err(refused);
        }
        let statements = planned(&tx, &tables, changes).await?;
        execute_pipelined(&tx, statements, Some(&tables)).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn query(&self, sql: &'static str, params: Vec<SqlValue>) -> Result<Vec<Row>, ReadModelError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(db_error)?;
        let values = bind(&params);
        let rows = client.query(&statement, &refs(&values)).await.map_err(db_error)?;
        rows.iter().map(|row| (0..row.len()).map(|i| from_pg(row, i)).collect::<Result<_, _>>().map(Row)).collect()
    }

    async fn execute(&self, statement: Statement) -> Result<u64, ReadModelError> {
        let client = self.client().await?;
        let prepared = client.prepare_cached(&statement.sql).await.map_err(db_error)?;
        let values = bind(&statement.params);
        client.execute(&prepared, &refs(&values)).await.map_err(db_error)
    }

    async fn track_partitions(&self, tables: Arc<Tables>, topic: &str, partitions: i32) -> Result<(), ReadModelError> {
        let statements: Vec<Statement> = (0..partitions).map(|p| track(&tables, topic, p)).collect();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        execute_pipelined(&tx, statements, None).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn apply_consumed(&self, tables: Arc<Tables>, topic: &str, batch: Vec<Consumed>) -> Result<Tally, ReadModelError> {
        const LOCK: &str = "SELECT kafka_partition, next_offset, position FROM generation_partitions
             WHERE projection = $1 AND generation = $2 AND topic = $3 AND kafka_partition = ANY($4) ORDER BY kafka_partition FOR UPDATE";
        let (projection, generation) = (tables.projection(), tables.generation() as i64);
        let partitions: BTreeSet<i32> = batch.iter().map(|c| c.partition).collect();
        let tracked: Vec<Statement> = partitions.iter().map(|p| track(&tables, topic, *p)).collect();
        let ids: Vec<i64> = partitions.iter().map(|p| i64::from(*p)).collect();

        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        // One member applies a projection at a time. Members hold different partitions,
        // but a projection reads across streams (the feed's fan-out reads the follows,
        // a follow's backfill reads the videos): two transactions at once would each
        // miss the other's uncommitted rows, and a video would reach no timeline.
        tx.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", &[&format!("plaza.apply.{projection}")]).await.map_err(db_error)?;
        if guard(&tx, &tables, 0, 0).await?.is_some() {
            return Err(stopped(&tables));
        }
        // A partition seen for the first time gets its row before the lock, so the lock
        // always has a row to hold; rows are locked in partition order (no deadlock).
        let lock = tx.prepare_cached(LOCK).await.map_err(db_error)?;
        let lock_params: [&(dyn ToSql + Sync); 4] = [&projection, &generation, &topic, &ids];
        let (_, rows) = tokio::try_join!(execute_pipelined(&tx, tracked, None), async { tx.query(&lock, &lock_params).await.map_err(db_error) })?;
        let mut states = BTreeMap::new();
        for row in &rows {
            let state = PartitionState { next_offset: row.get(1), position: row.get::<_, i64>(2) as u64 };
            states.insert(row.get::<_, i64>(0) as i32, state);
        }

        let admitted = admit(&mut states, batch);
        let statements = planned(&tx, &tables, admitted.changes).await?;
        execute_pipelined(&tx, statements, Some(&tables)).await?;
        let stored: Vec<Statement> = partitions
            .iter()
            .map(|partition| {
                let state = states[partition];
                Statement::new(
                    UPSERT_PARTITION,
                    [
                        projection.into(),
                        SqlValue::Int(generation),
                        topic.into(),
                        SqlValue::Int((*partition).into()),
                        SqlValue::Int(state.next_offset),
                        SqlValue::Int(state.position as i64),
                    ],
                )
            })
            .collect();
        execute_pipelined(&tx, stored, None).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(admitted.tally)
    }

    async fn try_lock(&self, name: &str) -> Result<Option<LockGuard>, ReadModelError> {
        // A session lock on a connection of its own, taken out of the pool: it lasts
        // until the guard closes the connection, or until the process dies.
        let client = deadpool_postgres::Object::take(self.client().await?);
        let row =
            client.query_one("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", &[&format!("plaza.lock.{name}")]).await.map_err(db_error)?;
        Ok(if row.get::<_, bool>(0) { Some(Box::new(client)) } else { None })
    }
}

fn track(tables: &Tables, topic: &str, partition: i32) -> Statement {
    Statement::new(
        TRACK_PARTITION,
        [tables.projection().into(), SqlValue::Int(tables.generation() as i64), topic.into(), SqlValue::Int(partition.into())],
    )
}

/// Runs the statements in order on the transaction's connection; futures polled together
/// are pipelined by tokio-postgres, so this costs about one round trip.
/// Statements run on the tables of one generation when `tables` is given.
async fn execute_pipelined(tx: &Transaction<'_>, statements: Vec<Statement>, tables: Option<&Tables>) -> Result<(), ReadModelError> {
    let runnable: Vec<(Arc<str>, Vec<SqlValue>)> = match tables {
        Some(tables) => tables.coalesce(statements, true),
        None => statements.into_iter().map(|s| (Arc::from(&*s.sql), s.params)).collect(),
    };
    let mut prepared = Vec::with_capacity(runnable.len());
    for (sql, _) in &runnable {
        prepared.push(tx.prepare_cached(sql).await.map_err(db_error)?);
    }
    let bound: Vec<Vec<PgValue<'_>>> = runnable.iter().map(|(_, params)| bind(params)).collect();
    try_join_all(prepared.iter().zip(&bound).map(|(statement, values)| {
        let params = refs(values);
        async move { tx.execute(statement, &params).await }
    }))
    .await
    .map_err(db_error)?;
    Ok(())
}
