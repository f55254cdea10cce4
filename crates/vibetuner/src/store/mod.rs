//! Document storage: one API over MongoDB (`MONGODB_URL` set) and an embedded SQLite file
//! (`MONGODB_URL` unset), so that a new app runs with no services and scales out on MongoDB.
//!
//! [`Store`] hands out untyped [`Collection`]s of BSON documents and typed [`Models`] of app
//! types implementing [`Model`]. Ids are ObjectIds on both backends, dates are BSON dates, and
//! the field names of the framework's models match Vibetuner's, so data moves between backends
//! and an existing Vibetuner database can be read.

mod api_json;
mod collection;
mod embedded;
mod error;
mod model;
#[cfg(feature = "mongodb")]
mod mongo;
mod query;
mod value;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use bson;
use collection::Backend;
pub use collection::Collection;
pub use embedded::Embedded;
pub use error::StoreError;
pub(crate) use model::data_document;
pub use model::{CREATED, FieldError, Model, Models, Record, UPDATED};
#[cfg(feature = "mongodb")]
pub use mongo::Mongo;
pub use query::{
    Cmp, Filter, Index, Order, Query, Update, regex_escape, valid_collection, valid_field,
};
pub(crate) use query::{IndexConflict, conflicts_report};
pub use value::{Id, InvalidId, Timestamp, doc_to_api_json, to_api_json};
/// The app's database handle; cheap to clone, and an axum extractor.
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
}

impl Store {
    /// MongoDB at `url` (database from the URL's path, else `default_db`).
    #[cfg(feature = "mongodb")]
    pub async fn mongo(url: &str, default_db: &str) -> Result<Self, StoreError> {
        let mongo = Mongo::connect(url, default_db, default_db).await?;
        Ok(Self {
            backend: Arc::new(Backend::Mongo(mongo)),
        })
    }

    /// The embedded store in the SQLite file at `path` (created with its folder if missing).
    pub fn embedded(path: &Path) -> Result<Self, StoreError> {
        let embedded = Embedded::open(path)?;
        Ok(Self {
            backend: Arc::new(Backend::Embedded(Arc::new(embedded))),
        })
    }

    /// The store the settings select: MongoDB when `MONGODB_URL` is set, otherwise the embedded
    /// file `<DATA_DIR>/store.sqlite3`. Database names default to the slug with `-` as `_`.
    /// Each read may run for `STORE_READ_TIMEOUT`; `STORE_SYNC=full` (prod's default) makes the
    /// embedded store wait for the disk on each write.
    #[cfg_attr(not(feature = "mongodb"), allow(unused_variables))]
    pub async fn from_settings(
        settings: &crate::config::Settings,
        root: &Path,
        slug: &str,
    ) -> Result<Self, StoreError> {
        let read_timeout = Duration::from_secs(settings.store_read_timeout_secs);
        let backend = match &settings.mongodb_url {
            #[cfg(feature = "mongodb")]
            Some(url) => {
                let db = slug.replace('-', "_");
                let mongo = Mongo::connect(url, &db, &db).await?;
                Backend::Mongo(mongo.with_read_timeout(read_timeout))
            }
            #[cfg(not(feature = "mongodb"))]
            Some(_) => {
                return Err(StoreError::Config(
                    "MONGODB_URL is set, but this app was built without vibetuner's `mongodb` \
                     feature: add it to the vibetuner dependency's features in Cargo.toml, or \
                     unset MONGODB_URL to use the embedded store"
                        .into(),
                ));
            }
            None => {
                let mut embedded = Embedded::open(&data_dir(settings, root).join("store.sqlite3"))?;
                if settings.store_sync_full {
                    embedded = embedded.durable()?;
                }
                Backend::Embedded(Arc::new(embedded.with_read_timeout(read_timeout)))
            }
        };
        Ok(Self {
            backend: Arc::new(backend),
        })
    }

    /// `mongodb` or `embedded`.
    pub fn kind(&self) -> &'static str {
        match &*self.backend {
            #[cfg(feature = "mongodb")]
            Backend::Mongo(_) => "mongodb",
            Backend::Embedded(_) => "embedded",
        }
    }

    /// The raw MongoDB database, for anything the store API does not cover.
    #[cfg(feature = "mongodb")]
    pub fn mongodb(&self) -> Option<&mongodb::Database> {
        match &*self.backend {
            Backend::Mongo(m) => Some(&m.db),
            Backend::Embedded(_) => None,
        }
    }

    /// The embedded store's file.
    pub fn embedded_path(&self) -> Option<&Path> {
        match &*self.backend {
            #[cfg(feature = "mongodb")]
            Backend::Mongo(_) => None,
            Backend::Embedded(e) => Some(e.path()),
        }
    }

    /// A collection of untyped documents.
    pub fn collection(&self, name: &str) -> Collection {
        Collection::new(self.backend.clone(), name)
    }

    /// The typed collection of a model.
    pub fn models<T: Model>(&self) -> Models<T> {
        Models::new(self.collection(T::COLLECTION))
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match &*self.backend {
            #[cfg(feature = "mongodb")]
            Backend::Mongo(m) => m.ping().await,
            Backend::Embedded(e) => {
                let e = e.clone();
                tokio::task::spawn_blocking(move || e.ping())
                    .await
                    .map_err(|e| StoreError::Backend(e.to_string()))?
            }
        }
    }

    /// Deletes expired documents now (embedded store; MongoDB's own TTL monitor does it there).
    pub async fn purge_expired(&self) -> Result<u64, StoreError> {
        match &*self.backend {
            #[cfg(feature = "mongodb")]
            Backend::Mongo(_) => Ok(0),
            Backend::Embedded(e) => {
                let e = e.clone();
                tokio::task::spawn_blocking(move || e.purge_expired())
                    .await
                    .map_err(|e| StoreError::Backend(e.to_string()))?
            }
        }
    }

    /// Sweeps expired documents every `every` in the background, while the store lives
    /// (embedded store only).
    pub fn spawn_ttl_sweeper(&self, every: Duration) {
        #[cfg(feature = "mongodb")]
        let Backend::Embedded(e) = &*self.backend else {
            return;
        };
        #[cfg(not(feature = "mongodb"))]
        let Backend::Embedded(e) = &*self.backend;
        if every.is_zero() {
            return;
        }
        let weak = Arc::downgrade(e);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(e) = weak.upgrade() else { break };
                match tokio::task::spawn_blocking(move || e.purge_expired()).await {
                    Ok(Ok(n)) if n > 0 => tracing::debug!(purged = n, "expired documents removed"),
                    Ok(Err(err)) => tracing::warn!("expiry sweep failed: {err}"),
                    _ => {}
                }
            }
        });
    }
}

/// The data folder: `DATA_DIR`, else `<root>/data`.
pub fn data_dir(settings: &crate::config::Settings, root: &Path) -> PathBuf {
    match &settings.data_dir {
        Some(dir) if dir.is_absolute() => dir.clone(),
        Some(dir) => root.join(dir),
        None => root.join("data"),
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
    struct Item {
        n: i64,
    }

    impl Model for Item {
        const COLLECTION: &'static str = "items";
    }

    #[tokio::test]
    async fn a_page_counts_every_commit_of_any_process() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("store.sqlite3");
        let here = Store::embedded(&file).unwrap();
        // Another app process on the same store file.
        let there = Store::embedded(&file).unwrap();
        let total = |filter: Filter| {
            let items = here.models::<Item>();
            async move { items.page(&Query::filter(filter).limit(1)).await.unwrap().1 }
        };
        here.models::<Item>().insert(Item { n: 1 }).await.unwrap();
        assert_eq!(total(Filter::All).await, 1);
        assert_eq!(total(Filter::All).await, 1);
        here.models::<Item>().insert(Item { n: 2 }).await.unwrap();
        assert_eq!(total(Filter::All).await, 2, "this process's write");
        there.models::<Item>().insert(Item { n: 1 }).await.unwrap();
        assert_eq!(total(Filter::All).await, 3, "another process's write");
        assert_eq!(
            total(Filter::eq("n", 1)).await,
            2,
            "each filter its own count"
        );
        there
            .models::<Item>()
            .delete_many(Filter::eq("n", 1))
            .await
            .unwrap();
        assert_eq!(total(Filter::All).await, 1, "another process's delete");
        assert_eq!(total(Filter::eq("n", 1)).await, 0);
    }
}
