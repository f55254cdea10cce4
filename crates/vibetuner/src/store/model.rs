//! Typed models: an app type stored in a collection, wrapped in a [`Record`] with its id and
//! the creation/update timestamps the store maintains (`db_insert_dt`, `db_update_dt`, as in
//! Vibetuner).

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use bson::{Bson, Document};
use serde::de::value::CowStrDeserializer;
use serde::de::{DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use super::api_json::flatten_into;
use super::collection::{Backend, Collection, check_query, dispatch};
use super::embedded;
use super::error::StoreError;
use super::query::Update;
use super::query::{Filter, Index, Query};
use super::value::{Id, Text, Timestamp};

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

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid field `{}`: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

impl crate::error::HttpStatus for FieldError {
    /// 422, as the CRUD routes answer a model that fails validation.
    fn status(&self) -> axum::http::StatusCode {
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    }
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

    /// Decodes a row of the embedded store: the id column and the stored JSON.
    ///
    /// The JSON goes straight into the model, with the timestamps taken out on the way, with
    /// no BSON document in between. What that cannot read (a binary field, an infinite float,
    /// a timestamp of another type) takes the document path, whose rules and errors are the
    /// reference.
    pub(super) fn from_stored(id: &str, json: &str) -> Result<Self, StoreError> {
        if let Some(record) = id
            .parse()
            .ok()
            .and_then(|id| Self::read_stored(id, json).ok())
        {
            return Ok(record);
        }
        Self::from_document(embedded::document(id, json)?)
    }

    /// The direct read of [`Record::from_stored`].
    fn read_stored(id: Id, json: &str) -> serde_json::Result<Self> {
        let mut times = Times::default();
        let mut de = serde_json::Deserializer::from_str(json);
        let data = T::deserialize(Split {
            inner: &mut de,
            times: &mut times,
        })?;
        de.end()?;
        Ok(Self {
            id,
            created: times.created,
            updated: times.updated,
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

    /// The API form: `{"id": "...", ...fields, "db_insert_dt": "...", "db_update_dt": "..."}`
    /// (what [`Record`] serializes as).
    pub fn to_json(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }
}

/// Straight to the API's form (`api_json`): the id, the data's fields with ids and dates as
/// strings, then the timestamps. Data fields named like those three are the record's and are
/// left out.
impl<T: Serialize> Serialize for Record<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("id", self.id.hex_digits().as_str())?;
        flatten_into(&mut map, &self.data, &["id", CREATED, UPDATED])?;
        for (key, time) in [(CREATED, self.created), (UPDATED, self.updated)] {
            if let Some(time) = time {
                map.serialize_entry(key, &time.to_rfc3339())?;
            }
        }
        map.end()
    }
}

fn take_time(doc: &mut Document, key: &str) -> Option<Timestamp> {
    match doc.remove(key) {
        Some(Bson::DateTime(dt)) => Some(Timestamp::from_millis(dt.timestamp_millis())),
        _ => None,
    }
}

/// The timestamps [`Split`] takes out of a stored document.
#[derive(Default)]
struct Times {
    created: Option<Timestamp>,
    updated: Option<Timestamp>,
}

/// A stored document's JSON as a deserializer of the model alone: `_id` and the timestamps are
/// taken out of the map (into `times`) before the model's visitor sees its entries, as
/// [`Record::from_document`] removes them from the document.
struct Split<'a, D> {
    inner: D,
    times: &'a mut Times,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Split<'_, D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_map(SplitVisitor {
            inner: visitor,
            times: self.times,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

struct SplitVisitor<'a, V> {
    inner: V,
    times: &'a mut Times,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for SplitVisitor<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(SplitMap {
            inner: map,
            times: self.times,
        })
    }
}

struct SplitMap<'a, A> {
    inner: A,
    times: &'a mut Times,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for SplitMap<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        while let Some(Text(key)) = self.inner.next_key()? {
            match &*key {
                "_id" => {
                    self.inner.next_value::<IgnoredAny>()?;
                }
                CREATED => self.times.created = self.inner.next_value()?,
                UPDATED => self.times.updated = self.inner.next_value()?,
                _ => return seed.deserialize(CowStrDeserializer::new(key)).map(Some),
            }
        }
        Ok(None)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
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
        self.coll.get_record(id).await
    }

    /// Models matching the query (a [`Query`], a [`Filter`], or a reference to either).
    pub async fn find(&self, query: impl Into<Query>) -> Result<Vec<Record<T>>, StoreError> {
        self.coll.find_records(&query.into()).await
    }

    /// A page of models and how many match the query's filter in all (what a paginated list
    /// shows); on the embedded store both come from one snapshot.
    pub async fn page(&self, query: impl Into<Query>) -> Result<(Vec<Record<T>>, u64), StoreError> {
        self.coll.page_records(&query.into()).await
    }

    /// The first model matching `filter`.
    pub async fn find_one(
        &self,
        filter: impl Into<Filter>,
    ) -> Result<Option<Record<T>>, StoreError> {
        Ok(self
            .find(Query::filter(filter.into()).limit(1))
            .await?
            .pop())
    }

    /// [`Models::find_one`] for a read every request repeats (its session): the embedded store
    /// answers it from memory while the database is unchanged.
    pub(crate) async fn find_one_remembered(
        &self,
        filter: Filter,
    ) -> Result<Option<Record<T>>, StoreError> {
        self.coll.find_one_remembered(filter).await
    }

    /// The first model matching `filter`, or a new one made by `make` and inserted; `true` when
    /// inserted. Safe against a concurrent insert of the same model when a unique index covers
    /// `filter`'s fields: the loser of the race gets the winner's model (Django's
    /// `get_or_create`).
    pub async fn find_or_insert(
        &self,
        filter: impl Into<Filter>,
        make: impl FnOnce() -> T,
    ) -> Result<(Record<T>, bool), StoreError> {
        let filter = filter.into();
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
    pub async fn count(&self, filter: impl Into<Filter>) -> Result<u64, StoreError> {
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

    /// Applies a partial update only if the stored model has not changed since `record` was
    /// read (its `db_update_dt` is still the record's), touching `db_update_dt`: the updated
    /// model, or `None` when someone changed it first or it is gone (read it again and
    /// decide). Guards a read-modify-write, such as a task enriching a record a user edits,
    /// against lost updates; the check and the write are one atomic step.
    ///
    /// ```no_run
    /// # use vibetuner::prelude::*;
    /// # #[derive(Clone, Serialize, Deserialize, JsonSchema)]
    /// # struct Note { title: String, words: u32 }
    /// # impl Model for Note { const COLLECTION: &'static str = "notes"; }
    /// # use vibetuner::store::{bson, Models, StoreError};
    /// # async fn f(notes: Models<Note>, id: Id) -> Result<(), StoreError> {
    /// loop {
    ///     let Some(note) = notes.get(id).await? else { break };
    ///     let words = note.title.split_whitespace().count() as u32;
    ///     let set = Update::set(bson::doc! { "words": words });
    ///     if notes.update_if_unchanged(&note, set).await?.is_some() {
    ///         break;
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn update_if_unchanged(
        &self,
        record: &Record<T>,
        mut update: Update,
    ) -> Result<Option<Record<T>>, StoreError> {
        let Some(read_at) = record.updated else {
            return Err(StoreError::Invalid(format!(
                "{} {} has no {UPDATED} to compare (stored without one): use update",
                T::COLLECTION,
                record.id
            )));
        };
        // Strictly later than what was read, so the next check sees this write.
        let now = Timestamp::now().millis().max(read_at.millis() + 1);
        update.set.insert(UPDATED, Timestamp::from_millis(now));
        let unchanged = Filter::eq("_id", record.id).and(Filter::eq(UPDATED, read_at));
        self.coll
            .update_one(unchanged, update)
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
    pub async fn delete_many(&self, filter: impl Into<Filter>) -> Result<u64, StoreError> {
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

/// The typed reads of a collection: the embedded store reads its rows straight into models.
impl Collection {
    /// The model with this id; the embedded store reads its row straight into the model.
    pub(super) async fn get_record<T: Model>(
        &self,
        id: Id,
    ) -> Result<Option<Record<T>>, StoreError> {
        dispatch!(self,
            mongo(m) => m.find(&self.name, &Query::filter(Filter::eq("_id", id)).limit(1)).await?.pop().map(Record::from_document).transpose(),
            read(conn, coll) => embedded::get_row(conn, coll, &id.0, Record::from_stored))
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
    /// database changes ([`super::embedded::Memory`]).
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
    /// database changes ([`super::embedded::Memory`]): paging through an unchanged list counts once.
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

    fn everything() -> Record<Everything> {
        Record {
            id: Id::new(),
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
        }
    }

    #[test]
    fn api_json_straight_from_the_data_equals_the_one_through_bson() {
        let record = everything();
        let id = record.id;
        let through_bson = doc_to_api_json(&record.to_document().unwrap());
        assert_eq!(record.to_json(), through_bson);
        assert_eq!(record.to_json()["id"], id.to_string());
        assert_eq!(
            serde_json::to_value(&record).unwrap(),
            Value::Object(through_bson)
        );
    }

    /// The row the embedded store keeps for a record: the id column and the stored JSON.
    fn stored_row<T: Serialize + DeserializeOwned>(record: &Record<T>) -> (String, String) {
        let mut doc = record.to_document().unwrap();
        doc.remove("_id");
        let json = Value::Object(super::super::value::doc_to_stored_json(&doc)).to_string();
        (record.id.to_hex(), json)
    }

    #[test]
    fn stored_rows_read_straight_into_models_as_through_a_document() {
        let record = everything();
        let (id, json) = stored_row(&record);
        let direct = Record::<Everything>::read_stored(record.id, &json).unwrap();
        let through_doc =
            Record::<Everything>::from_document(embedded::document(&id, &json).unwrap()).unwrap();
        assert_eq!(direct.to_json(), through_doc.to_json());
        assert_eq!(direct.to_json(), record.to_json());
        assert_eq!(
            (direct.id, direct.created, direct.updated),
            (record.id, record.created, None)
        );
    }

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    struct Odd {
        bytes: bson::Binary,
        inf: f64,
    }

    #[test]
    fn rows_the_direct_read_cannot_take_go_through_the_document() {
        let record = Record {
            id: Id::new(),
            created: None,
            updated: Some(Timestamp::from_millis(5)),
            data: Odd {
                bytes: bson::Binary {
                    subtype: bson::spec::BinarySubtype::Generic,
                    bytes: vec![0, 1, 255],
                },
                inf: f64::INFINITY,
            },
        };
        let (id, json) = stored_row(&record);
        assert!(
            json.contains("$binary") && json.contains("Infinity"),
            "{json}"
        );
        assert!(Record::<Odd>::read_stored(record.id, &json).is_err());
        let back = Record::<Odd>::from_stored(&id, &json).unwrap();
        assert_eq!(back.data, record.data);
        assert_eq!(back.updated, record.updated);
        let broken = Record::<Odd>::from_stored(&id, r#"{"bytes": "nope"}"#).unwrap_err();
        assert!(matches!(broken, StoreError::Decode(_)), "{broken:?}");
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct Shadowing {
        id: String,
        db_insert_dt: String,
        title: String,
    }

    #[test]
    fn the_record_owns_id_and_timestamps_in_the_api_form() {
        let record = Record {
            id: Id::new(),
            created: Some(Timestamp::from_millis(0)),
            updated: None,
            data: Shadowing {
                id: "mine".into(),
                db_insert_dt: "never".into(),
                title: "t".into(),
            },
        };
        let text = serde_json::to_string(&record).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"id":"{}","title":"t","db_insert_dt":"1970-01-01T00:00:00.000Z"}}"#,
                record.id
            )
        );
    }
}
