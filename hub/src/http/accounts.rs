//! Logging in: accounts with argon2 passwords, sessions as an HTTP-only cookie (the web
//! board) or a bearer token (API clients), logout, password change. Every login and
//! failed login is audited. Guessing is slowed per username (a failed login after five
//! in 15 minutes is answered after 2 s); the right password is never refused, so a
//! stranger cannot lock a village worker out. Failed attempts are also limited per
//! client address ([`LoginSources`]): one address failing with many usernames gets 429.
//! An unknown username is checked against a dummy hash, so it takes as long as a known
//! one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// Failed logins per source address (an IPv4 address or an IPv6 /64): a budget of
/// [`LOGIN_BURST`] refilled at [`LOGIN_PER_MINUTE`] a minute (GCRA, governor). A failure
/// that finds the budget spent blocks the source until the next one is due: its logins
/// are then answered 429 with `Retry-After`, before any password is hashed. Enough for a
/// village office behind one address; a guesser from one address gets 10 tries a minute,
/// for all usernames together, on top of the per-username slowing.
///
/// Only failures count. Successful logins never draw on the budget, or one guesser
/// behind a shared address (a proxy on the same host, a village NAT) would keep the
/// people there out: with every login counted, two garbage logins a second kept a real
/// user out 8 times in 9. At most [`LOGIN_BURST`] logins of one source are checked at
/// once, so a burst of simultaneous guesses cannot all be hashed before the first
/// failure counts. The source is the client's address behind `[http] trusted_proxies`
/// ([`super::edge::Edge::client_ip`]); loopback is not limited unless
/// `[http] limit_loopback_logins`, like the MQTT per-source limits.
pub struct LoginSources {
    quota: governor::Quota,
    limit_loopback: bool,
    tables: Mutex<LoginTables>,
    /// Password checks run at a time, for all sources: argon2 takes 19 MiB and a core
    /// each, and unknown usernames cost one too (below).
    gate: tokio::sync::Semaphore,
    /// argon2 verifications run for logins, known usernames or not (read by tests).
    checks: AtomicU64,
}

struct LoginTables {
    failures: Budgets,
    /// Sources whose budget is spent, and until when.
    blocked: HashMap<crate::broker::SourceKey, Instant>,
    /// Logins being checked now, per source.
    in_flight: HashMap<crate::broker::SourceKey, u32>,
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
        Self::new(false)
    }
}

impl LoginSources {
    pub fn new(limit_loopback: bool) -> Self {
        let n = |v: u32| std::num::NonZeroU32::new(v).unwrap_or(std::num::NonZeroU32::MIN);
        let quota = governor::Quota::per_minute(n(LOGIN_PER_MINUTE)).allow_burst(n(LOGIN_BURST));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        LoginSources {
            quota,
            limit_loopback,
            tables: Mutex::new(LoginTables {
                failures: governor::RateLimiter::hashmap(quota),
                blocked: HashMap::new(),
                in_flight: HashMap::new(),
            }),
            gate: tokio::sync::Semaphore::new(cores),
            checks: AtomicU64::new(0),
        }
    }

    /// argon2 verifications run for logins since the start.
    pub fn password_checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }

    /// Begin a login from `ip`: `Err(seconds)` while the source is blocked or has
    /// [`LOGIN_BURST`] logins being checked. Without a known address (no connect info),
    /// from loopback (unless limited) nothing is limited.
    pub fn begin(&self, ip: Option<IpAddr>) -> Result<Attempt<'_>, u64> {
        let key = ip
            .map(|ip| ip.to_canonical())
            .filter(|ip| self.limit_loopback || !ip.is_loopback())
            .map(crate::broker::SourceKey::of);
        let Some(key) = key else {
            return Ok(Attempt {
                sources: self,
                key: None,
            });
        };
        let Ok(mut t) = self.tables.lock() else {
            return Ok(Attempt {
                sources: self,
                key: None,
            });
        };
        let now = Instant::now();
        if let Some(until) = t.blocked.get(&key) {
            if *until > now {
                return Err(until.duration_since(now).as_secs().max(1));
            }
            t.blocked.remove(&key);
        }
        let n = t.in_flight.entry(key).or_insert(0);
        if *n >= LOGIN_BURST {
            return Err(1);
        }
        *n += 1;
        Ok(Attempt {
            sources: self,
            key: Some(key),
        })
    }

    /// A login from `key` failed: draw on its budget; block it once that is spent.
    /// True when this failure blocked the source.
    fn failed(&self, key: crate::broker::SourceKey) -> bool {
        let Ok(mut t) = self.tables.lock() else {
            return false;
        };
        if t.failures.len() >= MAX_SOURCES || t.blocked.len() >= MAX_SOURCES {
            let now = Instant::now();
            t.failures.retain_recent();
            t.blocked.retain(|_, until| *until > now);
            if t.failures.len() >= MAX_SOURCES / 4 * 3 || t.blocked.len() >= MAX_SOURCES / 4 * 3 {
                t.failures = governor::RateLimiter::hashmap(self.quota);
                t.blocked.clear();
                tracing::warn!("login per-source table full (many addresses?): starting afresh");
            }
        }
        match t.failures.check_key(&key) {
            Ok(()) => false,
            Err(not_until) => {
                use governor::clock::Clock;
                let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
                t.blocked.insert(key, Instant::now() + wait);
                true
            }
        }
    }
}

/// A login being checked; its source's place is given back when dropped.
pub struct Attempt<'a> {
    sources: &'a LoginSources,
    key: Option<crate::broker::SourceKey>,
}

impl Attempt<'_> {
    /// The password was wrong (or the username unknown): count it against the source.
    fn failed(&self) -> bool {
        self.key.is_some_and(|k| self.sources.failed(k))
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let Some(key) = self.key else { return };
        let Ok(mut t) = self.sources.tables.lock() else {
            return;
        };
        if let Some(n) = t.in_flight.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                t.in_flight.remove(&key);
            }
        }
    }
}

/// The argon2 hash that a login for an unknown username or a disabled account is
/// checked against, so that it takes as long as a known one and the answer time does not
/// tell which usernames exist. Made once, by the same code (and so with the same
/// parameters) as real password hashes, from a random secret nobody knows. Slow: call
/// from a blocking thread.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        secrets::hash_secret(&secrets::random_token()).unwrap_or_else(|e| {
            tracing::error!(error = %e, "making the dummy password hash failed");
            String::new()
        })
    })
}

#[derive(Debug, Deserialize)]
pub(super) struct LoginBody {
    username: String,
    password: String,
}

/// The client's address, when the server knows it (behind trusted proxies, the one they
/// report; see [`super::edge::Edge::client_ip`]).
pub(super) struct ClientAddr(Option<IpAddr>);

impl axum::extract::FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(state.edge.client_ip(parts)))
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
    ClientAddr(ip): ClientAddr,
    Json(b): Json<LoginBody>,
) -> Result<Response, ApiError> {
    let src = ip.map(|ip| ip.to_string());
    let attempt = match state.login_sources.begin(ip) {
        Ok(a) => a,
        Err(secs) => {
            metrics::counter!("anxin_logins_total", "outcome" => "source_limited").increment(1);
            tracing::info!(
                source = src.as_deref().unwrap_or("?"),
                "login refused: too many failed attempts from this address"
            );
            return Err(ApiError::TooManyRequests(
                format!("too many login attempts from your address; try again in {secs} s"),
                secs,
            ));
        }
    };
    let store = &state.alarms.store;
    if b.username.is_empty() || b.username.len() > 128 || b.password.len() > 1024 {
        return Err(ApiError::BadRequest(
            "username and password are required".into(),
        ));
    }
    let found = store.account_login(&b.username).await?;
    // Unknown usernames and disabled accounts (not found either) are checked against
    // the dummy hash: the same argon2 work, so the same time.
    let known = found.as_ref().map(|(_, hash)| hash.clone());
    let ok = {
        let _permit = state.login_sources.gate.acquire().await;
        state.login_sources.checks.fetch_add(1, Ordering::Relaxed);
        let pw = b.password.clone();
        let matched = tokio::task::spawn_blocking(move || {
            let hash: &str = match &known {
                Some(h) => h,
                None => dummy_hash(),
            };
            secrets::verify_secret(&pw, hash)
        })
        .await
        .unwrap_or(false);
        // (Nothing matches the dummy hash: its secret was random and is gone.)
        matched && found.is_some()
    };
    let Some((account, _)) = found.filter(|_| ok) else {
        if attempt.failed() {
            metrics::counter!("anxin_login_sources_blocked_total").increment(1);
            tracing::warn!(
                source = src.as_deref().unwrap_or("?"),
                "login source blocked: too many failed logins"
            );
        }
        drop(attempt);
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
    drop(attempt);
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
    fn only_failures_draw_on_the_budget_of_their_source_address() {
        let l = LoginSources::default();
        let a: Option<IpAddr> = "192.0.2.1".parse().ok();
        // Successes (attempts that are not marked failed) never draw.
        for _ in 0..3 * LOGIN_BURST {
            drop(l.begin(a).expect("successes are not limited"));
        }
        for i in 0..LOGIN_BURST {
            let at = l.begin(a).expect("within the budget");
            assert!(!at.failed(), "failure {i} is within the budget");
        }
        let at = l.begin(a).expect("not blocked yet");
        assert!(at.failed(), "this failure overdraws and blocks");
        drop(at);
        let wait = l.begin(a).err().expect("blocked");
        assert!(
            (1..=6).contains(&wait),
            "one failure refills in 6 s: {wait}"
        );
        assert!(l.begin("192.0.2.2".parse().ok()).is_ok(), "another address");
        // An IPv6 /64 is one source.
        for _ in 0..=LOGIN_BURST {
            let _ = l
                .begin("2001:db8::1".parse().ok())
                .expect("budget")
                .failed();
        }
        assert!(l.begin("2001:db8::2".parse().ok()).is_err(), "same /64");
        assert!(
            l.begin("2001:db8:0:1::1".parse().ok()).is_ok(),
            "another /64"
        );
        assert!(l.begin(None).is_ok(), "no address known: not limited");
    }

    #[test]
    fn loopback_is_limited_only_when_configured() {
        let lo: Option<IpAddr> = "127.0.0.1".parse().ok();
        let free = LoginSources::new(false);
        for _ in 0..2 * LOGIN_BURST {
            let _ = free.begin(lo).expect("loopback is not limited").failed();
        }
        let limited = LoginSources::new(true);
        for _ in 0..=LOGIN_BURST {
            let _ = limited.begin(lo).expect("budget").failed();
        }
        assert!(limited.begin(lo).is_err());
    }

    #[test]
    fn simultaneous_logins_of_one_source_are_bounded() {
        let l = LoginSources::default();
        let a: Option<IpAddr> = "192.0.2.1".parse().ok();
        let held: Vec<_> = (0..LOGIN_BURST)
            .map(|_| l.begin(a).expect("in flight"))
            .collect();
        assert!(l.begin(a).is_err(), "no more at once");
        drop(held);
        assert!(l.begin(a).is_ok());
    }

    #[test]
    fn the_dummy_hash_has_the_parameters_of_real_hashes() {
        use argon2::password_hash::PasswordHash;
        let real = secrets::hash_secret("a password").expect("hash");
        let (real, dummy) = (
            PasswordHash::new(&real).expect("phc"),
            PasswordHash::new(dummy_hash()).expect("phc"),
        );
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(dummy.params, real.params);
        assert!(!secrets::verify_secret("", dummy_hash()));
    }
}
