//! What a [`Crud`] holds: who may use its routes ([`Access`]), its hooks and its options, filled
//! in by the builder and obeyed by the handlers.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use serde_json::{Map, Value};

use super::hooks::{HookContext, HookFuture, Operation};
use crate::error::Error;
use crate::store::{Filter, Model, Order, Record};

pub(super) type Creator<T> = Arc<dyn Fn(HookContext, Value) -> HookFuture<T> + Send + Sync>;
pub(super) type PatchParser = Arc<dyn Fn(Value) -> Result<Map<String, Value>, Error> + Send + Sync>;
pub(super) type Responder<T> = Arc<dyn Fn(Record<T>) -> Result<Value, Error> + Send + Sync>;
pub(super) type DataHook<T> = Arc<dyn Fn(HookContext, T) -> HookFuture<T> + Send + Sync>;
pub(super) type PatchHook<T> = Arc<
    dyn Fn(HookContext, Record<T>, Map<String, Value>) -> HookFuture<Map<String, Value>>
        + Send
        + Sync,
>;
pub(super) type RecordHook<T> = Arc<dyn Fn(HookContext, Record<T>) -> HookFuture<()> + Send + Sync>;
pub(super) type LayerFn = Box<dyn FnOnce(Router) -> Router + Send + Sync>;
pub(super) type Guard = Arc<dyn Fn(HookContext, Operation) -> HookFuture<()> + Send + Sync>;
pub(super) type ScopeFn = Arc<dyn Fn(HookContext) -> HookFuture<Filter> + Send + Sync>;

/// Who may use the routes; see the module documentation.
#[derive(Default)]
pub(super) struct Access {
    pub(super) public: bool,
    pub(super) guards: Vec<Guard>,
    pub(super) scope: Option<ScopeFn>,
    pub(super) read_only: Vec<String>,
    /// The field `owned_by` scopes on.
    pub(super) owner: Option<String>,
}

impl Access {
    pub(super) fn decided(&self) -> bool {
        self.public || !self.guards.is_empty() || self.scope.is_some()
    }
}

/// Builder for a model's CRUD routes; hand it to [`App::crud`](crate::app::App::crud).
pub struct Crud<T: Model> {
    pub(super) prefix: String,
    pub(super) operations: BTreeSet<Operation>,
    pub(super) page_size: u64,
    pub(super) max_page_size: u64,
    pub(super) sortable: Vec<String>,
    pub(super) filterable: Vec<String>,
    pub(super) searchable: Vec<String>,
    pub(super) default_sort: Vec<(String, Order)>,
    pub(super) access: Access,
    pub(super) create: Creator<T>,
    pub(super) parse_patch: Option<PatchParser>,
    pub(super) respond: Option<Responder<T>>,
    pub(super) pre_create: Option<DataHook<T>>,
    pub(super) post_create: Option<RecordHook<T>>,
    pub(super) pre_update: Option<PatchHook<T>>,
    pub(super) post_update: Option<RecordHook<T>>,
    pub(super) pre_delete: Option<RecordHook<T>>,
    pub(super) post_delete: Option<RecordHook<T>>,
    pub(super) layers: Vec<LayerFn>,
}

impl<T: Model> Crud<T> {
    pub(super) fn path_or_root(&self) -> String {
        if self.prefix.is_empty() {
            "/".into()
        } else {
            self.prefix.clone()
        }
    }
}
