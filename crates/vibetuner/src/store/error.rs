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
    /// A read ran longer than its budget (`STORE_READ_TIMEOUT`) and was stopped.
    #[error(
        "the query ran longer than {} ms (STORE_READ_TIMEOUT) and was stopped: narrow it \
         (a filter, a shorter search, a smaller page) or try again later",
        .budget.as_millis()
    )]
    TooSlow {
        /// The budget it ran over.
        budget: std::time::Duration,
    },
    /// The database failed.
    #[error("database error: {0}")]
    Backend(String),
}

impl HttpStatus for StoreError {
    /// 409 for duplicates, 422 for invalid requests, 503 for a read over its budget, else 500.
    fn status(&self) -> StatusCode {
        match self {
            Self::Duplicate { .. } => StatusCode::CONFLICT,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooSlow { .. } => StatusCode::SERVICE_UNAVAILABLE,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_over_its_budget_answers_503_with_what_to_do() {
        let e = StoreError::TooSlow {
            budget: std::time::Duration::from_secs(5),
        };
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        let detail = e.detail();
        assert!(detail.contains("5000 ms (STORE_READ_TIMEOUT)"), "{detail}");
        assert!(detail.contains("narrow it"), "{detail}");
    }
}
