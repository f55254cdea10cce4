//! Meta routes: `/robots.txt`, `/sitemap.xml`, `/site.webmanifest` (overridable templates under
//! `meta/`) and `/favicon.ico` (the app's `assets/statics/favicons/favicon.ico`, else generated).

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use minijinja::context;

use crate::error::Error;
use crate::render::{Renderer, RequestInfo};

/// What the meta routes need.
pub(crate) struct Meta {
    /// The template renderer.
    pub renderer: Arc<Renderer>,
    /// The app's favicon, if it ships one.
    pub favicon: Option<PathBuf>,
    /// The public origin (`BASE_URL` or `https://{fqdn}`; always set in prod); in dev without
    /// one, the request's `Host` is used.
    pub origin: Option<String>,
    /// Brand colour for the generated favicon, `#rrggbb`.
    pub brand_color: String,
}

/// The meta routes, with their table for the `routes` command.
pub(crate) fn router(meta: Arc<Meta>) -> (Router, Vec<crate::routes::RouteInfo>) {
    let (router, table) = crate::routes::Recorder::new(crate::routes::OUTER_LAYERS)
        .route(
            "/robots.txt",
            templated("meta/robots.txt.jinja", "text/plain; charset=utf-8"),
        )
        .route(
            "/sitemap.xml",
            templated("meta/sitemap.xml.jinja", "application/xml"),
        )
        .route(
            "/site.webmanifest",
            templated("meta/site.webmanifest.jinja", "application/manifest+json"),
        )
        .route("/favicon.ico", get(favicon))
        .into_parts();
    (router.with_state(meta), table)
}

fn templated(template: &'static str, content_type: &'static str) -> MethodRouter<Arc<Meta>> {
    get(move |state: State<Arc<Meta>>, request: Request| {
        text(state, request, template, content_type)
    })
}

async fn text(
    State(meta): State<Arc<Meta>>,
    request: Request,
    template: &'static str,
    content_type: &'static str,
) -> Result<Response, Error> {
    let (parts, _) = request.into_parts();
    let origin = meta.origin.clone().unwrap_or_else(|| {
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
            })
            .unwrap_or("localhost");
        format!("http://{host}")
    });
    let info = RequestInfo::from_parts(&parts);
    let body = meta.renderer.render(
        template,
        Some(&info),
        context! { base_url => minijinja::Value::from_safe_string(origin) },
    )?;
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response())
}

async fn favicon(State(meta): State<Arc<Meta>>) -> Response {
    let bytes = match &meta.favicon {
        Some(path) => tokio::fs::read(path).await.ok(),
        None => None,
    }
    .unwrap_or_else(|| generated_favicon(&meta.brand_color));
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("image/x-icon"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            ),
        ],
        bytes,
    )
        .into_response()
}

/// A 16×16 ICO: a disc in the brand colour on a transparent background.
pub(crate) fn generated_favicon(color: &str) -> Vec<u8> {
    const SIZE: u32 = 16;
    let hex = color.trim_start_matches('#');
    let channel = |i: usize| {
        hex.get(i..i + 2)
            .and_then(|c| u8::from_str_radix(c, 16).ok())
            .unwrap_or(0x5b)
    };
    let (r, g, b) = (channel(0), channel(2), channel(4));
    let pixels = SIZE * SIZE * 4;
    let mask = SIZE * 4; // 1 bit per pixel, rows padded to 32 bits
    let image_size = 40 + pixels + mask;
    let mut ico = Vec::with_capacity(22 + image_size as usize);
    ico.extend_from_slice(&[0, 0, 1, 0, 1, 0]);
    ico.extend_from_slice(&[SIZE as u8, SIZE as u8, 0, 0]);
    ico.extend_from_slice(&1u16.to_le_bytes());
    ico.extend_from_slice(&32u16.to_le_bytes());
    ico.extend_from_slice(&image_size.to_le_bytes());
    ico.extend_from_slice(&22u32.to_le_bytes());
    ico.extend_from_slice(&40u32.to_le_bytes());
    ico.extend_from_slice(&(SIZE as i32).to_le_bytes());
    ico.extend_from_slice(&(2 * SIZE as i32).to_le_bytes());
    ico.extend_from_slice(&1u16.to_le_bytes());
    ico.extend_from_slice(&32u16.to_le_bytes());
    ico.extend_from_slice(&[0; 4]);
    ico.extend_from_slice(&(pixels + mask).to_le_bytes());
    ico.extend_from_slice(&[0; 16]);
    let centre = (SIZE as f32 - 1.0) / 2.0;
    for y in 0..SIZE {
        for x in 0..SIZE {
            let d = (x as f32 - centre).hypot(y as f32 - centre);
            let alpha = ((SIZE as f32 / 2.0 - d) * 255.0).clamp(0.0, 255.0) as u8;
            ico.extend_from_slice(&[b, g, r, alpha]);
        }
    }
    ico.extend(std::iter::repeat_n(0, mask as usize));
    ico
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_favicon_is_a_well_formed_ico() {
        let ico = generated_favicon("#5b2333");
        assert_eq!(&ico[..6], &[0, 0, 1, 0, 1, 0]);
        let size = u32::from_le_bytes(ico[14..18].try_into().unwrap()) as usize;
        let offset = u32::from_le_bytes(ico[18..22].try_into().unwrap()) as usize;
        assert_eq!(offset + size, ico.len());
        let centre = offset + 40 + (8 * 16 + 8) * 4;
        assert_eq!(&ico[centre..centre + 4], &[0x33, 0x23, 0x5b, 255]);
    }
}
