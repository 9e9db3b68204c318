//! The viewer's static files, from `--viewer-dir`. Names are checked
//! segment by segment and never leave that folder.

use std::path::Path;

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

use super::params::Params;
use super::{Problem, S};

const NOT_INSTALLED: &str = "<!doctype html><meta charset=utf-8><title>radhub</title><h1>radhub</h1>\
<p>The viewer's files are not installed (see <code>--viewer-dir</code>). The API is at <a href=/api/openapi.json>/api/openapi.json</a>.";

pub async fn index(State(state): State<S>) -> Response {
    let page = state.viewer_dir.as_deref().map(|d| d.join("index.html"));
    let bytes = match page {
        Some(p) => tokio::task::spawn_blocking(move || std::fs::read(p).ok()).await.ok().flatten(),
        None => None,
    };
    match bytes {
        Some(bytes) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], bytes).into_response(),
        None => Html(NOT_INSTALLED).into_response(),
    }
}

pub async fn file(State(state): State<S>, p: Params) -> Result<Response, Problem> {
    let name = p.get("path");
    let ok = name.len() <= 200
        && name.split('/').all(|seg| !seg.is_empty() && !seg.starts_with('.') && seg.bytes().all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c)));
    if !ok {
        return Err(Problem::bad_request("viewer file names are letters, digits, '.', '_' and '-' in plain folders"));
    }
    let dir = state.viewer_dir.as_deref().ok_or_else(|| Problem::not_found("the viewer is not installed"))?;
    let path = dir.join(name);
    let bytes = tokio::task::spawn_blocking(move || std::fs::read(path)).await?.map_err(|_| Problem::not_found(format!("no viewer file {name}")))?;
    Ok(([(header::CONTENT_TYPE, content_type(Path::new(name)))], bytes).into_response())
}

fn content_type(p: &Path) -> &'static str {
    match p.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        _ => "application/octet-stream",
    }
}
