use std::borrow::Cow;
use std::sync::Arc;

use crate::dead_letters::Changes;
use crate::generations::{Step, Tables};
use crate::partitions::{Consumed, Tally};

/// A value bound to or read from engine-neutral SQL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
    pub sql: Cow<'static, str>,
    pub params: Vec<SqlValue>,
}

impl Statement {
    pub fn new(sql: &'static str, params: impl IntoIterator<Item = SqlValue>) -> Self {
        Self { sql: Cow::Borrowed(sql), params: params.into_iter().collect() }
    }

    /// A statement whose text is built at run time (DDL naming a generation's tables).
    pub fn owned(sql: String, params: impl IntoIterator<Item = SqlValue>) -> Self {
        Self { sql: Cow::Owned(sql), params: params.into_iter().collect() }
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
    /// The generation a projector applies to is paused, retired or gone: it should look
    /// again at what it is to do ([`crate::generations`]).
    #[error("generation {1} of projection {0} takes no changes now (paused, replaced or dropped)")]
    Stopped(&'static str, u64),
    /// Batches applied to a generation and held uncommitted ([`Tables::hold_commits`])
    /// were rolled back, or a commit was lost in a database crash: its checkpoint is
    /// before what was applied, and applying goes on from it.
    #[error("batches applied to generation {1} of projection {0} were rolled back or lost; its checkpoint is before them")]
    Uncommitted(&'static str, u64),
}

/// Creates a partition's row unless it exists: from the partition's start, everything up
/// to the generation's own position (built from the store) counting as applied.
pub const TRACK_PARTITION: &str = "INSERT INTO generation_partitions (projection, generation, topic, kafka_partition, next_offset, position)
     SELECT g.projection, g.generation, CAST($3 AS TEXT), CAST($4 AS BIGINT), 0, g.position FROM projection_generations g WHERE g.projection = $1 AND g.generation = $2
     ON CONFLICT DO NOTHING";

/// Stores a partition's state (engine-neutral upsert).
pub const UPSERT_PARTITION: &str =
    "INSERT INTO generation_partitions (projection, generation, topic, kafka_partition, next_offset, position) VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (projection, generation, topic, kafka_partition) DO UPDATE SET next_offset = excluded.next_offset, position = excluded.position";

/// How far each projection's live generation has applied the global log: its checkpoint
/// when it tails the store, or the lowest position over its partitions of topic `$1`
/// when Kafka feeds it.
pub const APPLIED_POSITIONS: &str = "SELECT g.projection,
        COALESCE((SELECT MIN(p.position) FROM generation_partitions p
                  WHERE p.projection = g.projection AND p.generation = g.generation AND p.topic = $1), g.position)
     FROM projection_generations g WHERE g.state = 'live'";

/// Something that holds a lock until dropped.
pub type LockGuard = Box<dyn Send + Sync>;

/// The read-model database port (SQLite or PostgreSQL).
#[async_trait::async_trait]
pub trait ReadModelDb: Send + Sync + 'static {
    /// Runs the steps in one transaction, the bookkeeping tables created first if
    /// needed. Returns false, having changed nothing, if a required step changed no row.
    async fn transact(&self, steps: Vec<Step>) -> Result<bool, ReadModelError>;

    /// Applies events' changes to the tables of one generation and moves that
    /// generation's checkpoint from `after` (the checkpoint the events follow) to
    /// `position`, in one transaction, if the generation may take changes
    /// ([`crate::generations::GUARD`]); else [`ReadModelError::Stopped`], or
    /// [`ReadModelError::Uncommitted`] if its stored checkpoint is before `after` (a
    /// commit lost in a crash: the caller goes on from the stored checkpoint). `after`
    /// 0 checks nothing.
    /// Events of a stream with a dead letter are parked behind it
    /// ([`crate::dead_letters::plan`]).
    ///
    /// For a generation whose [`Tables::hold_commits`] is set, an engine may leave the
    /// transaction open and commit several batches at once (with their checkpoint, so a
    /// crash only loses work to redo); it commits them before doing anything else, and
    /// at [`commit_held`](Self::commit_held).
    async fn apply(&self, tables: Arc<Tables>, changes: Vec<Changes>, after: u64, position: u64) -> Result<(), ReadModelError>;

    /// Commits what [`apply`](Self::apply) held uncommitted for the generation of
    /// `tables`; [`ReadModelError::Uncommitted`] if that was lost (its checkpoint is then
    /// older than what was applied).
    async fn commit_held(&self, _tables: &Tables) -> Result<(), ReadModelError> {
        Ok(())
    }

    async fn query(&self, sql: &'static str, params: Vec<SqlValue>) -> Result<Vec<Row>, ReadModelError>;

    /// Runs one statement on its own; returns how many rows it changed.
    async fn execute(&self, statement: Statement) -> Result<u64, ReadModelError>;

    /// Creates empty state rows for partitions `0..partitions` of `topic`, so the read
    /// side counts every partition before its first message arrives.
    async fn track_partitions(&self, tables: Arc<Tables>, topic: &str, partitions: i32) -> Result<(), ReadModelError>;

    /// Applies a batch consumed from `topic` to one generation, in one transaction, under
    /// the same guard as [`apply`](Self::apply): reads the states of the batch's
    /// partitions under lock, [`admit`](crate::partitions::admit)s the batch, runs the
    /// admitted statements and stores the new states. Concurrent consumers of one
    /// partition (a rebalance in progress) therefore never apply a message twice.
    async fn apply_consumed(&self, tables: Arc<Tables>, topic: &str, batch: Vec<Consumed>) -> Result<Tally, ReadModelError>;

    /// Takes the named lock for as long as the guard lives, if nobody (in any process
    /// sharing this database) holds it; a process that dies lets go of it.
    async fn try_lock(&self, name: &str) -> Result<Option<LockGuard>, ReadModelError>;
}
