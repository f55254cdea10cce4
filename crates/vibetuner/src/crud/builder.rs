//! The [`Crud`] builder: access decisions, operations, paging, sorting, filtering, search,
//! custom bodies and hooks, and `into_router`, which checks the configuration at startup.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::response::IntoResponse;
use axum::routing::Route;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tower::{Layer, Service};

use super::config::{Access, Crud, RecordHook};
use super::handlers::{self, parse_body};
use super::hooks::{HookContext, Operation};
use super::schema::{ModelSchema, store_field};
use crate::error::Error;
use crate::store::{Filter, Model, Order, Record};

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
        let layers = std::mem::take(&mut self.layers);
        let mut router = handlers::routes(self, schema);
        for layer in layers {
            router = layer(router);
        }
        router
    }
}

fn record_hook<T, F, Fut>(hook: F) -> RecordHook<T>
where
    F: Fn(HookContext, Record<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Error>> + Send + 'static,
{
    Arc::new(move |ctx, rec| Box::pin(hook(ctx, rec)))
}
