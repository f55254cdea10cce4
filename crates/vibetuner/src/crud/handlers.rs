//! The five CRUD routes (list, create, read, update, delete) and what they share: the access
//! check, field selection, body parsing and the errors that name the culprit.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query as QueryParams};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bson::Bson;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::config::Crud;
use super::hooks::{HookContext, Operation};
use super::schema::{ModelSchema, store_field};
use crate::error::Error;
use crate::store::{Filter, Id, Model, Models, Order, Query, Record, StoreError, Update};

/// Refuses a query parameter given more than once. With each sort field once and a bounded
/// search too, the work one request can ask of the store stays bounded by the model (its
/// filterable, sortable and searchable fields), whatever the query string repeats.
fn once_each(params: &[(String, String)]) -> Result<(), Error> {
    let mut given = std::collections::BTreeSet::new();
    for (key, _) in params {
        if !given.insert(key.as_str()) {
            return Err(Error::unprocessable(format!(
                "query parameter `{key}` is given more than once: give it once"
            )));
        }
    }
    Ok(())
}

/// Longest `search=` text a list accepts.
const MAX_SEARCH_LEN: usize = 200;

/// The routes of `crud`'s operations, each handler holding the shared [`Spec`].
pub(super) fn routes<T: Model>(crud: Crud<T>, schema: ModelSchema) -> Router {
    let ops = crud.operations.clone();
    let spec = Arc::new(Spec { crud, schema });

    let mut collection_route = axum::routing::MethodRouter::new();
    let mut item_route = axum::routing::MethodRouter::new();
    if ops.contains(&Operation::List) {
        let s = spec.clone();
        collection_route = collection_route
            .get(move |parts: Parts, q: QueryParams<Vec<(String, String)>>| list(s, parts, q.0));
    }
    if ops.contains(&Operation::Create) {
        let s = spec.clone();
        collection_route =
            collection_route.post(move |parts: Parts, body: Bytes| create(s, parts, body));
    }
    if ops.contains(&Operation::Read) {
        let s = spec.clone();
        item_route = item_route.merge(get(
            move |Path(id): Path<String>, parts: Parts, q: QueryParams<Vec<(String, String)>>| {
                read(s, id, parts, q.0)
            },
        ));
    }
    if ops.contains(&Operation::Update) {
        let s = spec.clone();
        item_route = item_route.patch(move |Path(id): Path<String>, parts: Parts, body: Bytes| {
            update(s, id, parts, body)
        });
    }
    if ops.contains(&Operation::Delete) {
        let s = spec.clone();
        item_route =
            item_route.delete(move |Path(id): Path<String>, parts: Parts| remove(s, id, parts));
    }
    let mut router = Router::new();
    if ops.contains(&Operation::List) || ops.contains(&Operation::Create) {
        router = router.route(&spec.crud.path_or_root(), collection_route);
    }
    if ops
        .iter()
        .any(|op| matches!(op, Operation::Read | Operation::Update | Operation::Delete))
    {
        router = router.route(&format!("{}/{{id}}", spec.crud.prefix), item_route);
    }
    router
}

struct Spec<T: Model> {
    crud: Crud<T>,
    schema: ModelSchema,
}

impl<T: Model> Spec<T> {
    /// What the routes answer for a record: the record itself, serialized straight to the
    /// API's JSON, unless the app reshapes it (`respond_as`) or the request selects fields.
    fn respond(&self, record: Record<T>, selection: &Selection) -> Result<Item<T>, Error> {
        Ok(match (&self.crud.respond, &selection.fields) {
            (None, None) => Item::Record(record),
            (Some(respond), _) => Item::Value(select(respond(record)?, selection)),
            (None, Some(_)) => Item::Value(select(Value::Object(record.to_json()), selection)),
        })
    }

    fn models(ctx: &HookContext) -> Models<T> {
        ctx.store().models::<T>()
    }

    /// Runs the access rules for `op`: the scope filter the request is limited to.
    async fn admit(&self, ctx: &HookContext, op: Operation) -> Result<Filter, Error> {
        for guard in &self.crud.access.guards {
            guard(ctx.clone(), op).await?;
        }
        match &self.crud.access.scope {
            Some(scope) => scope(ctx.clone()).await,
            None => Ok(Filter::All),
        }
    }

    /// Refuses bodies that write what only the server writes: ids, timestamps, read-only fields
    /// and `scoped`, the fields the scope decides.
    fn reject_unwritable(&self, value: &Value, scoped: &[&str]) -> Result<(), Error> {
        let Value::Object(map) = value else {
            return Err(Error::unprocessable(
                "the request body must be a JSON object",
            ));
        };
        let server = ["id", "_id", "db_insert_dt", "db_update_dt"];
        let owned = self.crud.access.read_only.iter().map(String::as_str);
        for key in server
            .into_iter()
            .chain(owned)
            .chain(scoped.iter().copied())
        {
            if map.contains_key(key) {
                return Err(Error::unprocessable(format!(
                    "field `{key}` is set by the server and cannot be written"
                )));
            }
        }
        Ok(())
    }

    /// The record `id` if it is within `scope`, else 404.
    async fn find(&self, ctx: &HookContext, id: &str, scope: &Filter) -> Result<Record<T>, Error> {
        let id: Id = id.parse().map_err(|_| {
            Error::unprocessable(format!("invalid id {id:?}: expected 24 hex digits"))
        })?;
        let found = if *scope == Filter::All {
            Self::models(ctx).get(id).await
        } else {
            Self::models(ctx)
                .find_one(Filter::eq("_id", id).and(scope.clone()))
                .await
        };
        found
            .map_err(Self::store_error)?
            .ok_or_else(Error::not_found)
    }

    /// Maps a unique-index violation to 409 naming the index's fields.
    fn store_error(e: StoreError) -> Error {
        if let StoreError::Duplicate { index } = &e {
            let fields = T::indexes()
                .into_iter()
                .find(|i| &i.index_name() == index)
                .map(|i| {
                    i.keys
                        .into_iter()
                        .map(|(f, _)| f)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_else(|| {
                    if index == "_id_" {
                        "id".into()
                    } else {
                        index.clone()
                    }
                });
            return Error::new(
                StatusCode::CONFLICT,
                format!(
                    "a {} with the same {fields} already exists",
                    singular(T::COLLECTION)
                ),
            );
        }
        Error::from(e)
    }
}

/// What the list and read routes accept besides filters.
struct Selection {
    fields: Option<Vec<String>>,
}

impl Selection {
    /// Every field.
    const ALL: Self = Self { fields: None };
}

/// A record as a route answers it (`Spec::respond`).
#[derive(Serialize)]
#[serde(untagged)]
enum Item<T: Model> {
    Record(Record<T>),
    Value(Value),
}

/// A page of the list route.
#[derive(Serialize)]
struct Page<T: Model> {
    items: Vec<Item<T>>,
    total: u64,
    offset: u64,
    limit: u64,
}

fn parse_fields(schema: &ModelSchema, value: &str) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for f in value.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        if f != "id" && !schema.has(f) {
            return Err(Error::unprocessable(format!(
                "unknown field `{f}` in fields= (fields: id, {})",
                schema.names().join(", ")
            )));
        }
        out.push(f.to_owned());
    }
    Ok(out)
}

fn select(item: Value, selection: &Selection) -> Value {
    match (item, &selection.fields) {
        (Value::Object(map), Some(fields)) => {
            let mut out = Map::new();
            if let Some(id) = map.get("id") {
                out.insert("id".into(), id.clone());
            }
            for f in fields {
                if let Some(v) = map.get(f) {
                    out.insert(f.clone(), v.clone());
                }
            }
            Value::Object(out)
        }
        (item, _) => item,
    }
}

async fn list<T: Model>(
    spec: Arc<Spec<T>>,
    parts: Parts,
    params: Vec<(String, String)>,
) -> Result<Response, Error> {
    let ctx = HookContext::new(parts)?;
    let scope = spec.admit(&ctx, Operation::List).await?;
    let crud = &spec.crud;
    let mut offset = 0u64;
    let mut limit = crud.page_size;
    let mut sort = Vec::new();
    let mut filter = scope;
    let mut selection = Selection::ALL;
    once_each(&params)?;
    for (key, value) in &params {
        match key.as_str() {
            "offset" => {
                offset = value.parse().map_err(|_| {
                    Error::unprocessable(format!(
                        "offset must be a whole number ≥ 0, got {value:?}"
                    ))
                })?;
            }
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|l| (1..=crud.max_page_size).contains(l))
                    .ok_or_else(|| {
                        Error::unprocessable(format!(
                            "limit must be between 1 and {}, got {value:?}",
                            crud.max_page_size
                        ))
                    })?;
            }
            "sort" => {
                for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let (field, order) = match part.strip_prefix('-') {
                        Some(f) => (f, Order::Desc),
                        None => (part.strip_prefix('+').unwrap_or(part), Order::Asc),
                    };
                    if !crud.sortable.iter().any(|s| s == field) {
                        return Err(Error::unprocessable(format!(
                            "cannot sort by `{field}` (sortable: {})",
                            list_or_none(&crud.sortable)
                        )));
                    }
                    let field = store_field(field);
                    if sort.iter().any(|(f, _)| *f == field) {
                        return Err(Error::unprocessable(format!(
                            "sort names `{part}` more than once"
                        )));
                    }
                    sort.push((field, order));
                }
            }
            "search" => {
                if crud.searchable.is_empty() {
                    return Err(Error::unprocessable("search is not available on this list"));
                }
                if value.chars().count() > MAX_SEARCH_LEN {
                    return Err(Error::unprocessable(format!(
                        "search is limited to {MAX_SEARCH_LEN} characters"
                    )));
                }
                if !value.is_empty() {
                    filter = filter.and(Filter::search(crud.searchable.clone(), value.clone()));
                }
            }
            "fields" => selection.fields = Some(parse_fields(&spec.schema, value)?),
            field if crud.filterable.iter().any(|f| f == field) => {
                let v = spec.schema.coerce(field, value)?;
                filter = filter.and(Filter::Eq(store_field(field), v));
            }
            other => {
                return Err(Error::unprocessable(format!(
                    "unknown query parameter `{other}` (filterable: {}; also offset, limit, sort, search, fields)",
                    list_or_none(&crud.filterable)
                )));
            }
        }
    }
    if sort.is_empty() {
        sort.clone_from(&crud.default_sort);
    }
    let query = Query {
        filter,
        sort,
        skip: offset,
        limit: Some(limit),
    };
    let models = Spec::<T>::models(&ctx);
    let (records, total) = models.page(&query).await.map_err(Spec::<T>::store_error)?;
    let items = records
        .into_iter()
        .map(|r| spec.respond(r, &selection))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(axum::Json(Page {
        items,
        total,
        offset,
        limit,
    })
    .into_response())
}

async fn create<T: Model>(
    spec: Arc<Spec<T>>,
    parts: Parts,
    body: Bytes,
) -> Result<Response, Error> {
    let ctx = HookContext::new(parts)?;
    let scope = spec.admit(&ctx, Operation::Create).await?;
    let mut value = json_body(&ctx.request.headers, &body)?;
    let assigned = equalities(&scope);
    let fields: Vec<&str> = assigned.iter().map(|(f, _)| f.as_str()).collect();
    spec.reject_unwritable(&value, &fields)?;
    spec.schema.reject_unknown(&value)?;
    if let Value::Object(map) = &mut value {
        for (field, v) in &assigned {
            map.insert(field.clone(), json_of(v));
        }
    }
    let mut data = (spec.crud.create)(ctx.clone(), value).await?;
    if let Some(hook) = &spec.crud.pre_create {
        data = hook(ctx.clone(), data).await?;
    }
    let data = assign(data, &assigned)?;
    data.validate().map_err(field_error)?;
    let models = Spec::<T>::models(&ctx);
    let record = models.insert(data).await.map_err(Spec::<T>::store_error)?;
    if assigned.len() < scope_terms(&scope) {
        let inside = models
            .find_one(Filter::eq("_id", record.id).and(scope.clone()))
            .await
            .map_err(Spec::<T>::store_error)?;
        if inside.is_none() {
            models
                .delete(record.id)
                .await
                .map_err(Spec::<T>::store_error)?;
            return Err(Error::new(
                StatusCode::FORBIDDEN,
                format!(
                    "this {} would be outside the records you may use",
                    singular(T::COLLECTION)
                ),
            ));
        }
    }
    if let Some(hook) = &spec.crud.post_create {
        hook(ctx, record.clone()).await?;
    }
    Ok((
        StatusCode::CREATED,
        axum::Json(spec.respond(record, &Selection::ALL)?),
    )
        .into_response())
}

async fn read<T: Model>(
    spec: Arc<Spec<T>>,
    id: String,
    parts: Parts,
    params: Vec<(String, String)>,
) -> Result<Response, Error> {
    let ctx = HookContext::new(parts)?;
    let scope = spec.admit(&ctx, Operation::Read).await?;
    let mut selection = Selection::ALL;
    once_each(&params)?;
    for (key, value) in &params {
        match key.as_str() {
            "fields" => selection.fields = Some(parse_fields(&spec.schema, value)?),
            other => {
                return Err(Error::unprocessable(format!(
                    "unknown query parameter `{other}` (only fields=)"
                )));
            }
        }
    }
    let record = spec.find(&ctx, &id, &scope).await?;
    let tag = etag(&record);
    Ok(tagged(
        axum::Json(spec.respond(record, &selection)?).into_response(),
        tag,
    ))
}

/// A record's version as an entity tag: its `db_update_dt` in milliseconds (none without one).
fn etag<T: Model>(record: &Record<T>) -> Option<String> {
    record.updated.map(|t| format!("\"{}\"", t.millis()))
}

/// The response with its `ETag`, when the record has one.
fn tagged(mut response: Response, tag: Option<String>) -> Response {
    if let Some(value) = tag.and_then(|t| header::HeaderValue::from_str(&t).ok()) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// 412: the record changed since the client read the version it names in `If-Match`.
fn stale<T: Model>() -> Error {
    Error::new(
        StatusCode::PRECONDITION_FAILED,
        format!(
            "the {} changed since you read it (If-Match): read it again",
            singular(T::COLLECTION)
        ),
    )
}

async fn update<T: Model>(
    spec: Arc<Spec<T>>,
    id: String,
    parts: Parts,
    body: Bytes,
) -> Result<Response, Error> {
    let ctx = HookContext::new(parts)?;
    let scope = spec.admit(&ctx, Operation::Update).await?;
    let value = json_body(&ctx.request.headers, &body)?;
    spec.reject_unwritable(&value, &scope.fields())?;
    spec.schema.reject_unknown(&value)?;
    let mut patch = match &spec.crud.parse_patch {
        Some(parse) => parse(value)?,
        None => match value {
            Value::Object(map) => map,
            _ => {
                return Err(Error::unprocessable(
                    "the request body must be a JSON object",
                ));
            }
        },
    };
    let current = spec.find(&ctx, &id, &scope).await?;
    // `If-Match: "<version>"` (the ETag a read answered): only that version is changed.
    let if_match = match ctx.request.headers.get(header::IF_MATCH) {
        None => None,
        Some(v) => Some(v.to_str().map(str::trim).map_err(|_| {
            Error::unprocessable("If-Match must be an entity tag such as \"1700000000000\"")
        })?),
    };
    let conditional = if_match.is_some_and(|tag| tag != "*");
    if conditional && if_match.map(str::to_owned) != etag(&current) {
        return Err(stale::<T>());
    }
    if let Some(hook) = &spec.crud.pre_update {
        patch = hook(ctx.clone(), current.clone(), patch).await?;
    }
    // Validate the result as a whole model before writing anything.
    let mut merged = match serde_json::to_value(&current.data) {
        Ok(Value::Object(map)) => map,
        _ => return Err(Error::internal("model does not serialize to an object")),
    };
    for (k, v) in &patch {
        merged.insert(k.clone(), v.clone());
    }
    let merged: T = parse_body(Value::Object(merged))?;
    merged.validate().map_err(field_error)?;
    let full = crate::store::data_document(&merged).map_err(Spec::<T>::store_error)?;
    let set: bson::Document = full
        .into_iter()
        .filter(|(k, _)| patch.contains_key(k))
        .collect();
    let unset: Vec<String> = patch
        .keys()
        .filter(|k| !set.contains_key(*k))
        .cloned()
        .collect();
    let models = Spec::<T>::models(&ctx);
    let update = Update { set, unset };
    let updated = if conditional {
        // The check and the write in one step: a change made since the check is caught too.
        models
            .update_if_unchanged(&current, update)
            .await
            .map_err(Spec::<T>::store_error)?
            .ok_or_else(stale::<T>)?
    } else {
        models
            .update(current.id, update)
            .await
            .map_err(Spec::<T>::store_error)?
            .ok_or_else(Error::not_found)?
    };
    if let Some(hook) = &spec.crud.post_update {
        hook(ctx, updated.clone()).await?;
    }
    let tag = etag(&updated);
    Ok(tagged(
        axum::Json(spec.respond(updated, &Selection::ALL)?).into_response(),
        tag,
    ))
}

async fn remove<T: Model>(spec: Arc<Spec<T>>, id: String, parts: Parts) -> Result<Response, Error> {
    let ctx = HookContext::new(parts)?;
    let scope = spec.admit(&ctx, Operation::Delete).await?;
    let record = spec.find(&ctx, &id, &scope).await?;
    if let Some(hook) = &spec.crud.pre_delete {
        hook(ctx.clone(), record.clone()).await?;
    }
    if !Spec::<T>::models(&ctx)
        .delete(record.id)
        .await
        .map_err(Spec::<T>::store_error)?
    {
        return Err(Error::not_found());
    }
    if let Some(hook) = &spec.crud.post_delete {
        hook(ctx, record).await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The scope's top-level `field == value` conditions: what a new record must carry.
fn equalities(scope: &Filter) -> Vec<(String, Bson)> {
    match scope {
        Filter::Eq(field, value) if !field.contains('.') && field != "_id" => {
            vec![(field.clone(), value.clone())]
        }
        Filter::And(terms) => terms.iter().flat_map(equalities).collect(),
        _ => Vec::new(),
    }
}

/// How many top-level conditions the scope has (`All` has none).
fn scope_terms(scope: &Filter) -> usize {
    match scope {
        Filter::All => 0,
        Filter::And(terms) => terms.iter().map(scope_terms).sum(),
        _ => 1,
    }
}

/// The JSON form of a scope value, as a create body would carry it.
fn json_of(value: &Bson) -> Value {
    match value {
        Bson::ObjectId(id) => Value::String(id.to_hex()),
        other => other.clone().into_relaxed_extjson(),
    }
}

/// Sets the scope's fields on a new record, whatever the create hooks made of them.
fn assign<T: Model>(data: T, fields: &[(String, Bson)]) -> Result<T, Error> {
    if fields.is_empty() {
        return Ok(data);
    }
    let mut doc = crate::store::data_document(&data)?;
    for (field, value) in fields {
        doc.insert(field.clone(), value.clone());
    }
    bson::from_document(doc)
        .map_err(|e| Error::internal(format!("cannot set the scope's fields: {e}")))
}

fn field_error(e: crate::store::FieldError) -> Error {
    Error::from(e)
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// `notes` → `note`, for messages.
fn singular(collection: &str) -> &str {
    collection.strip_suffix('s').unwrap_or(collection)
}

fn json_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, Error> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime_guess::mime::Mime>().ok())
        .is_some_and(|m| m.subtype() == "json" || m.suffix().is_some_and(|s| s == "json"));
    if !is_json {
        return Err(Error::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected a JSON body with Content-Type: application/json",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| Error::unprocessable(format!("the request body is not valid JSON: {e}")))
}

/// Deserializes a body, naming the failing field in the 422 message.
pub(super) fn parse_body<B: DeserializeOwned>(value: Value) -> Result<B, Error> {
    serde_path_to_error::deserialize::<_, B>(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." {
            Error::unprocessable(inner)
        } else {
            Error::unprocessable(format!("invalid field `{path}`: {inner}"))
        }
    })
}
