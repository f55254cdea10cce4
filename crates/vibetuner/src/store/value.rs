//! Ids, timestamps and the two JSON renderings of a BSON value: the API form (ids and dates as
//! strings) and the embedded store's form (types kept as `$oid` / `$date`, dates sortable as text).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use bson::oid::ObjectId;
use bson::{Bson, Document};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// A document id: an ObjectId on both backends, written as 24 hex digits in JSON and URLs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(pub ObjectId);

impl Id {
    /// A new id (time-ordered, unique).
    pub fn new() -> Self {
        Self(ObjectId::new())
    }

    /// The 24-digit hex form.
    pub fn to_hex(&self) -> String {
        self.hex_digits().as_str().to_owned()
    }

    /// The hex digits on the stack (`ObjectId::to_hex` goes through a char iterator).
    pub(super) fn hex_digits(&self) -> HexDigits {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 24];
        for (i, byte) in self.0.bytes().iter().enumerate() {
            out[2 * i] = DIGITS[usize::from(byte >> 4)];
            out[2 * i + 1] = DIGITS[usize::from(byte & 0xf)];
        }
        HexDigits(out)
    }
}

/// An id's 24 hex digits.
pub(super) struct HexDigits([u8; 24]);

impl HexDigits {
    pub(super) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

impl Default for Id {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hex_digits().as_str())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({self})")
    }
}

/// An id that is not 24 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a valid id (expected 24 hex digits)")]
pub struct InvalidId(pub String);

impl FromStr for Id {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        ObjectId::parse_str(s)
            .map(Self)
            .map_err(|_| InvalidId(s.to_owned()))
    }
}

impl crate::error::HttpStatus for InvalidId {
    /// 404: an id that cannot exist names no record.
    fn status(&self) -> axum::http::StatusCode {
        axum::http::StatusCode::NOT_FOUND
    }
}

impl From<ObjectId> for Id {
    fn from(oid: ObjectId) -> Self {
        Self(oid)
    }
}

impl From<Id> for Bson {
    fn from(id: Id) -> Self {
        Bson::ObjectId(id.0)
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        ObjectId::deserialize(deserializer).map(Self)
    }
}

impl schemars::JsonSchema for Id {
    fn schema_name() -> Cow<'static, str> {
        "Id".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "pattern": "^[0-9a-f]{24}$" })
    }
}

/// A map key or short string read without a copy when the input allows it.
pub(super) struct Text<'de>(pub(super) Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// A UTC instant with millisecond precision: a BSON date in the database, an RFC 3339 string in
/// JSON (and accepted as one from JSON input).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Timestamp(pub DateTime<Utc>);

impl Timestamp {
    /// The current time, truncated to milliseconds (what the database keeps).
    pub fn now() -> Self {
        Self::from_millis(Utc::now().timestamp_millis())
    }

    /// From milliseconds since the Unix epoch.
    pub fn from_millis(ms: i64) -> Self {
        Self(DateTime::from_timestamp_millis(ms).unwrap_or_default())
    }

    /// Milliseconds since the Unix epoch.
    pub fn millis(&self) -> i64 {
        self.0.timestamp_millis()
    }

    /// RFC 3339 with milliseconds and `Z`, e.g. `2026-11-21T10:00:00.000Z`.
    pub fn to_rfc3339(&self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::Millis, true)
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(dt: DateTime<Utc>) -> Self {
        Self::from_millis(dt.timestamp_millis())
    }
}

impl From<Timestamp> for Bson {
    fn from(ts: Timestamp) -> Self {
        Bson::DateTime(bson::DateTime::from_millis(ts.millis()))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        bson::DateTime::from_millis(self.millis()).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TimestampVisitor)
    }
}

/// Reads an RFC 3339 string (API input) or a BSON date as serializers present one: the map
/// `{"$date": body}` with the body an RFC 3339 string, `{"$numberLong": "…"}` or a number of
/// milliseconds. Read here rather than through `Bson`, whose untagged `$date` body builds an
/// error message for every date it reads.
struct TimestampVisitor;

impl<'de> Visitor<'de> for TimestampVisitor {
    type Value = Timestamp;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a date-time")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Timestamp, E> {
        parse_rfc3339(s).ok_or_else(|| {
            E::custom(format!(
                "{s:?} is not an RFC 3339 date-time such as 2026-01-31T09:30:00Z"
            ))
        })
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Timestamp, A::Error> {
        match map.next_key::<Text<'de>>()?.as_ref().map(|t| &*t.0) {
            Some("$date") => {}
            Some(other) => {
                return Err(de::Error::custom(format!(
                    "expected a date-time, found a document with {other:?}"
                )));
            }
            None => return Err(de::Error::custom("expected a date-time, found {}")),
        }
        let ms = map.next_value::<DateBody>()?.0;
        if map.next_key::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("a $date document has one field"));
        }
        Ok(Timestamp::from_millis(ms))
    }
}

/// The milliseconds in a `$date` body.
struct DateBody(i64);

impl<'de> Deserialize<'de> for DateBody {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DateBodyVisitor)
    }
}

struct DateBodyVisitor;

impl<'de> Visitor<'de> for DateBodyVisitor {
    type Value = DateBody;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a $date body: an RFC 3339 string, {\"$numberLong\": ..} or milliseconds")
    }

    fn visit_i64<E: de::Error>(self, ms: i64) -> Result<DateBody, E> {
        Ok(DateBody(ms))
    }

    fn visit_u64<E: de::Error>(self, ms: u64) -> Result<DateBody, E> {
        i64::try_from(ms)
            .map(DateBody)
            .map_err(|_| E::custom("$date is out of range"))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<DateBody, E> {
        parse_rfc3339(s)
            .map(|t| DateBody(t.millis()))
            .ok_or_else(|| E::custom(format!("$date {s:?} is not an RFC 3339 date-time")))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<DateBody, A::Error> {
        let shape = || de::Error::custom("a $date body document is {\"$numberLong\": \"…\"}");
        let Some((Text(key), Text(long))) = map.next_entry()? else {
            return Err(shape());
        };
        if key != "$numberLong" || map.next_key::<de::IgnoredAny>()?.is_some() {
            return Err(shape());
        }
        long.parse()
            .map(DateBody)
            .map_err(|_| de::Error::custom(format!("$numberLong {long:?} is not a whole number")))
    }
}

fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|dt| Timestamp::from(dt.with_timezone(&Utc)))
}

impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "format": "date-time" })
    }
}

/// The API rendering of a value: ObjectIds as hex strings, dates as RFC 3339 strings.
pub fn to_api_json(value: &Bson) -> Value {
    let mut json = value.clone().into_relaxed_extjson();
    plain_api_json(&mut json);
    json
}

/// Turns Extended JSON ids and dates (`{"$oid": "…"}`, `{"$date": …}`) into what the API
/// writes: the hex string and the RFC 3339 time. Both BSON values ([`to_api_json`]) and models
/// serialized with serde_json (`Record::to_json`) come out this way.
pub(super) fn plain_api_json(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.len() == 1 {
                if let Some(Value::String(hex)) = map.get("$oid") {
                    *value = Value::String(hex.clone());
                    return;
                }
                if let Some(ms) = map.get("$date").and_then(date_millis) {
                    *value = Value::String(Timestamp::from_millis(ms).to_rfc3339());
                    return;
                }
            }
            map.values_mut().for_each(plain_api_json);
        }
        Value::Array(items) => items.iter_mut().for_each(plain_api_json),
        _ => {}
    }
}

/// The milliseconds of a `$date` body: `{"$numberLong": "…"}` or an RFC 3339 string.
pub(super) fn date_millis(body: &Value) -> Option<i64> {
    match body {
        Value::Object(long) => long.get("$numberLong")?.as_str()?.parse().ok(),
        Value::String(text) => DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.timestamp_millis()),
        _ => None,
    }
}

/// [`to_api_json`] for a whole document, with `_id` renamed to `id`.
pub fn doc_to_api_json(doc: &Document) -> Map<String, Value> {
    doc.iter()
        .map(|(k, v)| {
            let key = if k == "_id" {
                "id".to_owned()
            } else {
                k.clone()
            };
            (key, to_api_json(v))
        })
        .collect()
}

/// The embedded store's rendering: Extended JSON whose dates always have millisecond precision,
/// so that dates compare correctly as text.
pub(super) fn to_stored_json(value: &Bson) -> Value {
    match value {
        Bson::DateTime(dt) => {
            let ts = Timestamp::from_millis(dt.timestamp_millis());
            let mut map = Map::new();
            let year = ts.0.format("%Y").to_string();
            if year.len() == 4 && !year.starts_with('-') {
                map.insert("$date".into(), Value::String(ts.to_rfc3339()));
            } else {
                map.insert(
                    "$date".into(),
                    serde_json::json!({ "$numberLong": ts.millis().to_string() }),
                );
            }
            Value::Object(map)
        }
        Bson::Document(doc) => Value::Object(doc_to_stored_json(doc)),
        Bson::Array(items) => Value::Array(items.iter().map(to_stored_json).collect()),
        other => other.clone().into_relaxed_extjson(),
    }
}

/// [`to_stored_json`] for a whole document.
pub(super) fn doc_to_stored_json(doc: &Document) -> Map<String, Value> {
    doc.iter()
        .map(|(k, v)| (k.clone(), to_stored_json(v)))
        .collect()
}

/// Parses the embedded store's JSON back into a document.
///
/// Straight from the text into BSON (bson's deserializer reads the `$oid`, `$date`, ...
/// wrappers), without building a `serde_json::Value` first; integers then come out as
/// relaxed extended JSON reads them: `Int32` when they fit, else `Int64`.
pub(super) fn doc_from_stored_json(text: &str) -> Result<Document, String> {
    match serde_json::from_str::<Bson>(text).map_err(|e| e.to_string())? {
        Bson::Document(mut doc) => {
            narrow_ints(&mut doc);
            Ok(doc)
        }
        other => Err(format!("stored value is not a document: {other}")),
    }
}

/// Negative numbers arrive as `Int64` whatever their size: those that fit become `Int32`.
fn narrow_ints(doc: &mut Document) {
    for (_, value) in doc.iter_mut() {
        narrow_int(value);
    }
}

fn narrow_int(value: &mut Bson) {
    match value {
        Bson::Int64(n) => {
            if let Ok(small) = i32::try_from(*n) {
                *value = Bson::Int32(small);
            }
        }
        Bson::Document(doc) => narrow_ints(doc),
        Bson::Array(items) => items.iter_mut().for_each(narrow_int),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn ids_parse_and_print_as_hex() {
        let id = Id::new();
        assert_eq!(id.to_hex(), id.0.to_hex());
        assert_eq!(format!("{id:?}"), format!("Id({})", id.0.to_hex()));
        assert_eq!(id.to_string().parse::<Id>().unwrap(), id);
        assert!("nope".parse::<Id>().is_err());
        let json: Id = serde_json::from_str(&format!("\"{id}\"")).unwrap();
        assert_eq!(json, id);
    }

    #[test]
    fn timestamps_read_bson_dates_and_rfc3339() {
        let ts = Timestamp::now();
        let doc = bson::to_document(&doc! { "t": Bson::from(ts) }).unwrap();
        #[derive(Deserialize)]
        struct T {
            t: Timestamp,
        }
        let back: T = bson::from_document(doc).unwrap();
        assert_eq!(back.t, ts);
        let from_json: T = serde_json::from_str(r#"{"t":"2026-01-31T09:30:00+01:00"}"#).unwrap();
        assert_eq!(from_json.t.to_rfc3339(), "2026-01-31T08:30:00.000Z");
        assert!(serde_json::from_str::<T>(r#"{"t":"yesterday"}"#).is_err());
    }

    #[test]
    fn timestamps_read_every_date_form_and_refuse_others() {
        #[derive(Deserialize)]
        struct T {
            t: Timestamp,
        }
        let read = |json: &str| serde_json::from_str::<T>(json).map(|t| t.t.millis());
        assert_eq!(
            read(r#"{"t":{"$date":"1970-01-01T00:00:01.500Z"}}"#).unwrap(),
            1500
        );
        assert_eq!(
            read(r#"{"t":{"$date":{"$numberLong":"-86400000"}}}"#).unwrap(),
            -86_400_000
        );
        assert_eq!(read(r#"{"t":{"$date":42}}"#).unwrap(), 42);
        for bad in [
            r#"{"t":{"$oid":"0123456789abcdef01234567"}}"#,
            r#"{"t":{"$date":"soon"}}"#,
            r#"{"t":{"$date":{"$numberLong":"x"}}}"#,
            r#"{"t":{"$date":1,"extra":2}}"#,
            r#"{"t":{}}"#,
            r#"{"t":7}"#,
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
        // Through the BSON deserializer (the MongoDB backend), dates in and out of RFC 3339's range.
        for ms in [
            0,
            1_700_000_000_123,
            -99_999_999_999_999,
            253_402_300_800_000,
        ] {
            let doc = doc! { "t": bson::DateTime::from_millis(ms) };
            assert_eq!(bson::from_document::<T>(doc).unwrap().t.millis(), ms);
        }
    }

    #[test]
    fn stored_json_round_trips_and_sorts_dates_as_text() {
        let id = ObjectId::new();
        let doc = doc! {
            "_id": id, "n": 3_i64, "f": 1.5, "s": "x", "b": true, "nil": Bson::Null,
            "d": bson::DateTime::from_millis(1_700_000_000_000),
            "nested": { "list": [1_i64, "two"] },
        };
        let text = serde_json::to_string(&doc_to_stored_json(&doc)).unwrap();
        assert!(
            text.contains(r#""d":{"$date":"2023-11-14T22:13:20.000Z"}"#),
            "{text}"
        );
        let back = doc_from_stored_json(&text).unwrap();
        assert_eq!(back.get_object_id("_id").unwrap(), id);
        assert_eq!(
            back.get_datetime("d").unwrap().timestamp_millis(),
            1_700_000_000_000
        );
        assert_eq!(back.get_str("s").unwrap(), "x");
        assert!(back.get_bool("b").unwrap());
    }

    #[test]
    fn stored_json_reads_as_relaxed_extended_json_does() {
        let doc = doc! {
            "_id": ObjectId::new(), "small": 7_i64, "negative": -7_i64, "big": -5_000_000_000_i64,
            "huge": 9_000_000_000_i64, "f": -0.5, "whole": 2.0, "inf": f64::INFINITY,
            "d": bson::DateTime::from_millis(1_700_000_000_123),
            "old": bson::DateTime::from_millis(-99_999_999_999_999),
            "nested": { "list": [1_i64, -2_i64, "two", { "deep": -3_i32 }], "empty": {} },
            "bytes": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: vec![1, 2] },
            "text": "quote \" and \\ and é",
        };
        let text = serde_json::to_string(&doc_to_stored_json(&doc)).unwrap();
        let by_extjson = match Bson::try_from(serde_json::from_str::<Value>(&text).unwrap()) {
            Ok(Bson::Document(d)) => d,
            other => panic!("{other:?}"),
        };
        assert_eq!(doc_from_stored_json(&text).unwrap(), by_extjson, "{text}");
    }

    #[test]
    fn api_json_uses_plain_strings() {
        let id = ObjectId::new();
        let doc = doc! { "_id": id, "d": bson::DateTime::from_millis(0), "n": 1_i32 };
        let json = Value::Object(doc_to_api_json(&doc));
        assert_eq!(json["id"], id.to_hex());
        assert_eq!(json["d"], "1970-01-01T00:00:00.000Z");
        assert_eq!(json["n"], 1);
    }
}
