//! Importing the district from CSV files (the bureau keeps a spreadsheet, not an API).
//!
//! A directory holds `towns.csv`, `villages.csv`, `households.csv`, `elders.csv`,
//! `devices.csv` and `contacts.csv` (any may be absent). Every row is validated — ids, required fields,
//! references to rows in the same import or already in the database — and every problem
//! is reported as `file:line: reason`. Nothing is written unless every row is valid, and
//! then everything is written in one transaction.
//!
//! The files are read and written through [`crate::spreadsheet`]: the export puts an
//! apostrophe in front of every cell a spreadsheet would take for a formula, and the
//! import removes it; control characters, a lone CR and broken quoting are refused.
//!
//! Duty rosters come in two more files, `rosters.csv` (weekly shifts and fallbacks) and
//! `roster_overrides.csv` (holiday plans, sick leave), validated with the rest
//! ([`load_rosters`]) and written in a second transaction right after the district's
//! (see [`apply`]); docs/operations.md describes the columns.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::ingest::contract::DeviceId;

#[derive(Debug, Clone, Deserialize, Serialize, sqlx::FromRow)]
pub struct TownRow {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, sqlx::FromRow)]
pub struct VillageRow {
    pub id: String,
    pub town_id: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, sqlx::FromRow)]
pub struct HouseholdRow {
    pub id: String,
    pub village_id: String,
    pub address: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, sqlx::FromRow)]
pub struct ElderRow {
    pub id: String,
    pub household_id: String,
    pub name: String,
    #[serde(default)]
    pub phone: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, sqlx::FromRow)]
pub struct DeviceRow {
    pub id: String,
    pub household_id: String,
    pub kind: String,
    #[serde(default)]
    pub vendor: Option<String>,
    /// Optional: without it a secret is generated and reported once.
    #[serde(default)]
    pub secret: Option<String>,
}

/// A person who is notified and may act: family (scope `household:<id>`) or staff
/// (`village:<id>`, `town:<id>`, `district`).
#[derive(Debug, Clone, Deserialize, Serialize, sqlx::FromRow)]
pub struct ContactRow {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub phone: Option<String>,
    /// family | village | town | district
    pub role: String,
    /// household:<id> | village:<id> | town:<id> | district
    pub scope: String,
    #[serde(default)]
    pub priority: Option<i64>,
    /// The account this contact is (logs in, holds API tokens); empty: the contact's own
    /// id. Rows of one family member for several homes share an account, which then
    /// sees all of them.
    #[serde(default)]
    pub account: Option<String>,
    /// How to reach the contact per severity, in order: `critical=voice,sms;warning=sms;info=`
    /// (empty: the default — critical voice then SMS, warning SMS, info the board only).
    #[serde(default)]
    pub channels: Option<String>,
    /// `zh-CN` (empty) or `en`: the language of SMS and calls.
    #[serde(default)]
    pub language: Option<String>,
    /// Optional API token of the contact's account: without it a new contact's account
    /// gets one, reported once.
    #[serde(default)]
    pub token: Option<String>,
}

/// A validated import, ready to be written.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub towns: Vec<TownRow>,
    pub villages: Vec<VillageRow>,
    pub households: Vec<HouseholdRow>,
    pub elders: Vec<ElderRow>,
    pub devices: Vec<DeviceRow>,
    pub contacts: Vec<ContactRow>,
}

/// One line of `rosters.csv`: a shift of an area's weekly pattern, or (with `days`
/// `fallback` and no times) the area's fallback contact.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RosterRow {
    /// village:<id> | town:<id> | district
    pub area: String,
    /// `mon-fri`, `sat sun`, `daily`, ... or `fallback`
    pub days: String,
    /// `HH:MM`, local time
    #[serde(default)]
    pub start: Option<String>,
    /// `HH:MM`; not after `start`: the next day
    #[serde(default)]
    pub end: Option<String>,
    /// A staff contact of the area.
    pub contact: String,
}

/// One line of `roster_overrides.csv`: a holiday plan's shift, or a replacement.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RosterOverrideRow {
    pub area: String,
    /// First date, `YYYY-MM-DD`.
    pub from: String,
    /// Last date (inclusive); empty: `from`.
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub end: Option<String>,
    pub contact: String,
    /// Sick leave: whose shifts `contact` takes on those dates.
    #[serde(default)]
    pub replaces: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

/// An area's weekly pattern and fallback, replacing what it had.
#[derive(Debug, Clone)]
pub struct AreaRoster {
    pub area: crate::store::Scope,
    pub fallback: Option<String>,
    pub shifts: Vec<crate::roster::Shift>,
}

/// An override from `roster_overrides.csv`.
#[derive(Debug, Clone)]
pub struct ImportedOverride {
    pub area: crate::store::Scope,
    pub rule: crate::roster::Override,
    pub note: String,
}

/// Validated roster files, ready to be written.
#[derive(Debug, Default, Clone)]
pub struct RosterBatch {
    /// The areas named in `rosters.csv`, in file order.
    pub rosters: Vec<AreaRoster>,
    /// The areas named in `roster_overrides.csv`: their imported overrides are replaced
    /// by `overrides` (overrides set over REST stay).
    pub override_areas: Vec<crate::store::Scope>,
    pub overrides: Vec<ImportedOverride>,
}

impl RosterBatch {
    pub fn is_empty(&self) -> bool {
        self.rosters.is_empty() && self.override_areas.is_empty()
    }
}

/// Every problem found, one per line, `file:line: reason`.
#[derive(Debug, thiserror::Error)]
#[error("import refused, nothing was written:\n{}", .0.join("\n"))]
pub struct ImportErrors(pub Vec<String>);

/// The device kinds a row may name: those of the kind table (`ingest::kinds`), which
/// says what each may send.
pub use crate::ingest::kinds::DEVICE_KINDS;

fn strip<T>(rows: Vec<(u64, T)>) -> Vec<T> {
    rows.into_iter().map(|(_, r)| r).collect()
}

/// Where the files come from: a directory, or (the demo) text built into the binary.
/// `None`: the file is absent.
pub type Files<'a> = dyn Fn(&str) -> Option<std::io::Result<Vec<u8>>> + Send + Sync + 'a;

/// Read one file's rows (see [`crate::spreadsheet::read_rows`]: malformed text —
/// control characters, a lone CR, an unterminated quote — refuses the whole file, and
/// every cell loses the apostrophe the export put in front of it). Every refusal of
/// malformed text is logged (file, line and column number only: never the cell, which
/// may be a name or an address) and counted in
/// `anxin_import_malformed_total{reason}`.
fn read<T: DeserializeOwned>(
    files: &Files<'_>,
    file: &str,
    errors: &mut Vec<String>,
) -> Vec<(u64, T)> {
    let bytes = match files(file) {
        None => return Vec::new(),
        Some(Ok(b)) => b,
        Some(Err(e)) => {
            errors.push(format!("{file}: {e}"));
            return Vec::new();
        }
    };
    match crate::spreadsheet::read_rows(file, &bytes, errors) {
        Ok(rows) => rows,
        Err(problems) => {
            for (p, text) in problems {
                metrics::counter!("anxin_import_malformed_total", "reason" => p.what.code())
                    .increment(1);
                tracing::warn!(
                    file,
                    line = p.line,
                    column = p.column.map(|c| c + 1),
                    reason = p.what.code(),
                    "import refused: malformed CSV"
                );
                errors.push(text);
            }
            Vec::new()
        }
    }
}

/// The rows of a file that another check reads for its references only: its problems
/// are reported (and counted) by the check that owns the file.
fn read_quietly<T: DeserializeOwned>(files: &Files<'_>, file: &str) -> Vec<(u64, T)> {
    let bytes = match files(file) {
        Some(Ok(b)) => b,
        None | Some(Err(_)) => return Vec::new(),
    };
    crate::spreadsheet::read_rows(file, &bytes, &mut Vec::new()).unwrap_or_default()
}

/// What an import wrote, and the credentials it generated (to be shown once).
#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    pub towns: usize,
    pub villages: usize,
    pub households: usize,
    pub elders: usize,
    pub devices: usize,
    pub contacts: usize,
    /// (device id, secret) for new devices whose row had none.
    pub device_secrets: Vec<(String, String)>,
    /// (contact id, token) for new contacts whose row had none.
    pub contact_tokens: Vec<(String, String)>,
    /// Areas whose weekly roster was replaced (`rosters.csv`), their shifts, and the
    /// overrides imported (`roster_overrides.csv`).
    pub rosters: usize,
    pub roster_shifts: usize,
    pub roster_overrides: usize,
}

impl ImportReport {
    /// `2 towns, 3 villages, ...`
    pub fn counts(&self) -> String {
        let mut s = format!(
            "{} towns, {} villages, {} households, {} elders, {} devices, {} contacts",
            self.towns, self.villages, self.households, self.elders, self.devices, self.contacts
        );
        if self.rosters + self.roster_overrides > 0 {
            s.push_str(&format!(
                ", {} rosters ({} shifts), {} roster overrides",
                self.rosters, self.roster_shifts, self.roster_overrides
            ));
        }
        s
    }
}

/// Why an import did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Invalid(#[from] ImportErrors),
    #[error("storing the import failed: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("hashing a secret failed: {0}")]
    Hash(String),
    /// The district files were written; the roster files, in their own transaction, not.
    #[error("the district files were imported, but storing the roster files failed ({0}); import the roster files again")]
    Rosters(crate::store::StoreError),
}

/// Validate `files` against the database and write everything in one transaction (the
/// CLI's `hub admin import` and the REST import). Secrets: a row's own, else
/// `default_secret`, else an existing device keeps its secret, else a new one is
/// generated; likewise tokens for contacts. Each distinct secret is hashed once.
pub async fn apply(
    store: &crate::store::Store,
    files: &Files<'_>,
    default_secret: Option<&str>,
    now: alert_rules::Millis,
) -> Result<ImportReport, ApplyError> {
    let known = [
        ("towns", store.ids("towns").await?),
        ("villages", store.ids("villages").await?),
        ("households", store.ids("households").await?),
    ];
    let lookup =
        |table: &str, id: &str| known.iter().any(|(t, ids)| *t == table && ids.contains(id));
    let revoked = store.revoked_devices().await?;
    let checked = load_checked(files, &lookup, &|id| revoked.get(id).copied());
    let contact_scopes = store.contact_scopes().await?;
    let with_roster = store.areas_with_roster().await?;
    let rosters = load_rosters(
        files,
        &lookup,
        &|id| contact_scopes.get(id).cloned(),
        &|area| with_roster.contains(&area.to_string()),
    );
    let (batch, rosters) = match (checked, rosters) {
        (Ok(b), Ok(r)) => (b, r),
        (b, r) => {
            let mut all = b.err().map(|e| e.0).unwrap_or_default();
            all.extend(r.err().map(|e| e.0).unwrap_or_default());
            return Err(ImportErrors(all).into());
        }
    };
    let existing_devices = store.ids("devices").await?;
    let existing_contacts = store.ids("contacts").await?;
    let mut report = ImportReport::default();
    let mut by_secret: HashMap<String, String> = Default::default();
    let mut hashes = Vec::with_capacity(batch.devices.len());
    for d in &batch.devices {
        let secret = match d
            .secret
            .as_deref()
            .filter(|s| !s.is_empty())
            .or(default_secret)
        {
            Some(s) => s.to_owned(),
            // An exported sheet has no secrets: an existing device keeps its own.
            None if existing_devices.contains(&d.id) => {
                hashes.push(None);
                continue;
            }
            None => {
                let s = crate::secrets::random_token();
                report.device_secrets.push((d.id.clone(), s.clone()));
                s
            }
        };
        let hash = match by_secret.get(&secret) {
            Some(h) => h.clone(),
            None => {
                let s2 = secret.clone();
                let h = tokio::task::spawn_blocking(move || crate::secrets::hash_secret(&s2))
                    .await
                    .map_err(|e| ApplyError::Hash(e.to_string()))?
                    .map_err(|e| ApplyError::Hash(e.to_string()))?;
                by_secret.insert(secret, h.clone());
                h
            }
        };
        hashes.push(Some(hash));
    }
    // A new account gets one token (on its first row), unless the file gives one.
    let account_of = |c: &ContactRow| {
        c.account
            .clone()
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| c.id.clone())
    };
    let mut has_token: HashSet<String> = store.ids("accounts").await?;
    has_token.extend(
        batch
            .contacts
            .iter()
            .filter(|c| c.token.as_deref().is_some_and(|t| !t.is_empty()))
            .map(account_of),
    );
    let tokens: Vec<Option<String>> = batch
        .contacts
        .iter()
        .map(|c| match c.token.as_deref().filter(|t| !t.is_empty()) {
            Some(t) => Some(t.to_owned()),
            None if existing_contacts.contains(&c.id) || !has_token.insert(account_of(c)) => None,
            None => {
                let t = crate::secrets::random_token();
                report.contact_tokens.push((c.id.clone(), t.clone()));
                Some(t)
            }
        })
        .collect();
    store.import(&batch, &hashes, &tokens, now).await?;
    if !rosters.is_empty() {
        // A second transaction: `Store::import` owns the first. Every row was validated
        // above, so only a database failure can stop this one (reported as such).
        store
            .import_rosters(&rosters, now)
            .await
            .map_err(ApplyError::Rosters)?;
    }
    report.rosters = rosters.rosters.len();
    report.roster_shifts = rosters.rosters.iter().map(|r| r.shifts.len()).sum();
    report.roster_overrides = rosters.overrides.len();
    report.towns = batch.towns.len();
    report.villages = batch.villages.len();
    report.households = batch.households.len();
    report.elders = batch.elders.len();
    report.devices = batch.devices.len();
    report.contacts = batch.contacts.len();
    Ok(report)
}

/// The six files as text (for the REST export), written like [`write_dir`]'s.
pub fn to_texts(
    batch: &Batch,
) -> Result<std::collections::BTreeMap<&'static str, String>, csv::Error> {
    fn text<T: Serialize>(rows: &[T]) -> Result<String, csv::Error> {
        let mut w = crate::spreadsheet::Writer::from_writer(Vec::new());
        for r in rows {
            w.serialize(r)?;
        }
        let bytes = w.into_inner()?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
    let mut m = std::collections::BTreeMap::new();
    m.insert("towns.csv", text(&batch.towns)?);
    m.insert("villages.csv", text(&batch.villages)?);
    m.insert("households.csv", text(&batch.households)?);
    m.insert("elders.csv", text(&batch.elders)?);
    m.insert("devices.csv", text(&batch.devices)?);
    m.insert("contacts.csv", text(&batch.contacts)?);
    Ok(m)
}

/// Write `batch` as the six CSV files `load` reads (what the bureau edits in a
/// spreadsheet and imports again). Secrets and tokens are never exported — only their
/// hashes are stored — so those columns are empty; importing such a row for a device or
/// contact that exists keeps its current secret or token.
///
/// The files are opened in Excel or WPS: every cell that a spreadsheet would read as a
/// formula gets an apostrophe in front (see [`crate::spreadsheet`]); the import removes
/// it again, so an export imports back to the same data.
pub fn write_dir(dir: &Path, batch: &Batch) -> std::io::Result<()> {
    fn write<T: Serialize>(dir: &Path, file: &str, rows: &[T]) -> std::io::Result<()> {
        let mut w =
            crate::spreadsheet::Writer::from_path(dir.join(file)).map_err(std::io::Error::other)?;
        for r in rows {
            w.serialize(r).map_err(std::io::Error::other)?;
        }
        w.flush()
    }
    std::fs::create_dir_all(dir)?;
    write(dir, "towns.csv", &batch.towns)?;
    write(dir, "villages.csv", &batch.villages)?;
    write(dir, "households.csv", &batch.households)?;
    write(dir, "elders.csv", &batch.elders)?;
    write(dir, "devices.csv", &batch.devices)?;
    write(dir, "contacts.csv", &batch.contacts)?;
    Ok(())
}

/// Read and validate a directory. `known` answers "does this id already exist in the
/// database?" for references that are not in the files themselves.
pub fn load(dir: &Path, known: &dyn Fn(&str, &str) -> bool) -> Result<Batch, ImportErrors> {
    let files = |name: &str| {
        let path = dir.join(name);
        path.exists().then(|| std::fs::read(&path))
    };
    load_from(&files, known)
}

/// The same, from any source of files (the demo district is built in).
pub fn load_from(
    files: &Files<'_>,
    known: &dyn Fn(&str, &str) -> bool,
) -> Result<Batch, ImportErrors> {
    load_checked(files, known, &|_| None)
}

/// The same, and `revoked` answers "was this device revoked, and when?": a row for a
/// revoked device is an error. An import never brings a revoked device back (that takes
/// an explicit `POST /api/devices` with `"reinstate": true`), and silently keeping it
/// revoked would leave the sheet saying the device works when it cannot connect.
pub fn load_checked(
    files: &Files<'_>,
    known: &dyn Fn(&str, &str) -> bool,
    revoked: &dyn Fn(&str) -> Option<alert_rules::Millis>,
) -> Result<Batch, ImportErrors> {
    let mut errors = Vec::new();
    let towns = read::<TownRow>(files, "towns.csv", &mut errors);
    let villages = read::<VillageRow>(files, "villages.csv", &mut errors);
    let households = read::<HouseholdRow>(files, "households.csv", &mut errors);
    let elders = read::<ElderRow>(files, "elders.csv", &mut errors);
    let devices = read::<DeviceRow>(files, "devices.csv", &mut errors);
    let contacts = read::<ContactRow>(files, "contacts.csv", &mut errors);

    let mut check_ids = |file: &str, ids: Vec<(u64, &str)>| -> HashSet<String> {
        let mut seen = HashSet::new();
        for (line, id) in ids {
            if let Err(e) = DeviceId::parse(id) {
                errors.push(format!("{file}:{line}: id {id:?}: {e}"));
            } else if !seen.insert(id.to_owned()) {
                errors.push(format!("{file}:{line}: duplicate id {id:?}"));
            }
        }
        seen
    };
    let town_ids = check_ids(
        "towns.csv",
        towns.iter().map(|(l, r)| (*l, r.id.as_str())).collect(),
    );
    let village_ids = check_ids(
        "villages.csv",
        villages.iter().map(|(l, r)| (*l, r.id.as_str())).collect(),
    );
    let household_ids = check_ids(
        "households.csv",
        households
            .iter()
            .map(|(l, r)| (*l, r.id.as_str()))
            .collect(),
    );
    check_ids(
        "elders.csv",
        elders.iter().map(|(l, r)| (*l, r.id.as_str())).collect(),
    );
    check_ids(
        "devices.csv",
        devices.iter().map(|(l, r)| (*l, r.id.as_str())).collect(),
    );
    check_ids(
        "contacts.csv",
        contacts.iter().map(|(l, r)| (*l, r.id.as_str())).collect(),
    );

    let mut refers = |file: &str, line: u64, table: &str, id: &str, here: &HashSet<String>| {
        if !here.contains(id) && !known(table, id) {
            errors.push(format!(
                "{file}:{line}: unknown {} {id:?}",
                table.trim_end_matches('s')
            ));
        }
    };
    for (line, r) in &villages {
        refers("villages.csv", *line, "towns", &r.town_id, &town_ids);
    }
    for (line, r) in &households {
        refers(
            "households.csv",
            *line,
            "villages",
            &r.village_id,
            &village_ids,
        );
    }
    for (line, r) in &elders {
        refers(
            "elders.csv",
            *line,
            "households",
            &r.household_id,
            &household_ids,
        );
    }
    for (line, r) in &devices {
        refers(
            "devices.csv",
            *line,
            "households",
            &r.household_id,
            &household_ids,
        );
    }
    for (line, r) in &towns {
        if r.name.is_empty() {
            errors.push(format!("towns.csv:{line}: name is empty"));
        }
    }
    for (line, r) in &devices {
        if let Some(at) = revoked(&r.id) {
            errors.push(format!(
                "devices.csv:{line}: device {:?} was revoked on {}; an import does not bring it back. \
                 Remove the row, or reinstate the device first (POST /api/devices with \"reinstate\": true; it gets a new secret)",
                r.id,
                crate::store::utc_time(at)
            ));
        }
        if !DEVICE_KINDS.contains(&r.kind.as_str()) {
            errors.push(format!(
                "devices.csv:{line}: kind {:?} is not one of {}",
                r.kind,
                DEVICE_KINDS.join(", ")
            ));
        }
    }
    let bad_phone = |p: &str| {
        let digits = p.strip_prefix('+').unwrap_or(p);
        digits.len() < 5 || digits.len() > 15 || !digits.chars().all(|c| c.is_ascii_digit())
    };
    for (line, r) in &elders {
        if r.phone
            .as_deref()
            .is_some_and(|p| !p.is_empty() && bad_phone(p))
        {
            errors.push(format!(
                "elders.csv:{line}: phone must be 5-15 digits with an optional leading +"
            ));
        }
    }
    // Rows that share an account: one role, and staff one scope (an account has one).
    let mut accounts: HashMap<&str, (u64, &str, &str)> = HashMap::new();
    let mut tokens: HashMap<&str, u64> = HashMap::new();
    let mut account_tokens: HashMap<&str, u64> = HashMap::new();
    for (line, r) in &contacts {
        let account = r.account.as_deref().filter(|a| !a.is_empty());
        if let Some(a) = account {
            if let Err(e) = DeviceId::parse(a) {
                errors.push(format!(
                    "contacts.csv:{line}: account {a:?}: {}",
                    e.replace("device id", "id")
                ));
            }
        }
        let account = account.unwrap_or(&r.id);
        match accounts.get(account) {
            Some((first, role, _)) if *role != r.role => errors.push(format!(
                "contacts.csv:{line}: account {account:?} is a {role} account (line {first}); one account has one role"
            )),
            Some((first, _, scope)) if r.role != "family" && *scope != r.scope => errors.push(format!(
                "contacts.csv:{line}: account {account:?} already has scope {scope:?} (line {first}); a staff account has one scope"
            )),
            Some(_) => {}
            None => {
                accounts.insert(account, (*line, &r.role, &r.scope));
            }
        }
        if let Some(t) = r.token.as_deref().filter(|t| !t.is_empty()) {
            if let Some(first) = tokens.insert(t, *line) {
                errors.push(format!(
                    "contacts.csv:{line}: the same token as line {first}; every token must be different"
                ));
            } else if let Some(first) = account_tokens.insert(account, *line) {
                errors.push(format!(
                    "contacts.csv:{line}: account {account:?} already gets a token on line {first}; give one token per account"
                ));
            }
        }
    }
    for (line, r) in &contacts {
        if let Some(c) = r.channels.as_deref().filter(|c| !c.trim().is_empty()) {
            if let Err(e) = crate::delivery::contact_channels(Some(c), alert_rules::Severity::Info)
            {
                errors.push(format!("contacts.csv:{line}: channels: {e}"));
            }
        }
        if let Some(l) = r.language.as_deref().filter(|l| !l.trim().is_empty()) {
            if crate::twilio::twiml::Language::parse(l).is_none() {
                errors.push(format!(
                    "contacts.csv:{line}: language {l:?} is not zh-CN or en"
                ));
            }
        }
        if r.name.is_empty() {
            errors.push(format!("contacts.csv:{line}: name is empty"));
        }
        if r.phone
            .as_deref()
            .is_some_and(|p| !p.is_empty() && bad_phone(p))
        {
            errors.push(format!(
                "contacts.csv:{line}: phone must be 5-15 digits with an optional leading +"
            ));
        }
        if r.token
            .as_deref()
            .is_some_and(|t| !t.is_empty() && t.len() < 8)
        {
            errors.push(format!(
                "contacts.csv:{line}: token must be at least 8 characters (leave it empty to generate one)"
            ));
        }
        let scope = match crate::store::Scope::parse(&r.scope) {
            Ok(s) => s,
            Err(e) => {
                errors.push(format!("contacts.csv:{line}: {e}"));
                continue;
            }
        };
        let (kind, _) = scope.parts();
        let want = match r.role.as_str() {
            "family" => "household",
            "village" | "town" | "district" => r.role.as_str(),
            other => {
                errors.push(format!(
                    "contacts.csv:{line}: role {other:?} is not one of family, village, town, district"
                ));
                continue;
            }
        };
        if kind != want {
            errors.push(format!(
                "contacts.csv:{line}: a {} contact needs a {want} scope, not {:?}",
                r.role, r.scope
            ));
            continue;
        }
        let (table, id, here) = match &scope {
            crate::store::Scope::Household(h) => ("households", h, &household_ids),
            crate::store::Scope::Village(v) => ("villages", v, &village_ids),
            crate::store::Scope::Town(t) => ("towns", t, &town_ids),
            // (`Scope::parse` never makes a multi-household scope.)
            crate::store::Scope::District | crate::store::Scope::Households(_) => continue,
        };
        if !here.contains(id.as_str()) && !known(table, id) {
            errors.push(format!(
                "contacts.csv:{line}: unknown {} {id:?} in scope",
                table.trim_end_matches('s')
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ImportErrors(errors));
    }
    Ok(Batch {
        towns: strip(towns),
        villages: strip(villages),
        households: strip(households),
        elders: strip(elders),
        devices: strip(devices),
        contacts: strip(contacts),
    })
}

/// A staff area written in a roster file: `village:<id>`, `town:<id>` or `district`.
fn staff_area(text: &str) -> Result<crate::store::Scope, String> {
    use crate::store::Scope;
    match Scope::parse(text.trim()) {
        Ok(s @ (Scope::Village(_) | Scope::Town(_) | Scope::District)) => Ok(s),
        _ => Err(format!(
            "area must be village:<id>, town:<id> or district, got {text:?}"
        )),
    }
}

/// Read and validate `rosters.csv` and `roster_overrides.csv` (either may be absent;
/// neither: an empty batch). References are checked against the import's own
/// `towns.csv`, `villages.csv` and `contacts.csv` first, then against the database:
/// `known` as for [`load`], `contact_scope` gives a contact's scope in the database, and
/// `has_roster` says whether an area has a roster there.
///
/// Whoever is on duty for an area — shift, stand-in, replaced contact or fallback — must
/// be a staff contact of that very area (`village:v-1` for the village v-1): that person
/// sees the area's alarms on the board and is notified at the area's level.
pub fn load_rosters(
    files: &Files<'_>,
    known: &dyn Fn(&str, &str) -> bool,
    contact_scope: &dyn Fn(&str) -> Option<crate::store::Scope>,
    has_roster: &dyn Fn(&crate::store::Scope) -> bool,
) -> Result<RosterBatch, ImportErrors> {
    use crate::roster::{Override, OverrideKind, Shift, ShiftTime, Weekdays};
    use crate::store::Scope;

    let mut errors = Vec::new();
    let shifts = read::<RosterRow>(files, "rosters.csv", &mut errors);
    let overrides = read::<RosterOverrideRow>(files, "roster_overrides.csv", &mut errors);
    if shifts.is_empty() && overrides.is_empty() {
        return match errors.is_empty() {
            true => Ok(RosterBatch::default()),
            false => Err(ImportErrors(errors)),
        };
    }
    // The rest of this import, as written (its own problems are reported by `load_checked`).
    let towns: HashSet<String> = read_quietly::<TownRow>(files, "towns.csv")
        .into_iter()
        .map(|(_, r)| r.id)
        .collect();
    let villages: HashSet<String> = read_quietly::<VillageRow>(files, "villages.csv")
        .into_iter()
        .map(|(_, r)| r.id)
        .collect();
    let contacts: HashMap<String, Option<Scope>> =
        read_quietly::<ContactRow>(files, "contacts.csv")
            .into_iter()
            .map(|(_, r)| (r.id, Scope::parse(&r.scope).ok()))
            .collect();
    let area_exists = |area: &Scope| match area {
        Scope::Village(v) => villages.contains(v) || known("villages", v),
        Scope::Town(t) => towns.contains(t) || known("towns", t),
        _ => true,
    };
    // Is `id` a staff contact of `area`? The reason why not, if not.
    let staff_of = |field: &str, id: &str, area: &Scope| -> Result<(), String> {
        let scope = match contacts.get(id) {
            Some(s) => s.clone(),
            None => contact_scope(id),
        };
        match scope {
            Some(s) if s == *area => Ok(()),
            Some(s) => Err(format!(
                "{field} {id:?} is a contact of {s}, not staff of {area}: whoever is on duty for an area must be its staff"
            )),
            None => Err(format!("unknown {field} {id:?}")),
        }
    };
    let area_of = |text: &str| -> Result<Scope, String> {
        let area = staff_area(text)?;
        if area_exists(&area) {
            Ok(area)
        } else {
            let (kind, id) = area.parts();
            Err(format!("unknown {kind} {id:?}"))
        }
    };

    // rosters.csv: per area, its shifts and fallback, in file order.
    let mut rosters: Vec<AreaRoster> = Vec::new();
    let mut fallback_line: HashMap<String, u64> = HashMap::new();
    let mut shift_line: HashMap<(String, u8, u16, u16, String), u64> = HashMap::new();
    for (line, r) in &shifts {
        let at = |reason: String| format!("rosters.csv:{line}: {reason}");
        let area = match area_of(&r.area) {
            Ok(a) => a,
            Err(e) => {
                errors.push(at(e));
                continue;
            }
        };
        let contact = r.contact.trim();
        if contact.is_empty() {
            errors.push(at("contact is empty: every shift names who is on duty (hours nobody covers go to the area's fallback, a row with days \"fallback\")".into()));
            continue;
        }
        if let Err(e) = staff_of("contact", contact, &area) {
            errors.push(at(e));
        }
        let given = |x: &Option<String>| {
            x.as_deref()
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
        };
        let (start, end) = (given(&r.start), given(&r.end));
        let pos = match rosters.iter().position(|a| a.area == area) {
            Some(i) => i,
            None => {
                rosters.push(AreaRoster {
                    area: area.clone(),
                    fallback: None,
                    shifts: Vec::new(),
                });
                rosters.len() - 1
            }
        };
        if r.days.trim().eq_ignore_ascii_case("fallback") {
            if start.is_some() || end.is_some() {
                errors.push(at(
                    "a fallback has no start or end: it covers whatever no shift covers".into(),
                ));
            }
            if let Some(first) = fallback_line.insert(area.to_string(), *line) {
                errors.push(at(format!(
                    "{area} already has a fallback (line {first}); an area has one"
                )));
            }
            rosters[pos].fallback = Some(contact.to_owned());
            continue;
        }
        let days = match Weekdays::parse(&r.days) {
            Ok(d) => d,
            Err(e) => {
                errors.push(at(format!("{e}, or fallback")));
                continue;
            }
        };
        let (Some(start), Some(end)) = (start, end) else {
            errors.push(at("start and end are required (HH:MM, local time)".into()));
            continue;
        };
        let time = match ShiftTime::parse(&start, &end) {
            Ok(t) => t,
            Err(e) => {
                errors.push(at(e));
                continue;
            }
        };
        let key = (
            area.to_string(),
            days.bits(),
            time.start,
            time.end,
            contact.to_owned(),
        );
        if let Some(first) = shift_line.insert(key, *line) {
            errors.push(at(format!("the same shift as line {first}")));
        }
        rosters[pos].shifts.push(Shift {
            days,
            time,
            contact: contact.to_owned(),
        });
    }

    // roster_overrides.csv
    let mut batch_overrides: Vec<(u64, ImportedOverride)> = Vec::new();
    let mut override_areas: Vec<Scope> = Vec::new();
    for (line, r) in &overrides {
        let at = |reason: String| format!("roster_overrides.csv:{line}: {reason}");
        let area = match area_of(&r.area) {
            Ok(a) => a,
            Err(e) => {
                errors.push(at(e));
                continue;
            }
        };
        if !override_areas.contains(&area) {
            override_areas.push(area.clone());
        }
        if !has_roster(&area) && !rosters.iter().any(|a| a.area == area) {
            errors.push(at(format!(
                "{area} has no duty roster (all of its staff are notified); give it weekly shifts in rosters.csv first"
            )));
            continue;
        }
        let rule = match Override::parse(
            &r.from,
            r.to.as_deref(),
            r.start.as_deref(),
            r.end.as_deref(),
            &r.contact,
            r.replaces.as_deref(),
        ) {
            Ok(o) => o,
            Err(e) => {
                errors.push(at(e));
                continue;
            }
        };
        if let Err(e) = staff_of("contact", &rule.contact, &area) {
            errors.push(at(e));
        }
        if let OverrideKind::Replace { absent } = &rule.kind {
            if let Err(e) = staff_of("replaces", absent, &area) {
                errors.push(at(e));
            }
        }
        let note = r.note.as_deref().unwrap_or("").trim().to_owned();
        if note.chars().count() > crate::roster::MAX_NOTE_CHARS {
            errors.push(at(format!(
                "note is longer than {} characters",
                crate::roster::MAX_NOTE_CHARS
            )));
        }
        for (first, o) in &batch_overrides {
            if o.area != area {
                continue;
            }
            if o.rule.first == rule.first
                && o.rule.last == rule.last
                && o.rule.contact == rule.contact
                && o.rule.kind == rule.kind
            {
                errors.push(at(format!("the same override as line {first}")));
            } else if let (
                OverrideKind::Replace { absent: a },
                OverrideKind::Replace { absent: b },
            ) = (&o.rule.kind, &rule.kind)
            {
                if a == b && o.rule.overlaps(&rule) {
                    errors.push(at(format!(
                        "{a:?} is already replaced on some of these dates (line {first})"
                    )));
                }
            }
        }
        batch_overrides.push((*line, ImportedOverride { area, rule, note }));
    }
    if !errors.is_empty() {
        return Err(ImportErrors(errors));
    }
    Ok(RosterBatch {
        rosters,
        override_areas,
        overrides: strip(batch_overrides),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        for (name, body) in files {
            std::fs::write(d.path().join(name), body).expect("write");
        }
        d
    }

    #[test]
    fn a_valid_directory_loads() {
        let d = dir(&[
            ("towns.csv", "id,name\nt-1,East\n"),
            ("villages.csv", "id,town_id,name\nv-1,t-1,One\n"),
            ("households.csv", "id,village_id,address\nh-1,v-1,1 Lane\n"),
            (
                "elders.csv",
                "id,household_id,name,phone\ne-1,h-1,Elder,+8613800000000\n",
            ),
            (
                "devices.csv",
                "id,household_id,kind,vendor,secret\nh-1-sos,h-1,sos,acme,s3cret\n",
            ),
        ]);
        let b = load(d.path(), &|_, _| false).expect("valid");
        assert_eq!(
            (
                b.towns.len(),
                b.villages.len(),
                b.households.len(),
                b.elders.len(),
                b.devices.len()
            ),
            (1, 1, 1, 1, 1)
        );
    }

    #[test]
    fn every_bad_row_is_reported_with_file_and_line() {
        let d = dir(&[
            ("towns.csv", "id,name\nt-1,East\nt-1,Again\n"),
            ("villages.csv", "id,town_id,name\nv-1,t-9,One\n"),
            ("households.csv", "id,village_id\nh-1,v-1\n"),
            (
                "elders.csv",
                "id,household_id,name,phone\ne-1,h-2,Elder,12ab\n",
            ),
            ("devices.csv", "id,household_id,kind\nBAD ID,h-1,toaster\n"),
        ]);
        let err = load(d.path(), &|_, _| false)
            .expect_err("invalid")
            .0
            .join("\n");
        for needle in [
            "towns.csv:3: duplicate id \"t-1\"",
            "villages.csv:2: unknown town \"t-9\"",
            "households.csv:2:",
            "elders.csv:2: unknown household \"h-2\"",
            "elders.csv:2: phone",
            "devices.csv:2: id \"BAD ID\"",
            "devices.csv:2: kind \"toaster\"",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
        }
    }

    #[test]
    fn contacts_are_validated_row_by_row() {
        let d = dir(&[
            (
                "villages.csv",
                "id,town_id,name
v-1,t-db,One
",
            ),
            (
                "contacts.csv",
                "id,name,phone,role,scope,priority,token
\
                 c-1,Li,+8613800000000,village,village:v-1,1,
\
                 c-2,Wang,12ab,village,village:v-1,0,
\
                 c-3,Zhao,,family,village:v-1,0,
\
                 c-4,Sun,,town,town:t-9,0,
\
                 c-5,Qian,,boss,district,0,
\
                 c-1,Li again,,district,district,0,short
\
                 c-7,Zhou,,village,village,0,
",
            ),
        ]);
        let err = load(d.path(), &|table, id| table == "towns" && id == "t-db")
            .expect_err("invalid")
            .0
            .join("\n");
        for needle in [
            "contacts.csv:3: phone",
            "contacts.csv:4: a family contact needs a household scope",
            "contacts.csv:5: unknown town \"t-9\" in scope",
            "contacts.csv:6: role \"boss\"",
            "contacts.csv:7: duplicate id \"c-1\"",
            "contacts.csv:7: token must be at least 8 characters",
            "contacts.csv:8: scope must be",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
        }
        assert!(!err.contains("contacts.csv:2:"), "row 2 is valid:\n{err}");
    }

    #[test]
    fn contact_channels_and_language_are_checked() {
        let d = dir(&[(
            "contacts.csv",
            "id,name,phone,role,scope,priority,channels,language
c-1,Li,+8613800000000,district,district,0,critical=sms;warning=,en
c-2,Wang,,district,district,0,critical=fax,
c-3,Zhao,,district,district,0,,fr
",
        )]);
        let err = load(d.path(), &|_, _| false)
            .expect_err("invalid")
            .0
            .join("\n");
        assert!(
            err.contains("contacts.csv:3: channels: \"fax\" is not a contact channel"),
            "{err}"
        );
        assert!(
            err.contains("contacts.csv:4: language \"fr\" is not zh-CN or en"),
            "{err}"
        );
        assert!(!err.contains("contacts.csv:2:"), "row 2 is valid:\n{err}");
    }

    #[test]
    fn contacts_sharing_an_account_are_one_person() {
        let d = dir(&[
            (
                "households.csv",
                "id,village_id,address
h-1,v-db,a
h-2,v-db,b
",
            ),
            (
                "contacts.csv",
                "id,name,phone,role,scope,priority,account,token
\
                 c-1,Li,,family,household:h-1,0,li,token-one
\
                 c-2,Li,,family,household:h-2,0,li,
\
                 c-3,Li,,village,village:v-db,0,li,
\
                 c-4,Wang,,village,village:v-db,0,wang,token-two
\
                 c-5,Wang,,village,village:v-other,0,wang,
\
                 c-6,Zhao,,family,household:h-1,0,zhao,token-one
\
                 c-7,Sun,,family,household:h-1,0,li,token-three
\
                 c-8,Qian,,family,household:h-2,0,Not Valid,
",
            ),
        ]);
        let err = load(d.path(), &|table, id| {
            table == "villages" && ["v-db", "v-other"].contains(&id)
        })
        .expect_err("invalid")
        .0
        .join("\n");
        for needle in [
            "contacts.csv:4: account \"li\" is a family account (line 2)",
            "contacts.csv:6: account \"wang\" already has scope \"village:v-db\" (line 5)",
            "contacts.csv:7: the same token as line 2",
            "contacts.csv:8: account \"li\" already gets a token on line 2",
            "contacts.csv:9: account \"Not Valid\"",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
        }
        // One family member for two homes, the second row without a token: fine.
        for fine in ["contacts.csv:2:", "contacts.csv:3:", "contacts.csv:5:"] {
            assert!(!err.contains(fine), "{fine} is valid:\n{err}");
        }
    }

    #[test]
    fn the_demo_district_in_the_repository_is_a_valid_import() {
        let d = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/district");
        let b = load(&d, &|_, _| false).expect("demo/district imports");
        assert_eq!(
            (
                b.towns.len(),
                b.villages.len(),
                b.households.len(),
                b.devices.len(),
                b.contacts.len()
            ),
            (2, 3, 3, 9, 9)
        );
        assert_eq!(
            b.contacts.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            crate::demo::batch()
                .expect("built-in demo")
                .contacts
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_row_for_a_revoked_device_is_an_error_that_says_when_and_what_to_do() {
        let d = dir(&[(
            "devices.csv",
            "id,household_id,kind\nh-1-door,h-1,door\nh-1-sos,h-1,sos\n",
        )]);
        let at = 1_796_000_000_000; // 2026-11-30T00:53:20Z
        let revoked = |id: &str| (id == "h-1-sos").then_some(at);
        let files = |name: &str| {
            let path = d.path().join(name);
            path.exists().then(|| std::fs::read(&path))
        };
        let err = load_checked(&files, &|_, _| true, &revoked)
            .expect_err("revoked row")
            .0;
        assert_eq!(err.len(), 1, "{err:?}");
        for needle in [
            "devices.csv:3: device \"h-1-sos\" was revoked on 2026-11-30T00:53:20Z",
            "\"reinstate\": true",
        ] {
            assert!(err[0].contains(needle), "missing {needle:?} in {}", err[0]);
        }
        // Without revocations the same files are fine.
        assert!(load_checked(&files, &|_, _| true, &|_| None).is_ok());
    }

    fn roster_files(files: &[(&str, &str)]) -> Result<RosterBatch, ImportErrors> {
        let d = dir(files);
        let read = |name: &str| {
            let path = d.path().join(name);
            path.exists().then(|| std::fs::read(&path))
        };
        // In the database: town t-db, village v-db with staff c-db (roster already) and
        // c-db2, the district's c-dist.
        use crate::store::Scope;
        load_rosters(
            &read,
            &|table, id| (table, id) == ("towns", "t-db") || (table, id) == ("villages", "v-db"),
            &|id| match id {
                "c-db" | "c-db2" => Some(Scope::Village("v-db".into())),
                "c-dist" => Some(Scope::District),
                _ => None,
            },
            &|area| *area == Scope::Village("v-db".into()),
        )
    }

    const STAFF: (&str, &str) = (
        "contacts.csv",
        "id,name,phone,role,scope,priority,token\n\
         c-li,Li,,village,village:v-1,0,\n\
         c-wang,Wang,,village,village:v-1,0,\n\
         c-zhao,Zhao,,village,village:v-1,0,\n\
         c-town,Town,,town,town:t-db,0,\n\
         c-fam,Family,,family,household:h-1,0,\n",
    );
    const VILLAGE: (&str, &str) = ("villages.csv", "id,town_id,name\nv-1,t-db,One\n");

    #[test]
    fn roster_files_load_with_the_contacts_of_the_same_import() {
        let b = roster_files(&[
            VILLAGE,
            STAFF,
            (
                "rosters.csv",
                "area,days,start,end,contact\n\
                 village:v-1,mon-fri,08:00,20:00,c-li\n\
                 village:v-1,daily,20:00,08:00,c-wang\n\
                 village:v-1,sat sun,08:00,20:00,c-zhao\n\
                 village:v-1,fallback,,,c-li\n\
                 district,daily,08:00,08:00,c-dist\n",
            ),
            (
                "roster_overrides.csv",
                "area,from,to,start,end,contact,replaces,note\n\
                 village:v-1,2026-10-01,2026-10-03,08:00,20:00,c-zhao,,National Day\n\
                 village:v-1,2026-10-01,2026-10-03,20:00,08:00,c-wang,,National Day\n\
                 village:v-1,2026-12-03,2026-12-05,,,c-zhao,c-li,sick leave\n\
                 village:v-db,2026-12-24,,,,c-db2,c-db,\n",
            ),
        ])
        .expect("valid");
        assert_eq!(b.rosters.len(), 2);
        assert_eq!(b.rosters[0].shifts.len(), 3);
        assert_eq!(b.rosters[0].fallback.as_deref(), Some("c-li"));
        assert_eq!(b.rosters[1].area, crate::store::Scope::District);
        assert_eq!(b.rosters[1].shifts[0].time.minutes(), 1440);
        assert_eq!(b.overrides.len(), 4);
        assert_eq!(b.override_areas.len(), 2, "v-1 and v-db");
        assert_eq!(b.overrides[2].note, "sick leave");
        // Without roster files, nothing to do.
        assert!(roster_files(&[VILLAGE, STAFF]).expect("none").is_empty());
    }

    #[test]
    fn every_bad_roster_row_is_reported_with_file_and_line() {
        let err = roster_files(&[
            VILLAGE,
            STAFF,
            (
                "rosters.csv",
                "area,days,start,end,contact\n\
                 village:v-1,mon-fri,08:00,20:00,c-li\n\
                 household:h-1,daily,08:00,20:00,c-li\n\
                 village:v-9,daily,08:00,20:00,c-li\n\
                 village:v-1,weekdays,08:00,20:00,c-li\n\
                 village:v-1,daily,08:00,,c-li\n\
                 village:v-1,daily,25:00,08:00,c-li\n\
                 village:v-1,daily,20:00,08:00,\n\
                 village:v-1,daily,20:00,08:00,c-nobody\n\
                 village:v-1,daily,20:00,08:00,c-town\n\
                 village:v-1,daily,20:00,08:00,c-fam\n\
                 village:v-1,fallback,,,c-wang\n\
                 village:v-1,fallback,08:00,,c-zhao\n\
                 village:v-1,Mon-Fri,08:00,20:00,c-li\n",
            ),
            (
                "roster_overrides.csv",
                "area,from,to,start,end,contact,replaces,note\n\
                 village:v-1,2026-12-03,2026-12-05,,,c-zhao,c-li,sick\n\
                 village:v-1,2026-12-05,2026-12-06,,,c-wang,c-li,sick\n\
                 village:v-1,2026-12-09,2026-12-08,,,c-zhao,,\n\
                 village:v-1,2026-12-09,,08:00,20:00,c-li,c-wang,\n\
                 village:v-1,2026-12-09,,,,,,\n\
                 village:v-1,2026-12-09,,,,c-zhao,c-town,\n\
                 town:t-db,2026-12-09,,,,c-town,,\n\
                 village:v-1,2026-12-03,2026-12-05,,,c-zhao,c-li,again\n",
            ),
        ])
        .expect_err("invalid")
        .0
        .join("\n");
        for needle in [
            "rosters.csv:3: area must be village:<id>, town:<id> or district",
            "rosters.csv:4: unknown village \"v-9\"",
            "rosters.csv:5: days \"weekdays\"",
            "rosters.csv:6: start and end are required",
            "rosters.csv:7: start \"25:00\"",
            "rosters.csv:8: contact is empty",
            "rosters.csv:9: unknown contact \"c-nobody\"",
            "rosters.csv:10: contact \"c-town\" is a contact of town:t-db, not staff of village:v-1",
            "rosters.csv:11: contact \"c-fam\" is a contact of household:h-1",
            "rosters.csv:13: a fallback has no start or end",
            "rosters.csv:13: village:v-1 already has a fallback (line 12)",
            "rosters.csv:14: the same shift as line 2",
            "roster_overrides.csv:3: \"c-li\" is already replaced on some of these dates (line 2)",
            "roster_overrides.csv:4: to (2026-12-08) is before from (2026-12-09)",
            "roster_overrides.csv:5: a replacement takes over every shift",
            "roster_overrides.csv:6: contact is empty",
            "roster_overrides.csv:7: replaces \"c-town\" is a contact of town:t-db",
            "roster_overrides.csv:8: town:t-db has no duty roster",
            "roster_overrides.csv:9: the same override as line 2",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
        }
        assert!(!err.contains("rosters.csv:2:"), "row 2 is valid:\n{err}");
        assert!(
            !err.contains("rosters.csv:12:"),
            "the first fallback is valid:\n{err}"
        );
    }

    #[test]
    fn references_to_rows_already_in_the_database_are_fine() {
        let d = dir(&[("households.csv", "id,village_id,address\nh-9,v-db,9 Lane\n")]);
        assert!(load(d.path(), &|table, id| table == "villages" && id == "v-db").is_ok());
    }

    #[test]
    fn a_written_directory_loads_back_to_the_same_rows() {
        // Values a spreadsheet would take for formulas, in every kind of column.
        let batch = Batch {
            towns: vec![TownRow {
                id: "t-1".into(),
                name: "=1+1".into(),
            }],
            villages: vec![VillageRow {
                id: "v-1".into(),
                town_id: "t-1".into(),
                name: "'=typed".into(),
            }],
            households: vec![HouseholdRow {
                id: "h-1".into(),
                village_id: "v-1".into(),
                address: "\t@SUM(1)".into(),
            }],
            elders: vec![ElderRow {
                id: "e-1".into(),
                household_id: "h-1".into(),
                name: "-2+3".into(),
                phone: Some("+8613800000000".into()),
            }],
            devices: vec![DeviceRow {
                id: "h-1-door".into(),
                household_id: "h-1".into(),
                kind: "door".into(),
                vendor: Some("＝cmd|' /c calc'!A1".into()),
                secret: None,
            }],
            contacts: vec![ContactRow {
                id: "c-1".into(),
                name: "@Li".into(),
                phone: Some("+8613800000001".into()),
                role: "district".into(),
                scope: "district".into(),
                priority: Some(-5),
                account: None,
                channels: None,
                language: None,
                token: None,
            }],
        };
        let d = tempfile::tempdir().expect("tempdir");
        write_dir(d.path(), &batch).expect("write");
        let towns = std::fs::read_to_string(d.path().join("towns.csv")).expect("towns.csv");
        assert_eq!(towns, "id,name\nt-1,'=1+1\n");
        let back = load(d.path(), &|_, _| false).expect("loads");
        assert_eq!(format!("{back:?}"), format!("{batch:?}"));
    }

    #[test]
    fn malformed_text_is_refused_with_file_line_and_column() {
        let d = dir(&[
            ("towns.csv", "id,name\nt-1,East\nt-2,We\u{1}st\n"),
            ("villages.csv", "id,town_id,name\nv-1,t-1,\"One\n"),
        ]);
        let err = load(d.path(), &|_, _| false).expect_err("malformed").0;
        assert_eq!(
            err,
            [
                "towns.csv:3: column \"name\": a control character (U+0001) in a cell; only TAB and line breaks are allowed",
                "villages.csv:2: column \"name\": a quoted cell is not closed (a \" is missing); nothing after it could be read",
            ]
        );
    }

    #[test]
    fn a_spreadsheet_saved_in_gbk_is_refused_clearly() {
        let d = tempfile::tempdir().expect("tempdir");
        // "东城" in GBK.
        std::fs::write(
            d.path().join("towns.csv"),
            [
                b"id,name\nt-1,".as_slice(),
                &[0xb6, 0xab, 0xb3, 0xc7],
                b"\n",
            ]
            .concat(),
        )
        .expect("write");
        let err = load(d.path(), &|_, _| false).expect_err("gbk").0.join("\n");
        assert!(err.contains("towns.csv:2: not UTF-8"), "{err}");
    }
}
