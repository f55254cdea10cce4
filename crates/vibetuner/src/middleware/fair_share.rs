//! A fair share of the handlers for every client: each client (the signed-in user, else the
//! address, IPv6 by its /64) has at most `REQUESTS_PER_CLIENT` requests in the stack at once;
//! more wait their turn, and past [`WAITING`] of them the request answers 429.
//!
//! Without it the runtime serves requests first come, first served, so one client sending
//! thousands of costly requests at once (1 MB pages it never reads, from a hundred
//! connections) puts everyone else's request behind all of its own. With it, that client's
//! requests queue among themselves and another client's request runs next to at most a few of
//! them.
//!
//! Who the client is takes a session read to know, and a flood of requests would queue those
//! reads too: so every request first takes a turn of its address ([`by_address`], outside the
//! session layer). Once the session says who is signed in ([`by_user`], inside
//! `auth::load_user`), a signed-in user's request gives the address's turn back and takes one
//! of the user's instead, so people behind one address (a company's NAT) do not share a few
//! turns; anyone else keeps the address's. A turn is held until the handler returns its
//! response: a streamed body (SSE, a download) does not keep it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::LoadedUser;
use crate::error::Error;
use crate::logging::Throttled;
use crate::security::ClientIp;

/// Requests one client may have waiting for a slot; more answer 429 at once. An HTTP/1.1
/// connection carries one request at a time, so an address within `MAX_CONNECTIONS_PER_IP`
/// (100) never meets it; a user signed in from many addresses, or HTTP/2 streams, can.
pub(crate) const WAITING: usize = 100;

/// Who a request is counted for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Client {
    /// A signed-in user, wherever they connect from.
    User(String),
    /// Anyone else, by address (IPv6 by its /64).
    Address(IpAddr),
}

impl Client {
    /// The request's address, IPv6 by its /64.
    fn address_of(request: &Request) -> Self {
        let ip = request
            .extensions()
            .get::<ClientIp>()
            .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0);
        Self::Address(crate::limits::ip_key(ip))
    }
}

/// One client's slots and how many of its requests hold or wait for one.
struct Share {
    slots: Arc<Semaphore>,
    requests: usize,
}

/// The clients with requests in their handlers or waiting; a client leaves when its last
/// request is answered.
pub(crate) struct FairShare {
    per_client: usize,
    clients: Mutex<HashMap<Client, Share>>,
    /// Refusals are logged at most every 10 s: a flood makes thousands.
    refused_log: Mutex<Throttled>,
}

impl FairShare {
    /// Shares of `per_client` slots (`REQUESTS_PER_CLIENT`).
    pub(crate) fn new(per_client: usize) -> Arc<Self> {
        Arc::new(Self {
            per_client,
            clients: Mutex::new(HashMap::new()),
            refused_log: Mutex::new(Throttled::new(std::time::Duration::from_secs(10))),
        })
    }

    /// Counts a request for `client`: its slots, or `None` when too many are waiting already.
    fn enter(&self, client: &Client) -> Option<Arc<Semaphore>> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let share = clients.entry(client.clone()).or_insert_with(|| Share {
            slots: Arc::new(Semaphore::new(self.per_client)),
            requests: 0,
        });
        if share.requests >= self.per_client + WAITING {
            return None;
        }
        share.requests += 1;
        Some(share.slots.clone())
    }

    /// Uncounts a request that [`FairShare::enter`] counted.
    fn leave(&self, client: &Client) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(share) = clients.get_mut(client) {
            share.requests -= 1;
            if share.requests == 0 {
                clients.remove(client);
            }
        }
    }

    /// Clients with requests in their handlers or waiting (for tests).
    #[cfg(test)]
    fn clients(&self) -> usize {
        self.clients.lock().unwrap().len()
    }

    /// Waits for a slot of `client`'s; `None` when too many of its requests wait already.
    async fn turn(self: &Arc<Self>, client: Client) -> Option<Turn> {
        let slots = self.enter(&client)?;
        // Counted before the wait: a request abandoned while it waits is uncounted too.
        let mut turn = Turn {
            share: self.clone(),
            client,
            _slot: None,
        };
        // An error only if the slots were closed; they never are.
        turn._slot = slots.acquire_owned().await.ok();
        Some(turn)
    }
}

/// A request's place in its client's share: counted until dropped (answered, failed, or
/// abandoned by its client), holding one of the client's slots once it has one.
struct Turn {
    share: Arc<FairShare>,
    client: Client,
    _slot: Option<OwnedSemaphorePermit>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.share.leave(&self.client);
    }
}

/// The address's turn, from [`by_address`] to [`by_user`] (a request extension).
#[derive(Clone)]
struct AddressTurn(Arc<Mutex<Option<Turn>>>);

/// 429, for a client with too many requests waiting.
fn too_many(share: &FairShare, client: &Client) -> Response {
    share
        .refused_log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .log(|held| {
            tracing::warn!(
                ?client,
                held_back = held,
                "too many requests at once from one client (REQUESTS_PER_CLIENT)"
            );
        });
    let mut response = Error::new(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many requests at once from this client; wait for the ones already sent.",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Middleware, outside the session layer: runs the request within its address's share.
pub(crate) async fn by_address(
    State(share): State<Arc<FairShare>>,
    mut request: Request,
    next: Next,
) -> Response {
    let client = Client::address_of(&request);
    let Some(turn) = share.turn(client.clone()).await else {
        return too_many(&share, &client);
    };
    let held = AddressTurn(Arc::new(Mutex::new(Some(turn))));
    request.extensions_mut().insert(held.clone());
    let response = next.run(request).await;
    // The turn ends here, unless `by_user` handed it back earlier.
    drop(held);
    response
}

/// Middleware, inside `auth::load_user`: a signed-in user's request trades its address's turn
/// for one of the user's.
pub(crate) async fn by_user(
    State(share): State<Arc<FairShare>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(user) = LoadedUser::of(request.extensions()) else {
        return next.run(request).await;
    };
    let client = Client::User(user.id.clone());
    if let Some(address) = request.extensions().get::<AddressTurn>() {
        address.0.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
    let Some(_turn) = share.turn(client.clone()).await else {
        return too_many(&share, &client);
    };
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn user(id: &str) -> Client {
        Client::User(id.to_owned())
    }

    #[test]
    fn a_client_leaves_with_its_last_request() {
        let share = FairShare::new(2);
        let a = share.enter(&user("a")).unwrap();
        let b = share.enter(&user("a")).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "one client shares one set of slots");
        share.enter(&user("b")).unwrap();
        assert_eq!(share.clients(), 2);
        share.leave(&user("a"));
        share.leave(&user("b"));
        assert_eq!(share.clients(), 1);
        share.leave(&user("a"));
        assert_eq!(share.clients(), 0);
    }

    #[test]
    fn past_the_waiting_line_requests_are_refused() {
        let share = FairShare::new(2);
        for _ in 0..2 + WAITING {
            assert!(share.enter(&user("a")).is_some());
        }
        assert!(share.enter(&user("a")).is_none());
        assert!(share.enter(&user("b")).is_some(), "another client is not");
        share.leave(&user("a"));
        assert!(share.enter(&user("a")).is_some());
    }

    /// With one slot each: a signed-in user's request in its handler leaves its address's slot
    /// to an anonymous request from the same address, and takes the user's from any address.
    #[tokio::test]
    async fn a_signed_in_request_gives_its_address_turn_back() {
        use axum::routing::get;
        use tower::ServiceExt;
        let share = FairShare::new(1);
        let release = Arc::new(tokio::sync::Notify::new());
        let held = release.clone();
        let as_sent = |request: Request, next: Next| async move {
            let mut request = request;
            let ip = request.headers()["x-ip"].to_str().unwrap().parse().unwrap();
            let user = request
                .headers()
                .get("x-user")
                .map(|u| crate::auth::SessionUser {
                    id: u.to_str().unwrap().to_owned(),
                    name: None,
                    email: None,
                    picture: None,
                    language: None,
                });
            request.extensions_mut().insert(ClientIp(ip));
            request.extensions_mut().insert(LoadedUser(user));
            next.run(request).await
        };
        let router = axum::Router::new()
            .route("/hold", get(move || async move { held.notified().await }))
            .route("/quick", get(|| async {}))
            .layer(axum::middleware::from_fn_with_state(share.clone(), by_user))
            .layer(axum::middleware::from_fn_with_state(
                share.clone(),
                by_address,
            ))
            .layer(axum::middleware::from_fn(as_sent));
        let request = |path: &str, ip: &str, user: Option<&str>| {
            let mut builder = Request::get(path).header("x-ip", ip);
            if let Some(user) = user {
                builder = builder.header("x-user", user);
            }
            builder.body(axum::body::Body::empty()).unwrap()
        };
        let holding = tokio::spawn(router.clone().oneshot(request(
            "/hold",
            "192.0.2.1",
            Some("u1"),
        )));
        while share.clients() < 1 || !share.clients.lock().unwrap().contains_key(&user("u1")) {
            tokio::task::yield_now().await;
        }
        let quick = |ip, user| {
            let router = router.clone();
            async move {
                tokio::time::timeout(
                    Duration::from_secs(5),
                    router.oneshot(request("/quick", ip, user)),
                )
                .await
                .is_ok()
            }
        };
        assert!(
            quick("192.0.2.1", None).await,
            "the address's slot was kept"
        );
        let waiting = tokio::spawn(quick("198.51.100.7", Some("u1")));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !waiting.is_finished(),
            "the user had two requests in at once"
        );
        release.notify_one();
        holding.await.unwrap().unwrap();
        assert!(waiting.await.unwrap());
        assert_eq!(share.clients(), 0);
    }

    #[test]
    fn an_ipv6_client_is_its_64() {
        let of = |ip: &str| {
            let mut request = Request::new(axum::body::Body::empty());
            request
                .extensions_mut()
                .insert(ClientIp(ip.parse().unwrap()));
            Client::address_of(&request)
        };
        assert_eq!(of("2001:db8:1:2::1"), of("2001:db8:1:2:ffff::9"));
        assert_ne!(of("2001:db8:1:2::1"), of("2001:db8:1:3::1"));
        assert_ne!(of("192.0.2.1"), of("192.0.2.2"));
    }
}
