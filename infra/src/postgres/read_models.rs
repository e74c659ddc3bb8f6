use std::error::Error;

use bytes::BytesMut;
use deadpool_postgres::{Pool, Transaction};
use futures_util::future::try_join_all;
use std::collections::{BTreeMap, BTreeSet};

use plaza_projections::db::{BOOKKEEPING_DDL, TRACK_PARTITION, UPSERT_PARTITION};
use plaza_projections::partitions::{Consumed, PartitionState, Tally, admit};
use plaza_projections::{ReadModelDb, ReadModelError, Row, SqlValue, Statement};
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

/// Read models in PostgreSQL. A batch's statements are pipelined on one connection
/// inside one transaction together with the checkpoint update.
pub struct PgReadModels {
    pool: Pool,
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
        Ok(Self { pool: super::pool(&config, 16).map_err(ReadModelError::Database)? })
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

#[async_trait::async_trait]
impl ReadModelDb for PgReadModels {
    async fn migrate(&self, projection: &str, ddl: &[&'static str]) -> Result<(), ReadModelError> {
        let mut client = self.pool.get().await.map_err(db_error)?;
        let tx = client.transaction().await.map_err(db_error)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(db_error)?;
        for statement in BOOKKEEPING_DDL.iter().chain(ddl) {
            tx.batch_execute(statement).await.map_err(db_error)?;
        }
        tx.execute("INSERT INTO projection_checkpoints (projection, position) VALUES ($1, 0) ON CONFLICT DO NOTHING", &[&projection])
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    async fn checkpoint(&self, projection: &str) -> Result<u64, ReadModelError> {
        let rows = self.query("SELECT position FROM projection_checkpoints WHERE projection = $1", vec![projection.into()]).await?;
        rows.first().map_or(Ok(0), |row| row.int(0).map(|p| p as u64))
    }

    async fn apply(&self, projection: &str, mut statements: Vec<Statement>, position: u64) -> Result<(), ReadModelError> {
        statements.push(Statement::new(
            "UPDATE projection_checkpoints SET position = $2 WHERE projection = $1",
            [projection.into(), SqlValue::Int(position as i64)],
        ));
        let mut client = self.pool.get().await.map_err(db_error)?;
        let tx = client.transaction().await.map_err(db_error)?;
        execute_pipelined(&tx, &statements).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn query(&self, sql: &'static str, params: Vec<SqlValue>) -> Result<Vec<Row>, ReadModelError> {
        let client = self.pool.get().await.map_err(db_error)?;
        let statement = client.prepare_cached(sql).await.map_err(db_error)?;
        let values = bind(&params);
        let rows = client.query(&statement, &refs(&values)).await.map_err(db_error)?;
        rows.iter().map(|row| (0..row.len()).map(|i| from_pg(row, i)).collect::<Result<_, _>>().map(Row)).collect()
    }

    async fn execute(&self, statement: Statement) -> Result<u64, ReadModelError> {
        let client = self.pool.get().await.map_err(db_error)?;
        let prepared = client.prepare_cached(statement.sql).await.map_err(db_error)?;
        let values = bind(&statement.params);
        client.execute(&prepared, &refs(&values)).await.map_err(db_error)
    }

    async fn track_partitions(&self, projection: &str, topic: &str, partitions: i32) -> Result<(), ReadModelError> {
        let statements: Vec<Statement> =
            (0..partitions).map(|p| Statement::new(TRACK_PARTITION, [projection.into(), topic.into(), SqlValue::Int(p.into())])).collect();
        let mut client = self.pool.get().await.map_err(db_error)?;
        let tx = client.transaction().await.map_err(db_error)?;
        execute_pipelined(&tx, &statements).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn apply_consumed(&self, projection: &str, topic: &str, batch: Vec<Consumed>) -> Result<Tally, ReadModelError> {
        const LOCK: &str = "SELECT kafka_partition, next_offset, position FROM projection_partitions
             WHERE projection = $1 AND topic = $2 AND kafka_partition = ANY($3) ORDER BY kafka_partition FOR UPDATE";
        let partitions: BTreeSet<i32> = batch.iter().map(|c| c.partition).collect();
        let tracked: Vec<Statement> =
            partitions.iter().map(|p| Statement::new(TRACK_PARTITION, [projection.into(), topic.into(), SqlValue::Int((*p).into())])).collect();
        let ids: Vec<i64> = partitions.iter().map(|p| i64::from(*p)).collect();

        let mut client = self.pool.get().await.map_err(db_error)?;
        let tx = client.transaction().await.map_err(db_error)?;
        // One member applies a projection at a time. Members hold different partitions,
        // but a projection reads across streams (the feed's fan-out reads the follows,
        // a follow's backfill reads the videos): two transactions at once would each
        // miss the other's uncommitted rows, and a video would reach no timeline.
        tx.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", &[&format!("plaza.apply.{projection}")]).await.map_err(db_error)?;
        // A partition seen for the first time gets its row before the lock, so the lock
        // always has a row to hold; rows are locked in partition order (no deadlock).
        let lock = tx.prepare_cached(LOCK).await.map_err(db_error)?;
        let lock_params: [&(dyn ToSql + Sync); 3] = [&projection, &topic, &ids];
        let (_, rows) = tokio::try_join!(execute_pipelined(&tx, &tracked), async { tx.query(&lock, &lock_params).await.map_err(db_error) })?;
        let mut states = BTreeMap::new();
        for row in &rows {
            let state = PartitionState { next_offset: row.get(1), position: row.get::<_, i64>(2) as u64 };
            states.insert(row.get::<_, i64>(0) as i32, state);
        }

        let admitted = admit(&mut states, batch);
        let mut statements = admitted.statements;
        for partition in &partitions {
            let state = states[partition];
            statements.push(Statement::new(
                UPSERT_PARTITION,
                [
                    projection.into(),
                    topic.into(),
                    SqlValue::Int((*partition).into()),
                    SqlValue::Int(state.next_offset),
                    SqlValue::Int(state.position as i64),
                ],
            ));
        }
        execute_pipelined(&tx, &statements).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(admitted.tally)
    }
}

/// Runs the statements in order on the transaction's connection; futures polled together
/// are pipelined by tokio-postgres, so this costs about one round trip.
async fn execute_pipelined(tx: &Transaction<'_>, statements: &[Statement]) -> Result<(), ReadModelError> {
    let mut prepared = Vec::with_capacity(statements.len());
    for statement in statements {
        prepared.push(tx.prepare_cached(statement.sql).await.map_err(db_error)?);
    }
    let bound: Vec<Vec<PgValue<'_>>> = statements.iter().map(|s| bind(&s.params)).collect();
    try_join_all(prepared.iter().zip(&bound).map(|(statement, values)| {
        let params = refs(values);
        async move { tx.execute(statement, &params).await }
    }))
    .await
    .map_err(db_error)?;
    Ok(())
}
