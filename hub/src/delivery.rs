//! Notification delivery beyond the board: SMS, voice calls and the district platform's
//! webhook, with retries, back-off and fallback to a contact's next channel.
//!
//! The life of a delivery:
//! 1. A `notified` step is committed together with one **delivery row** per recipient
//!    and channel it needs (`Store::record_notified`; the first channel of the contact's
//!    list for the alarm's severity). A restart therefore loses no notification.
//! 2. The worker ([`run`]) claims due rows (`pending`, `next_attempt_at <= now`), marking
//!    each `sending` with its attempt number *before* calling the provider, and sends
//!    them through the [`Channel`] of their kind.
//! 3. The outcome is committed with the attempt row: `sent` (provider id), a retry at a
//!    backed-off time with jitter (a provider's `Retry-After` is honoured), or, after
//!    [`MAX_ATTEMPTS`] tries or a permanent refusal, `failed` — and then a delivery on
//!    the contact's next channel is created.
//! 4. Acknowledging or resolving the alarm cancels what is still pending.
//!
//! Exactly-once: a pending retry survives a restart and is sent once. The one window that
//! cannot be closed without provider support is a crash *during* the provider call: the
//! row is still `sending`, the provider may or may not have accepted it; at start such a
//! row is tried again (an SMS may then arrive twice — preferred to none for an alarm).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use alert_rules::{Millis, Severity};
use futures::future::BoxFuture;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::store::{Delivery, Store};

/// Tries per channel before the contact's next channel is used.
pub const MAX_ATTEMPTS: i64 = 5;
/// First retry delay; doubles per attempt up to [`MAX_BACKOFF`], then jittered.
pub const BASE_BACKOFF: Duration = Duration::from_secs(5);
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A provider's `Retry-After` is honoured up to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
/// Sends in flight at once.
const CONCURRENCY: usize = 8;
/// Longest the worker sleeps without looking at the store (a missed wake-up).
const IDLE_RECHECK: Duration = Duration::from_secs(30);

/// A way to reach someone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    Sms,
    Voice,
    Webhook,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Sms => "sms",
            ChannelKind::Voice => "voice",
            ChannelKind::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Option<ChannelKind> {
        match s {
            "sms" => Some(ChannelKind::Sms),
            "voice" => Some(ChannelKind::Voice),
            "webhook" => Some(ChannelKind::Webhook),
            _ => None,
        }
    }
}

/// A contact's channels for one severity, in order, from the `contacts.channels` text
/// (`critical=voice+sms,sms;warning=sms;info=`): each step of the list is one channel or
/// several joined by `+` (sent at once), and the next step is used when the previous one
/// failed. `None` is the default (critical: voice, then SMS; warning: SMS; info: none,
/// the board only). Only `sms` and `voice` are contact channels; an unknown name is an
/// error (the import reports it on its line).
pub fn contact_channels(
    pref: Option<&str>,
    severity: Severity,
) -> Result<Vec<Vec<ChannelKind>>, String> {
    let default = || match severity {
        Severity::Critical => vec![vec![ChannelKind::Voice], vec![ChannelKind::Sms]],
        Severity::Warning => vec![vec![ChannelKind::Sms]],
        Severity::Info => vec![],
    };
    let Some(pref) = pref.map(str::trim).filter(|p| !p.is_empty()) else {
        return Ok(default());
    };
    let mut found = None;
    for part in pref.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (sev, list) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?}: expected severity=channel,channel"))?;
        let sev = sev.trim();
        if !["critical", "warning", "info"].contains(&sev) {
            return Err(format!(
                "{sev:?} is not a severity (critical, warning, info)"
            ));
        }
        let mut steps: Vec<Vec<ChannelKind>> = Vec::new();
        for step in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let mut kinds = Vec::new();
            for name in step.split('+').map(str::trim) {
                match ChannelKind::parse(name) {
                    Some(k @ (ChannelKind::Sms | ChannelKind::Voice))
                        if !kinds.contains(&k) && !steps.iter().any(|s| s.contains(&k)) =>
                    {
                        kinds.push(k)
                    }
                    Some(ChannelKind::Sms | ChannelKind::Voice) => {
                        return Err(format!("{name:?} is listed twice for {sev}"))
                    }
                    _ => return Err(format!("{name:?} is not a contact channel (sms, voice)")),
                }
            }
            steps.push(kinds);
        }
        if sev == severity.as_str() {
            found = Some(steps);
        }
    }
    Ok(found.unwrap_or_else(default))
}

/// What a provider said when it accepted a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub provider_id: Option<String>,
    pub status: Option<String>,
}

/// Why a send did not go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    /// Worth trying again (5xx, 429, timeouts, network); false: a bad number, a refusal.
    pub retryable: bool,
    /// The provider asked to wait this long (429 `Retry-After`).
    pub retry_after: Option<Duration>,
    pub message: String,
}

/// One delivery channel (SMS, voice, webhook). Implementations only talk to their
/// provider; the worker does the bookkeeping.
pub trait Channel: Send + Sync {
    fn kind(&self) -> ChannelKind;
    fn send<'a>(&'a self, job: &'a Delivery) -> BoxFuture<'a, Result<Sent, SendError>>;
}

/// The channels configured in this hub.
#[derive(Clone, Default)]
pub struct Channels {
    by_kind: HashMap<ChannelKind, Arc<dyn Channel>>,
}

impl Channels {
    pub fn with(mut self, channel: Arc<dyn Channel>) -> Self {
        self.by_kind.insert(channel.kind(), channel);
        self
    }

    pub fn get(&self, kind: ChannelKind) -> Option<&Arc<dyn Channel>> {
        self.by_kind.get(&kind)
    }

    /// The kinds deliveries are planned for (a kind not configured is skipped, so
    /// nothing waits for a channel that does not exist).
    pub fn kinds(&self) -> Vec<ChannelKind> {
        self.by_kind.keys().copied().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.by_kind.is_empty()
    }
}

/// The delay before attempt `attempt + 1`, after `attempt` failed (1-based): exponential
/// from [`BASE_BACKOFF`] up to [`MAX_BACKOFF`], with "equal jitter" (half fixed, half
/// random) so that many deliveries failing together do not retry together; a
/// `Retry-After` replaces it (capped). `jitter` is a number in [0, 1).
pub fn backoff(attempt: i64, retry_after: Option<Duration>, jitter: f64) -> Duration {
    if let Some(ra) = retry_after {
        return ra.min(MAX_RETRY_AFTER);
    }
    let exp = u32::try_from(attempt.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
    let full = BASE_BACKOFF
        .saturating_mul(1u32 << exp)
        .min(MAX_BACKOFF)
        .as_secs_f64();
    Duration::from_secs_f64(full / 2.0 + full / 2.0 * jitter.clamp(0.0, 1.0))
}

/// The delivery worker: sends due deliveries until `cancel`. `wake` is notified when new
/// deliveries are planned.
pub async fn run(
    store: Store,
    clock: SharedClock,
    channels: Channels,
    wake: Arc<Notify>,
    bus: crate::notify::Bus,
    cancel: CancellationToken,
) {
    match store.recover_interrupted_deliveries(clock.now()).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            deliveries = n,
            "deliveries interrupted by a stop are tried again (a provider may have accepted them already)"
        ),
        Err(e) => tracing::error!(error = %e, "recovering interrupted deliveries failed"),
    }
    let gate = Arc::new(Semaphore::new(CONCURRENCY));
    let mut inflight = tokio::task::JoinSet::new();
    loop {
        let woken = wake.notified();
        let now = clock.now();
        let free = gate.available_permits().max(1);
        // Look before taking the write lock: alarms share the one SQLite writer, and most
        // wake-ups find nothing due.
        let due = matches!(store.next_delivery_due().await, Ok(Some(t)) if t <= now);
        let claimed = if due {
            store.claim_due_deliveries(now, free as i64).await
        } else {
            Ok(Vec::new())
        };
        match claimed {
            Ok(jobs) => {
                for job in jobs {
                    let Ok(permit) = gate.clone().acquire_owned().await else {
                        return;
                    };
                    let (store, clock, channels, wake, bus) = (
                        store.clone(),
                        clock.clone(),
                        channels.clone(),
                        wake.clone(),
                        bus.clone(),
                    );
                    inflight.spawn(async move {
                        let alarm = job.alarm_id.clone();
                        deliver(&store, &clock, &channels, job).await;
                        bus.delivery_changed(&alarm);
                        drop(permit);
                        wake.notify_one();
                    });
                }
            }
            Err(e) => tracing::error!(error = %e, "reading due deliveries failed"),
        }
        while inflight.try_join_next().is_some() {}
        let next = store.next_delivery_due().await.unwrap_or(None);
        let recheck = clock.now() + IDLE_RECHECK.as_millis() as Millis;
        let until = next.map_or(recheck, |n| n.min(recheck));
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = woken => {}
            _ = clock.sleep_until(until) => {}
            // A send finished: its permit is free and a fallback may be due.
            Some(_) = inflight.join_next(), if !inflight.is_empty() => {}
        }
    }
    // Let sends in flight finish their bookkeeping (each is bounded by its timeout).
    while inflight.join_next().await.is_some() {}
}

/// Send one claimed delivery and record the outcome.
async fn deliver(store: &Store, clock: &SharedClock, channels: &Channels, job: Delivery) {
    let kind = ChannelKind::parse(&job.channel);
    let result = match kind.and_then(|k| channels.get(k)) {
        Some(ch) => ch.send(&job).await,
        None => Err(SendError {
            retryable: false,
            retry_after: None,
            message: format!("channel {} is not configured", job.channel),
        }),
    };
    let now = clock.now();
    let outcome = match result {
        Ok(sent) => {
            metrics::counter!("anxin_deliveries_total", "channel" => job.channel.clone(), "outcome" => "sent").increment(1);
            store.delivery_sent(&job, &sent, now).await
        }
        Err(e) if e.retryable && job.attempts < MAX_ATTEMPTS => {
            let wait = backoff(job.attempts, e.retry_after, rand::random::<f64>());
            metrics::counter!("anxin_deliveries_total", "channel" => job.channel.clone(), "outcome" => "retry").increment(1);
            tracing::info!(delivery = %job.id, alarm = %job.alarm_id, channel = %job.channel, attempt = job.attempts, wait_ms = wait.as_millis() as u64, error = %e.message, "delivery failed; retrying");
            store
                .delivery_retry(&job, &e.message, now + wait.as_millis() as Millis, now)
                .await
        }
        Err(e) => {
            metrics::counter!("anxin_deliveries_total", "channel" => job.channel.clone(), "outcome" => "failed").increment(1);
            tracing::warn!(delivery = %job.id, alarm = %job.alarm_id, contact = %job.contact_id, channel = %job.channel, attempt = job.attempts, error = %e.message, "delivery failed; trying the contact's next channel");
            store.delivery_failed(&job, &e.message, now).await
        }
    };
    if let Err(e) = outcome {
        tracing::error!(error = %e, delivery = %job.id, "recording a delivery outcome failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_channels_follow_the_preference_or_the_default() {
        use ChannelKind::*;
        assert_eq!(
            contact_channels(None, Severity::Critical),
            Ok(vec![vec![Voice], vec![Sms]])
        );
        assert_eq!(
            contact_channels(None, Severity::Warning),
            Ok(vec![vec![Sms]])
        );
        assert_eq!(contact_channels(Some(" "), Severity::Info), Ok(vec![]));
        let p = Some("critical=sms,voice; warning=");
        assert_eq!(
            contact_channels(p, Severity::Critical),
            Ok(vec![vec![Sms], vec![Voice]])
        );
        assert_eq!(contact_channels(p, Severity::Warning), Ok(vec![]));
        assert_eq!(
            contact_channels(p, Severity::Info),
            Ok(vec![]),
            "not named: default"
        );
        assert_eq!(
            contact_channels(Some("critical=voice+sms"), Severity::Critical),
            Ok(vec![vec![Voice, Sms]]),
            "both at once"
        );
        for (bad, why) in [
            ("critical=fax", "not a contact channel"),
            ("critical=webhook", "not a contact channel"),
            ("urgent=sms", "not a severity"),
            ("critical sms", "expected severity="),
            ("critical=sms,sms", "listed twice"),
            ("critical=voice+sms,sms", "listed twice"),
            ("critical=voice+", "not a contact channel"),
        ] {
            let e = contact_channels(Some(bad), Severity::Critical).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn backoff_doubles_is_capped_jittered_and_yields_to_retry_after() {
        assert_eq!(backoff(1, None, 0.0), Duration::from_millis(2500));
        assert_eq!(backoff(1, None, 1.0), Duration::from_secs(5));
        assert_eq!(backoff(2, None, 1.0), Duration::from_secs(10));
        assert_eq!(backoff(3, None, 0.5), Duration::from_millis(15_000));
        assert_eq!(backoff(30, None, 1.0), MAX_BACKOFF, "capped");
        assert_eq!(backoff(30, None, 0.0), MAX_BACKOFF / 2);
        assert_eq!(
            backoff(1, Some(Duration::from_secs(7)), 0.9),
            Duration::from_secs(7)
        );
        assert_eq!(
            backoff(1, Some(Duration::from_secs(86_400)), 0.9),
            MAX_RETRY_AFTER
        );
    }
}
