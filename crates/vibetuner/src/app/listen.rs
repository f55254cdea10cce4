//! The accept loop: HTTP/1.1 connections under a global and a per-address cap, closed when
//! their headers take longer than `HEADER_READ_TIMEOUT` or they sit idle longer than
//! `KEEPALIVE_TIMEOUT`; accept errors (such as running out of file descriptors) back off
//! instead of spinning. Graceful shutdown stops accepting, lets requests in flight finish and
//! closes idle connections.
//!
//! At the global cap, a new connection takes the place of the stalest one that is not being
//! served ([`Activity::stale_since`]: idle, still sending its headers, trickling its body or not
//! reading its response) when that one has made no progress for [`EVICT_AFTER`]; only when
//! every connection is busy or recent is the new one refused. So slow clients from many
//! addresses cannot hold every place for as long as their timeouts allow.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use futures_util::task::AtomicWaker;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::ServiceExt;

use crate::config::Settings;
use crate::limits::{Counter, Slot};
use crate::logging::Throttled;

/// The connection limits of [`serve_connections`].
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) header_read_timeout: Duration,
    pub(crate) keepalive_timeout: Duration,
    /// How long a response may wait for the client to read more of it.
    pub(crate) send_timeout: Duration,
    /// Response bytes that may wait for their clients across all connections.
    pub(crate) send_buffer_budget: u64,
    /// The grace before a request body must keep up `body_min_rate` bytes per second.
    pub(crate) body_grace: Duration,
    pub(crate) body_min_rate: u64,
    pub(crate) max_connections: usize,
    pub(crate) max_per_ip: usize,
    /// Peers exempt from the per-address cap (`TRUSTED_PROXIES`).
    pub(crate) exempt: Vec<IpNet>,
}

impl Limits {
    pub(crate) fn new(settings: &Settings, exempt: Vec<IpNet>) -> Self {
        Self {
            header_read_timeout: Duration::from_secs(settings.header_read_timeout_secs),
            keepalive_timeout: Duration::from_secs(settings.keepalive_timeout_secs),
            send_timeout: Duration::from_secs(settings.send_timeout_secs),
            send_buffer_budget: settings.send_buffer_budget,
            body_grace: Duration::from_secs(settings.body_read_timeout_secs),
            body_min_rate: settings.body_min_rate,
            max_connections: settings
                .max_connections
                .min(Semaphore::MAX_PERMITS)
                .min(u32::MAX as usize),
            max_per_ip: settings.max_connections_per_ip,
            exempt,
        }
    }
}

/// What a connection is doing, for its timeouts: how many requests are in flight (their
/// handlers run or their responses stream) and, when none is, since when it has been reading a
/// request's headers or sitting idle. Atomics rather than a lock: every read and every response
/// updates it.
struct Activity {
    started: Instant,
    busy: AtomicUsize,
    /// Milliseconds from `started`; with [`HEAD`] set, reading headers since then (or waiting
    /// for the first request), else idle since then.
    since: AtomicU64,
    /// Milliseconds from `started` (plus one; 0: none) since when a write has been waiting for
    /// the client to read.
    blocked: AtomicU64,
    /// While a request body is being read (plus one; 0: none), milliseconds from `started`
    /// by which the bytes received so far were due at `BODY_MIN_RATE` from the body's start.
    body_due: AtomicU64,
    /// Chosen to make room at the cap: the connection closes at its next wake-up.
    evicted: AtomicBool,
    /// Wakes the connection's task (for its timer, shutdown or eviction).
    gate: Arc<Gate>,
    /// Response bytes handed to this connection and not written to the client yet.
    unsent: AtomicU64,
    /// The same, across all connections.
    all_unsent: Arc<AtomicU64>,
}

impl Drop for Activity {
    fn drop(&mut self) {
        self.all_unsent
            .fetch_sub(*self.unsent.get_mut(), Ordering::Relaxed);
    }
}

/// The flag of [`Activity::since`] that says "reading headers".
const HEAD: u64 = 1 << 63;

impl Activity {
    fn new(all_unsent: Arc<AtomicU64>) -> Self {
        Self {
            started: Instant::now(),
            busy: AtomicUsize::new(0),
            since: AtomicU64::new(HEAD),
            blocked: AtomicU64::new(0),
            body_due: AtomicU64::new(0),
            evicted: AtomicBool::new(false),
            gate: Arc::new(Gate::default()),
            unsent: AtomicU64::new(0),
            all_unsent,
        }
    }

    /// A response handed `bytes` more to write.
    fn queued(&self, bytes: u64) {
        self.unsent.fetch_add(bytes, Ordering::Relaxed);
        self.all_unsent.fetch_add(bytes, Ordering::Relaxed);
    }

    /// `bytes` were written to the client (the status line and headers too, which were never
    /// queued: only what was is taken off).
    fn written(&self, bytes: u64) {
        let Ok(before) = self
            .unsent
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                (u > 0).then(|| u.saturating_sub(bytes))
            })
        else {
            return;
        };
        self.all_unsent
            .fetch_sub(before.min(bytes), Ordering::Relaxed);
    }

    /// Since when (milliseconds from `started`) the connection has made no progress while
    /// nobody is being served on it: idle or sending its headers (since then), sending a
    /// request body slower than `BODY_MIN_RATE` (since the bytes it sent were due), or not
    /// reading a response (since that write waits). `None` while a handler works or a response
    /// flows: those are never evicted.
    fn stale_since(&self) -> Option<u64> {
        let blocked = self.blocked.load(Ordering::Relaxed);
        if blocked != 0 {
            return Some(blocked - 1);
        }
        if self.busy.load(Ordering::Relaxed) == 0 {
            return Some(self.since.load(Ordering::Relaxed) & !HEAD);
        }
        match self.body_due.load(Ordering::Relaxed) {
            0 => None,
            due => Some(due - 1),
        }
    }

    /// A request body of which `bytes` arrived since `body_started` (ms from `started`), at
    /// `rate` bytes per second at least; `None`: no body being read.
    fn body_progress(&self, progress: Option<(u64, u64, u64)>) {
        let due = progress.map_or(0, |(body_started, bytes, rate)| {
            body_started + bytes.saturating_mul(1000) / rate.max(1) + 1
        });
        self.body_due.store(due, Ordering::Relaxed);
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(HEAD - 1)
    }

    /// Bytes arrived: an idle connection is now reading a request's headers.
    fn read_bytes(&self) {
        if self.busy.load(Ordering::Relaxed) == 0 && self.since.load(Ordering::Relaxed) & HEAD == 0
        {
            self.since.store(HEAD | self.now(), Ordering::Relaxed);
        }
    }

    /// No request in flight, and one on its way: the connection is fresh, or the bytes of a
    /// request's head arrived.
    fn awaiting_head(&self) -> bool {
        self.busy.load(Ordering::Relaxed) == 0 && self.since.load(Ordering::Relaxed) & HEAD != 0
    }

    fn start(self: &Arc<Self>) -> InFlight {
        self.busy.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// A write could not go on (`true`: the client is not reading) or went on.
    fn write_blocked(&self, blocked: bool) {
        if !blocked {
            self.blocked.store(0, Ordering::Relaxed);
        } else if self.blocked.load(Ordering::Relaxed) == 0 {
            self.blocked.store(self.now() + 1, Ordering::Relaxed);
            // The connection's timer looks at a waiting response every second from now on.
            self.gate.wake_by_ref();
        }
    }

    /// When the connection is to be closed unless something happens first: a response the
    /// client stopped reading after `send_timeout`; while requests are in flight, nothing
    /// else; then the header or keep-alive timeout.
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        let blocked = self.blocked.load(Ordering::Relaxed);
        if blocked != 0 {
            // Over the budget of waiting response bytes, a second without reading is enough.
            let patience = if self.all_unsent.load(Ordering::Relaxed) > limits.send_buffer_budget {
                EVICT_AFTER
            } else {
                limits.send_timeout
            };
            return Some(self.started + Duration::from_millis(blocked - 1) + patience);
        }
        if self.busy.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let since = self.since.load(Ordering::Relaxed);
        let timeout = if since & HEAD == 0 {
            limits.keepalive_timeout
        } else {
            limits.header_read_timeout
        };
        Some(self.started + Duration::from_millis(since & !HEAD) + timeout)
    }
}

/// A request in flight, until its response body is done.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.since.store(self.0.now(), Ordering::Relaxed);
        }
    }
}

/// The TCP stream, reporting reads to the connection's [`Activity`]. It holds the connection's
/// place under the caps, so an upgraded connection (a WebSocket, which outlives the HTTP
/// connection that handed it over) keeps counting until it is closed.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
    _held: (OwnedSemaphorePermit, Slot),
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read_bytes();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.activity.write_blocked(result.is_pending());
        if let Poll::Ready(Ok(n)) = result {
            self.activity.written(n as u64);
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.activity.write_blocked(result.is_pending());
        if let Poll::Ready(Ok(n)) = result {
            self.activity.written(n as u64);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A response body that keeps its request in flight until it is sent or dropped; its size
/// hint is the body's, so hyper writes `Content-Length` whenever the length is known.
struct Tracked {
    body: Body,
    in_flight: InFlight,
}

impl hyper::body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let frame = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &frame
            && let Some(data) = frame.data_ref()
        {
            self.in_flight.0.queued(data.len() as u64);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// A request body that must keep up a minimum average rate once its grace has passed: by any
/// time `t` after the start it must have delivered `rate * (t - grace)` bytes, or it fails
/// (a trickle of a byte every few seconds would hold the connection for hours otherwise).
/// The per-pause limit (`BODY_READ_TIMEOUT`) stays with its own layer.
struct Paced {
    body: Incoming,
    /// Told while the body is being read, for eviction at the cap.
    activity: Arc<Activity>,
    started: Instant,
    bytes: u64,
    grace: Duration,
    rate: u64,
    /// When the body falls behind; made at the first wait.
    behind: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Paced {
    fn new(body: Incoming, limits: &Limits, activity: Arc<Activity>) -> Self {
        let paced = Self {
            body,
            activity,
            started: Instant::now(),
            bytes: 0,
            grace: limits.body_grace,
            rate: limits.body_min_rate.max(1),
            behind: None,
        };
        paced.report();
        paced
    }

    /// Tells the connection how far the body has come (nothing once it is complete).
    fn report(&self) {
        let reading = !hyper::body::Body::is_end_stream(&self.body);
        let started = self
            .started
            .saturating_duration_since(self.activity.started);
        self.activity.body_progress(reading.then(|| {
            let started = u64::try_from(started.as_millis()).unwrap_or(HEAD - 1);
            (started, self.bytes, self.rate)
        }));
    }

    fn due(&self) -> Instant {
        self.started + self.grace + Duration::from_secs_f64(self.bytes as f64 / self.rate as f64)
    }
}

impl hyper::body::Body for Paced {
    type Data = axum::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                    self.report();
                    let due = self.due();
                    if let Some(behind) = self.behind.as_mut() {
                        behind.as_mut().reset(due.into());
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => {
                self.activity.body_progress(None);
                Poll::Ready(other.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                let due = self.due();
                let rate = self.rate;
                let behind = self
                    .behind
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due.into())));
                match behind.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(format!(
                        "the request body arrives slower than {rate} bytes per second (BODY_MIN_RATE)"
                    )
                    .into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Paced {
    fn drop(&mut self) {
        self.activity.body_progress(None);
    }
}

/// How long a connection must have made no progress, while nobody is served on it, before a
/// new connection may take its place at the cap.
pub(crate) const EVICT_AFTER: Duration = Duration::from_secs(1);

/// How long a new connection waits for an evicted one to give back its place.
const EVICT_WAIT: Duration = Duration::from_millis(200);

/// The open connections, for eviction at the cap.
#[derive(Default)]
struct Open {
    /// Response bytes waiting for their clients, across all connections.
    unsent: Arc<AtomicU64>,
    next: AtomicU64,
    connections: std::sync::Mutex<std::collections::HashMap<u64, Arc<Activity>>>,
    /// The stalest connections at the last look over all of them (stalest last), and when that
    /// was: at the cap each new client takes the next of them rather than looking over every
    /// connection again, which a flood of thousands of new connections a second would make
    /// thousands of looks over 10,000 connections.
    candidates: std::sync::Mutex<(Option<Instant>, Vec<Arc<Activity>>)>,
}

/// How long the stalest connections found at one look stay the ones evicted first (a look over
/// 10,000 connections takes about a tenth of a millisecond).
const LOOK_AGAIN_AFTER: Duration = Duration::from_millis(10);
/// How many of the stalest one look keeps.
const EVICT_CANDIDATES: usize = 1024;

impl Open {
    fn add(self: &Arc<Self>, activity: Arc<Activity>) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, activity);
        Registered(self.clone(), id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Arc<Activity>>> {
        self.connections.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Evicts the connection that has made no progress for longest, if that is at least
    /// [`EVICT_AFTER`]; whether one was. Longest as of the last look over all connections, at
    /// most [`LOOK_AGAIN_AFTER`] ago.
    fn evict_stalest(&self) -> bool {
        let now = Instant::now();
        let stale_for = |a: &Activity| {
            let since = a.started + Duration::from_millis(a.stale_since()?);
            Some(now.saturating_duration_since(since)).filter(|d| *d >= EVICT_AFTER)
        };
        let mut candidates = self.candidates.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            while let Some(activity) = candidates.1.pop() {
                // Still stalled: it may have made progress since the look.
                if !activity.evicted.load(Ordering::Relaxed) && stale_for(&activity).is_some() {
                    activity.evicted.store(true, Ordering::Relaxed);
                    activity.gate.wake_by_ref();
                    return true;
                }
            }
            if candidates
                .0
                .is_some_and(|at| now.saturating_duration_since(at) < LOOK_AGAIN_AFTER)
            {
                return false;
            }
            let mut stale: Vec<(Duration, Arc<Activity>)> = self
                .lock()
                .values()
                .filter(|a| !a.evicted.load(Ordering::Relaxed))
                .filter_map(|a| Some((stale_for(a)?, a.clone())))
                .collect();
            if stale.len() > EVICT_CANDIDATES {
                stale.select_nth_unstable_by(EVICT_CANDIDATES, |a, b| b.0.cmp(&a.0));
                stale.truncate(EVICT_CANDIDATES);
            }
            stale.sort_unstable_by_key(|(d, _)| *d);
            *candidates = (Some(now), stale.into_iter().map(|(_, a)| a).collect());
        }
    }
}

/// A connection's entry in [`Open`], removed when the connection ends.
struct Registered(Arc<Open>, u64);

impl Drop for Registered {
    fn drop(&mut self) {
        self.0.lock().remove(&self.1);
    }
}

/// Wakes a connection's task for its timer and shutdown signal, and remembers that it did: the
/// task then polls them only when they woke it, not on each of the connection's reads and
/// writes (which `select!` would, at a cost of a few percent of a small request).
struct Gate {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            // Polled once at first, to start the timer and listen for the shutdown.
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        }
    }
}

impl Gate {
    /// Registers the task's waker; whether the timer or the shutdown signal woke the task
    /// since the last call.
    fn woke(&self, task: &Waker) -> bool {
        self.task.register(task);
        self.woken.swap(false, Ordering::AcqRel)
    }
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// The most bytes a request's line and headers may take: 431 beyond (browsers send a few KB;
/// nginx's default allows 32 KB).
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Refused connections get this (written without waiting) before they are closed.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 20\r\nRetry-After: 5\r\nConnection: close\r\n\r\ntoo many connections";

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, lets requests
/// in flight finish and returns once every connection is closed.
/// Connections the kernel queues before they are accepted (capped by `net.core.somaxconn`,
/// 4096 on current Linux). tokio's `TcpListener::bind` asks for 1024: a flood of new
/// connections fills that within a second, and the kernel then drops a legitimate client's
/// SYN, which retries only after a second.
const LISTEN_BACKLOG: u32 = 4096;

/// Listens on `addr` (`host:port`; a name tries each of its addresses in turn) with
/// [`LISTEN_BACKLOG`].
pub(crate) async fn bind(addr: &str) -> io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(addr).await? {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        // As `TcpListener::bind` does: a restarted server can listen at once.
        socket.set_reuseaddr(true)?;
        match socket
            .bind(addr)
            .and_then(|()| socket.listen(LISTEN_BACKLOG))
        {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr} names no address"),
        )
    }))
}

pub(crate) async fn serve_connections(
    listener: TcpListener,
    router: crate::middleware::Stack,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let admission = Arc::new(Admission {
        global: Arc::new(Semaphore::new(limits.max_connections)),
        limits: Arc::new(limits),
        router,
        stop: stop_rx,
        open: Arc::new(Open::default()),
        per_ip: Arc::new(Counter::default()),
        refused_log: std::sync::Mutex::new(Throttled::new(Duration::from_secs(10))),
        evicting: Arc::new(Semaphore::new(EVICT_PENDING)),
        newcomers: Arc::new(Semaphore::new(EVICT_PENDING)),
    });
    let mut error_log = Throttled::new(Duration::from_secs(10));
    let mut backoff = Duration::ZERO;
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    backoff = Duration::ZERO;
                    accepted
                }
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // EMFILE and the like: retrying at once would spin.
                    backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                    error_log.log(|held| {
                        tracing::error!(held_back = held, "accept error: {e}; retrying in {}ms", backoff.as_millis());
                    });
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            },
        };
        // The address's own cap first: a client over it makes no room at the global one.
        let Some(slot) = admission.slot(peer) else {
            admission.refuse(stream, peer, "MAX_CONNECTIONS_PER_IP");
            continue;
        };
        match admission.global.clone().try_acquire_owned() {
            Ok(permit) => admission.admit(stream, peer, (permit, slot)),
            Err(_) => {
                // Full: the place of a stalled connection, waited for off this loop so that
                // accepting goes on meanwhile (a bounded number of waits at once).
                // An address with no other connection open has places of its own to wait in:
                // a flood from the addresses that hold the places cannot take them all.
                let newcomer = slot.first();
                let waiting = admission
                    .evicting
                    .clone()
                    .try_acquire_owned()
                    .ok()
                    .or_else(|| {
                        newcomer
                            .then(|| admission.newcomers.clone().try_acquire_owned().ok())
                            .flatten()
                    });
                let Some(waiting) = waiting else {
                    admission.refuse(stream, peer, "MAX_CONNECTIONS");
                    continue;
                };
                // Someone to evict now; or, for an address's first connection, within the time
                // a connection takes to count as stalled (a flood's connections are all fresh
                // at first, and would otherwise keep a new visitor out for that long).
                let evicted = admission.open.evict_stalest();
                if !evicted && !newcomer {
                    admission.refuse(stream, peer, "MAX_CONNECTIONS");
                    continue;
                }
                let admission = admission.clone();
                tokio::spawn(async move {
                    let patience = if evicted {
                        EVICT_WAIT
                    } else {
                        EVICT_AFTER + EVICT_WAIT
                    };
                    let deadline = tokio::time::Instant::now() + patience;
                    let acquire = admission.global.clone().acquire_owned();
                    let mut acquire = pin!(acquire);
                    let mut evicted = evicted;
                    let place = loop {
                        tokio::select! {
                            place = &mut acquire => break place.ok(),
                            () = tokio::time::sleep_until(deadline) => break None,
                            () = tokio::time::sleep(EVICT_AFTER / 10), if !evicted => {
                                evicted = admission.open.evict_stalest();
                            }
                        }
                    };
                    drop(waiting);
                    match place {
                        Some(permit) => admission.admit(stream, peer, (permit, slot)),
                        None => admission.refuse(stream, peer, "MAX_CONNECTIONS"),
                    }
                });
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a permit: all of them back means all connections closed.
    let _ = admission
        .global
        .acquire_many(admission.limits.max_connections as u32)
        .await;
}

/// At a stop, how long a connection whose request has not been read yet keeps its chance to
/// send it: one accepted just before the stop (as when `vibetuner dev` hands its socket to a
/// fresh build) has usually sent it already.
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);
/// How often a stopping connection is looked at for its first request.
const STOPPING_LOOK: Duration = Duration::from_millis(10);

/// How many new connections may wait at once for the place of an evicted one.
const EVICT_PENDING: usize = 256;

/// What admitting a connection needs: the caps, the open connections and what serves them.
struct Admission {
    global: Arc<Semaphore>,
    limits: Arc<Limits>,
    router: crate::middleware::Stack,
    stop: watch::Receiver<bool>,
    open: Arc<Open>,
    per_ip: Arc<Counter>,
    refused_log: std::sync::Mutex<Throttled>,
    /// Places for connections waiting on an eviction.
    evicting: Arc<Semaphore>,
    /// As many again, for the first connection of an address.
    newcomers: Arc<Semaphore>,
}

impl Admission {
    /// A place under the per-address cap (trusted proxies are exempt), if the address has one.
    fn slot(&self, peer: SocketAddr) -> Option<Slot> {
        let ip = peer.ip().to_canonical();
        let counted = (!self.limits.exempt.iter().any(|n| n.contains(&ip))).then_some(ip);
        // The total is the semaphore's: only the per-address cap can refuse here.
        self.per_ip
            .acquire(counted, usize::MAX, self.limits.max_per_ip)
            .ok()
    }

    /// Serves a connection that has its places under both caps.
    fn admit(&self, stream: TcpStream, peer: SocketAddr, held: (OwnedSemaphorePermit, Slot)) {
        tokio::spawn(serve_connection(
            stream,
            peer,
            self.router.clone(),
            self.limits.clone(),
            self.stop.clone(),
            held,
            self.open.clone(),
        ));
    }

    fn refuse(&self, stream: TcpStream, peer: SocketAddr, setting: &str) {
        let _ = stream.try_write(REFUSED);
        self.refused_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .log(|held| {
                tracing::warn!(
                    %peer,
                    held_back = held,
                    "connection refused: {setting} reached"
                );
            });
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: crate::middleware::Stack,
    limits: Arc<Limits>,
    mut stop: watch::Receiver<bool>,
    held: (OwnedSemaphorePermit, Slot),
    open: Arc<Open>,
) {
    let activity = Arc::new(Activity::new(open.unsent.clone()));
    let _registered = open.add(activity.clone());
    let io = TokioIo::new(Watched {
        stream,
        activity: activity.clone(),
        _held: held,
    });
    let requests = activity.clone();
    let (paced, reading) = (limits.clone(), activity.clone());
    let service = router
        .map_request(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request.map(|body| Body::new(Paced::new(body, &paced, reading.clone())))
        })
        .map_future(move |response| {
            let in_flight = requests.start();
            async move {
                let response: axum::response::Response = response.await?;
                // The request stays in flight until its body (an SSE stream, say) is done.
                Ok::<_, std::convert::Infallible>(response.map(|body| Tracked { body, in_flight }))
            }
        });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The timeouts are ours (hyper's header timer would also cut idle keep-alive connections).
    // The parser's strict defaults, stated: one space between the parts of the request line,
    // a malformed header line refuses the request; and headers of at most MAX_HEADER_BYTES
    // (hyper's default is its ~400 KB buffer, per connection).
    builder
        .header_read_timeout(None)
        .allow_multiple_spaces_in_request_line_delimiters(false)
        .ignore_invalid_headers(false)
        .max_header_size(MAX_HEADER_BYTES);
    let mut conn = pin!(
        builder
            .serve_connection(io, TowerToHyperService::new(service))
            .with_upgrades()
    );
    let mut stop = Some(Box::pin(async move {
        let _ = stop.wait_for(|stop| *stop).await;
    }));
    // Looked at least every `send_timeout`: a response stalls without waking the connection.
    let first = activity
        .deadline(&limits)
        .unwrap_or_else(Instant::now)
        .min(Instant::now() + limits.send_timeout);
    let mut timer = Box::pin(tokio::time::sleep_until(first.into()));
    let gate = activity.gate.clone();
    let mut stopping: Option<Instant> = None;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = conn.as_mut().poll(cx) {
            if let Err(e) = result {
                tracing::trace!(%peer, "connection ended: {e}");
            }
            return Poll::Ready(());
        }
        if !gate.woke(cx.waker()) {
            return Poll::Pending;
        }
        if activity.evicted.load(Ordering::Relaxed) {
            tracing::debug!(%peer, "closing a stalled connection to make room at MAX_CONNECTIONS");
            return Poll::Ready(());
        }
        let waker = Waker::from(gate.clone());
        let mut own = Context::from_waker(&waker);
        if stop
            .as_mut()
            .is_some_and(|stop| stop.as_mut().poll(&mut own).is_ready())
        {
            stop = None;
            stopping = Some(Instant::now() + FIRST_REQUEST_GRACE);
        }
        // Closed once its request is read: a connection accepted just before the stop, or
        // whose request was arriving, has the grace to send it (hyper would close it as idle,
        // unanswered).
        if stopping.is_some_and(|until| !activity.awaiting_head() || Instant::now() >= until) {
            stopping = None;
            conn.as_mut().graceful_shutdown();
            // The connection may now finish (an idle one closes): poll it again.
            cx.waker().wake_by_ref();
        }
        let soon = tokio::time::Instant::now() + EVICT_AFTER;
        if activity.blocked.load(Ordering::Relaxed) != 0 && timer.deadline() > soon {
            timer.as_mut().reset(soon);
        }
        while timer.as_mut().poll(&mut own).is_ready() {
            let now = Instant::now();
            match activity.deadline(&limits) {
                Some(at) if at <= now => {
                    tracing::debug!(
                        %peer,
                        "closing a connection: headers too slow, idle too long or not reading its response"
                    );
                    return Poll::Ready(());
                }
                // A response waiting on its reader is looked at every second: the budget of
                // waiting bytes may be passed meanwhile, which shortens its patience.
                Some(at) => {
                    let every = if activity.blocked.load(Ordering::Relaxed) == 0 {
                        limits.send_timeout
                    } else {
                        EVICT_AFTER
                    };
                    timer.as_mut().reset(at.min(now + every).into());
                }
                // Busy: looked at again when the request is likely done, or a stalled
                // response has had its time.
                None => timer.as_mut().reset(
                    (now + limits.header_read_timeout.min(limits.send_timeout)).into(),
                ),
            }
        }
        // Stopping a connection awaiting a request: looked at again soon, for it.
        let soon = tokio::time::Instant::now() + STOPPING_LOOK;
        if stopping.is_some() && timer.deadline() > soon {
            timer.as_mut().reset(soon);
            let _ = timer.as_mut().poll(&mut own);
        }
        Poll::Pending
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2,000 connections waiting to be accepted (the queue tokio's own `bind` allows is 1,024):
    /// each is taken by the kernel at once rather than dropped and retried a second later.
    #[tokio::test]
    async fn a_burst_of_connections_waits_in_the_backlog() {
        let listener = bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut connected = Vec::new();
        for n in 0..2000 {
            let stream = tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr))
                .await
                .unwrap_or_else(|_| {
                    panic!("connection {n} was not queued (net.core.somaxconn below 2,048?)")
                })
                .unwrap();
            connected.push(stream);
        }
        let (_, peer) = listener.accept().await.unwrap();
        assert_eq!(peer, connected[0].local_addr().unwrap());
    }

    #[tokio::test]
    async fn a_name_with_no_free_address_is_an_error() {
        let taken = bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        assert!(bind(&addr).await.is_err());
    }
}
