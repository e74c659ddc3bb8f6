//! What the GraphQL targets share: the real schema over read models that hold nothing
//! (the targets exercise decoding, parsing, validation and resolvers' argument
//! handling; the SQL itself is tested against real databases elsewhere).

use std::sync::{Arc, OnceLock};

use plaza_projections::db::LockGuard;
use plaza_projections::generations::{Step, Tables};
use plaza_projections::partitions::{Consumed, Tally};
use plaza_projections::{Changes, ReadModelDb, ReadModelError, Row, SqlValue, Statement};
use plaza_read_api::{Hub, Live, PlazaSchema, RequestCache, Search, Viewer, build_schema};

struct Empty;

#[async_trait::async_trait]
impl ReadModelDb for Empty {
    async fn transact(&self, _: Vec<Step>) -> Result<bool, ReadModelError> {
        Ok(true)
    }
    async fn apply(&self, _: Arc<Tables>, _: Vec<Changes>, _: u64, _: u64) -> Result<(), ReadModelError> {
        Ok(())
    }
    async fn query(&self, _: &'static str, _: Vec<SqlValue>) -> Result<Vec<Row>, ReadModelError> {
        Ok(vec![])
    }
    async fn execute(&self, _: Statement) -> Result<u64, ReadModelError> {
        Ok(0)
    }
    async fn track_partitions(&self, _: Arc<Tables>, _: &str, _: i32) -> Result<(), ReadModelError> {
        Ok(())
    }
    async fn apply_consumed(&self, _: Arc<Tables>, _: &str, _: Vec<Consumed>) -> Result<Tally, ReadModelError> {
        Ok(Tally::default())
    }
    async fn try_lock(&self, _: &str) -> Result<Option<LockGuard>, ReadModelError> {
        Ok(None)
    }
}

pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap())
}

pub fn schema() -> &'static PlazaSchema {
    static SCHEMA: OnceLock<PlazaSchema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        runtime().block_on(async {
            let live = Live {
                presence: Arc::new(plaza_live::LocalPresence::default()),
                typing: Arc::new(plaza_live::LocalTyping::default()),
                presence_ttl: std::time::Duration::from_secs(300),
            };
            let hub = Hub::start(Arc::new(Empty), tokio::sync::watch::channel(0).1, tokio::sync::watch::channel(0).1);
            build_schema(Arc::new(Empty), live, hub, Search::default(), true)
        })
    })
}

/// Runs a request as the read API would, for a signed-in viewer.
pub fn execute(request: async_graphql::Request) -> async_graphql::Response {
    let request = request.data(Viewer::new(Some(uuid::Uuid::nil()))).data(RequestCache::default());
    runtime().block_on(schema().execute(request))
}
