//! Logging in: accounts with argon2 passwords, sessions as an HTTP-only cookie (the web
//! board) or a bearer token (API clients), logout, password change. Every login and
//! failed login is audited. Guessing is slowed per username (a failed login after five
//! in 15 minutes is answered after 2 s); the right password is never refused, so a
//! stranger cannot lock a village worker out. Attempts are also limited per source
//! address ([`LoginSources`]): one address trying many usernames gets 429.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::{ApiError, AppState, Caller};
use crate::authz;
use crate::secrets;

/// The session cookie's name.
pub const COOKIE: &str = "anxin_session";
/// How long a session lasts.
pub const SESSION_MS: i64 = 12 * 3_600_000;
const MAX_FAILURES: u32 = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
const FAILURE_DELAY: Duration = Duration::from_secs(2);
/// Passwords shorter than this are refused when set.
const MIN_PASSWORD: usize = 10;

/// Failed logins per username in the current window.
pub type Failures = Arc<Mutex<HashMap<String, (u32, Instant)>>>;

/// Login attempts per source address (an IPv4 address or an IPv6 /64): a budget of
/// [`LOGIN_BURST`] refilled at [`LOGIN_PER_MINUTE`] a minute (GCRA, governor). Enough for
/// a village office where everyone logs in at 8 o'clock behind one address; a guesser
/// from one address gets 10 tries a minute, for all usernames together, on top of the
/// per-username slowing. Past it: 429 with `Retry-After`, before any password is hashed.
pub struct LoginSources {
    quota: governor::Quota,
    budgets: Mutex<Budgets>,
}

type Budgets = governor::RateLimiter<
    crate::broker::SourceKey,
    governor::state::keyed::HashMapStateStore<crate::broker::SourceKey>,
    governor::clock::DefaultClock,
>;

pub const LOGIN_PER_MINUTE: u32 = 10;
pub const LOGIN_BURST: u32 = 20;
/// Sources tracked before stale ones are dropped (and, if still this many, all).
const MAX_SOURCES: usize = 100_000;

impl Default for LoginSources {
    fn default() -> Self {
        let n = |v: u32| std::num::NonZeroU32::new(v).unwrap_or(std::num::NonZeroU32::MIN);
        let quota = governor::Quota::per_minute(n(LOGIN_PER_MINUTE)).allow_burst(n(LOGIN_BURST));
        LoginSources {
            quota,
            budgets: Mutex::new(governor::RateLimiter::hashmap(quota)),
        }
    }
}

impl LoginSources {
    /// Take one attempt from `source`'s budget; `Err(seconds)` until the next is allowed.
    /// Without a known address (no connect info) nothing is limited.
    pub fn attempt(&self, source: Option<&str>) -> Result<(), u64> {
        let Some(ip) = source.and_then(|s| s.parse::<std::net::IpAddr>().ok()) else {
            return Ok(());
        };
        let Ok(mut budgets) = self.budgets.lock() else {
            return Ok(());
        };
        if budgets.len() >= MAX_SOURCES {
            budgets.retain_recent();
            if budgets.len() >= MAX_SOURCES / 4 * 3 {
                *budgets = governor::RateLimiter::hashmap(self.quota);
                tracing::warn!("login per-source table full (many addresses?): starting afresh");
            }
        }
        budgets
            .check_key(&crate::broker::SourceKey::of(ip))
            .map_err(|not_until| {
                use governor::clock::Clock;
                not_until
                    .wait_time_from(governor::clock::DefaultClock::default().now())
                    .as_secs()
                    .max(1)
            })
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct LoginBody {
    username: String,
    password: String,
}

/// The client's address, when the server knows it (for the audit log).
pub(super) struct ClientAddr(Option<String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(super::client_addr(parts)))
    }
}

/// Count a failure; true when the username is past its allowance.
fn failed(f: &Failures, username: &str) -> bool {
    let Ok(mut m) = f.lock() else { return false };
    if m.len() >= 100_000 {
        m.clear();
    }
    let now = Instant::now();
    let e = m.entry(username.to_owned()).or_insert((0, now));
    if e.1.elapsed() >= FAILURE_WINDOW {
        *e = (0, now);
    }
    e.0 += 1;
    e.0 > MAX_FAILURES
}

/// `POST /api/login` `{"username","password"}` → `{"token","account_id","expires_at"}` and
/// the session cookie. Wrong username or password: 401, the same answer for both.
pub(super) async fn login(
    State(state): State<AppState>,
    ClientAddr(src): ClientAddr,
    Json(b): Json<LoginBody>,
) -> Result<Response, ApiError> {
    if let Err(secs) = state.login_sources.attempt(src.as_deref()) {
        metrics::counter!("anxin_logins_total", "outcome" => "source_limited").increment(1);
        tracing::info!(
            source = src.as_deref().unwrap_or("?"),
            "login refused: too many attempts from this address"
        );
        return Err(ApiError::TooManyRequests(
            format!("too many login attempts from your address; try again in {secs} s"),
            secs,
        ));
    }
    let store = &state.alarms.store;
    if b.username.is_empty() || b.username.len() > 128 || b.password.len() > 1024 {
        return Err(ApiError::BadRequest(
            "username and password are required".into(),
        ));
    }
    let found = store.account_login(&b.username).await?;
    let ok = match &found {
        Some((_, hash)) => {
            let (pw, hash) = (b.password.clone(), hash.clone());
            tokio::task::spawn_blocking(move || secrets::verify_secret(&pw, &hash))
                .await
                .unwrap_or(false)
        }
        None => false,
    };
    let Some((account, _)) = found.filter(|_| ok) else {
        metrics::counter!("anxin_logins_total", "outcome" => "failed").increment(1);
        tracing::info!("login failed");
        authz::audit_as(
            &state,
            "unknown",
            src.as_deref(),
            "login",
            "account:unknown",
            "denied",
            serde_json::json!({}),
        )
        .await;
        if failed(&state.login_failures, &b.username) {
            tokio::time::sleep(FAILURE_DELAY).await;
        }
        return Err(ApiError::Unauthorized);
    };
    if let Ok(mut m) = state.login_failures.lock() {
        m.remove(&b.username);
    }
    let token = secrets::random_token();
    let now = state.alarms.now();
    let expires_at = now + SESSION_MS;
    store
        .create_session(&token, &account, now, expires_at, src.as_deref())
        .await?;
    metrics::counter!("anxin_logins_total", "outcome" => "ok").increment(1);
    tracing::info!(account = %account, "login");
    authz::audit_as(
        &state,
        &account,
        src.as_deref(),
        "login",
        &format!("account:{account}"),
        "allowed",
        serde_json::json!({}),
    )
    .await;
    let cookie = format!(
        "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_MS / 1000
    );
    let mut resp = Json(serde_json::json!({
        "token": token,
        "account_id": account,
        "expires_at": expires_at,
    }))
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

/// `POST /api/logout`: ends the caller's session and clears the cookie.
pub(super) async fn logout(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let Some(token) = &caller.session else {
        return Err(ApiError::BadRequest(
            "API tokens have no session to end".into(),
        ));
    };
    state.alarms.store.end_session(token).await?;
    let _ = state.credentials_ended.send(caller.contact.id.clone());
    authz::audit(
        &state,
        &caller,
        "logout",
        &format!("account:{}", caller.contact.id),
        "allowed",
        serde_json::json!({}),
    )
    .await;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("anxin_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    Ok(resp)
}

#[derive(Debug, Deserialize)]
pub(super) struct PasswordBody {
    old_password: String,
    new_password: String,
}

/// `POST /api/password` `{"old_password","new_password"}`: every other session of the
/// account ends.
pub(super) async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    Json(b): Json<PasswordBody>,
) -> Result<StatusCode, ApiError> {
    if caller.session.is_none() {
        return Err(ApiError::BadRequest(
            "log in with a password to change it".into(),
        ));
    }
    if b.new_password.chars().count() < MIN_PASSWORD || b.new_password.len() > 1024 {
        return Err(ApiError::BadRequest(format!(
            "the new password must be at least {MIN_PASSWORD} characters"
        )));
    }
    let store = &state.alarms.store;
    let account = caller.contact.id.clone();
    let Some(hash) = store.account_password(&account).await? else {
        return Err(ApiError::Unauthorized);
    };
    let old = b.old_password.clone();
    let ok = tokio::task::spawn_blocking(move || secrets::verify_secret(&old, &hash))
        .await
        .unwrap_or(false);
    if !ok {
        authz::audit(
            &state,
            &caller,
            "password.change",
            &format!("account:{account}"),
            "denied",
            serde_json::json!({}),
        )
        .await;
        return Err(ApiError::Forbidden("the current password is wrong".into()));
    }
    let new = b.new_password.clone();
    let new_hash = tokio::task::spawn_blocking(move || secrets::hash_secret(&new))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(ApiError::Internal)?;
    store
        .change_password(
            &account,
            &new_hash,
            caller.session.as_deref(),
            state.alarms.now(),
        )
        .await?;
    let _ = state.credentials_ended.send(account.clone());
    authz::audit(
        &state,
        &caller,
        "password.change",
        &format!("account:{account}"),
        "allowed",
        serde_json::json!({}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Default and longest life of an API token created over REST.
const TOKEN_DAYS_DEFAULT: i64 = 90;
const TOKEN_DAYS_MAX: i64 = 365;
/// Live tokens one account may hold (each is a credential to watch over).
const MAX_LIVE_TOKENS: usize = 20;

#[derive(Debug, Deserialize)]
pub(super) struct NewTokenBody {
    /// What the token is for ("village PC", "care platform sync"): shown in lists.
    label: String,
    /// 1–365; default 90.
    expires_in_days: Option<i64>,
}

/// `POST /api/tokens` `{"label","expires_in_days"}` → `{"id","token","expires_at"}`: a new
/// API token for the caller's own account, shown once. Only from a logged-in session:
/// an API token cannot mint further tokens.
pub(super) async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    Json(b): Json<NewTokenBody>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    if caller.session.is_none() {
        return Err(ApiError::Forbidden(
            "log in with a password to create API tokens".into(),
        ));
    }
    let label = b.label.trim();
    if label.is_empty() || label.chars().count() > 64 {
        return Err(ApiError::BadRequest(
            "label is required, at most 64 characters".into(),
        ));
    }
    let days = b.expires_in_days.unwrap_or(TOKEN_DAYS_DEFAULT);
    if !(1..=TOKEN_DAYS_MAX).contains(&days) {
        return Err(ApiError::BadRequest(format!(
            "expires_in_days must be 1-{TOKEN_DAYS_MAX}"
        )));
    }
    let store = &state.alarms.store;
    let account = &caller.contact.id;
    let now = state.alarms.now();
    let live = store
        .api_tokens(account)
        .await?
        .into_iter()
        .filter(|t| t.revoked_at.is_none() && t.expires_at.is_none_or(|e| e > now))
        .count();
    if live >= MAX_LIVE_TOKENS {
        return Err(ApiError::Conflict(format!(
            "an account may hold {MAX_LIVE_TOKENS} live tokens; revoke one first"
        )));
    }
    let token = secrets::random_token();
    let expires_at = now + days * 86_400_000;
    let id = store
        .create_api_token(account, &token, label, now, Some(expires_at))
        .await?;
    authz::audit(
        &state,
        &caller,
        "token.create",
        &format!("token:{id}"),
        "allowed",
        serde_json::json!({ "account": account, "expires_at": expires_at }),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(
            serde_json::json!({ "id": id, "token": token, "label": label, "expires_at": expires_at }),
        ),
    ))
}

#[derive(Debug, Deserialize)]
pub(super) struct TokensQuery {
    /// District only: another account's tokens.
    account: Option<String>,
}

/// `GET /api/tokens`: the caller's own tokens (ids, labels, dates; never the tokens);
/// the district may ask for any account's (`?account=`).
pub(super) async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
    axum::extract::Query(q): axum::extract::Query<TokensQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let account = match q.account {
        Some(a) if a != caller.contact.id => {
            authz::district(&state, &caller, &format!("account:{a}")).await?;
            a
        }
        _ => caller.contact.id.clone(),
    };
    let tokens = state.alarms.store.api_tokens(&account).await?;
    Ok(Json(
        serde_json::json!({ "account": account, "tokens": tokens }),
    ))
}

/// `DELETE /api/tokens/{id}`: revoke one of one's own tokens (the district may revoke
/// anyone's). Open websockets using it are closed.
pub(super) async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let store = &state.alarms.store;
    let target = format!("token:{id}");
    let token = store.api_token(&id).await?;
    let Some(token) = token.filter(|t| {
        t.account_id == caller.contact.id || caller.contact.scope == crate::store::Scope::District
    }) else {
        // Someone else's token answers like a missing one (ids are not confirmed).
        return Err(ApiError::NotFound(format!("token {id}")));
    };
    store.revoke_api_token(&id, state.alarms.now()).await?;
    let _ = state.credentials_ended.send(token.account_id.clone());
    authz::audit(
        &state,
        &caller,
        "token.revoke",
        &target,
        "allowed",
        serde_json::json!({ "account": token.account_id }),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_budget_is_per_source_address() {
        let l = LoginSources::default();
        for _ in 0..LOGIN_BURST {
            assert!(l.attempt(Some("192.0.2.1")).is_ok());
        }
        assert!(l.attempt(Some("192.0.2.1")).is_err(), "spent");
        assert!(l.attempt(Some("192.0.2.2")).is_ok(), "another address");
        // An IPv6 /64 is one source: another address in it shares the budget.
        for _ in 0..LOGIN_BURST {
            assert!(l.attempt(Some("2001:db8::1")).is_ok());
        }
        assert!(l.attempt(Some("2001:db8::2")).is_err(), "same /64");
        assert!(l.attempt(Some("2001:db8:0:1::1")).is_ok(), "another /64");
        assert!(l.attempt(None).is_ok(), "no address known: not limited");
    }
}
