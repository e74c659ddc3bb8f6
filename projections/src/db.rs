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
}
