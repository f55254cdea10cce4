//! Document storage: one API over MongoDB (`MONGODB_URL` set) and an embedded SQLite file
//! (`MONGODB_URL` unset), so that a new app runs with no services and scales out on MongoDB.
//!
//! [`Store`] hands out untyped [`Collection`]s of BSON documents and typed [`Models`] of app
//! types implementing [`Model`]. Ids are ObjectIds on both backends, dates are BSON dates, and
//! the field names of the framework's models match Vibetuner's, so data moves between backends
//! and an existing Vibetuner database can be read.

mod api_json;
mod embedded;
mod model;
#[cfg(feature = "mongodb")]
mod mongo;
mod query;
mod value;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use bson::oid::ObjectId;
use bson::{Bson, Document};

pub use bson;
pub use embedded::Embedded;
pub(crate) use model::data_document;
pub use model::{CREATED, FieldError, Model, Models, Record, UPDATED};
#[cfg(feature = "mongodb")]
pub use mongo::Mongo;
pub use query::{Cmp, Filter, Index, Order, Query, regex_escape, valid_collection, valid_field};
pub(crate) use query::{IndexConflict, conflicts_report};
pub use value::{Id, InvalidId, Timestamp, doc_to_api_json, to_api_json};

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique index refused the write.
    #[error("duplicate key: unique index {index} already has this value")]
    Duplicate {
        /// The index name as declared (MongoDB's default `field_1` naming).
        index: String,
    },
    /// The query or document is not acceptable.
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// Settings make the store unusable.
    #[error("{0}")]
    Config(String),
    /// A stored document does not decode as expected.
    #[error("cannot decode a stored document: {0}")]
    Decode(String),
    /// The database failed.
    #[error("database error: {0}")]
    Backend(String),
}

impl StoreError {
    /// The HTTP error for this failure: 409 for duplicates, 422 for invalid requests, else 500.
    pub fn to_http(&self) -> crate::Error {
        match self {
            Self::Duplicate { .. } => {
                crate::Error::new(axum::http::StatusCode::CONFLICT, self.to_string())
            }
            Self::Invalid(m) => crate::Error::unprocessable(m.clone()),
            other => crate::Error::internal(other.to_string()),
        }
    }
}

/// A partial update: fields to set (dotted paths allowed) and fields to remove.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Update {
    /// `$set`.
    pub set: Document,
    /// `$unset`.
    pub unset: Vec<String>,
}

impl Update {
    /// Sets fields.
    pub fn set(set: Document) -> Self {
        Self {
            set,
            unset: Vec::new(),
        }
    }
}

enum Backend {
    #[cfg(feature = "mongodb")]
    Mongo(Mongo),
    Embedded(Arc<Embedded>),
}

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
    #[cfg_attr(not(feature = "mongodb"), allow(unused_variables))]
    pub async fn from_settings(
        settings: &crate::Settings,
        root: &Path,
        slug: &str,
    ) -> Result<Self, StoreError> {
        match &settings.mongodb_url {
            #[cfg(feature = "mongodb")]
            Some(url) => Self::mongo(url, &slug.replace('-', "_")).await,
            #[cfg(not(feature = "mongodb"))]
            Some(_) => Err(StoreError::Config(
                "MONGODB_URL is set, but this app was built without vibetuner's `mongodb` feature: \
                 add it to the vibetuner dependency's features in Cargo.toml, or unset MONGODB_URL \
                 to use the embedded store"
                    .into(),
            )),
            None => Self::embedded(&data_dir(settings, root).join("store.sqlite3")),
        }
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
        Collection {
            store: self.clone(),
            name: name.to_owned(),
        }
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
pub fn data_dir(settings: &crate::Settings, root: &Path) -> PathBuf {
    match &settings.data_dir {
        Some(dir) if dir.is_absolute() => dir.clone(),
        Some(dir) => root.join(dir),
        None => root.join("data"),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Store {
    type Rejection = crate::Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(crate::AppContext::from_parts(parts)?.store().clone())
    }
}

/// A named collection of BSON documents on either backend.
#[derive(Clone)]
pub struct Collection {
    store: Store,
    name: String,
}

/// Runs an operation on the collection's backend; `read` ones use the embedded store's
/// read-only connections.
macro_rules! dispatch {
    ($self:ident, mongo($m:ident) => $mongo:expr, embedded($conn:ident, $coll:ident) => $emb:expr) => {
        dispatch!(@ with, $self, $m, $mongo, $conn, $coll, $emb)
    };
    ($self:ident, mongo($m:ident) => $mongo:expr, read($conn:ident, $coll:ident) => $emb:expr) => {
        dispatch!(@ read, $self, $m, $mongo, $conn, $coll, $emb)
    };
    // A read with the reader's memory ([`embedded::Memory`]).
    ($self:ident, mongo($m:ident) => $mongo:expr, remembering($conn:ident, $coll:ident, $memory:ident) => $emb:expr) => {
        match &*$self.store.backend {
            #[cfg(feature = "mongodb")]
            Backend::Mongo($m) => $mongo,
            Backend::Embedded(e) => e.read_remembering(&$self.name, move |$conn, $coll, $memory| $emb).await,
        }
    };
    (@ $run:ident, $self:ident, $m:ident, $mongo:expr, $conn:ident, $coll:ident, $emb:expr) => {
        match &*$self.store.backend {
            #[cfg(feature = "mongodb")]
            Backend::Mongo($m) => $mongo,
            Backend::Embedded(e) => e.$run(&$self.name, move |$conn, $coll| $emb).await,
        }
    };
}

impl Collection {
    /// The collection name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Inserts a document, giving it a new ObjectId `_id` unless it has one; returns the id.
    pub async fn insert(&self, mut doc: Document) -> Result<Id, StoreError> {
        let id = match doc.get("_id") {
            Some(Bson::ObjectId(id)) => *id,
            Some(_) => return Err(StoreError::Invalid("_id must be an ObjectId".into())),
            None => {
                let id = ObjectId::new();
                let mut with_id = Document::new();
                with_id.insert("_id", id);
                with_id.extend(doc);
                doc = with_id;
                id
            }
        };
        dispatch!(self,
            mongo(m) => m.insert(&self.name, doc).await,
            embedded(conn, coll) => embedded::insert(conn, coll, doc))?;
        Ok(Id(id))
    }

    /// The document with this id.
    pub async fn get(&self, id: Id) -> Result<Option<Document>, StoreError> {
        dispatch!(self,
            mongo(m) => Ok(m.find(&self.name, &Query::filter(Filter::eq("_id", id)).limit(1)).await?.pop()),
            read(conn, coll) => embedded::get(conn, coll, &id.0))
    }

    /// Documents matching the query, sorted, skipped and limited.
    pub async fn find(&self, query: &Query) -> Result<Vec<Document>, StoreError> {
        check_query(&query.filter, &query.sort)?;
        let query = query.clone();
        dispatch!(self,
            mongo(m) => m.find(&self.name, &query).await,
            read(conn, coll) => embedded::find(conn, coll, &query))
    }

    /// Models matching the query; the embedded store reads its rows straight into models.
    pub(super) async fn find_records<T: Model>(
        &self,
        query: &Query,
    ) -> Result<Vec<Record<T>>, StoreError> {
        check_query(&query.filter, &query.sort)?;
        let query = query.clone();
        dispatch!(self,
            mongo(m) => m.find(&self.name, &query).await?.into_iter().map(Record::from_document).collect(),
            read(conn, coll) => embedded::find_rows(conn, coll, &query, Record::from_stored))
    }

    /// The first record matching `filter`; the embedded store's readers remember it until the
    /// database changes ([`embedded::Memory`]).
    pub(super) async fn find_one_remembered<T: Model>(
        &self,
        filter: Filter,
    ) -> Result<Option<Record<T>>, StoreError> {
        let query = Query::filter(filter).limit(1);
        check_query(&query.filter, &query.sort)?;
        dispatch!(self,
        mongo(_m) => Ok(self.find_records(&query).await?.pop()),
        remembering(conn, coll, memory) => memory.remember(conn, &format!("{coll}:first:{:?}", query.filter), || {
            Ok(embedded::find_rows(conn, coll, &query, Record::<T>::from_stored)?.pop())
        }))
    }

    /// [`Collection::find_records`] and the count of everything its filter matches, as one
    /// read of the embedded store (one snapshot), whose readers remember the count until the
    /// database changes ([`embedded::Memory`]): paging through an unchanged list counts once.
    pub(super) async fn page_records<T: Model>(
        &self,
        query: &Query,
    ) -> Result<(Vec<Record<T>>, u64), StoreError> {
        check_query(&query.filter, &query.sort)?;
        let query = query.clone();
        dispatch!(self,
        mongo(m) => {
            let (docs, total) = tokio::try_join!(m.find(&self.name, &query), m.count(&self.name, &query.filter))?;
            let records = docs.into_iter().map(Record::from_document).collect::<Result<_, _>>()?;
            Ok((records, total))
        },
        remembering(conn, coll, memory) => {
            let tx = conn.unchecked_transaction().map_err(|e| StoreError::Backend(e.to_string()))?;
            // The count first: when a long one moves the read off the runtime's thread, the
            // page has not been read in vain.
            let key = format!("{coll}:count:{:?}", query.filter);
            let total = memory.remember(&tx, &key, || embedded::count(&tx, coll, &query.filter))?;
            let records = embedded::find_rows(&tx, coll, &query, Record::from_stored)?;
            Ok((records, total))
        })
    }

    /// The model with this id; the embedded store reads its row straight into the model.
    pub(super) async fn get_record<T: Model>(
        &self,
        id: Id,
    ) -> Result<Option<Record<T>>, StoreError> {
        dispatch!(self,
            mongo(m) => m.find(&self.name, &Query::filter(Filter::eq("_id", id)).limit(1)).await?.pop().map(Record::from_document).transpose(),
            read(conn, coll) => embedded::get_row(conn, coll, &id.0, Record::from_stored))
    }

    /// The first document matching `filter` (in id order).
    pub async fn find_one(&self, filter: Filter) -> Result<Option<Document>, StoreError> {
        Ok(self.find(&Query::filter(filter).limit(1)).await?.pop())
    }

    /// How many documents match.
    pub async fn count(&self, filter: &Filter) -> Result<u64, StoreError> {
        check_query(filter, &[])?;
        let filter = filter.clone();
        dispatch!(self,
            mongo(m) => m.count(&self.name, &filter).await,
            read(conn, coll) => embedded::count(conn, coll, &filter))
    }

    /// Applies `update` to the document with this id; returns it as updated, or `None`.
    pub async fn update(&self, id: Id, update: Update) -> Result<Option<Document>, StoreError> {
        self.update_one(Filter::eq("_id", id), update).await
    }

    /// Applies `update` to one document matching `filter`, atomically: the check and the write
    /// are one step, so a conditional update (claim what is still unclaimed) succeeds for one
    /// caller only, whichever process it runs in. Returns the document as updated, or `None`.
    pub async fn update_one(
        &self,
        filter: Filter,
        update: Update,
    ) -> Result<Option<Document>, StoreError> {
        Ok(self.update_where(filter, update, false).await?.pop())
    }

    /// Applies `update` to every document matching `filter`; returns them as updated.
    pub async fn update_many(
        &self,
        filter: Filter,
        update: Update,
    ) -> Result<Vec<Document>, StoreError> {
        self.update_where(filter, update, true).await
    }

    async fn update_where(
        &self,
        filter: Filter,
        update: Update,
        many: bool,
    ) -> Result<Vec<Document>, StoreError> {
        check_query(&filter, &[])?;
        for key in update.set.keys().chain(update.unset.iter()) {
            if key == "_id" || !valid_field(key) {
                return Err(StoreError::Invalid(format!("cannot update field {key:?}")));
            }
        }
        dispatch!(self,
            mongo(m) => m.update(&self.name, &filter, &update, many).await,
            embedded(conn, coll) => embedded::update(conn, coll, &filter, &update, many))
    }

    /// Deletes the document with this id; true when there was one.
    pub async fn delete(&self, id: Id) -> Result<bool, StoreError> {
        let filter = Filter::eq("_id", id);
        let n = dispatch!(self,
            mongo(m) => m.delete(&self.name, &filter, false).await,
            embedded(conn, coll) => embedded::delete(conn, coll, &filter, false))?;
        Ok(n > 0)
    }

    /// Deletes every document matching `filter`; returns how many.
    pub async fn delete_many(&self, filter: Filter) -> Result<u64, StoreError> {
        check_query(&filter, &[])?;
        dispatch!(self,
            mongo(m) => m.delete(&self.name, &filter, true).await,
            embedded(conn, coll) => embedded::delete(conn, coll, &filter, true))
    }

    /// The indexes the collection has on MongoDB (none on the embedded store, which creates
    /// indexes with `IF NOT EXISTS` and so never conflicts).
    pub(crate) async fn existing_indexes(&self) -> Result<Vec<Index>, StoreError> {
        dispatch!(self,
            mongo(m) => m.indexes(&self.name).await,
            embedded(_conn, _coll) => Ok(Vec::new()))
    }

    /// The declared indexes that existing ones stop from being created.
    pub(crate) async fn index_conflicts(
        &self,
        wanted: &[Index],
    ) -> Result<Vec<IndexConflict>, StoreError> {
        let existing = self.existing_indexes().await?;
        Ok(wanted
            .iter()
            .flat_map(|w| {
                existing
                    .iter()
                    .filter(|e| e.blocks(w))
                    .map(|e| IndexConflict {
                        collection: self.name.clone(),
                        existing: e.clone(),
                        wanted: w.clone(),
                    })
            })
            .collect())
    }

    /// Creates an index if it does not exist.
    pub async fn create_index(&self, index: &Index) -> Result<(), StoreError> {
        if index.keys.is_empty() {
            return Err(StoreError::Invalid(
                "an index needs at least one key".into(),
            ));
        }
        if index.ttl.is_some() && index.keys.len() != 1 {
            return Err(StoreError::Invalid(
                "a TTL index has exactly one (date) field".into(),
            ));
        }
        check_query(&Filter::All, &index.keys)?;
        let fields = index
            .keys
            .iter()
            .map(|(f, _)| f.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let index = index.clone();
        let created = dispatch!(self,
            mongo(m) => m.create_index(&self.name, &index).await,
            embedded(conn, coll) => embedded::create_index(conn, coll, &index));
        created.map_err(|e| match e {
            StoreError::Duplicate { index: name } => StoreError::Invalid(format!(
                "cannot create unique index {name} on {}: documents already share a value of {fields}; \
                 merge or remove the duplicates, then start again",
                self.name
            )),
            e => e,
        })
    }
}

fn check_query(filter: &Filter, sort: &[(String, Order)]) -> Result<(), StoreError> {
    for field in filter
        .fields()
        .into_iter()
        .chain(sort.iter().map(|(f, _)| f.as_str()))
    {
        if !valid_field(field) {
            return Err(StoreError::Invalid(format!(
                "invalid field name {field:?} (letters, digits and _, dot-separated)"
            )));
        }
    }
    Ok(())
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
