//! Is the pipeline making progress? A watchdog behind `/healthz`.
//!
//! Each watched stage (ingest, rules) keeps a [`Progress`]: how many items were handed to
//! it, how many it finished, and a counter of any work it completed (a rules-stage tick
//! that applies thousands of decisions is work too). A stage that has items waiting and
//! completes nothing for `[health] stall_after_secs` is **stalled**: `/healthz` answers
//! 503 naming it, and the stall is logged and counted once
//! (`anxin_pipeline_stalls_total{stage}`), so an operator's monitoring pages someone.
//! An idle stage (nothing waiting) is never stalled, however long it is quiet.
//!
//! Why: a deadlock in ingest once stopped every alarm for good while `/healthz` kept
//! answering `ok` (issue 14, finding 2). The watchdog measures real time (the hub's
//! clock may be simulated) and never touches the stages themselves.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// One stage's progress counters. Cheap to bump from the stage's hot path.
#[derive(Debug)]
pub struct Progress {
    stage: &'static str,
    /// Items handed to the stage.
    accepted: AtomicU64,
    /// Items it finished (shared with whoever else reads it, e.g. the rules stage's
    /// `processed`).
    done: Arc<AtomicU64>,
    /// Any completed unit of work: finished items and other work (decisions of a tick).
    activity: AtomicU64,
}

impl Progress {
    pub fn new(stage: &'static str) -> Self {
        Self::with_done(stage, Arc::new(AtomicU64::new(0)))
    }

    /// A stage whose finished-items counter already exists.
    pub fn with_done(stage: &'static str, done: Arc<AtomicU64>) -> Self {
        Self {
            stage,
            accepted: AtomicU64::new(0),
            done,
            activity: AtomicU64::new(0),
        }
    }

    /// An item was handed to the stage.
    pub fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// The stage finished an item (its `done` counter is bumped by the caller when it is
    /// shared; see [`Progress::with_done`]).
    pub fn finished(&self) {
        self.activity.fetch_add(1, Ordering::Relaxed);
    }

    /// The stage finished an item whose `done` counter is this one's own.
    pub fn finished_own(&self) {
        self.done.fetch_add(1, Ordering::Release);
        self.finished();
    }

    /// The stage completed some other work.
    pub fn worked(&self) {
        self.activity.fetch_add(1, Ordering::Relaxed);
    }

    /// Items waiting (handed over, not finished).
    pub fn pending(&self) -> u64 {
        let accepted = self.accepted.load(Ordering::Relaxed);
        accepted.saturating_sub(self.done.load(Ordering::Acquire))
    }

    fn activity(&self) -> u64 {
        self.activity.load(Ordering::Relaxed)
    }
}

/// What the watchdog last saw of one stage.
#[derive(Debug)]
struct Watch {
    progress: Arc<Progress>,
    /// `activity` at the last change, and when that change was seen.
    last_activity: u64,
    since: Instant,
    stalled: bool,
}

/// The watched stages and their verdicts. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Health {
    stall_after: Duration,
    watches: Arc<Mutex<Vec<Watch>>>,
}

/// One stage's state, as `/healthz` reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StageHealth {
    pub stage: &'static str,
    pub stalled: bool,
    pub pending: u64,
}

impl Health {
    pub fn new(stall_after: Duration, stages: &[Arc<Progress>]) -> Self {
        let now = Instant::now();
        let watches = stages
            .iter()
            .map(|p| Watch {
                progress: p.clone(),
                last_activity: p.activity(),
                since: now,
                stalled: false,
            })
            .collect();
        Self {
            stall_after,
            watches: Arc::new(Mutex::new(watches)),
        }
    }

    /// Look at every stage at `now`; log and count a stall when it begins and when it ends.
    pub fn check(&self, now: Instant) {
        let Ok(mut watches) = self.watches.lock() else {
            return;
        };
        for w in watches.iter_mut() {
            let activity = w.progress.activity();
            let pending = w.progress.pending();
            if activity != w.last_activity || pending == 0 {
                if w.stalled {
                    tracing::warn!(
                        stage = w.progress.stage,
                        pending,
                        "pipeline stage making progress again"
                    );
                }
                w.last_activity = activity;
                w.since = now;
                w.stalled = false;
                continue;
            }
            if !w.stalled && now.saturating_duration_since(w.since) >= self.stall_after {
                w.stalled = true;
                metrics::counter!("anxin_pipeline_stalls_total", "stage" => w.progress.stage)
                    .increment(1);
                tracing::error!(
                    stage = w.progress.stage,
                    pending,
                    stalled_secs = self.stall_after.as_secs(),
                    "PIPELINE STALLED: a stage has work waiting and finishes none of it; alarms may not be raised"
                );
            }
        }
    }

    /// Every stage, as last checked.
    pub fn stages(&self) -> Vec<StageHealth> {
        let Ok(watches) = self.watches.lock() else {
            return Vec::new();
        };
        watches
            .iter()
            .map(|w| StageHealth {
                stage: w.progress.stage,
                stalled: w.stalled,
                pending: w.progress.pending(),
            })
            .collect()
    }

    /// True when no stage is stalled.
    pub fn is_healthy(&self) -> bool {
        self.stages().iter().all(|s| !s.stalled)
    }

    /// Check every second until `cancel`. The gauge `anxin_pipeline_stalled` is 1 while
    /// any stage is stalled.
    pub async fn watch(self, cancel: CancellationToken) {
        let mut every = tokio::time::interval(Duration::from_secs(1).min(self.stall_after));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = every.tick() => {}
            }
            self.check(Instant::now());
            for s in self.stages() {
                metrics::gauge!("anxin_pipeline_pending", "stage" => s.stage).set(s.pending as f64);
                metrics::gauge!("anxin_pipeline_stalled", "stage" => s.stage).set(if s.stalled {
                    1.0
                } else {
                    0.0
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: Duration = Duration::from_secs(20);

    fn one_stage() -> (Health, Arc<Progress>, Instant) {
        let p = Arc::new(Progress::new("ingest"));
        (
            Health::new(AFTER, std::slice::from_ref(&p)),
            p,
            Instant::now(),
        )
    }

    #[test]
    fn a_stage_with_work_waiting_and_no_progress_is_stalled_after_the_limit() {
        let (h, p, t0) = one_stage();
        p.accepted();
        p.accepted();
        h.check(t0 + Duration::from_secs(19));
        assert!(h.is_healthy(), "not yet");
        h.check(t0 + AFTER);
        assert!(!h.is_healthy());
        assert_eq!(
            h.stages(),
            vec![StageHealth {
                stage: "ingest",
                stalled: true,
                pending: 2
            }]
        );
        // It moves again: healthy at the next look, and the clock starts afresh.
        p.finished_own();
        let t1 = t0 + AFTER + Duration::from_secs(1);
        h.check(t1);
        assert!(h.is_healthy());
        h.check(t1 + Duration::from_secs(19));
        assert!(
            h.is_healthy(),
            "one item still waits, but progress was recent"
        );
        h.check(t1 + AFTER);
        assert!(!h.is_healthy(), "and then nothing again");
    }

    #[test]
    fn an_idle_stage_is_never_stalled() {
        let (h, p, t0) = one_stage();
        h.check(t0 + Duration::from_secs(3600));
        assert!(h.is_healthy());
        p.accepted();
        p.finished_own();
        h.check(t0 + Duration::from_secs(7200));
        assert!(h.is_healthy());
    }

    #[test]
    fn other_work_counts_as_progress() {
        // The rules stage applying a long tick's decisions while inputs wait is busy, not stuck.
        let done = Arc::new(AtomicU64::new(0));
        let p = Arc::new(Progress::with_done("rules", done.clone()));
        let h = Health::new(AFTER, std::slice::from_ref(&p));
        let t0 = Instant::now();
        p.accepted();
        for s in 1..=60 {
            p.worked();
            h.check(t0 + Duration::from_secs(s));
        }
        assert!(h.is_healthy());
        // A shared `done` counter is what `pending` reads.
        done.fetch_add(1, Ordering::Release);
        p.finished();
        assert_eq!(p.pending(), 0);
    }
}
