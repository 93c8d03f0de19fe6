//! The read endpoints behind the web pages (issue 7): what the page needs to know about
//! its user, the households of a scope (names and addresses next to alarms, and search),
//! one household's home view, who was notified of an alarm, and the supervisor summary.
//! Times are unix milliseconds; the page shows them in the district's time zone
//! (`utc_offset_minutes` from `/api/ui`).

use std::collections::BTreeMap;

use alert_rules::Millis;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiError, AppState, Caller, DISPOSITIONS};
use crate::authz::{self, Action};
use crate::store::{AlarmFilter, Scope};

/// Alarms a home view lists (newest first).
const HOME_ALARMS: i64 = 20;

fn stopped(e: crate::rules::ReloadError) -> ApiError {
    ApiError::Internal(anyhow::anyhow!(e))
}

/// `GET /api/ui`: the caller (id, role, scope), the district's UTC offset and the
/// dispositions a resolution may record.
pub(super) async fn ui(State(state): State<AppState>, caller: Caller) -> Json<Value> {
    Json(json!({
        "contact": caller.contact,
        "utc_offset_minutes": state.rules.utc_offset_minutes,
        "dispositions": DISPOSITIONS,
        "now": state.alarms.now(),
    }))
}

#[derive(Debug, Deserialize)]
pub(super) struct ScopeQuery {
    scope: Option<String>,
}

/// `GET /api/directory?scope=`: the villages and households in scope, with addresses and
/// elders' names (what the board shows next to an alarm and searches), and the names of
/// the people who may act on its alarms (`people`: id, name, role; no phone numbers).
pub(super) async fn directory(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ScopeQuery>,
) -> Result<Json<Value>, ApiError> {
    let scope = authz::scope(&state, &caller, q.scope.as_deref(), Action::Read).await?;
    let store = &state.alarms.store;
    let households = store.households_in(&scope).await?;
    let villages = store.villages_in(&scope).await?;
    let people = store.people_for(&scope).await?;
    Ok(Json(json!({
        "scope": scope,
        "villages": villages,
        "households": households,
        "people": people,
    })))
}

/// `GET /api/households/{id}`: the home view. Outside the caller's scope: 404.
pub(super) async fn household(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authz::household(&state, &caller, &id, Action::Read).await?;
    let store = &state.alarms.store;
    let Some(info) = store.household_info(&id).await? else {
        return Err(ApiError::NotFound(format!("household {id}")));
    };
    let now = state.alarms.now();
    let offset = state.rules.utc_offset_minutes;
    let elders = store.elders_of(&id).await?;
    let registered = store.devices_of(&id).await?;
    let snapshot = state
        .rules
        .snapshot(vec![id.clone()])
        .await
        .map_err(stopped)?
        .pop()
        .unwrap_or_default();
    let devices: Vec<Value> = registered
        .iter()
        .map(|d| {
            let live = snapshot.devices.iter().find(|s| s.id == d.id);
            json!({
                "id": d.id,
                "kind": d.kind,
                "vendor": d.vendor,
                "revoked_at": d.revoked_at,
                "online": d.revoked_at.is_none() && live.is_some_and(|l| l.offline_since.is_none()),
                "offline_since": live.and_then(|l| l.offline_since),
                "last_seen": live.map(|l| l.last_seen),
                "last_signal": live.and_then(|l| l.last_signal),
                "battery": live.and_then(|l| l.battery),
            })
        })
        .collect();
    let here = Scope::Household(id.clone());
    let shown = |list: Vec<crate::store::Alarm>| -> Vec<Value> {
        list.iter()
            .map(|a| authz::shown_alarm(&caller.contact.scope, a))
            .collect()
    };
    // Every open alarm (most urgent first), and the recent history (newest first).
    let open_alarms = shown(
        store
            .list_alarms(
                &here,
                &AlarmFilter {
                    open_only: true,
                    limit: Some(1000),
                    ..Default::default()
                },
            )
            .await?,
    );
    let alarms = shown(
        store
            .list_alarms(
                &here,
                &AlarmFilter {
                    limit: Some(HOME_ALARMS),
                    newest_first: true,
                    ..Default::default()
                },
            )
            .await?,
    );
    let family = store.family_contacts(&id).await?;
    let duty = store
        .on_duty(&Scope::Village(info.village_id.clone()), now, offset)
        .await?;
    let on_duty = store.contacts_by_id(&duty.contacts).await?;
    let mode = store.current_mode(&id, now).await?;
    Ok(Json(json!({
        "household": info,
        "elders": elders,
        "devices": devices,
        "last_activity": snapshot.last_activity,
        "mode": mode,
        "visit_since": snapshot.visit_since,
        "unreachable_since": snapshot.unreachable_since,
        "recent_events": snapshot.recent,
        "open_alarms": open_alarms,
        "alarms": alarms,
        "family_contacts": family,
        "on_duty": on_duty,
        "on_duty_until": duty.until,
        "now": now,
    })))
}

/// `GET /api/alarms/{id}/deliveries`: who was notified of the alarm, through which
/// channel, and what became of it (sent, delivered, answered, failed). Staff only.
pub(super) async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authz::alarm(&state, &caller, &id, Action::Read).await?;
    if caller.contact.scope.is_family() {
        return Err(ApiError::Forbidden(
            "notification details are for staff".into(),
        ));
    }
    let store = &state.alarms.store;
    let rows = store.deliveries(&id).await?;
    // Each `notified` step of the timeline: the level and the people it told.
    let told: Vec<(i64, i64, Vec<String>)> = store
        .timeline(&id)
        .await?
        .into_iter()
        .filter(|s| s.step == "notified")
        .map(|s| {
            let level = s.detail.get("level").and_then(Value::as_i64).unwrap_or(0);
            let who = s
                .detail
                .get("recipients")
                .and_then(Value::as_array)
                .map(|r| {
                    r.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            (s.at, level, who)
        })
        .collect();
    let mut ids: Vec<String> = rows.iter().map(|d| d.contact_id.clone()).collect();
    ids.extend(told.iter().flat_map(|(_, _, who)| who.iter().cloned()));
    ids.sort_unstable();
    ids.dedup();
    let names = store.contacts_by_id(&ids).await?;
    let person = |id: &str| {
        let who = names.iter().find(|c| c.id == id);
        json!({
            "contact_id": id,
            "name": who.map(|c| c.name.as_str()),
            "role": who.map(|c| c.role.as_str()).or(id.starts_with("elder:").then_some("elder")),
        })
    };
    let notified: Vec<Value> = told
        .iter()
        .map(|(at, level, who)| {
            json!({
                "at": at,
                "level": level,
                "recipients": who.iter().map(|c| person(c)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let out: Vec<Value> = rows
        .iter()
        .map(|d| {
            let who = names.iter().find(|c| c.id == d.contact_id);
            json!({
                "contact_id": d.contact_id,
                "name": who.map(|c| c.name.as_str()),
                "role": who.map(|c| c.role.as_str()).or(d.contact_id.starts_with("elder:").then_some("elder")),
                "channel": d.channel,
                "state": d.state,
                "status": d.status,
                "attempts": d.attempts,
                "error": d.error,
                "updated_at": d.updated_at,
            })
        })
        .collect();
    Ok(Json(
        json!({ "alarm_id": id, "deliveries": out, "notified": notified }),
    ))
}

/// The median and the worst of some durations (ms).
fn median_and_worst(mut v: Vec<i64>) -> (Option<i64>, Option<i64>) {
    if v.is_empty() {
        return (None, None);
    }
    v.sort_unstable();
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    };
    (Some(median), v.last().copied())
}

/// `GET /api/summary?scope=`: the supervisor view. Per village: open alarms (critical,
/// unacknowledged), overdue alarms (past their `overdue_at`: unresolved 24 h after being
/// raised, by default) and devices offline; the
/// overdue alarms themselves; time to acknowledge for alarms raised today (local day).
/// Staff only.
pub(super) async fn summary(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ScopeQuery>,
) -> Result<Json<Value>, ApiError> {
    let scope = authz::scope(&state, &caller, q.scope.as_deref(), Action::Report).await?;
    let store = &state.alarms.store;
    let now = state.alarms.now();
    let offset = state.rules.utc_offset_minutes;
    let villages = store.villages_in(&scope).await?;
    #[derive(Default)]
    struct Row {
        open: u32,
        critical: u32,
        unacknowledged: u32,
        overdue: u32,
        devices_offline: u32,
        devices: u32,
    }
    let mut rows: BTreeMap<String, Row> = villages
        .iter()
        .map(|v| (v.id.clone(), Row::default()))
        .collect();
    let open = store
        .list_alarms(
            &scope,
            &AlarmFilter {
                open_only: true,
                limit: Some(1000),
                ..Default::default()
            },
        )
        .await?;
    let mut overdue = Vec::new();
    for a in &open {
        let r = rows.entry(a.village_id.clone()).or_default();
        r.open += 1;
        r.critical += u32::from(a.severity == "critical");
        r.unacknowledged += u32::from(a.is_unacknowledged());
        // Overdue as escalation counts it (`overdue_after_secs` per severity, 24 h by
        // default; never for info).
        if a.overdue_at.is_some_and(|t| t <= now) {
            r.overdue += 1;
            overdue.push(authz::shown_alarm(&caller.contact.scope, a));
        }
    }
    // Device health from the rules stage, counted per village.
    let households = store.households_in(&scope).await?;
    let village_of: BTreeMap<&str, &str> = households
        .iter()
        .map(|h| (h.id.as_str(), h.village_id.as_str()))
        .collect();
    let registered = store.device_ids_in(&scope).await?;
    let ids: Vec<String> = households.iter().map(|h| h.id.clone()).collect();
    let snapshots = state.rules.snapshot(ids).await.map_err(stopped)?;
    let health: BTreeMap<(&str, &str), Option<Millis>> = snapshots
        .iter()
        .flat_map(|s| {
            s.devices
                .iter()
                .map(move |d| ((s.household.as_str(), d.id.as_str()), d.offline_since))
        })
        .collect();
    let mut offline_devices = Vec::new();
    for (h, d) in &registered {
        let Some(v) = village_of.get(h.as_str()) else {
            continue;
        };
        let r = rows.entry((*v).to_owned()).or_default();
        r.devices += 1;
        if let Some(since) = health.get(&(h.as_str(), d.as_str())).copied().flatten() {
            r.devices_offline += 1;
            offline_devices
                .push(json!({ "household_id": h, "device_id": d, "offline_since": since }));
        }
    }
    let day = crate::roster::local_day(now, offset);
    let today = crate::roster::day_start(day, offset);
    let acks = store.ack_times(&scope, today, now + 1).await?;
    let waits: Vec<i64> = acks
        .iter()
        .filter_map(|a| a.acked_at.map(|t| t - a.raised_at))
        .collect();
    let (median, worst) = median_and_worst(waits.clone());
    let by_village: Vec<Value> = rows
        .iter()
        .map(|(id, r)| {
            let v = villages.iter().find(|v| &v.id == id);
            json!({
                "village_id": id,
                "village_name": v.map(|v| v.name.as_str()),
                "town_id": v.map(|v| v.town_id.as_str()),
                "town_name": v.map(|v| v.town_name.as_str()),
                "open": r.open,
                "critical": r.critical,
                "unacknowledged": r.unacknowledged,
                "overdue": r.overdue,
                "devices": r.devices,
                "devices_offline": r.devices_offline,
            })
        })
        .collect();
    Ok(Json(json!({
        "scope": scope,
        "now": now,
        "day_start": today,
        "villages": by_village,
        "overdue": overdue,
        "devices_offline": offline_devices,
        "ack_today": {
            "raised": acks.len(),
            "acknowledged": waits.len(),
            "median_ms": median,
            "worst_ms": worst,
            "waits_ms": waits,
        },
    })))
}

#[cfg(test)]
mod tests {
    use super::median_and_worst;

    #[test]
    fn median_of_odd_and_even_counts_and_the_worst() {
        assert_eq!(median_and_worst(vec![]), (None, None));
        assert_eq!(median_and_worst(vec![30, 10, 20]), (Some(20), Some(30)));
        assert_eq!(median_and_worst(vec![40, 10, 20, 30]), (Some(25), Some(40)));
    }
}
