//! Backend-neutral queries and index declarations, with their MongoDB translation.
//!
//! The vocabulary is what both backends implement identically: equality, `$in`, ranges, a
//! case-insensitive substring search over fields, list membership, `and`/`or`, sorting, skip and
//! limit. Comparisons are type-bracketed as in MongoDB (a number never matches a string range).
//!
//! List (array) fields follow MongoDB: equality, `$in`, ranges and search on a list field match
//! when any element does (or, for equality with a list, the whole list is equal); sorting uses a
//! list's smallest element ascending and its largest descending, an empty list sorting before
//! `null`. [`Filter::contains`] matches list elements only. Paths that go *through* a list of
//! documents (`items.sku` where `items` is a list) are refused by the embedded store.

use std::time::Duration;

use bson::{Bson, Document, doc};

/// A comparison operator for range filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `$gt`
    Gt,
    /// `$gte`
    Gte,
    /// `$lt`
    Lt,
    /// `$lte`
    Lte,
}

impl Cmp {
    pub(crate) fn mongo(self) -> &'static str {
        match self {
            Self::Gt => "$gt",
            Self::Gte => "$gte",
            Self::Lt => "$lt",
            Self::Lte => "$lte",
        }
    }

    pub(crate) fn sql(self) -> &'static str {
        match self {
            Self::Gt => ">",
            Self::Gte => ">=",
            Self::Lt => "<",
            Self::Lte => "<=",
        }
    }
}

/// A condition on documents. Field names are dotted paths (`user_settings.language`); `_id` is the id.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Filter {
    /// Every document.
    #[default]
    All,
    /// The field equals the value (`null` also matches a missing field).
    Eq(String, Bson),
    /// The field equals one of the values.
    In(String, Vec<Bson>),
    /// The field is a list with an element equal to one of the values (`$elemMatch` + `$in`).
    Contains(String, Vec<Bson>),
    /// The field compares to the value (same BSON type family only).
    Cmp(String, Cmp, Bson),
    /// One of the fields is a string containing `text`, ignoring case (no pattern syntax).
    Search(Vec<String>, String),
    /// Every condition holds.
    And(Vec<Filter>),
    /// At least one condition holds.
    Or(Vec<Filter>),
}

impl Filter {
    /// `field == value`; on a list field, some element equals `value` (or the list equals it).
    pub fn eq(field: impl Into<String>, value: impl Into<Bson>) -> Self {
        Self::Eq(field.into(), value.into())
    }

    /// `field` is one of `values`; on a list field, some element is one of them.
    pub fn is_in<V: Into<Bson>>(
        field: impl Into<String>,
        values: impl IntoIterator<Item = V>,
    ) -> Self {
        Self::In(field.into(), values.into_iter().map(Into::into).collect())
    }

    /// `field` is a list with an element equal to `value` (`Filter::contains("tags", "web")`).
    /// Unlike [`Filter::eq`], a field that is not a list never matches.
    pub fn contains(field: impl Into<String>, value: impl Into<Bson>) -> Self {
        Self::Contains(field.into(), vec![value.into()])
    }

    /// `field` is a list with an element equal to one of `values` (no values: nothing matches).
    pub fn contains_any<V: Into<Bson>>(
        field: impl Into<String>,
        values: impl IntoIterator<Item = V>,
    ) -> Self {
        Self::Contains(field.into(), values.into_iter().map(Into::into).collect())
    }

    /// `field > value`.
    pub fn gt(field: impl Into<String>, value: impl Into<Bson>) -> Self {
        Self::Cmp(field.into(), Cmp::Gt, value.into())
    }

    /// `field >= value`.
    pub fn gte(field: impl Into<String>, value: impl Into<Bson>) -> Self {
        Self::Cmp(field.into(), Cmp::Gte, value.into())
    }

    /// `field < value`.
    pub fn lt(field: impl Into<String>, value: impl Into<Bson>) -> Self {
        Self::Cmp(field.into(), Cmp::Lt, value.into())
    }

    /// `field <= value`.
    pub fn lte(field: impl Into<String>, value: impl Into<Bson>) -> Self {
        Self::Cmp(field.into(), Cmp::Lte, value.into())
    }

    /// Case-insensitive substring search over `fields`; `text` is matched literally.
    pub fn search<S: Into<String>>(
        fields: impl IntoIterator<Item = S>,
        text: impl Into<String>,
    ) -> Self {
        Self::Search(fields.into_iter().map(Into::into).collect(), text.into())
    }

    /// This condition and `other`.
    pub fn and(self, other: Filter) -> Self {
        match (self, other) {
            (Self::All, f) | (f, Self::All) => f,
            (Self::And(mut a), Self::And(b)) => {
                a.extend(b);
                Self::And(a)
            }
            (Self::And(mut a), f) => {
                a.push(f);
                Self::And(a)
            }
            (f, g) => Self::And(vec![f, g]),
        }
    }

    /// The matching documents ordered by `field`: a [`Query`] to refine with `.sort`, `.skip`
    /// and `.limit`, without naming `Query` (the prelude's `Query` is axum's extractor).
    ///
    /// ```
    /// use vibetuner::{Filter, store::Order};
    /// let newest = Filter::eq("done", false).sort("db_insert_dt", Order::Desc).limit(50);
    /// assert_eq!(newest.limit, Some(50));
    /// ```
    pub fn sort(self, field: impl Into<String>, order: Order) -> Query {
        Query::filter(self).sort(field, order)
    }

    /// At most `n` matching documents, in id order: a [`Query`] (see [`Filter::sort`]).
    pub fn limit(self, n: u64) -> Query {
        Query::filter(self).limit(n)
    }

    /// Every field name the filter mentions.
    pub fn fields(&self) -> Vec<&str> {
        match self {
            Self::All => Vec::new(),
            Self::Eq(f, _) | Self::In(f, _) | Self::Contains(f, _) | Self::Cmp(f, _, _) => {
                vec![f.as_str()]
            }
            Self::Search(fields, _) => fields.iter().map(String::as_str).collect(),
            Self::And(items) | Self::Or(items) => items.iter().flat_map(Filter::fields).collect(),
        }
    }

    /// The MongoDB query document.
    pub fn to_mongo(&self) -> Document {
        match self {
            Self::All => Document::new(),
            Self::Eq(f, v) => doc! { f: { "$eq": v.clone() } },
            Self::In(f, vs) => doc! { f: { "$in": vs.clone() } },
            Self::Contains(f, vs) => doc! { f: { "$elemMatch": { "$in": vs.clone() } } },
            Self::Cmp(f, op, v) => doc! { f: { op.mongo(): v.clone() } },
            Self::Search(fields, text) => {
                let pattern = regex_escape(text);
                let any: Vec<Document> = fields
                    .iter()
                    .map(|f| doc! { f: { "$regex": pattern.as_str(), "$options": "i" } })
                    .collect();
                doc! { "$or": any }
            }
            Self::And(items) => {
                doc! { "$and": items.iter().map(Filter::to_mongo).collect::<Vec<_>>() }
            }
            Self::Or(items) => {
                doc! { "$or": items.iter().map(Filter::to_mongo).collect::<Vec<_>>() }
            }
        }
    }
}

/// Escapes every regex metacharacter so user input matches literally.
pub fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Smallest first (missing and null first).
    Asc,
    /// Largest first.
    Desc,
}

/// What to fetch: a filter, a sort (ties broken by `_id`), skip and limit.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Query {
    /// Which documents.
    pub filter: Filter,
    /// Sort keys in priority order.
    pub sort: Vec<(String, Order)>,
    /// Documents to skip.
    pub skip: u64,
    /// Most documents to return.
    pub limit: Option<u64>,
}

impl From<Filter> for Query {
    /// Every document matching the filter, in id order.
    fn from(filter: Filter) -> Self {
        Self::filter(filter)
    }
}

impl From<&Filter> for Query {
    fn from(filter: &Filter) -> Self {
        Self::filter(filter.clone())
    }
}

impl From<&Query> for Query {
    fn from(query: &Query) -> Self {
        query.clone()
    }
}

impl From<&Filter> for Filter {
    fn from(filter: &Filter) -> Self {
        filter.clone()
    }
}

impl Query {
    /// Every document, in id order.
    pub fn all() -> Self {
        Self::default()
    }

    /// Documents matching `filter`.
    pub fn filter(filter: Filter) -> Self {
        Self {
            filter,
            ..Self::default()
        }
    }

    /// Adds a sort key.
    pub fn sort(mut self, field: impl Into<String>, order: Order) -> Self {
        self.sort.push((field.into(), order));
        self
    }

    /// Skips `n` documents.
    pub fn skip(mut self, n: u64) -> Self {
        self.skip = n;
        self
    }

    /// Returns at most `n` documents.
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }

    /// The sort keys with the `_id` tie-breaker appended (stable pages on both backends).
    pub fn full_sort(&self) -> Vec<(String, Order)> {
        let mut sort = self.sort.clone();
        if !sort.iter().any(|(f, _)| f == "_id") {
            sort.push(("_id".into(), Order::Asc));
        }
        sort
    }

    /// The MongoDB sort document.
    pub fn mongo_sort(&self) -> Document {
        self.full_sort()
            .into_iter()
            .map(|(f, o)| (f, Bson::Int32(if o == Order::Asc { 1 } else { -1 })))
            .collect()
    }
}

/// An index declaration: keys with directions, uniqueness, sparseness, and an optional TTL.
#[derive(Debug, Clone, PartialEq)]
pub struct Index {
    /// Fields with their order.
    pub keys: Vec<(String, Order)>,
    /// Refuse two documents with the same key values.
    pub unique: bool,
    /// Leave out documents that lack the key, so a unique index allows many of them.
    pub sparse: bool,
    /// Delete documents this long after the (date) value of the single key field.
    pub ttl: Option<Duration>,
    /// Explicit name (default: MongoDB's `field_1_other_-1`).
    pub name: Option<String>,
}

impl Index {
    /// An ascending index on one or more fields (compound when several).
    pub fn on<S: Into<String>>(fields: impl IntoIterator<Item = S>) -> Self {
        Self {
            keys: fields.into_iter().map(|f| (f.into(), Order::Asc)).collect(),
            unique: false,
            sparse: false,
            ttl: None,
            name: None,
        }
    }

    /// Makes the index unique.
    pub fn unique(mut self) -> Self {
        self.unique = true;
        self
    }

    /// Makes the index sparse: documents without the field are not indexed (MongoDB's `sparse`;
    /// the embedded store never treats missing values as equal, so it behaves this way already).
    pub fn sparse(mut self) -> Self {
        self.sparse = true;
        self
    }

    /// Expires documents `after` the date in the (single) key field.
    pub fn ttl(mut self, after: Duration) -> Self {
        self.ttl = Some(after);
        self
    }

    /// Makes every key descending (a distinct key pattern from the ascending one, so both can
    /// exist with different options).
    pub fn desc(mut self) -> Self {
        for (_, order) in &mut self.keys {
            *order = Order::Desc;
        }
        self
    }

    /// Sets the index name.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The index name: the explicit one or MongoDB's default.
    pub fn index_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            self.keys
                .iter()
                .map(|(f, o)| format!("{f}_{}", if *o == Order::Asc { 1 } else { -1 }))
                .collect::<Vec<_>>()
                .join("_")
        })
    }
}

impl Index {
    /// Whether `self` (an existing index) stops `wanted` from being created as declared: same
    /// name or same key pattern, but not the same index (MongoDB refuses both).
    pub(crate) fn blocks(&self, wanted: &Index) -> bool {
        let same_name = self.index_name() == wanted.index_name();
        let same_keys = self.keys == wanted.keys;
        let same_options =
            self.unique == wanted.unique && self.sparse == wanted.sparse && self.ttl == wanted.ttl;
        (same_name || same_keys) && !(same_name && same_keys && same_options)
    }
}

impl std::fmt::Display for Index {
    /// `token_1 {token: 1} unique, sparse, TTL 0 s`: name, keys and options, for people.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = self
            .keys
            .iter()
            .map(|(k, o)| format!("{k}: {}", if *o == Order::Asc { 1 } else { -1 }))
            .collect::<Vec<_>>()
            .join(", ");
        write!(f, "{} {{{keys}}}", self.index_name())?;
        let mut options = Vec::new();
        if self.unique {
            options.push("unique".to_owned());
        }
        if self.sparse {
            options.push("sparse".to_owned());
        }
        if let Some(ttl) = self.ttl {
            options.push(format!("TTL {} s", ttl.as_secs()));
        }
        if options.is_empty() {
            options.push("plain".to_owned());
        }
        write!(f, " {}", options.join(", "))
    }
}

/// An existing index that stops a declared one from being created.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IndexConflict {
    /// The collection.
    pub(crate) collection: String,
    /// The index in the database.
    pub(crate) existing: Index,
    /// The index the app declares.
    pub(crate) wanted: Index,
}

impl std::fmt::Display for IndexConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: the database has {}, the app declares {}",
            self.collection, self.existing, self.wanted
        )
    }
}

/// The conflicts, then what to do, as one message.
pub(crate) fn conflicts_report(conflicts: &[IndexConflict]) -> String {
    let mut text = format!(
        "{} index(es) in the database conflict with the ones the app declares (nothing was created, changed or dropped):",
        conflicts.len()
    );
    for c in conflicts {
        text.push_str(&format!("\n  - {c}"));
    }
    text.push_str(
        "\nIf no other program (such as Vibetuner) relies on an existing index, drop it \
         (mongosh: db.<collection>.dropIndex(\"<name>\")) and start again; otherwise give the \
         model's index another name or key order in Model::indexes. `db take-over --check` \
         reports what a Vibetuner database needs.",
    );
    text
}

/// Checks a field path: letters, digits and `_`, dot-separated, not starting with a digit or `$`.
pub fn valid_field(field: &str) -> bool {
    !field.is_empty()
        && field.split('.').all(|part| {
            let mut chars = part.chars();
            matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// Checks a collection name: a letter, then letters, digits and `_`; not reserved.
pub fn valid_collection(name: &str) -> bool {
    valid_field(name)
        && !name.contains('.')
        && !name.starts_with("_vt")
        && !name.starts_with("sqlite_")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_escape_neutralises_metacharacters() {
        assert_eq!(regex_escape("a.b*c"), r"a\.b\*c");
        assert_eq!(regex_escape("(x)|[y]"), r"\(x\)\|\[y\]");
        assert_eq!(regex_escape("plain text"), "plain text");
    }

    #[test]
    fn field_names_are_checked() {
        assert!(valid_field("title"));
        assert!(valid_field("user_settings.language"));
        assert!(valid_field("_id"));
        for bad in ["", "1a", "a..b", "$where", "a b", "a'", "a\"b"] {
            assert!(!valid_field(bad), "{bad}");
        }
        assert!(!valid_collection("_vt_ttl"));
        assert!(valid_collection("notes"));
    }

    #[test]
    fn mongo_translation() {
        let f = Filter::eq("a", 1)
            .and(Filter::gt("b", "x"))
            .and(Filter::search(["t"], "a.b"));
        assert_eq!(
            f.to_mongo(),
            doc! { "$and": [
                { "a": { "$eq": 1 } },
                { "b": { "$gt": "x" } },
                { "$or": [ { "t": { "$regex": r"a\.b", "$options": "i" } } ] },
            ] }
        );
        assert_eq!(
            Filter::contains_any("tags", ["web", "db"]).to_mongo(),
            doc! { "tags": { "$elemMatch": { "$in": ["web", "db"] } } }
        );
        let q = Query::all().sort("a", Order::Desc);
        assert_eq!(q.mongo_sort(), doc! { "a": -1, "_id": 1 });
        assert_eq!(
            Index::on(["provider", "provider_user_id"]).index_name(),
            "provider_1_provider_user_id_1"
        );
    }
}
