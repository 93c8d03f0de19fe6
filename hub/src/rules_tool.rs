//! Supervisor tooling for rule files: `hub rules check` and `hub rules test`.
//!
//! * [`check`] parses and validates a rules file with the same
//!   [`RuleSet::from_toml_str`] the hub uses at start-up, and either prints a short
//!   summary or a compiler-style diagnostic (`FILE:LINE:COL: error: ...`, the source
//!   line, a caret under the column).
//! * [`replay`] feeds a recorded stream of device messages (JSONL, see
//!   `docs/rules.md (section 7)`) through an [`Engine`] on **virtual time** and prints the
//!   alarms the rules would raise and clear. Nothing sleeps and nothing reads the wall
//!   clock: every line's `at` is both the observation's time and "now", and the
//!   engine's timers are fired at their own deadlines between lines, so a "4 hours of
//!   silence" alarm comes out at the instant the 4 hours were reached.
//!
//! The one key decision: recorded `event` payloads go through the hub's production
//! parser ([`contract::parse_event`], [`contract::parse_status`]), never a parser of
//! our own, so a replay accepts and decodes exactly what the running hub would.
//!
//! Everything takes readers and writers, so the commands are tested without
//! processes; `cli.rs` only opens files and maps [`exit_code`]s.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufRead, Write};

use alert_rules::{Action, Decision, Engine, Millis, Observation, RuleSet, RulesError, Signal};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use crate::ingest::contract::{self, DeviceId};

/// Exit codes of `hub rules check` and `hub rules test`.
pub mod exit_code {
    /// The rules file is valid (and, for `test`, every recorded line was replayed).
    pub const OK: u8 = 0;
    /// The rules file has a mistake (reported as `FILE:LINE:COL: error: ...`).
    pub const INVALID_RULES: u8 = 1;
    /// The tool could not run: a file could not be read, output could not be written,
    /// or the command line was wrong (clap uses 2 for usage errors too).
    pub const CANNOT_RUN: u8 = 2;
    /// `test` only: some recorded lines were bad and skipped (each reported as
    /// `FILE:LINE: reason`); the alarms of the good lines were still printed.
    pub const BAD_LINES: u8 = 3;
}

/// Why a command could not finish.
#[derive(Debug, thiserror::Error)]
pub enum RulesToolError {
    /// The recorded stream could not be read (not: a line was bad; that is data).
    #[error("cannot read {name}: {source}")]
    Read {
        /// The stream's name as given on the command line.
        name: String,
        #[source]
        source: io::Error,
    },
    /// stdout or stderr could not be written (e.g. a closed pipe).
    #[error("cannot write output: {0}")]
    Write(#[source] io::Error),
}

impl RulesToolError {
    fn write(e: io::Error) -> Self {
        RulesToolError::Write(e)
    }
}

// ---------------------------------------------------------------------------
// rules check
// ---------------------------------------------------------------------------

/// `hub rules check`: validates `src` (named `name` in messages). On success writes a
/// summary to `out` and returns [`exit_code::OK`]; on a mistake writes a diagnostic to
/// `err` and returns [`exit_code::INVALID_RULES`].
pub fn check(
    name: &str,
    src: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, RulesToolError> {
    match parse_rules(name, src, err)? {
        Some(rules) => {
            out.write_all(summary(name, src, &rules).as_bytes())
                .map_err(RulesToolError::write)?;
            Ok(exit_code::OK)
        }
        None => Ok(exit_code::INVALID_RULES),
    }
}

/// Parses and validates a rules file; on a mistake writes [`diagnostic`] to `err` and
/// returns `None`.
pub fn parse_rules(
    name: &str,
    src: &str,
    err: &mut dyn Write,
) -> Result<Option<RuleSet>, RulesToolError> {
    match RuleSet::from_toml_str(src) {
        Ok(rules) => Ok(Some(rules)),
        Err(e) => {
            err.write_all(diagnostic(name, src, &e).as_bytes())
                .map_err(RulesToolError::write)?;
            Ok(None)
        }
    }
}

/// A compiler-style report of a rules file mistake:
///
/// ```text
/// rules.toml:8:10: error: invalid window "07:00-25:00": ...
///  8 | window = "07:00-25:00"
///    |          ^
/// ```
///
/// Without a location (never seen in practice) only `FILE: error: message`.
pub fn diagnostic(name: &str, src: &str, e: &RulesError) -> String {
    // The header stays one line even if the TOML parser's message has several.
    let message = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let Some(loc) = e.location() else {
        return format!("{name}: error: {message}\n");
    };
    let text = src.lines().nth(loc.line.saturating_sub(1)).unwrap_or("");
    let gutter = loc.line.to_string();
    let blank = " ".repeat(gutter.len());
    // Copy tabs so the caret lines up in a terminal; wide (CJK) characters take two cells.
    let before = loc.column.saturating_sub(1);
    let mut caret = String::new();
    let mut seen = 0;
    for c in text.chars().take(before) {
        seen += 1;
        match c {
            '\t' => caret.push('\t'),
            c if is_wide(c) => caret.push_str("  "),
            _ => caret.push(' '),
        }
    }
    caret.push_str(&" ".repeat(before - seen));
    format!(
        "{name}:{}:{}: error: {message}\n{gutter} | {text}\n{blank} | {caret}^\n",
        loc.line, loc.column
    )
}

/// East Asian wide characters (CJK, Hangul, full-width forms): two terminal cells.
/// A small table instead of a dependency; rule titles may be written in Chinese.
fn is_wide(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x115F | 0x2E80..=0x303E | 0x3041..=0x33FF | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF | 0xA000..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6
        | 0x1F300..=0x1F64F | 0x20000..=0x3FFFD)
}

/// The summary `hub rules check` prints for a valid file: rules by kind, rules disabled
/// by default, household overrides and the timezone offset.
pub fn summary(name: &str, src: &str, rules: &RuleSet) -> String {
    let ids = rules.rule_ids();
    // Override households must be non-empty (the parser refuses ""), so the rules in
    // force for "" are exactly the rules enabled by default.
    let enabled: BTreeSet<&str> = rules.rule_ids_for("").into_iter().collect();
    let mut by_kind: Vec<(&str, Vec<&str>)> = Vec::new();
    for id in &ids {
        let kind = rules.rule_kind(id).unwrap_or("unknown");
        match by_kind.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, list)) => list.push(id),
            None => by_kind.push((kind, vec![id])),
        }
    }
    let disabled: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| !enabled.contains(id))
        .collect();
    let (tables, households) = count_overrides(src);
    let width = by_kind.iter().map(|(k, _)| k.len()).max().unwrap_or(0);

    let mut s = format!("{name}: ok\n");
    s.push_str(&format!(
        "  timezone offset: {} (local times in rules and replays)\n",
        format_offset(rules.utc_offset_minutes())
    ));
    s.push_str(&format!(
        "  rules: {} ({} enabled by default)\n",
        ids.len(),
        enabled.len()
    ));
    for (kind, list) in &by_kind {
        s.push_str(&format!(
            "    {kind:<width$}  {:>2}  {}\n",
            list.len(),
            list.join(", ")
        ));
    }
    if !disabled.is_empty() {
        s.push_str(&format!("  disabled by default: {}\n", disabled.join(", ")));
    }
    if tables == 0 {
        s.push_str("  household overrides: none\n");
    } else {
        s.push_str(&format!(
            "  household overrides: {tables} ({households} {})\n",
            plural(households, "household", "households")
        ));
    }
    s
}

/// `[[override]]` tables in a file that already validated, and how many distinct
/// households they name. (`RuleSet` does not expose its overrides, so the count comes
/// from the text.)
fn count_overrides(src: &str) -> (usize, usize) {
    let Ok(table) = src.parse::<toml::Table>() else {
        return (0, 0);
    };
    let Some(list) = table.get("override").and_then(|v| v.as_array()) else {
        return (0, 0);
    };
    let households: BTreeSet<&str> = list
        .iter()
        .filter_map(|o| o.get("household").and_then(|h| h.as_str()))
        .collect();
    (list.len(), households.len())
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// `+08:00` for 480.
fn format_offset(minutes: i32) -> String {
    let sign = if minutes < 0 { '-' } else { '+' };
    let m = minutes.unsigned_abs();
    format!("{sign}{:02}:{:02}", m / 60, m % 60)
}

// ---------------------------------------------------------------------------
// rules test: the recorded stream
// ---------------------------------------------------------------------------

/// One valid line of a recorded stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    /// `at`, in Unix milliseconds.
    pub at: Millis,
    /// Household id.
    pub household: String,
    /// Device id.
    pub device: String,
    /// The decoded `event` or `status`.
    pub signal: Signal,
}

/// Parses one line of a recorded stream (not blank, not a `#` comment):
///
/// ```text
/// {"at":"2026-11-02T08:00:00+08:00","household":"h-0001","device":"d-0001-motion","event":{...}}
/// {"at":1793577600000,"household":"h-0001","device":"d-0001-motion","status":"offline"}
/// ```
///
/// `event` is a device contract v1 payload, decoded by the hub's own
/// [`contract::parse_event`]; `status` is `"online"` or `"offline"` (a Last Will),
/// decoded by [`contract::parse_status`]. Other fields are ignored. The error is the
/// reason, for `FILE:LINE: reason`.
pub fn parse_record(line: &str) -> Result<Recorded, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(obj) = value else {
        return Err("a line must be a JSON object".into());
    };
    let at = match obj.get("at") {
        Some(v) => parse_at(v)?,
        None => return Err("missing field `at`".into()),
    };
    let household = id_field(&obj, "household")?;
    let device = id_field(&obj, "device")?;
    let signal = match (obj.get("event"), obj.get("status")) {
        (Some(event), None) => {
            let bytes = serde_json::to_vec(event).map_err(|e| format!("field `event`: {e}"))?;
            contract::parse_event(&bytes)
                .map(|ev| ev.signal)
                .map_err(|r| {
                    format!(
                        "field `event` rejected by the device contract ({}): {}",
                        r.code.as_str(),
                        r.reason
                    )
                })?
        }
        (None, Some(status)) => {
            let Some(s) = status.as_str() else {
                return Err(r#"field `status` must be "online" or "offline""#.into());
            };
            let payload = serde_json::json!({ "state": s }).to_string();
            contract::parse_status(payload.as_bytes()).map_err(|_| {
                format!(r#"field `status` must be "online" or "offline", got {s:?}"#)
            })?
        }
        (Some(_), Some(_)) => {
            return Err("a line has either `event` or `status`, not both".into());
        }
        (None, None) => return Err("a line needs an `event` object or a `status`".into()),
    };
    Ok(Recorded {
        at,
        household,
        device,
        signal,
    })
}

fn id_field(obj: &serde_json::Map<String, Value>, field: &str) -> Result<String, String> {
    let Some(v) = obj.get(field) else {
        return Err(format!("missing field `{field}`"));
    };
    let Some(s) = v.as_str() else {
        return Err(format!("field `{field}` must be a string"));
    };
    // The same id rules as `hub admin` and the device contract.
    DeviceId::parse(s)
        .map_err(|_| format!("field `{field}` must be an id of 1-64 characters a-z 0-9 - _"))?;
    Ok(s.to_owned())
}

fn parse_at(v: &Value) -> Result<Millis, String> {
    match v {
        Value::String(s) => parse_instant(s).map_err(|e| format!("field `at`: {e}")),
        Value::Number(n) => match n.as_i64() {
            Some(ms) if representable(ms) => Ok(ms),
            _ => Err(format!(
                "field `at` must be whole Unix milliseconds (or an RFC 3339 time), got {n}"
            )),
        },
        _ => Err(
            "field `at` must be an RFC 3339 time (2026-11-02T08:00:00+08:00) or Unix milliseconds"
                .into(),
        ),
    }
}

/// Parses an instant given as RFC 3339 with an offset (`2026-11-02T08:00:00+08:00`) or
/// as whole Unix milliseconds (`1793577600000`). Used for `at` and `--until`.
pub fn parse_instant(s: &str) -> Result<Millis, String> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        if representable(ms) {
            return Ok(ms);
        }
    }
    let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|e| {
        format!("{s:?} is not an RFC 3339 time such as 2026-11-02T08:00:00+08:00 ({e})")
    })?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as Millis)
}

/// Whether `ms` is a date the `time` crate can show (years -9999..=9999).
fn representable(ms: Millis) -> bool {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).is_ok()
}

/// `at` shown in the rule file's local time, RFC 3339 (`2026-11-02T12:00:00+08:00`;
/// milliseconds only when not zero).
pub fn local_time(at: Millis, offset_minutes: i32) -> String {
    let shown = UtcOffset::from_whole_seconds(offset_minutes.saturating_mul(60))
        .ok()
        .and_then(|off| {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1_000_000)
                .ok()
                .map(|t| t.to_offset(off))
        })
        .and_then(|t| t.format(&Rfc3339).ok());
    shown.unwrap_or_else(|| format!("{at} ms"))
}

// ---------------------------------------------------------------------------
// rules test: replay
// ---------------------------------------------------------------------------

/// How to replay.
#[derive(Clone, Debug, Default)]
pub struct ReplayOptions {
    /// One JSON object per decision (a serialized [`Decision`]) on `out` instead of
    /// text lines; the summary then goes to `err`, so `out` stays pure JSONL.
    pub json: bool,
    /// Replay up to this instant: lines after it are not replayed, and timers fire up
    /// to it. Without it the replay ends at the last line's time.
    pub until: Option<Millis>,
}

/// What a replay found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReplayReport {
    /// Every decision, in the order printed.
    pub decisions: Vec<Decision>,
    /// Lines fed to the engine.
    pub replayed: usize,
    /// Lines skipped because they were bad (each reported on `err`).
    pub bad_lines: usize,
    /// Lines whose `at` was earlier than the previous line's (replayed at that time).
    pub out_of_order: usize,
    /// Valid lines later than `--until`, not replayed.
    pub after_until: usize,
    /// First and last instant of virtual time, if anything was replayed.
    pub span: Option<(Millis, Millis)>,
}

impl ReplayReport {
    /// [`exit_code::BAD_LINES`] if any line was bad, else [`exit_code::OK`].
    pub fn exit_code(&self) -> u8 {
        if self.bad_lines > 0 {
            exit_code::BAD_LINES
        } else {
            exit_code::OK
        }
    }

    /// Raises per rule id.
    pub fn raises(&self) -> BTreeMap<&str, usize> {
        let mut m = BTreeMap::new();
        for d in self.decisions.iter().filter(|d| d.action == Action::Raise) {
            *m.entry(d.rule_id.as_str()).or_insert(0) += 1;
        }
        m
    }
}

/// Reads the whole stream: valid records in order (out-of-order times moved up to the
/// previous line's), every bad line reported on `err` as `NAME:LINE: reason`.
fn read_stream(
    name: &str,
    mut events: impl BufRead,
    err: &mut dyn Write,
    offset_minutes: i32,
    report: &mut ReplayReport,
) -> Result<Vec<Recorded>, RulesToolError> {
    let mut records: Vec<Recorded> = Vec::new();
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    loop {
        buf.clear();
        let n = events
            .read_until(b'\n', &mut buf)
            .map_err(|source| RulesToolError::Read {
                name: name.to_owned(),
                source,
            })?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let parsed = match std::str::from_utf8(&buf) {
            Err(e) => Err(format!(
                "not valid UTF-8 (first bad byte at column {})",
                e.valid_up_to() + 1
            )),
            Ok(text) => {
                let text = text.trim();
                if text.is_empty() || text.starts_with('#') {
                    continue;
                }
                parse_record(text)
            }
        };
        let mut rec = match parsed {
            Ok(r) => r,
            Err(reason) => {
                report.bad_lines += 1;
                writeln!(err, "{name}:{line_no}: {reason}").map_err(RulesToolError::write)?;
                continue;
            }
        };
        if let Some(prev) = records.last().map(|r| r.at) {
            if rec.at < prev {
                report.out_of_order += 1;
                writeln!(
                    err,
                    "{name}:{line_no}: warning: `at` {} is earlier than the previous line's {}; replayed at {}",
                    local_time(rec.at, offset_minutes),
                    local_time(prev, offset_minutes),
                    local_time(prev, offset_minutes),
                )
                .map_err(RulesToolError::write)?;
                rec.at = prev;
            }
        }
        records.push(rec);
    }
    Ok(records)
}

/// The household, or `village:<id>` for a grouped incident.
fn subject(d: &Decision) -> String {
    match (&d.household, &d.village) {
        (Some(h), _) => h.clone(),
        (None, Some(v)) => format!("village:{v}"),
        (None, None) => "-".to_string(),
    }
}

/// Writes decisions as they come and remembers them.
struct Printer<'a> {
    out: &'a mut dyn Write,
    json: bool,
    offset_minutes: i32,
    /// Column widths, so the text output lines up.
    household_w: usize,
    rule_w: usize,
    device_w: usize,
    decisions: Vec<Decision>,
}

impl Printer<'_> {
    fn emit(&mut self, decisions: Vec<Decision>) -> Result<(), RulesToolError> {
        for d in decisions {
            if self.json {
                let line = serde_json::to_string(&d)
                    .map_err(|e| RulesToolError::Write(io::Error::other(e)))?;
                writeln!(self.out, "{line}")
            } else {
                let action = match d.action {
                    Action::Raise => "RAISE",
                    Action::Clear => "CLEAR",
                };
                writeln!(
                    self.out,
                    "{}  {action:<5}  {:<8}  {:<hw$}  {:<rw$}  {:<dw$}  {}",
                    local_time(d.at, self.offset_minutes),
                    d.severity.as_str(),
                    subject(&d),
                    d.rule_id,
                    d.device.as_deref().unwrap_or("-"),
                    d.detail,
                    hw = self.household_w,
                    rw = self.rule_w,
                    dw = self.device_w,
                )
            }
            .map_err(RulesToolError::write)?;
            self.decisions.push(d);
        }
        Ok(())
    }
}

/// Fires every engine timer due at or before `t`, each at its own deadline, so timer
/// alarms come out at their own times.
fn run_timers(
    engine: &mut Engine,
    t: Millis,
    printer: &mut Printer<'_>,
) -> Result<(), RulesToolError> {
    let mut last: Option<Millis> = None;
    while let Some(due) = engine.next_deadline() {
        // `due <= last`: the engine did not move its deadline on; stop rather than spin
        // (the observation at `t` brings its timers up to date anyway).
        if due > t || last.is_some_and(|l| due <= l) {
            break;
        }
        printer.emit(engine.tick(due))?;
        last = Some(due);
    }
    Ok(())
}

/// `hub rules test`: replays the recorded stream `events` (named `name` in messages)
/// through `rules` on virtual time. Writes one line (or JSON object) per decision to
/// `out`, then a summary table (to `err` with `--json`); bad lines and out-of-order
/// warnings go to `err` as `NAME:LINE: ...`. Bad lines are data: they are counted and
/// skipped, and [`ReplayReport::exit_code`] says so at the end.
pub fn replay(
    rules: &RuleSet,
    name: &str,
    events: impl BufRead,
    opts: &ReplayOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ReplayReport, RulesToolError> {
    let offset = rules.utc_offset_minutes();
    let mut report = ReplayReport::default();
    let mut records = read_stream(name, events, err, offset, &mut report)?;
    if let Some(until) = opts.until {
        let keep = records.partition_point(|r| r.at <= until);
        report.after_until = records.len() - keep;
        records.truncate(keep);
    }

    let households = records
        .iter()
        .map(|r| r.household.as_str())
        .collect::<BTreeSet<_>>()
        .len();
    let mut engine = Engine::new(rules.clone());
    let mut printer = Printer {
        out,
        json: opts.json,
        offset_minutes: offset,
        household_w: records.iter().map(|r| r.household.len()).max().unwrap_or(0),
        rule_w: rules
            .rule_ids()
            .iter()
            .map(|id| id.len())
            .max()
            .unwrap_or(0),
        device_w: records.iter().map(|r| r.device.len()).max().unwrap_or(1),
        decisions: Vec::new(),
    };
    if let (Some(first), Some(last)) = (records.first(), records.last()) {
        let start = first.at;
        let end = opts.until.unwrap_or(last.at).max(last.at);
        // Watch everything in the file from the start, so silence is noticed from there.
        for r in &records {
            engine.watch_household(&r.household, start);
            engine.watch_device(&r.household, &r.device, start);
        }
        for r in records {
            run_timers(&mut engine, r.at, &mut printer)?;
            let obs = Observation {
                household: r.household,
                device: r.device,
                at: r.at,
                signal: r.signal,
            };
            printer.emit(engine.observe(&obs, obs.at))?;
            report.replayed += 1;
        }
        run_timers(&mut engine, end, &mut printer)?;
        printer.emit(engine.tick(end))?;
        report.span = Some((start, end));
    }
    report.decisions = printer.decisions;

    let table = summary_table(rules, name, &report, households);
    let sink: &mut dyn Write = if opts.json { err } else { printer.out };
    sink.write_all(table.as_bytes())
        .map_err(RulesToolError::write)?;
    Ok(report)
}

fn summary_table(rules: &RuleSet, name: &str, report: &ReplayReport, households: usize) -> String {
    let offset = rules.utc_offset_minutes();
    let mut s = String::from("\n");
    match report.span {
        Some((a, b)) => s.push_str(&format!(
            "replayed {} {} of {name} for {households} {} from {} to {}\n",
            report.replayed,
            plural(report.replayed, "line", "lines"),
            plural(households, "household", "households"),
            local_time(a, offset),
            local_time(b, offset),
        )),
        None => s.push_str(&format!("replayed 0 lines of {name}\n")),
    }
    let mut clears: BTreeMap<&str, usize> = BTreeMap::new();
    for d in report
        .decisions
        .iter()
        .filter(|d| d.action == Action::Clear)
    {
        *clears.entry(d.rule_id.as_str()).or_insert(0) += 1;
    }
    let raises = report.raises();
    // Every rule in file order (a rule that never fired is an answer too), then any
    // rule id the engine used that the file does not list.
    let mut ids: Vec<&str> = rules.rule_ids();
    for id in raises.keys().chain(clears.keys()) {
        if !ids.contains(id) {
            ids.push(id);
        }
    }
    let w = ids
        .iter()
        .map(|id| id.len())
        .max()
        .unwrap_or(0)
        .max("total".len());
    s.push_str(&format!("{:<w$}  raises  clears\n", "rule"));
    for id in &ids {
        s.push_str(&format!(
            "{id:<w$}  {:>6}  {:>6}\n",
            raises.get(id).copied().unwrap_or(0),
            clears.get(id).copied().unwrap_or(0)
        ));
    }
    s.push_str(&format!(
        "{:<w$}  {:>6}  {:>6}\n",
        "total",
        raises.values().sum::<usize>(),
        clears.values().sum::<usize>()
    ));
    let mut notes = Vec::new();
    if report.bad_lines > 0 {
        notes.push(format!(
            "{} bad {} skipped",
            report.bad_lines,
            plural(report.bad_lines, "line", "lines")
        ));
    }
    if report.out_of_order > 0 {
        notes.push(format!(
            "{} {} out of time order",
            report.out_of_order,
            plural(report.out_of_order, "line", "lines")
        ));
    }
    if report.after_until > 0 {
        notes.push(format!(
            "{} {} after --until not replayed",
            report.after_until,
            plural(report.after_until, "line", "lines")
        ));
    }
    if !notes.is_empty() {
        s.push_str(&format!("{}\n", notes.join(", ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use alert_rules::Severity;
    use time::macros::datetime;

    fn ms(t: OffsetDateTime) -> Millis {
        (t.unix_timestamp_nanos() / 1_000_000) as Millis
    }

    /// An event line for household h-0001 (the payload is a full contract v1 event).
    fn ev(at: &str, device: &str, body: &str) -> String {
        format!(
            r#"{{"at":"{at}","household":"h-0001","device":"{device}","event":{{"v":1,"event_id":"e-1","ts":"{at}",{body}}}}}"#
        )
    }

    fn replay_str(
        rules: &RuleSet,
        input: impl AsRef<[u8]>,
        opts: &ReplayOptions,
    ) -> (ReplayReport, String, String) {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let report = replay(rules, "ev.jsonl", input.as_ref(), opts, &mut out, &mut err)
            .expect("replay runs");
        (
            report,
            String::from_utf8(out).expect("utf-8 out"),
            String::from_utf8(err).expect("utf-8 err"),
        )
    }

    fn check_str(src: &str) -> (u8, String, String) {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let code = check("r.toml", src, &mut out, &mut err).expect("check runs");
        (
            code,
            String::from_utf8(out).expect("utf-8 out"),
            String::from_utf8(err).expect("utf-8 err"),
        )
    }

    /// Small rules whose numbers the tests rely on (the shipped defaults may change).
    const RULES: &str = r#"timezone_offset = "+08:00"

[[rule]]
id = "sos"
kind = "instant"
signal = "sos"
severity = "critical"
title = "SOS"

[[rule]]
id = "quiet"
kind = "inactivity"
activity = ["motion"]
hours = 4.0
window = "07:00-22:00"
severity = "warning"
title = "Quiet"
enabled = false

[[rule]]
id = "device-offline"
kind = "device_offline"
heartbeat_minutes = 60
missed_heartbeats = 3
offline_grace_minutes = 2
severity = "warning"
title = "Device offline"

[[override]]
household = "h-1"
rule = "quiet"
enabled = true

[[override]]
household = "h-2"
rule = "quiet"
enabled = true
"#;

    fn rules() -> RuleSet {
        RuleSet::from_toml_str(RULES).expect("test rules are valid")
    }

    #[test]
    fn check_ok_prints_a_summary() {
        let (code, out, err) = check_str(RULES);
        assert_eq!(code, exit_code::OK, "{err}");
        assert_eq!(err, "");
        assert_eq!(
            out,
            "r.toml: ok\n\
             \x20 timezone offset: +08:00 (local times in rules and replays)\n\
             \x20 rules: 3 (2 enabled by default)\n\
             \x20   instant          1  sos\n\
             \x20   inactivity       1  quiet\n\
             \x20   device_offline   1  device-offline\n\
             \x20 disabled by default: quiet\n\
             \x20 household overrides: 2 (2 households)\n"
        );
    }

    #[test]
    fn check_accepts_the_shipped_rules() {
        let (code, out, err) = check_str(RuleSet::DEFAULT_TOML);
        assert_eq!(code, exit_code::OK, "{err}");
        let n = RuleSet::default_rules().rule_ids().len();
        assert!(out.contains(&format!("  rules: {n} (")), "{out}");
        assert!(out.contains("timezone offset: +08:00"), "{out}");
    }

    #[test]
    fn check_error_names_line_and_column_with_a_caret() {
        let src = "timezone_offset = \"+08:00\"\n\n[[rule]]\nid = \"day\"\nkind = \"inactivity\"\nactivity = [\"motion\"]\nhours = 4.0\nwindow = \"07:00-25:00\"\nseverity = \"warning\"\ntitle = \"t\"\n";
        let (code, out, err) = check_str(src);
        assert_eq!(code, exit_code::INVALID_RULES);
        assert_eq!(out, "");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 3, "{err}");
        assert!(
            lines[0].starts_with("r.toml:8:10: error: invalid window \"07:00-25:00\""),
            "{err}"
        );
        assert_eq!(lines[1], "8 | window = \"07:00-25:00\"");
        assert_eq!(lines[2], "  |          ^");
    }

    #[test]
    fn check_reports_toml_syntax_errors_too() {
        let src = "timezone_offset = \"+08:00\"\n[[rule]]\nid = \"sos\nkind = \"instant\"\n";
        let (code, _, err) = check_str(src);
        assert_eq!(code, exit_code::INVALID_RULES);
        assert!(err.starts_with("r.toml:3:"), "{err}");
        assert!(err.contains("\n3 | id = \"sos\n"), "{err}");
        assert_eq!(err.lines().count(), 3, "{err}");
    }

    #[test]
    fn the_caret_lines_up_under_tabs_and_wide_characters() {
        let src = "a = 1\n\ttitle = \"跌倒\" x\n";
        let e = RulesError::Invalid {
            location: alert_rules::Location {
                line: 2,
                column: 15,
            },
            message: "unexpected x".into(),
        };
        // a tab, 9 narrow characters, 2 wide ones (2 cells each), 2 narrow ones
        let caret = format!("  | \t{}^", " ".repeat(9 + 4 + 2));
        assert_eq!(
            diagnostic("r.toml", src, &e),
            format!("r.toml:2:15: error: unexpected x\n2 | \ttitle = \"跌倒\" x\n{caret}\n")
        );
        let nowhere = RulesError::Toml {
            location: None,
            message: "eh".into(),
        };
        assert_eq!(diagnostic("r.toml", src, &nowhere), "r.toml: error: eh\n");
    }

    #[test]
    fn an_sos_line_raises_a_critical_alarm_at_its_time() {
        let input = ev("2026-11-02T08:00:00+08:00", "d-0001-sos", r#""kind":"sos""#);
        let (report, out, err) = replay_str(&rules(), &input, &ReplayOptions::default());
        assert_eq!(err, "");
        assert_eq!(report.exit_code(), exit_code::OK);
        let d = &report.decisions[0];
        assert_eq!(
            (
                d.action,
                d.severity,
                d.rule_id.as_str(),
                d.household.as_deref().unwrap_or_default()
            ),
            (Action::Raise, Severity::Critical, "sos", "h-0001")
        );
        assert_eq!(d.device.as_deref(), Some("d-0001-sos"));
        assert_eq!(d.at, ms(datetime!(2026-11-02 08:00 +08:00)));
        let first = out.lines().next().expect("a decision line");
        assert!(
            first.starts_with(
                "2026-11-02T08:00:00+08:00  RAISE  critical  h-0001  sos             d-0001-sos  "
            ),
            "{out}"
        );
        assert_eq!(report.raises().get("sos"), Some(&1));
        assert!(out.contains("\nsos                  1       0\n"), "{out}");
    }

    /// 5 hours without a sign of life in the daytime, with the shipped rules: the
    /// `no-activity-daytime` rule (4 h counted inside 07:00-22:00 at +08:00) raises at
    /// 08:00 + 4 h = 12:00 local, between the two lines, and the 13:00 motion clears it.
    #[test]
    fn five_hours_of_daytime_silence_raise_no_activity_at_the_fourth_hour() {
        let motion = r#""kind":"motion","occupancy":true"#;
        let input = format!(
            "{}\n{}\n",
            ev("2026-11-02T08:00:00+08:00", "d-0001-motion", motion),
            ev("2026-11-02T13:00:00+08:00", "d-0001-motion", motion),
        );
        let (report, out, err) =
            replay_str(&RuleSet::default_rules(), &input, &ReplayOptions::default());
        assert_eq!(err, "");
        let find = |action| {
            report
                .decisions
                .iter()
                .position(|d| d.rule_id == "no-activity-daytime" && d.action == action)
                .expect("decision present")
        };
        let (raise, clear) = (find(Action::Raise), find(Action::Clear));
        assert!(raise < clear);
        assert_eq!(
            report.decisions[raise].at,
            ms(datetime!(2026-11-02 12:00 +08:00))
        );
        assert_eq!(
            report.decisions[clear].at,
            ms(datetime!(2026-11-02 13:00 +08:00))
        );
        assert!(
            out.contains("2026-11-02T12:00:00+08:00  RAISE  warning   h-0001  no-activity-daytime"),
            "{out}"
        );
        // Timer decisions come out in time order, never from the wall clock.
        assert!(report.decisions.windows(2).all(|w| w[0].at <= w[1].at));
    }

    /// h-1's silence alarm falls due at 12:00 while only h-2 is talking: it must come
    /// out at 12:00, before h-2's 13:00 SOS, not when h-1 is next heard from.
    #[test]
    fn timer_alarms_come_out_in_time_order_across_households() {
        let h = |at: &str, household: &str, device: &str, body: &str| {
            format!(
                r#"{{"at":"{at}","household":"{household}","device":"{device}","event":{{"v":1,"event_id":"e","ts":"{at}",{body}}}}}"#
            )
        };
        let input = [
            h(
                "2026-11-02T08:00:00+08:00",
                "h-1",
                "d-1",
                r#""kind":"motion","occupancy":true"#,
            ),
            h(
                "2026-11-02T11:00:00+08:00",
                "h-2",
                "d-2",
                r#""kind":"motion","occupancy":true"#,
            ),
            h("2026-11-02T13:00:00+08:00", "h-2", "d-2", r#""kind":"sos""#),
        ]
        .join("\n");
        let (report, out, _) = replay_str(&rules(), &input, &ReplayOptions::default());
        let order: Vec<(&str, &str, Millis)> = report
            .decisions
            .iter()
            .filter(|d| d.action == Action::Raise && d.rule_id != "device-offline")
            .map(|d| {
                (
                    d.household.as_deref().unwrap_or_default(),
                    d.rule_id.as_str(),
                    d.at,
                )
            })
            .collect();
        assert_eq!(
            order,
            vec![
                ("h-1", "quiet", ms(datetime!(2026-11-02 12:00 +08:00))),
                ("h-2", "sos", ms(datetime!(2026-11-02 13:00 +08:00))),
            ]
        );
        let quiet = out.find("  quiet ").expect("quiet printed");
        let sos = out.find("  sos ").expect("sos printed");
        assert!(quiet < sos, "{out}");
    }

    #[test]
    fn until_drives_timers_past_the_last_line() {
        let input = ev(
            "2026-11-02T08:00:00+08:00",
            "d-0001-motion",
            r#""kind":"motion","occupancy":true"#,
        );
        let quiet_raises = |until: OffsetDateTime| {
            let opts = ReplayOptions {
                until: Some(ms(until)),
                ..ReplayOptions::default()
            };
            let (report, _, _) = replay_str(&RuleSet::default_rules(), &input, &opts);
            report
                .decisions
                .iter()
                .filter(|d| d.rule_id == "no-activity-daytime" && d.action == Action::Raise)
                .map(|d| d.at)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            quiet_raises(datetime!(2026-11-02 11:59 +08:00)),
            Vec::<Millis>::new()
        );
        assert_eq!(
            quiet_raises(datetime!(2026-11-02 12:30 +08:00)),
            vec![ms(datetime!(2026-11-02 12:00 +08:00))]
        );
    }

    #[test]
    fn lines_after_until_are_not_replayed() {
        let input = format!(
            "{}\n{}\n",
            ev("2026-11-02T08:00:00+08:00", "d-0001-sos", r#""kind":"sos""#),
            ev("2026-11-02T09:00:00+08:00", "d-0001-sos", r#""kind":"sos""#),
        );
        let opts = ReplayOptions {
            until: Some(ms(datetime!(2026-11-02 08:30 +08:00))),
            ..ReplayOptions::default()
        };
        let (report, out, _) = replay_str(&rules(), &input, &opts);
        assert_eq!((report.replayed, report.after_until), (1, 1));
        assert_eq!(report.raises().get("sos"), Some(&1));
        assert!(out.contains("1 line after --until not replayed"), "{out}");
    }

    #[test]
    fn a_bad_line_is_reported_counted_and_later_lines_still_replayed() {
        let mut input = format!(
            "{}\n{{not json\n# a comment\n\n{}\n{}\n",
            ev("2026-11-02T08:00:00+08:00", "d-0001-motion", r#""kind":"motion","occupancy":true"#),
            ev("2026-11-02T08:01:00+08:00", "d-0001-x", r#""kind":"teleport""#),
            r#"{"at":"2026-11-02T08:02:00+08:00","household":"h-0001","device":"d-0001-sos","status":"online","event":{}}"#,
        )
        .into_bytes();
        input.extend_from_slice(b"{\"at\":\xff}\n"); // line 7: not UTF-8
        input.extend_from_slice(
            ev("2026-11-02T08:05:00+08:00", "d-0001-sos", r#""kind":"sos""#).as_bytes(),
        );
        let (report, out, err) = replay_str(&rules(), &input, &ReplayOptions::default());
        let errs: Vec<&str> = err.lines().collect();
        assert_eq!(errs.len(), 4, "{err}");
        assert!(errs[0].starts_with("ev.jsonl:2: not valid JSON"), "{err}");
        assert!(
            errs[1].starts_with(
                "ev.jsonl:5: field `event` rejected by the device contract (unknown_kind)"
            ),
            "{err}"
        );
        assert!(
            errs[2].starts_with("ev.jsonl:6: a line has either"),
            "{err}"
        );
        assert!(errs[3].starts_with("ev.jsonl:7: not valid UTF-8"), "{err}");
        assert_eq!(report.bad_lines, 4);
        assert_eq!(report.replayed, 2);
        assert_eq!(report.exit_code(), exit_code::BAD_LINES);
        let sos = report
            .decisions
            .iter()
            .find(|d| d.rule_id == "sos")
            .expect("the SOS after the bad lines is replayed");
        assert_eq!(sos.at, ms(datetime!(2026-11-02 08:05 +08:00)));
        assert!(out.contains("4 bad lines skipped"), "{out}");
    }

    #[test]
    fn out_of_order_lines_are_replayed_at_the_previous_time_with_a_warning() {
        let input = format!(
            "{}\n{}\n",
            ev(
                "2026-11-02T09:00:00+08:00",
                "d-0001-motion",
                r#""kind":"motion","occupancy":true"#
            ),
            ev("2026-11-02T08:30:00+08:00", "d-0001-sos", r#""kind":"sos""#),
        );
        let (report, out, err) = replay_str(&rules(), &input, &ReplayOptions::default());
        assert_eq!(
            err,
            "ev.jsonl:2: warning: `at` 2026-11-02T08:30:00+08:00 is earlier than the previous \
             line's 2026-11-02T09:00:00+08:00; replayed at 2026-11-02T09:00:00+08:00\n"
        );
        assert_eq!((report.out_of_order, report.bad_lines), (1, 0));
        assert_eq!(report.exit_code(), exit_code::OK);
        let sos = report
            .decisions
            .iter()
            .find(|d| d.rule_id == "sos")
            .expect("sos");
        assert_eq!(sos.at, ms(datetime!(2026-11-02 09:00 +08:00)));
        assert!(out.contains("1 line out of time order"), "{out}");
    }

    #[test]
    fn a_last_will_takes_a_device_offline_after_the_grace_period() {
        let input = format!(
            "{}\n{}\n",
            ev(
                "2026-11-02T08:00:00+08:00",
                "d-0001-sos",
                r#""kind":"heartbeat""#
            ),
            // Unix ms for 2026-11-02T08:05:00+08:00
            r#"{"at":1793577900000,"household":"h-0001","device":"d-0001-sos","status":"offline"}"#,
        );
        let opts = ReplayOptions {
            until: Some(ms(datetime!(2026-11-02 08:10 +08:00))),
            ..ReplayOptions::default()
        };
        let (report, _, err) = replay_str(&rules(), &input, &opts);
        assert_eq!(err, "");
        let offline: Vec<Millis> = report
            .decisions
            .iter()
            .filter(|d| d.rule_id == "device-offline" && d.action == Action::Raise)
            .map(|d| d.at)
            .collect();
        assert_eq!(offline, vec![ms(datetime!(2026-11-02 08:07 +08:00))]);
    }

    #[test]
    fn silence_is_counted_from_the_first_line_for_every_household_in_the_file() {
        // h-1 has the `quiet` rule (override); it only appears at 14:00 but is watched
        // from 08:00, the stream's first line, so 4 h of silence are reached at 12:00.
        let input = format!(
            "{}\n{}\n",
            ev(
                "2026-11-02T08:00:00+08:00",
                "d-0001-sos",
                r#""kind":"heartbeat""#
            ),
            r#"{"at":"2026-11-02T14:00:00+08:00","household":"h-1","device":"d-1","event":{"v":1,"event_id":"e","ts":"2026-11-02T14:00:00+08:00","kind":"heartbeat"}}"#,
        );
        let (report, _, _) = replay_str(&rules(), &input, &ReplayOptions::default());
        let quiet: Vec<(&str, Millis)> = report
            .decisions
            .iter()
            .filter(|d| d.rule_id == "quiet" && d.action == Action::Raise)
            .map(|d| (d.household.as_deref().unwrap_or_default(), d.at))
            .collect();
        assert_eq!(quiet, vec![("h-1", ms(datetime!(2026-11-02 12:00 +08:00)))]);
    }

    #[test]
    fn json_output_is_one_decision_per_line_and_nothing_else() {
        let input = ev("2026-11-02T08:00:00+08:00", "d-0001-sos", r#""kind":"sos""#);
        let opts = ReplayOptions {
            json: true,
            ..ReplayOptions::default()
        };
        let (report, out, err) = replay_str(&rules(), &input, &opts);
        let parsed: Vec<Decision> = out
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is a Decision"))
            .collect();
        assert_eq!(parsed, report.decisions);
        assert!(!parsed.is_empty());
        assert!(
            err.contains("raises  clears"),
            "summary goes to stderr: {err}"
        );
    }

    #[test]
    fn records_are_checked_like_production_input() {
        let bad = |line: &str, want: &str| {
            let e = parse_record(line).expect_err(line);
            assert!(e.contains(want), "{line}: {e}");
        };
        bad(r#"[1]"#, "JSON object");
        bad(
            r#"{"household":"h","device":"d","status":"online"}"#,
            "missing field `at`",
        );
        bad(
            r#"{"at":"yesterday","household":"h","device":"d","status":"online"}"#,
            "RFC 3339",
        );
        bad(
            r#"{"at":1.5,"household":"h","device":"d","status":"online"}"#,
            "whole Unix milliseconds",
        );
        bad(
            r#"{"at":0,"household":"H 1","device":"d","status":"online"}"#,
            "field `household`",
        );
        bad(
            r#"{"at":0,"household":"h","device":"d","status":"gone"}"#,
            "\"gone\"",
        );
        bad(
            r#"{"at":0,"household":"h","device":"d"}"#,
            "needs an `event`",
        );
        bad(
            r#"{"at":0,"household":"h","device":"d","event":{"v":1,"ts":"2026-11-02T08:00:00Z","kind":"sos"}}"#,
            "(missing_field): missing field `event_id`",
        );
        let ok =
            parse_record(r#"{"at":1793577600000,"household":"h","device":"d","status":"offline"}"#)
                .expect("valid");
        assert_eq!(ok.at, ms(datetime!(2026-11-02 08:00 +08:00)));
        assert_eq!(ok.signal, Signal::Offline);
    }

    #[test]
    fn instants_parse_and_show_in_local_time() {
        assert_eq!(
            parse_instant("2026-11-02T00:00:00Z"),
            Ok(ms(datetime!(2026-11-02 08:00 +08:00)))
        );
        assert_eq!(parse_instant("1793577600000"), Ok(1_793_577_600_000));
        assert!(parse_instant("tomorrow").is_err());
        assert_eq!(
            local_time(1_793_577_600_000, 480),
            "2026-11-02T08:00:00+08:00"
        );
        assert_eq!(
            local_time(1_793_577_600_250, -90),
            "2026-11-01T22:30:00.25-01:30"
        );
        assert_eq!(local_time(i64::MAX, 0), format!("{} ms", i64::MAX));
    }
}
