//! The alarm lifecycle: raise → notify → acknowledge → resolve. Every step is committed
//! to the store first and only then published, so nobody is ever told about an alarm
//! that is not in the database.

use std::sync::Arc;

use alert_rules::{Action, Decision, Millis};
use tokio::sync::{Mutex, Notify};

use crate::clock::SharedClock;
use crate::config::{EscalationPolicy, EscalationSettings};
use crate::notify::Bus;
use crate::store::{AlarmUpdate, Deadlines, EventRecord, Raised, Store, StoreError};

/// The channel recorded for a notification. Websocket boards for now; SMS/voice later.
pub const CHANNEL_BOARD: &str = "board";

#[derive(Clone)]
pub struct AlarmService {
    pub store: Store,
    pub clock: SharedClock,
    pub bus: Bus,
    pub escalation: Arc<EscalationSettings>,
    /// Wakes the escalation scheduler when a new deadline may be earlier than the one it sleeps on.
    pub escalation_wake: Arc<Notify>,
    /// SMS / voice / webhook channels configured (empty: the board only).
    pub channel_kinds: Arc<Vec<crate::delivery::ChannelKind>>,
    /// Wakes the delivery worker when deliveries are planned.
    pub delivery_wake: Arc<Notify>,
    /// The district's UTC offset (duty rosters are in local time).
    pub utc_offset_minutes: i32,
    /// Held across "commit a step, publish it": steps reach the bus in the order of their
    /// sequence numbers, so a websocket client never sees seq 11 before seq 10. (SQLite
    /// serialises writes anyway; this only orders the publishes.)
    pub order: Arc<Mutex<()>>,
}

impl AlarmService {
    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    /// The acknowledgement deadline at `level` (none at the alarm's highest level: it
    /// does not escalate further) and the next re-notification.
    fn deadlines(
        policy: &EscalationPolicy,
        level: usize,
        max_level: Option<i64>,
        now: Millis,
    ) -> (Option<i64>, Option<i64>) {
        let capped = max_level.is_some_and(|m| level as i64 >= m);
        let deadline = policy
            .ack_deadlines_secs
            .get(level)
            .filter(|_| !capped)
            .map(|s| now + (*s as i64) * 1000);
        let renotify = policy.renotify_secs.map(|s| now + (s as i64) * 1000);
        (deadline, renotify)
    }

    /// Apply one rule decision. Returns the alarm for raises (new or repeated).
    pub async fn apply(
        &self,
        d: &Decision,
        event: Option<&EventRecord<'_>>,
    ) -> Result<Option<Raised>, StoreError> {
        let now = self.now();
        match d.action {
            Action::Raise => {
                let policy = self.escalation.policy(d.severity);
                let (level_deadline_at, renotify_at) =
                    Self::deadlines(policy, 0, d.max_level.map(i64::from), now);
                let deadlines = Deadlines {
                    level_deadline_at,
                    renotify_at,
                    overdue_at: policy.overdue_after_secs.map(|s| now + (s as i64) * 1000),
                };
                let guard = self.order.lock().await;
                let raised = self.store.raise(d, deadlines, event, now).await?;
                self.bus.publish(raised.update.clone());
                drop(guard);
                if raised.new {
                    metrics::counter!("anxin_alarms_raised_total", "severity" => d.severity.as_str(), "rule" => d.rule_id.clone()).increment(1);
                    tracing::info!(alarm = %raised.alarm.id, rule = %d.rule_id, household = ?d.household, village = ?d.village, severity = d.severity.as_str(), "alarm raised");
                }
                if raised.new {
                    if !self.ask_elder_first(&raised.alarm).await? {
                        self.notify_level(&raised.alarm.id, 0, "raised").await?;
                    }
                    self.escalation_wake.notify_one();
                }
                Ok(Some(raised))
            }
            Action::Clear => {
                let _order = self.order.lock().await;
                if let Some(update) = self.store.condition_cleared(d, now).await? {
                    self.bus.publish(update);
                }
                Ok(None)
            }
        }
    }

    /// Notify everyone at `level` and record who was told and how.
    pub async fn notify_level(
        &self,
        alarm_id: &str,
        level: i64,
        reason: &str,
    ) -> Result<AlarmUpdate, StoreError> {
        let alarm = self.store.alarm(alarm_id).await?;
        let recipients = self.recipients(&alarm, level).await?;
        let _order = self.order.lock().await;
        let (update, planned) = self
            .store
            .record_notified(
                alarm_id,
                level,
                &recipients,
                CHANNEL_BOARD,
                reason,
                &self.channel_kinds,
                self.now(),
            )
            .await?;
        self.bus.publish(update.clone());
        if planned > 0 {
            self.delivery_wake.notify_one();
        }
        Ok(update)
    }

    /// When an alarm acknowledged now must have someone on site (policy), if ever.
    async fn on_site_by(&self, alarm_id: &str) -> Result<Option<Millis>, StoreError> {
        let a = self.store.alarm(alarm_id).await?;
        Ok(self
            .escalation
            .policy(a.severity())
            .on_site_within_secs
            .map(|s| self.now() + (s as i64) * 1000))
    }

    /// For the rules in `verify_first_rules`, when calls are possible and the elder has a
    /// phone: call the elder first ("press 1 if you are all right") and tell the contacts
    /// only if the elder does not confirm within `verify_within_secs`. True if asked.
    async fn ask_elder_first(&self, a: &crate::store::Alarm) -> Result<bool, StoreError> {
        let wanted = self.escalation.verify_first_rules.contains(&a.rule_id)
            && self
                .channel_kinds
                .contains(&crate::delivery::ChannelKind::Voice);
        let Some(household) = a.household_id.as_deref().filter(|_| wanted) else {
            return Ok(false);
        };
        let Some((elder, _)) = self.store.elder_phone(household).await? else {
            return Ok(false);
        };
        let now = self.now();
        let until = now + (self.escalation.verify_within_secs as i64) * 1000;
        let _order = self.order.lock().await;
        let update = self
            .store
            .start_verification(&a.id, &elder, until, now)
            .await?;
        self.bus.publish(update);
        self.delivery_wake.notify_one();
        tracing::info!(alarm = %a.id, elder = %elder, "asking the elder first");
        Ok(true)
    }

    /// The elder answered the hub's call: `ok` (pressed 1) resolves the alarm as "elder
    /// confirmed OK"; anything else (another key, no answer) tells the contacts now.
    pub async fn elder_answered(
        &self,
        alarm_id: &str,
        elder_id: &str,
        ok: bool,
    ) -> Result<(), StoreError> {
        let ended = self.store.end_verification(alarm_id).await?;
        if ok {
            let a = self.store.alarm(alarm_id).await?;
            if a.is_open() {
                self.resolve(
                    alarm_id,
                    &format!("elder:{elder_id}"),
                    "elder_confirmed_ok",
                    Some("the elder answered the hub's call and pressed 1"),
                )
                .await?;
                metrics::counter!("anxin_elder_confirmed_ok_total").increment(1);
            }
        } else if ended {
            self.notify_level(alarm_id, 0, "the elder did not confirm")
                .await?;
        }
        Ok(())
    }

    /// Who is told at `level` now: at level 0 the household's family, and for the level's
    /// area (level 0 the village — and the town too for a grouped village incident —, 1 the
    /// town, 2 the district) whoever the duty roster has on duty; an area without a roster:
    /// all its staff. A gap in a roster (nobody on duty, no fallback) is never silence: the
    /// whole level is told, and the gap is logged and counted.
    pub async fn recipients(
        &self,
        a: &crate::store::Alarm,
        level: i64,
    ) -> Result<Vec<String>, StoreError> {
        use crate::store::Scope;
        let now = self.now();
        let mut out = Vec::new();
        let areas = match level {
            0 => {
                if let Some(h) = &a.household_id {
                    out.extend(self.store.household_contacts(h).await?);
                }
                let mut v = vec![Scope::Village(a.village_id.clone())];
                if a.household_id.is_none() {
                    v.push(Scope::Town(a.town_id.clone()));
                }
                v
            }
            1 => vec![Scope::Town(a.town_id.clone())],
            _ => vec![Scope::District],
        };
        for area in areas {
            let duty = self
                .store
                .on_duty(&area, now, self.utc_offset_minutes)
                .await?;
            if duty.source == crate::roster::Source::Nobody {
                metrics::counter!("anxin_roster_gaps_hit_total").increment(1);
                tracing::warn!(alarm = %a.id, area = %area, "nobody on duty in the roster: notifying every contact of the level");
                return self.store.recipients(a, level).await;
            }
            for c in duty.contacts {
                if !out.contains(&c) {
                    out.push(c);
                }
            }
        }
        Ok(out)
    }

    pub async fn acknowledge(
        &self,
        alarm_id: &str,
        by: &str,
        via: &str,
        note: Option<&str>,
    ) -> Result<AlarmUpdate, StoreError> {
        let on_site_by = self.on_site_by(alarm_id).await?;
        let _order = self.order.lock().await;
        let update = self
            .store
            .acknowledge(alarm_id, by, via, note, on_site_by, self.now())
            .await?;
        tracing::info!(alarm = %alarm_id, contact = %by, via, "alarm acknowledged");
        self.bus.publish(update.clone());
        // "Taken by" SMS may have been planned.
        self.delivery_wake.notify_one();
        Ok(update)
    }

    /// "On my way" / "on site" from whoever took the alarm (acknowledging it first if
    /// nobody had).
    pub async fn respond(
        &self,
        alarm_id: &str,
        by: &str,
        via: &str,
        response: crate::store::Response,
        note: Option<&str>,
    ) -> Result<AlarmUpdate, StoreError> {
        let on_site_by = self.on_site_by(alarm_id).await?;
        let _order = self.order.lock().await;
        let update = self
            .store
            .respond(alarm_id, by, via, response, note, on_site_by, self.now())
            .await?;
        tracing::info!(alarm = %alarm_id, contact = %by, via, step = %update.step, "alarm response");
        self.bus.publish(update.clone());
        self.delivery_wake.notify_one();
        self.escalation_wake.notify_one();
        Ok(update)
    }

    pub async fn resolve(
        &self,
        alarm_id: &str,
        by: &str,
        disposition: &str,
        note: Option<&str>,
    ) -> Result<AlarmUpdate, StoreError> {
        let _order = self.order.lock().await;
        let update = self
            .store
            .resolve(alarm_id, by, disposition, note, self.now())
            .await?;
        tracing::info!(alarm = %alarm_id, contact = %by, disposition, "alarm resolved");
        self.bus.publish(update.clone());
        Ok(update)
    }

    /// Take every escalation step that is due at `now`. Returns how many steps were taken.
    /// Each step is a conditional update in the store, so it happens at most once even
    /// across restarts; a step whose deadline passed while the hub was down is taken once,
    /// and the next deadline counts from now.
    pub async fn run_due(&self) -> Result<usize, StoreError> {
        let now = self.now();
        let mut steps = 0;
        for a in self.store.due_alarms(now).await? {
            let policy = self.escalation.policy(a.severity());
            // While the elder is being asked, the contacts' clocks do not run.
            let asking = a.verify_until.is_some_and(|t| t > now);
            if !asking && a.is_unacknowledged() && a.level_deadline_at.is_some_and(|t| t <= now) {
                let top = a
                    .max_level
                    .unwrap_or(i64::MAX)
                    .min(self.escalation.top_level as i64);
                let to = (a.level + 1).min(top);
                let (deadline, renotify) = Self::deadlines(policy, to as usize, a.max_level, now);
                let order = self.order.lock().await;
                let escalated = self.store.escalate(&a, to, deadline, renotify, now).await?;
                if let Some(update) = escalated {
                    self.bus.publish(update);
                    drop(order);
                    tracing::info!(alarm = %a.id, level = to, "alarm escalated");
                    metrics::counter!("anxin_alarms_escalated_total", "to_level" => to.to_string())
                        .increment(1);
                    self.notify_level(&a.id, to, "escalated").await?;
                    steps += 1;
                }
            } else if !asking && a.is_unacknowledged() && a.renotify_at.is_some_and(|t| t <= now) {
                // Bounded: after `max_repeats` at this level, no further repeat is planned.
                let bounded = policy
                    .max_repeats
                    .is_some_and(|m| a.repeats_at_level + 1 >= i64::from(m));
                let next = policy
                    .renotify_secs
                    .filter(|_| !bounded)
                    .map(|s| now + (s as i64) * 1000);
                if self.store.bump_renotify(&a, next).await? {
                    self.notify_level(&a.id, a.level, "repeat until acknowledged")
                        .await?;
                    steps += 1;
                }
            }
            if a.verify_until.is_some_and(|t| t <= now)
                && self.store.end_verification(&a.id).await?
            {
                tracing::info!(alarm = %a.id, "the elder did not confirm in time: telling the contacts");
                self.notify_level(&a.id, 0, "the elder did not confirm in time")
                    .await?;
                steps += 1;
            }
            if a.state == "acknowledged"
                && a.response.as_deref() != Some("on_site")
                && a.on_site_deadline_at.is_some_and(|t| t <= now)
            {
                let top = a
                    .max_level
                    .unwrap_or(i64::MAX)
                    .min(self.escalation.top_level as i64);
                let to = (a.level + 1).min(top);
                // Another window at the next level; at the top, one last call.
                let next = (to < top)
                    .then_some(policy.on_site_within_secs)
                    .flatten()
                    .map(|s| now + (s as i64) * 1000);
                let order = self.order.lock().await;
                let done = self.store.reescalate_unattended(&a, to, next, now).await?;
                if let Some(update) = done {
                    if let Some(update) = update {
                        self.bus.publish(update);
                    }
                    drop(order);
                    tracing::warn!(alarm = %a.id, level = to, "acknowledged alarm with nobody on site: re-escalated");
                    metrics::counter!("anxin_alarms_reescalated_unattended_total").increment(1);
                    self.notify_level(&a.id, to, "acknowledged but nobody on site")
                        .await?;
                    steps += 1;
                }
            }
            if a.overdue_at.is_some_and(|t| t <= now) && !a.overdue_notified {
                let order = self.order.lock().await;
                let overdue = self.store.mark_overdue(&a, now).await?;
                if let Some(update) = overdue {
                    self.bus.publish(update);
                    drop(order);
                    tracing::warn!(alarm = %a.id, "alarm overdue: not resolved in time");
                    let top = a
                        .max_level
                        .unwrap_or(i64::MAX)
                        .min(self.escalation.top_level as i64);
                    self.notify_level(&a.id, top, "overdue").await?;
                    steps += 1;
                }
            }
        }
        Ok(steps)
    }
}
