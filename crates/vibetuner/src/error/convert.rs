//! How any failure a handler returns with `?` becomes an HTTP answer: the framework's error
//! types that mean something other than a 500, found anywhere in the error's chain, answer
//! their own [`HttpStatus`]; anything else is a 500. This is the one list of those types.

use std::error::Error as StdError;

use super::{Error, HttpStatus};
use crate::jobs::JobError;
use crate::mail::MailError;
use crate::security::CsrfRefusal;
use crate::store::{FieldError, InvalidId, StoreError};

impl<E: Into<anyhow::Error>> From<E> for Error {
    fn from(err: E) -> Self {
        let err = err.into();
        err.chain()
            .find_map(known)
            .unwrap_or_else(|| Self::internal(format!("{err:#}")))
    }
}

/// The framework error `cause` is, as its HTTP answer.
fn known(cause: &(dyn StdError + 'static)) -> Option<Error> {
    fn as_http<T: HttpStatus + 'static>(cause: &(dyn StdError + 'static)) -> Option<Error> {
        cause.downcast_ref::<T>().map(HttpStatus::to_http)
    }
    as_http::<StoreError>(cause)
        .or_else(|| as_http::<JobError>(cause))
        .or_else(|| as_http::<InvalidId>(cause))
        .or_else(|| as_http::<FieldError>(cause))
        .or_else(|| as_http::<CsrfRefusal>(cause))
        .or_else(|| as_http::<MailError>(cause))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    fn status(err: impl Into<anyhow::Error>) -> StatusCode {
        Error::from(err).status()
    }

    #[test]
    fn framework_errors_keep_their_meaning() {
        assert_eq!(
            status(StoreError::Duplicate { index: "i".into() }),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status(StoreError::Invalid("x".into())),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            status(JobError::UnknownTask("nope".into())),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(JobError::Arguments {
                task: "t".into(),
                reason: "r".into()
            }),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(status(InvalidId("zz".into())), StatusCode::NOT_FOUND);
        let field = Error::from(FieldError::new("title", "must not be empty"));
        assert_eq!(
            (field.status(), field.detail()),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid field `title`: must not be empty"
            )
        );
        assert_eq!(
            status(MailError::Address("a@".into())),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            status(StoreError::Backend("down".into())),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            status(std::io::Error::other("disk")),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn an_invalid_store_request_shows_its_reason_alone() {
        let http = Error::from(StoreError::Invalid("limit must be at most 100".into()));
        assert_eq!(http.detail(), "limit must be at most 100");
    }

    #[test]
    fn a_framework_error_is_found_behind_context() {
        let err = anyhow::Error::from(JobError::UnknownTask("nope".into())).context("enqueueing");
        let http = Error::from(err);
        assert_eq!(http.status(), StatusCode::NOT_FOUND);
        assert!(http.detail().contains("nope"), "{}", http.detail());
    }
}
