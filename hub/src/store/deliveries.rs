//! Delivery rows and their attempts (see `crate::delivery` for the life of a delivery).

use alert_rules::{Millis, Severity};
use serde::Serialize;
use sqlx::{Row, Sqlite, Transaction};

use super::{Result, Store};
use crate::delivery::{contact_channels, ChannelKind, Sent};

/// A delivery as the worker sends it: the row, plus what the message needs (ids, the
/// alarm's title and severity, where it is, the contact's phone and language).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, PartialEq)]
pub struct Delivery {
    pub id: String,
    pub alarm_id: String,
    pub step_seq: i64,
    pub contact_id: String,
    pub channel: String,
    pub channel_index: i64,
    pub state: String,
    /// Attempts made, including the one being made now (for a claimed delivery).
    pub attempts: i64,
    pub next_attempt_at: Option<i64>,
    pub provider_id: Option<String>,
    pub status: Option<String>,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    // What the message needs (not stored on the row).
    #[serde(skip)]
    pub phone: Option<String>,
    #[serde(skip)]
    pub language: Option<String>,
    #[serde(skip)]
    pub severity: String,
    #[serde(skip)]
    pub title: String,
    #[serde(skip)]
    pub household_id: Option<String>,
    #[serde(skip)]
    pub village_name: Option<String>,
    #[serde(skip)]
    pub address: Option<String>,
    #[serde(skip)]
    pub alarm_state: String,
    /// The step that asked for it: `notified` (the alarm) or `acknowledged`/`en_route`/
    /// `on_site` (who took it), and by whom.
    #[serde(skip)]
    pub step_kind: String,
    #[serde(skip)]
    pub step_actor: Option<String>,
    /// The household's (first) elder, for calls only.
    #[serde(skip)]
    pub elder_name: Option<String>,
}

const DELIVERY_SELECT: &str = "SELECT d.id, d.alarm_id, d.step_seq, d.contact_id, d.channel, d.channel_index, d.state, d.attempts, d.next_attempt_at, d.provider_id, d.status, d.error, d.created_at, d.updated_at, COALESCE(c.phone, el.phone) AS phone, c.language, a.severity, a.title, a.household_id, v.name AS village_name, h.address, a.state AS alarm_state, t.step AS step_kind, t.actor AS step_actor, (SELECT e.name FROM elders e WHERE e.household_id = a.household_id ORDER BY e.id LIMIT 1) AS elder_name FROM deliveries d JOIN alarms a ON a.id = d.alarm_id JOIN alarm_timeline t ON t.seq = d.step_seq LEFT JOIN contacts c ON c.id = d.contact_id LEFT JOIN elders el ON d.contact_id = 'elder:' || el.id LEFT JOIN villages v ON v.id = a.village_id LEFT JOIN households h ON h.id = a.household_id";

fn severity_of(s: &str) -> Severity {
    match s {
        "critical" => Severity::Critical,
        "warning" => Severity::Warning,
        _ => Severity::Info,
    }
}

/// Plan the deliveries a `notified` step asks for, in its transaction: each recipient's
/// first configured channel for the alarm's severity (a contact without a phone gets
/// none: the board only), and the district platform's webhook once per step.
pub(super) async fn plan(
    tx: &mut Transaction<'static, Sqlite>,
    alarm_id: &str,
    step_seq: i64,
    recipients: &[String],
    enabled: &[ChannelKind],
    now: Millis,
) -> Result<usize> {
    if enabled.is_empty() {
        return Ok(0);
    }
    let severity: String = sqlx::query_scalar("SELECT severity FROM alarms WHERE id = $1")
        .bind(alarm_id)
        .fetch_one(&mut **tx)
        .await?;
    let severity = severity_of(&severity);
    let mut planned = 0;
    for contact in recipients {
        let row = sqlx::query("SELECT phone, channels FROM contacts WHERE id = $1")
            .bind(contact)
            .fetch_optional(&mut **tx)
            .await?;
        let Some(row) = row else { continue };
        let phone: Option<String> = row.try_get("phone")?;
        if phone.as_deref().is_none_or(str::is_empty) {
            continue;
        }
        let pref: Option<String> = row.try_get("channels")?;
        // A preference the import accepted always parses; a bad one means the default.
        let kinds = contact_channels(pref.as_deref(), severity)
            .or_else(|_| contact_channels(None, severity))
            .unwrap_or_default();
        // The first step with a configured channel: all of its channels at once.
        if let Some((index, step)) = kinds
            .iter()
            .enumerate()
            .find(|(_, step)| step.iter().any(|k| enabled.contains(k)))
        {
            for kind in step.iter().filter(|k| enabled.contains(k)) {
                planned +=
                    insert(tx, alarm_id, step_seq, contact, *kind, index as i64, now).await?;
            }
        }
    }
    if enabled.contains(&ChannelKind::Webhook) {
        planned += insert(
            tx,
            alarm_id,
            step_seq,
            "webhook",
            ChannelKind::Webhook,
            0,
            now,
        )
        .await?;
    }
    Ok(planned)
}

async fn insert(
    tx: &mut Transaction<'static, Sqlite>,
    alarm_id: &str,
    step_seq: i64,
    contact: &str,
    kind: ChannelKind,
    index: i64,
    now: Millis,
) -> Result<usize> {
    let done = sqlx::query("INSERT INTO deliveries (id, alarm_id, step_seq, contact_id, channel, channel_index, state, next_attempt_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7, $7) ON CONFLICT DO NOTHING")
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(alarm_id)
        .bind(step_seq)
        .bind(contact)
        .bind(kind.as_str())
        .bind(index)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() as usize)
}

impl Store {
    /// Claim up to `limit` due deliveries: each becomes `sending` with its attempt count
    /// raised and an attempt row written, in one transaction, before anything is sent.
    pub async fn claim_due_deliveries(&self, now: Millis, limit: i64) -> Result<Vec<Delivery>> {
        let mut tx = self.begin_write().await?;
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM deliveries WHERE state = 'pending' AND next_attempt_at <= $1 ORDER BY next_attempt_at, created_at LIMIT $2")
            .bind(now)
            .bind(limit.max(1))
            .fetch_all(&mut *tx)
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            sqlx::query("UPDATE deliveries SET state = 'sending', attempts = attempts + 1, next_attempt_at = NULL, updated_at = $2 WHERE id = $1")
                .bind(&id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO delivery_attempts (delivery_id, attempt, started_at, outcome) SELECT id, attempts, $2, 'sending' FROM deliveries WHERE id = $1")
                .bind(&id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let d: Delivery = sqlx::query_as(&format!("{DELIVERY_SELECT} WHERE d.id = $1"))
                .bind(&id)
                .fetch_one(&mut *tx)
                .await?;
            out.push(d);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Deliveries left `sending` by a stop are made due again (attempt recorded as
    /// `interrupted`).
    pub async fn recover_interrupted_deliveries(&self, now: Millis) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE delivery_attempts SET outcome = 'interrupted', finished_at = $1 WHERE outcome = 'sending'")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("UPDATE deliveries SET state = 'pending', next_attempt_at = $1, updated_at = $1 WHERE state = 'sending'")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    async fn finish_attempt(
        tx: &mut Transaction<'static, Sqlite>,
        d: &Delivery,
        outcome: &str,
        sent: Option<&Sent>,
        error: Option<&str>,
        now: Millis,
    ) -> Result<()> {
        sqlx::query("UPDATE delivery_attempts SET outcome = $3, finished_at = $4, provider_id = $5, status = $6, error = $7 WHERE delivery_id = $1 AND attempt = $2")
            .bind(&d.id)
            .bind(d.attempts)
            .bind(outcome)
            .bind(now)
            .bind(sent.and_then(|s| s.provider_id.as_deref()))
            .bind(sent.and_then(|s| s.status.as_deref()))
            .bind(error)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// The provider accepted it.
    pub async fn delivery_sent(&self, d: &Delivery, sent: &Sent, now: Millis) -> Result<()> {
        let mut tx = self.begin_write().await?;
        Self::finish_attempt(&mut tx, d, "sent", Some(sent), None, now).await?;
        sqlx::query("UPDATE deliveries SET state = 'sent', provider_id = $2, status = $3, error = NULL, updated_at = $4 WHERE id = $1")
            .bind(&d.id)
            .bind(&sent.provider_id)
            .bind(&sent.status)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A retryable failure: due again at `at`.
    pub async fn delivery_retry(
        &self,
        d: &Delivery,
        error: &str,
        at: Millis,
        now: Millis,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        Self::finish_attempt(&mut tx, d, "retry", None, Some(error), now).await?;
        sqlx::query("UPDATE deliveries SET state = 'pending', next_attempt_at = $2, error = $3, updated_at = $4 WHERE id = $1 AND state = 'sending'")
            .bind(&d.id)
            .bind(at)
            .bind(error)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Given up on this channel: the contact's next channel (if any, and if the alarm
    /// is still unacknowledged) gets a delivery of its own, due now.
    pub async fn delivery_failed(&self, d: &Delivery, error: &str, now: Millis) -> Result<()> {
        let mut tx = self.begin_write().await?;
        Self::finish_attempt(&mut tx, d, "failed", None, Some(error), now).await?;
        sqlx::query(
            "UPDATE deliveries SET state = 'failed', error = $2, updated_at = $3 WHERE id = $1",
        )
        .bind(&d.id)
        .bind(error)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let open = matches!(d.alarm_state.as_str(), "raised" | "notified");
        // The webhook has no other channel; the elder's "are you all right?" call is not
        // followed by an SMS: its deadline tells the contacts.
        if open && d.contact_id != "webhook" && !d.contact_id.starts_with("elder:") {
            let pref: Option<String> =
                sqlx::query_scalar("SELECT channels FROM contacts WHERE id = $1")
                    .bind(&d.contact_id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .flatten();
            let kinds =
                contact_channels(pref.as_deref(), severity_of(&d.severity)).unwrap_or_default();
            let next = usize::try_from(d.channel_index + 1).unwrap_or(usize::MAX);
            // The next step of the list, all of its channels at once.
            for kind in kinds.get(next).into_iter().flatten() {
                insert(
                    &mut tx,
                    &d.alarm_id,
                    d.step_seq,
                    &d.contact_id,
                    *kind,
                    next as i64,
                    now,
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Acknowledged or resolved: the alarm notifications still pending are not sent (the
    /// webhook still gets its posts: the platform keeps its own record; "taken by" SMS
    /// still go).
    pub(super) async fn cancel_pending_deliveries(
        tx: &mut Transaction<'static, Sqlite>,
        alarm_id: &str,
        now: Millis,
    ) -> Result<u64> {
        let done = sqlx::query("UPDATE deliveries SET state = 'cancelled', next_attempt_at = NULL, updated_at = $2 WHERE alarm_id = $1 AND state = 'pending' AND channel <> 'webhook' AND step_seq IN (SELECT seq FROM alarm_timeline WHERE alarm_id = $1 AND step = 'notified')")
            .bind(alarm_id)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        Ok(done.rows_affected())
    }

    /// When the next pending delivery is due.
    pub async fn next_delivery_due(&self) -> Result<Option<Millis>> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM deliveries WHERE state = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Every delivery of an alarm, oldest first.
    pub async fn deliveries(&self, alarm_id: &str) -> Result<Vec<Delivery>> {
        Ok(sqlx::query_as(&format!(
            "{DELIVERY_SELECT} WHERE d.alarm_id = $1 ORDER BY d.created_at, d.id"
        ))
        .bind(alarm_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The attempts of one delivery: (attempt, outcome, provider id, status, error).
    pub async fn delivery_attempts(&self, delivery_id: &str) -> Result<Vec<DeliveryAttempt>> {
        Ok(sqlx::query_as("SELECT attempt, started_at, finished_at, outcome, provider_id, status, error FROM delivery_attempts WHERE delivery_id = $1 ORDER BY attempt")
            .bind(delivery_id)
            .fetch_all(&self.pool)
            .await?)
    }
}

/// One try of a delivery.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, PartialEq)]
pub struct DeliveryAttempt {
    pub attempt: i64,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub outcome: String,
    pub provider_id: Option<String>,
    pub status: Option<String>,
    pub error: Option<String>,
}

impl Store {
    /// One delivery by id.
    pub async fn delivery(&self, id: &str) -> Result<Option<Delivery>> {
        Ok(
            sqlx::query_as(&format!("{DELIVERY_SELECT} WHERE d.id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// A provider's status for a delivery (a status callback). Only for the provider id
    /// the delivery was sent as; returns the delivery as it now is.
    pub async fn delivery_provider_status(
        &self,
        id: &str,
        provider_id: &str,
        status: &str,
        now: Millis,
    ) -> Result<Option<Delivery>> {
        let done = sqlx::query(
            "UPDATE deliveries SET status = $3, updated_at = $4 WHERE id = $1 AND provider_id = $2",
        )
        .bind(id)
        .bind(provider_id)
        .bind(status)
        .bind(now)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.delivery(id).await
    }

    /// The latest SMS or call sent to this phone number in the last day for an alarm
    /// that is still open: what an SMS reply from that number is about.
    pub async fn latest_open_delivery_to_phone(
        &self,
        phone: &str,
        since: Millis,
    ) -> Result<Option<Delivery>> {
        Ok(sqlx::query_as(&format!("{DELIVERY_SELECT} WHERE c.phone = $1 AND d.channel IN ('sms', 'voice') AND d.state IN ('sending', 'sent', 'failed') AND d.created_at >= $2 AND a.state <> 'resolved' AND t.step = 'notified' ORDER BY d.created_at DESC, d.id LIMIT 1"))
            .bind(phone)
            .bind(since)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The account a contact is (to act for the person who answered a call or an SMS).
    pub async fn contact_account(&self, contact: &str) -> Result<Option<super::Contact>> {
        let account: Option<String> =
            sqlx::query_scalar("SELECT account_id FROM contacts WHERE id = $1")
                .bind(contact)
                .fetch_optional(&self.pool)
                .await?
                .flatten();
        match account {
            Some(a) => self.account(&a).await,
            None => Ok(None),
        }
    }
}

/// Someone took the alarm (step `step_seq` by `actor`): everyone already sent an SMS or a
/// call about it — except the taker — gets an SMS saying who, so they stop worrying.
pub(super) async fn plan_taken(
    tx: &mut Transaction<'static, Sqlite>,
    alarm_id: &str,
    step_seq: i64,
    actor: &str,
    now: Millis,
) -> Result<usize> {
    let contacts: Vec<String> = sqlx::query_scalar("SELECT DISTINCT d.contact_id FROM deliveries d JOIN alarm_timeline t ON t.seq = d.step_seq WHERE d.alarm_id = $1 AND t.step = 'notified' AND d.channel IN ('sms', 'voice') AND d.state IN ('sending', 'sent', 'failed') AND d.contact_id NOT IN (SELECT id FROM contacts WHERE account_id = $2) AND d.contact_id <> $2")
        .bind(alarm_id)
        .bind(actor)
        .fetch_all(&mut **tx)
        .await?;
    let mut planned = 0;
    for c in contacts {
        planned += insert(tx, alarm_id, step_seq, &c, ChannelKind::Sms, 0, now).await?;
    }
    Ok(planned)
}

/// The call to the elder's own phone that asks "are you all right?" (contact
/// `elder:<id>`; the elder's phone comes from `elders`).
pub(super) async fn plan_elder_call(
    tx: &mut Transaction<'static, Sqlite>,
    alarm_id: &str,
    step_seq: i64,
    elder_id: &str,
    now: Millis,
) -> Result<usize> {
    insert(
        tx,
        alarm_id,
        step_seq,
        &format!("elder:{elder_id}"),
        ChannelKind::Voice,
        0,
        now,
    )
    .await
}
