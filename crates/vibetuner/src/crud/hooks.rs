//! What a CRUD hook or access rule sees: the request and the app ([`HookContext`]), the
//! operation it runs for ([`Operation`]), and the future it returns ([`HookFuture`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::http::request::Parts;

use crate::auth::user::{LoadedUser, SessionUser};
use crate::context::AppContext;
use crate::error::Error;
use crate::store::Id;

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
    pub(super) fn new(parts: Parts) -> Result<Self, Error> {
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

    pub(super) fn suffix(self) -> &'static str {
        match self {
            Self::List => "list",
            Self::Create => "create",
            Self::Read => "read",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }
}
