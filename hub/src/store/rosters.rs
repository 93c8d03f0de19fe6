//! Duty rosters in the database (migration 0007). What a roster means — shifts,
//! overrides, the fallback, who is on duty when — is [`crate::roster`], which does no
//! I/O; this module loads rosters for it and stores them.
//!
//! The entry point for escalation is [`Store::on_duty`].

use std::collections::{HashMap, HashSet};

use alert_rules::Millis;
use serde::Serialize;
use sqlx::{Row, Sqlite, Transaction};

use super::{Result, Scope, Store, StoreError};
use crate::roster::{
    self, Coverage, Day, OnDuty, Override, OverrideKind, Roster, Shift, ShiftTime, Weekdays,
};

/// `set_by` of overrides that came from `roster_overrides.csv`: the next import of the
/// same area replaces them. Overrides set over REST carry the account id and stay until
/// deleted.
pub const IMPORTED: &str = "import";

/// (kind, id) of a staff area as stored. A household is not an area (`Invalid`).
pub fn area_parts(area: &Scope) -> Result<(&'static str, &str)> {
    match area {
        Scope::Village(_) | Scope::Town(_) | Scope::District => Ok(area.parts()),
        other => Err(StoreError::Invalid(format!(
            "a duty roster belongs to a village, a town or the district, not {other}"
        ))),
    }
}

/// One area's coverage, for the report.
#[derive(Debug, Clone)]
pub struct AreaCoverage {
    pub area: Scope,
    /// Has a roster (otherwise every staff contact of the area is on duty, always).
    pub roster: bool,
    /// The roster's fallback contact, if any.
    pub fallback: Option<String>,
    pub coverage: Coverage,
}

/// A line of the weekly pattern, as people read it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ShiftView {
    pub days: String,
    pub start: String,
    pub end: String,
    pub contact: String,
}

/// An override as stored and listed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OverrideView {
    pub id: i64,
    pub area: Scope,
    /// First and last date, `YYYY-MM-DD` (local), inclusive.
    pub from: String,
    pub to: String,
    /// `HH:MM` for a holiday plan's shift; `None` for a replacement.
    pub start: Option<String>,
    pub end: Option<String>,
    pub contact: String,
    /// The contact whose shifts are taken (sick leave); `None` for a holiday plan.
    pub replaces: Option<String>,
    pub note: String,
    /// `import`, or the account that set it.
    pub set_by: String,
    pub created_at: Millis,
}

/// An area's roster as people read it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RosterView {
    pub area: Scope,
    pub fallback: Option<String>,
    pub shifts: Vec<ShiftView>,
    /// Overrides that have not ended, by first date.
    pub overrides: Vec<OverrideView>,
}

fn view_override(
    area: Scope,
    o: &Override,
    note: String,
    set_by: String,
    at: Millis,
) -> OverrideView {
    let (start, end, replaces) = match &o.kind {
        OverrideKind::Duty(t) => (Some(t.start_text()), Some(t.end_text()), None),
        OverrideKind::Replace { absent } => (None, None, Some(absent.clone())),
    };
    OverrideView {
        id: o.id,
        area,
        from: roster::format_date(o.first),
        to: roster::format_date(o.last),
        start,
        end,
        contact: o.contact.clone(),
        replaces,
        note,
        set_by,
        created_at: at,
    }
}

fn override_row(r: &sqlx::sqlite::SqliteRow) -> Result<Override> {
    let bad = |what: &str| StoreError::Invalid(format!("roster override: {what}"));
    let first = roster::parse_date(r.try_get("first_day")?).map_err(|e| bad(&e))?;
    let last = roster::parse_date(r.try_get("last_day")?).map_err(|e| bad(&e))?;
    let start: Option<i64> = r.try_get("start_minute")?;
    let end: Option<i64> = r.try_get("end_minute")?;
    let replaces: Option<String> = r.try_get("replaces_contact_id")?;
    let kind = match (replaces, start, end) {
        (Some(absent), None, None) => OverrideKind::Replace { absent },
        (None, Some(s), Some(e)) => {
            OverrideKind::Duty(ShiftTime::from_minutes(s, e).ok_or_else(|| bad("shift time"))?)
        }
        _ => return Err(bad("neither a replacement nor a shift")),
    };
    Ok(Override {
        id: r.try_get("id")?,
        first,
        last,
        contact: r.try_get("contact_id")?,
        kind,
    })
}

const OVERRIDE_COLUMNS: &str = "id, area_kind, area_id, first_day, last_day, start_minute, end_minute, contact_id, replaces_contact_id, note, set_by, created_at";

/// The staff contacts of an area with their priority, highest first, then by id (the
/// order `Store::recipients` uses).
async fn staff(tx: &mut Transaction<'static, Sqlite>, area: &Scope) -> Result<Vec<(String, i64)>> {
    let (kind, id) = area_parts(area)?;
    // The district's contacts are matched by kind alone, as `recipients` does.
    let rows = sqlx::query("SELECT id, priority FROM contacts WHERE scope_kind = $1 AND (scope_id = $2 OR $1 = 'district') ORDER BY priority DESC, id")
        .bind(kind)
        .bind(id)
        .fetch_all(&mut **tx)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("priority")?)))
        .collect()
}

/// Is `contact` staff of `area`?
async fn is_staff(
    tx: &mut Transaction<'static, Sqlite>,
    area: &Scope,
    contact: &str,
) -> Result<bool> {
    Ok(staff(tx, area).await?.iter().any(|(c, _)| c == contact))
}

/// The roster of `area` with the overrides that touch the days `from..=to`, or `None`
/// when the area has no roster; `staff` is the area's staff, as [`staff`] gives it.
async fn load_roster(
    tx: &mut Transaction<'static, Sqlite>,
    area: &Scope,
    from: Day,
    to: Day,
    staff: &[(String, i64)],
) -> Result<Option<Roster>> {
    let (kind, id) = area_parts(area)?;
    let Some(head) = sqlx::query(
        "SELECT fallback_contact_id FROM rosters WHERE area_kind = $1 AND area_id = $2",
    )
    .bind(kind)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    else {
        return Ok(None);
    };
    let shifts = sqlx::query("SELECT weekdays, start_minute, end_minute, contact_id FROM roster_shifts WHERE area_kind = $1 AND area_id = $2 ORDER BY id")
        .bind(kind)
        .bind(id)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| {
            let bits: i64 = r.try_get("weekdays")?;
            let days = u8::try_from(bits)
                .ok()
                .and_then(Weekdays::from_bits)
                .ok_or_else(|| StoreError::Invalid(format!("roster weekdays {bits}")))?;
            let time = ShiftTime::from_minutes(r.try_get("start_minute")?, r.try_get("end_minute")?)
                .ok_or_else(|| StoreError::Invalid("roster shift time".into()))?;
            Ok(Shift {
                days,
                time,
                contact: r.try_get("contact_id")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let overrides = sqlx::query(&format!("SELECT {OVERRIDE_COLUMNS} FROM roster_overrides WHERE area_kind = $1 AND area_id = $2 AND last_day >= $3 AND first_day <= $4 ORDER BY id"))
        .bind(kind)
        .bind(id)
        .bind(roster::format_date(from))
        .bind(roster::format_date(to))
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(override_row)
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(Roster {
        shifts,
        overrides,
        fallback: head.try_get("fallback_contact_id")?,
        members: staff.iter().cloned().collect(),
    }))
}

impl Store {
    /// **Who is on duty for `area` at `at`** — what escalation asks before notifying a
    /// level. `area` is `Scope::Village`, `Scope::Town` or `Scope::District` (a
    /// household is `Invalid`); `utc_offset_minutes` is the district's fixed offset
    /// (`timezone_offset` of the rules file, e.g. 480 for +08:00), never the machine's.
    ///
    /// - An area **without a roster**: every staff contact of the area, highest
    ///   `priority` first, then by id (exactly the village / town / district part of
    ///   [`Store::recipients`]), `source` [`roster::Source::NoRoster`].
    /// - With a roster: the contacts whose shift (after overrides) contains `at`, start
    ///   inclusive and end exclusive, ordered the same way; `source` is `Override` when an
    ///   override put any of them there, else `Shift`. Nobody on shift: the fallback
    ///   (`Fallback`); no fallback either: no contacts (`Nobody`).
    ///
    /// Only the area's current staff are ever returned. `until` says how long the answer
    /// holds. Family contacts of a household are not rostered: level 0 still adds them.
    pub async fn on_duty(
        &self,
        area: &Scope,
        at: Millis,
        utc_offset_minutes: i32,
    ) -> Result<OnDuty> {
        let day = roster::local_day(at, utc_offset_minutes);
        let mut tx = self.pool.begin().await?;
        let staff = staff(&mut tx, area).await?;
        let found =
            load_roster(&mut tx, area, day - 1, day + roster::LOOKAHEAD_DAYS, &staff).await?;
        tx.commit().await?;
        Ok(match found {
            Some(r) => r.on_duty(at, utc_offset_minutes),
            None => OnDuty::no_roster(staff.into_iter().map(|(c, _)| c).collect()),
        })
    }

    /// The staff areas of a scope, top down: the district, then each town followed by
    /// its villages (by id); a town and its villages; a village. Not for households.
    pub async fn staff_areas(&self, scope: &Scope) -> Result<Vec<Scope>> {
        area_parts(scope)?;
        if let Scope::Village(_) = scope {
            return Ok(vec![scope.clone()]);
        }
        let rows = sqlx::query("SELECT t.id AS town, v.id AS village FROM towns t LEFT JOIN villages v ON v.town_id = t.id ORDER BY t.id, v.id")
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        if *scope == Scope::District {
            out.push(Scope::District);
        }
        for r in rows {
            let town: String = r.try_get("town")?;
            if matches!(scope, Scope::Town(t) if *t != town) {
                continue;
            }
            let t = Scope::Town(town);
            if !out.contains(&t) {
                out.push(t);
            }
            if let Some(v) = r.try_get::<Option<String>, _>("village")? {
                out.push(Scope::Village(v));
            }
        }
        Ok(out)
    }

    /// Coverage of every staff area in `scope` (see [`Store::staff_areas`]) for `hours`
    /// hours from `from` (a local hour's start), hour by hour.
    pub async fn roster_coverage(
        &self,
        scope: &Scope,
        from: Millis,
        hours: u32,
        utc_offset_minutes: i32,
    ) -> Result<Vec<AreaCoverage>> {
        let first = roster::local_day(from, utc_offset_minutes) - 1;
        let to = from + i64::from(hours) * roster::HOUR_MS;
        let last = roster::local_day(to, utc_offset_minutes) + roster::LOOKAHEAD_DAYS;
        let mut out = Vec::new();
        for area in self.staff_areas(scope).await? {
            let mut tx = self.pool.begin().await?;
            let staff = staff(&mut tx, &area).await?;
            let found = load_roster(&mut tx, &area, first, last, &staff).await?;
            tx.commit().await?;
            let (roster, fallback, coverage) = match found {
                Some(r) => (
                    true,
                    r.fallback.clone(),
                    roster::coverage(from, hours, |t| r.on_duty(t, utc_offset_minutes)),
                ),
                None => {
                    let everyone: Vec<String> = staff.into_iter().map(|(c, _)| c).collect();
                    (
                        false,
                        None,
                        roster::coverage(from, hours, |_| OnDuty::no_roster(everyone.clone())),
                    )
                }
            };
            out.push(AreaCoverage {
                area,
                roster,
                fallback,
                coverage,
            });
        }
        Ok(out)
    }

    /// The rosters of the staff areas in `scope` (areas without one are left out), with
    /// the overrides that end on `today` or later.
    pub async fn roster_views(&self, scope: &Scope, today: Day) -> Result<Vec<RosterView>> {
        let mut out = Vec::new();
        for area in self.staff_areas(scope).await? {
            let (kind, id) = area_parts(&area)?;
            let mut tx = self.pool.begin().await?;
            let Some(head) = sqlx::query(
                "SELECT fallback_contact_id FROM rosters WHERE area_kind = $1 AND area_id = $2",
            )
            .bind(kind)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            else {
                continue;
            };
            let shifts = sqlx::query("SELECT weekdays, start_minute, end_minute, contact_id FROM roster_shifts WHERE area_kind = $1 AND area_id = $2 ORDER BY id")
                .bind(kind)
                .bind(id)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| {
                    let bits: i64 = r.try_get("weekdays")?;
                    let days = u8::try_from(bits).ok().and_then(Weekdays::from_bits);
                    let time = ShiftTime::from_minutes(r.try_get("start_minute")?, r.try_get("end_minute")?);
                    Ok(ShiftView {
                        days: days.map_or_else(|| format!("? ({bits})"), |d| d.to_string()),
                        start: time.map_or_else(String::new, |t| t.start_text()),
                        end: time.map_or_else(String::new, |t| t.end_text()),
                        contact: r.try_get("contact_id")?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let overrides = sqlx::query(&format!("SELECT {OVERRIDE_COLUMNS} FROM roster_overrides WHERE area_kind = $1 AND area_id = $2 AND last_day >= $3 ORDER BY first_day, id"))
                .bind(kind)
                .bind(id)
                .bind(roster::format_date(today))
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| {
                    Ok(view_override(
                        area.clone(),
                        &override_row(r)?,
                        r.try_get("note")?,
                        r.try_get("set_by")?,
                        r.try_get("created_at")?,
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            tx.commit().await?;
            out.push(RosterView {
                area,
                fallback: head.try_get("fallback_contact_id")?,
                shifts,
                overrides,
            });
        }
        Ok(out)
    }

    /// Add an override to `area`'s roster (set over REST by `by`). The area must have a
    /// roster (`Conflict`), and the contact — and the replaced contact of a replacement —
    /// must be staff of the area (`Invalid`); checked in the same transaction.
    pub async fn add_roster_override(
        &self,
        area: &Scope,
        o: &Override,
        note: &str,
        by: &str,
        now: Millis,
    ) -> Result<OverrideView> {
        let (kind, id) = area_parts(area)?;
        let mut tx = self.begin_write().await?;
        let has = sqlx::query("SELECT 1 FROM rosters WHERE area_kind = $1 AND area_id = $2")
            .bind(kind)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !has {
            return Err(StoreError::Conflict(format!(
                "{area} has no duty roster (all of its staff are notified); import its weekly shifts (rosters.csv) first"
            )));
        }
        let mut named = vec![("contact", o.contact.as_str())];
        if let OverrideKind::Replace { absent } = &o.kind {
            named.push(("replaces", absent.as_str()));
        }
        for (field, contact) in named {
            if !is_staff(&mut tx, area, contact).await? {
                return Err(StoreError::Invalid(format!(
                    "`{field}`: {contact:?} is not a staff contact of {area}"
                )));
            }
        }
        let new_id = insert_override(&mut tx, area, o, note, by, now).await?;
        tx.commit().await?;
        let stored = Override {
            id: new_id,
            ..o.clone()
        };
        Ok(view_override(
            area.clone(),
            &stored,
            note.to_owned(),
            by.to_owned(),
            now,
        ))
    }

    /// One override by id.
    pub async fn roster_override(&self, id: i64) -> Result<Option<OverrideView>> {
        let row = sqlx::query(&format!(
            "SELECT {OVERRIDE_COLUMNS} FROM roster_overrides WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let area = Scope::from_parts(r.try_get("area_kind")?, r.try_get("area_id")?)?;
        Ok(Some(view_override(
            area,
            &override_row(&r)?,
            r.try_get("note")?,
            r.try_get("set_by")?,
            r.try_get("created_at")?,
        )))
    }

    /// Delete an override; false when there is none with that id.
    pub async fn delete_roster_override(&self, id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM roster_overrides WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every contact's scope (import validation of roster files).
    pub async fn contact_scopes(&self) -> Result<HashMap<String, Scope>> {
        let rows = sqlx::query("SELECT id, scope_kind, scope_id FROM contacts")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id")?,
                    Scope::from_parts(r.try_get("scope_kind")?, r.try_get("scope_id")?)?,
                ))
            })
            .collect()
    }

    /// The areas that have a roster, written as scopes (`village:v-1`, `district`).
    pub async fn areas_with_roster(&self) -> Result<HashSet<String>> {
        let rows = sqlx::query("SELECT area_kind, area_id FROM rosters")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Scope::from_parts(r.try_get("area_kind")?, r.try_get("area_id")?)?.to_string())
            })
            .collect()
    }

    /// Write validated roster files in one transaction: each area in `batch.rosters`
    /// gets its weekly pattern and fallback replaced; each area in
    /// `batch.override_areas` gets its imported overrides replaced by the batch's (those
    /// set over REST stay).
    pub async fn import_rosters(
        &self,
        batch: &crate::import::RosterBatch,
        now: Millis,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for r in &batch.rosters {
            let (kind, id) = area_parts(&r.area)?;
            sqlx::query("INSERT INTO rosters (area_kind, area_id, fallback_contact_id, updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT (area_kind, area_id) DO UPDATE SET fallback_contact_id = excluded.fallback_contact_id, updated_at = excluded.updated_at")
                .bind(kind)
                .bind(id)
                .bind(&r.fallback)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM roster_shifts WHERE area_kind = $1 AND area_id = $2")
                .bind(kind)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            for s in &r.shifts {
                sqlx::query("INSERT INTO roster_shifts (area_kind, area_id, weekdays, start_minute, end_minute, contact_id) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(kind)
                    .bind(id)
                    .bind(i64::from(s.days.bits()))
                    .bind(i64::from(s.time.start))
                    .bind(i64::from(s.time.end))
                    .bind(&s.contact)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        for area in &batch.override_areas {
            let (kind, id) = area_parts(area)?;
            sqlx::query("DELETE FROM roster_overrides WHERE area_kind = $1 AND area_id = $2 AND set_by = $3")
                .bind(kind)
                .bind(id)
                .bind(IMPORTED)
                .execute(&mut *tx)
                .await?;
        }
        for o in &batch.overrides {
            insert_override(&mut tx, &o.area, &o.rule, &o.note, IMPORTED, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

async fn insert_override(
    tx: &mut Transaction<'static, Sqlite>,
    area: &Scope,
    o: &Override,
    note: &str,
    by: &str,
    now: Millis,
) -> Result<i64> {
    let (kind, id) = area_parts(area)?;
    let (start, end, replaces) = match &o.kind {
        OverrideKind::Duty(t) => (Some(i64::from(t.start)), Some(i64::from(t.end)), None),
        OverrideKind::Replace { absent } => (None, None, Some(absent.as_str())),
    };
    Ok(sqlx::query_scalar("INSERT INTO roster_overrides (area_kind, area_id, first_day, last_day, start_minute, end_minute, contact_id, replaces_contact_id, note, set_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id")
        .bind(kind)
        .bind(id)
        .bind(roster::format_date(o.first))
        .bind(roster::format_date(o.last))
        .bind(start)
        .bind(end)
        .bind(&o.contact)
        .bind(replaces)
        .bind(note)
        .bind(by)
        .bind(now)
        .fetch_one(&mut **tx)
        .await?)
}
