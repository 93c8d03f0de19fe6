//! The alarm store: the only module with SQL.
//!
//! SQLite by default (one file, WAL, created and migrated on first start). Queries use
//! `$N` placeholders and the SQL subset shared with PostgreSQL so that a PostgreSQL
//! backend can follow without a redesign. Timestamps are unix milliseconds (BIGINT).
//!
//! Every change to an alarm and its timeline entry are written in one transaction: a
//! timeline row exists exactly when the change it describes was committed.

use std::str::FromStr;

use alert_rules::{Decision, Millis, Severity};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

mod deliveries;
pub mod rosters;
pub mod views;
pub use deliveries::{Delivery, DeliveryAttempt};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0} not found")]
    NotFound(String),
    /// The request is valid but the alarm's state does not allow it (caller can fix).
    #[error("{0}")]
    Conflict(String),
    #[error("invalid: {0}")]
    Invalid(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Who may see what. Staff see a village, a town or the district; family see a household,
/// or several (a family account linked to more than one home).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Scope {
    District,
    Town(String),
    Village(String),
    Household(String),
    /// Several households, sorted (a family account's homes); never empty in practice,
    /// and an empty list covers nothing.
    Households(Vec<String>),
}

impl Scope {
    /// `district`, `town:<id>`, `village:<id>`, `household:<id>`.
    pub fn parse(s: &str) -> Result<Scope, String> {
        match s.split_once(':') {
            None if s == "district" => Ok(Scope::District),
            Some(("town", id)) if !id.is_empty() => Ok(Scope::Town(id.into())),
            Some(("village", id)) if !id.is_empty() => Ok(Scope::Village(id.into())),
            Some(("household", id)) if !id.is_empty() => Ok(Scope::Household(id.into())),
            _ => Err(format!(
                "scope must be district, town:<id>, village:<id> or household:<id>, got {s:?}"
            )),
        }
    }

    /// A family's scope: one household as `Household`, several as sorted `Households`.
    pub fn households(mut ids: Vec<String>) -> Scope {
        ids.sort();
        ids.dedup();
        if ids.len() == 1 {
            Scope::Household(ids.remove(0))
        } else {
            Scope::Households(ids)
        }
    }

    /// A family scope (one or several households)?
    pub fn is_family(&self) -> bool {
        matches!(self, Scope::Household(_) | Scope::Households(_))
    }

    /// The households of a family scope (empty for staff scopes).
    pub fn household_ids(&self) -> &[String] {
        match self {
            Scope::Household(h) => std::slice::from_ref(h),
            Scope::Households(hs) => hs,
            _ => &[],
        }
    }

    /// (kind, id) as stored for a contact or an account. A multi-household scope comes
    /// from several contacts of one account; here it names its first household.
    pub(crate) fn parts(&self) -> (&'static str, &str) {
        match self {
            Scope::District => ("district", "district"),
            Scope::Town(id) => ("town", id),
            Scope::Village(id) => ("village", id),
            Scope::Household(id) => ("household", id),
            Scope::Households(ids) => ("household", ids.first().map_or("", String::as_str)),
        }
    }

    fn from_parts(kind: &str, id: String) -> Result<Scope> {
        Ok(match kind {
            "district" => Scope::District,
            "town" => Scope::Town(id),
            "village" => Scope::Village(id),
            "household" => Scope::Household(id),
            other => return Err(StoreError::Invalid(format!("unknown scope kind {other}"))),
        })
    }

    /// Does this scope cover an alarm located at (household, village, town)?
    pub fn covers(&self, a: &Alarm) -> bool {
        match self {
            Scope::District => true,
            Scope::Town(t) => &a.town_id == t,
            Scope::Village(v) => &a.village_id == v,
            Scope::Household(h) => a.household_id.as_deref() == Some(h.as_str()),
            Scope::Households(hs) => a
                .household_id
                .as_deref()
                .is_some_and(|h| hs.iter().any(|x| x == h)),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::District => f.write_str("district"),
            Scope::Households(ids) => write!(f, "households:{}", ids.join(",")),
            other => {
                let (k, id) = other.parts();
                write!(f, "{k}:{id}")
            }
        }
    }
}

/// An alarm as stored and as sent to clients. Holds ids only: names, addresses and
/// phone numbers are looked up by the views that need them.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, PartialEq)]
pub struct Alarm {
    pub id: String,
    /// `None` for a grouped incident about a whole village.
    pub household_id: Option<String>,
    pub village_id: String,
    pub town_id: String,
    pub device_id: Option<String>,
    pub rule_id: String,
    pub condition_key: String,
    pub severity: String,
    pub title: String,
    pub detail: String,
    pub state: String,
    pub level: i64,
    pub raised_at: i64,
    pub repeat_count: i64,
    pub acked_at: Option<i64>,
    pub acked_by: Option<String>,
    pub ack_via: Option<String>,
    pub resolved_at: Option<i64>,
    pub resolved_by: Option<String>,
    pub disposition: Option<String>,
    pub resolution_note: Option<String>,
    pub level_deadline_at: Option<i64>,
    pub renotify_at: Option<i64>,
    pub overdue_at: Option<i64>,
    pub overdue_notified: bool,
    /// Highest escalation level (rule `escalate_to`); `None`: up to the district.
    pub max_level: Option<i64>,
    /// After acknowledgement: `seen`, `en_route` (with `eta_at`) or `on_site`.
    pub response: Option<String>,
    pub eta_at: Option<i64>,
    pub on_site_at: Option<i64>,
    /// An acknowledged alarm with nobody on site by then re-escalates.
    pub on_site_deadline_at: Option<i64>,
    /// While the hub asks the elder first ("press 1 if you are all right"): until when.
    pub verify_until: Option<i64>,
    /// Repeat notifications made at the current level (bounded by `max_repeats`).
    pub repeats_at_level: i64,
}

impl Alarm {
    pub fn severity(&self) -> Severity {
        Severity::from_str(&self.severity).unwrap_or(Severity::Critical)
    }
    pub fn is_open(&self) -> bool {
        self.state != "resolved"
    }
    pub fn is_unacknowledged(&self) -> bool {
        self.state == "raised" || self.state == "notified"
    }
}

/// Every `step` an alarm's timeline can hold (the pages have a text for each).
pub const TIMELINE_STEPS: [&str; 11] = [
    "raised",
    "repeated",
    "cleared",
    "verifying",
    "notified",
    "escalated",
    "acknowledged",
    "en_route",
    "on_site",
    "overdue",
    "resolved",
];

/// Every contact role (`contacts.role`); deliveries to an elder show the role `elder`.
pub const ROLES: [&str; 4] = ["family", "village", "town", "district"];

/// One step of an alarm's life.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TimelineEntry {
    pub seq: i64,
    pub alarm_id: String,
    pub at: i64,
    pub step: String,
    pub actor: Option<String>,
    pub detail: serde_json::Value,
}

/// A timeline step together with the alarm as it was right after it: what the
/// websocket sends and what a reconnecting client fetches.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AlarmUpdate {
    pub seq: i64,
    pub step: String,
    pub at: i64,
    pub actor: Option<String>,
    pub detail: serde_json::Value,
    pub alarm: Alarm,
}

#[derive(Debug, Clone, Serialize)]
pub struct Contact {
    pub id: String,
    pub role: String,
    pub scope: Scope,
    pub priority: i64,
}

/// An API token as listed to its owner: never the token itself, only its public id.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, PartialEq)]
pub struct ApiToken {
    pub id: String,
    pub account_id: String,
    pub label: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A public token id: 64 random bits, hex.
fn new_token_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// One audit log entry.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, PartialEq)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub source: Option<String>,
    pub detail: String,
}

/// One carer visit.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, PartialEq)]
pub struct Visit {
    pub household_id: String,
    pub carer: String,
    pub source: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
}

/// Visit compliance of one village for one week.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VillageCompliance {
    pub village_id: String,
    pub town_id: String,
    pub households: i64,
    pub meeting_target: i64,
    pub visits: i64,
    pub below_target: Vec<HouseholdVisits>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HouseholdVisits {
    pub household_id: String,
    pub visits: i64,
}

/// An away / hospital / holiday mode as recorded.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, PartialEq)]
pub struct ModeRecord {
    pub household_id: String,
    pub kind: String,
    pub since: i64,
    pub until: i64,
    pub set_by: String,
}

/// Device credentials as the broker's auth hook needs them.
#[derive(Debug, Clone)]
pub struct DeviceAuth {
    pub household_id: String,
    pub secret_hash: String,
    pub revoked: bool,
}

/// A device as ingest and provisioning see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub household_id: String,
    /// The device kind the operator registered (`devices.kind`): decides which event
    /// kinds it may send (`ingest::kinds`).
    pub kind: String,
    /// When it was revoked; `None` while it is active.
    pub revoked_at: Option<Millis>,
}

/// `ms` as RFC 3339 in UTC, to the second (for messages such as "revoked on ...").
pub fn utc_time(ms: Millis) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// What happened when a raise decision was applied.
#[derive(Debug, Clone)]
pub struct Raised {
    pub alarm: Alarm,
    /// true: a new alarm; false: attached to the open alarm for the same condition.
    pub new: bool,
    pub update: AlarmUpdate,
}

/// Deadlines a new alarm starts with, computed by the escalation policy.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    pub level_deadline_at: Option<i64>,
    pub renotify_at: Option<i64>,
    pub overdue_at: Option<i64>,
}

/// What someone who took an alarm reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    /// On the way; expected at `eta_at`.
    EnRoute {
        eta_at: Millis,
    },
    OnSite,
}

/// A critical device event to record with the alarm, for de-duplication of retries.
#[derive(Debug, Clone)]
pub struct EventRecord<'a> {
    pub device_id: &'a str,
    pub event_id: &'a str,
    pub device_ts: &'a str,
    pub kind: &'a str,
}

#[derive(Debug, Clone, Default)]
pub struct AlarmFilter {
    pub open_only: bool,
    pub state: Option<String>,
    pub severity: Option<String>,
    pub town: Option<String>,
    pub village: Option<String>,
    pub household: Option<String>,
    pub limit: Option<i64>,
    /// Most recent first (a history), instead of most urgent first.
    pub newest_first: bool,
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

const UPSERT_CONTACT: &str = "INSERT INTO contacts (id, name, phone, role, scope_kind, scope_id, priority, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO UPDATE SET name = excluded.name, phone = excluded.phone, role = excluded.role, scope_kind = excluded.scope_kind, scope_id = excluded.scope_id, priority = excluded.priority";

/// How long an API token given to a contact (import, `hub admin add-contact`) lasts.
pub const CONTACT_TOKEN_MS: i64 = 365 * 86_400_000;
/// The label of tokens that come from contacts.csv or the CLI: a new one replaces the old.
pub const CONTACT_TOKEN_LABEL: &str = "contact token";

/// Make `account` the account of contact `contact` (created without a password when
/// missing; its role and scope follow the contact; a family account sees the
/// households of all its contacts). With `token`, the account's previous
/// contact token is revoked and `token` takes its place (a token already known is
/// left as it is: re-importing a file neither renews nor revives it).
async fn contact_account(
    tx: &mut Transaction<'static, Sqlite>,
    contact: &str,
    account: &str,
    role: &str,
    scope: &Scope,
    token: Option<&str>,
    now: Millis,
) -> Result<()> {
    let (kind, scope_id) = scope.parts();
    sqlx::query("INSERT INTO accounts (id, username, password_hash, role, scope_kind, scope_id, created_at, password_changed_at) SELECT $1, CASE WHEN EXISTS (SELECT 1 FROM accounts WHERE username = $1) THEN 'contact-' || $1 ELSE $1 END, '!', $2, $3, $4, $5, $5 WHERE true ON CONFLICT (id) DO UPDATE SET role = excluded.role, scope_kind = excluded.scope_kind, scope_id = excluded.scope_id")
        .bind(account)
        .bind(role)
        .bind(kind)
        .bind(scope_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE contacts SET account_id = $2 WHERE id = $1")
        .bind(contact)
        .bind(account)
        .execute(&mut **tx)
        .await?;
    if let Some(token) = token {
        let hash = token_hash(token);
        sqlx::query("UPDATE api_tokens SET revoked_at = $3 WHERE account_id = $1 AND label = $4 AND token_hash <> $2 AND revoked_at IS NULL")
            .bind(account)
            .bind(&hash)
            .bind(now)
            .bind(CONTACT_TOKEN_LABEL)
            .execute(&mut **tx)
            .await?;
        sqlx::query("INSERT INTO api_tokens (id, token_hash, account_id, label, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (token_hash) DO NOTHING")
            .bind(new_token_id())
            .bind(&hash)
            .bind(account)
            .bind(CONTACT_TOKEN_LABEL)
            .bind(now)
            .bind(now + CONTACT_TOKEN_MS)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
const UPSERT_TOWN: &str = "INSERT INTO towns (id, name) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET name = excluded.name";
const UPSERT_VILLAGE: &str = "INSERT INTO villages (id, town_id, name) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET town_id = excluded.town_id, name = excluded.name";
const UPSERT_HOUSEHOLD: &str = "INSERT INTO households (id, village_id, address) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET village_id = excluded.village_id, address = excluded.address";
const UPSERT_ELDER: &str = "INSERT INTO elders (id, household_id, name, phone) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET household_id = excluded.household_id, name = excluded.name, phone = excluded.phone";
/// Register or re-key a device. A revoked device is left untouched (0 rows): only
/// [`Store::reinstate_device`] clears a revocation, so nobody undoes one by accident.
const UPSERT_DEVICE: &str = "INSERT INTO devices (id, household_id, kind, vendor, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET household_id = excluded.household_id, kind = excluded.kind, vendor = excluded.vendor, secret_hash = excluded.secret_hash WHERE devices.revoked_at IS NULL";

/// The open alarm of a decision's subject and condition: `$1` household (or NULL),
/// `$2` village (for grouped incidents), `$3` condition key.
const OPEN_FOR_SUBJECT: &str = "((household_id = $1) OR ($1 IS NULL AND household_id IS NULL AND village_id = $2)) AND condition_key = $3 AND state <> 'resolved'";

const ALARM_COLUMNS: &str = "id, household_id, village_id, town_id, device_id, rule_id, condition_key, severity, title, detail, state, level, raised_at, repeat_count, acked_at, acked_by, ack_via, resolved_at, resolved_by, disposition, resolution_note, level_deadline_at, renotify_at, overdue_at, overdue_notified, max_level, response, eta_at, on_site_at, on_site_deadline_at, verify_until, repeats_at_level";

#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    /// Bumped after every committed change to a device's household, kind or revocation,
    /// so ingest can cache devices and still drop its cache when one changed (see
    /// [`Store::devices_generation`]). Changes by another process (the CLI on the same
    /// file) are not seen.
    devices_generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Store {
    /// Open (creating if needed) and migrate the database.
    pub async fn connect(url: &str) -> Result<Store> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a committed alarm survives a power cut, not just a process crash.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("../migrations").run(&pool).await?;
        Ok(Store {
            pool,
            devices_generation: Default::default(),
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A write transaction that takes the write lock at BEGIN. A deferred transaction that
    /// reads first and writes later fails at once with "database is locked" when another
    /// connection wrote in between (SQLite cannot wait there without risking deadlock);
    /// `BEGIN IMMEDIATE` waits for the lock up to the busy timeout instead.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    // ----- the district model --------------------------------------------------------

    pub async fn upsert_town(&self, id: &str, name: &str) -> Result<()> {
        sqlx::query(UPSERT_TOWN)
            .bind(id)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn upsert_village(&self, id: &str, town_id: &str, name: &str) -> Result<()> {
        sqlx::query(UPSERT_VILLAGE)
            .bind(id)
            .bind(town_id)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn upsert_household(&self, id: &str, village_id: &str, address: &str) -> Result<()> {
        sqlx::query(UPSERT_HOUSEHOLD)
            .bind(id)
            .bind(village_id)
            .bind(address)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn upsert_elder(
        &self,
        id: &str,
        household_id: &str,
        name: &str,
        phone: Option<&str>,
    ) -> Result<()> {
        sqlx::query(UPSERT_ELDER)
            .bind(id)
            .bind(household_id)
            .bind(name)
            .bind(phone)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Register (or re-key) a device. `secret_hash` is an argon2 PHC string. A revoked
    /// device is refused (`Conflict`): bringing it back is [`Store::reinstate_device`].
    pub async fn upsert_device(
        &self,
        id: &str,
        household_id: &str,
        kind: &str,
        vendor: &str,
        secret_hash: &str,
        now: Millis,
    ) -> Result<()> {
        let done = sqlx::query(UPSERT_DEVICE)
            .bind(id)
            .bind(household_id)
            .bind(kind)
            .bind(vendor)
            .bind(secret_hash)
            .bind(now)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            let since = match self.device(id).await? {
                Some(DeviceRecord {
                    revoked_at: Some(at),
                    ..
                }) => format!(" on {}", utc_time(at)),
                _ => String::new(),
            };
            return Err(StoreError::Conflict(format!(
                "device {id} was revoked{since} and stays revoked; to bring it back with a new secret, reinstate it: POST /api/devices with \"reinstate\": true"
            )));
        }
        self.devices_changed();
        Ok(())
    }

    /// Ids already present in `table` (towns, villages or households), for import validation.
    pub async fn ids(&self, table: &str) -> Result<std::collections::HashSet<String>> {
        let sql = match table {
            "towns" => "SELECT id FROM towns",
            "villages" => "SELECT id FROM villages",
            "households" => "SELECT id FROM households",
            "devices" => "SELECT id FROM devices WHERE revoked_at IS NULL",
            "contacts" => "SELECT id FROM contacts",
            "accounts" => "SELECT id FROM accounts",
            other => return Err(StoreError::Invalid(format!("no id table {other}"))),
        };
        let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    /// Write a validated import in one transaction. `secret_hashes[i]` is the argon2
    /// hash for `batch.devices[i]`.
    /// Write a validated import in one transaction. `secret_hashes` follow
    /// `batch.devices`, `contact_tokens` follow `batch.contacts` (stored as SHA-256);
    /// `None` keeps the existing device's secret / contact's token.
    pub async fn import(
        &self,
        batch: &crate::import::Batch,
        secret_hashes: &[Option<String>],
        contact_tokens: &[Option<String>],
        now: Millis,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for t in &batch.towns {
            sqlx::query(UPSERT_TOWN)
                .bind(&t.id)
                .bind(&t.name)
                .execute(&mut *tx)
                .await?;
        }
        for v in &batch.villages {
            sqlx::query(UPSERT_VILLAGE)
                .bind(&v.id)
                .bind(&v.town_id)
                .bind(&v.name)
                .execute(&mut *tx)
                .await?;
        }
        for h in &batch.households {
            sqlx::query(UPSERT_HOUSEHOLD)
                .bind(&h.id)
                .bind(&h.village_id)
                .bind(&h.address)
                .execute(&mut *tx)
                .await?;
        }
        for e in &batch.elders {
            let phone = e.phone.as_deref().filter(|p| !p.is_empty());
            sqlx::query(UPSERT_ELDER)
                .bind(&e.id)
                .bind(&e.household_id)
                .bind(&e.name)
                .bind(phone)
                .execute(&mut *tx)
                .await?;
        }
        // A revoked device in the batch is left as it is (import::apply refuses such rows
        // before they get here; this keeps a concurrent revocation in force).
        for (d, hash) in batch.devices.iter().zip(secret_hashes) {
            let vendor = d.vendor.as_deref().unwrap_or("");
            let sql = if hash.is_some() {
                UPSERT_DEVICE
            } else {
                "UPDATE devices SET household_id = $2, kind = $3, vendor = $4 WHERE id = $1 AND revoked_at IS NULL"
            };
            let q = sqlx::query(sql)
                .bind(&d.id)
                .bind(&d.household_id)
                .bind(&d.kind)
                .bind(vendor);
            let q = match hash {
                Some(h) => q.bind(h).bind(now),
                None => q,
            };
            q.execute(&mut *tx).await?;
        }
        for (c, token) in batch.contacts.iter().zip(contact_tokens) {
            let scope = Scope::parse(&c.scope).map_err(StoreError::Invalid)?;
            let (kind, scope_id) = scope.parts();
            sqlx::query(UPSERT_CONTACT)
                .bind(&c.id)
                .bind(&c.name)
                .bind(c.phone.as_deref().filter(|p| !p.is_empty()))
                .bind(&c.role)
                .bind(kind)
                .bind(scope_id)
                .bind(c.priority.unwrap_or(0))
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE contacts SET channels = $2, language = $3 WHERE id = $1")
                .bind(&c.id)
                .bind(
                    c.channels
                        .as_deref()
                        .map(str::trim)
                        .filter(|v| !v.is_empty()),
                )
                .bind(
                    c.language
                        .as_deref()
                        .map(str::trim)
                        .filter(|v| !v.is_empty()),
                )
                .execute(&mut *tx)
                .await?;
            let account = c
                .account
                .as_deref()
                .filter(|a| !a.is_empty())
                .unwrap_or(&c.id);
            contact_account(
                &mut tx,
                &c.id,
                account,
                &c.role,
                &scope,
                token.as_deref(),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        if !batch.devices.is_empty() {
            self.devices_changed();
        }
        Ok(())
    }

    /// Create or update a contact; it is the account `account` (default: the contact's
    /// id), which gets `token` as an API token (stored as its SHA-256).
    #[allow(clippy::too_many_arguments)]
    pub async fn upsert_contact(
        &self,
        id: &str,
        name: &str,
        phone: Option<&str>,
        role: &str,
        scope: &Scope,
        priority: i64,
        account: Option<&str>,
        token: &str,
        now: Millis,
    ) -> Result<()> {
        let (kind, scope_id) = scope.parts();
        let mut tx = self.begin_write().await?;
        sqlx::query(UPSERT_CONTACT)
            .bind(id)
            .bind(name)
            .bind(phone)
            .bind(role)
            .bind(kind)
            .bind(scope_id)
            .bind(priority)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let account = account.unwrap_or(id);
        contact_account(&mut tx, id, account, role, scope, Some(token), now).await?;
        tx.commit().await?;
        Ok(())
    }

    // ----- accounts and sessions ------------------------------------------------------

    /// Create or replace an account (staff or family) with a password hash.
    pub async fn upsert_account(
        &self,
        id: &str,
        username: &str,
        password_hash: &str,
        role: &str,
        scope: &Scope,
        now: Millis,
    ) -> Result<()> {
        let (kind, scope_id) = scope.parts();
        sqlx::query("INSERT INTO accounts (id, username, password_hash, role, scope_kind, scope_id, created_at, password_changed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (id) DO UPDATE SET username = excluded.username, password_hash = excluded.password_hash, role = excluded.role, scope_kind = excluded.scope_kind, scope_id = excluded.scope_id, password_changed_at = excluded.password_changed_at, disabled_at = NULL")
            .bind(id)
            .bind(username)
            .bind(password_hash)
            .bind(role)
            .bind(kind)
            .bind(scope_id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// (account id, password hash) of an enabled account.
    pub async fn account_login(&self, username: &str) -> Result<Option<(String, String)>> {
        let row = sqlx::query(
            "SELECT id, password_hash FROM accounts WHERE username = $1 AND disabled_at IS NULL",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get("id")?, r.try_get("password_hash")?)))
            .transpose()
    }

    /// The password hash of an enabled account, by id.
    pub async fn account_password(&self, id: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT password_hash FROM accounts WHERE id = $1 AND disabled_at IS NULL",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Start a session for `account` until `expires_at`.
    pub async fn create_session(
        &self,
        token: &str,
        account: &str,
        now: Millis,
        expires_at: Millis,
        source: Option<&str>,
    ) -> Result<()> {
        sqlx::query("INSERT INTO sessions (token_hash, account_id, created_at, expires_at, source) VALUES ($1, $2, $3, $4, $5)")
            .bind(token_hash(token))
            .bind(account)
            .bind(now)
            .bind(expires_at)
            .bind(source)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The account behind a live session, as a principal (same shape as a contact),
    /// and when the session ends.
    pub async fn session_principal(
        &self,
        token: &str,
        now: Millis,
    ) -> Result<Option<(Contact, Millis)>> {
        let row = sqlx::query("SELECT a.id, a.role, a.scope_kind, a.scope_id, s.expires_at FROM sessions s JOIN accounts a ON a.id = s.account_id WHERE s.token_hash = $1 AND s.expires_at > $2 AND a.disabled_at IS NULL")
            .bind(token_hash(token))
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => Ok(Some((self.principal(&r).await?, r.try_get("expires_at")?))),
            None => Ok(None),
        }
    }

    /// The account behind a live API token, and the token's row.
    pub async fn api_token_principal(
        &self,
        token: &str,
        now: Millis,
    ) -> Result<Option<(Contact, ApiToken)>> {
        let row = sqlx::query("SELECT a.id, a.role, a.scope_kind, a.scope_id, t.id AS t_id, t.label, t.created_at, t.expires_at, t.last_used_at, t.revoked_at FROM api_tokens t JOIN accounts a ON a.id = t.account_id WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $2) AND a.disabled_at IS NULL")
            .bind(token_hash(token))
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        let Some(r) = row else { return Ok(None) };
        let principal = self.principal(&r).await?;
        let t = ApiToken {
            id: r.try_get("t_id")?,
            account_id: principal.id.clone(),
            label: r.try_get("label")?,
            created_at: r.try_get("created_at")?,
            expires_at: r.try_get("expires_at")?,
            last_used_at: r.try_get("last_used_at")?,
            revoked_at: r.try_get("revoked_at")?,
        };
        Ok(Some((principal, t)))
    }

    /// An account row (id, role, scope_kind, scope_id) as a principal. A family account
    /// sees its own household and those of every contact that belongs to it.
    async fn principal(&self, r: &sqlx::sqlite::SqliteRow) -> Result<Contact> {
        let id: String = r.try_get("id")?;
        let kind: &str = r.try_get("scope_kind")?;
        let scope = if kind == "household" {
            let mut homes: Vec<String> = sqlx::query_scalar(
                "SELECT scope_id FROM contacts WHERE account_id = $1 AND scope_kind = 'household'",
            )
            .bind(&id)
            .fetch_all(&self.pool)
            .await?;
            homes.push(r.try_get("scope_id")?);
            Scope::households(homes)
        } else {
            Scope::from_parts(kind, r.try_get("scope_id")?)?
        };
        Ok(Contact {
            id,
            role: r.try_get("role")?,
            scope,
            priority: 0,
        })
    }

    /// Note that a token was used (at most once an hour per token: not a write per request).
    pub async fn touch_api_token(&self, t: &ApiToken, now: Millis) -> Result<()> {
        if t.last_used_at.is_some_and(|at| now - at < 3_600_000) {
            return Ok(());
        }
        sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
            .bind(&t.id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A new API token for an account (stored as its SHA-256); returns its public id.
    pub async fn create_api_token(
        &self,
        account: &str,
        token: &str,
        label: &str,
        now: Millis,
        expires_at: Option<Millis>,
    ) -> Result<String> {
        let id = new_token_id();
        sqlx::query("INSERT INTO api_tokens (id, token_hash, account_id, label, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&id)
            .bind(token_hash(token))
            .bind(account)
            .bind(label)
            .bind(now)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(id)
    }

    /// An account's tokens, newest first (revoked and expired ones included).
    pub async fn api_tokens(&self, account: &str) -> Result<Vec<ApiToken>> {
        Ok(sqlx::query_as("SELECT id, account_id, label, created_at, expires_at, last_used_at, revoked_at FROM api_tokens WHERE account_id = $1 ORDER BY created_at DESC, id")
            .bind(account)
            .fetch_all(&self.pool)
            .await?)
    }

    /// One token by its public id.
    pub async fn api_token(&self, id: &str) -> Result<Option<ApiToken>> {
        Ok(sqlx::query_as("SELECT id, account_id, label, created_at, expires_at, last_used_at, revoked_at FROM api_tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Revoke a token; false when it was already revoked or does not exist.
    pub async fn revoke_api_token(&self, id: &str, now: Millis) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Disable an account (`Some(at)`) or enable it again (`None`); false if unknown.
    /// A disabled account's sessions and tokens are refused; its sessions are ended.
    pub async fn set_account_disabled(&self, id: &str, at: Option<Millis>) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("UPDATE accounts SET disabled_at = $2 WHERE id = $1")
            .bind(id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        if at.is_some() {
            sqlx::query("DELETE FROM sessions WHERE account_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// An enabled account as a principal (id, role, scope).
    pub async fn account(&self, id: &str) -> Result<Option<Contact>> {
        let row =
            sqlx::query("SELECT id, role, scope_kind, scope_id FROM accounts WHERE id = $1 AND disabled_at IS NULL")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        match row {
            Some(r) => Ok(Some(self.principal(&r).await?)),
            None => Ok(None),
        }
    }

    /// End one session (logout).
    pub async fn end_session(&self, token: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash(token))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Give an account that has no password yet (created by an import) this one.
    /// Returns whether it was set; an account with a password keeps it.
    pub async fn set_first_password(&self, account: &str, hash: &str, now: Millis) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE accounts SET password_hash = $2, password_changed_at = $3 WHERE id = $1 AND password_hash = '!'",
        )
        .bind(account)
        .bind(hash)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// New password: every session of the account ends except `keep` (the caller's).
    pub async fn change_password(
        &self,
        account: &str,
        hash: &str,
        keep: Option<&str>,
        now: Millis,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE accounts SET password_hash = $2, password_changed_at = $3 WHERE id = $1",
        )
        .bind(account)
        .bind(hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM sessions WHERE account_id = $1 AND token_hash <> $2")
            .bind(account)
            .bind(keep.map(token_hash).unwrap_or_default())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Is `inner` inside `outer`? (e.g. a village inside a town). Unknown ids are outside.
    pub async fn scope_within(&self, inner: &Scope, outer: &Scope) -> Result<bool> {
        match inner {
            Scope::Households(hs) => {
                for h in hs {
                    if !self
                        .single_within(&Scope::Household(h.clone()), outer)
                        .await?
                    {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            single => self.single_within(single, outer).await,
        }
    }

    async fn single_within(&self, inner: &Scope, outer: &Scope) -> Result<bool> {
        if let Scope::Households(hs) = outer {
            return Ok(match inner {
                Scope::Household(h) => hs.contains(h) && self.scope_exists(inner).await?,
                _ => false,
            });
        }
        if inner == outer || *outer == Scope::District {
            return Ok(match inner {
                Scope::District => *outer == Scope::District,
                _ => inner == outer || self.scope_exists(inner).await?,
            });
        }
        let q = match (inner, outer) {
            (Scope::Village(v), Scope::Town(t)) => sqlx::query("SELECT 1 FROM villages WHERE id = $1 AND town_id = $2").bind(v).bind(t),
            (Scope::Household(h), Scope::Village(v)) => sqlx::query("SELECT 1 FROM households WHERE id = $1 AND village_id = $2").bind(h).bind(v),
            (Scope::Household(h), Scope::Town(t)) => sqlx::query("SELECT 1 FROM households h JOIN villages v ON v.id = h.village_id WHERE h.id = $1 AND v.town_id = $2").bind(h).bind(t),
            _ => return Ok(false),
        };
        Ok(q.fetch_optional(&self.pool).await?.is_some())
    }

    async fn scope_exists(&self, scope: &Scope) -> Result<bool> {
        let q = match scope {
            Scope::District => return Ok(true),
            Scope::Town(id) => sqlx::query("SELECT 1 FROM towns WHERE id = $1").bind(id),
            Scope::Village(id) => sqlx::query("SELECT 1 FROM villages WHERE id = $1").bind(id),
            Scope::Household(id) => sqlx::query("SELECT 1 FROM households WHERE id = $1").bind(id),
            Scope::Households(_) => return Ok(false),
        };
        Ok(q.fetch_optional(&self.pool).await?.is_some())
    }

    pub async fn device_auth(&self, device_id: &str) -> Result<Option<DeviceAuth>> {
        let row =
            sqlx::query("SELECT household_id, secret_hash, revoked_at FROM devices WHERE id = $1")
                .bind(device_id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| {
            Ok(DeviceAuth {
                household_id: r.try_get("household_id")?,
                secret_hash: r.try_get("secret_hash")?,
                revoked: r.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
            })
        })
        .transpose()
    }

    /// (household, device) for every active device, for the rule engine's health watch.
    pub async fn active_devices(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT household_id, id FROM devices WHERE revoked_at IS NULL ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("household_id")?, r.try_get("id")?)))
            .collect()
    }

    /// The whole district as an import batch (for `hub admin export`): active devices,
    /// no secrets or tokens (only their hashes exist).
    pub async fn export(&self) -> Result<crate::import::Batch> {
        let pool = &self.pool;
        Ok(crate::import::Batch {
            towns: sqlx::query_as("SELECT id, name FROM towns ORDER BY id")
                .fetch_all(pool)
                .await?,
            villages: sqlx::query_as("SELECT id, town_id, name FROM villages ORDER BY id")
                .fetch_all(pool)
                .await?,
            households: sqlx::query_as(
                "SELECT id, village_id, address FROM households ORDER BY id",
            )
            .fetch_all(pool)
            .await?,
            elders: sqlx::query_as("SELECT id, household_id, name, phone FROM elders ORDER BY id")
                .fetch_all(pool)
                .await?,
            // Secrets and tokens are never exported (only their hashes exist).
            devices: sqlx::query_as("SELECT id, household_id, kind, vendor, NULL AS secret FROM devices WHERE revoked_at IS NULL ORDER BY id")
                .fetch_all(pool)
                .await?,
            contacts: sqlx::query_as("SELECT id, name, phone, role, CASE WHEN scope_kind = 'district' THEN 'district' ELSE scope_kind || ':' || scope_id END AS scope, priority, CASE WHEN account_id = id THEN NULL ELSE account_id END AS account, channels, language, NULL AS token FROM contacts ORDER BY id")
                .fetch_all(pool)
                .await?,
        })
    }

    /// (household, village) for every household: the rule engine groups outages by village.
    pub async fn household_villages(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT id, village_id FROM households ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("village_id")?)))
            .collect()
    }

    /// The village of one household.
    pub async fn household_village(&self, household: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT village_id FROM households WHERE id = $1")
                .bind(household)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    // ----- device credentials ---------------------------------------------------------

    /// One device, active or revoked.
    pub async fn device(&self, id: &str) -> Result<Option<DeviceRecord>> {
        let row = sqlx::query("SELECT household_id, kind, revoked_at FROM devices WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(DeviceRecord {
                household_id: r.try_get("household_id")?,
                kind: r.try_get("kind")?,
                revoked_at: r.try_get("revoked_at")?,
            })
        })
        .transpose()
    }

    /// Revoked devices and when they were revoked (import validation).
    pub async fn revoked_devices(&self) -> Result<std::collections::HashMap<String, Millis>> {
        let rows = sqlx::query("SELECT id, revoked_at FROM devices WHERE revoked_at IS NOT NULL")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("revoked_at")?)))
            .collect()
    }

    /// Bring a revoked device back, registered anew (household, kind, vendor, secret).
    /// False if it is not revoked (unknown, or active).
    pub async fn reinstate_device(
        &self,
        id: &str,
        household_id: &str,
        kind: &str,
        vendor: &str,
        secret_hash: &str,
    ) -> Result<bool> {
        let done = sqlx::query("UPDATE devices SET household_id = $2, kind = $3, vendor = $4, secret_hash = $5, revoked_at = NULL WHERE id = $1 AND revoked_at IS NOT NULL")
            .bind(id)
            .bind(household_id)
            .bind(kind)
            .bind(vendor)
            .bind(secret_hash)
            .execute(&self.pool)
            .await?;
        let reinstated = done.rows_affected() > 0;
        if reinstated {
            self.devices_changed();
        }
        Ok(reinstated)
    }

    /// A number that changes after every committed change to a device's household, kind
    /// or revocation by this process: a cache of devices is valid while it stays the same.
    pub fn devices_generation(&self) -> u64 {
        self.devices_generation
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Call after committing a device change.
    fn devices_changed(&self) {
        self.devices_generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// The household of an active (not revoked) device.
    pub async fn device_household(&self, id: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT household_id FROM devices WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Replace an active device's secret hash. False if no such active device.
    pub async fn set_device_secret(&self, id: &str, secret_hash: &str) -> Result<bool> {
        let done =
            sqlx::query("UPDATE devices SET secret_hash = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(secret_hash)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Revoke a device: it can no longer connect. False if no such active device.
    pub async fn revoke_device(&self, id: &str, now: Millis) -> Result<bool> {
        let done =
            sqlx::query("UPDATE devices SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(now)
                .execute(&self.pool)
                .await?;
        let revoked = done.rows_affected() > 0;
        if revoked {
            self.devices_changed();
        }
        Ok(revoked)
    }

    // ----- audit ------------------------------------------------------------------------

    /// Append one entry to the audit log (ids only).
    #[allow(clippy::too_many_arguments)]
    pub async fn audit(
        &self,
        at: Millis,
        actor: &str,
        action: &str,
        target: &str,
        outcome: &str,
        source: Option<&str>,
        detail: &serde_json::Value,
    ) -> Result<()> {
        sqlx::query("INSERT INTO audit_log (at, actor, action, target, outcome, source, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(at)
            .bind(actor)
            .bind(action)
            .bind(target)
            .bind(outcome)
            .bind(source)
            .bind(detail.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Audit entries after `after_seq`, oldest first, at most `limit`.
    pub async fn audit_since(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditEntry>> {
        Ok(sqlx::query_as("SELECT seq, at, actor, action, target, outcome, source, detail FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after_seq)
            .bind(limit.clamp(1, 1000))
            .fetch_all(&self.pool)
            .await?)
    }

    // ----- care: visits and away modes ------------------------------------------------

    /// A carer checked in. An open visit of the household is closed first (a missed
    /// check-out), so there is at most one open visit per household.
    pub async fn start_visit(
        &self,
        household: &str,
        carer: &str,
        source: &str,
        at: Millis,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE visits SET ended_at = $2 WHERE household_id = $1 AND ended_at IS NULL")
            .bind(household)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO visits (household_id, carer, source, started_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(household)
        .bind(carer)
        .bind(source)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A carer checked out: closes the household's open visit, if any.
    pub async fn end_visit(&self, household: &str, at: Millis) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE visits SET ended_at = $2 WHERE household_id = $1 AND ended_at IS NULL",
        )
        .bind(household)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Visits of one household started in `[from, to)`, oldest first.
    pub async fn visits(&self, household: &str, from: Millis, to: Millis) -> Result<Vec<Visit>> {
        Ok(sqlx::query_as("SELECT household_id, carer, source, started_at, ended_at FROM visits WHERE household_id = $1 AND started_at >= $2 AND started_at < $3 ORDER BY started_at")
            .bind(household)
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Visit compliance for the week `[from, from + 7 days)` in `scope`, per village:
    /// how many households had at least `target` visits, and which did not.
    pub async fn visit_compliance(
        &self,
        scope: &Scope,
        from: Millis,
        to: Millis,
        target: i64,
    ) -> Result<Vec<VillageCompliance>> {
        let mut qb = sqlx::QueryBuilder::<Sqlite>::new(
            "SELECT h.village_id, v.town_id, h.id AS household_id, COUNT(vi.id) AS visits FROM households h JOIN villages v ON v.id = h.village_id LEFT JOIN visits vi ON vi.household_id = h.id AND vi.started_at >= ",
        );
        qb.push_bind(from)
            .push(" AND vi.started_at < ")
            .push_bind(to)
            .push(" WHERE 1 = 1");
        push_scope_in(&mut qb, scope, ["v.town_id", "h.village_id", "h.id"]);
        qb.push(" GROUP BY h.village_id, v.town_id, h.id ORDER BY h.village_id, h.id");
        let rows = qb.build().fetch_all(&self.pool).await?;
        let mut out: Vec<VillageCompliance> = Vec::new();
        for r in rows {
            let village: String = r.try_get("village_id")?;
            let town: String = r.try_get("town_id")?;
            let household: String = r.try_get("household_id")?;
            let visits: i64 = r.try_get("visits")?;
            if out.last().is_none_or(|c| c.village_id != village) {
                out.push(VillageCompliance {
                    village_id: village,
                    town_id: town,
                    households: 0,
                    meeting_target: 0,
                    visits: 0,
                    below_target: Vec::new(),
                });
            }
            if let Some(c) = out.last_mut() {
                c.households += 1;
                c.visits += visits;
                if visits >= target {
                    c.meeting_target += 1;
                } else {
                    c.below_target.push(HouseholdVisits {
                        household_id: household,
                        visits,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Record a mode as set (ending any mode still recorded as in force).
    pub async fn record_mode(
        &self,
        household: &str,
        kind: &str,
        since: Millis,
        until: Millis,
        by: &str,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE household_modes SET ended_at = $2, ended_by = $3 WHERE household_id = $1 AND ended_at IS NULL AND until > $2")
            .bind(household)
            .bind(since)
            .bind(by)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO household_modes (household_id, kind, since, until, set_by) VALUES ($1, $2, $3, $4, $5)")
            .bind(household)
            .bind(kind)
            .bind(since)
            .bind(until)
            .bind(by)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Record that the mode in force ended early.
    pub async fn record_mode_end(&self, household: &str, at: Millis, by: &str) -> Result<()> {
        sqlx::query("UPDATE household_modes SET ended_at = $2, ended_by = $3 WHERE household_id = $1 AND ended_at IS NULL AND until > $2")
            .bind(household)
            .bind(at)
            .bind(by)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The mode in force at `now`, as recorded.
    pub async fn current_mode(&self, household: &str, now: Millis) -> Result<Option<ModeRecord>> {
        Ok(sqlx::query_as("SELECT household_id, kind, since, until, set_by FROM household_modes WHERE household_id = $1 AND ended_at IS NULL AND since <= $2 AND until > $2 ORDER BY since DESC LIMIT 1")
            .bind(household)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?)
    }

    // ----- raising alarms -------------------------------------------------------------

    /// Has this critical event already been committed? Returns its alarm id if so.
    pub async fn seen_event(
        &self,
        device_id: &str,
        event_id: &str,
    ) -> Result<Option<Option<String>>> {
        let row = sqlx::query(
            "SELECT alarm_id FROM device_events WHERE device_id = $1 AND event_id = $2",
        )
        .bind(device_id)
        .bind(event_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok(r.try_get("alarm_id")?)).transpose()
    }

    /// Apply a rule decision to raise an alarm. If an alarm for the same condition is
    /// already open in the household, the decision is attached to it as a repeat
    /// instead (one open alarm per condition). The device event, if given, is recorded
    /// in the same transaction, so "committed" and "de-duplicable" are the same instant.
    pub async fn raise(
        &self,
        d: &Decision,
        deadlines: Deadlines,
        event: Option<&EventRecord<'_>>,
        now: Millis,
    ) -> Result<Raised> {
        let mut tx = self.begin_write().await?;
        let existing: Option<Alarm> = sqlx::query_as(&format!(
            "SELECT {ALARM_COLUMNS} FROM alarms WHERE {OPEN_FOR_SUBJECT}"
        ))
        .bind(&d.household)
        .bind(&d.village)
        .bind(&d.condition_key)
        .fetch_optional(&mut *tx)
        .await?;
        let (alarm_id, new) = match existing {
            Some(a) => {
                sqlx::query("UPDATE alarms SET repeat_count = repeat_count + 1 WHERE id = $1")
                    .bind(&a.id)
                    .execute(&mut *tx)
                    .await?;
                (a.id, false)
            }
            None => {
                let loc = match (&d.household, &d.village) {
                    (Some(h), _) => sqlx::query("SELECT h.village_id, v.town_id FROM households h JOIN villages v ON v.id = h.village_id WHERE h.id = $1")
                        .bind(h)
                        .fetch_optional(&mut *tx)
                        .await?
                        .ok_or_else(|| StoreError::NotFound(format!("household {h}")))?,
                    (None, Some(v)) => sqlx::query("SELECT id AS village_id, town_id FROM villages WHERE id = $1")
                        .bind(v)
                        .fetch_optional(&mut *tx)
                        .await?
                        .ok_or_else(|| StoreError::NotFound(format!("village {v}")))?,
                    (None, None) => {
                        return Err(StoreError::NotFound(
                            "a decision with neither household nor village".into(),
                        ))
                    }
                };
                let village: String = loc.try_get("village_id")?;
                let town: String = loc.try_get("town_id")?;
                let id = uuid::Uuid::new_v4().to_string();
                sqlx::query("INSERT INTO alarms (id, household_id, village_id, town_id, device_id, rule_id, condition_key, severity, title, detail, state, level, raised_at, level_deadline_at, renotify_at, overdue_at, max_level) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'raised', 0, $11, $12, $13, $14, $15)")
                    .bind(&id)
                    .bind(&d.household)
                    .bind(&village)
                    .bind(&town)
                    .bind(&d.device)
                    .bind(&d.rule_id)
                    .bind(&d.condition_key)
                    .bind(d.severity.as_str())
                    .bind(&d.title)
                    .bind(&d.detail)
                    .bind(now)
                    .bind(deadlines.level_deadline_at)
                    .bind(deadlines.renotify_at)
                    .bind(deadlines.overdue_at)
                    .bind(d.max_level.map(i64::from))
                    .execute(&mut *tx)
                    .await?;
                (id, true)
            }
        };
        if let Some(ev) = event {
            sqlx::query("INSERT INTO device_events (device_id, event_id, alarm_id, received_at, device_ts, kind) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(ev.device_id)
                .bind(ev.event_id)
                .bind(&alarm_id)
                .bind(now)
                .bind(ev.device_ts)
                .bind(ev.kind)
                .execute(&mut *tx)
                .await?;
        }
        let step = if new { "raised" } else { "repeated" };
        let detail = serde_json::json!({
            "rule": d.rule_id,
            "device": d.device,
            "severity": d.severity.as_str(),
            "detail": d.detail,
            "event_id": event.map(|e| e.event_id),
        });
        let actor = d.device.as_ref().map(|dev| format!("device:{dev}"));
        let update = append(&mut tx, &alarm_id, now, step, actor.as_deref(), detail).await?;
        tx.commit().await?;
        Ok(Raised {
            alarm: update.alarm.clone(),
            new,
            update,
        })
    }

    /// Record a critical event that did not raise an alarm (e.g. a rule disabled for the
    /// household), so that its retries are still recognised as duplicates.
    pub async fn record_event(&self, ev: &EventRecord<'_>, now: Millis) -> Result<()> {
        sqlx::query("INSERT INTO device_events (device_id, event_id, alarm_id, received_at, device_ts, kind) VALUES ($1, $2, NULL, $3, $4, $5) ON CONFLICT (device_id, event_id) DO NOTHING")
            .bind(ev.device_id)
            .bind(ev.event_id)
            .bind(now)
            .bind(ev.device_ts)
            .bind(ev.kind)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The condition behind an open alarm went away (smoke cleared, device back online).
    /// The alarm stays open for a person to resolve; the timeline records it.
    pub async fn condition_cleared(
        &self,
        d: &Decision,
        now: Millis,
    ) -> Result<Option<AlarmUpdate>> {
        let mut tx = self.begin_write().await?;
        let id: Option<String> =
            sqlx::query_scalar(&format!("SELECT id FROM alarms WHERE {OPEN_FOR_SUBJECT}"))
                .bind(&d.household)
                .bind(&d.village)
                .bind(&d.condition_key)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(id) = id else { return Ok(None) };
        let actor = d.device.as_ref().map(|dev| format!("device:{dev}"));
        let update = append(
            &mut tx,
            &id,
            now,
            "cleared",
            actor.as_deref(),
            serde_json::json!({ "detail": d.detail }),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(update))
    }

    // ----- people acting on alarms ----------------------------------------------------

    /// `on_site_by`: when the alarm re-escalates if nobody is on site (policy).
    #[allow(clippy::too_many_arguments)]
    pub async fn acknowledge(
        &self,
        alarm_id: &str,
        by: &str,
        via: &str,
        note: Option<&str>,
        on_site_by: Option<Millis>,
        now: Millis,
    ) -> Result<AlarmUpdate> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("UPDATE alarms SET state = 'acknowledged', acked_at = $1, acked_by = $2, ack_via = $3, level_deadline_at = NULL, renotify_at = NULL, response = 'seen', on_site_deadline_at = $5 WHERE id = $4 AND state IN ('raised', 'notified')")
            .bind(now)
            .bind(by)
            .bind(via)
            .bind(alarm_id)
            .bind(on_site_by)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            let a = fetch_alarm(&mut tx, alarm_id).await?;
            return Err(StoreError::Conflict(format!(
                "alarm is already {} (by {})",
                a.state,
                a.acked_by.or(a.resolved_by).unwrap_or_else(|| "hub".into())
            )));
        }
        let update = append(
            &mut tx,
            alarm_id,
            now,
            "acknowledged",
            Some(by),
            serde_json::json!({ "via": via, "note": note }),
        )
        .await?;
        Self::cancel_pending_deliveries(&mut tx, alarm_id, now).await?;
        deliveries::plan_taken(&mut tx, alarm_id, update.seq, by, now).await?;
        tx.commit().await?;
        Ok(update)
    }

    /// "On my way" (with an ETA) or "on site" from someone taking the alarm. An alarm not
    /// yet acknowledged is acknowledged by it (`via`); a resolved one is a conflict.
    /// `on_site` ends the on-site deadline; `en_route` keeps it.
    #[allow(clippy::too_many_arguments)]
    pub async fn respond(
        &self,
        alarm_id: &str,
        by: &str,
        via: &str,
        response: Response,
        note: Option<&str>,
        on_site_by: Option<Millis>,
        now: Millis,
    ) -> Result<AlarmUpdate> {
        let mut tx = self.begin_write().await?;
        let a = fetch_alarm(&mut tx, alarm_id).await?;
        if a.state == "resolved" {
            return Err(StoreError::Conflict(format!(
                "alarm is already resolved (by {})",
                a.resolved_by.unwrap_or_else(|| "hub".into())
            )));
        }
        if a.is_unacknowledged() {
            sqlx::query("UPDATE alarms SET state = 'acknowledged', acked_at = $1, acked_by = $2, ack_via = $3, level_deadline_at = NULL, renotify_at = NULL, on_site_deadline_at = $5 WHERE id = $4")
                .bind(now)
                .bind(by)
                .bind(via)
                .bind(alarm_id)
                .bind(on_site_by)
                .execute(&mut *tx)
                .await?;
            append(
                &mut tx,
                alarm_id,
                now,
                "acknowledged",
                Some(by),
                serde_json::json!({ "via": via, "note": null }),
            )
            .await?;
        }
        let (step, detail) = match response {
            Response::EnRoute { eta_at } => {
                sqlx::query("UPDATE alarms SET response = 'en_route', eta_at = $2 WHERE id = $1")
                    .bind(alarm_id)
                    .bind(eta_at)
                    .execute(&mut *tx)
                    .await?;
                (
                    "en_route",
                    serde_json::json!({ "via": via, "eta_at": eta_at, "note": note }),
                )
            }
            Response::OnSite => {
                sqlx::query("UPDATE alarms SET response = 'on_site', on_site_at = $2, on_site_deadline_at = NULL WHERE id = $1")
                    .bind(alarm_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                ("on_site", serde_json::json!({ "via": via, "note": note }))
            }
        };
        let update = append(&mut tx, alarm_id, now, step, Some(by), detail).await?;
        Self::cancel_pending_deliveries(&mut tx, alarm_id, now).await?;
        if a.is_unacknowledged() {
            deliveries::plan_taken(&mut tx, alarm_id, update.seq, by, now).await?;
        }
        tx.commit().await?;
        Ok(update)
    }

    /// Acknowledged, but nobody on site by the deadline: climb to `to_level` with a new
    /// deadline (`None` at the top). Conditional on the same deadline, so it happens once.
    /// `Ok(None)`: not taken (someone was faster); `Ok(Some(None))`: taken at the top
    /// level, where there is nothing to climb to (no `escalated` step).
    pub async fn reescalate_unattended(
        &self,
        a: &Alarm,
        to_level: i64,
        next_deadline: Option<Millis>,
        now: Millis,
    ) -> Result<Option<Option<AlarmUpdate>>> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("UPDATE alarms SET level = $1, on_site_deadline_at = $2 WHERE id = $3 AND state = 'acknowledged' AND on_site_deadline_at = $4 AND COALESCE(response, 'seen') <> 'on_site'")
            .bind(to_level)
            .bind(next_deadline)
            .bind(&a.id)
            .bind(a.on_site_deadline_at)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let update = if to_level != a.level {
            Some(append(&mut tx, &a.id, now, "escalated", Some("hub"), serde_json::json!({ "from_level": a.level, "to_level": to_level, "reason": "acknowledged but nobody on site in time" })).await?)
        } else {
            None
        };
        tx.commit().await?;
        Ok(Some(update))
    }

    pub async fn resolve(
        &self,
        alarm_id: &str,
        by: &str,
        disposition: &str,
        note: Option<&str>,
        now: Millis,
    ) -> Result<AlarmUpdate> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("UPDATE alarms SET state = 'resolved', resolved_at = $1, resolved_by = $2, disposition = $3, resolution_note = $4, acked_at = COALESCE(acked_at, $1), acked_by = COALESCE(acked_by, $2), ack_via = COALESCE(ack_via, 'resolve'), level_deadline_at = NULL, renotify_at = NULL, on_site_deadline_at = NULL WHERE id = $5 AND state <> 'resolved'")
            .bind(now)
            .bind(by)
            .bind(disposition)
            .bind(note)
            .bind(alarm_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            let a = fetch_alarm(&mut tx, alarm_id).await?;
            return Err(StoreError::Conflict(format!(
                "alarm is already resolved (by {})",
                a.resolved_by.unwrap_or_default()
            )));
        }
        let update = append(
            &mut tx,
            alarm_id,
            now,
            "resolved",
            Some(by),
            serde_json::json!({ "disposition": disposition, "note": note }),
        )
        .await?;
        Self::cancel_pending_deliveries(&mut tx, alarm_id, now).await?;
        tx.commit().await?;
        Ok(update)
    }

    // ----- escalation -----------------------------------------------------------------

    /// Who is notified at `level` for an alarm: 0 = the household's family and the
    /// village staff, 1 = town staff, 2 = district staff. Highest priority first.
    /// The household's first elder with a phone: (elder id, phone).
    pub async fn elder_phone(&self, household: &str) -> Result<Option<(String, String)>> {
        let row = sqlx::query("SELECT id, phone FROM elders WHERE household_id = $1 AND phone IS NOT NULL AND phone <> '' ORDER BY id LIMIT 1")
            .bind(household)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get("id")?, r.try_get("phone")?)))
            .transpose()
    }

    /// Ask the elder first: the alarm waits (`verify_until`), a `verifying` step is
    /// written and a call to the elder's phone is planned, in one transaction.
    pub async fn start_verification(
        &self,
        alarm_id: &str,
        elder_id: &str,
        until: Millis,
        now: Millis,
    ) -> Result<AlarmUpdate> {
        let mut tx = self.begin_write().await?;
        // The contacts' clocks (acknowledgement deadline, repeats) start when they are told.
        sqlx::query("UPDATE alarms SET verify_until = $2, level_deadline_at = level_deadline_at + ($2 - $3), renotify_at = renotify_at + ($2 - $3) WHERE id = $1")
            .bind(alarm_id)
            .bind(until)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let update = append(
            &mut tx,
            alarm_id,
            now,
            "verifying",
            Some("hub"),
            serde_json::json!({ "elder": elder_id, "until": until }),
        )
        .await?;
        deliveries::plan_elder_call(&mut tx, alarm_id, update.seq, elder_id, now).await?;
        tx.commit().await?;
        Ok(update)
    }

    /// End the wait for the elder; true for the one caller that ended it.
    pub async fn end_verification(&self, alarm_id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE alarms SET verify_until = NULL WHERE id = $1 AND verify_until IS NOT NULL",
        )
        .bind(alarm_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The family contacts of a household (not rostered), highest priority first.
    pub async fn household_contacts(&self, household: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT id FROM contacts WHERE scope_kind = 'household' AND scope_id = $1 ORDER BY priority DESC, id")
            .bind(household)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Every contact of a level (no roster): the fallback when a roster has a gap.
    pub async fn recipients(&self, a: &Alarm, level: i64) -> Result<Vec<String>> {
        let q = match level {
            // A grouped incident (no household) goes to village and town duty at once.
            0 => sqlx::query("SELECT id FROM contacts WHERE (scope_kind = 'household' AND scope_id = $1) OR (scope_kind = 'village' AND scope_id = $2) OR ($1 IS NULL AND scope_kind = 'town' AND scope_id = $3) ORDER BY priority DESC, id").bind(&a.household_id).bind(&a.village_id).bind(&a.town_id),
            1 => sqlx::query("SELECT id FROM contacts WHERE scope_kind = 'town' AND scope_id = $1 ORDER BY priority DESC, id").bind(&a.town_id),
            _ => sqlx::query("SELECT id FROM contacts WHERE scope_kind = 'district' ORDER BY priority DESC, id"),
        };
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    /// Record that the current level was notified. A first notification moves the
    /// alarm from `raised` to `notified`; `renotify_at` is the next repeat (or None).
    ///
    /// The deliveries the step asks for on `channels` (SMS, voice, webhook) are planned in
    /// the same transaction: a notification is never lost between the two.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_notified(
        &self,
        alarm_id: &str,
        level: i64,
        recipients: &[String],
        channel: &str,
        reason: &str,
        channels: &[crate::delivery::ChannelKind],
        now: Millis,
    ) -> Result<(AlarmUpdate, usize)> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE alarms SET state = 'notified' WHERE id = $1 AND state = 'raised'")
            .bind(alarm_id)
            .execute(&mut *tx)
            .await?;
        let update = append(&mut tx, alarm_id, now, "notified", Some("hub"), serde_json::json!({ "level": level, "recipients": recipients, "channel": channel, "reason": reason })).await?;
        let planned =
            deliveries::plan(&mut tx, alarm_id, update.seq, recipients, channels, now).await?;
        tx.commit().await?;
        Ok((update, planned))
    }

    /// Earliest pending escalation deadline of any open alarm.
    pub async fn next_deadline(&self) -> Result<Option<Millis>> {
        let t: Option<i64> = sqlx::query_scalar("SELECT MIN(t) FROM (SELECT MIN(level_deadline_at) AS t FROM alarms WHERE level_deadline_at IS NOT NULL UNION ALL SELECT MIN(renotify_at) AS t FROM alarms WHERE renotify_at IS NOT NULL UNION ALL SELECT MIN(overdue_at) AS t FROM alarms WHERE overdue_notified = 0 AND state <> 'resolved' UNION ALL SELECT MIN(on_site_deadline_at) AS t FROM alarms WHERE state = 'acknowledged' UNION ALL SELECT MIN(verify_until) AS t FROM alarms WHERE state <> 'resolved') AS d")
            .fetch_one(&self.pool)
            .await?;
        Ok(t)
    }

    pub async fn due_alarms(&self, now: Millis) -> Result<Vec<Alarm>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {ALARM_COLUMNS} FROM alarms WHERE state <> 'resolved' AND (level_deadline_at <= $1 OR renotify_at <= $1 OR (overdue_notified = 0 AND overdue_at <= $1) OR (state = 'acknowledged' AND on_site_deadline_at <= $1) OR verify_until <= $1) ORDER BY raised_at"
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Climb one level. Conditional on the alarm still being unacknowledged at
    /// `from_level` with the same deadline, so a step is taken at most once even if two
    /// schedulers race or a restarted hub re-reads the same row.
    pub async fn escalate(
        &self,
        a: &Alarm,
        to_level: i64,
        level_deadline_at: Option<i64>,
        renotify_at: Option<i64>,
        now: Millis,
    ) -> Result<Option<AlarmUpdate>> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("UPDATE alarms SET level = $1, level_deadline_at = $2, renotify_at = $3, repeats_at_level = 0 WHERE id = $4 AND level = $5 AND level_deadline_at = $6 AND state IN ('raised', 'notified')")
            .bind(to_level)
            .bind(level_deadline_at)
            .bind(renotify_at)
            .bind(&a.id)
            .bind(a.level)
            .bind(a.level_deadline_at)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let update = append(&mut tx, &a.id, now, "escalated", Some("hub"), serde_json::json!({ "from_level": a.level, "to_level": to_level, "reason": "not acknowledged in time" })).await?;
        tx.commit().await?;
        Ok(Some(update))
    }

    /// Move the repeat-notification clock; returns false if someone else moved it first.
    pub async fn bump_renotify(&self, a: &Alarm, next: Option<i64>) -> Result<bool> {
        let done = sqlx::query("UPDATE alarms SET renotify_at = $1, repeats_at_level = repeats_at_level + 1 WHERE id = $2 AND renotify_at = $3 AND state IN ('raised', 'notified')")
            .bind(next)
            .bind(&a.id)
            .bind(a.renotify_at)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn mark_overdue(&self, a: &Alarm, now: Millis) -> Result<Option<AlarmUpdate>> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("UPDATE alarms SET overdue_notified = 1 WHERE id = $1 AND overdue_notified = 0 AND state <> 'resolved'")
            .bind(&a.id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let update = append(
            &mut tx,
            &a.id,
            now,
            "overdue",
            Some("hub"),
            serde_json::json!({ "reason": "not resolved in time", "raised_at": a.raised_at }),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(update))
    }

    // ----- reading ----------------------------------------------------------------------

    pub async fn alarm(&self, id: &str) -> Result<Alarm> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query_as(&format!("SELECT {ALARM_COLUMNS} FROM alarms WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("alarm {id}")))
    }

    pub async fn timeline(&self, alarm_id: &str) -> Result<Vec<TimelineEntry>> {
        let rows = sqlx::query("SELECT seq, alarm_id, at, step, actor, detail FROM alarm_timeline WHERE alarm_id = $1 ORDER BY seq")
            .bind(alarm_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(timeline_row).collect()
    }

    pub async fn list_alarms(&self, scope: &Scope, f: &AlarmFilter) -> Result<Vec<Alarm>> {
        let mut qb = sqlx::QueryBuilder::<Sqlite>::new(format!(
            "SELECT {ALARM_COLUMNS} FROM alarms WHERE 1 = 1"
        ));
        push_scope(&mut qb, scope);
        if f.open_only {
            qb.push(" AND state <> 'resolved'");
        }
        for (col, val) in [
            ("state", &f.state),
            ("severity", &f.severity),
            ("town_id", &f.town),
            ("village_id", &f.village),
            ("household_id", &f.household),
        ] {
            if let Some(v) = val {
                qb.push(format!(" AND {col} = ")).push_bind(v.clone());
            }
        }
        if f.newest_first {
            qb.push(" ORDER BY raised_at DESC, id LIMIT ");
        } else {
            qb.push(" ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, raised_at LIMIT ");
        }
        qb.push_bind(f.limit.unwrap_or(200).clamp(1, 1000));
        Ok(qb.build_query_as().fetch_all(&self.pool).await?)
    }

    /// Timeline steps after `since_seq` within a scope, oldest first: how a websocket
    /// client that was disconnected catches up.
    pub async fn updates_since(
        &self,
        scope: &Scope,
        since_seq: i64,
        limit: i64,
    ) -> Result<Vec<AlarmUpdate>> {
        // One query: the step and its alarm (as it is now) side by side.
        let alarm_cols: Vec<String> = ALARM_COLUMNS
            .split(", ")
            .map(|c| format!("a.{c}"))
            .collect();
        let mut qb = sqlx::QueryBuilder::<Sqlite>::new(format!(
            "SELECT t.seq AS t_seq, t.at AS t_at, t.step AS t_step, t.actor AS t_actor, t.detail AS t_detail, {} FROM alarm_timeline t JOIN alarms a ON a.id = t.alarm_id WHERE t.seq > ",
            alarm_cols.join(", ")
        ));
        qb.push_bind(since_seq);
        push_scope(&mut qb, scope);
        qb.push(" ORDER BY t.seq LIMIT ")
            .push_bind(limit.clamp(1, 5000));
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let detail: String = r.try_get("t_detail")?;
                Ok(AlarmUpdate {
                    seq: r.try_get("t_seq")?,
                    step: r.try_get("t_step")?,
                    at: r.try_get("t_at")?,
                    actor: r.try_get("t_actor")?,
                    detail: serde_json::from_str(&detail)
                        .unwrap_or(serde_json::Value::String(detail)),
                    alarm: <Alarm as sqlx::FromRow<_>>::from_row(r)?,
                })
            })
            .collect()
    }

    pub async fn latest_seq(&self) -> Result<i64> {
        let s: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM alarm_timeline")
            .fetch_one(&self.pool)
            .await?;
        Ok(s.unwrap_or(0))
    }

    // ----- rule engine memory -----------------------------------------------------------

    pub async fn load_rule_state(&self) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT state FROM rule_state WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn save_rule_state(&self, state: &str, now: Millis) -> Result<()> {
        sqlx::query("INSERT INTO rule_state (id, state, saved_at) VALUES (1, $1, $2) ON CONFLICT (id) DO UPDATE SET state = excluded.state, saved_at = excluded.saved_at")
            .bind(state)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

fn push_scope(qb: &mut sqlx::QueryBuilder<'_, Sqlite>, scope: &Scope) {
    push_scope_in(qb, scope, ["town_id", "village_id", "household_id"]);
}

/// `AND <column> ...` restricting a query to `scope`; `cols` name the town, village and
/// household columns.
fn push_scope_in(qb: &mut sqlx::QueryBuilder<'_, Sqlite>, scope: &Scope, cols: [&str; 3]) {
    let [town, village, household] = cols;
    match scope {
        Scope::District => {}
        Scope::Town(t) => {
            qb.push(format!(" AND {town} = ")).push_bind(t.clone());
        }
        Scope::Village(v) => {
            qb.push(format!(" AND {village} = ")).push_bind(v.clone());
        }
        Scope::Household(h) => {
            qb.push(format!(" AND {household} = ")).push_bind(h.clone());
        }
        Scope::Households(hs) if hs.is_empty() => {
            qb.push(" AND 1 = 0");
        }
        Scope::Households(hs) => {
            qb.push(format!(" AND {household} IN ("));
            let mut list = qb.separated(", ");
            for h in hs {
                list.push_bind(h.clone());
            }
            qb.push(")");
        }
    }
}

fn timeline_row(r: &sqlx::sqlite::SqliteRow) -> Result<TimelineEntry> {
    let detail: String = r.try_get("detail")?;
    Ok(TimelineEntry {
        seq: r.try_get("seq")?,
        alarm_id: r.try_get("alarm_id")?,
        at: r.try_get("at")?,
        step: r.try_get("step")?,
        actor: r.try_get("actor")?,
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
    })
}

async fn fetch_alarm(tx: &mut Transaction<'_, Sqlite>, id: &str) -> Result<Alarm> {
    sqlx::query_as(&format!("SELECT {ALARM_COLUMNS} FROM alarms WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("alarm {id}")))
}

/// Append a timeline step and return it with the alarm as it now stands.
async fn append(
    tx: &mut Transaction<'_, Sqlite>,
    alarm_id: &str,
    at: Millis,
    step: &str,
    actor: Option<&str>,
    detail: serde_json::Value,
) -> Result<AlarmUpdate> {
    debug_assert!(
        TIMELINE_STEPS.contains(&step),
        "timeline step {step} missing from TIMELINE_STEPS"
    );
    let seq: i64 = sqlx::query_scalar("INSERT INTO alarm_timeline (alarm_id, at, step, actor, detail) VALUES ($1, $2, $3, $4, $5) RETURNING seq")
        .bind(alarm_id)
        .bind(at)
        .bind(step)
        .bind(actor)
        .bind(detail.to_string())
        .fetch_one(&mut **tx)
        .await?;
    let alarm = fetch_alarm(tx, alarm_id).await?;
    Ok(AlarmUpdate {
        seq,
        step: step.to_owned(),
        at,
        actor: actor.map(str::to_owned),
        detail,
        alarm,
    })
}
