//! Which search engine the configuration names, and rebuilding its index: tantivy in
//! the data dir, or the shared Elasticsearch `search_url` names (in a binary built with
//! `--features elasticsearch`).

use std::sync::Arc;

use anyhow::Context;
use plaza_domain::search::{SearchIndex, SearchWriter};

use crate::Config;
use crate::tantivy::TantivySearch;

/// What a binary without the feature says when `search_url` is set.
#[cfg(not(feature = "elasticsearch"))]
const NO_ELASTICSEARCH: &str =
    "this plaza was built without Elasticsearch support: build it with `--features elasticsearch`, or leave search_url empty";

/// The search engine `search_url` names, shared by every process, as both of its ports:
/// searches, and the position searches see (through its alias).
pub async fn open_shared_search(config: &Config) -> anyhow::Result<(Arc<dyn SearchIndex>, Arc<dyn SearchWriter>)> {
    #[cfg(feature = "elasticsearch")]
    {
        let engine = Arc::new(crate::elasticsearch::ElasticsearchSearch::open(&config.search_url, &config.search_prefix).await?);
        Ok((engine.clone(), engine))
    }
    #[cfg(not(feature = "elasticsearch"))]
    {
        let _ = config;
        anyhow::bail!(NO_ELASTICSEARCH)
    }
}

/// What the one search projector of a cluster writes the shared search engine with.
pub async fn shared_search_writer(config: &Config) -> anyhow::Result<Arc<dyn SearchWriter>> {
    #[cfg(feature = "elasticsearch")]
    {
        let engine = crate::elasticsearch::ElasticsearchSearch::new(&config.search_url, &config.search_prefix)?;
        Ok(Arc::new(engine.writer().await?))
    }
    #[cfg(not(feature = "elasticsearch"))]
    {
        let _ = config;
        anyhow::bail!(NO_ELASTICSEARCH)
    }
}

/// A search index being rebuilt from the events beside the serving one
/// (`plaza projections rebuild search`): fill [`Self::writer`], then [`Self::publish`].
/// The processes serving the old one take the new one up at their next idle moment.
pub enum SearchRebuild {
    /// A new generation directory; the lock file keeps other rebuilds out.
    Tantivy { index: Arc<TantivySearch>, lock: std::fs::File },
    /// A new index; the read models' lock keeps other rebuilds out.
    #[cfg(feature = "elasticsearch")]
    Elasticsearch { index: Arc<crate::elasticsearch::ElasticsearchSearch>, lock: plaza_projections::db::LockGuard },
}

impl SearchRebuild {
    /// Starts a rebuild of the index the configuration names; `None` while another runs.
    pub async fn start(config: &Config) -> anyhow::Result<Option<Self>> {
        if config.search_url.is_empty() {
            let rebuild = TantivySearch::rebuild(&config.data_dir.join("search"))?;
            return Ok(rebuild.map(|(index, lock)| Self::Tantivy { index: Arc::new(index), lock }));
        }
        #[cfg(feature = "elasticsearch")]
        {
            let db = crate::open_read_models(config).await.context("cannot open the read models (for the rebuild's lock)")?;
            let Some(lock) = db.try_lock("search-rebuild").await? else { return Ok(None) };
            let engine = crate::elasticsearch::ElasticsearchSearch::open(&config.search_url, &config.search_prefix).await?;
            Ok(Some(Self::Elasticsearch { index: Arc::new(engine.rebuilding().await?), lock }))
        }
        #[cfg(not(feature = "elasticsearch"))]
        anyhow::bail!(NO_ELASTICSEARCH)
    }

    /// What the rebuild's projector writes.
    pub fn writer(&self) -> Arc<dyn SearchWriter> {
        match self {
            Self::Tantivy { index, .. } => index.clone(),
            #[cfg(feature = "elasticsearch")]
            Self::Elasticsearch { index, .. } => index.clone(),
        }
    }

    /// Makes the rebuilt index the one to serve; returns its name. Every other user of
    /// [`Self::writer`] must be gone.
    pub async fn publish(self) -> anyhow::Result<String> {
        match self {
            Self::Tantivy { index, lock } => {
                let index = Arc::into_inner(index).context("the rebuilt index is still in use")?;
                let name = index.publish()?;
                drop(lock);
                Ok(name)
            }
            #[cfg(feature = "elasticsearch")]
            Self::Elasticsearch { index, lock } => {
                index.publish().await?;
                drop(lock);
                Ok(index.index())
            }
        }
    }
}
