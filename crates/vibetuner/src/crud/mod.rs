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
//!
//! `builder.rs` is the [`Crud`] builder apps call; `config.rs` what it holds (the access rules
//! and hooks); `handlers.rs` the five routes obeying it; `schema.rs` the model's fields, read
//! from its JSON schema to check names and parse query values; `hooks.rs` what a hook sees.

mod builder;
mod config;
mod handlers;
mod hooks;
mod schema;

pub use config::Crud;
pub use hooks::{HookContext, HookFuture, Operation};
