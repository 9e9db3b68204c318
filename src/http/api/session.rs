//! Sign-in (a session cookie), who is signed in, sign-out, and API tokens,
//! which need the password again and expire.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Extension, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{auth_problem, blocking, JsonBody};
use crate::auth::{Principal, SignInError, MAX_TOKEN_TTL, SESSION_TTL, TOKEN_TTL};
use crate::http::access::{cookie, SESSION_COOKIE};
use crate::http::{Problem, S};

#[derive(Deserialize)]
pub struct SignIn {
    username: String,
    password: String,
}

/// A failed password check as the client sees it.
fn refused(e: SignInError) -> Result<Response, Problem> {
    match e {
        SignInError::Invalid => Err(Problem::new(StatusCode::UNAUTHORIZED, SignInError::Invalid.to_string())),
        e @ SignInError::Throttled(wait) => {
            let mut r = Problem::new(StatusCode::TOO_MANY_REQUESTS, e.to_string()).into_response();
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
            Ok(r)
        }
        SignInError::Auth(e) => Err(auth_problem(e)),
    }
}

/// Each password check costs an argon2 hash (19 MiB, tens of ms): a few at
/// a time, so that a flood of them cannot take the memory or the cores.
fn busy() -> Response {
    let mut r = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "too many sign-ins at once; try again in a second").into_response();
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1));
    r
}

pub async fn sign_in(State(state): State<S>, ConnectInfo(peer): ConnectInfo<SocketAddr>, JsonBody(body): JsonBody<SignIn>) -> Result<Response, Problem> {
    let client = peer.ip().to_string();
    let Ok(_slot) = state.sign_in_slots.try_acquire() else { return Ok(busy()) };
    let st = state.clone();
    let result = blocking(move || Ok(st.auth.sign_in(&body.username, &body.password, &client))).await?;
    match result {
        Ok((token, p)) => {
            let cookie = format!("{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}", SESSION_TTL.as_secs(), secure(&state));
            let mut r = Json(json!({"user": p.user, "role": p.role})).into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            Ok(r)
        }
        Err(e) => refused(e),
    }
}

/// `Secure` when clients reach radhub over HTTPS (behind a TLS terminator,
/// `--public-url https://…`): the browser never sends the session in clear.
fn secure(state: &S) -> &'static str {
    if state.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    }
}

pub async fn whoami(Extension(p): Extension<Principal>) -> Json<Principal> {
    Json(p)
}

pub async fn sign_out(State(state): State<S>, headers: HeaderMap) -> Result<Response, Problem> {
    let secure = secure(&state);
    if let Some(token) = cookie(&headers, SESSION_COOKIE).map(str::to_owned) {
        blocking(move || state.auth.sign_out(&token).map_err(auth_problem)).await?;
    }
    let clear = format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}");
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response())
}

#[derive(Deserialize)]
pub struct NewToken {
    /// The signed-in user's password, checked again.
    password: String,
    #[serde(default)]
    label: String,
    /// Days the token lasts (1 to 365; default 90).
    days: Option<u64>,
}

pub async fn new_token(
    State(state): State<S>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(p): Extension<Principal>,
    JsonBody(body): JsonBody<NewToken>,
) -> Result<Response, Problem> {
    let ttl = match body.days {
        None => TOKEN_TTL,
        Some(d) if (1..=MAX_TOKEN_TTL.as_secs() / 86_400).contains(&d) => Duration::from_secs(d * 86_400),
        Some(_) => return Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "days is 1 to 365")),
    };
    let Ok(_slot) = state.sign_in_slots.try_acquire() else { return Ok(busy()) };
    let client = peer.ip().to_string();
    let st = state.clone();
    let made = blocking(move || Ok(st.auth.new_token_checked(&p.user, &body.password, &body.label, ttl, &client))).await?;
    match made {
        Ok((token, expires_ms)) => Ok((StatusCode::CREATED, Json(json!({"token": token, "expires_ms": expires_ms}))).into_response()),
        Err(e) => refused(e),
    }
}
