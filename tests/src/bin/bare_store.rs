//! Benchmark baseline: the notes API's limit on the embedded store. Usage:
//! `bare_store PORT STORE_FILE`.
//!
//! Bare axum over rusqlite on the app's store file, with what the app's list and read cannot do
//! without and nothing else: the same SQL (a page of 20 of the owner's notes, newest first,
//! and their count; a note by id), on read-only connections on blocking threads, and the same
//! JSON out (stored ids and dates as strings), with SQLite's memory statistics off as in the
//! app. No session: the owner is the one of the store's first note, which in the bench is the
//! signed-in user's.

use std::cell::RefCell;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde_json::{Map, Value, json};

/// The list's condition, as the app's scope filter (`owner_id` equals an id) turns into SQL.
const OWNER: &str =
    "(json_extract(doc, '$.owner_id') = ?1 AND json_type(doc, '$.owner_id') = 'object')";

struct Store {
    file: String,
    /// The owner's id as the store keeps it: `{"$oid":"…"}`.
    owner: String,
}

thread_local! {
    static CONN: RefCell<Option<Connection>> = const { RefCell::new(None) };
}

impl Store {
    /// Runs `f` on this blocking thread's read-only connection.
    async fn read<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection, &str) -> rusqlite::Result<R> + Send + 'static,
    ) -> Result<R, Response> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            CONN.with_borrow_mut(|slot| {
                if slot.is_none() {
                    *slot = Some(open(&this.file)?);
                }
                f(slot.as_ref().expect("opened above"), &this.owner)
            })
        })
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())?
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())
    }
}

fn open(file: &str) -> rusqlite::Result<Connection> {
    Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
}

/// A stored note as the API writes it: `id` first, ids and dates as strings.
fn api_note(id: &str, stored: &str) -> Value {
    let mut out = Map::new();
    out.insert("id".into(), Value::String(id.to_owned()));
    if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(stored) {
        for (key, value) in fields {
            out.insert(key, plain(value));
        }
    }
    Value::Object(out)
}

/// `{"$oid": hex}` → hex, `{"$date": text}` → text.
fn plain(value: Value) -> Value {
    match value {
        Value::Object(mut map) if map.len() == 1 => {
            match map.remove("$oid").or_else(|| map.remove("$date")) {
                Some(inner @ Value::String(_)) => inner,
                Some(other) => other,
                None => Value::Object(map),
            }
        }
        other => other,
    }
}

async fn list(State(store): State<Arc<Store>>) -> Result<Response, Response> {
    let (items, total) = store
        .read(|conn, owner| {
            let tx = conn.unchecked_transaction()?;
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT id, json(doc) FROM notes WHERE {OWNER} \
                 ORDER BY json_extract(doc, '$.db_insert_dt') DESC, id ASC LIMIT 20 OFFSET 0"
            ))?;
            let mut rows = stmt.query([owner])?;
            let mut items = Vec::new();
            while let Some(row) = rows.next()? {
                items.push(api_note(
                    row.get_ref(0)?.as_str()?,
                    row.get_ref(1)?.as_str()?,
                ));
            }
            let total: i64 = tx
                .prepare_cached(&format!("SELECT count(*) FROM notes WHERE {OWNER}"))?
                .query_row([owner], |r| r.get(0))?;
            Ok((items, total))
        })
        .await?;
    Ok(Json(json!({ "items": items, "total": total, "offset": 0, "limit": 20 })).into_response())
}

async fn read(
    State(store): State<Arc<Store>>,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    let note = store
        .read(move |conn, _| {
            conn.prepare_cached("SELECT json(doc) FROM notes WHERE id = ?1")?
                .query_row([&id], |r| Ok(api_note(&id, r.get_ref(0)?.as_str()?)))
                .optional()
        })
        .await?;
    Ok(match note {
        Some(note) => Json(note).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(8000);
    let file = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: bare_store PORT STORE_FILE"))?;
    // As the app's store: SQLite's memory statistics off before the first connection, so
    // that its allocations take no process-wide lock.
    // SAFETY: no other thread uses SQLite yet; `sqlite3_config` takes an int for this option.
    #[allow(unsafe_code)]
    unsafe {
        rusqlite::ffi::sqlite3_config(
            rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS,
            std::ffi::c_int::from(0u8),
        );
    }
    let owner: String = open(&file)?.query_row(
        "SELECT json_extract(doc, '$.owner_id') FROM notes LIMIT 1",
        [],
        |r| r.get(0),
    )?;
    let store = Arc::new(Store { file, owner });
    let app = Router::new()
        .route("/api/notes", get(list))
        .route("/api/notes/{id}", get(read))
        .with_state(store);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
