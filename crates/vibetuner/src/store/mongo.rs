//! The MongoDB backend, on the official driver.

use std::time::Duration;

use bson::{Bson, Document, doc};
use futures_util::TryStreamExt;
use mongodb::options::{ClientOptions, IndexOptions, ReturnDocument};
use mongodb::{Client, Database, IndexModel};

use super::query::{Filter, Index, Order, Query};
use super::{StoreError, Update};

/// A connected MongoDB database.
pub struct Mongo {
    pub(super) db: Database,
    /// How long one read may run on the server (`maxTimeMS`).
    read_timeout: Duration,
}

impl Mongo {
    /// Connects (lazily: the driver opens connections on first use) to the database named in the
    /// URL's path, else `default_db`.
    pub async fn connect(url: &str, default_db: &str, app_name: &str) -> Result<Self, StoreError> {
        let mut options = ClientOptions::parse(url).await.map_err(|e| {
            StoreError::Config(format!(
                "MONGODB_URL is not a valid MongoDB connection string: {e}"
            ))
        })?;
        options.app_name.get_or_insert_with(|| app_name.to_owned());
        options
            .connect_timeout
            .get_or_insert(Duration::from_secs(5));
        options
            .server_selection_timeout
            .get_or_insert(Duration::from_secs(5));
        let db_name = options
            .default_database
            .clone()
            .unwrap_or_else(|| default_db.to_owned());
        let client = Client::with_options(options).map_err(backend)?;
        Ok(Self {
            db: client.database(&db_name),
            read_timeout: super::embedded::DEFAULT_READ_TIMEOUT,
        })
    }

    /// The database with another budget for each read: the server stops a find or a count
    /// still running after `timeout` (`maxTimeMS`), which fails with [`StoreError::TooSlow`].
    pub fn with_read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// A read's error: [`StoreError::TooSlow`] when the server stopped it at its budget.
    fn read_error(&self, e: mongodb::error::Error) -> StoreError {
        // 50: MaxTimeMSExpired.
        if command_code(&e) == Some(50) {
            return StoreError::TooSlow {
                budget: self.read_timeout,
            };
        }
        backend(e)
    }

    fn coll(&self, name: &str) -> mongodb::Collection<Document> {
        self.db.collection(name)
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.db
            .run_command(doc! { "ping": 1 })
            .await
            .map_err(backend)?;
        Ok(())
    }

    pub(super) async fn insert(&self, coll: &str, doc: Document) -> Result<(), StoreError> {
        self.coll(coll).insert_one(doc).await.map_err(write_error)?;
        Ok(())
    }

    pub(super) async fn find(
        &self,
        coll: &str,
        query: &Query,
    ) -> Result<Vec<Document>, StoreError> {
        let collection = self.coll(coll);
        let mut find = collection
            .find(query.filter.to_mongo())
            .sort(query.mongo_sort())
            .skip(query.skip)
            .max_time(self.read_timeout);
        if let Some(limit) = query.limit {
            find = find.limit(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        find.await
            .map_err(|e| self.read_error(e))?
            .try_collect()
            .await
            .map_err(|e| self.read_error(e))
    }

    pub(super) async fn count(&self, coll: &str, filter: &Filter) -> Result<u64, StoreError> {
        self.coll(coll)
            .count_documents(filter.to_mongo())
            .max_time(self.read_timeout)
            .await
            .map_err(|e| self.read_error(e))
    }

    pub(super) async fn update(
        &self,
        coll: &str,
        filter: &Filter,
        update: &Update,
        many: bool,
    ) -> Result<Vec<Document>, StoreError> {
        let mut change = Document::new();
        if !update.set.is_empty() {
            change.insert("$set", update.set.clone());
        }
        if !update.unset.is_empty() {
            let unset: Document = update
                .unset
                .iter()
                .map(|f| (f.clone(), Bson::String(String::new())))
                .collect();
            change.insert("$unset", unset);
        }
        if change.is_empty() {
            return self
                .find(
                    coll,
                    &Query::filter(filter.clone()).limit(if many { u64::MAX } else { 1 }),
                )
                .await;
        }
        if many {
            // The filter is applied again with the ids, so a document another writer changed
            // meanwhile is not updated; conditional claims use the single-document path.
            let ids: Vec<Bson> = self
                .find(coll, &Query::filter(filter.clone()))
                .await?
                .into_iter()
                .filter_map(|d| d.get("_id").cloned())
                .collect();
            let by_id = Filter::In("_id".into(), ids);
            self.coll(coll)
                .update_many(by_id.clone().and(filter.clone()).to_mongo(), change)
                .await
                .map_err(write_error)?;
            return self.find(coll, &Query::filter(by_id)).await;
        }
        let updated = self
            .coll(coll)
            .find_one_and_update(filter.to_mongo(), change)
            .return_document(ReturnDocument::After)
            .await
            .map_err(write_error)?;
        Ok(updated.into_iter().collect())
    }

    pub(super) async fn delete(
        &self,
        coll: &str,
        filter: &Filter,
        many: bool,
    ) -> Result<u64, StoreError> {
        let c = self.coll(coll);
        let result = if many {
            c.delete_many(filter.to_mongo()).await
        } else {
            c.delete_one(filter.to_mongo()).await
        };
        Ok(result.map_err(backend)?.deleted_count)
    }

    /// The collection's indexes except `_id_` (none when the collection does not exist).
    pub(super) async fn indexes(&self, coll: &str) -> Result<Vec<Index>, StoreError> {
        let found: Vec<IndexModel> = match self.coll(coll).list_indexes().await {
            Ok(cursor) => cursor.try_collect().await.map_err(backend)?,
            // NamespaceNotFound: no collection, so no index.
            Err(e) if command_code(&e) == Some(26) => return Ok(Vec::new()),
            Err(e) => return Err(backend(e)),
        };
        Ok(found
            .into_iter()
            .filter_map(|model| {
                let options = model.options.unwrap_or_default();
                let name = options.name.clone()?;
                (name != "_id_").then(|| Index {
                    keys: model
                        .keys
                        .iter()
                        .map(|(field, dir)| {
                            let direction = match dir {
                                Bson::Int32(n) => f64::from(*n),
                                Bson::Int64(n) => *n as f64,
                                Bson::Double(n) => *n,
                                _ => 1.0,
                            };
                            let order = if direction < 0.0 {
                                Order::Desc
                            } else {
                                Order::Asc
                            };
                            (field.clone(), order)
                        })
                        .collect(),
                    unique: options.unique.unwrap_or(false),
                    sparse: options.sparse.unwrap_or(false),
                    ttl: options.expire_after,
                    name: Some(name),
                })
            })
            .collect())
    }

    pub(super) async fn create_index(&self, coll: &str, index: &Index) -> Result<(), StoreError> {
        let keys: Document = index
            .keys
            .iter()
            .map(|(f, o)| {
                (
                    f.clone(),
                    Bson::Int32(if *o == Order::Asc { 1 } else { -1 }),
                )
            })
            .collect();
        let options = IndexOptions::builder()
            .name(index.index_name())
            .unique(index.unique.then_some(true))
            .sparse(index.sparse.then_some(true))
            .expire_after(index.ttl)
            .build();
        self.coll(coll)
            .create_index(IndexModel::builder().keys(keys).options(options).build())
            .await
            .map_err(|e| match e.kind.as_ref() {
                // The server's own words, not the driver's dump of its whole response.
                mongodb::error::ErrorKind::Command(c) if c.code != 11000 => {
                    StoreError::Backend(format!(
                        "MongoDB refused index {index} on {coll}: {} ({}, code {})",
                        c.message, c.code_name, c.code
                    ))
                }
                _ => write_error(e),
            })?;
        Ok(())
    }
}

fn command_code(e: &mongodb::error::Error) -> Option<i32> {
    match e.kind.as_ref() {
        mongodb::error::ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

fn backend(e: mongodb::error::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Maps duplicate-key errors (code 11000) to [`StoreError::Duplicate`] with the index name.
fn write_error(e: mongodb::error::Error) -> StoreError {
    let message = e.to_string();
    if message.contains("E11000") || message.contains("duplicate key") {
        let index = message
            .split("index: ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_default()
            .to_owned();
        return StoreError::Duplicate { index };
    }
    StoreError::Backend(message)
}
