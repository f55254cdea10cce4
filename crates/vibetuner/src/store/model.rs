//! Typed models: an app type stored in a collection, wrapped in a [`Record`] with its id and
//! the creation/update timestamps the store maintains (`db_insert_dt`, `db_update_dt`, as in
//! Vibetuner).

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use bson::{Bson, Document};
use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use super::query::{Filter, Index, Query};
use super::value::{Id, Timestamp, plain_api_json};
use super::{Collection, StoreError, Update};

/// Field holding the creation time.
pub const CREATED: &str = "db_insert_dt";
/// Field holding the last update time.
pub const UPDATED: &str = "db_update_dt";

/// A validation failure naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field (dotted path).
    pub field: String,
    /// What is wrong, for people.
    pub message: String,
}

impl FieldError {
    /// A failure on `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An app type stored in a collection.
///
/// ```no_run
/// use vibetuner::prelude::*;
///
/// #[derive(Clone, Serialize, Deserialize, JsonSchema)]
/// struct Note { title: String, body: String }
///
/// impl Model for Note {
///     const COLLECTION: &'static str = "notes";
///     fn indexes() -> Vec<Index> { vec![Index::on(["title"])] }
/// }
/// ```
pub trait Model:
    Serialize + DeserializeOwned + schemars::JsonSchema + Clone + Send + Sync + 'static
{
    /// The collection name.
    const COLLECTION: &'static str;

    /// Indexes created at startup and by `db ensure-indexes`.
    fn indexes() -> Vec<Index> {
        Vec::new()
    }

    /// Checks values beyond their types (run before every write from the CRUD routes).
    fn validate(&self) -> Result<(), FieldError> {
        Ok(())
    }
}

/// A stored model: its id, timestamps and data. Serializes (for JSON and templates) as the data's
/// fields plus `id`, `db_insert_dt` and `db_update_dt`, with ids and dates as strings.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<T> {
    /// The document id.
    pub id: Id,
    /// When it was inserted (absent on documents written by other tools).
    pub created: Option<Timestamp>,
    /// When it was last updated.
    pub updated: Option<Timestamp>,
    /// The model.
    pub data: T,
}

impl<T> Deref for Record<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.data
    }
}

impl<T> DerefMut for Record<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.data
    }
}

impl<T: Serialize + DeserializeOwned> Record<T> {
    /// Decodes a stored document.
    pub fn from_document(mut doc: Document) -> Result<Self, StoreError> {
        let id = match doc.remove("_id") {
            Some(Bson::ObjectId(id)) => Id(id),
            other => {
                return Err(StoreError::Decode(format!(
                    "expected an ObjectId _id, found {other:?}"
                )));
            }
        };
        let created = take_time(&mut doc, CREATED);
        let updated = take_time(&mut doc, UPDATED);
        let data = bson::from_document(doc)
            .map_err(|e| StoreError::Decode(format!("document {id}: {e}")))?;
        Ok(Self {
            id,
            created,
            updated,
            data,
        })
    }

    /// The stored document: `_id`, the data's fields, then the timestamps.
    pub fn to_document(&self) -> Result<Document, StoreError> {
        let mut doc = Document::new();
        doc.insert("_id", self.id);
        doc.extend(data_document(&self.data)?);
        if let Some(t) = self.created {
            doc.insert(CREATED, t);
        }
        if let Some(t) = self.updated {
            doc.insert(UPDATED, t);
        }
        Ok(doc)
    }

    /// The API form: `{"id": "...", ...fields, "db_insert_dt": "...", "db_update_dt": "..."}`.
    ///
    /// The data goes to JSON directly (no BSON document in between); ids and dates, which
    /// serialize as `{"$oid": ..}` / `{"$date": ..}`, become plain strings by the same rule as
    /// a document's (`doc_to_api_json`).
    pub fn to_json(&self) -> Map<String, Value> {
        let Ok(Value::Object(fields)) = serde_json::to_value(&self.data) else {
            return Map::new();
        };
        let mut out = Map::new();
        out.insert("id".into(), Value::String(self.id.to_string()));
        for (key, mut value) in fields {
            plain_api_json(&mut value);
            out.insert(key, value);
        }
        for (key, time) in [(CREATED, self.created), (UPDATED, self.updated)] {
            if let Some(time) = time {
                out.insert(key.into(), Value::String(time.to_rfc3339()));
            }
        }
        out
    }
}

impl<T: Serialize + DeserializeOwned> Serialize for Record<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

fn take_time(doc: &mut Document, key: &str) -> Option<Timestamp> {
    match doc.remove(key) {
        Some(Bson::DateTime(dt)) => Some(Timestamp::from_millis(dt.timestamp_millis())),
        _ => None,
    }
}

/// Serializes model data to a document (its fields must form a map).
pub(crate) fn data_document<T: Serialize>(data: &T) -> Result<Document, StoreError> {
    bson::to_document(data)
        .map_err(|e| StoreError::Invalid(format!("cannot store this value: {e}")))
}

/// The top-level fields a model's schema declares, computed once per type (`save` is a hot path).
fn declared_fields<T: schemars::JsonSchema + 'static>() -> std::sync::Arc<[String]> {
    use std::any::TypeId;
    use std::collections::HashMap;
    use std::sync::{Arc, LazyLock, RwLock};
    static FIELDS: LazyLock<RwLock<HashMap<TypeId, Arc<[String]>>>> =
        LazyLock::new(Default::default);
    if let Some(known) = FIELDS.read().expect("fields lock").get(&TypeId::of::<T>()) {
        return known.clone();
    }
    let fields: Arc<[String]> = schemars::schema_for!(T)
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    FIELDS
        .write()
        .expect("fields lock")
        .insert(TypeId::of::<T>(), fields.clone());
    fields
}

/// The typed view of a model's collection.
pub struct Models<T> {
    coll: Collection,
    _model: PhantomData<fn() -> T>,
}

impl<T> Clone for Models<T> {
    fn clone(&self) -> Self {
        Self {
            coll: self.coll.clone(),
            _model: PhantomData,
        }
    }
}

impl<T: Model> Models<T> {
    pub(super) fn new(coll: Collection) -> Self {
        Self {
            coll,
            _model: PhantomData,
        }
    }

    /// The untyped collection underneath.
    pub fn collection(&self) -> &Collection {
        &self.coll
    }

    /// Stores a new model with a new id and both timestamps set to now.
    pub async fn insert(&self, data: T) -> Result<Record<T>, StoreError> {
        let now = Timestamp::now();
        let record = Record {
            id: Id::new(),
            created: Some(now),
            updated: Some(now),
            data,
        };
        self.coll.insert(record.to_document()?).await?;
        Ok(record)
    }

    /// The model with this id.
    pub async fn get(&self, id: Id) -> Result<Option<Record<T>>, StoreError> {
        self.coll
            .get(id)
            .await?
            .map(Record::from_document)
            .transpose()
    }

    /// Models matching the query.
    pub async fn find(&self, query: &Query) -> Result<Vec<Record<T>>, StoreError> {
        self.coll
            .find(query)
            .await?
            .into_iter()
            .map(Record::from_document)
            .collect()
    }

    /// The first model matching `filter`.
    pub async fn find_one(&self, filter: Filter) -> Result<Option<Record<T>>, StoreError> {
        self.coll
            .find_one(filter)
            .await?
            .map(Record::from_document)
            .transpose()
    }

    /// The first model matching `filter`, or a new one made by `make` and inserted; `true` when
    /// inserted. Safe against a concurrent insert of the same model when a unique index covers
    /// `filter`'s fields: the loser of the race gets the winner's model (Django's
    /// `get_or_create`).
    pub async fn find_or_insert(
        &self,
        filter: Filter,
        make: impl FnOnce() -> T,
    ) -> Result<(Record<T>, bool), StoreError> {
        if let Some(found) = self.find_one(filter.clone()).await? {
            return Ok((found, false));
        }
        match self.insert(make()).await {
            Ok(record) => Ok((record, true)),
            Err(StoreError::Duplicate { index }) => match self.find_one(filter).await? {
                Some(found) => Ok((found, false)),
                None => Err(StoreError::Duplicate { index }),
            },
            Err(e) => Err(e),
        }
    }

    /// How many models match.
    pub async fn count(&self, filter: &Filter) -> Result<u64, StoreError> {
        self.coll.count(filter).await
    }

    /// Applies a partial update and touches `db_update_dt`; returns the updated model.
    pub async fn update(
        &self,
        id: Id,
        mut update: Update,
    ) -> Result<Option<Record<T>>, StoreError> {
        update.set.insert(UPDATED, Timestamp::now());
        self.coll
            .update(id, update)
            .await?
            .map(Record::from_document)
            .transpose()
    }

    /// Writes every field of the record's data and touches `db_update_dt`; a field the data
    /// leaves out (an `Option` skipped when `None`) is removed from the stored document.
    pub async fn save(&self, record: &mut Record<T>) -> Result<(), StoreError> {
        let now = Timestamp::now();
        let mut set = data_document(&record.data)?;
        let unset = declared_fields::<T>()
            .iter()
            .filter(|f| !set.contains_key(f.as_str()))
            .cloned()
            .collect();
        set.insert(UPDATED, now);
        match self.coll.update(record.id, Update { set, unset }).await? {
            Some(_) => {
                record.updated = Some(now);
                Ok(())
            }
            None => Err(StoreError::Invalid(format!(
                "{} {} no longer exists",
                T::COLLECTION,
                record.id
            ))),
        }
    }

    /// Deletes the model with this id; true when there was one.
    pub async fn delete(&self, id: Id) -> Result<bool, StoreError> {
        self.coll.delete(id).await
    }

    /// Deletes every model matching `filter`.
    pub async fn delete_many(&self, filter: Filter) -> Result<u64, StoreError> {
        self.coll.delete_many(filter).await
    }

    /// Creates the model's declared indexes.
    pub async fn ensure_indexes(&self) -> Result<usize, StoreError> {
        let indexes = T::indexes();
        for index in &indexes {
            self.coll.create_index(index).await?;
        }
        Ok(indexes.len())
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::super::value::doc_to_api_json;
    use super::*;

    #[derive(Debug, Clone, Serialize, Deserialize)]
    enum Kind {
        Plain,
        Tagged { weight: f64 },
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct Inner {
        at: Timestamp,
        refs: Vec<Id>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct Everything {
        title: String,
        count: i64,
        small: u8,
        ratio: f64,
        whole: f64,
        done: bool,
        owner: Id,
        due: Option<Timestamp>,
        never: Option<Timestamp>,
        tags: Vec<String>,
        inner: Inner,
        kinds: Vec<Kind>,
        raw: bson::DateTime,
        oid: bson::oid::ObjectId,
        map: std::collections::BTreeMap<String, Id>,
    }

    #[test]
    fn api_json_straight_from_the_data_equals_the_one_through_bson() {
        let id = Id::new();
        let record = Record {
            id,
            created: Some(Timestamp::from_millis(1_700_000_000_123)),
            updated: None,
            data: Everything {
                title: "quote \" é".into(),
                count: -5_000_000_000,
                small: 7,
                ratio: 0.25,
                whole: 2.0,
                done: true,
                owner: Id::new(),
                due: Some(Timestamp::from_millis(-86_400_000)),
                never: None,
                tags: vec!["a".into(), "b".into()],
                inner: Inner {
                    at: Timestamp::from_millis(253_402_300_799_999),
                    refs: vec![Id::new(), Id::new()],
                },
                kinds: vec![Kind::Plain, Kind::Tagged { weight: 1.5 }],
                raw: bson::DateTime::from_millis(1),
                oid: bson::oid::ObjectId::new(),
                map: [("k".to_owned(), Id::new())].into(),
            },
        };
        let through_bson = doc_to_api_json(&record.to_document().unwrap());
        assert_eq!(record.to_json(), through_bson);
        assert_eq!(record.to_json()["id"], id.to_string());
        assert_eq!(
            serde_json::to_value(&record).unwrap(),
            Value::Object(through_bson)
        );
    }
}
