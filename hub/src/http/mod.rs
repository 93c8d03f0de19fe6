//! REST and websocket API (axum).
//!
//! Identity is an account: a session from `POST /api/login` (HTTP-only cookie for the
//! board, or bearer) or one of the account's API tokens (`Authorization: Bearer <token>`,
//! or `?token=` for browsers' websockets, which cannot set headers). What a caller may
//! see and do is decided in [`crate::authz`], on the server, for every request.

pub mod accounts;
mod admin;
mod care;
mod devices;
pub mod edge;
mod pages;
mod phone;
mod rosters;
pub mod sockets;
mod views;

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tower_http::set_header::SetResponseHeaderLayer;

use std::sync::atomic::{AtomicU64, Ordering};

use crate::alarms::AlarmService;
use crate::clock::{Clock, ManualClock};
use crate::store::{AlarmFilter, AlarmUpdate, Contact, Scope, StoreError};

#[derive(Clone)]
pub struct AppState {
    pub alarms: AlarmService,
    pub metrics: Option<Arc<PrometheusHandle>>,
    /// Present only when the hub runs on a simulated clock (`hub run --simulated-clock`).
    pub sim: Option<Arc<SimControl>>,
    /// Commands to the rules stage: modes, visits, reload.
    pub rules: crate::rules::RulesHandle,
    /// Ends MQTT connections of devices whose secret was rotated or that were revoked.
    pub kicks: crate::broker::Kicks,
    /// Failed logins per username (slows password guessing; see `accounts`).
    pub login_failures: accounts::Failures,
    /// Login attempts per source address (see `accounts`).
    pub login_sources: Arc<accounts::LoginSources>,
    /// Trusted proxies and the hub's own origins (`[http]`): client addresses and the
    /// cross-site request forgery check (see `edge`).
    pub edge: Arc<edge::Edge>,
    /// Open websockets per account and in all, capped (see `sockets`).
    pub ws_slots: Arc<sockets::WsSlots>,
    /// Accounts whose credentials were just taken away (logout, password change, token
    /// revoked): open websockets of that account check theirs again at once.
    pub credentials_ended: tokio::sync::broadcast::Sender<String>,
    /// Twilio settings, when SMS and voice are on (callbacks verify signatures with them).
    pub twilio: Option<Arc<crate::twilio::TwilioSettings>>,
    /// Cancelled when the hub stops: open websockets are closed (1012, "service restart")
    /// so pages reconnect and catch up, instead of outliving the server.
    pub stopping: tokio_util::sync::CancellationToken,
    /// Whether ingest and the rules stage are making progress (`/healthz`).
    pub health: crate::health::Health,
}

/// How often an open websocket checks that its credential still holds (expiry, or an
/// end the broadcast did not carry, e.g. `hub admin` on another process).
pub const WS_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// The close code a websocket gets when its credential ends (an application code in
/// the 4000s, like HTTP 401).
pub const WS_CLOSE_CREDENTIAL_ENDED: u16 = 4401;

/// What the simulator needs to drive a hub on simulated time.
pub struct SimControl {
    pub clock: ManualClock,
    /// Observations the rules stage has handled: the barrier before time moves on.
    pub processed: Arc<AtomicU64>,
}

pub fn router(state: AppState) -> Router {
    let sim = if state.sim.is_some() {
        Router::new()
            .route("/api/sim", get(sim_status))
            .route("/api/sim/clock", post(sim_clock))
    } else {
        Router::new()
    };
    Router::new()
        .merge(sim)
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/", get(pages::root))
        .route("/login", get(pages::login))
        .route("/board", get(pages::board))
        .route("/board/alarms/{id}", get(pages::board_alarm))
        .route("/home/{id}", get(pages::home))
        .route("/supervisor", get(pages::supervisor))
        .route("/family", get(pages::family))
        .route("/assets/{*path}", get(pages::asset))
        .route("/api/ui", get(views::ui))
        .route("/api/directory", get(views::directory))
        .route("/api/households/{id}", get(views::household))
        .route("/api/summary", get(views::summary))
        .route("/api/alarms/{id}/deliveries", get(views::deliveries))
        .route("/api/me", get(me))
        .route("/api/login", post(accounts::login))
        .route("/api/logout", post(accounts::logout))
        .route("/api/password", post(accounts::change_password))
        .route(
            "/api/tokens",
            get(accounts::list_tokens).post(accounts::create_token),
        )
        .route(
            "/api/tokens/{id}",
            axum::routing::delete(accounts::revoke_token),
        )
        .route("/api/alarms", get(list_alarms))
        .route("/api/alarms/{id}", get(get_alarm))
        .route("/api/alarms/{id}/acknowledge", post(acknowledge))
        .route("/api/alarms/{id}/resolve", post(resolve))
        .route("/api/alarms/{id}/en-route", post(en_route))
        .route("/api/alarms/{id}/on-site", post(on_site))
        .route("/api/updates", get(updates))
        .route(
            "/api/households/{id}/mode",
            get(care::get_mode)
                .put(care::set_mode)
                .delete(care::end_mode),
        )
        .route(
            "/api/households/{id}/visits",
            get(care::list_visits).post(care::visit),
        )
        .route("/api/visits/compliance", get(care::compliance))
        .route("/api/rosters", get(rosters::list))
        .route("/api/rosters/on-duty", get(rosters::on_duty))
        .route("/api/rosters/coverage", get(rosters::coverage))
        .route("/api/rosters/overrides", post(rosters::set_override))
        .route(
            "/api/rosters/overrides/{id}",
            axum::routing::delete(rosters::delete_override),
        )
        .route("/api/admin/rules/reload", post(care::reload_rules))
        .route("/api/audit", get(care::audit_log))
        .route(
            "/api/admin/import",
            post(admin::import).layer(axum::extract::DefaultBodyLimit::max(
                admin::MAX_IMPORT_BYTES,
            )),
        )
        .route("/api/admin/export", get(admin::export))
        .route("/api/devices", post(devices::provision))
        .route("/api/devices/{id}/rotate", post(devices::rotate))
        .route("/api/devices/{id}/revoke", post(devices::revoke))
        .route("/api/ws", get(ws))
        .route(crate::phone::STATUS_PATH, post(phone::status))
        .route(crate::phone::VOICE_PATH, post(phone::voice))
        .route(crate::phone::SMS_PATH, post(phone::sms))
        .fallback(fallback)
        // Before any handler: state changes and websockets authenticated by the session
        // cookie only from the hub's own origin (cross-site request forgery).
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            edge::same_origin_only,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024))
        // Headers on every response: no MIME sniffing, no framing, no referrer, nothing
        // cached, and a content policy that allows nothing (the API serves JSON only;
        // pages set their own, see `pages`).
        // HSTS belongs to the TLS-terminating proxy in front of the hub (docs/security.md).
        .layer(header_layer(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header_layer(header::X_FRAME_OPTIONS, "DENY"))
        .layer(header_layer(header::REFERRER_POLICY, "no-referrer"))
        .layer(header_layer(header::CACHE_CONTROL, "no-store"))
        .layer(header_layer(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ))
        .with_state(state)
}

/// Unknown paths: JSON for the API, the 404 page for browsers.
async fn fallback(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/api/") {
        ApiError::NotFound(format!("no endpoint {}", uri.path())).into_response()
    } else {
        pages::fallback().await
    }
}

/// The router of the separate metrics listener (`[http] metrics_listen`).
pub fn metrics_router(handle: Arc<PrometheusHandle>, health: crate::health::Health) -> Router {
    let health = Arc::new(health);
    Router::new()
        .route(
            "/healthz",
            get(move || {
                let h = health.clone();
                async move { health_response(&h) }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let h = handle.clone();
                async move { h.render() }
            }),
        )
}

/// `ok` (200) while every watched stage makes progress; 503 with the stalled stages
/// otherwise (docs/operations.md).
async fn healthz(State(state): State<AppState>) -> Response {
    health_response(&state.health)
}

fn health_response(health: &crate::health::Health) -> Response {
    if health.is_healthy() {
        return "ok".into_response();
    }
    let stages = health.stages();
    let stalled: Vec<&str> = stages
        .iter()
        .filter(|s| s.stalled)
        .map(|s| s.stage)
        .collect();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({ "status": "stalled", "stalled": stalled, "stages": stages })),
    )
        .into_response()
}

fn header_layer(
    name: axum::http::HeaderName,
    value: &'static str,
) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}

/// Errors a client sees: a status and a JSON `{"error": "..."}`.
#[derive(Debug)]
pub enum ApiError {
    Unauthorized,
    Forbidden(String),
    NotFound(String),
    BadRequest(String),
    Conflict(String),
    /// 429 with `Retry-After` (seconds).
    TooManyRequests(String, u64),
    Internal(anyhow::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, msg) = match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "missing or invalid token".to_owned(),
            ),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, m),
            ApiError::TooManyRequests(m, secs) => {
                let mut resp = (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(serde_json::json!({ "error": m })),
                )
                    .into_response();
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                return resp;
            }
            ApiError::Internal(e) => {
                tracing::error!(error = %e, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".to_owned(),
                )
            }
        };
        (status, Json(serde_json::json!({ "error": msg }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => ApiError::NotFound(m),
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::Invalid(m) => ApiError::BadRequest(m),
            other => ApiError::Internal(other.into()),
        }
    }
}

pub use crate::authz::Caller;
use crate::authz::{self, Action};

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    /// Authenticate by token (`Authorization: Bearer`, or `?token=` for websockets) and
    /// note where the request came from, for the audit log.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let source = state.edge.client_addr(parts);
        let store = &state.alarms.store;
        let now = state.alarms.now();
        // An API token (owned by an account), or a session (bearer or the board's cookie).
        let Some(token) = presented(parts).map(Presented::into_token) else {
            return Err(ApiError::Unauthorized);
        };
        if let Some((contact, t)) = store.api_token_principal(&token, now).await? {
            if let Err(e) = store.touch_api_token(&t, now).await {
                tracing::warn!(error = %e, "recording token use failed");
            }
            return Ok(Caller {
                contact,
                source,
                session: None,
                api_token: Some(t),
            });
        }
        match store.session_principal(&token, now).await? {
            Some((contact, _)) => Ok(Caller {
                contact,
                source,
                session: Some(token),
                api_token: None,
            }),
            None => Err(ApiError::Unauthorized),
        }
    }
}

/// The credential a request carries, in the order it is taken: the `Authorization:
/// Bearer` header, then `?token=` (websocket only), then the session cookie.
pub(super) enum Presented {
    Header(String),
    Query(String),
    Cookie(String),
}

impl Presented {
    fn into_token(self) -> String {
        match self {
            Presented::Header(t) | Presented::Query(t) | Presented::Cookie(t) => t,
        }
    }
}

pub(super) fn presented(parts: &Parts) -> Option<Presented> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(t) = header {
        return Some(Presented::Header(t.to_owned()));
    }
    // `?token=` only for the websocket (browsers cannot set headers there); elsewhere
    // a token in a URL would end up in proxies' logs.
    let query = (parts.uri.path() == "/api/ws")
        .then(|| parts.uri.query())
        .flatten()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")));
    if let Some(t) = query {
        return Some(Presented::Query(t.to_owned()));
    }
    parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            kv.trim()
                .strip_prefix(accounts::COOKIE)
                .and_then(|r| r.strip_prefix('='))
        })
        .map(|t| Presented::Cookie(t.to_owned()))
}

/// The scope a request asks for (`?scope=village:v-1`), within the caller's own.
async fn requested_scope(
    state: &AppState,
    caller: &Caller,
    asked: Option<&str>,
) -> Result<Scope, ApiError> {
    authz::scope(state, caller, asked, Action::Read).await
}

async fn metrics(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(h) => h.render().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn me(caller: Caller) -> Json<Contact> {
    Json(caller.contact)
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    scope: Option<String>,
    /// `open` (default), `all`, or one state: raised | notified | acknowledged | resolved.
    state: Option<String>,
    severity: Option<String>,
    limit: Option<i64>,
}

async fn list_alarms(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let scope = requested_scope(&state, &caller, q.scope.as_deref()).await?;
    // Read before the list: every step up to `seq` is reflected in the list, so a page
    // that subscribed first applies only the websocket steps after it.
    let seq = state.alarms.store.latest_seq().await?;
    let mut f = AlarmFilter {
        limit: q.limit,
        severity: q.severity,
        ..Default::default()
    };
    match q.state.as_deref() {
        None | Some("open") => f.open_only = true,
        Some("all") => {}
        Some(s @ ("raised" | "notified" | "acknowledged" | "resolved")) => {
            f.state = Some(s.to_owned())
        }
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "unknown state filter {other:?}"
            )))
        }
    }
    let alarms: Vec<serde_json::Value> = state
        .alarms
        .store
        .list_alarms(&scope, &f)
        .await?
        .iter()
        .map(|a| authz::shown_alarm(&caller.contact.scope, a))
        .collect();
    Ok(Json(
        serde_json::json!({ "scope": scope, "seq": seq, "alarms": alarms }),
    ))
}

async fn get_alarm(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let alarm = authz::alarm(&state, &caller, &id, Action::Read).await?;
    let timeline = state.alarms.store.timeline(&id).await?;
    let scope = &caller.contact.scope;
    Ok(Json(serde_json::json!({
        "alarm": authz::shown_alarm(scope, &alarm),
        "timeline": authz::shown_timeline(scope, &timeline),
    })))
}

#[derive(Debug, Deserialize, Default)]
struct AckBody {
    note: Option<String>,
}

async fn acknowledge(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<AckBody>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let c = &caller.contact;
    authz::alarm(&state, &caller, &id, Action::ActOnAlarm).await?;
    let note = body.and_then(|Json(b)| b.note);
    check_note(note.as_deref())?;
    let update = state
        .alarms
        .acknowledge(&id, &c.id, "api", note.as_deref())
        .await?;
    authz::audit(
        &state,
        &caller,
        "alarm.acknowledge",
        &format!("alarm:{id}"),
        "allowed",
        serde_json::json!({}),
    )
    .await;
    Ok(Json(authz::shown_update(&caller.contact.scope, &update)))
}

#[derive(Debug, Deserialize)]
struct EnRouteBody {
    /// Minutes until arrival, 1–240.
    eta_minutes: i64,
    note: Option<String>,
}

/// `POST /api/alarms/{id}/en-route` `{"eta_minutes": 15}`: "I am on my way" (acknowledges
/// the alarm if nobody had).
async fn en_route(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(b): Json<EnRouteBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authz::alarm(&state, &caller, &id, Action::ActOnAlarm).await?;
    if !(1..=240).contains(&b.eta_minutes) {
        return Err(ApiError::BadRequest("eta_minutes must be 1-240".into()));
    }
    check_note(b.note.as_deref())?;
    let eta_at = state.alarms.now() + b.eta_minutes * 60_000;
    let update = state
        .alarms
        .respond(
            &id,
            &caller.contact.id,
            "api",
            crate::store::Response::EnRoute { eta_at },
            b.note.as_deref(),
        )
        .await?;
    authz::audit(
        &state,
        &caller,
        "alarm.en_route",
        &format!("alarm:{id}"),
        "allowed",
        serde_json::json!({ "eta_at": eta_at }),
    )
    .await;
    Ok(Json(authz::shown_update(&caller.contact.scope, &update)))
}

/// `POST /api/alarms/{id}/on-site` `{"note"?}`: "I am with the elder" (ends the on-site
/// deadline).
async fn on_site(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<AckBody>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authz::alarm(&state, &caller, &id, Action::ActOnAlarm).await?;
    let note = body.and_then(|Json(b)| b.note);
    check_note(note.as_deref())?;
    let update = state
        .alarms
        .respond(
            &id,
            &caller.contact.id,
            "api",
            crate::store::Response::OnSite,
            note.as_deref(),
        )
        .await?;
    authz::audit(
        &state,
        &caller,
        "alarm.on_site",
        &format!("alarm:{id}"),
        "allowed",
        serde_json::json!({}),
    )
    .await;
    Ok(Json(authz::shown_update(&caller.contact.scope, &update)))
}

/// What happened, as recorded at resolution (feeds reports and KPIs).
pub const DISPOSITIONS: [&str; 7] = [
    "false_alarm",
    "elder_confirmed_ok",
    "visited_ok",
    "sent_to_hospital",
    "handled_remotely",
    "device_fault",
    "other",
];

#[derive(Debug, Deserialize)]
struct ResolveBody {
    disposition: String,
    note: Option<String>,
}

async fn resolve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(b): Json<ResolveBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let c = &caller.contact;
    authz::alarm(&state, &caller, &id, Action::ActOnAlarm).await?;
    if !DISPOSITIONS.contains(&b.disposition.as_str()) {
        return Err(ApiError::BadRequest(format!(
            "disposition must be one of {}",
            DISPOSITIONS.join(", ")
        )));
    }
    check_note(b.note.as_deref())?;
    let update = state
        .alarms
        .resolve(&id, &c.id, &b.disposition, b.note.as_deref())
        .await?;
    authz::audit(
        &state,
        &caller,
        "alarm.resolve",
        &format!("alarm:{id}"),
        "allowed",
        serde_json::json!({ "disposition": b.disposition }),
    )
    .await;
    Ok(Json(authz::shown_update(&caller.contact.scope, &update)))
}

fn check_note(note: Option<&str>) -> Result<(), ApiError> {
    match note {
        Some(n) if n.chars().count() > 2000 => Err(ApiError::BadRequest(
            "note is limited to 2000 characters".into(),
        )),
        _ => Ok(()),
    }
}

#[derive(Debug, Deserialize)]
struct UpdatesQuery {
    scope: Option<String>,
    since_seq: Option<i64>,
    limit: Option<i64>,
}

/// Every alarm step after `since_seq` in scope: how a client that was offline catches up.
async fn updates(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<UpdatesQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let scope = requested_scope(&state, &caller, q.scope.as_deref()).await?;
    let updates = state
        .alarms
        .store
        .updates_since(&scope, q.since_seq.unwrap_or(0), q.limit.unwrap_or(500))
        .await?;
    let updates: Vec<serde_json::Value> = updates
        .iter()
        .map(|u| authz::shown_update(&caller.contact.scope, u))
        .collect();
    Ok(Json(serde_json::json!({ "updates": updates })))
}

/// A websocket's read buffer (it grows if a message needs more).
const READ_BUFFER: usize = 8 * 1024;

#[derive(Debug, Deserialize)]
struct WsQuery {
    scope: Option<String>,
    /// Resume: first send every step after this sequence number.
    since_seq: Option<i64>,
}

async fn ws(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<WsQuery>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let scope = requested_scope(&state, &caller, q.scope.as_deref()).await?;
    let slot = state.ws_slots.acquire(&caller.contact.id);
    if let Err(refusal) = slot {
        metrics::counter!("anxin_http_refused_total", "reason" => refusal.label()).increment(1);
        if let Some(refused) = state.ws_slots.log.refused() {
            tracing::warn!(
                account = %caller.contact.id,
                source = caller.source.as_deref().unwrap_or("?"),
                code = refusal.close_code(),
                refused,
                "websocket refused: {}",
                refusal.reason()
            );
        }
    }
    Ok(upgrade
        .max_message_size(4096)
        // Clients only send pings and short messages (at most 4 KiB, above). The default
        // read buffer, 128 KiB allocated up front, was most of a socket's memory: 137.5 kB
        // of RSS per idle socket measured with it, 15 kB with this.
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |mut socket| async move {
            match slot {
                Ok(slot) => websocket(socket, state, caller, scope, q.since_seq, slot).await,
                Err(refusal) => {
                    let _ = socket
                        .send(Message::Close(Some(axum::extract::ws::CloseFrame {
                            code: refusal.close_code(),
                            reason: refusal.reason().into(),
                        })))
                        .await;
                }
            }
        }))
}

/// One websocket client: a hello, an optional backlog, then live steps in its scope.
/// If the client falls behind the broadcast, it is caught up from the database, so a
/// slow client never loses a step and never slows anyone else.
/// When the caller's credential ends (logout, password change, token revoked or
/// expired), the socket is closed with [`WS_CLOSE_CREDENTIAL_ENDED`].
async fn websocket(
    mut socket: WebSocket,
    state: AppState,
    who: Caller,
    scope: Scope,
    since_seq: Option<i64>,
    // Held while the socket is open: its place under the caps.
    _slot: sockets::WsSlot,
) {
    let caller = &who.contact;
    // Subscribe before reading the backlog so nothing falls between the two.
    let mut live = state.alarms.bus.subscribe();
    let mut deliveries = state.alarms.bus.subscribe_deliveries();
    let mut ended = state.credentials_ended.subscribe();
    let mut recheck = tokio::time::interval(WS_RECHECK);
    recheck.tick().await;
    metrics::gauge!("anxin_ws_clients").increment(1.0);
    let store = &state.alarms.store;
    let mut last_seq = match since_seq {
        Some(s) => s,
        None => store.latest_seq().await.unwrap_or(0),
    };
    let hello = serde_json::json!({ "type": "hello", "contact": caller.id, "scope": scope, "seq": last_seq });
    if socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        metrics::gauge!("anxin_ws_clients").decrement(1.0);
        return;
    }
    let mut need_catch_up = since_seq.is_some();
    'outer: loop {
        if need_catch_up {
            need_catch_up = false;
            loop {
                let Ok(batch) = store.updates_since(&scope, last_seq, 500).await else {
                    break 'outer;
                };
                let full = batch.len() == 500;
                for u in batch {
                    last_seq = u.seq;
                    if send_update(&mut socket, &caller.scope, &u).await.is_err() {
                        break 'outer;
                    }
                }
                if !full {
                    break;
                }
            }
        }
        tokio::select! {
            msg = live.recv() => match msg {
                Ok(u) => {
                    if u.seq <= last_seq || !scope.covers(&u.alarm) {
                        continue;
                    }
                    last_seq = u.seq;
                    if send_update(&mut socket, &caller.scope, &u).await.is_err() {
                        break;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    metrics::counter!("anxin_ws_lagged_total").increment(1);
                    tracing::debug!(skipped = n, "websocket client lagged; catching up from the store");
                    need_catch_up = true;
                }
                Err(RecvError::Closed) => break,
            },
            changed = deliveries.recv() => {
                // Staff boards show who was texted or called: tell them to look again.
                // (Families are not shown deliveries; a missed one is caught by the
                // board's periodic refresh.)
                let Ok(alarm_id) = changed else { continue };
                if caller.scope.is_family() {
                    continue;
                }
                let Ok(alarm) = store.alarm(&alarm_id).await else { continue };
                if !scope.covers(&alarm) {
                    continue;
                }
                let msg = serde_json::json!({ "type": "delivery", "alarm_id": alarm_id });
                if socket.send(Message::Text(msg.to_string().into())).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {} // clients only listen; pings are answered by axum
            },
            account = ended.recv() => {
                if matches!(&account, Ok(a) if *a != caller.id) {
                    continue;
                }
                // Ours, or missed some (lagged): check now.
                if !credential_holds(&state, &who).await {
                    close_ended(&mut socket).await;
                    break;
                }
            }
            _ = recheck.tick() => {
                if !credential_holds(&state, &who).await {
                    close_ended(&mut socket).await;
                    break;
                }
            }
            _ = state.stopping.cancelled() => {
                let _ = socket
                    .send(Message::Close(Some(axum::extract::ws::CloseFrame {
                        code: 1012,
                        reason: "hub restarting; reconnect with since_seq".into(),
                    })))
                    .await;
                break;
            }
        }
    }
    metrics::gauge!("anxin_ws_clients").decrement(1.0);
}

/// A failed check (database error) keeps the socket open: it is tried again later.
async fn credential_holds(state: &AppState, who: &Caller) -> bool {
    match who.still_valid(state).await {
        Ok(valid) => valid,
        Err(e) => {
            tracing::warn!(error = %e, "checking a websocket's credential failed");
            true
        }
    }
}

async fn close_ended(socket: &mut WebSocket) {
    metrics::counter!("anxin_ws_closed_credential_ended_total").increment(1);
    let _ = socket
        .send(Message::Close(Some(axum::extract::ws::CloseFrame {
            code: WS_CLOSE_CREDENTIAL_ENDED,
            reason: "credential ended; log in again".into(),
        })))
        .await;
}

async fn send_update(
    socket: &mut WebSocket,
    viewer: &Scope,
    u: &AlarmUpdate,
) -> Result<(), axum::Error> {
    let mut v = authz::shown_update(viewer, u);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("type".into(), "alarm".into());
    }
    socket.send(Message::Text(v.to_string().into())).await
}

fn sim_control(state: &AppState, caller: &Contact) -> Result<Arc<SimControl>, ApiError> {
    if caller.scope != Scope::District {
        return Err(ApiError::Forbidden(
            "the simulation clock needs a district token".into(),
        ));
    }
    state
        .sim
        .clone()
        .ok_or_else(|| ApiError::NotFound("not a simulation".into()))
}

async fn sim_status(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let c = &caller.contact;
    let sim = sim_control(&state, c)?;
    Ok(Json(
        serde_json::json!({ "now": sim.clock.now(), "processed": sim.processed.load(Ordering::Acquire) }),
    ))
}

#[derive(Debug, Deserialize)]
struct SimClockBody {
    /// Move the clock to this instant (unix ms). Time never goes backwards.
    to: i64,
    /// First wait until the rules stage has handled this many observations in all, so
    /// everything the simulator published "before" `to` is observed before time moves.
    #[serde(default)]
    after_observations: u64,
}

async fn sim_clock(
    State(state): State<AppState>,
    caller: Caller,
    Json(b): Json<SimClockBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let c = &caller.contact;
    let sim = sim_control(&state, c)?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while sim.processed.load(Ordering::Acquire) < b.after_observations {
        if tokio::time::Instant::now() > deadline {
            return Err(ApiError::Conflict(format!(
                "only {} of {} observations handled after 60 s (were some messages rejected?)",
                sim.processed.load(Ordering::Acquire),
                b.after_observations
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    sim.clock.set(b.to);
    Ok(Json(
        serde_json::json!({ "now": sim.clock.now(), "processed": sim.processed.load(Ordering::Acquire) }),
    ))
}
