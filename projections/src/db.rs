use crate::partitions::{Consumed, Tally};

/// A value bound to or read from engine-neutral SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlValue {
    Null,
    Int(i64),
    Text(String),
}

impl From<i64> for SqlValue {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

impl From<String> for SqlValue {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}

impl From<&str> for SqlValue {
    fn from(v: &str) -> Self {
        Self::Text(v.to_owned())
    }
}

impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}

/// One SQL statement with `$1`-style placeholders and its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sql: &'static str,
    pub params: Vec<SqlValue>,
}

impl Statement {
    pub fn new(sql: &'static str, params: impl IntoIterator<Item = SqlValue>) -> Self {
        Self { sql, params: params.into_iter().collect() }
    }
}

/// A result row; getters panic-free, returning errors for the wrong shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<SqlValue>);

impl Row {
    pub fn int(&self, index: usize) -> Result<i64, ReadModelError> {
        match self.0.get(index) {
            Some(SqlValue::Int(v)) => Ok(*v),
            other => Err(ReadModelError::Shape(format!("column {index}: expected an integer, found {other:?}"))),
        }
    }

    pub fn text(&self, index: usize) -> Result<&str, ReadModelError> {
        match self.0.get(index) {
            Some(SqlValue::Text(v)) => Ok(v),
            other => Err(ReadModelError::Shape(format!("column {index}: expected text, found {other:?}"))),
        }
    }

    pub fn opt_text(&self, index: usize) -> Result<Option<&str>, ReadModelError> {
        match self.0.get(index) {
            Some(SqlValue::Null) => Ok(None),
            _ => self.text(index).map(Some),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadModelError {
    #[error("read-model database error: {0}")]
    Database(String),
    #[error("unexpected row shape: {0}")]
    Shape(String),
}

/// Bookkeeping tables every read-model database has: the global-log checkpoint of
/// projections that tail the store, and the per-partition state of projections fed
/// by Kafka.
pub const BOOKKEEPING_DDL: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS projection_checkpoints (projection TEXT PRIMARY KEY, position BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS projection_partitions (
        projection TEXT NOT NULL,
        topic TEXT NOT NULL,
        kafka_partition BIGINT NOT NULL,
        next_offset BIGINT NOT NULL,
        position BIGINT NOT NULL,
        owner TEXT,
        owner_seen_at BIGINT,
        PRIMARY KEY (projection, topic, kafka_partition)
    )",
];

/// Stores a partition's state (engine-neutral upsert).
pub const UPSERT_PARTITION: &str =
    "INSERT INTO projection_partitions (projection, topic, kafka_partition, next_offset, position) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (projection, topic, kafka_partition) DO UPDATE SET next_offset = excluded.next_offset, position = excluded.position";

/// Creates a partition's row unless it exists.
pub const TRACK_PARTITION: &str =
    "INSERT INTO projection_partitions (projection, topic, kafka_partition, next_offset, position) VALUES ($1, $2, $3, 0, 0) ON CONFLICT DO NOTHING";

/// How far each projection has applied the global log: its checkpoint when it tails
/// the store, or the lowest position over its partitions of topic `$1` when Kafka
/// feeds it.
pub const APPLIED_POSITIONS: &str = "SELECT c.projection,
        COALESCE((SELECT MIN(p.position) FROM projection_partitions p WHERE p.projection = c.projection AND p.topic = $1), c.position)
     FROM projection_checkpoints c";

/// The read-model database port (SQLite or PostgreSQL).
#[async_trait::async_trait]
pub trait ReadModelDb: Send + Sync + 'static {
    /// Creates the tables a projection needs (idempotent DDL) and its checkpoint row.
    async fn migrate(&self, projection: &str, ddl: &[&'static str]) -> Result<(), ReadModelError>;

    /// The last global position the projection applied (0 before the first event).
    async fn checkpoint(&self, projection: &str) -> Result<u64, ReadModelError>;

    /// Runs the statements and moves the checkpoint to `position`, in one transaction.
    async fn apply(&self, projection: &str, statements: Vec<Statement>, position: u64) -> Result<(), ReadModelError>;

    async fn query(&self, sql: &'static str, params: Vec<SqlValue>) -> Result<Vec<Row>, ReadModelError>;

    /// Runs one statement on its own; returns how many rows it changed.
    async fn execute(&self, statement: Statement) -> Result<u64, ReadModelError>;

    /// Creates empty state rows for partitions `0..partitions` of `topic`, so the read
    /// side counts every partition before its first message arrives.
    async fn track_partitions(&self, projection: &str, topic: &str, partitions: i32) -> Result<(), ReadModelError>;

    /// Applies a batch consumed from `topic` in one transaction: reads the states of
    /// the batch's partitions under lock, [`admit`](crate::partitions::admit)s the batch,
    /// runs the admitted statements and stores the new states. Concurrent consumers of
    /// one partition (a rebalance in progress) therefore never apply a message twice.
    async fn apply_consumed(&self, projection: &str, topic: &str, batch: Vec<Consumed>) -> Result<Tally, ReadModelError>;
}
