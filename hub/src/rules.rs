//! The rules stage: owns the `alert_rules::Engine`, feeds it observations and the clock,
//! and turns its decisions into alarms. One task, so the engine needs no locking and
//! decisions are applied in the order observations arrived.
//!
//! Critical events carry a reply channel: the stage answers only after the alarm (and
//! the event id, for de-duplication) is committed, and ingest acknowledges the device
//! only then.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use alert_rules::{Action, Engine, EngineState, Observation, RuleSet, Signal};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::alarms::AlarmService;
use crate::store::{EventRecord, StoreError};

/// A critical event's identity, for de-duplication and the acknowledgement.
#[derive(Debug)]
pub struct CriticalEvent {
    pub event_id: String,
    pub device_ts: String,
    pub kind: &'static str,
    pub reply: oneshot::Sender<Result<Outcome, StoreError>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Committed now. `alarm_id` is None if no rule raised an alarm (e.g. disabled for the household).
    Stored { alarm_id: Option<String> },
    /// Seen and committed before: a device retry.
    Duplicate { alarm_id: Option<String> },
}

#[derive(Debug)]
pub struct Input {
    pub obs: Observation,
    pub critical: Option<CriticalEvent>,
}

pub struct RulesStage {
    pub engine: Engine,
    /// Observations fully handled (decisions applied): lets tests and operators see the
    /// stage keep up with ingest.
    pub processed: Arc<AtomicU64>,
    pub alarms: AlarmService,
    pub tick_every: Duration,
    pub save_every: Duration,
}

impl RulesStage {
    /// Build the engine from the rules and its saved memory, and start watching every
    /// known household and device (so silence is noticed even in a home that never spoke).
    pub async fn load(
        rules: RuleSet,
        alarms: AlarmService,
        tick_every: Duration,
        save_every: Duration,
    ) -> anyhow::Result<Self> {
        let state = match alarms.store.load_rule_state().await? {
            Some(json) => match serde_json::from_str::<EngineState>(&json) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "saved rule state unreadable (rules changed?); starting fresh");
                    EngineState::default()
                }
            },
            None => EngineState::default(),
        };
        let mut engine = Engine::with_state(rules, state);
        let now = alarms.now();
        // The hub was down, not the devices: nobody heard them meanwhile, so health
        // timers restart now instead of raising "offline" for every device at once.
        engine.reset_device_baselines(now);
        for h in alarms.store.household_ids().await? {
            engine.watch_household(&h, now);
        }
        for (h, d) in alarms.store.active_devices().await? {
            engine.watch_device(&h, &d, now);
        }
        Ok(Self {
            engine,
            processed: Arc::new(AtomicU64::new(0)),
            alarms,
            tick_every,
            save_every,
        })
    }

    pub async fn run(mut self, mut input: mpsc::Receiver<Input>, cancel: CancellationToken) {
        // Saving is paced in real time: it bounds what a crash can lose, whatever the clock does.
        let mut last_save = tokio::time::Instant::now();
        loop {
            let now = self.alarms.now();
            let tick_at = now + self.tick_every.as_millis() as i64;
            let wake = self
                .engine
                .next_deadline()
                .map_or(tick_at, |d| d.min(tick_at))
                .max(now);
            tokio::select! {
                msg = input.recv() => match msg {
                    Some(msg) => {
                        // Device events and status (connect / Last Will) messages apart, so
                        // that event counts can be reconciled with what devices sent.
                        let source = match msg.obs.signal {
                            Signal::Online | Signal::Offline => "status",
                            _ => "event",
                        };
                        self.handle(msg).await;
                        self.processed.fetch_add(1, Ordering::Release);
                        metrics::counter!("anxin_observations_processed_total", "source" => source).increment(1);
                    }
                    // Ingest stopped: everything upstream is drained.
                    None => break,
                },
                _ = self.alarms.clock.sleep_until(wake) => self.tick().await,
                _ = cancel.cancelled() => break,
            }
            if last_save.elapsed() >= self.save_every {
                self.save().await;
                last_save = tokio::time::Instant::now();
            }
        }
        self.save().await;
    }

    async fn save(&self) {
        match serde_json::to_string(self.engine.state()) {
            Ok(json) => {
                if let Err(e) = self
                    .alarms
                    .store
                    .save_rule_state(&json, self.alarms.now())
                    .await
                {
                    tracing::error!(error = %e, "saving rule state failed");
                }
            }
            Err(e) => tracing::error!(error = %e, "serialising rule state failed"),
        }
    }

    async fn tick(&mut self) {
        let now = self.alarms.now();
        for d in self.engine.tick(now) {
            self.apply_or_retry(&d).await;
        }
    }

    /// Apply a decision that has no device waiting for it. The engine has already moved
    /// on (it will not raise the same condition again), so a transient store failure must
    /// not lose the alarm: retry with backoff; only a persistent failure is given up, loudly.
    async fn apply_or_retry(&self, d: &alert_rules::Decision) {
        let mut wait = Duration::from_millis(50);
        for attempt in 1..=8 {
            match self.alarms.apply(d, None).await {
                Ok(_) => return,
                Err(e) if attempt < 8 => {
                    tracing::warn!(error = %e, rule = %d.rule_id, attempt, "applying decision failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    metrics::counter!("anxin_decisions_lost_total").increment(1);
                    tracing::error!(error = %e, rule = %d.rule_id, household = %d.household, "decision LOST after retries");
                }
            }
        }
    }

    async fn handle(&mut self, msg: Input) {
        let Input { obs, critical } = msg;
        let Some(critical) = critical else {
            let now = self.alarms.now();
            for d in self.engine.observe(&obs, now) {
                self.apply_or_retry(&d).await;
            }
            return;
        };
        let result = self.handle_critical(&obs, &critical).await;
        // The device may have gone; a dropped receiver is fine (it will retry).
        let _ = critical.reply.send(result);
    }

    async fn handle_critical(
        &mut self,
        obs: &Observation,
        ev: &CriticalEvent,
    ) -> Result<Outcome, StoreError> {
        let store = &self.alarms.store;
        if let Some(alarm_id) = store.seen_event(&obs.device, &ev.event_id).await? {
            metrics::counter!("anxin_device_retries_deduplicated_total").increment(1);
            return Ok(Outcome::Duplicate { alarm_id });
        }
        failpoint("hold_before_commit", &ev.event_id).await;
        let record = EventRecord {
            device_id: &obs.device,
            event_id: &ev.event_id,
            device_ts: &ev.device_ts,
            kind: ev.kind,
        };
        let now = self.alarms.now();
        let mut alarm_id = None;
        for d in self.engine.observe(obs, now) {
            // `observe` may also return timer decisions that came due; the event belongs to
            // the instant rule that this device's report raised (one row per event id).
            let this_event = d.action == Action::Raise
                && d.device.as_deref() == Some(obs.device.as_str())
                && self.engine.rules().rule_kind(&d.rule_id) == Some("instant");
            let event = (this_event && alarm_id.is_none()).then_some(&record);
            if let Some(raised) = self.alarms.apply(&d, event).await? {
                if event.is_some() {
                    alarm_id = Some(raised.alarm.id);
                }
            }
        }
        if alarm_id.is_none() {
            store.record_event(&record, now).await?;
        }
        failpoint("exit_after_commit", &ev.event_id).await;
        Ok(Outcome::Stored { alarm_id })
    }
}

/// Test-only fault injection, compiled in only with the `failpoints` feature: the
/// end-to-end tests kill the hub at exactly these points to prove nothing is lost.
#[allow(unused_variables)]
async fn failpoint(name: &str, event_id: &str) {
    #[cfg(feature = "failpoints")]
    if std::env::var("ANXIN_FAILPOINT").ok().as_deref() == Some(name) {
        eprintln!("FAILPOINT {name} {event_id}");
        if name.starts_with("exit") {
            std::process::abort();
        }
        std::future::pending::<()>().await;
    }
}
