//! Static files under `/static/v{hash}/...`: the app's `assets/statics/` first, then the
//! framework's embedded statics. Unversioned or stale-hash URLs redirect to the current hash.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use base64::Engine;
use sha2::{Digest, Sha256};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::error::Error;

/// The framework's embedded statics (`crates/vibetuner/statics`).
#[derive(rust_embed::RustEmbed)]
#[folder = "statics/"]
pub(crate) struct FrameworkStatics;

/// First 8 characters of URL-safe base64 of SHA-256(version), as in Vibetuner.
pub(crate) fn version_hash(version: &str) -> String {
    let digest = Sha256::digest(version.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)[..8].to_owned()
}

/// Where statics come from and how they are cached.
pub(crate) struct Statics {
    /// The app's `assets/statics` folder, when it exists.
    pub dir: Option<PathBuf>,
    /// Current version hash.
    pub v_hash: String,
    /// Long-lived immutable caching (prod) or revalidation on every load (dev).
    pub immutable: bool,
}

impl Statics {
    /// `/static/v{hash}/{path}`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("/static/v{}/{}", self.v_hash, path.trim_start_matches('/'))
    }

    fn cache_control(&self) -> HeaderValue {
        HeaderValue::from_static(if self.immutable {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        })
    }
}

/// The `/static/...` route, with its table for the `routes` command.
pub(crate) fn router(statics: Arc<Statics>) -> (Router, Vec<crate::routes::RouteInfo>) {
    let (router, table) = crate::routes::Recorder::new(crate::routes::OUTER_LAYERS)
        .route("/static/{*path}", get(serve_static))
        .into_parts();
    (router.with_state(statics), table)
}

/// Strips a `v{8 chars}/` prefix of another version, if any.
fn strip_stale_hash(path: &str) -> &str {
    match path.split_once('/') {
        Some((first, rest))
            if first.len() == 9
                && first.starts_with('v')
                && first[1..]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            rest
        }
        _ => path,
    }
}

async fn serve_static(
    State(statics): State<Arc<Statics>>,
    Path(path): Path<String>,
    request: Request,
) -> Result<Response, Error> {
    let current = format!("v{}/", statics.v_hash);
    let Some(rest) = path.strip_prefix(&current) else {
        // The path as sent (still percent-encoded): a decoded one may hold bytes a Location
        // header cannot carry.
        let sent = request
            .uri()
            .path()
            .strip_prefix("/static/")
            .unwrap_or_default();
        let mut target = statics.url(strip_stale_hash(sent));
        if let Some(q) = request.uri().query() {
            target = format!("{target}?{q}");
        }
        return Ok(Redirect::temporary(&target).into_response());
    };
    if rest.split('/').any(|seg| seg == ".." || seg.is_empty()) {
        return Err(Error::not_found());
    }
    if let Some(dir) = &statics.dir {
        let file = dir.join(rest);
        if file.is_file() {
            let mut response = ServeFile::new(file)
                .oneshot(request)
                .await
                .map_err(|e| Error::internal(e.to_string()))?
                .into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, statics.cache_control());
            return Ok(response);
        }
    }
    let embedded = FrameworkStatics::get(rest).ok_or_else(Error::not_found)?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_str(embedded.metadata.mimetype())
                    .unwrap_or(HeaderValue::from_static("application/octet-stream")),
            ),
            (header::CACHE_CONTROL, statics.cache_control()),
        ],
        embedded.data.into_owned(),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_short() {
        let h = version_hash("1.0.0");
        assert_eq!(h.len(), 8);
        assert_eq!(h, version_hash("1.0.0"));
        assert_ne!(h, version_hash("1.0.1"));
    }

    #[test]
    fn stale_hashes_are_stripped() {
        assert_eq!(strip_stale_hash("vAbCd-_12/css/x.css"), "css/x.css");
        assert_eq!(strip_stale_hash("css/x.css"), "css/x.css");
        assert_eq!(strip_stale_hash("vendor/x.js"), "vendor/x.js");
    }
}
