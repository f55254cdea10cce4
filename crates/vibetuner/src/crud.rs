//! The CRUD route factory: one call turns a [`Model`] into named list/create/read/update/delete
//! JSON routes (Vibetuner's `create_crud_routes`), stricter where Vibetuner is lax: unknown sort,
//! filter or `fields=` names, malformed ids, out-of-range limits and invalid bodies answer 422
//! naming the culprit, and unique-index violations answer 409.
//!
//! Who may use the routes is a decision every `Crud` must make before it becomes a router (it
//! panics at startup otherwise): [`owned_by`](Crud::owned_by) (each user sees and changes only
//! their own records), [`scope`](Crud::scope) (any per-request filter), [`signed_in`](Crud::signed_in),
//! [`authorize`](Crud::authorize) (a rule per operation), or an explicit [`public`](Crud::public).
//! A scope applies to list, read, update and delete (others' records answer 404), its equality
//! conditions are filled in on create, and the fields it names cannot be written by clients, like
//! the ones marked [`read_only`](Crud::read_only).
//!
//! ```no_run
//! # use vibetuner::prelude::*;
//! # #[derive(Clone, Serialize, Deserialize, JsonSchema)]
//! # struct Note { owner_id: Id, title: String, body: String, done: bool, words: Option<u32> }
//! # impl Model for Note { const COLLECTION: &'static str = "notes"; }
//! # let app = App::new(vibetuner::project!());
//! app.crud(
//!     Crud::<Note>::new("/api/notes")
//!         .owned_by("owner_id")
//!         .read_only(["words"])
//!         .sortable(["title", "db_insert_dt"])
//!         .filterable(["done"])
//!         .searchable(["title", "body"]),
//! );
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query as QueryParams, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{Route, get};
use bson::Bson;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tower::{Layer, Service};

use crate::auth::user::{LoadedUser, SessionUser};
use crate::context::AppContext;
use crate::error::Error;
use crate::store::{
    Filter, Id, Model, Models, Order, Query, Record, StoreError, Timestamp, Update,
};

/// A boxed hook future.
pub type HookFuture<R> = Pin<Box<dyn Future<Output = Result<R, Error>> + Send>>;

/// What a hook sees: the request (headers, extensions such as the current user) and the whole
/// [`AppContext`] (store, queue, SSE, mailer, settings, the app's services; it dereferences to it).
#[derive(Clone)]
pub struct HookContext {
    /// The request's head.
    pub request: Arc<Parts>,
    /// The app's services.
    pub app: AppContext,
}

impl std::ops::Deref for HookContext {
    type Target = AppContext;

    fn deref(&self) -> &AppContext {
        &self.app
    }
}

impl HookContext {
    fn new(parts: Parts) -> Result<Self, Error> {
        let app = AppContext::from_parts(&parts)?.clone();
        Ok(Self {
            request: Arc::new(parts),
            app,
        })
    }

    /// The signed-in user making the request, if any.
    pub fn user(&self) -> Option<&SessionUser> {
        LoadedUser::of(&self.request.extensions)
    }

    /// The signed-in user, or a 401 for anonymous requests.
    pub fn require_user(&self) -> Result<&SessionUser, Error> {
        self.user()
            .ok_or_else(|| Error::new(StatusCode::UNAUTHORIZED, "Sign in first"))
    }

    /// The signed-in user's id, or a 401 for anonymous requests.
    pub fn user_id(&self) -> Result<Id, Error> {
        self.require_user()?.record_id()
    }
}

/// One of the five generated operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    /// `GET {prefix}`
    List,
    /// `POST {prefix}`
    Create,
    /// `GET {prefix}/{id}`
    Read,
    /// `PATCH {prefix}/{id}`
    Update,
    /// `DELETE {prefix}/{id}`
    Delete,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 5] = [
        Self::List,
        Self::Create,
        Self::Read,
        Self::Update,
        Self::Delete,
    ];

    fn suffix(self) -> &'static str {
        match self {
            Self::List => "list",
            Self::Create => "create",
            Self::Read => "read",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }
}

type Creator<T> = Arc<dyn Fn(HookContext, Value) -> HookFuture<T> + Send + Sync>;
type PatchParser = Arc<dyn Fn(Value) -> Result<Map<String, Value>, Error> + Send + Sync>;
type Responder<T> = Arc<dyn Fn(Record<T>) -> Result<Value, Error> + Send + Sync>;
type DataHook<T> = Arc<dyn Fn(HookContext, T) -> HookFuture<T> + Send + Sync>;
type PatchHook<T> = Arc<
    dyn Fn(HookContext, Record<T>, Map<String, Value>) -> HookFuture<Map<String, Value>>
        + Send
        + Sync,
>;
type RecordHook<T> = Arc<dyn Fn(HookContext, Record<T>) -> HookFuture<()> + Send + Sync>;
type LayerFn = Box<dyn FnOnce(Router) -> Router + Send + Sync>;
type Guard = Arc<dyn Fn(HookContext, Operation) -> HookFuture<()> + Send + Sync>;
type ScopeFn = Arc<dyn Fn(HookContext) -> HookFuture<Filter> + Send + Sync>;

/// Who may use the routes; see the module documentation.
#[derive(Default)]
struct Access {
    public: bool,
    guards: Vec<Guard>,
    scope: Option<ScopeFn>,
    read_only: Vec<String>,
    /// The field `owned_by` scopes on.
    owner: Option<String>,
}

impl Access {
    fn decided(&self) -> bool {
        self.public || !self.guards.is_empty() || self.scope.is_some()
    }
}

/// Builder for a model's CRUD routes; hand it to [`App::crud`](crate::app::App::crud).
pub struct Crud<T: Model> {
    prefix: String,
    operations: BTreeSet<Operation>,
    page_size: u64,
    max_page_size: u64,
    sortable: Vec<String>,
    filterable: Vec<String>,
    searchable: Vec<String>,
    default_sort: Vec<(String, Order)>,
    access: Access,
    create: Creator<T>,
    parse_patch: Option<PatchParser>,
    respond: Option<Responder<T>>,
    pre_create: Option<DataHook<T>>,
    post_create: Option<RecordHook<T>>,
    pre_update: Option<PatchHook<T>>,
    post_update: Option<RecordHook<T>>,
    pre_delete: Option<RecordHook<T>>,
    post_delete: Option<RecordHook<T>>,
    layers: Vec<LayerFn>,
}

impl<T: Model> Crud<T> {
    /// Routes under `prefix` (e.g. `/api/notes`) with every operation, 25 items per page (at most 100).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into().trim_end_matches('/').to_owned(),
            operations: Operation::ALL.into_iter().collect(),
            page_size: 25,
            max_page_size: 100,
            sortable: Vec::new(),
            filterable: Vec::new(),
            searchable: Vec::new(),
            default_sort: Vec::new(),
            access: Access::default(),
            create: Arc::new(|_, body| Box::pin(std::future::ready(parse_body::<T>(body)))),
            parse_patch: None,
            respond: None,
            pre_create: None,
            post_create: None,
            pre_update: None,
            post_update: None,
            pre_delete: None,
            post_delete: None,
            layers: Vec::new(),
        }
    }

    /// Anyone, signed in or not, may use every operation (or a [`layer`](Self::layer) decides):
    /// an explicit choice, since the factory refuses to build routes nobody said who may use.
    pub fn public(mut self) -> Self {
        self.access.public = true;
        self
    }

    /// Every operation needs a signed-in user (401 otherwise); records are not scoped.
    pub fn signed_in(self) -> Self {
        self.authorize(|ctx, _| async move { ctx.require_user().map(|_| ()) })
    }

    /// A rule run before each operation; an error (401, 403, ...) refuses it. Several rules must
    /// all pass.
    ///
    /// ```no_run
    /// # use vibetuner::prelude::*;
    /// # #[derive(Clone, Serialize, Deserialize, JsonSchema)]
    /// # struct Post { title: String }
    /// # impl Model for Post { const COLLECTION: &'static str = "posts"; }
    /// // Anyone reads; only signed-in users write.
    /// Crud::<Post>::new("/api/posts").authorize(|ctx, op| async move {
    ///     match op {
    ///         Operation::List | Operation::Read => Ok(()),
    ///         _ => ctx.require_user().map(|_| ()),
    ///     }
    /// });
    /// ```
    pub fn authorize<F, Fut>(mut self, rule: F) -> Self
    where
        F: Fn(HookContext, Operation) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Error>> + Send + 'static,
    {
        self.access
            .guards
            .push(Arc::new(move |ctx, op| Box::pin(rule(ctx, op))));
        self
    }

    /// Limits every operation to the records matching a filter computed per request (an error,
    /// such as [`HookContext::user_id`]'s 401, refuses the request). List shows only matching
    /// records; read, update and delete answer 404 for the others. Create fills in the filter's
    /// equality conditions (clients cannot send those fields) and refuses (403) a record that
    /// would still fall outside it; updates cannot change any field the filter names (422).
    ///
    /// ```no_run
    /// # use vibetuner::prelude::*;
    /// # #[derive(Clone, Serialize, Deserialize, JsonSchema)]
    /// # struct Link { owner_id: Id, url: String }
    /// # impl Model for Link { const COLLECTION: &'static str = "links"; }
    /// Crud::<Link>::new("/api/links")
    ///     .scope(|ctx| async move { Ok(Filter::eq("owner_id", ctx.user_id()?)) });
    /// ```
    pub fn scope<F, Fut>(mut self, filter: F) -> Self
    where
        F: Fn(HookContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Filter, Error>> + Send + 'static,
    {
        self.access.scope = Some(Arc::new(move |ctx| Box::pin(filter(ctx))));
        self.access.owner = None;
        self
    }

    /// Each signed-in user works with their own records only: the [`scope`](Self::scope)
    /// `field == the user's id`. Anonymous requests answer 401; the field is set on create and
    /// cannot be written by clients.
    pub fn owned_by(mut self, field: impl Into<String>) -> Self {
        let field = field.into();
        self.access.read_only.push(field.clone());
        let owner = field.clone();
        let mut crud = self.scope(move |ctx| {
            let field = field.clone();
            async move { Ok(Filter::eq(field, ctx.user_id()?)) }
        });
        crud.access.owner = Some(owner);
        crud
    }

    /// Fields only the server writes (counters, results of background work): a create or update
    /// body naming one answers 422.
    pub fn read_only<S: Into<String>>(mut self, fields: impl IntoIterator<Item = S>) -> Self {
        self.access
            .read_only
            .extend(fields.into_iter().map(Into::into));
        self
    }

    /// Only these operations.
    pub fn operations(mut self, ops: impl IntoIterator<Item = Operation>) -> Self {
        self.operations = ops.into_iter().collect();
        self
    }

    /// Default and largest page sizes.
    pub fn page_size(mut self, default: u64, max: u64) -> Self {
        self.page_size = default.clamp(1, max.max(1));
        self.max_page_size = max.max(1);
        self
    }

    /// Fields accepted by `sort=a,-b` (`id`, `db_insert_dt`, `db_update_dt` included if listed).
    pub fn sortable<S: Into<String>>(mut self, fields: impl IntoIterator<Item = S>) -> Self {
        self.sortable = fields.into_iter().map(Into::into).collect();
        self
    }

    /// Fields accepted as equality filters (`?done=true`), values typed by the model's schema.
    pub fn filterable<S: Into<String>>(mut self, fields: impl IntoIterator<Item = S>) -> Self {
        self.filterable = fields.into_iter().map(Into::into).collect();
        self
    }

    /// Fields searched, case-insensitively and literally, by `?search=`.
    pub fn searchable<S: Into<String>>(mut self, fields: impl IntoIterator<Item = S>) -> Self {
        self.searchable = fields.into_iter().map(Into::into).collect();
        self
    }

    /// Order of the list when no `sort=` is given (`-db_insert_dt` style); default: id order.
    pub fn default_sort(mut self, spec: &str) -> Self {
        self.default_sort = spec
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| match s.strip_prefix('-') {
                Some(f) => (store_field(f), Order::Desc),
                None => (store_field(s), Order::Asc),
            })
            .collect();
        self
    }

    /// Accepts create bodies as `C` (e.g. without server-set fields) and converts them to the model.
    pub fn create_as<C: DeserializeOwned + Into<T> + 'static>(mut self) -> Self {
        self.create =
            Arc::new(|_, body| Box::pin(std::future::ready(parse_body::<C>(body).map(Into::into))));
        self
    }

    /// Accepts create bodies as `C` and builds the model from it with the request's context, to
    /// fill in server-owned fields (the scope's equality conditions are filled in afterwards).
    ///
    /// ```no_run
    /// # use vibetuner::prelude::*;
    /// # #[derive(Clone, Serialize, Deserialize, JsonSchema)]
    /// # struct Link { url: String, added_by: String }
    /// # impl Model for Link { const COLLECTION: &'static str = "links"; }
    /// #[derive(Deserialize)]
    /// struct NewLink { url: String }
    ///
    /// Crud::<Link>::new("/api/links").signed_in().create_with(|ctx, new: NewLink| async move {
    ///     let added_by = ctx.require_user()?.email.clone().unwrap_or_default();
    ///     Ok(Link { url: new.url, added_by })
    /// });
    /// ```
    pub fn create_with<C, F, Fut>(mut self, build: F) -> Self
    where
        C: DeserializeOwned + Send + 'static,
        F: Fn(HookContext, C) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, Error>> + Send + 'static,
    {
        let build = Arc::new(build);
        self.create = Arc::new(move |ctx, body| {
            let build = build.clone();
            Box::pin(async move { build(ctx, parse_body::<C>(body)?).await })
        });
        self
    }

    /// Accepts update bodies as `U`; fields `U` serializes as null or skips are left unchanged.
    pub fn update_as<U: DeserializeOwned + Serialize + 'static>(mut self) -> Self {
        self.parse_patch = Some(Arc::new(|body| {
            let update: U = parse_body(body)?;
            match serde_json::to_value(update) {
                Ok(Value::Object(map)) => {
                    Ok(map.into_iter().filter(|(_, v)| !v.is_null()).collect())
                }
                _ => Err(Error::internal(
                    "update type does not serialize to an object",
                )),
            }
        }));
        self
    }

    /// Answers with `R` instead of the stored record.
    pub fn respond_as<R: From<Record<T>> + Serialize + 'static>(mut self) -> Self {
        self.respond = Some(Arc::new(|record| {
            serde_json::to_value(R::from(record)).map_err(|e| Error::internal(e.to_string()))
        }));
        self
    }

    /// Runs before an insert; may change the model or reject the request with an [`Error`].
    pub fn pre_create<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(HookContext, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, Error>> + Send + 'static,
    {
        self.pre_create = Some(Arc::new(move |ctx, data| Box::pin(hook(ctx, data))));
        self
    }

    /// Runs after an insert.
    pub fn post_create<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(HookContext, Record<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Error>> + Send + 'static,
    {
        self.post_create = Some(record_hook(hook));
        self
    }

    /// Runs before an update with the current record and the changes; may change or reject them.
    pub fn pre_update<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(HookContext, Record<T>, Map<String, Value>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Map<String, Value>, Error>> + Send + 'static,
    {
        self.pre_update = Some(Arc::new(move |ctx, rec, patch| {
            Box::pin(hook(ctx, rec, patch))
        }));
        self
    }

    /// Runs after an update with the updated record.
    pub fn post_update<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(HookContext, Record<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Error>> + Send + 'static,
    {
        self.post_update = Some(record_hook(hook));
        self
    }

    /// Runs before a delete; an error keeps the document.
    pub fn pre_delete<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(HookContext, Record<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Error>> + Send + 'static,
    {
        self.pre_delete = Some(record_hook(hook));
        self
    }

    /// Runs after a delete with the deleted record.
    pub fn post_delete<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(HookContext, Record<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Error>> + Send + 'static,
    {
        self.post_delete = Some(record_hook(hook));
        self
    }

    /// Wraps every generated route in a layer (authentication, rate limits, ...).
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as Service<Request>>::Error: Into<Infallible> + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        self.layers
            .push(Box::new(move |router: Router| router.route_layer(layer)));
        self
    }

    /// The route names (`{collection}_{op}`) with their paths, for URL building.
    pub fn route_names(&self) -> Vec<(String, String)> {
        self.operations
            .iter()
            .map(|op| {
                let path = match op {
                    Operation::List | Operation::Create => self.path_or_root(),
                    _ => format!("{}/{{id}}", self.prefix),
                };
                (format!("{}_{}", T::COLLECTION, op.suffix()), path)
            })
            .collect()
    }

    fn path_or_root(&self) -> String {
        if self.prefix.is_empty() {
            "/".into()
        } else {
            self.prefix.clone()
        }
    }

    /// The routes [`Crud::into_router`] adds, for the `routes` command.
    pub(crate) fn route_table(&self) -> Vec<crate::routes::RouteInfo> {
        let access = if self.access.public {
            "public".to_owned()
        } else {
            let mut parts = Vec::new();
            if let Some(owner) = &self.access.owner {
                parts.push(format!("owned_by({owner})"));
            } else if self.access.scope.is_some() {
                parts.push("scoped".to_owned());
            }
            if !self.access.guards.is_empty() {
                parts.push(format!("{} access rule(s)", self.access.guards.len()));
            }
            parts.join(" + ")
        };
        let mut layers = format!("crud {access}");
        if !self.layers.is_empty() {
            layers = format!("{} crud layer(s), {layers}", self.layers.len());
        }
        self.route_names()
            .into_iter()
            .zip(&self.operations)
            .map(|((name, path), op)| {
                let method = match op {
                    Operation::List | Operation::Read => "GET",
                    Operation::Create => "POST",
                    Operation::Update => "PATCH",
                    Operation::Delete => "DELETE",
                };
                let mut info =
                    crate::routes::RouteInfo::new(method, &path, format!("{layers}, app"));
                info.name = Some(name);
                info
            })
            .collect()
    }

    /// Builds the router. Panics when nobody said who may use the routes, or, naming the field,
    /// when a sortable, filterable, searchable or read-only field is not a field of the model:
    /// configuration mistakes to catch at startup.
    pub fn into_router(mut self) -> Router {
        assert!(
            self.access.decided(),
            "Crud<{}> at {}: say who may use these routes: .owned_by(\"owner_field\"), \
             .scope(..), .signed_in(), .authorize(..), or .public() for anyone",
            T::COLLECTION,
            self.path_or_root()
        );
        let schema = ModelSchema::of::<T>();
        for (kind, fields) in [
            ("sortable", &self.sortable),
            ("filterable", &self.filterable),
            ("searchable", &self.searchable),
            ("read-only", &self.access.read_only),
        ] {
            for field in fields {
                assert!(
                    schema.has(field),
                    "Crud<{}>: {kind} field `{field}` is not a field of the model (fields: {})",
                    T::COLLECTION,
                    schema.names().join(", ")
                );
            }
        }
        let ops = self.operations.clone();
        let layers = std::mem::take(&mut self.layers);
        let spec = Arc::new(Spec { crud: self, schema });

        let mut collection_route = axum::routing::MethodRouter::new();
        let mut item_route = axum::routing::MethodRouter::new();
        if ops.contains(&Operation::List) {
            let s = spec.clone();
            collection_route =
                collection_route.get(move |parts: Parts, q: QueryParams<Vec<(String, String)>>| {
                    list(s, parts, q.0)
                });
        }
        if ops.contains(&Operation::Create) {
            let s = spec.clone();
            collection_route =
                collection_route.post(move |parts: Parts, body: Bytes| create(s, parts, body));
        }
        if ops.contains(&Operation::Read) {
            let s = spec.clone();
            item_route = item_route.merge(get(
                move |Path(id): Path<String>,
                      parts: Parts,
                      q: QueryParams<Vec<(String, String)>>| {
                    read(s, id, parts, q.0)
                },
            ));
        }
        if ops.contains(&Operation::Update) {
            let s = spec.clone();
            item_route =
                item_route.patch(move |Path(id): Path<String>, parts: Parts, body: Bytes| {
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
        for layer in layers {
            router = layer(router);
        }
        router
    }
}

/// Boxes a hook that receives a record.
fn record_hook<T, F, Fut>(hook: F) -> RecordHook<T>
where
    F: Fn(HookContext, Record<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Error>> + Send + 'static,
{
    Arc::new(move |ctx, rec| Box::pin(hook(ctx, rec)))
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
                    sort.push((store_field(field), order));
                }
            }
            "search" => {
                if crud.searchable.is_empty() {
                    return Err(Error::unprocessable("search is not available on this list"));
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
    Ok(axum::Json(spec.respond(record, &selection)?).into_response())
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
    let updated = Spec::<T>::models(&ctx)
        .update(current.id, Update { set, unset })
        .await
        .map_err(Spec::<T>::store_error)?
        .ok_or_else(Error::not_found)?;
    if let Some(hook) = &spec.crud.post_update {
        hook(ctx, updated.clone()).await?;
    }
    Ok(axum::Json(spec.respond(updated, &Selection::ALL)?).into_response())
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
    Error::unprocessable(format!("invalid field `{}`: {}", e.field, e.message))
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// API field names to store field names (`id` is `_id`).
fn store_field(field: &str) -> String {
    if field == "id" {
        "_id".into()
    } else {
        field.to_owned()
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
fn parse_body<B: DeserializeOwned>(value: Value) -> Result<B, Error> {
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

/// The model's top-level fields and their JSON types, from its JSON schema.
struct ModelSchema {
    fields: BTreeMap<String, FieldKind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldKind {
    Bool,
    Integer,
    Number,
    Text,
    DateTime,
    Id,
    Other,
}

impl ModelSchema {
    fn of<T: schemars::JsonSchema>() -> Self {
        let schema = schemars::schema_for!(T);
        let root = schema.as_value();
        let defs = root.get("$defs").cloned().unwrap_or(Value::Null);
        let mut fields = BTreeMap::new();
        if let Some(props) = root.get("properties").and_then(Value::as_object) {
            for (name, prop) in props {
                fields.insert(name.clone(), kind_of(prop, &defs));
            }
        }
        fields.insert("db_insert_dt".into(), FieldKind::DateTime);
        fields.insert("db_update_dt".into(), FieldKind::DateTime);
        Self { fields }
    }

    fn has(&self, field: &str) -> bool {
        field == "id"
            || self
                .fields
                .contains_key(field.split('.').next().unwrap_or(field))
    }

    fn names(&self) -> Vec<String> {
        self.fields.keys().cloned().collect()
    }

    fn reject_unknown(&self, value: &Value) -> Result<(), Error> {
        if let Value::Object(map) = value {
            for key in map.keys() {
                if !self.fields.contains_key(key) {
                    return Err(Error::unprocessable(format!(
                        "unknown field `{key}` (fields: {})",
                        self.names().join(", ")
                    )));
                }
            }
        }
        Ok(())
    }

    /// Turns a query-string value into the field's type.
    fn coerce(&self, field: &str, raw: &str) -> Result<Bson, Error> {
        let kind = if field == "id" {
            FieldKind::Id
        } else {
            self.fields.get(field).copied().unwrap_or(FieldKind::Other)
        };
        let bad = |expected: &str| {
            Error::unprocessable(format!("filter `{field}` expects {expected}, got {raw:?}"))
        };
        Ok(match kind {
            FieldKind::Bool => match raw {
                "true" | "1" => Bson::Boolean(true),
                "false" | "0" => Bson::Boolean(false),
                _ => return Err(bad("true or false")),
            },
            FieldKind::Integer => Bson::Int64(raw.parse().map_err(|_| bad("a whole number"))?),
            FieldKind::Number => Bson::Double(raw.parse().map_err(|_| bad("a number"))?),
            FieldKind::DateTime => {
                let ts: Timestamp = serde_json::from_value(Value::String(raw.to_owned()))
                    .map_err(|_| bad("an RFC 3339 date-time"))?;
                Bson::from(ts)
            }
            FieldKind::Id => Bson::from(
                raw.parse::<Id>()
                    .map_err(|_| bad("an id (24 hex digits)"))?,
            ),
            FieldKind::Text | FieldKind::Other => Bson::String(raw.to_owned()),
        })
    }
}

fn kind_of(prop: &Value, defs: &Value) -> FieldKind {
    if let Some(reference) = prop.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap_or_default();
        return defs
            .get(name)
            .map_or(FieldKind::Other, |d| kind_of(d, defs));
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(options) = prop.get(key).and_then(Value::as_array) {
            let kinds: Vec<FieldKind> = options
                .iter()
                .filter(|o| o.get("type").and_then(Value::as_str) != Some("null"))
                .map(|o| kind_of(o, defs))
                .collect();
            return if kinds.len() == 1 {
                kinds[0]
            } else {
                FieldKind::Other
            };
        }
    }
    let ty = match prop.get("type") {
        Some(Value::String(t)) => Some(t.as_str()),
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null"),
        _ => None,
    };
    match ty {
        Some("boolean") => FieldKind::Bool,
        Some("integer") => FieldKind::Integer,
        Some("number") => FieldKind::Number,
        Some("string") if prop.get("format").and_then(Value::as_str) == Some("date-time") => {
            FieldKind::DateTime
        }
        Some("string") if prop.get("pattern").and_then(Value::as_str) == Some("^[0-9a-f]{24}$") => {
            FieldKind::Id
        }
        Some("string") => FieldKind::Text,
        _ => FieldKind::Other,
    }
}
