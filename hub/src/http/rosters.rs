//! Duty rosters over REST: the rosters of a scope, who is on duty at an instant, the
//! coverage of the coming days hour by hour (gaps flagged), and overrides (holiday
//! plans, sick leave) set and deleted by town and district staff. Reading is for staff
//! inside their scope (`Action::Report`); changing is `Action::ManageRoster`, audited.
//! Times people read and write are local (RFC 3339 with the district's offset; dates
//! `YYYY-MM-DD`), like the care endpoints.

use alert_rules::Millis;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiError, AppState, Caller};
use crate::authz::{self, Action};
use crate::roster::{self, Override};
use crate::rules_tool::local_time;
use crate::store::rosters::area_parts;
use crate::store::Scope;

/// The longest coverage report, in days.
pub const MAX_COVERAGE_DAYS: u32 = 14;

fn parse_instant(field: &str, text: &str) -> Result<Millis, ApiError> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            ApiError::BadRequest(format!(
                "`{field}` must be an RFC 3339 time with offset, e.g. 2026-12-01T08:00:00+08:00"
            ))
        })?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as Millis)
}

/// The staff area a request is about: inside the caller's scope (403 otherwise, from
/// `authz`), and a village, a town or the district (400 for a household).
async fn area_scope(
    state: &AppState,
    caller: &Caller,
    asked: Option<&str>,
    action: Action,
) -> Result<Scope, ApiError> {
    let scope = authz::scope(state, caller, asked, action).await?;
    area_parts(&scope)?;
    Ok(scope)
}

#[derive(Debug, Deserialize)]
pub(super) struct ScopeQuery {
    scope: Option<String>,
}

/// `GET /api/rosters?scope=`: the rosters of the areas in scope (weekly shifts, fallback,
/// overrides that have not ended).
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ScopeQuery>,
) -> Result<Json<Value>, ApiError> {
    let scope = area_scope(&state, &caller, q.scope.as_deref(), Action::Report).await?;
    let offset = state.rules.utc_offset_minutes;
    let today = roster::local_day(state.alarms.now(), offset);
    let rosters = state.alarms.store.roster_views(&scope, today).await?;
    Ok(Json(json!({ "scope": scope, "rosters": rosters })))
}

#[derive(Debug, Deserialize)]
pub(super) struct OnDutyQuery {
    scope: Option<String>,
    /// RFC 3339; default now.
    at: Option<String>,
}

/// `GET /api/rosters/on-duty?scope=village:v-1&at=...`: who is on duty for one area.
pub(super) async fn on_duty(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<OnDutyQuery>,
) -> Result<Json<Value>, ApiError> {
    let area = area_scope(&state, &caller, q.scope.as_deref(), Action::Report).await?;
    let at = match q.at.as_deref() {
        Some(t) => parse_instant("at", t)?,
        None => state.alarms.now(),
    };
    let offset = state.rules.utc_offset_minutes;
    let duty = state.alarms.store.on_duty(&area, at, offset).await?;
    Ok(Json(json!({
        "area": area,
        "at": local_time(at, offset),
        "on_duty": duty.contacts,
        "source": duty.source,
        "until": duty.until.map(|u| local_time(u, offset)),
    })))
}

#[derive(Debug, Deserialize)]
pub(super) struct CoverageQuery {
    scope: Option<String>,
    /// 1 to [`MAX_COVERAGE_DAYS`], default 7.
    days: Option<u32>,
    /// A local date `YYYY-MM-DD` (from its midnight); default: the current hour.
    from: Option<String>,
}

/// `GET /api/rosters/coverage?scope=town:t-1&days=7`: for every area in scope and every
/// hour, who is on duty; every hour with nobody on duty in some area is flagged.
pub(super) async fn coverage(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<CoverageQuery>,
) -> Result<Json<Value>, ApiError> {
    let scope = area_scope(&state, &caller, q.scope.as_deref(), Action::Report).await?;
    let days = q.days.unwrap_or(7);
    if !(1..=MAX_COVERAGE_DAYS).contains(&days) {
        return Err(ApiError::BadRequest(format!(
            "`days` must be from 1 to {MAX_COVERAGE_DAYS}"
        )));
    }
    let offset = state.rules.utc_offset_minutes;
    let from = match q.from.as_deref() {
        Some(d) => roster::day_start(
            roster::parse_date(d).map_err(|e| ApiError::BadRequest(format!("`from`: {e}")))?,
            offset,
        ),
        None => roster::hour_floor(state.alarms.now(), offset),
    };
    let hours = days * 24;
    let areas = state
        .alarms
        .store
        .roster_coverage(&scope, from, hours, offset)
        .await?;
    Ok(Json(coverage_json(&scope, from, hours, offset, &areas)))
}

/// The coverage report as JSON (docs/api.md, "Duty rosters").
fn coverage_json(
    scope: &Scope,
    from: Millis,
    hours: u32,
    offset: i32,
    areas: &[crate::store::rosters::AreaCoverage],
) -> Value {
    let t = |ms: Millis| local_time(ms, offset);
    let mut gap_hours: Vec<(Millis, Vec<&Scope>)> = Vec::new();
    for (i, start) in (0..i64::from(hours))
        .map(|h| from + h * roster::HOUR_MS)
        .enumerate()
    {
        let empty: Vec<&Scope> = areas
            .iter()
            .filter(|a| {
                a.coverage
                    .hours
                    .get(i)
                    .is_some_and(|h| h.nobody_minutes > 0)
            })
            .map(|a| &a.area)
            .collect();
        if !empty.is_empty() {
            gap_hours.push((start, empty));
        }
    }
    let areas: Vec<Value> = areas
        .iter()
        .map(|a| {
            let c = &a.coverage;
            json!({
                "area": a.area,
                "roster": a.roster,
                "fallback": a.fallback,
                "covered": c.is_covered(),
                "gaps": c.gaps.iter().map(|(f, to)| json!({ "from": t(*f), "to": t(*to) })).collect::<Vec<_>>(),
                "runs": c.runs.iter().map(|r| json!({
                    "from": t(r.from), "to": t(r.to), "on_duty": r.on_duty, "source": r.source,
                })).collect::<Vec<_>>(),
                "hours": c.hours.iter().map(|h| json!({
                    "hour": t(h.start), "on_duty": h.on_duty, "sources": h.sources,
                    "nobody_minutes": h.nobody_minutes,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "scope": scope,
        "from": t(from),
        "to": t(from + i64::from(hours) * roster::HOUR_MS),
        "hours": hours,
        "covered": gap_hours.is_empty(),
        "gap_hours": gap_hours.iter().map(|(h, a)| json!({ "hour": t(*h), "areas": a })).collect::<Vec<_>>(),
        "areas": areas,
    })
}

#[derive(Debug, Deserialize)]
pub(super) struct OverrideBody {
    /// `village:<id>`, `town:<id>` or `district`.
    area: String,
    from: String,
    to: Option<String>,
    start: Option<String>,
    end: Option<String>,
    contact: String,
    replaces: Option<String>,
    note: Option<String>,
}

/// `POST /api/rosters/overrides`: a holiday plan's shift or a replacement (sick leave),
/// set by town or district staff for an area inside their scope. Audited.
pub(super) async fn set_override(
    State(state): State<AppState>,
    caller: Caller,
    Json(b): Json<OverrideBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let area = area_scope(&state, &caller, Some(&b.area), Action::ManageRoster).await?;
    let rule = Override::parse(
        &b.from,
        b.to.as_deref(),
        b.start.as_deref(),
        b.end.as_deref(),
        &b.contact,
        b.replaces.as_deref(),
    )
    .map_err(ApiError::BadRequest)?;
    let note = b.note.as_deref().unwrap_or("").trim();
    if note.chars().count() > roster::MAX_NOTE_CHARS {
        return Err(ApiError::BadRequest(format!(
            "`note` is limited to {} characters",
            roster::MAX_NOTE_CHARS
        )));
    }
    let now = state.alarms.now();
    let offset = state.rules.utc_offset_minutes;
    if rule.last < roster::local_day(now, offset) {
        return Err(ApiError::BadRequest(format!(
            "the override ends on {}, in the past",
            roster::format_date(rule.last)
        )));
    }
    let view = state
        .alarms
        .store
        .add_roster_override(&area, &rule, note, &caller.contact.id, now)
        .await?;
    tracing::info!(contact = %caller.contact.id, area = %area, id = view.id, "roster override set");
    authz::audit(
        &state,
        &caller,
        "roster.override.set",
        &format!("roster:{area}"),
        "allowed",
        json!({ "id": view.id, "from": view.from, "to": view.to, "contact": view.contact, "replaces": view.replaces }),
    )
    .await;
    Ok((StatusCode::CREATED, Json(json!({ "override": view }))))
}

/// `DELETE /api/rosters/overrides/{id}`: remove an override (set over REST or imported).
/// Audited.
pub(super) async fn delete_override(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    // Town or district staff at all? (403, audited, before anything is looked up.)
    authz::scope(&state, &caller, None, Action::ManageRoster).await?;
    let Some(view) = state.alarms.store.roster_override(id).await? else {
        return Err(ApiError::NotFound(format!("roster override {id}")));
    };
    let area = view.area.to_string();
    area_scope(&state, &caller, Some(&area), Action::ManageRoster).await?;
    if state.alarms.store.delete_roster_override(id).await? {
        authz::audit(
            &state,
            &caller,
            "roster.override.delete",
            &format!("roster:{area}"),
            "allowed",
            json!({ "id": id, "from": view.from, "to": view.to, "contact": view.contact, "replaces": view.replaces }),
        )
        .await;
    }
    Ok(StatusCode::NO_CONTENT)
}
