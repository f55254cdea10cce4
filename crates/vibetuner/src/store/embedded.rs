//! The embedded backend: one SQLite file, a table per collection holding each document as JSONB.
//!
//! Queries are translated to SQL over `json_extract`, with MongoDB's semantics: comparisons are
//! bracketed by type, `null` matches a missing field, ties in a sort are broken by id, indexes are
//! expression indexes (so unique and compound indexes are enforced by SQLite), and TTL indexes are
//! honoured by a periodic sweep ([`Embedded::purge_expired`]).
//!
//! List fields: every write records the paths that hold arrays in `_vt_arrays` (collections
//! written before it existed are scanned once). Conditions and sorts on a recorded path look at
//! the elements too (`json_each`), as MongoDB does; other paths keep the plain `json_extract`
//! form, which the expression indexes serve.

use std::any::Any;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bson::oid::ObjectId;
use bson::{Bson, Document};
use rusqlite::functions::FunctionFlags;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OpenFlags, params_from_iter};
use tokio::sync::Semaphore;

use super::query::{Cmp, Filter, Index, Order, Query, valid_collection, valid_field};
use super::value::{Timestamp, doc_from_stored_json, doc_to_stored_json, to_stored_json};
use super::{StoreError, Update};

/// An open SQLite store, shared by every request: one connection writes, a few read-only ones
/// read in parallel (WAL lets readers see every committed write and never wait for the writer).
pub struct Embedded {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// Opened when first needed: a read takes the first free one, so a quiet app keeps one
    /// reader (and its page and statement caches) and a busy one opens up to `READERS`.
    readers: Vec<Mutex<Option<Reader>>>,
    /// Operations wait for a connection here, as tasks, before they take a blocking thread:
    /// threads blocked on a connection's lock cost the kernel a wake-up each (measured: under
    /// 64 concurrent reads, most of a read's CPU).
    read_permits: Arc<Semaphore>,
    write_permit: Arc<Semaphore>,
    tables: Mutex<HashSet<String>>,
    /// How long one read may run on its blocking thread before SQLite stops it.
    read_timeout: Duration,
}

/// How long a read may run by default ([`Embedded::with_read_timeout`]; `STORE_READ_TIMEOUT`).
pub(super) const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Read-only connections at most, next to the writer.
const READERS: usize = 4;

/// SQLite steps a read may take in place before it moves to a blocking thread: about 80 µs on
/// the 2-core bench machine (85–100 steps per µs), the most tokio advises a task to run
/// between yields. A document by id takes about a hundred steps; a page of 20 with the count
/// of 1,000 matches about 6,600, and so no longer pays two thread hand-offs (measured: 0.50
/// to 0.39 ms CPU per page under load).
const INLINE_STEPS: i32 = 8000;

/// A read-only connection, the state of its in-place budget and what it remembers.
struct Reader {
    conn: Connection,
    /// [`OFF`], [`ARMED`] while a read runs in place, [`TRIPPED`] once it ran over.
    budget: Arc<AtomicU8>,
    /// When the read running on a blocking thread must stop ([`since_start`] nanoseconds; 0:
    /// no read running there).
    deadline: Arc<AtomicU64>,
    remembered: RefCell<Remembered>,
}

/// Nanoseconds since the first call in this process: a clock the progress handler reads
/// cheaply (an `Instant` cannot live in an atomic).
fn since_start() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Results a reader remembers ([`Memory`]), all read while the database was at `version`.
#[derive(Default)]
struct Remembered {
    /// SQLite's `data_version` of the reader's connection: any commit by another connection
    /// (the writer, another process) changes it.
    version: i64,
    results: HashMap<String, Box<dyn Any + Send>>,
}

/// Results a reader remembers at most; it forgets them all when one more comes.
const REMEMBERED: usize = 1024;

/// What one reader remembers ([`Embedded::read_remembering`]).
pub(super) struct Memory<'a>(&'a RefCell<Remembered>);

impl Memory<'_> {
    /// The result of `compute`, remembered under `key` until the database changes. `conn` (the
    /// reader's connection, or a transaction on it) is asked SQLite's `data_version` first: a
    /// statement that reads no table, whose value any commit changes (this process's writer,
    /// another process). So a remembered result is never stale, and inside a transaction it is
    /// the one of the transaction's snapshot.
    pub(super) fn remember<V: Clone + Send + 'static>(
        &self,
        conn: &Connection,
        key: &str,
        compute: impl FnOnce() -> Result<V, StoreError>,
    ) -> Result<V, StoreError> {
        let version: i64 = conn
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(sql)?;
        {
            let mut memo = self.0.borrow_mut();
            if memo.version != version {
                memo.results.clear();
                memo.version = version;
            }
            if let Some(hit) = memo.results.get(key).and_then(|r| r.downcast_ref::<V>()) {
                return Ok(hit.clone());
            }
        }
        let result = compute()?;
        let mut memo = self.0.borrow_mut();
        if memo.results.len() >= REMEMBERED {
            memo.results.clear();
        }
        memo.results
            .insert(key.to_owned(), Box::new(result.clone()));
        Ok(result)
    }
}

const OFF: u8 = 0;
const ARMED: u8 = 1;
const TRIPPED: u8 = 2;

impl Embedded {
    /// Opens (creating if needed) the store file and its folder.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Config(format!(
                    "cannot create the data folder {}: {e} (set DATA_DIR to a writable folder)",
                    dir.display()
                ))
            })?;
        }
        without_memory_statistics();
        let conn = Connection::open(path).map_err(|e| cannot_open(path, e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql)?;
        prepare(&conn)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS _vt_ttl (collection TEXT NOT NULL, field TEXT NOT NULL, \
             seconds INTEGER NOT NULL, PRIMARY KEY (collection, field)) WITHOUT ROWID; \
             CREATE TABLE IF NOT EXISTS _vt_arrays (collection TEXT NOT NULL, path TEXT NOT NULL, \
             PRIMARY KEY (collection, path)) WITHOUT ROWID",
        )
        .map_err(sql)?;
        Ok(Self {
            path: path.to_owned(),
            conn: Mutex::new(conn),
            readers: (0..READERS).map(|_| Mutex::new(None)).collect(),
            read_permits: Arc::new(Semaphore::new(READERS)),
            write_permit: Arc::new(Semaphore::new(1)),
            tables: Mutex::new(HashSet::new()),
            read_timeout: DEFAULT_READ_TIMEOUT,
        })
    }

    /// The store with each write waiting until it is on disk (`PRAGMA synchronous=FULL`), so
    /// that a power loss keeps every write that returned; without it (`NORMAL`, in WAL mode) a
    /// killed process loses nothing, a power loss may lose the last writes.
    pub fn durable(self) -> Result<Self, StoreError> {
        self.conn
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        Ok(self)
    }

    /// The store with another budget for each read: a read still running after `timeout`
    /// is stopped and fails with [`StoreError::TooSlow`].
    pub fn with_read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    fn open_reader(&self) -> Result<Reader, StoreError> {
        let mut conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| cannot_open(&self.path, e))?;
        prepare(&conn)?;
        let budget = Arc::new(AtomicU8::new(OFF));
        let deadline = Arc::new(AtomicU64::new(0));
        let (armed, ends) = (budget.clone(), deadline.clone());
        // Called every INLINE_STEPS steps (about 80 µs): interrupts a read in place at its
        // first call, and a read on a blocking thread once its deadline has passed.
        conn.progress_handler(
            INLINE_STEPS,
            Some(move || {
                if armed
                    .compare_exchange(ARMED, TRIPPED, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    return true;
                }
                let end = ends.load(Ordering::Relaxed);
                end != 0 && since_start() >= end
            }),
        )
        .map_err(sql)?;
        Ok(Reader {
            conn,
            budget,
            deadline,
            remembered: RefCell::default(),
        })
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the writing connection on a blocking thread, creating the collection's
    /// table first.
    pub(super) async fn with<R: Send + 'static>(
        self: &Arc<Self>,
        coll: &str,
        f: impl FnOnce(&Connection, &str) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let permit = self.write_permit.clone().acquire_owned().await.ok();
        self.blocking(coll, move |this, coll| {
            let _permit = permit;
            let conn = this.conn.lock().unwrap_or_else(|p| p.into_inner());
            this.ensure_table(&conn, coll)?;
            f(&conn, coll)
        })
        .await
    }

    /// Runs the read `f` on a read-only connection (a free one if any).
    ///
    /// A read first runs in place, on the calling task's thread, with a budget of
    /// [`INLINE_STEPS`] SQLite steps: most reads (a document by id, a session, a short page)
    /// finish within it, without the two thread hand-offs of a blocking thread (measured:
    /// they were most of a read's CPU under load, in the kernel). A read that runs over is
    /// interrupted and run again on a blocking thread, so a long query never holds up the
    /// runtime's thread for more than the budget. A collection this process has not seen
    /// yet goes to the blocking thread too, where the writer creates its table first.
    pub(super) async fn read<R: Send + 'static>(
        self: &Arc<Self>,
        coll: &str,
        f: impl Fn(&Connection, &str) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.read_on(coll, move |reader, coll| f(&reader.conn, coll))
            .await
    }

    /// [`Embedded::read`] with the reader's [`Memory`], for the reads requests repeat while
    /// nothing is written (a session, the count of a list's matches).
    pub(super) async fn read_remembering<R: Send + 'static>(
        self: &Arc<Self>,
        coll: &str,
        f: impl Fn(&Connection, &str, &Memory<'_>) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.read_on(coll, move |reader, coll| {
            f(&reader.conn, coll, &Memory(&reader.remembered))
        })
        .await
    }

    /// [`Embedded::read`] with the whole reader.
    async fn read_on<R: Send + 'static>(
        self: &Arc<Self>,
        coll: &str,
        f: impl Fn(&Reader, &str) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        if valid_collection(coll)
            && self.known(coll)
            && let Some(done) = self.read_in_place(coll, &f)
        {
            return done;
        }
        let permit = self.read_permits.clone().acquire_owned().await.ok();
        self.blocking(coll, move |this, coll| {
            let _permit = permit;
            if !this.known(coll) {
                let conn = this.conn.lock().unwrap_or_else(|p| p.into_inner());
                this.ensure_table(&conn, coll)?;
            }
            // A free slot not opened yet first: in-place reads only take open readers, so
            // the pool grows here, up to READERS, when two of them want one at once.
            let mut free = this.readers.iter().filter_map(|r| r.try_lock().ok());
            let first = free.next();
            let mut slot = match first {
                Some(slot) if slot.is_some() => free.find(|s| s.is_none()).unwrap_or(slot),
                Some(slot) => slot,
                None => this.readers[0].lock().unwrap_or_else(|p| p.into_inner()),
            };
            if slot.is_none() {
                *slot = Some(this.open_reader()?);
            }
            let reader = slot.as_ref().expect("opened above");
            let budget = u64::try_from(this.read_timeout.as_nanos()).unwrap_or(u64::MAX);
            let end = since_start().saturating_add(budget).max(1);
            reader.deadline.store(end, Ordering::Relaxed);
            let result = f(reader, coll);
            reader.deadline.store(0, Ordering::Relaxed);
            match result {
                Err(_) if since_start() >= end => Err(StoreError::TooSlow {
                    budget: this.read_timeout,
                }),
                done => done,
            }
        })
        .await
    }

    /// [`Embedded::read`]'s attempt in place, on a free reader already open: `None` when there
    /// is none (the blocking thread opens one) or the read ran over its budget.
    fn read_in_place<R>(
        &self,
        coll: &str,
        f: &impl Fn(&Reader, &str) -> Result<R, StoreError>,
    ) -> Option<Result<R, StoreError>> {
        let slot = self
            .readers
            .iter()
            .filter_map(|r| r.try_lock().ok())
            .find(|slot| slot.is_some())?;
        let reader = slot.as_ref()?;
        reader.budget.store(ARMED, Ordering::Relaxed);
        let result = f(reader, coll);
        let tripped = reader.budget.swap(OFF, Ordering::Relaxed) == TRIPPED;
        (!tripped).then_some(result)
    }

    /// Runs `f` on a blocking thread for a valid collection name.
    async fn blocking<R: Send + 'static>(
        self: &Arc<Self>,
        coll: &str,
        f: impl FnOnce(&Self, &str) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        if !valid_collection(coll) {
            return Err(StoreError::Invalid(format!(
                "invalid collection name {coll:?} (letters, digits and _; not starting with _vt or sqlite_)"
            )));
        }
        let this = self.clone();
        let coll = coll.to_owned();
        tokio::task::spawn_blocking(move || f(&this, &coll))
            .await
            .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
    }

    fn known(&self, coll: &str) -> bool {
        self.tables
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(coll)
    }

    /// Creates the collection's table, or brings one written by an earlier version to the
    /// current layout, once per process.
    fn ensure_table(&self, conn: &Connection, coll: &str) -> Result<(), StoreError> {
        let mut tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        if !tables.contains(coll) {
            // One write transaction: two processes starting together upgrade a table once.
            let tx = rusqlite::Transaction::new_unchecked(
                conn,
                rusqlite::TransactionBehavior::Immediate,
            )
            .map_err(sql)?;
            if !upgrade_layout(&tx, coll)? {
                tx.execute_batch(&format!("CREATE TABLE \"{coll}\" ({TABLE_COLUMNS})"))
                    .map_err(sql)?;
            }
            scan_arrays(&tx, coll)?;
            tx.commit().map_err(sql)?;
            tables.insert(coll.to_owned());
        }
        Ok(())
    }

    pub(super) fn ping(&self) -> Result<(), StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row("SELECT 1", [], |_| Ok(())).map_err(sql)
    }

    /// Deletes documents whose TTL has passed; returns how many.
    pub(super) fn purge_expired(&self) -> Result<u64, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let rules: Vec<(String, String, i64)> = conn
            .prepare("SELECT collection, field, seconds FROM _vt_ttl")
            .map_err(sql)?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(sql)?
            .collect::<Result<_, _>>()
            .map_err(sql)?;
        let mut purged = 0;
        for (coll, field, seconds) in rules {
            if !valid_collection(&coll) || !valid_field(&field) {
                continue;
            }
            let cutoff = Timestamp::from_millis(Timestamp::now().millis() - seconds * 1000);
            let cutoff = to_stored_json(&Bson::from(cutoff)).to_string();
            let path = json_path(&field);
            let deleted = conn
                .execute(
                    &format!(
                        "DELETE FROM \"{coll}\" WHERE json_type(doc, '{path}') = 'object' \
                         AND substr(json_extract(doc, '{path}'), 1, 9) = '{{\"$date\":' \
                         AND json_extract(doc, '{path}') < ?1"
                    ),
                    [cutoff],
                )
                .or_else(|e| if is_missing_table(&e) { Ok(0) } else { Err(e) })
                .map_err(sql)?;
            purged += deleted as u64;
        }
        Ok(purged)
    }
}

/// Turns SQLite's memory statistics off, once, before the process's first connection (the
/// setting SQLite recommends when nothing reads them, and nothing here does): with them on,
/// every allocation SQLite makes takes one process-wide lock, which readers on several threads
/// contend for (measured: 10–20% less CPU for a page of notes under 64 concurrent requests).
fn without_memory_statistics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `sqlite3_config` takes an int for this option. It must not run while another
        // thread calls SQLite: it runs where the store opens, at start-up, before any other
        // SQLite use in the framework (the `Once` holds back a second store opening at the
        // same time). Once SQLite is initialised it refuses (SQLITE_MISUSE) and changes nothing,
        // which is why its result is not needed.
        #[allow(unsafe_code)]
        unsafe {
            rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS,
                std::ffi::c_int::from(0u8),
            );
        }
    });
}

fn cannot_open(path: &Path, e: rusqlite::Error) -> StoreError {
    StoreError::Config(format!(
        "cannot open the embedded store {}: {e}",
        path.display()
    ))
}

/// Sets up a connection: its busy timeout, its plans, its statement cache and the SQL functions
/// queries use.
fn prepare(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
    // Plans never depend on bound values. Without this, SQLite marks `OFFSET ?` (and other
    // parameters it may plan by) so that binding a new value re-prepares the statement: every
    // cached query paid a full parse and plan on each run (about 160k instructions).
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map_err(sql)?;
    // Room for every query shape a busy app runs (collections x filters), not rusqlite's 16.
    conn.set_prepared_statement_cache_capacity(256);
    conn.create_scalar_function(
        "vt_array_path",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| Ok(array_path(ctx.get_raw(0).as_str().unwrap_or_default())),
    )
    .map_err(sql)?;
    conn.create_scalar_function(
        "vt_icontains",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let hay = ctx.get_raw(0).as_str().ok();
            let needle = ctx.get_raw(1).as_str().ok();
            Ok(match (hay, needle) {
                (Some(h), Some(n)) => h.to_lowercase().contains(&n.to_lowercase()),
                _ => false,
            })
        },
    )
    .map_err(sql)
}

/// Records once per collection the array paths of documents written before `_vt_arrays` existed
/// (the row with an empty path marks the collection as scanned).
fn scan_arrays(conn: &Connection, coll: &str) -> Result<(), StoreError> {
    let scanned = conn
        .prepare_cached("SELECT 1 FROM _vt_arrays WHERE collection = ?1 AND path = ''")
        .map_err(sql)?
        .exists([coll])
        .map_err(sql)?;
    if !scanned {
        conn.execute(
            &format!(
                "INSERT OR IGNORE INTO _vt_arrays (collection, path) \
                 SELECT DISTINCT ?1, vt_array_path(t.fullkey) FROM \"{coll}\" AS c, json_tree(c.doc) AS t \
                 WHERE t.type = 'array'"
            ),
            [coll],
        )
        .map_err(sql)?;
        conn.execute(
            "INSERT OR IGNORE INTO _vt_arrays (collection, path) VALUES (?1, '')",
            [coll],
        )
        .map_err(sql)?;
    }
    Ok(())
}

/// A JSON path from `json_tree` (`$.items[0].tags[1]`) as a field path without indexes
/// (`items.tags`).
fn array_path(fullkey: &str) -> String {
    let mut out = String::with_capacity(fullkey.len());
    let mut in_index = false;
    for c in fullkey.strip_prefix('$').unwrap_or(fullkey).chars() {
        match c {
            '[' => in_index = true,
            ']' => in_index = false,
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out.trim_start_matches('.').to_owned()
}

/// The paths in `doc` that hold arrays, as field paths (`tags`, `items.tags`).
fn doc_array_paths(doc: &Document, prefix: &str, out: &mut HashSet<String>) {
    for (key, value) in doc {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        value_array_paths(value, &path, out);
    }
}

fn value_array_paths(value: &Bson, path: &str, out: &mut HashSet<String>) {
    match value {
        Bson::Array(items) => {
            out.insert(path.to_owned());
            for item in items {
                value_array_paths(item, path, out);
            }
        }
        Bson::Document(inner) => doc_array_paths(inner, path, out),
        _ => {}
    }
}

/// Notes the array paths of a document being written.
fn record_arrays(conn: &Connection, coll: &str, doc: &Document) -> Result<(), StoreError> {
    let mut paths = HashSet::new();
    doc_array_paths(doc, "", &mut paths);
    for path in paths {
        conn.prepare_cached("INSERT OR IGNORE INTO _vt_arrays (collection, path) VALUES (?1, ?2)")
            .map_err(sql)?
            .execute([coll, path.as_str()])
            .map_err(sql)?;
    }
    Ok(())
}

/// The array paths recorded for a collection.
fn array_paths(conn: &Connection, coll: &str) -> Result<Vec<String>, StoreError> {
    conn.prepare_cached("SELECT path FROM _vt_arrays WHERE collection = ?1 AND path <> ''")
        .map_err(sql)?
        .query_map([coll], |r| r.get(0))
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)
}

pub(super) fn insert(conn: &Connection, coll: &str, mut doc: Document) -> Result<(), StoreError> {
    let id = match doc.remove("_id") {
        Some(Bson::ObjectId(id)) => id,
        _ => return Err(StoreError::Invalid("documents need an ObjectId _id".into())),
    };
    record_arrays(conn, coll, &doc)?;
    let json = serde_json::Value::Object(doc_to_stored_json(&doc)).to_string();
    conn.prepare_cached(&format!(
        "INSERT INTO \"{coll}\" (id, doc) VALUES (?1, jsonb(?2))"
    ))
    .map_err(sql)?
    .execute([id.to_hex(), json])
    .map_err(|e| constraint(coll, e))?;
    Ok(())
}

pub(super) fn find(
    conn: &Connection,
    coll: &str,
    query: &Query,
) -> Result<Vec<Document>, StoreError> {
    find_rows(conn, coll, query, document)
}

/// [`find`], each row read by `decode` from its id and stored JSON.
pub(super) fn find_rows<R>(
    conn: &Connection,
    coll: &str,
    query: &Query,
    decode: impl Fn(&str, &str) -> Result<R, StoreError>,
) -> Result<Vec<R>, StoreError> {
    let mut w = Where::new(conn, coll)?;
    w.filter(&query.filter)?;
    let order: Vec<String> = query
        .full_sort()
        .iter()
        .map(|(f, o)| w.order(f, *o))
        .collect::<Result<_, StoreError>>()?;
    let limit = query
        .limit
        .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
    let skip = i64::try_from(query.skip).unwrap_or(i64::MAX);
    w.params.push(SqlValue::Integer(limit));
    w.params.push(SqlValue::Integer(skip));
    let n = w.params.len();
    let sql_text = format!(
        "SELECT id, json(doc) FROM \"{coll}\" WHERE {} ORDER BY {} LIMIT ?{} OFFSET ?{}",
        w.sql,
        order.join(", "),
        n - 1,
        n
    );
    let mut stmt = conn.prepare_cached(&sql_text).map_err(sql)?;
    let mut rows = stmt.query(params_from_iter(w.params.iter())).map_err(sql)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(sql)? {
        let id = row.get_ref(0).and_then(|v| Ok(v.as_str()?)).map_err(sql)?;
        let json = row.get_ref(1).and_then(|v| Ok(v.as_str()?)).map_err(sql)?;
        out.push(decode(id, json)?);
    }
    Ok(out)
}

pub(super) fn count(conn: &Connection, coll: &str, filter: &Filter) -> Result<u64, StoreError> {
    let mut w = Where::new(conn, coll)?;
    w.filter(filter)?;
    let n: i64 = conn
        .prepare_cached(&format!("SELECT count(*) FROM \"{coll}\" WHERE {}", w.sql))
        .map_err(sql)?
        .query_row(params_from_iter(w.params.iter()), |r| r.get(0))
        .map_err(sql)?;
    Ok(n as u64)
}

pub(super) fn update(
    conn: &Connection,
    coll: &str,
    filter: &Filter,
    update: &Update,
    many: bool,
) -> Result<Vec<Document>, StoreError> {
    let query = Query {
        filter: filter.clone(),
        limit: (!many).then_some(1),
        ..Query::default()
    };
    if update.set.is_empty() && update.unset.is_empty() {
        return find(conn, coll, &query);
    }
    // Take the write lock before reading, so that no other connection to the file (another
    // process) changes the matched documents between the read and the write: a conditional
    // update (claim if still unlocked) succeeds for one caller only.
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)
        .map_err(sql)?;
    let docs = find(&tx, coll, &query)?;
    let mut out = Vec::with_capacity(docs.len());
    for mut doc in docs {
        for (path, value) in &update.set {
            set_path(&mut doc, path, value.clone());
        }
        for path in &update.unset {
            unset_path(&mut doc, path);
        }
        let id = doc
            .get_object_id("_id")
            .map_err(|e| StoreError::Decode(e.to_string()))?;
        let mut body = doc.clone();
        body.remove("_id");
        record_arrays(&tx, coll, &body)?;
        let json = serde_json::Value::Object(doc_to_stored_json(&body)).to_string();
        tx.prepare_cached(&format!(
            "UPDATE \"{coll}\" SET doc = jsonb(?1) WHERE id = ?2"
        ))
        .map_err(sql)?
        .execute([json, id.to_hex()])
        .map_err(|e| constraint(coll, e))?;
        out.push(doc);
    }
    tx.commit().map_err(sql)?;
    Ok(out)
}

pub(super) fn delete(
    conn: &Connection,
    coll: &str,
    filter: &Filter,
    many: bool,
) -> Result<u64, StoreError> {
    let mut w = Where::new(conn, coll)?;
    w.filter(filter)?;
    let sql_text = if many {
        format!("DELETE FROM \"{coll}\" WHERE {}", w.sql)
    } else {
        format!(
            "DELETE FROM \"{coll}\" WHERE id IN (SELECT id FROM \"{coll}\" WHERE {} ORDER BY id LIMIT 1)",
            w.sql
        )
    };
    let n = conn
        .prepare_cached(&sql_text)
        .map_err(sql)?
        .execute(params_from_iter(w.params.iter()))
        .map_err(sql)?;
    Ok(n as u64)
}

pub(super) fn create_index(conn: &Connection, coll: &str, index: &Index) -> Result<(), StoreError> {
    let name = index.index_name();
    if name.contains('"') {
        return Err(StoreError::Invalid(format!("invalid index name {name:?}")));
    }
    for (field, _) in &index.keys {
        check_field(field)?;
    }
    conn.execute_batch(&index_sql(coll, &name, &index.keys, index.unique))
        .map_err(|e| constraint(coll, e))?;
    if let Some(ttl) = index.ttl {
        conn.execute(
            "INSERT INTO _vt_ttl (collection, field, seconds) VALUES (?1, ?2, ?3) \
             ON CONFLICT (collection, field) DO UPDATE SET seconds = excluded.seconds",
            rusqlite::params![coll, index.keys[0].0, ttl.as_secs() as i64],
        )
        .map_err(sql)?;
    }
    Ok(())
}

/// A collection's table: the id, and the document as JSONB. A rowid table (the id has an index
/// of its own), so that an index that holds every column a query reads covers it: counting a
/// thousand matches reads the index alone, where a `WITHOUT ROWID` table looked each row up
/// again (measured: a fifth of the time).
const TABLE_COLUMNS: &str = "id TEXT PRIMARY KEY NOT NULL, doc BLOB NOT NULL";

/// The SQL creating an index on `keys`: their values in order, then, unless the index is
/// unique, their JSON types, which every condition checks next to the value (so the index
/// covers conditions and counts). A unique index keeps values only: MongoDB holds `1` and
/// `1.0` to be the same key, and their types differ.
fn index_sql(coll: &str, name: &str, keys: &[(String, Order)], unique: bool) -> String {
    let mut cols: Vec<String> = keys
        .iter()
        .map(|(field, order)| {
            let dir = if *order == Order::Asc { "" } else { " DESC" };
            format!("{}{dir}", value_expr(field))
        })
        .collect();
    if !unique {
        cols.extend(
            keys.iter()
                .filter(|(field, _)| field != "_id")
                .map(|(field, _)| type_expr(field)),
        );
    }
    let unique = if unique { "UNIQUE " } else { "" };
    format!(
        "CREATE {unique}INDEX IF NOT EXISTS \"{coll}__{name}\" ON \"{coll}\" ({})",
        cols.join(", ")
    )
}

/// Brings a collection an earlier version wrote to the current layout, keeping every document
/// and index: a `WITHOUT ROWID` table is rebuilt as a rowid table, and indexes of values only
/// gain their types (see [`index_sql`]). False when the table does not exist yet.
fn upgrade_layout(conn: &Connection, coll: &str) -> Result<bool, StoreError> {
    // The table first, then its indexes (autoindexes have no SQL).
    let mut schema: Vec<(String, String)> = conn
        .prepare(
            "SELECT name, sql FROM sqlite_schema WHERE tbl_name = ?1 AND sql IS NOT NULL \
             AND type IN ('table', 'index') ORDER BY type = 'index'",
        )
        .map_err(sql)?
        .query_map([coll], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)?;
    if schema.first().is_none_or(|(name, _)| name != coll) {
        return Ok(false);
    }
    let indexes = schema.split_off(1);
    let rebuild = schema[0].1.contains("WITHOUT ROWID");
    if rebuild {
        // Dropping the old table drops its indexes; they are made again below.
        conn.execute_batch(&format!(
            "CREATE TABLE _vt_upgrade ({TABLE_COLUMNS}); \
             INSERT INTO _vt_upgrade (id, doc) SELECT id, doc FROM \"{coll}\"; \
             DROP TABLE \"{coll}\"; \
             ALTER TABLE _vt_upgrade RENAME TO \"{coll}\""
        ))
        .map_err(sql)?;
    }
    for (name, old) in indexes {
        match StoredIndex::parse(coll, &name, &old) {
            Some(index) if rebuild || index.stale() => {
                if !rebuild {
                    conn.execute_batch(&format!("DROP INDEX \"{name}\""))
                        .map_err(sql)?;
                }
                conn.execute_batch(&index_sql(coll, &index.name, &index.keys, index.unique))
                    .map_err(|e| constraint(coll, e))?;
            }
            Some(_) => {}
            // Not one of this store's: made again as it was.
            None if rebuild => conn.execute_batch(&old).map_err(sql)?,
            None => {}
        }
    }
    Ok(true)
}

/// An index this store created, read back from its SQL.
struct StoredIndex {
    /// The declared name (without the collection prefix).
    name: String,
    keys: Vec<(String, Order)>,
    unique: bool,
    /// Holds its keys' types (see [`index_sql`]).
    typed: bool,
}

impl StoredIndex {
    /// `None` for an index this store did not create.
    fn parse(coll: &str, name: &str, sql: &str) -> Option<Self> {
        let declared = name.strip_prefix(&format!("{coll}__"))?;
        let cols = sql
            .split_once(&format!("ON \"{coll}\" ("))?
            .1
            .strip_suffix(')')?;
        let mut index = StoredIndex {
            name: declared.to_owned(),
            keys: Vec::new(),
            unique: sql.starts_with("CREATE UNIQUE INDEX"),
            typed: false,
        };
        for col in split_columns(cols) {
            let (expr, order) = match col.strip_suffix(" DESC") {
                Some(expr) => (expr, Order::Desc),
                None => (col, Order::Asc),
            };
            if expr == "id" {
                index.keys.push(("_id".to_owned(), order));
            } else if let Some(field) = expr
                .strip_prefix("json_extract(doc, '$.")
                .and_then(|rest| rest.strip_suffix("')"))
                .filter(|field| valid_field(field))
            {
                index.keys.push((field.to_owned(), order));
            } else if expr.starts_with("json_type(doc, '$.") {
                index.typed = true;
            } else {
                return None;
            }
        }
        Some(index)
    }

    /// Made by an earlier version, without the types it now holds.
    fn stale(&self) -> bool {
        !self.unique && !self.typed && self.keys.iter().any(|(f, _)| f != "_id")
    }
}

/// The columns of an index's column list (commas inside parentheses and quotes do not split).
fn split_columns(cols: &str) -> Vec<&str> {
    let (mut out, mut depth, mut quoted, mut start) = (Vec::new(), 0, false, 0);
    for (i, c) in cols.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(cols[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(cols[start..].trim());
    out
}

/// Reads one document by id (used after inserts in tests and by `get`).
pub(super) fn get(
    conn: &Connection,
    coll: &str,
    id: &ObjectId,
) -> Result<Option<Document>, StoreError> {
    get_row(conn, coll, id, document)
}

/// [`get`], the row read by `decode` from its id and stored JSON.
pub(super) fn get_row<R>(
    conn: &Connection,
    coll: &str,
    id: &ObjectId,
    decode: impl Fn(&str, &str) -> Result<R, StoreError>,
) -> Result<Option<R>, StoreError> {
    let hex = id.to_hex();
    let mut stmt = conn
        .prepare_cached(&format!("SELECT json(doc) FROM \"{coll}\" WHERE id = ?1"))
        .map_err(sql)?;
    let mut rows = stmt.query([&hex]).map_err(sql)?;
    match rows.next().map_err(sql)? {
        Some(row) => {
            let json = row.get_ref(0).and_then(|v| Ok(v.as_str()?)).map_err(sql)?;
            decode(&hex, json).map(Some)
        }
        None => Ok(None),
    }
}

/// A stored row as a document: `_id` from the id column, then the stored fields.
pub(super) fn document(id: &str, json: &str) -> Result<Document, StoreError> {
    let oid = ObjectId::parse_str(id)
        .map_err(|e| StoreError::Decode(format!("bad stored id {id:?}: {e}")))?;
    let body = doc_from_stored_json(json).map_err(StoreError::Decode)?;
    let mut doc = Document::new();
    doc.insert("_id", oid);
    doc.extend(body);
    Ok(doc)
}

fn check_field(field: &str) -> Result<(), StoreError> {
    if valid_field(field) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "invalid field name {field:?} (letters, digits and _, dot-separated)"
        )))
    }
}

fn json_path(field: &str) -> String {
    format!("$.{field}")
}

/// The SQL expression for a field's value (the id column for `_id`).
fn value_expr(field: &str) -> String {
    if field == "_id" {
        "id".into()
    } else {
        format!("json_extract(doc, '{}')", json_path(field))
    }
}

fn type_expr(field: &str) -> String {
    format!("json_type(doc, '{}')", json_path(field))
}

/// A WHERE clause under construction with its bound parameters, knowing which paths of the
/// collection hold arrays.
struct Where {
    sql: String,
    params: Vec<SqlValue>,
    arrays: Vec<String>,
}

/// How a field's values are reached.
enum Shape {
    /// Never held an array: `json_extract` (served by expression indexes).
    Plain,
    /// Has held an array: the value, or else its elements.
    List,
}

/// How a BSON value is compared in SQL.
enum Operand {
    Number(SqlValue),
    Text(String),
    Bool(bool),
    Null,
    /// A value stored as a tagged JSON object (`$oid`, `$date`): compared as JSON text.
    Tagged {
        json: String,
        prefix: &'static str,
    },
    /// A document or array: compared as JSON text, equality only.
    Composite(String),
}

fn operand(value: &Bson) -> Operand {
    match value {
        Bson::Int32(n) => Operand::Number(SqlValue::Integer(i64::from(*n))),
        Bson::Int64(n) => Operand::Number(SqlValue::Integer(*n)),
        Bson::Double(f) => Operand::Number(SqlValue::Real(*f)),
        Bson::String(s) => Operand::Text(s.clone()),
        Bson::Boolean(b) => Operand::Bool(*b),
        Bson::Null | Bson::Undefined => Operand::Null,
        // As `to_stored_json` writes it, without building the JSON value first.
        Bson::ObjectId(id) => Operand::Tagged {
            json: format!("{{\"$oid\":\"{}\"}}", id.to_hex()),
            prefix: "{\"$oid\":",
        },
        Bson::DateTime(_) => Operand::Tagged {
            json: to_stored_json(value).to_string(),
            prefix: "{\"$date\":",
        },
        other => Operand::Composite(to_stored_json(other).to_string()),
    }
}

/// `EXISTS` over the elements of the array at `field` (`e.value`, `e.type`).
fn any_element(field: &str, condition: &str) -> String {
    format!(
        "({} = 'array' AND EXISTS (SELECT 1 FROM json_each(doc, '{}') AS e WHERE {condition}))",
        type_expr(field),
        json_path(field)
    )
}

impl Where {
    fn new(conn: &Connection, coll: &str) -> Result<Self, StoreError> {
        Ok(Self {
            sql: String::new(),
            params: Vec::new(),
            arrays: array_paths(conn, coll)?,
        })
    }

    fn bind(&mut self, value: SqlValue) -> String {
        self.params.push(value);
        format!("?{}", self.params.len())
    }

    /// Checks the field name and says whether it has held arrays; a path through an array of
    /// documents is refused (MongoDB would look into every element; this store does not).
    fn shape(&self, field: &str) -> Result<Shape, StoreError> {
        check_field(field)?;
        if let Some(list) = self.arrays.iter().find(|p| {
            field
                .strip_prefix(p.as_str())
                .is_some_and(|rest| rest.starts_with('.'))
        }) {
            return Err(StoreError::Invalid(format!(
                "{field} is inside the list {list}: the embedded store cannot query or sort on \
                 fields of documents in a list (MongoDB can); keep such values in a list field of \
                 their own"
            )));
        }
        Ok(if self.arrays.iter().any(|p| p == field) {
            Shape::List
        } else {
            Shape::Plain
        })
    }

    /// The ORDER BY terms for a sort key. On a list field, MongoDB's order: the smallest element
    /// ascending, the largest descending, an empty list before everything (even `null`).
    fn order(&self, field: &str, order: Order) -> Result<String, StoreError> {
        let dir = if order == Order::Asc { "ASC" } else { "DESC" };
        if field == "_id" {
            return Ok(format!("id {dir}"));
        }
        Ok(match self.shape(field)? {
            Shape::Plain => format!("{} {dir}", value_expr(field)),
            Shape::List => {
                let (t, p) = (type_expr(field), json_path(field));
                format!(
                    "CASE WHEN {t} = 'array' AND json_array_length(doc, '{p}') = 0 THEN 1 ELSE 0 END {rev}, \
                     CASE WHEN {t} = 'array' THEN (SELECT e.value FROM json_each(doc, '{p}') AS e \
                     ORDER BY e.value {dir} LIMIT 1) ELSE {v} END {dir}",
                    rev = if order == Order::Asc { "DESC" } else { "ASC" },
                    v = value_expr(field),
                )
            }
        })
    }

    fn filter(&mut self, filter: &Filter) -> Result<(), StoreError> {
        let clause = self.clause(filter)?;
        self.sql = clause;
        Ok(())
    }

    fn clause(&mut self, filter: &Filter) -> Result<String, StoreError> {
        Ok(match filter {
            Filter::All => "1".into(),
            Filter::Eq(f, v) => self.eq(f, v)?,
            Filter::In(f, vs) => {
                if vs.is_empty() {
                    "0".into()
                } else {
                    let parts = vs
                        .iter()
                        .map(|v| self.eq(f, v))
                        .collect::<Result<Vec<_>, _>>()?;
                    format!("({})", parts.join(" OR "))
                }
            }
            Filter::Contains(f, vs) => {
                if f == "_id" || vs.is_empty() || matches!(self.shape(f)?, Shape::Plain) {
                    check_field(f)?;
                    "0".into()
                } else {
                    let parts = vs
                        .iter()
                        .map(|v| self.eq_on("e.value", "e.type", v))
                        .collect::<Vec<_>>();
                    any_element(f, &format!("({})", parts.join(" OR ")))
                }
            }
            Filter::Cmp(f, op, v) => self.cmp(f, *op, v)?,
            Filter::Search(fields, text) => {
                if fields.is_empty() {
                    "0".into()
                } else {
                    let mut parts = Vec::new();
                    for f in fields {
                        let shape = self.shape(f)?;
                        let p = self.bind(SqlValue::Text(text.clone()));
                        parts.push(format!(
                            "({} = 'text' AND vt_icontains({}, {p}))",
                            type_expr(f),
                            value_expr(f)
                        ));
                        if let Shape::List = shape {
                            parts.push(any_element(
                                f,
                                &format!("e.type = 'text' AND vt_icontains(e.value, {p})"),
                            ));
                        }
                    }
                    format!("({})", parts.join(" OR "))
                }
            }
            Filter::And(items) | Filter::Or(items) => {
                if items.is_empty() {
                    return Ok(if matches!(filter, Filter::And(_)) {
                        "1"
                    } else {
                        "0"
                    }
                    .into());
                }
                let joiner = if matches!(filter, Filter::And(_)) {
                    " AND "
                } else {
                    " OR "
                };
                let parts = items
                    .iter()
                    .map(|i| self.clause(i))
                    .collect::<Result<Vec<_>, _>>()?;
                format!("({})", parts.join(joiner))
            }
        })
    }

    fn eq(&mut self, field: &str, value: &Bson) -> Result<String, StoreError> {
        if field == "_id" {
            check_field(field)?;
            return Ok(match value {
                Bson::ObjectId(id) => format!("id = {}", self.bind(SqlValue::Text(id.to_hex()))),
                _ => "0".into(),
            });
        }
        let shape = self.shape(field)?;
        let whole = self.eq_on(&value_expr(field), &type_expr(field), value);
        Ok(match shape {
            Shape::Plain => whole,
            Shape::List => {
                let element = self.eq_on("e.value", "e.type", value);
                format!("({whole} OR {})", any_element(field, &element))
            }
        })
    }

    /// Equality of the value `v` (of JSON type `t`) with `value`.
    fn eq_on(&mut self, v: &str, t: &str, value: &Bson) -> String {
        match operand(value) {
            Operand::Number(n) => {
                format!("({v} = {} AND {t} IN ('integer', 'real'))", self.bind(n))
            }
            Operand::Text(s) => {
                format!("({v} = {} AND {t} = 'text')", self.bind(SqlValue::Text(s)))
            }
            Operand::Bool(b) => format!("{t} = '{b}'"),
            Operand::Null => format!("({t} IS NULL OR {t} = 'null')"),
            Operand::Tagged { json, .. } => {
                format!(
                    "({v} = {} AND {t} = 'object')",
                    self.bind(SqlValue::Text(json))
                )
            }
            Operand::Composite(json) => {
                format!(
                    "({v} = {} AND {t} IN ('object', 'array'))",
                    self.bind(SqlValue::Text(json))
                )
            }
        }
    }

    fn cmp(&mut self, field: &str, op: Cmp, value: &Bson) -> Result<String, StoreError> {
        let sym = op.sql();
        if field == "_id" {
            check_field(field)?;
            return Ok(match value {
                Bson::ObjectId(id) => {
                    format!("id {sym} {}", self.bind(SqlValue::Text(id.to_hex())))
                }
                _ => "0".into(),
            });
        }
        let shape = self.shape(field)?;
        if let Operand::Composite(_) = operand(value) {
            return Err(StoreError::Invalid(format!(
                "range comparison of {field} with a document or array is not supported"
            )));
        }
        let whole = self.cmp_on(&value_expr(field), &type_expr(field), op, value);
        Ok(match shape {
            Shape::Plain => whole,
            Shape::List => {
                let element = self.cmp_on("e.value", "e.type", op, value);
                format!("({whole} OR {})", any_element(field, &element))
            }
        })
    }

    /// The range condition `v op value` for the value `v` of JSON type `t`, bracketed by type.
    fn cmp_on(&mut self, v: &str, t: &str, op: Cmp, value: &Bson) -> String {
        let sym = op.sql();
        match operand(value) {
            Operand::Number(n) => format!(
                "({t} IN ('integer', 'real') AND {v} {sym} {})",
                self.bind(n)
            ),
            Operand::Text(s) => format!(
                "({t} = 'text' AND {v} {sym} {})",
                self.bind(SqlValue::Text(s))
            ),
            Operand::Bool(b) => format!(
                "({t} IN ('true', 'false') AND {v} {sym} {})",
                self.bind(SqlValue::Integer(i64::from(b)))
            ),
            Operand::Null => match op {
                Cmp::Gte | Cmp::Lte => format!("({t} IS NULL OR {t} = 'null')"),
                Cmp::Gt | Cmp::Lt => "0".into(),
            },
            Operand::Tagged { json, prefix } => format!(
                "({t} = 'object' AND substr({v}, 1, {}) = '{prefix}' AND {v} {sym} {})",
                prefix.len(),
                self.bind(SqlValue::Text(json))
            ),
            Operand::Composite(_) => "0".into(),
        }
    }
}

fn set_path(doc: &mut Document, path: &str, value: Bson) {
    match path.split_once('.') {
        None => {
            doc.insert(path, value);
        }
        Some((head, rest)) => {
            if !matches!(doc.get(head), Some(Bson::Document(_))) {
                doc.insert(head, Document::new());
            }
            if let Some(Bson::Document(inner)) = doc.get_mut(head) {
                set_path(inner, rest, value);
            }
        }
    }
}

fn unset_path(doc: &mut Document, path: &str) {
    match path.split_once('.') {
        None => {
            doc.remove(path);
        }
        Some((head, rest)) => {
            if let Some(Bson::Document(inner)) = doc.get_mut(head) {
                unset_path(inner, rest);
            }
        }
    }
}

fn sql(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn is_missing_table(e: &rusqlite::Error) -> bool {
    e.to_string().contains("no such table")
}

/// Maps a unique-constraint failure to [`StoreError::Duplicate`] with the declared index name.
fn constraint(coll: &str, e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(err, Some(message)) = &e
        && err.code == rusqlite::ErrorCode::ConstraintViolation
        && message.contains("UNIQUE")
    {
        let index = message
            .split('\'')
            .nth(1)
            .map(|name| {
                name.strip_prefix(&format!("{coll}__"))
                    .unwrap_or(name)
                    .to_owned()
            })
            .unwrap_or_else(|| "_id_".into());
        return StoreError::Duplicate { index };
    }
    sql(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_paths_drop_indexes() {
        assert_eq!(array_path("$.tags"), "tags");
        assert_eq!(array_path("$.items[0].tags[12]"), "items.tags");
        assert_eq!(array_path("$.m[0][1]"), "m");
        let mut paths = HashSet::new();
        doc_array_paths(
            &bson::doc! { "t": [1], "a": { "b": [[{ "c": [] }]] }, "s": "x" },
            "",
            &mut paths,
        );
        let mut paths: Vec<_> = paths.into_iter().collect();
        paths.sort();
        assert_eq!(paths, ["a.b", "a.b.c", "t"]);
    }

    #[test]
    fn an_id_operand_is_the_id_as_stored() {
        let id = Bson::ObjectId(ObjectId::new());
        let Operand::Tagged { json, .. } = operand(&id) else {
            panic!("an id is compared as tagged JSON");
        };
        assert_eq!(json, to_stored_json(&id).to_string());
    }

    /// How many of the store's readers are open.
    fn open(store: &Embedded) -> usize {
        store
            .readers
            .iter()
            .filter(|r| r.lock().unwrap().is_some())
            .count()
    }

    /// A read counting to `n` in SQL (about 100 ns a step).
    fn counting(n: i64) -> impl Fn(&Connection, &str) -> Result<i64, StoreError> + Send + 'static {
        move |conn: &Connection, _: &str| {
            conn.query_row(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?1) \
                 SELECT count(*) FROM c",
                [n],
                |r| r.get::<_, i64>(0),
            )
            .map_err(sql)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_over_their_budget_are_stopped_and_cannot_hold_the_readers() {
        let dir = tempfile::tempdir().unwrap();
        let budget = Duration::from_millis(300);
        let store = Arc::new(
            Embedded::open(&dir.path().join("store.sqlite3"))
                .unwrap()
                .with_read_timeout(budget),
        );
        store.read("notes", |_, _| Ok(())).await.unwrap();
        // Ten billion steps: minutes of work unless stopped.
        let started = Instant::now();
        let outcome = store.read("notes", counting(10_000_000_000)).await;
        assert!(
            matches!(outcome, Err(StoreError::TooSlow { budget: b }) if b == budget),
            "{outcome:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );

        // Eight costly reads at once (twice the readers) and a cheap one behind them: the
        // cheap one waits at most for two rounds of budgets, and the readers serve again.
        let heavy: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.read("notes", counting(10_000_000_000)).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        assert_eq!(store.read("notes", counting(10)).await.unwrap(), 10);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        for read in heavy {
            assert!(matches!(
                read.await.unwrap(),
                Err(StoreError::TooSlow { .. })
            ));
        }
        // A read within its budget is not stopped, also on a blocking thread.
        assert_eq!(
            store.read("notes", counting(100_000)).await.unwrap(),
            100_000
        );
    }

    #[test]
    fn durable_stores_wait_for_the_disk_on_each_write() {
        let dir = tempfile::tempdir().unwrap();
        let synchronous = |store: &Embedded| -> i64 {
            store
                .conn
                .lock()
                .unwrap()
                .query_row("PRAGMA synchronous", [], |r| r.get(0))
                .unwrap()
        };
        let store = Embedded::open(&dir.path().join("a.sqlite3")).unwrap();
        assert_eq!(synchronous(&store), 1, "NORMAL");
        let store = Embedded::open(&dir.path().join("b.sqlite3"))
            .unwrap()
            .durable()
            .unwrap();
        assert_eq!(synchronous(&store), 2, "FULL");
    }

    #[tokio::test]
    async fn a_reader_opens_only_when_the_open_ones_are_busy() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Embedded::open(&dir.path().join("store.sqlite3")).unwrap());
        assert_eq!(open(&store), 0, "nothing read yet");
        for _ in 0..3 {
            store.read("notes", |_, _| Ok(())).await.unwrap();
        }
        assert_eq!(open(&store), 1, "one reader serves reads one at a time");

        // The first reader busy (held by another thread): the read opens a second.
        let (busy_tx, busy_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let held = store.clone();
        let holder = std::thread::spawn(move || {
            let _first = held.readers[0].lock().unwrap();
            busy_tx.send(()).unwrap();
            done_rx.recv().unwrap();
        });
        busy_rx.recv().unwrap();
        store.read("notes", |_, _| Ok(())).await.unwrap();
        done_tx.send(()).unwrap();
        holder.join().unwrap();
        assert_eq!(open(&store), 2);
    }

    #[tokio::test]
    async fn short_reads_run_in_place_and_long_ones_move_to_a_blocking_thread() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Embedded::open(&dir.path().join("store.sqlite3")).unwrap());
        store.read("notes", |_, _| Ok(())).await.unwrap();
        let here = std::thread::current().id();
        let runs = Arc::new(Mutex::new(Vec::new()));
        let count = |n: i64| {
            let (runs, read) = (runs.clone(), counting(n));
            move |conn: &Connection, coll: &str| {
                runs.lock().unwrap().push(std::thread::current().id());
                read(conn, coll)
            }
        };
        assert_eq!(store.read("notes", count(10)).await.unwrap(), 10);
        assert_eq!(
            *runs.lock().unwrap(),
            [here],
            "a short read runs in place, once"
        );
        runs.lock().unwrap().clear();
        assert_eq!(store.read("notes", count(100_000)).await.unwrap(), 100_000);
        let runs = runs.lock().unwrap();
        assert_eq!(runs.len(), 2, "interrupted in place, then run again");
        assert_eq!(runs[0], here);
        assert_ne!(runs[1], here, "the second run is on a blocking thread");
        assert_eq!(
            open(&store),
            2,
            "the blocking thread opened a reader of its own rather than take the free open one"
        );
    }

    #[tokio::test]
    async fn a_remembered_read_is_read_again_once_anything_commits() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("store.sqlite3");
        let store = Arc::new(Embedded::open(&file).unwrap());
        // Another process's store on the same file.
        let other = Arc::new(Embedded::open(&file).unwrap());
        let add = |store: &Arc<Embedded>, n: i32| {
            let store = store.clone();
            async move {
                store
                    .with("notes", move |conn, coll| {
                        insert(conn, coll, bson::doc! { "_id": ObjectId::new(), "n": n })
                    })
                    .await
                    .unwrap()
            }
        };
        add(&store, 1).await;
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = || {
            let runs = runs.clone();
            store.read_remembering("notes", move |conn, coll, memory| {
                memory.remember(conn, "all", || {
                    runs.fetch_add(1, Ordering::Relaxed);
                    Ok(find(conn, coll, &Query::filter(Filter::All))?.len())
                })
            })
        };
        let runs = || runs.load(Ordering::Relaxed);
        assert_eq!(count().await.unwrap(), 1);
        assert_eq!(count().await.unwrap(), 1);
        assert_eq!(runs(), 1, "unchanged: the second read is remembered");
        add(&store, 2).await;
        assert_eq!(count().await.unwrap(), 2, "this process's write is seen");
        add(&other, 3).await;
        assert_eq!(count().await.unwrap(), 3, "another process's write is seen");
        assert_eq!(count().await.unwrap(), 3);
        assert_eq!(
            runs(),
            3,
            "read again after each commit, remembered between them"
        );
    }

    /// The schema's SQL of the collection's table and indexes, by name.
    fn schema(file: &Path) -> Vec<(String, String)> {
        Connection::open(file)
            .unwrap()
            .prepare("SELECT name, sql FROM sqlite_schema WHERE tbl_name = 'notes' AND sql IS NOT NULL ORDER BY name")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[tokio::test]
    async fn a_collection_an_earlier_version_wrote_is_upgraded_with_its_documents_and_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("store.sqlite3");
        Connection::open(&file)
            .unwrap()
            .execute_batch(
                r#"CREATE TABLE "notes" (id TEXT PRIMARY KEY NOT NULL, doc BLOB NOT NULL) WITHOUT ROWID;
                CREATE INDEX "notes__owner_1_at_-1" ON "notes" (json_extract(doc, '$.owner'), json_extract(doc, '$.at') DESC);
                CREATE UNIQUE INDEX "notes__slug_1" ON "notes" (json_extract(doc, '$.slug'));
                CREATE INDEX "notes_by_hand" ON "notes" (length(doc));
                INSERT INTO notes VALUES
                    ('65a1b2c3d4e5f6a7b8c9d001', jsonb('{"owner":"a","at":1,"slug":"x"}')),
                    ('65a1b2c3d4e5f6a7b8c9d002', jsonb('{"owner":"a","at":2,"slug":"y"}'));"#,
            )
            .unwrap();
        let store = Arc::new(Embedded::open(&file).unwrap());
        let owned = Filter::eq("owner", "a");
        let n = store
            .read("notes", move |conn, coll| count(conn, coll, &owned))
            .await
            .unwrap();
        assert_eq!(n, 2, "the documents are kept");

        let upgraded = schema(&file);
        let sql = |name: &str| &upgraded.iter().find(|(n, _)| n == name).unwrap().1;
        assert!(!sql("notes").contains("WITHOUT ROWID"), "{}", sql("notes"));
        assert_eq!(
            sql("notes__owner_1_at_-1"),
            r#"CREATE INDEX "notes__owner_1_at_-1" ON "notes" (json_extract(doc, '$.owner'), json_extract(doc, '$.at') DESC, json_type(doc, '$.owner'), json_type(doc, '$.at'))"#
        );
        assert_eq!(
            sql("notes__slug_1"),
            r#"CREATE UNIQUE INDEX "notes__slug_1" ON "notes" (json_extract(doc, '$.slug'))"#,
            "a unique index keeps values only"
        );
        assert_eq!(
            sql("notes_by_hand"),
            r#"CREATE INDEX "notes_by_hand" ON "notes" (length(doc))"#
        );

        // The unique index still refuses a second "x"; the count reads the index alone.
        let taken = bson::doc! { "_id": ObjectId::new(), "owner": "b", "slug": "x" };
        let refused = store
            .with("notes", move |conn, coll| insert(conn, coll, taken))
            .await;
        assert!(
            matches!(&refused, Err(StoreError::Duplicate { index }) if index == "slug_1"),
            "{refused:?}"
        );
        let plan: String = Connection::open(&file)
            .unwrap()
            .query_row(
                r#"EXPLAIN QUERY PLAN SELECT count(*) FROM "notes" WHERE (json_extract(doc, '$.owner') = 'a' AND json_type(doc, '$.owner') = 'text')"#,
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(
            plan.contains("COVERING INDEX notes__owner_1_at_-1"),
            "{plan}"
        );

        // Opening it again changes nothing.
        drop(store);
        let again = Arc::new(Embedded::open(&file).unwrap());
        again.read("notes", |_, _| Ok(())).await.unwrap();
        assert_eq!(schema(&file), upgraded);
    }

    #[tokio::test]
    async fn a_count_on_indexed_fields_reads_the_index_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Embedded::open(&dir.path().join("store.sqlite3")).unwrap());
        let owner = ObjectId::new();
        let plan = store
            .with("notes", move |conn, coll| {
                create_index(conn, coll, &Index::on(["owner_id", "db_insert_dt"]))?;
                let at = bson::DateTime::now();
                for _ in 0..50 {
                    insert(conn, coll, bson::doc! { "_id": ObjectId::new(), "owner_id": owner, "db_insert_dt": at })?;
                }
                let mut w = Where::new(conn, coll)?;
                w.filter(&Filter::eq("owner_id", owner))?;
                let plan: Vec<String> = conn
                    .prepare(&format!("EXPLAIN QUERY PLAN SELECT count(*) FROM \"{coll}\" WHERE {}", w.sql))
                    .map_err(sql)?
                    .query_map(params_from_iter(w.params.iter()), |r| r.get(3))
                    .map_err(sql)?
                    .collect::<Result<_, _>>()
                    .map_err(sql)?;
                assert_eq!(count(conn, coll, &Filter::eq("owner_id", owner))?, 50);
                Ok(plan)
            })
            .await
            .unwrap();
        assert_eq!(
            plan,
            ["SEARCH notes USING COVERING INDEX notes__owner_id_1_db_insert_dt_1 (<expr>=?)"]
        );
    }
}
