//! Duty rosters: who is on duty for a staff area (a village, a town, the district) at an
//! instant, and how the coming days are covered, hour by hour.
//!
//! Pure: no I/O, no clock, no time-zone database. Times are local to the district at a
//! fixed UTC offset (`timezone_offset` of the rules file), passed in as minutes; the
//! store loads a [`Roster`] and asks it.
//!
//! A roster, as the bureau keeps it in a spreadsheet:
//! - a **weekly pattern** of [`Shift`]s: weekdays, a start and an end in local time, one
//!   contact. A shift whose end is not after its start ends the next day (`20:00`→`08:00`);
//!   from a time to the same time it lasts 24 hours;
//! - **overrides** for a range of dates ([`Override`]):
//!   - *duty* (a holiday plan): on those dates the weekly pattern does not apply, the
//!     override's shifts do (several rows for the same dates make a plan, day and night);
//!   - *replacement* (sick leave, a swap): every shift of one contact on those dates is
//!     taken by another. Replacements are not chained: if the stand-in is away too, write
//!     a replacement from the original contact to a third person. When two replacements
//!     of one contact overlap, the later one (in `overrides` order) wins.
//! - a **fallback** contact, on duty whenever no shift is.
//!
//! A shift belongs to the date it *starts* on: the night shift of 30 September that runs
//! to 08:00 on 1 October is a shift of 30 September, and a holiday plan or a sick leave
//! from 1 October does not touch it. That is how people read a duty sheet ("who has the
//! night of the 30th?"), and it keeps every shift whole.
//!
//! Only the area's own staff are ever on duty: a contact named in the roster who is no
//! longer staff of the area (not in [`Roster::members`]) is skipped, so its hours fall to
//! the fallback or show up as a gap, never to someone who cannot see the area's alarms.
//! An "explicit nobody" cannot be written: an empty shift is what the fallback is for.

use std::collections::HashMap;

use alert_rules::Millis;
use serde::Serialize;

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
pub const DAY_MS: i64 = 24 * HOUR_MS;
const DAY_MINUTES: u16 = 1440;
/// The Julian day number of 1970-01-01 (day 0 of [`Day`]).
const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;
/// How far ahead [`Roster::on_duty`] looks for the next change (a week, plus the day a
/// night shift started on). A store loading a roster for an instant loads the overrides
/// from the day before it to this many days after.
pub const LOOKAHEAD_DAYS: i64 = 8;
/// The longest override, in days.
pub const MAX_OVERRIDE_DAYS: i64 = 366;
/// The longest note on an override, in characters.
pub const MAX_NOTE_CHARS: usize = 200;

/// A local date, as days since 1970-01-01.
pub type Day = i64;

/// The local date of an instant.
pub fn local_day(at: Millis, offset_minutes: i32) -> Day {
    (at + i64::from(offset_minutes) * MINUTE_MS).div_euclid(DAY_MS)
}

/// The instant a local date begins.
pub fn day_start(day: Day, offset_minutes: i32) -> Millis {
    day * DAY_MS - i64::from(offset_minutes) * MINUTE_MS
}

/// The start of the local hour that contains `at`.
pub fn hour_floor(at: Millis, offset_minutes: i32) -> Millis {
    let off = i64::from(offset_minutes) * MINUTE_MS;
    (at + off).div_euclid(HOUR_MS) * HOUR_MS - off
}

/// Minutes after local midnight of `at`.
pub fn local_minute(at: Millis, offset_minutes: i32) -> u16 {
    let off = i64::from(offset_minutes) * MINUTE_MS;
    // In 0..1440 by construction.
    ((at + off).rem_euclid(DAY_MS) / MINUTE_MS) as u16
}

/// Monday = 0 … Sunday = 6.
pub fn weekday(day: Day) -> u8 {
    // 1970-01-01 was a Thursday.
    (day + 3).rem_euclid(7) as u8
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// `Mon`, `Tue`, ... for people.
pub fn weekday_name(day: Day) -> &'static str {
    ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][usize::from(weekday(day))]
}

/// A local date `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Result<Day, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text.trim(), &format)
        .map(|d| Day::from(d.to_julian_day() - UNIX_EPOCH_JULIAN_DAY))
        .map_err(|_| format!("{text:?} is not a date YYYY-MM-DD"))
}

/// `YYYY-MM-DD`.
pub fn format_date(day: Day) -> String {
    i32::try_from(day)
        .ok()
        .and_then(|d| d.checked_add(UNIX_EPOCH_JULIAN_DAY))
        .and_then(|j| time::Date::from_julian_day(j).ok())
        .map(|d| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()))
        .unwrap_or_else(|| format!("day {day}"))
}

/// `+08:00`, `-03:30`, `Z` → minutes east of UTC (the rules file's `timezone_offset`).
pub fn parse_utc_offset(text: &str) -> Result<i32, String> {
    let usage = || format!("{text:?} is not a UTC offset like +08:00");
    let t = text.trim();
    if t == "Z" || t.eq_ignore_ascii_case("utc") {
        return Ok(0);
    }
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1, &t[1..]),
        Some(b'-') => (-1, &t[1..]),
        _ => return Err(usage()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(usage)?;
    let num = |x: &str| {
        (x.len() == 2 && x.bytes().all(|b| b.is_ascii_digit()))
            .then(|| x.parse::<i32>().ok())
            .flatten()
    };
    match (num(h), num(m)) {
        (Some(h), Some(m)) if h <= 14 && m < 60 && h * 60 + m <= 14 * 60 => Ok(sign * (h * 60 + m)),
        _ => Err(usage()),
    }
}

/// `HH:MM` (one-digit hours allowed); `24:00` only where `end` is true.
fn parse_hhmm(text: &str, end: bool) -> Result<u16, String> {
    let t = text.trim();
    let bad = || {
        format!(
            "{text:?} is not a time HH:MM{}",
            if end {
                " (00:00 to 24:00)"
            } else {
                " (00:00 to 23:59)"
            }
        )
    };
    let (h, m) = t.split_once(':').ok_or_else(bad)?;
    let digits = |x: &str, n: std::ops::RangeInclusive<usize>| {
        n.contains(&x.len()) && x.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(h, 1..=2) || !digits(m, 2..=2) {
        return Err(bad());
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    match (h, m) {
        (24, 0) if end => Ok(DAY_MINUTES),
        (0..=23, 0..=59) => Ok(h * 60 + m),
        _ => Err(bad()),
    }
}

fn format_hhmm(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// A set of weekdays: bit 0 is Monday, bit 6 Sunday; never empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weekdays(u8);

impl Weekdays {
    pub const ALL: Weekdays = Weekdays(0x7f);

    /// `daily`, `mon`, `mon-fri`, `sat sun`, `fri-mon` (a range may wrap the week),
    /// several separated by spaces, `;` or `/`. Case does not matter; full names work.
    pub fn parse(text: &str) -> Result<Weekdays, String> {
        let usage = || {
            format!(
                "days {text:?}: write weekdays as mon, tue, wed, thu, fri, sat, sun, a range like mon-fri, several like \"sat sun\", or daily"
            )
        };
        let day = |s: &str| {
            let s = s.trim().to_ascii_lowercase();
            DAY_NAMES
                .iter()
                .position(|d| s.len() >= 3 && (s == *d || day_full_name(d) == s))
                .map(|i| i as u8)
        };
        let mut bits = 0u8;
        for part in text
            .split(|c: char| c.is_whitespace() || c == ';' || c == '/')
            .filter(|p| !p.is_empty())
        {
            if part.eq_ignore_ascii_case("daily") {
                bits = Self::ALL.0;
                continue;
            }
            match part.split_once('-') {
                Some((a, b)) => {
                    let (Some(a), Some(b)) = (day(a), day(b)) else {
                        return Err(usage());
                    };
                    let mut d = a;
                    loop {
                        bits |= 1 << d;
                        if d == b {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                }
                None => bits |= 1 << day(part).ok_or_else(usage)?,
            }
        }
        Weekdays::from_bits(bits).ok_or_else(usage)
    }

    /// As stored; `None` for an empty or invalid set.
    pub fn from_bits(bits: u8) -> Option<Weekdays> {
        (bits != 0 && bits <= Self::ALL.0).then_some(Weekdays(bits))
    }

    pub fn bits(self) -> u8 {
        self.0
    }

    /// Monday = 0 … Sunday = 6.
    pub fn contains(self, weekday: u8) -> bool {
        weekday < 7 && self.0 & (1 << weekday) != 0
    }
}

fn day_full_name(short: &str) -> &'static str {
    match short {
        "mon" => "monday",
        "tue" => "tuesday",
        "wed" => "wednesday",
        "thu" => "thursday",
        "fri" => "friday",
        "sat" => "saturday",
        _ => "sunday",
    }
}

impl std::fmt::Display for Weekdays {
    /// `daily`, or runs such as `mon-fri` and `sat sun`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == Self::ALL {
            return f.write_str("daily");
        }
        let mut parts = Vec::new();
        let mut d = 0u8;
        while d < 7 {
            if !self.contains(d) {
                d += 1;
                continue;
            }
            let start = d;
            while d + 1 < 7 && self.contains(d + 1) {
                d += 1;
            }
            let (a, b) = (DAY_NAMES[usize::from(start)], DAY_NAMES[usize::from(d)]);
            parts.push(match d - start {
                0 => a.to_owned(),
                1 => format!("{a} {b}"),
                _ => format!("{a}-{b}"),
            });
            d += 1;
        }
        f.write_str(&parts.join(" "))
    }
}

/// A daily shift time in local minutes after midnight. The shift starts at `start` and
/// ends at `end` the same day if `end` is after `start`, else the next day; `start ==
/// end` is 24 hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShiftTime {
    /// 0..1440.
    pub start: u16,
    /// 0..=1440 (1440 is `24:00`).
    pub end: u16,
}

impl ShiftTime {
    /// The whole day, `00:00`-`24:00`.
    pub const WHOLE_DAY: ShiftTime = ShiftTime {
        start: 0,
        end: DAY_MINUTES,
    };

    /// `("08:00", "20:00")`, `("20:00", "08:00")` (ends the next day), `("08:00",
    /// "08:00")` (24 hours), `("00:00", "24:00")`.
    pub fn parse(start: &str, end: &str) -> Result<ShiftTime, String> {
        let start = parse_hhmm(start, false).map_err(|e| format!("start {e}"))?;
        let end = parse_hhmm(end, true).map_err(|e| format!("end {e}"))?;
        Ok(ShiftTime { start, end })
    }

    /// As stored; `None` when out of range.
    pub fn from_minutes(start: i64, end: i64) -> Option<ShiftTime> {
        let start = u16::try_from(start).ok().filter(|s| *s < DAY_MINUTES)?;
        let end = u16::try_from(end).ok().filter(|e| *e <= DAY_MINUTES)?;
        Some(ShiftTime { start, end })
    }

    /// Length in minutes, 1..=1440.
    pub fn minutes(self) -> u16 {
        if self.end > self.start {
            self.end - self.start
        } else {
            self.end + DAY_MINUTES - self.start
        }
    }

    /// `HH:MM` of the start.
    pub fn start_text(self) -> String {
        format_hhmm(self.start)
    }

    /// `HH:MM` of the end (`24:00` possible).
    pub fn end_text(self) -> String {
        format_hhmm(self.end)
    }

    /// `[start, end)` of this shift when it starts on `day`.
    fn on(self, day: Day, offset_minutes: i32) -> (Millis, Millis) {
        let start = day_start(day, offset_minutes) + i64::from(self.start) * MINUTE_MS;
        (start, start + i64::from(self.minutes()) * MINUTE_MS)
    }
}

impl std::fmt::Display for ShiftTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.start_text(), self.end_text())
    }
}

/// One line of the weekly pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shift {
    pub days: Weekdays,
    pub time: ShiftTime,
    pub contact: String,
}

/// What an override does on its dates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverrideKind {
    /// A holiday plan: the weekly pattern does not apply on these dates; this shift does
    /// (with every other duty override of the same date).
    Duty(ShiftTime),
    /// Sick leave or a swap: the shifts of `absent` starting on these dates are taken
    /// by the override's contact.
    Replace { absent: String },
}

/// A change to the weekly pattern for the dates `first..=last`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// The store's id (0 before it is stored).
    pub id: i64,
    pub first: Day,
    pub last: Day,
    /// Who is on duty instead.
    pub contact: String,
    pub kind: OverrideKind,
}

impl Override {
    /// An override as people write it (a line of `roster_overrides.csv`, a REST body):
    /// dates `from` and `to` (`YYYY-MM-DD`, `to` empty: the same day), the contact on
    /// duty, and either `replaces` (sick leave: no times) or a shift time (`start` and
    /// `end`; both empty: the whole day). Empty strings count as absent. Whether the
    /// contacts are staff of the area is for the caller to check.
    pub fn parse(
        from: &str,
        to: Option<&str>,
        start: Option<&str>,
        end: Option<&str>,
        contact: &str,
        replaces: Option<&str>,
    ) -> Result<Override, String> {
        fn given(x: Option<&str>) -> Option<&str> {
            x.map(str::trim).filter(|x| !x.is_empty())
        }
        let first = parse_date(from).map_err(|e| format!("from: {e}"))?;
        let last = match given(to) {
            Some(t) => parse_date(t).map_err(|e| format!("to: {e}"))?,
            None => first,
        };
        if last < first {
            return Err(format!(
                "to ({}) is before from ({})",
                format_date(last),
                format_date(first)
            ));
        }
        if last - first >= MAX_OVERRIDE_DAYS {
            return Err(format!(
                "an override covers at most {MAX_OVERRIDE_DAYS} days; change the weekly shifts instead"
            ));
        }
        let contact = contact.trim();
        if contact.is_empty() {
            return Err(
                "contact is empty: an override names who is on duty (\"nobody\" is not an option; hours nobody covers go to the area's fallback)"
                    .into(),
            );
        }
        let kind = match (given(replaces), given(start), given(end)) {
            (Some(absent), None, None) if absent == contact => {
                return Err(format!("{contact:?} cannot replace themselves"))
            }
            (Some(absent), None, None) => OverrideKind::Replace {
                absent: absent.to_owned(),
            },
            (Some(_), _, _) => {
                return Err(
                    "a replacement takes over every shift of `replaces` on those dates: leave start and end empty"
                        .into(),
                )
            }
            (None, None, None) => OverrideKind::Duty(ShiftTime::WHOLE_DAY),
            (None, Some(s), Some(e)) => OverrideKind::Duty(ShiftTime::parse(s, e)?),
            (None, _, _) => {
                return Err(
                    "give both start and end (HH:MM), or neither for the whole day".into(),
                )
            }
        };
        Ok(Override {
            id: 0,
            first,
            last,
            contact: contact.to_owned(),
            kind,
        })
    }

    /// Do the dates of two overrides overlap?
    pub fn overlaps(&self, other: &Override) -> bool {
        self.first <= other.last && other.first <= self.last
    }

    fn covers(&self, day: Day) -> bool {
        (self.first..=self.last).contains(&day)
    }
}

/// Where the people on duty come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The weekly pattern.
    Shift,
    /// An override (holiday plan or replacement) put at least one of them on duty.
    Override,
    /// No shift: the area's fallback contact.
    Fallback,
    /// The area has no roster: every staff contact of the area (the behaviour before
    /// rosters existed).
    NoRoster,
    /// Nobody: no shift and no fallback.
    Nobody,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Shift => "shift",
            Source::Override => "override",
            Source::Fallback => "fallback",
            Source::NoRoster => "no_roster",
            Source::Nobody => "nobody",
        }
    }
}

/// Who is on duty for an area at an instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OnDuty {
    /// Contact ids, highest `priority` first, then by id. Empty when nobody is on duty
    /// (also for an area without a roster and without staff contacts).
    pub contacts: Vec<String>,
    pub source: Source,
    /// This answer holds until then (the next start or end of a shift within about a
    /// week); `None`: no change in that time (an area without a roster never changes).
    pub until: Option<Millis>,
}

impl OnDuty {
    /// An area without a roster: all of its staff contacts (ordered as given), always.
    pub fn no_roster(contacts: Vec<String>) -> OnDuty {
        OnDuty {
            contacts,
            source: Source::NoRoster,
            until: None,
        }
    }

    /// Nobody would be told: the hour is a gap in the coverage.
    pub fn is_nobody(&self) -> bool {
        self.contacts.is_empty()
    }
}

/// An area's roster, with what resolution needs to know about its staff.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roster {
    /// The weekly pattern.
    pub shifts: Vec<Shift>,
    /// Overrides; later ones win where two replacements of one contact overlap.
    pub overrides: Vec<Override>,
    /// On duty when no shift is.
    pub fallback: Option<String>,
    /// The area's staff contacts now, with their `priority` (higher is notified first).
    /// Anyone else named in the roster is skipped (they moved to another area).
    pub members: HashMap<String, i64>,
}

/// One shift as it happens on one date.
struct Instance<'a> {
    start: Millis,
    end: Millis,
    contact: &'a str,
    by_override: bool,
}

impl Roster {
    /// The shifts that start on `day`, after overrides, of current members only.
    fn instances_on<'a>(&'a self, day: Day, offset_minutes: i32, out: &mut Vec<Instance<'a>>) {
        let plan: Vec<(ShiftTime, &str)> = self
            .overrides
            .iter()
            .filter(|o| o.covers(day))
            .filter_map(|o| match o.kind {
                OverrideKind::Duty(t) => Some((t, o.contact.as_str())),
                OverrideKind::Replace { .. } => None,
            })
            .collect();
        let holiday = !plan.is_empty();
        let base: Vec<(ShiftTime, &str)> = if holiday {
            plan
        } else {
            let wd = weekday(day);
            self.shifts
                .iter()
                .filter(|s| s.days.contains(wd))
                .map(|s| (s.time, s.contact.as_str()))
                .collect()
        };
        for (time, contact) in base {
            let stand_in = self.overrides.iter().rev().find_map(|o| match &o.kind {
                OverrideKind::Replace { absent } if absent == contact && o.covers(day) => {
                    Some(o.contact.as_str())
                }
                _ => None,
            });
            let who = stand_in.unwrap_or(contact);
            if !self.members.contains_key(who) {
                continue;
            }
            let (start, end) = time.on(day, offset_minutes);
            out.push(Instance {
                start,
                end,
                contact: who,
                by_override: holiday || stand_in.is_some(),
            });
        }
    }

    fn instances(
        &self,
        days: std::ops::RangeInclusive<Day>,
        offset_minutes: i32,
    ) -> Vec<Instance<'_>> {
        let mut out = Vec::new();
        for day in days {
            self.instances_on(day, offset_minutes, &mut out);
        }
        out
    }

    /// Who is on duty at `at` (end of a shift exclusive: at 20:00 the day shift that
    /// ends at 20:00 is over and the night shift has begun).
    pub fn on_duty(&self, at: Millis, offset_minutes: i32) -> OnDuty {
        let today = local_day(at, offset_minutes);
        // A shift lasts at most 24 hours: only those of yesterday and today can be on.
        let near = self.instances(today - 1..=today, offset_minutes);
        let mut on: Vec<&str> = near
            .iter()
            .filter(|i| i.start <= at && at < i.end)
            .map(|i| i.contact)
            .collect();
        on.sort_by(|a, b| {
            let (pa, pb) = (self.members.get(*a), self.members.get(*b));
            pb.cmp(&pa).then_with(|| a.cmp(b))
        });
        on.dedup();
        let by_override = near
            .iter()
            .any(|i| i.by_override && i.start <= at && at < i.end);
        let fallback = self
            .fallback
            .as_deref()
            .filter(|f| self.members.contains_key(*f));
        let (contacts, source) = match (on.is_empty(), fallback) {
            (false, _) if by_override => (on, Source::Override),
            (false, _) => (on, Source::Shift),
            (true, Some(f)) => (vec![f], Source::Fallback),
            (true, None) => (Vec::new(), Source::Nobody),
        };
        OnDuty {
            contacts: contacts.into_iter().map(str::to_owned).collect(),
            source,
            until: self.next_change(at, today, offset_minutes),
        }
    }

    /// The first start or end of a shift after `at`, looking about a week ahead.
    fn next_change(&self, at: Millis, today: Day, offset_minutes: i32) -> Option<Millis> {
        let next = |days| {
            self.instances(days, offset_minutes)
                .iter()
                .flat_map(|i| [i.start, i.end])
                .filter(|t| *t > at)
                .min()
        };
        // Usually within a day; look further only when that finds nothing.
        next(today - 1..=today + 1).or_else(|| next(today + 2..=today + LOOKAHEAD_DAYS))
    }
}

/// The coverage of one hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HourCoverage {
    /// The local hour's start.
    pub start: Millis,
    /// Everyone on duty at some time in the hour, highest priority first (as at the
    /// first moment they appear).
    pub on_duty: Vec<String>,
    /// Where they came from during the hour, in order of appearance.
    pub sources: Vec<Source>,
    /// Minutes of the hour with nobody on duty (a gap: > 0).
    pub nobody_minutes: u32,
}

/// A stretch of time with the same people on duty from the same source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    pub from: Millis,
    pub to: Millis,
    pub on_duty: Vec<String>,
    pub source: Source,
}

/// Coverage of one area over a number of hours.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Coverage {
    pub hours: Vec<HourCoverage>,
    /// The same time as `hours`, as stretches of one answer each.
    pub runs: Vec<Run>,
    /// Stretches with nobody on duty, `[from, to)`.
    pub gaps: Vec<(Millis, Millis)>,
}

impl Coverage {
    /// Hours with somebody on duty throughout?
    pub fn is_covered(&self) -> bool {
        self.gaps.is_empty()
    }
}

/// Coverage of the `hours` hours from `from` (a local hour's start), given who is on
/// duty at an instant (`resolve`, e.g. [`Roster::on_duty`], whose `until` says how long
/// the answer holds).
pub fn coverage(from: Millis, hours: u32, resolve: impl Fn(Millis) -> OnDuty) -> Coverage {
    let mut out = Coverage::default();
    for h in 0..i64::from(hours) {
        let start = from + h * HOUR_MS;
        let end = start + HOUR_MS;
        let mut hour = HourCoverage {
            start,
            on_duty: Vec::new(),
            sources: Vec::new(),
            nobody_minutes: 0,
        };
        let mut t = start;
        while t < end {
            let duty = resolve(t);
            // `until` is after `t` by construction; guard anyway so the loop always ends.
            let piece_end = duty.until.filter(|u| *u > t).map_or(end, |u| u.min(end));
            for c in &duty.contacts {
                if !hour.on_duty.contains(c) {
                    hour.on_duty.push(c.clone());
                }
            }
            if !hour.sources.contains(&duty.source) {
                hour.sources.push(duty.source);
            }
            if duty.is_nobody() {
                hour.nobody_minutes += u32::try_from((piece_end - t) / MINUTE_MS).unwrap_or(60);
                match out.gaps.last_mut() {
                    Some(g) if g.1 == t => g.1 = piece_end,
                    _ => out.gaps.push((t, piece_end)),
                }
            }
            match out.runs.last_mut() {
                Some(r) if r.to == t && r.on_duty == duty.contacts && r.source == duty.source => {
                    r.to = piece_end
                }
                _ => out.runs.push(Run {
                    from: t,
                    to: piece_end,
                    on_duty: duty.contacts,
                    source: duty.source,
                }),
            }
            t = piece_end;
        }
        out.hours.push(hour);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The district's offset in these tests (+08:00).
    const OFF: i32 = 480;

    /// Unix ms of a local time, `"2026-12-07 08:00"` (a Monday).
    fn at(text: &str) -> Millis {
        let (d, t) = text.split_once(' ').expect("date and time");
        let day = parse_date(d).expect("date");
        day_start(day, OFF) + i64::from(parse_hhmm(t, true).expect("time")) * MINUTE_MS
    }

    fn shift(days: &str, start: &str, end: &str, contact: &str) -> Shift {
        Shift {
            days: Weekdays::parse(days).expect("days"),
            time: ShiftTime::parse(start, end).expect("time"),
            contact: contact.into(),
        }
    }

    fn duty(first: &str, last: &str, start: &str, end: &str, contact: &str) -> Override {
        Override {
            id: 0,
            first: parse_date(first).expect("first"),
            last: parse_date(last).expect("last"),
            contact: contact.into(),
            kind: OverrideKind::Duty(ShiftTime::parse(start, end).expect("time")),
        }
    }

    fn replace(first: &str, last: &str, absent: &str, contact: &str) -> Override {
        Override {
            id: 0,
            first: parse_date(first).expect("first"),
            last: parse_date(last).expect("last"),
            contact: contact.into(),
            kind: OverrideKind::Replace {
                absent: absent.into(),
            },
        }
    }

    /// A village with a day/night pattern: Li days 08-20 on weekdays, Wang nights
    /// 20-08 every day, Zhao days at the weekend.
    fn village() -> Roster {
        Roster {
            shifts: vec![
                shift("mon-fri", "08:00", "20:00", "li"),
                shift("daily", "20:00", "08:00", "wang"),
                shift("sat sun", "08:00", "20:00", "zhao"),
            ],
            overrides: vec![],
            fallback: None,
            members: [("li", 0), ("wang", 0), ("zhao", 0), ("chen", 0)]
                .into_iter()
                .map(|(c, p)| (c.to_owned(), p))
                .collect(),
        }
    }

    /// (contacts, source) on duty at a local time: the one check every case goes through.
    fn check(r: &Roster, when: &str, who: &[&str], source: Source) {
        let d = r.on_duty(at(when), OFF);
        assert_eq!(
            (
                d.contacts.iter().map(String::as_str).collect::<Vec<_>>(),
                d.source
            ),
            (who.to_vec(), source),
            "on duty at {when}"
        );
    }

    #[test]
    fn dates_weekdays_and_offsets() {
        assert_eq!(parse_date("1970-01-01"), Ok(0));
        assert_eq!(weekday(0), 3, "a Thursday");
        let monday = parse_date("2026-12-07").expect("date");
        assert_eq!(weekday(monday), 0);
        assert_eq!(weekday_name(monday + 6), "Sun");
        assert_eq!(format_date(monday), "2026-12-07");
        assert!(parse_date("2026-02-30").is_err());
        // 08:00 in +08:00 is midnight UTC.
        assert_eq!(at("2026-12-07 08:00") % DAY_MS, 0);
        assert_eq!(local_day(at("2026-12-07 00:00"), OFF), monday);
        assert_eq!(local_day(at("2026-12-07 00:00") - 1, OFF), monday - 1);
        assert_eq!(local_minute(at("2026-12-07 20:30"), OFF), 20 * 60 + 30);
        assert_eq!(
            hour_floor(at("2026-12-07 20:30") + 5, OFF),
            at("2026-12-07 20:00")
        );
        // A half-hour offset: local hours do not start on UTC hours.
        assert_eq!(hour_floor(0, 330), -30 * MINUTE_MS);
        assert_eq!(parse_utc_offset("+08:00"), Ok(480));
        assert_eq!(parse_utc_offset("-03:30"), Ok(-210));
        assert_eq!(parse_utc_offset("Z"), Ok(0));
        for bad in ["08:00", "+8:00", "+15:00", "+08:60", ""] {
            assert!(parse_utc_offset(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn weekdays_and_times_parse_as_people_write_them() {
        for (text, bits, shown) in [
            ("daily", 0x7f, "daily"),
            ("Mon-Fri", 0x1f, "mon-fri"),
            ("sat sun", 0x60, "sat sun"),
            ("Saturday;sunday", 0x60, "sat sun"),
            ("fri-mon", 0b111_0001, "mon fri-sun"),
            ("mon wed/fri", 0b1_0101, "mon wed fri"),
            ("mon-sun", 0x7f, "daily"),
        ] {
            let w = Weekdays::parse(text).expect(text);
            assert_eq!((w.bits(), w.to_string().as_str()), (bits, shown), "{text}");
        }
        for bad in ["", "weekdays", "mo", "mon-xyz", "fallback", "mon,tue"] {
            assert!(Weekdays::parse(bad).is_err(), "{bad:?}");
        }
        let night = ShiftTime::parse("20:00", "08:00").expect("night");
        assert_eq!(night.minutes(), 12 * 60);
        assert_eq!(
            ShiftTime::parse("8:00", "08:00").expect("24h").minutes(),
            1440
        );
        assert_eq!(
            ShiftTime::parse("00:00", "24:00").expect("day").minutes(),
            1440
        );
        assert_eq!(ShiftTime::WHOLE_DAY.to_string(), "00:00-24:00");
        for (s, e) in [
            ("24:00", "08:00"),
            ("08:00", "24:30"),
            ("8", "9:00"),
            ("08:0", "09:00"),
        ] {
            assert!(ShiftTime::parse(s, e).is_err(), "{s}-{e}");
        }
    }

    #[test]
    fn overrides_parse_as_people_write_them() {
        let sick = Override::parse(
            "2026-12-08",
            Some("2026-12-09"),
            None,
            Some(""),
            "chen",
            Some("wang"),
        )
        .expect("sick leave");
        assert_eq!(sick, replace("2026-12-08", "2026-12-09", "wang", "chen"));
        let holiday =
            Override::parse("2026-12-09", None, None, None, "chen", None).expect("holiday");
        assert_eq!(
            holiday,
            duty("2026-12-09", "2026-12-09", "00:00", "24:00", "chen")
        );
        for (from, to, start, end, contact, replaces, needle) in [
            (
                "2026-12-09",
                Some("2026-12-08"),
                None,
                None,
                "chen",
                None,
                "before",
            ),
            ("2026-13-01", None, None, None, "chen", None, "from:"),
            (
                "2026-12-01",
                Some("2027-12-31"),
                None,
                None,
                "chen",
                None,
                "at most 366 days",
            ),
            (
                "2026-12-01",
                None,
                None,
                None,
                " ",
                None,
                "contact is empty",
            ),
            (
                "2026-12-01",
                None,
                Some("08:00"),
                Some("20:00"),
                "chen",
                Some("li"),
                "leave start and end empty",
            ),
            (
                "2026-12-01",
                None,
                Some("08:00"),
                None,
                "chen",
                None,
                "both start and end",
            ),
            (
                "2026-12-01",
                None,
                Some("25:00"),
                Some("08:00"),
                "chen",
                None,
                "start",
            ),
            (
                "2026-12-01",
                None,
                None,
                None,
                "li",
                Some("li"),
                "themselves",
            ),
        ] {
            let err = Override::parse(from, to, start, end, contact, replaces).expect_err(needle);
            assert!(err.contains(needle), "{needle:?} not in {err:?}");
        }
    }

    #[test]
    fn shift_change_at_eight_and_at_eight_in_the_evening_end_exclusive() {
        let r = village();
        // Monday 2026-12-07.
        check(&r, "2026-12-07 07:59", &["wang"], Source::Shift);
        check(&r, "2026-12-07 08:00", &["li"], Source::Shift);
        check(&r, "2026-12-07 19:59", &["li"], Source::Shift);
        check(&r, "2026-12-07 20:00", &["wang"], Source::Shift);
        // One millisecond before the change, still the old shift.
        let d = r.on_duty(at("2026-12-07 20:00") - 1, OFF);
        assert_eq!(d.contacts, ["li"]);
        assert_eq!(
            d.until,
            Some(at("2026-12-07 20:00")),
            "holds until the change"
        );
    }

    #[test]
    fn a_night_shift_runs_across_midnight_and_across_the_week_boundary() {
        let r = village();
        check(&r, "2026-12-07 23:59", &["wang"], Source::Shift);
        check(&r, "2026-12-08 00:00", &["wang"], Source::Shift);
        check(&r, "2026-12-08 03:00", &["wang"], Source::Shift);
        // Sunday night (a shift of Sunday) into Monday morning; then Monday's day shift.
        let mut r = village();
        r.shifts = vec![
            shift("sun", "20:00", "08:00", "chen"),
            shift("mon", "08:00", "20:00", "li"),
        ];
        check(&r, "2026-12-13 19:59", &[], Source::Nobody);
        check(&r, "2026-12-13 20:00", &["chen"], Source::Shift);
        check(&r, "2026-12-14 00:00", &["chen"], Source::Shift);
        check(&r, "2026-12-14 07:59", &["chen"], Source::Shift);
        check(&r, "2026-12-14 08:00", &["li"], Source::Shift);
        // Monday night has no shift of its own.
        check(&r, "2026-12-14 20:00", &[], Source::Nobody);
    }

    #[test]
    fn a_holiday_plan_replaces_the_pattern_for_its_dates_only() {
        let mut r = village();
        // Wednesday 2026-12-09 is a holiday: Chen all day, nobody else.
        r.overrides = vec![duty("2026-12-09", "2026-12-09", "00:00", "24:00", "chen")];
        // Tuesday's night shift (a Tuesday shift) still runs into the holiday morning.
        check(&r, "2026-12-09 03:00", &["chen", "wang"], Source::Override);
        check(&r, "2026-12-09 08:00", &["chen"], Source::Override);
        check(&r, "2026-12-09 21:00", &["chen"], Source::Override);
        // The pattern's Wednesday night shift is gone; Thursday is back to normal.
        check(&r, "2026-12-10 00:00", &[], Source::Nobody);
        check(&r, "2026-12-10 08:00", &["li"], Source::Shift);
        check(&r, "2026-12-08 12:00", &["li"], Source::Shift);
    }

    #[test]
    fn a_holiday_plan_with_day_and_night_shifts() {
        let mut r = village();
        r.overrides = vec![
            duty("2026-12-09", "2026-12-10", "08:00", "20:00", "zhao"),
            duty("2026-12-09", "2026-12-10", "20:00", "08:00", "chen"),
        ];
        check(&r, "2026-12-09 07:00", &["wang"], Source::Shift);
        check(&r, "2026-12-09 09:00", &["zhao"], Source::Override);
        check(&r, "2026-12-10 02:00", &["chen"], Source::Override);
        // The holiday's last night runs into the next (normal) day.
        check(&r, "2026-12-11 07:59", &["chen"], Source::Override);
        check(&r, "2026-12-11 08:00", &["li"], Source::Shift);
    }

    #[test]
    fn sick_leave_replaces_one_contact_and_nobody_else() {
        let mut r = village();
        r.overrides = vec![replace("2026-12-08", "2026-12-09", "wang", "chen")];
        // Monday night (a shift of Monday) is still Wang's.
        check(&r, "2026-12-08 03:00", &["wang"], Source::Shift);
        check(&r, "2026-12-08 12:00", &["li"], Source::Shift);
        check(&r, "2026-12-08 22:00", &["chen"], Source::Override);
        // The night of the last date runs to its end.
        check(&r, "2026-12-10 07:59", &["chen"], Source::Override);
        check(&r, "2026-12-10 20:00", &["wang"], Source::Shift);
        // A later replacement of the same contact wins; replacements do not chain.
        r.overrides
            .push(replace("2026-12-09", "2026-12-09", "wang", "zhao"));
        r.overrides
            .push(replace("2026-12-09", "2026-12-09", "zhao", "li"));
        check(&r, "2026-12-09 22:00", &["zhao"], Source::Override);
        // Sick leave during a holiday plan replaces the holiday shift too.
        r.overrides = vec![
            duty("2026-12-09", "2026-12-09", "00:00", "24:00", "li"),
            replace("2026-12-09", "2026-12-09", "li", "chen"),
        ];
        check(&r, "2026-12-09 12:00", &["chen"], Source::Override);
    }

    #[test]
    fn an_empty_shift_falls_to_the_fallback_and_without_one_is_a_gap() {
        let mut r = village();
        r.shifts = vec![shift("mon-fri", "08:00", "20:00", "li")];
        check(&r, "2026-12-07 21:00", &[], Source::Nobody);
        let d = r.on_duty(at("2026-12-07 21:00"), OFF);
        assert!(d.is_nobody());
        assert_eq!(
            d.until,
            Some(at("2026-12-08 08:00")),
            "nobody until the next shift"
        );
        // Friday evening to Monday morning: the next change is days away.
        let d = r.on_duty(at("2026-12-11 21:00"), OFF);
        assert_eq!(d.until, Some(at("2026-12-14 08:00")));
        r.fallback = Some("wang".into());
        check(&r, "2026-12-07 21:00", &["wang"], Source::Fallback);
        check(&r, "2026-12-07 12:00", &["li"], Source::Shift);
        // A fallback who is no longer staff of the area is no fallback.
        r.members.remove("wang");
        check(&r, "2026-12-07 21:00", &[], Source::Nobody);
    }

    #[test]
    fn someone_who_left_the_area_is_not_on_duty() {
        let mut r = village();
        r.members.remove("li");
        r.fallback = Some("chen".into());
        check(&r, "2026-12-07 12:00", &["chen"], Source::Fallback);
        // ... nor as a stand-in.
        let mut r = village();
        r.overrides = vec![replace("2026-12-07", "2026-12-07", "li", "ghost")];
        check(&r, "2026-12-07 12:00", &[], Source::Nobody);
    }

    #[test]
    fn two_on_duty_are_ordered_by_priority_then_id() {
        let mut r = village();
        r.shifts.push(shift("mon", "10:00", "12:00", "chen"));
        check(&r, "2026-12-07 11:00", &["chen", "li"], Source::Shift);
        r.members.insert("li".into(), 5);
        check(&r, "2026-12-07 11:00", &["li", "chen"], Source::Shift);
        // The same person in two overlapping shifts is named once.
        r.shifts.push(shift("mon", "09:00", "13:00", "li"));
        check(&r, "2026-12-07 11:00", &["li", "chen"], Source::Shift);
    }

    #[test]
    fn coverage_flags_every_hour_with_nobody_on_duty() {
        let mut r = village();
        // Monday: Li 08:00-19:30, nobody 19:30-20:00, then Wang.
        r.shifts = vec![
            shift("mon", "08:00", "19:30", "li"),
            shift("mon", "20:00", "08:00", "wang"),
        ];
        let from = at("2026-12-07 00:00");
        let c = coverage(from, 24, |t| r.on_duty(t, OFF));
        assert_eq!(c.hours.len(), 24);
        let gaps: Vec<(usize, u32)> = c
            .hours
            .iter()
            .enumerate()
            .filter(|(_, h)| h.nobody_minutes > 0)
            .map(|(i, h)| (i, h.nobody_minutes))
            .collect();
        // 00:00-08:00 (Sunday has no night shift) and half of 19:00-20:00.
        let mut want: Vec<(usize, u32)> = (0..8).map(|h| (h, 60)).collect();
        want.push((19, 30));
        assert_eq!(gaps, want);
        assert_eq!(
            c.gaps,
            vec![
                (from, at("2026-12-07 08:00")),
                (at("2026-12-07 19:30"), at("2026-12-07 20:00"))
            ]
        );
        assert!(!c.is_covered());
        let h19 = &c.hours[19];
        assert_eq!(h19.on_duty, ["li"]);
        assert_eq!(h19.sources, [Source::Shift, Source::Nobody]);
        assert_eq!(c.hours[20].on_duty, ["wang"]);
        assert_eq!(
            c.runs
                .iter()
                .map(|r| (r.on_duty.join(","), r.source))
                .collect::<Vec<_>>(),
            vec![
                (String::new(), Source::Nobody),
                ("li".into(), Source::Shift),
                (String::new(), Source::Nobody),
                ("wang".into(), Source::Shift),
            ]
        );
        // With a fallback every hour is covered.
        r.fallback = Some("chen".into());
        let c = coverage(from, 24 * 7, |t| r.on_duty(t, OFF));
        assert!(c.is_covered(), "{:?}", c.gaps);
        assert_eq!(c.hours[3].sources, [Source::Fallback]);
    }

    #[test]
    fn an_area_without_a_roster_is_covered_by_its_staff_or_not_at_all() {
        let from = at("2026-12-07 00:00");
        let staff = coverage(from, 48, |_| {
            OnDuty::no_roster(vec!["a".into(), "b".into()])
        });
        assert!(staff.is_covered());
        assert_eq!(staff.runs.len(), 1);
        assert_eq!(staff.runs[0].to, from + 48 * HOUR_MS);
        let nobody = coverage(from, 48, |_| OnDuty::no_roster(vec![]));
        assert_eq!(nobody.gaps, vec![(from, from + 48 * HOUR_MS)]);
        assert!(nobody.hours.iter().all(|h| h.nobody_minutes == 60));
    }
}
