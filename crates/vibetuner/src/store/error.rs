//! [`StoreError`]: what can go wrong in the store, and the HTTP answer each failure means.

use axum::http::StatusCode;

use crate::error::HttpStatus;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique index refused the write.
    #[error("duplicate key: unique index {index} already has this value")]
    Duplicate {
        /// The index name as declared (MongoDB's default `field_1` naming).
        index: String,
    },
    /// The query or document is not acceptable.
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// Settings make the store unusable.
    #[error("{0}")]
    Config(String),
    /// A stored document does not decode as expected.
    #[error("cannot decode a stored document: {0}")]
    Decode(String),
    /// The database failed.
    #[error("database error: {0}")]
    Backend(String),
}

impl HttpStatus for StoreError {
    /// 409 for duplicates, 422 for invalid requests, else 500.
    fn status(&self) -> StatusCode {
        match self {
            Self::Duplicate { .. } => StatusCode::CONFLICT,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Config(_) | Self::Decode(_) | Self::Backend(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// An invalid request's reason alone (the client sees it).
    fn detail(&self) -> String {
        match self {
            Self::Invalid(reason) => reason.clone(),
            other => other.to_string(),
        }
    }
}
