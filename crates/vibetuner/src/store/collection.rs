//! [`Collection`]: the untyped BSON documents of one collection, on whichever database the
//! store has; every operation is dispatched to the backend here.

use std::sync::Arc;

use bson::oid::ObjectId;
use bson::{Bson, Document};

use super::embedded::{self, Embedded};
use super::error::StoreError;
#[cfg(feature = "mongodb")]
use super::mongo::Mongo;
use super::query::{Filter, Index, IndexConflict, Order, Query, Update, valid_field};
use super::value::Id;

/// The database behind a store.
pub(super) enum Backend {
    #[cfg(feature = "mongodb")]
    Mongo(Mongo),
    Embedded(Arc<Embedded>),
}

/// A named collection of BSON documents on either backend.
#[derive(Clone)]
pub struct Collection {
    pub(super) backend: Arc<Backend>,
    pub(super) name: String,
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
        match &*$self.backend {
            #[cfg(feature = "mongodb")]
            Backend::Mongo($m) => $mongo,
            Backend::Embedded(e) => e.read_remembering(&$self.name, move |$conn, $coll, $memory| $emb).await,
        }
    };
    (@ $run:ident, $self:ident, $m:ident, $mongo:expr, $conn:ident, $coll:ident, $emb:expr) => {
        match &*$self.backend {
            #[cfg(feature = "mongodb")]
            Backend::Mongo($m) => $mongo,
            Backend::Embedded(e) => e.$run(&$self.name, move |$conn, $coll| $emb).await,
        }
    };
}
pub(super) use dispatch;

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

    /// Documents matching the query, sorted, skipped and limited (a [`Query`], a [`Filter`],
    /// or a reference to either).
    pub async fn find(&self, query: impl Into<Query>) -> Result<Vec<Document>, StoreError> {
        let query = query.into();
        check_query(&query.filter, &query.sort)?;
        dispatch!(self,
            mongo(m) => m.find(&self.name, &query).await,
            read(conn, coll) => embedded::find(conn, coll, &query))
    }

    /// The first document matching `filter` (in id order).
    pub async fn find_one(
        &self,
        filter: impl Into<Filter>,
    ) -> Result<Option<Document>, StoreError> {
        Ok(self
            .find(Query::filter(filter.into()).limit(1))
            .await?
            .pop())
    }

    /// How many documents match.
    pub async fn count(&self, filter: impl Into<Filter>) -> Result<u64, StoreError> {
        let filter = filter.into();
        check_query(&filter, &[])?;
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
        filter: impl Into<Filter>,
        update: Update,
    ) -> Result<Option<Document>, StoreError> {
        Ok(self.update_where(filter.into(), update, false).await?.pop())
    }

    /// Applies `update` to every document matching `filter`; returns them as updated.
    pub async fn update_many(
        &self,
        filter: impl Into<Filter>,
        update: Update,
    ) -> Result<Vec<Document>, StoreError> {
        self.update_where(filter.into(), update, true).await
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
    pub async fn delete_many(&self, filter: impl Into<Filter>) -> Result<u64, StoreError> {
        let filter = filter.into();
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

pub(super) fn check_query(filter: &Filter, sort: &[(String, Order)]) -> Result<(), StoreError> {
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

impl Collection {
    pub(super) fn new(backend: Arc<Backend>, name: &str) -> Self {
        Self {
            backend,
            name: name.to_owned(),
        }
    }
}
