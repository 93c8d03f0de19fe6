//! Care endpoints: away / hospital / holiday modes, carer visits and the weekly visit
//! compliance report, and reloading the rules. Scope is checked here like everywhere:
//! family act on their own household, staff on households inside their scope.

use alert_rules::{Millis, ModeKind};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::{ApiError, AppState, Caller};
use crate::authz::{self, Action};
use crate::rules::{Command, ReloadError};

const DAY_MS: i64 = 86_400_000;
/// The longest mode staff or family can set in one go.
const MAX_MODE_MS: i64 = 366 * DAY_MS;

fn parse_time(field: &str, text: &str) -> Result<Millis, ApiError> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            ApiError::BadRequest(format!(
                "`{field}` must be an RFC 3339 time with offset, e.g. 2026-12-01T18:00:00+08:00"
            ))
        })?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as Millis)
}

fn rfc3339(ms: Millis, offset_minutes: i32) -> String {
    let offset =
        time::UtcOffset::from_whole_seconds(offset_minutes * 60).unwrap_or(time::UtcOffset::UTC);
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(|t| t.to_offset(offset))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn stopped(e: ReloadError) -> ApiError {
    ApiError::Internal(anyhow::anyhow!(e))
}

#[derive(Debug, Deserialize)]
pub(super) struct ModeBody {
    kind: String,
    until: String,
}

pub(super) async fn get_mode(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authz::household(&state, &caller, &id, Action::Read).await?;
    let now = state.alarms.clock.now();
    let mode = state.alarms.store.current_mode(&id, now).await?;
    let offset = state.rules.utc_offset_minutes;
    Ok(Json(serde_json::json!({
        "household_id": id,
        "mode": mode.map(|m| serde_json::json!({
            "kind": m.kind,
            "since": rfc3339(m.since, offset),
            "until": rfc3339(m.until, offset),
            "set_by": m.set_by,
        })),
    })))
}

pub(super) async fn set_mode(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(b): Json<ModeBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let c = &caller.contact;
    authz::household(&state, &caller, &id, Action::SetMode).await?;
    let kind = ModeKind::parse(&b.kind).ok_or_else(|| {
        ApiError::BadRequest("`kind` must be \"away\", \"hospital\" or \"holiday\"".into())
    })?;
    let until = parse_time("until", &b.until)?;
    let now = state.alarms.clock.now();
    if until <= now {
        return Err(ApiError::BadRequest("`until` must be in the future".into()));
    }
    if until - now > MAX_MODE_MS {
        return Err(ApiError::BadRequest(
            "`until` may be at most 366 days ahead".into(),
        ));
    }
    let by = c.id.clone();
    state
        .rules
        .ask(|reply| Command::SetMode {
            household: id.clone(),
            kind,
            until,
            by,
            reply,
        })
        .await
        .map_err(stopped)??;
    tracing::info!(contact = %c.id, household = %id, mode = kind.as_str(), "mode set");
    authz::audit(
        &state,
        &caller,
        "household.mode.set",
        &format!("household:{id}"),
        "allowed",
        serde_json::json!({ "kind": kind.as_str(), "until": until }),
    )
    .await;
    let offset = state.rules.utc_offset_minutes;
    Ok(Json(serde_json::json!({
        "household_id": id,
        "mode": { "kind": kind.as_str(), "since": rfc3339(now, offset), "until": rfc3339(until, offset), "set_by": c.id },
    })))
}

pub(super) async fn end_mode(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let c = &caller.contact;
    authz::household(&state, &caller, &id, Action::SetMode).await?;
    let by = c.id.clone();
    state
        .rules
        .ask(|reply| Command::EndMode {
            household: id.clone(),
            by,
            reply,
        })
        .await
        .map_err(stopped)??;
    tracing::info!(contact = %c.id, household = %id, "mode ended");
    authz::audit(
        &state,
        &caller,
        "household.mode.end",
        &format!("household:{id}"),
        "allowed",
        serde_json::json!({}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub(super) struct VisitBody {
    /// `start` (check-in) or `end` (check-out).
    action: String,
    carer: Option<String>,
}

pub(super) async fn visit(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(b): Json<VisitBody>,
) -> Result<StatusCode, ApiError> {
    let c = &caller.contact;
    authz::household(&state, &caller, &id, Action::RecordVisit).await?;
    let start = match b.action.as_str() {
        "start" => true,
        "end" => false,
        _ => {
            return Err(ApiError::BadRequest(
                "`action` must be \"start\" or \"end\"".into(),
            ))
        }
    };
    // The carer defaults to the staff member checking in. An id (tag or staff id), never
    // a name: the same alphabet as the device contract's `carer`.
    let carer = b.carer.unwrap_or_else(|| c.id.clone());
    let token = |s: &str| {
        (1..=64).contains(&s.len())
            && s.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | ':' | '-'))
    };
    if !token(&carer) {
        return Err(ApiError::BadRequest(
            "`carer` must be a tag or staff id: 1-64 characters of A-Z a-z 0-9 . _ : -".into(),
        ));
    }
    let by = c.id.clone();
    state
        .rules
        .ask(|reply| Command::Visit {
            household: id.clone(),
            start,
            carer,
            by,
            reply,
        })
        .await
        .map_err(stopped)??;
    let action = if start {
        "household.visit.start"
    } else {
        "household.visit.end"
    };
    authz::audit(
        &state,
        &caller,
        action,
        &format!("household:{id}"),
        "allowed",
        serde_json::json!({}),
    )
    .await;
    Ok(if start {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    })
}

#[derive(Debug, Deserialize)]
pub(super) struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
}

pub(super) async fn list_visits(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<RangeQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authz::household(&state, &caller, &id, Action::Read).await?;
    let now = state.alarms.clock.now();
    let to =
        q.to.as_deref()
            .map(|t| parse_time("to", t))
            .transpose()?
            .unwrap_or(now + 1);
    let from = q
        .from
        .as_deref()
        .map(|t| parse_time("from", t))
        .transpose()?
        .unwrap_or(to - 28 * DAY_MS);
    let visits = state.alarms.store.visits(&id, from, to).await?;
    Ok(Json(
        serde_json::json!({ "household_id": id, "visits": visits }),
    ))
}

#[derive(Debug, Deserialize)]
pub(super) struct ComplianceQuery {
    /// The week's Monday, `YYYY-MM-DD` (local date).
    week: String,
    scope: Option<String>,
    /// Visits a week required (default 3, the bureau's rule).
    target: Option<i64>,
}

pub(super) async fn compliance(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ComplianceQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let scope = authz::scope(&state, &caller, q.scope.as_deref(), Action::Report).await?;
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(&q.week, &format).map_err(|_| {
        ApiError::BadRequest("`week` must be a date YYYY-MM-DD (the Monday)".into())
    })?;
    if date.weekday() != time::Weekday::Monday {
        return Err(ApiError::BadRequest(format!(
            "`week` must be a Monday; {} is a {}",
            q.week,
            date.weekday()
        )));
    }
    let target = q.target.unwrap_or(3);
    if !(1..=100).contains(&target) {
        return Err(ApiError::BadRequest(
            "`target` must be from 1 to 100".into(),
        ));
    }
    let offset = state.rules.utc_offset_minutes;
    let from = (date.midnight().assume_utc().unix_timestamp() - i64::from(offset) * 60) * 1000;
    let to = from + 7 * DAY_MS;
    let villages = state
        .alarms
        .store
        .visit_compliance(&scope, from, to, target)
        .await?;
    let households: i64 = villages.iter().map(|v| v.households).sum();
    let meeting: i64 = villages.iter().map(|v| v.meeting_target).sum();
    // Towns: the same numbers summed over their villages.
    let mut towns: std::collections::BTreeMap<&str, (i64, i64, i64)> = Default::default();
    for v in &villages {
        let t = towns.entry(v.town_id.as_str()).or_default();
        t.0 += v.households;
        t.1 += v.meeting_target;
        t.2 += v.visits;
    }
    let towns: Vec<serde_json::Value> = towns
        .into_iter()
        .map(|(id, (h, m, n))| serde_json::json!({ "town_id": id, "households": h, "meeting_target": m, "visits": n }))
        .collect();
    Ok(Json(serde_json::json!({
        "scope": scope,
        "week": q.week,
        "from": rfc3339(from, offset),
        "to": rfc3339(to, offset),
        "target": target,
        "households": households,
        "meeting_target": meeting,
        "towns": towns,
        "villages": villages,
    })))
}

/// `POST /api/admin/rules/reload` (district staff): re-read the rules file. An invalid
/// file is refused with its line and column, and the rules in force stay.
pub(super) async fn reload_rules(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    authz::district(&state, &caller, "rules").await?;
    let c = &caller.contact;
    match state.rules.reload().await {
        Ok(n) => {
            tracing::info!(contact = %c.id, rules = n, "rules reloaded over REST");
            authz::audit(
                &state,
                &caller,
                "rules.reload",
                "rules",
                "allowed",
                serde_json::json!({ "rules": n }),
            )
            .await;
            Ok(Json(serde_json::json!({ "reloaded": true, "rules": n })))
        }
        Err(e @ (ReloadError::Invalid { .. } | ReloadError::Read { .. })) => {
            metrics::counter!("anxin_rules_reload_failed_total").increment(1);
            authz::audit(
                &state,
                &caller,
                "rules.reload",
                "rules",
                "failed",
                serde_json::json!({ "error": e.to_string() }),
            )
            .await;
            Err(ApiError::BadRequest(e.to_string()))
        }
        Err(e) => {
            metrics::counter!("anxin_rules_reload_failed_total").increment(1);
            Err(stopped(e))
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct AuditQuery {
    /// Entries after this sequence number (default 0: from the start).
    after: Option<i64>,
    limit: Option<i64>,
}

/// `GET /api/audit?after=SEQ&limit=N` (district staff): the audit log, oldest first.
pub(super) async fn audit_log(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authz::district(&state, &caller, "audit").await?;
    let entries = state
        .alarms
        .store
        .audit_since(q.after.unwrap_or(0), q.limit.unwrap_or(200))
        .await?;
    Ok(Json(serde_json::json!({ "entries": entries })))
}
