//! Request ids: every request gets an `X-Request-Id` (a random UUID unless the client sent
//! one), which the logs, error pages and templates read from the request's headers, and the
//! response carries back.
//!
//! tower-http's `SetRequestId` and `PropagateRequestId` do the same as two layers, with a
//! request extension and the id formatted through a `String`; this is one layer that only
//! touches headers (the outermost layer runs for every request, health probes included).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Bytes;
use axum::http::{HeaderName, HeaderValue, Request, Response};
use tower::Service;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Sets and propagates `X-Request-Id` around `S`.
#[derive(Clone)]
pub(crate) struct RequestId<S>(S);

impl<S> RequestId<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self(inner)
    }
}

impl<S, B, R> Service<Request<B>> for RequestId<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = WithId<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> WithId<S::Future> {
        let id = match request.headers().get(&X_REQUEST_ID) {
            Some(id) => id.clone(),
            None => {
                let id = new_id();
                request
                    .headers_mut()
                    .insert(X_REQUEST_ID.clone(), id.clone());
                id
            }
        };
        WithId {
            inner: self.0.call(request),
            id: Some(id),
        }
    }
}

/// A random (v4) UUID, hyphenated, as a header value. Its bytes are one shared allocation, so
/// the request's and the response's copies are two references to it.
fn new_id() -> HeaderValue {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
    HeaderValue::from_maybe_shared(Bytes::from_owner(text)).expect("a UUID is a valid header value")
}

pin_project_lite::pin_project! {
    /// The response future of [`RequestId`]: adds the id to the response unless it has one.
    pub(crate) struct WithId<F> {
        #[pin]
        inner: F,
        id: Option<HeaderValue>,
    }
}

impl<F, R, E> Future for WithId<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = Result<Response<R>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        if let Some(id) = this.id.take() {
            response.headers_mut().entry(&X_REQUEST_ID).or_insert(id);
        }
        Poll::Ready(Ok(response))
    }
}
