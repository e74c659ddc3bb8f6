//! What the write side reads from the read models: where the counter batcher's totals
//! start, and where a message is.

use std::sync::Arc;

use plaza_commands::{CommandError, CounterBaseline};
use plaza_domain::StoreError;
use plaza_domain::counters::CounterKey;
use plaza_projections::counters::BASELINE;
use plaza_projections::{ReadModelDb, SqlValue};

pub struct ReadModelBaseline(pub Arc<dyn ReadModelDb>);

#[async_trait::async_trait]
impl CounterBaseline for ReadModelBaseline {
    async fn baseline(&self, key: &CounterKey, shard_stream: &str) -> Result<(i64, Option<u64>), CommandError> {
        let params = vec![shard_stream.into(), key.resource_id().into(), key.counter_type().into()];
        let rows = self.0.query(BASELINE, params).await.map_err(|e| CommandError::Store(StoreError::Unavailable(e.to_string())))?;
        let Some(row) = rows.first() else { return Ok((0, None)) };
        let version = match row.0.first() {
            Some(SqlValue::Int(version)) => Some(*version as u64),
            _ => None,
        };
        let value = match row.0.get(1) {
            Some(SqlValue::Int(value)) => *value,
            _ => 0,
        };
        Ok((value, version))
    }
}

/// Where the conversation commands find a message: the conversations read model.
pub struct ReadModelMessages(pub Arc<dyn ReadModelDb>);

#[async_trait::async_trait]
impl plaza_commands::MessageIndex for ReadModelMessages {
    async fn locate(&self, message_id: uuid::Uuid) -> Result<Option<(uuid::Uuid, u64)>, CommandError> {
        let rows = self
            .0
            .query(plaza_projections::conversations::LOCATE_MESSAGE, vec![message_id.to_string().into()])
            .await
            .map_err(|e| CommandError::Store(StoreError::Unavailable(e.to_string())))?;
        let Some(row) = rows.first() else { return Ok(None) };
        let conversation = row.text(0).ok().and_then(|id| id.parse().ok());
        Ok(conversation.zip(row.int(1).ok().map(|seq| seq as u64)))
    }
}
