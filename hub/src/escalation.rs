//! The escalation scheduler. The database is the truth (each alarm row carries its
//! deadlines); this task only decides *when to look*: it sleeps until the earliest
//! deadline in the store, or until woken because a new alarm was raised. A restarted hub
//! therefore continues every escalation where it stopped.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::alarms::AlarmService;

/// Longest the scheduler sleeps without re-reading the store (guards against a missed wake-up).
const MAX_SLEEP_MS: i64 = 30_000;

pub async fn run(alarms: AlarmService, cancel: CancellationToken) {
    loop {
        if let Err(e) = alarms.run_due().await {
            tracing::error!(error = %e, "escalation pass failed; retrying");
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
            }
        }
        let now = alarms.now();
        let next = match alarms.store.next_deadline().await {
            Ok(Some(t)) => t.min(now + MAX_SLEEP_MS),
            Ok(None) => now + MAX_SLEEP_MS,
            Err(e) => {
                tracing::error!(error = %e, "reading next escalation deadline failed");
                now + 1_000
            }
        };
        let woken = alarms.escalation_wake.notified();
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = alarms.clock.sleep_until(next) => {}
            _ = woken => {}
        }
    }
}
