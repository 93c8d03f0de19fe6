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

use alert_rules::{
    Action, Decision, Engine, EngineState, Millis, ModeKind, Observation, RuleSet, Signal,
};
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

/// The two lanes from ingest into the rules stage. SOS, fall, smoke, gas and leak reports
/// (alarm and all-clear alike, so their order is kept) take the priority lane: the stage
/// serves it first and between the decisions of a long tick, so a critical alarm never
/// waits behind a storm of device-health decisions.
#[derive(Debug, Clone)]
pub struct Lanes {
    pub priority: mpsc::Sender<Input>,
    pub normal: mpsc::Sender<Input>,
    /// The rules stage's progress: inputs handed over are counted here (`/healthz`).
    pub progress: Arc<crate::health::Progress>,
}

impl Lanes {
    /// Whether a signal goes through the priority lane.
    pub fn is_priority(signal: &Signal) -> bool {
        matches!(
            signal,
            Signal::Sos
                | Signal::Fall
                | Signal::Smoke { .. }
                | Signal::Gas { .. }
                | Signal::WaterLeak { .. }
        )
    }

    /// Hand an observation to the stage (waits while the lane is full: backpressure).
    pub async fn send(&self, input: Input) -> Result<(), mpsc::error::SendError<Input>> {
        if input.critical.is_some() || Self::is_priority(&input.obs.signal) {
            self.priority.send(input).await?;
        } else {
            self.normal.send(input).await?;
        }
        self.progress.accepted();
        Ok(())
    }
}

/// What people (via REST) and operators ask of the rules stage.
#[derive(Debug)]
pub enum Command {
    /// Away / hospital / holiday mode for a household until `until`.
    SetMode {
        household: String,
        kind: ModeKind,
        until: Millis,
        by: String,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// End the household's mode now.
    EndMode {
        household: String,
        by: String,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// A carer checked in (`start`) or out on the board.
    Visit {
        household: String,
        start: bool,
        carer: String,
        by: String,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Stop watching a device (revoked): no offline alarm will follow.
    ForgetDevice {
        household: String,
        device: String,
        reply: oneshot::Sender<()>,
    },
    /// Watch a device again (a revoked device was reinstated): its messages are served
    /// and it counts for device health from now on.
    WatchDevice {
        household: String,
        device: String,
        reply: oneshot::Sender<()>,
    },
    /// What the pages show about households: last activity, mode, visit, device
    /// health and battery, recent events. Answers in the order asked.
    Snapshot {
        households: Vec<String>,
        reply: oneshot::Sender<Vec<HouseholdSnapshot>>,
    },
    /// Swap in new rules, keeping all rule state.
    Reload {
        rules: Box<RuleSet>,
        reply: oneshot::Sender<()>,
    },
}

/// A household as the rules stage knows it now (see [`Command::Snapshot`]).
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq)]
pub struct HouseholdSnapshot {
    pub household: String,
    /// Latest sign of life (motion, door, water use, bed, button …).
    pub last_activity: Option<Millis>,
    /// `away`, `hospital` or `holiday`, and until when.
    pub mode: Option<(String, Millis)>,
    /// A carer visit in progress: since when.
    pub visit_since: Option<Millis>,
    /// Enough of its devices offline that the home counts as unreachable: since when.
    pub unreachable_since: Option<Millis>,
    /// The devices the engine watches, by id.
    pub devices: Vec<DeviceSnapshot>,
    /// Newest first (since the hub started).
    pub recent: Vec<crate::live::RecentEvent>,
}

#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct DeviceSnapshot {
    pub id: String,
    pub last_seen: Millis,
    /// `None`: online.
    pub offline_since: Option<Millis>,
    pub battery: Option<f64>,
    /// Signal of the last message heard since the hub started.
    pub last_signal: Option<&'static str>,
}

/// A cheap-clone handle for sending commands to the rules stage.
#[derive(Debug, Clone)]
pub struct RulesHandle {
    pub commands: mpsc::Sender<Command>,
    /// The rules file to re-read on reload (`None`: the built-in rules).
    pub file: Option<std::path::PathBuf>,
    /// The district's UTC offset from the rules (for showing and parsing local dates).
    pub utc_offset_minutes: i32,
}

/// Why a rules reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("cannot read rules file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("rules file {path} is invalid, keeping the rules in force: {source}")]
    Invalid {
        path: String,
        source: alert_rules::RulesError,
    },
    #[error("the rules stage has stopped")]
    Stopped,
}

impl RulesHandle {
    /// Ask the stage something and wait for its answer.
    pub async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, ReloadError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| ReloadError::Stopped)?;
        rx.await.map_err(|_| ReloadError::Stopped)
    }

    /// What the rules stage knows now about these households (in the order asked).
    pub async fn snapshot(
        &self,
        households: Vec<String>,
    ) -> Result<Vec<HouseholdSnapshot>, ReloadError> {
        self.ask(|reply| Command::Snapshot { households, reply })
            .await
    }

    /// Re-read the rules file and swap the rules in; an invalid file changes nothing.
    /// Returns the number of rules now in force.
    pub async fn reload(&self) -> Result<usize, ReloadError> {
        let rules = match &self.file {
            None => RuleSet::default_rules(),
            Some(path) => {
                let shown = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|source| ReloadError::Read {
                    path: shown.clone(),
                    source,
                })?;
                RuleSet::from_toml_str(&text).map_err(|source| ReloadError::Invalid {
                    path: shown,
                    source,
                })?
            }
        };
        let n = rules.rule_ids().len();
        self.ask(|reply| Command::Reload {
            rules: Box::new(rules),
            reply,
        })
        .await?;
        metrics::counter!("anxin_rules_reloaded_total").increment(1);
        tracing::info!(rules = n, "rules reloaded");
        Ok(n)
    }
}

pub struct RulesStage {
    pub engine: Engine,
    /// Observations fully handled (decisions applied): lets tests and operators see the
    /// stage keep up with ingest.
    pub processed: Arc<AtomicU64>,
    /// `processed` plus the inputs handed over and other work done, for the watchdog
    /// behind `/healthz` (a tick applying many decisions is progress too).
    pub progress: Arc<crate::health::Progress>,
    pub alarms: AlarmService,
    pub tick_every: Duration,
    pub save_every: Duration,
    /// Devices revoked while the hub runs: their messages still in flight are dropped.
    revoked: std::collections::HashSet<String>,
    /// Last messages, batteries and recent events, for the home view.
    live: crate::live::LiveLog,
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
        for (h, v) in alarms.store.household_villages().await? {
            engine.watch_household(&h, now);
            engine.set_area(&h, Some(&v));
        }
        for (h, d) in alarms.store.active_devices().await? {
            engine.watch_device(&h, &d, now);
        }
        let processed = Arc::new(AtomicU64::new(0));
        Ok(Self {
            engine,
            progress: Arc::new(crate::health::Progress::with_done(
                "rules",
                processed.clone(),
            )),
            processed,
            alarms,
            tick_every,
            save_every,
            revoked: Default::default(),
            live: Default::default(),
        })
    }

    /// Serve the lanes (priority first) and commands until ingest stops (both lanes
    /// closed) or `cancel`; tick at the engine's deadlines; save the engine's memory
    /// periodically and at the end.
    pub async fn run(
        mut self,
        mut priority: mpsc::Receiver<Input>,
        mut input: mpsc::Receiver<Input>,
        mut commands: mpsc::Receiver<Command>,
        cancel: CancellationToken,
    ) {
        // Saving is paced in real time: it bounds what a crash can lose, whatever the clock does.
        let mut last_save = tokio::time::Instant::now();
        let (mut priority_open, mut input_open, mut commands_open) = (true, true, true);
        while priority_open || input_open {
            let now = self.alarms.now();
            let tick_at = now + self.tick_every.as_millis() as i64;
            let wake = self
                .engine
                .next_deadline()
                .map_or(tick_at, |d| d.min(tick_at))
                .max(now);
            tokio::select! {
                biased;
                msg = priority.recv(), if priority_open => match msg {
                    Some(msg) => self.handle_counted(msg).await,
                    None => priority_open = false,
                },
                cmd = commands.recv(), if commands_open => match cmd {
                    Some(cmd) => self.command(cmd).await,
                    None => commands_open = false,
                },
                msg = input.recv(), if input_open => match msg {
                    Some(msg) => self.handle_counted(msg).await,
                    None => input_open = false,
                },
                _ = self.alarms.clock.sleep_until(wake) => self.tick(&mut priority).await,
                _ = cancel.cancelled() => break,
            }
            if last_save.elapsed() >= self.save_every {
                self.save().await;
                last_save = tokio::time::Instant::now();
            }
        }
        self.save().await;
    }

    async fn handle_counted(&mut self, msg: Input) {
        // Device events and status (connect / Last Will) messages apart, so
        // that event counts can be reconciled with what devices sent.
        let source = match msg.obs.signal {
            Signal::Online | Signal::Offline => "status",
            _ => "event",
        };
        self.handle(msg).await;
        self.processed.fetch_add(1, Ordering::Release);
        self.progress.finished();
        metrics::counter!("anxin_observations_processed_total", "source" => source).increment(1);
    }

    /// People's commands. The record is written first: if the store refuses, the
    /// engine is left as it was and the caller gets the error.
    async fn command(&mut self, cmd: Command) {
        let now = self.alarms.now();
        match cmd {
            Command::SetMode {
                household,
                kind,
                until,
                by,
                reply,
            } => {
                self.learn_household(&household).await;
                let r = self
                    .alarms
                    .store
                    .record_mode(&household, kind.as_str(), now, until, &by)
                    .await;
                if r.is_ok() {
                    let decisions = self.engine.set_mode(&household, kind, until, now);
                    self.apply_all(&decisions).await;
                }
                let _ = reply.send(r);
            }
            Command::EndMode {
                household,
                by,
                reply,
            } => {
                self.learn_household(&household).await;
                let r = self
                    .alarms
                    .store
                    .record_mode_end(&household, now, &by)
                    .await;
                if r.is_ok() {
                    let decisions = self.engine.end_mode(&household, now);
                    self.apply_all(&decisions).await;
                }
                let _ = reply.send(r);
            }
            Command::Visit {
                household,
                start,
                carer,
                by,
                reply,
            } => {
                self.learn_household(&household).await;
                let r = if start {
                    self.alarms
                        .store
                        .start_visit(&household, &carer, &by, now)
                        .await
                } else {
                    self.alarms
                        .store
                        .end_visit(&household, now)
                        .await
                        .map(|_| ())
                };
                if r.is_ok() {
                    let carer = (!carer.is_empty()).then_some(carer.as_str());
                    let decisions = self.engine.visit(&household, start, carer, now);
                    self.apply_all(&decisions).await;
                }
                let _ = reply.send(r);
            }
            Command::ForgetDevice {
                household,
                device,
                reply,
            } => {
                // Messages of the device still queued behind this command are dropped, so
                // they cannot bring it back into the engine.
                self.revoked.insert(device.clone());
                let decisions = self.engine.forget_device(&household, &device);
                self.apply_all(&decisions).await;
                let _ = reply.send(());
            }
            Command::WatchDevice {
                household,
                device,
                reply,
            } => {
                self.revoked.remove(&device);
                self.learn_household(&household).await;
                self.engine
                    .watch_device(&household, &device, self.alarms.now());
                let _ = reply.send(());
            }
            Command::Snapshot { households, reply } => {
                let _ = reply.send(households.iter().map(|h| self.snapshot(h)).collect());
            }
            Command::Reload { rules, reply } => {
                let decisions = self.engine.set_rules(*rules);
                self.apply_all(&decisions).await;
                let _ = reply.send(());
            }
        }
    }

    fn snapshot(&self, household: &str) -> HouseholdSnapshot {
        let state = self.engine.state();
        let live = self.live.view(household);
        let devices = state
            .device_health(household)
            .into_iter()
            .map(|d| {
                let l = live.devices.get(&d.device);
                DeviceSnapshot {
                    battery: l.and_then(|l| l.battery),
                    last_signal: l.and_then(|l| l.last_signal),
                    id: d.device,
                    last_seen: d.last_seen,
                    offline_since: d.offline_since,
                }
            })
            .collect();
        HouseholdSnapshot {
            household: household.to_owned(),
            last_activity: state.last_activity(household),
            mode: state
                .mode(household)
                .map(|m| (m.kind.as_str().to_owned(), m.until)),
            visit_since: state.visit_since(household),
            unreachable_since: state.unreachable_since(household),
            devices,
            recent: live.recent,
        }
    }

    async fn apply_all(&self, decisions: &[Decision]) {
        for d in decisions {
            self.apply_or_retry(d).await;
        }
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

    /// Fire the engine's due timers. A storm (hundreds of devices going offline at once)
    /// can yield many decisions: critical reports that arrive meanwhile are served
    /// between them, not after them.
    async fn tick(&mut self, priority: &mut mpsc::Receiver<Input>) {
        let now = self.alarms.now();
        for d in self.engine.tick(now) {
            self.apply_or_retry(&d).await;
            self.progress.worked();
            while let Ok(msg) = priority.try_recv() {
                self.handle_counted(msg).await;
            }
        }
    }

    /// Apply a decision that has no device waiting for it. The engine has already moved
    /// on (it will not raise the same condition again), so a transient store failure must
    /// not lose the alarm: retry with backoff; only a persistent failure is given up, loudly.
    async fn apply_or_retry(&self, d: &Decision) {
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
                    tracing::error!(error = %e, rule = %d.rule_id, household = ?d.household, village = ?d.village, "decision LOST after retries");
                }
            }
        }
    }

    /// Keep the care record: visits and modes reported by devices (board and app
    /// actions are recorded by their commands).
    async fn record_care(&self, obs: &Observation) {
        let store = &self.alarms.store;
        let source = format!("device:{}", obs.device);
        let r = match &obs.signal {
            Signal::Visit { start: true, carer } => {
                store
                    .start_visit(
                        &obs.household,
                        carer.as_deref().unwrap_or_default(),
                        &source,
                        obs.at,
                    )
                    .await
            }
            Signal::Visit { start: false, .. } => {
                store.end_visit(&obs.household, obs.at).await.map(|_| ())
            }
            Signal::Away { away: true, .. } => match self.engine.state().mode(&obs.household) {
                Some(m) => {
                    store
                        .record_mode(&obs.household, m.kind.as_str(), m.since, m.until, &source)
                        .await
                }
                None => Ok(()),
            },
            Signal::Away { away: false, .. } => {
                store.record_mode_end(&obs.household, obs.at, &source).await
            }
            _ => Ok(()),
        };
        if let Err(e) = r {
            tracing::error!(error = %e, device = %obs.device, "recording a visit or mode failed");
        }
    }

    /// A household first heard of after start-up (imported while running): watch it and
    /// tell the engine its village, so it takes part in outage grouping.
    async fn learn_household(&mut self, household: &str) {
        if self.engine.state().knows_household(household) {
            return;
        }
        self.engine.watch_household(household, self.alarms.now());
        match self.alarms.store.household_village(household).await {
            Ok(Some(v)) => self.engine.set_area(household, Some(&v)),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, household, "looking up a household's village failed")
            }
        }
    }

    async fn handle(&mut self, msg: Input) {
        let Input { obs, critical } = msg;
        if self.revoked.contains(&obs.device) {
            tracing::info!(device = %obs.device, "message of a revoked device dropped");
            return;
        }
        self.learn_household(&obs.household).await;
        self.live.record(&obs);
        let Some(critical) = critical else {
            let now = self.alarms.now();
            let decisions = self.engine.observe(&obs, now);
            self.apply_all(&decisions).await;
            if matches!(obs.signal, Signal::Visit { .. } | Signal::Away { .. }) {
                self.record_care(&obs).await;
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
