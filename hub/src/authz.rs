//! Authorization: the one place that decides who may see and do what.
//!
//! Every REST handler and websocket subscription asks here; none compares scopes itself.
//! The rule is the scope tree: the district covers everything, a town its villages, a
//! village its households, a family its own household. Reading something outside one's
//! scope answers 404 (existence is not confirmed); *acting* on it answers 403 and is
//! written to the audit log, because an attempt to acknowledge another village's alarm
//! is exactly what supervisors must be able to see afterwards.

use serde_json::json;

use crate::http::{ApiError, AppState};
use crate::store::{Alarm, Contact, Scope};

/// What a caller wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// See an alarm, a household's mode or visits.
    Read,
    /// Acknowledge or resolve an alarm.
    ActOnAlarm,
    /// Set or end a household's away / hospital / holiday mode.
    SetMode,
    /// Check a carer visit in or out (care staff only).
    RecordVisit,
    /// Staff reports (visit compliance).
    Report,
    /// Reload the rules (district only).
    Administer,
    /// Change a duty roster: set or delete an override (town and district staff, for
    /// areas inside their scope).
    ManageRoster,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::ActOnAlarm => "alarm.act",
            Action::SetMode => "household.mode",
            Action::RecordVisit => "household.visit",
            Action::Report => "report",
            Action::Administer => "admin",
            Action::ManageRoster => "roster.manage",
        }
    }

    /// Families may read and act on their own household's alarms and set its mode;
    /// visits, reports and administration are for staff.
    fn family_may(self) -> bool {
        matches!(self, Action::Read | Action::ActOnAlarm | Action::SetMode)
    }
}

/// The authenticated caller and where the request came from (for the audit log).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The account (id, role, scope).
    pub contact: Contact,
    pub source: Option<String>,
    /// The session token, when the caller logged in (not for API tokens).
    pub session: Option<String>,
    /// The API token used, when the caller did not log in.
    pub api_token: Option<crate::store::ApiToken>,
}

impl Caller {
    /// Does the credential this caller presented still hold (not logged out, revoked,
    /// expired, or ended by a password change)? Long-lived connections (the websocket)
    /// ask this again, so that taking a credential away also closes them.
    pub async fn still_valid(&self, state: &AppState) -> Result<bool, crate::store::StoreError> {
        let store = &state.alarms.store;
        let now = state.alarms.now();
        if let Some(token) = &self.session {
            return Ok(store.session_principal(token, now).await?.is_some());
        }
        match &self.api_token {
            Some(t) => {
                Ok(store.api_token(&t.id).await?.is_some_and(|t| {
                    t.revoked_at.is_none() && t.expires_at.is_none_or(|e| e > now)
                }) && store.account(&t.account_id).await?.is_some())
            }
            None => Ok(false),
        }
    }
}

/// Deny, log and audit. `hide` answers 404 instead of 403 (reads outside one's scope).
async fn deny(
    state: &AppState,
    c: &Caller,
    action: Action,
    target: &str,
    hide: bool,
    why: &str,
) -> ApiError {
    tracing::info!(contact = %c.contact.id, action = action.name(), target, "request outside caller scope refused");
    metrics::counter!("anxin_authz_denied_total", "action" => action.name()).increment(1);
    // Reads outside one's scope are only logged; every refused *action* is audited, even
    // when the answer hides the target (404 for households outside the scope).
    if action != Action::Read {
        audit(
            state,
            c,
            action.name(),
            target,
            "denied",
            json!({ "reason": why }),
        )
        .await;
    }
    if hide {
        ApiError::NotFound(target.replace(':', " "))
    } else {
        ApiError::Forbidden(why.to_owned())
    }
}

/// Append to the audit log; a failure to write it is logged, never hides the action.
pub async fn audit(
    state: &AppState,
    c: &Caller,
    action: &str,
    target: &str,
    outcome: &str,
    detail: serde_json::Value,
) {
    audit_as(
        state,
        &c.contact.id,
        c.source.as_deref(),
        action,
        target,
        outcome,
        detail,
    )
    .await
}

/// The same for a request with no authenticated caller yet (a login).
pub async fn audit_as(
    state: &AppState,
    actor: &str,
    source: Option<&str>,
    action: &str,
    target: &str,
    outcome: &str,
    detail: serde_json::Value,
) {
    let now = state.alarms.now();
    if let Err(e) = state
        .alarms
        .store
        .audit(now, actor, action, target, outcome, source, &detail)
        .await
    {
        tracing::error!(error = %e, action, "writing the audit log failed");
    }
}

const ROSTERS_BY_SUPERVISORS: &str = "duty rosters are changed by town or district staff";

fn role_allows(c: &Caller, action: Action) -> Result<(), &'static str> {
    match (&c.contact.scope, action) {
        (scope, a) if scope.is_family() && !a.family_may() => Err(match a {
            Action::RecordVisit => "visits are checked in by care staff",
            Action::Report => "this report is for staff",
            Action::ManageRoster => ROSTERS_BY_SUPERVISORS,
            _ => "only district staff can do this",
        }),
        (Scope::Village(_), Action::ManageRoster) => Err(ROSTERS_BY_SUPERVISORS),
        (scope, Action::Administer) if *scope != Scope::District => {
            Err("only district staff can do this")
        }
        _ => Ok(()),
    }
}

/// May the caller do `action` on this alarm? Loads it; outside the scope: 404 for
/// reads, 403 (audited) for acting.
pub async fn alarm(
    state: &AppState,
    c: &Caller,
    id: &str,
    action: Action,
) -> Result<Alarm, ApiError> {
    let target = format!("alarm:{id}");
    if let Err(why) = role_allows(c, action) {
        return Err(deny(state, c, action, &target, false, why).await);
    }
    let hide = action == Action::Read;
    let outside = format!("alarm {id} is outside your scope ({})", c.contact.scope);
    let alarm = match state.alarms.store.alarm(id).await {
        Ok(a) => a,
        // Acting on an id that does not exist answers like acting outside one's scope,
        // so that 403 versus 404 does not tell whether an alarm exists elsewhere. (The
        // district sees everything: for it, missing is simply missing.)
        Err(crate::store::StoreError::NotFound(_))
            if hide || c.contact.scope == Scope::District =>
        {
            return Err(ApiError::NotFound(format!("alarm {id}")))
        }
        Err(crate::store::StoreError::NotFound(_)) => {
            return Err(deny(state, c, action, &target, false, &outside).await)
        }
        Err(e) => return Err(e.into()),
    };
    if c.contact.scope.covers(&alarm) {
        return Ok(alarm);
    }
    Err(deny(state, c, action, &target, hide, &outside).await)
}

/// May the caller do `action` for this household? Outside the scope (or unknown): 404.
pub async fn household(
    state: &AppState,
    c: &Caller,
    id: &str,
    action: Action,
) -> Result<(), ApiError> {
    let target = format!("household:{id}");
    let inside = state
        .alarms
        .store
        .scope_within(&Scope::Household(id.to_owned()), &c.contact.scope)
        .await?;
    if !inside {
        return Err(deny(state, c, action, &target, true, "outside your scope").await);
    }
    if let Err(why) = role_allows(c, action) {
        return Err(deny(state, c, action, &target, false, why).await);
    }
    Ok(())
}

/// The scope a request asks for (`?scope=village:v-1`), or the caller's own; a scope
/// outside the caller's is refused (403: naming a scope is not a secret).
pub async fn scope(
    state: &AppState,
    c: &Caller,
    asked: Option<&str>,
    action: Action,
) -> Result<Scope, ApiError> {
    if let Err(why) = role_allows(c, action) {
        return Err(deny(state, c, action, "scope", false, why).await);
    }
    let Some(asked) = asked else {
        return Ok(c.contact.scope.clone());
    };
    let scope = Scope::parse(asked).map_err(ApiError::BadRequest)?;
    if state
        .alarms
        .store
        .scope_within(&scope, &c.contact.scope)
        .await?
    {
        Ok(scope)
    } else {
        let why = format!("{scope} is outside your scope ({})", c.contact.scope);
        Err(deny(state, c, action, &format!("scope:{scope}"), false, &why).await)
    }
}

/// Alarm fields a family member is not shown: the escalation machinery (levels,
/// deadlines, internal keys) and the staff areas. Families see what happened, when, its
/// state, and who took it and how it ended.
const FAMILY_HIDDEN: [&str; 10] = [
    "town_id",
    "village_id",
    "condition_key",
    "level",
    "level_deadline_at",
    "renotify_at",
    "overdue_at",
    "overdue_notified",
    "max_level",
    "on_site_deadline_at",
];
/// Timeline details a family member is not shown: who else was notified, at which level.
const FAMILY_HIDDEN_DETAIL: [&str; 3] = ["recipients", "level", "reason"];

/// An alarm as `scope` may see it (staff: all of it; family: without [`FAMILY_HIDDEN`]).
pub fn shown_alarm(scope: &Scope, alarm: &Alarm) -> serde_json::Value {
    let mut v = serde_json::to_value(alarm).unwrap_or_default();
    if scope.is_family() {
        hide_alarm_fields(&mut v);
    }
    v
}

/// A timeline step with its alarm (what the websocket sends), as `scope` may see it.
pub fn shown_update(scope: &Scope, u: &crate::store::AlarmUpdate) -> serde_json::Value {
    let mut v = serde_json::to_value(u).unwrap_or_default();
    if scope.is_family() {
        hide_detail_fields(&mut v);
        if let Some(a) = v.get_mut("alarm") {
            hide_alarm_fields(a);
        }
    }
    v
}

/// An alarm's timeline, as `scope` may see it.
pub fn shown_timeline(scope: &Scope, steps: &[crate::store::TimelineEntry]) -> serde_json::Value {
    let mut v = serde_json::to_value(steps).unwrap_or_default();
    if let (true, Some(items)) = (scope.is_family(), v.as_array_mut()) {
        items.iter_mut().for_each(hide_detail_fields);
    }
    v
}

fn hide_alarm_fields(v: &mut serde_json::Value) {
    if let Some(obj) = v.as_object_mut() {
        for k in FAMILY_HIDDEN {
            obj.remove(k);
        }
    }
}

fn hide_detail_fields(v: &mut serde_json::Value) {
    if let Some(serde_json::Value::Object(d)) = v.get_mut("detail") {
        for k in FAMILY_HIDDEN_DETAIL {
            d.remove(k);
        }
    }
}

/// A district-wide operation (reloading rules, reading the audit log).
pub async fn district(state: &AppState, c: &Caller, what: &str) -> Result<(), ApiError> {
    match role_allows(c, Action::Administer) {
        Ok(()) => Ok(()),
        Err(why) => Err(deny(state, c, Action::Administer, what, false, why).await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(scope: Scope) -> Caller {
        Caller {
            contact: Contact {
                id: "c".into(),
                role: "x".into(),
                scope,
                priority: 0,
            },
            source: None,
            session: None,
            api_token: None,
        }
    }

    #[test]
    fn roles_and_actions() {
        let family = caller(Scope::Household("h".into()));
        let homes = caller(Scope::households(vec!["h2".into(), "h1".into()]));
        assert_eq!(
            homes.contact.scope,
            Scope::Households(vec!["h1".into(), "h2".into()])
        );
        let village = caller(Scope::Village("v".into()));
        let district = caller(Scope::District);
        for (c, a, ok) in [
            (&family, Action::Read, true),
            (&family, Action::ActOnAlarm, true),
            (&family, Action::SetMode, true),
            (&family, Action::RecordVisit, false),
            (&family, Action::Report, false),
            (&family, Action::Administer, false),
            (&homes, Action::ActOnAlarm, true),
            (&homes, Action::RecordVisit, false),
            (&homes, Action::Report, false),
            (&homes, Action::Administer, false),
            (&village, Action::RecordVisit, true),
            (&village, Action::Report, true),
            (&village, Action::Administer, false),
            (&district, Action::Administer, true),
            (&family, Action::ManageRoster, false),
            (&homes, Action::ManageRoster, false),
            (&village, Action::ManageRoster, false),
            (&caller(Scope::Town("t".into())), Action::ManageRoster, true),
            (&district, Action::ManageRoster, true),
        ] {
            assert_eq!(role_allows(c, a).is_ok(), ok, "{:?} {a:?}", c.contact.scope);
        }
    }
}
