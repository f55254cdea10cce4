//! Model data serialized straight into the API's form: what serde gives as BSON's `$oid` and
//! `$date` structs (ids, [`Timestamp`]s, `bson` values) comes out as the hex string and the
//! RFC 3339 time, as [`plain_api_json`](super::value::plain_api_json) turns a
//! `serde_json::Value` — without building one.
//!
//! [`Api`] wraps a value; every serializer it is given is wrapped in turn, all the way down.

use serde::ser::{
    self, Serialize, SerializeMap, SerializeSeq, SerializeStruct, SerializeStructVariant,
    SerializeTuple, SerializeTupleStruct, SerializeTupleVariant, Serializer,
};

use super::value::{Timestamp, date_millis};

/// A value that serializes in the API's form.
pub(super) struct Api<'a, T: ?Sized>(pub(super) &'a T);

impl<T: Serialize + ?Sized> Serialize for Api<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(ApiSerializer(serializer))
    }
}

/// Writes the fields of a struct or map (a model's data) as entries of `map`, each in the
/// API's form, leaving out the struct fields named in `skip`; anything else is an error.
pub(super) fn flatten_into<M: SerializeMap, T: Serialize + ?Sized>(
    map: &mut M,
    data: &T,
    skip: &[&str],
) -> Result<(), M::Error> {
    data.serialize(Fields { map, skip })
}

struct ApiSerializer<S>(S);

/// What an id or date struct is turned into once its one field is seen.
enum Tagged {
    Oid,
    Date,
}

impl Tagged {
    fn of(name: &str) -> Option<Self> {
        match name {
            "$oid" => Some(Self::Oid),
            "$date" => Some(Self::Date),
            _ => None,
        }
    }

    /// The plain string for the struct's field value.
    fn plain<E: ser::Error, T: Serialize + ?Sized>(&self, value: &T) -> Result<String, E> {
        let value = serde_json::to_value(value).map_err(E::custom)?;
        match (self, &value) {
            (Self::Oid, serde_json::Value::String(hex)) => Ok(hex.clone()),
            (Self::Date, body) => date_millis(body)
                .map(|ms| Timestamp::from_millis(ms).to_rfc3339())
                .ok_or_else(|| E::custom(format!("unreadable $date body {body}"))),
            (Self::Oid, other) => Err(E::custom(format!("unreadable $oid {other}"))),
        }
    }
}

/// The struct serializer of [`ApiSerializer`]: a plain struct, or an id or date on its way to
/// becoming a string.
enum Struct<S: Serializer> {
    Plain(S::SerializeStruct),
    Tagged(S, Tagged, Option<String>),
}

impl<S: Serializer> Serializer for ApiSerializer<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Compound<S::SerializeSeq>;
    type SerializeTuple = Compound<S::SerializeTuple>;
    type SerializeTupleStruct = Compound<S::SerializeTupleStruct>;
    type SerializeTupleVariant = Compound<S::SerializeTupleVariant>;
    type SerializeMap = Compound<S::SerializeMap>;
    type SerializeStruct = Struct<S>;
    type SerializeStructVariant = Compound<S::SerializeStructVariant>;

    fn serialize_bool(self, v: bool) -> Result<S::Ok, S::Error> {
        self.0.serialize_bool(v)
    }
    fn serialize_i8(self, v: i8) -> Result<S::Ok, S::Error> {
        self.0.serialize_i8(v)
    }
    fn serialize_i16(self, v: i16) -> Result<S::Ok, S::Error> {
        self.0.serialize_i16(v)
    }
    fn serialize_i32(self, v: i32) -> Result<S::Ok, S::Error> {
        self.0.serialize_i32(v)
    }
    fn serialize_i64(self, v: i64) -> Result<S::Ok, S::Error> {
        self.0.serialize_i64(v)
    }
    fn serialize_i128(self, v: i128) -> Result<S::Ok, S::Error> {
        self.0.serialize_i128(v)
    }
    fn serialize_u8(self, v: u8) -> Result<S::Ok, S::Error> {
        self.0.serialize_u8(v)
    }
    fn serialize_u16(self, v: u16) -> Result<S::Ok, S::Error> {
        self.0.serialize_u16(v)
    }
    fn serialize_u32(self, v: u32) -> Result<S::Ok, S::Error> {
        self.0.serialize_u32(v)
    }
    fn serialize_u64(self, v: u64) -> Result<S::Ok, S::Error> {
        self.0.serialize_u64(v)
    }
    fn serialize_u128(self, v: u128) -> Result<S::Ok, S::Error> {
        self.0.serialize_u128(v)
    }
    fn serialize_f32(self, v: f32) -> Result<S::Ok, S::Error> {
        self.0.serialize_f32(v)
    }
    fn serialize_f64(self, v: f64) -> Result<S::Ok, S::Error> {
        self.0.serialize_f64(v)
    }
    fn serialize_char(self, v: char) -> Result<S::Ok, S::Error> {
        self.0.serialize_char(v)
    }
    fn serialize_str(self, v: &str) -> Result<S::Ok, S::Error> {
        self.0.serialize_str(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<S::Ok, S::Error> {
        self.0.serialize_bytes(v)
    }
    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_none()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<S::Ok, S::Error> {
        self.0.serialize_some(&Api(v))
    }
    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit()
    }
    fn serialize_unit_struct(self, name: &'static str) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit_struct(name)
    }
    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit_variant(name, index, variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_newtype_struct(name, &Api(v))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0
            .serialize_newtype_variant(name, index, variant, &Api(v))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        self.0.serialize_seq(len).map(Compound)
    }
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        self.0.serialize_tuple(len).map(Compound)
    }
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        self.0.serialize_tuple_struct(name, len).map(Compound)
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        self.0
            .serialize_tuple_variant(name, index, variant, len)
            .map(Compound)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        self.0.serialize_map(len).map(Compound)
    }
    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        match Tagged::of(name) {
            Some(tag) if len == 1 => Ok(Struct::Tagged(self.0, tag, None)),
            _ => self.0.serialize_struct(name, len).map(Struct::Plain),
        }
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        self.0
            .serialize_struct_variant(name, index, variant, len)
            .map(Compound)
    }
    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

impl<S: Serializer> SerializeStruct for Struct<S> {
    type Ok = S::Ok;
    type Error = S::Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), S::Error> {
        match self {
            Self::Plain(inner) => inner.serialize_field(key, &Api(value)),
            Self::Tagged(_, tag, plain) => {
                *plain = Some(tag.plain(value)?);
                Ok(())
            }
        }
    }

    fn end(self) -> Result<S::Ok, S::Error> {
        match self {
            Self::Plain(inner) => inner.end(),
            Self::Tagged(serializer, _, Some(plain)) => serializer.serialize_str(&plain),
            Self::Tagged(..) => Err(ser::Error::custom("an id or date without its value")),
        }
    }
}

/// A compound serializer whose elements are wrapped in [`Api`].
struct Compound<C>(C);

impl<C: SerializeSeq> SerializeSeq for Compound<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), C::Error> {
        self.0.serialize_element(&Api(v))
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

impl<C: SerializeTuple> SerializeTuple for Compound<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), C::Error> {
        self.0.serialize_element(&Api(v))
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

impl<C: SerializeTupleStruct> SerializeTupleStruct for Compound<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), C::Error> {
        self.0.serialize_field(&Api(v))
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

impl<C: SerializeTupleVariant> SerializeTupleVariant for Compound<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), C::Error> {
        self.0.serialize_field(&Api(v))
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

impl<C: SerializeMap> SerializeMap for Compound<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), C::Error> {
        self.0.serialize_key(k)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), C::Error> {
        self.0.serialize_value(&Api(v))
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

impl<C: SerializeStructVariant> SerializeStructVariant for Compound<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), C::Error> {
        self.0.serialize_field(key, &Api(v))
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

/// A serializer for a model's data that writes its fields into an open map.
struct Fields<'m, M> {
    map: &'m mut M,
    skip: &'m [&'m str],
}

fn not_fields<E: ser::Error>() -> E {
    E::custom("model data must serialize as a struct or a map")
}

impl<'m, M: SerializeMap> Serializer for Fields<'m, M> {
    type Ok = ();
    type Error = M::Error;
    type SerializeSeq = ser::Impossible<(), M::Error>;
    type SerializeTuple = ser::Impossible<(), M::Error>;
    type SerializeTupleStruct = ser::Impossible<(), M::Error>;
    type SerializeTupleVariant = ser::Impossible<(), M::Error>;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = ser::Impossible<(), M::Error>;

    fn serialize_bool(self, _: bool) -> Result<(), M::Error> {
        Err(not_fields())
    }
    fn serialize_i8(self, _: i8) -> Result<(), M::Error> {
        Err(not_fields())
    }
    fn serialize_i16(self, _: i16) -> Result<(), M::Error> {
        Err(not_fields())
    }
    fn serialize_i32(self, _: i32) -> Result<(), M::Error> {
        Err(not_fields())
    }
    fn serialize_i64(self, _: i64) -> Result<(), M::Error> {
        Err(not_fields())
    }
    fn serialize_u8(self, _: u8) -> Result<(), M::Error> {
        Err(not_fields())
    }
    fn serialize_u16(self, _: u16) -> Result<(), M::Error> {
        Err(not_fields())
    }
    fn serialize_u32(self, _: u32) -> Result<(), M::Error> {
        Err(not_fields())
    }
    fn serialize_u64(self, _: u64) -> Result<(), M::Error> {
        Err(not_fields())
    }
    fn serialize_f32(self, _: f32) -> Result<(), M::Error> {
        Err(not_fields())
    }
    fn serialize_f64(self, _: f64) -> Result<(), M::Error> {
        Err(not_fields())
    }
    fn serialize_char(self, _: char) -> Result<(), M::Error> {
        Err(not_fields())
    }
    fn serialize_str(self, _: &str) -> Result<(), M::Error> {
        Err(not_fields())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), M::Error> {
        Err(not_fields())
    }
    fn serialize_none(self) -> Result<(), M::Error> {
        Err(not_fields())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), M::Error> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), M::Error> {
        Err(not_fields())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), M::Error> {
        Err(not_fields())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), M::Error> {
        Err(not_fields())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), M::Error> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), M::Error> {
        Err(not_fields())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, M::Error> {
        Err(not_fields())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, M::Error> {
        Err(not_fields())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, M::Error> {
        Err(not_fields())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, M::Error> {
        Err(not_fields())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, M::Error> {
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, M::Error> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, M::Error> {
        Err(not_fields())
    }
}

impl<M: SerializeMap> SerializeStruct for Fields<'_, M> {
    type Ok = ();
    type Error = M::Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), M::Error> {
        if self.skip.contains(&key) {
            return Ok(());
        }
        self.map.serialize_entry(key, &Api(v))
    }
    fn skip_field(&mut self, _: &'static str) -> Result<(), M::Error> {
        Ok(())
    }
    fn end(self) -> Result<(), M::Error> {
        Ok(())
    }
}

impl<M: SerializeMap> SerializeMap for Fields<'_, M> {
    type Ok = ();
    type Error = M::Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), M::Error> {
        self.map.serialize_key(k)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), M::Error> {
        self.map.serialize_value(&Api(v))
    }
    fn end(self) -> Result<(), M::Error> {
        Ok(())
    }
}
