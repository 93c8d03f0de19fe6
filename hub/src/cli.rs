//! The `hub` command: run the hub, or administer the district.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::clock::{Clock, ManualClock, SystemClock};
use crate::config::Settings;
use crate::store::{Scope, Store};
use crate::{demo, rules_tool, secrets, App};

#[derive(Debug, Parser)]
#[command(
    name = "hub",
    version,
    about = "Anxin hub: real-time safety monitoring for elders who live alone"
)]
pub struct Cli {
    /// Settings file (TOML). Environment variables HUB_* override it (HUB_MQTT__LISTEN=0.0.0.0:1884).
    #[arg(long, global = true, env = "HUB_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
    /// With no subcommand: run.
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Seed the demo district first (public credentials!).
    #[arg(long)]
    pub demo: bool,
    /// SIMULATION ONLY, never in production: start the hub's clock at this instant
    /// (RFC 3339) and let `device-sim run` move it (POST /api/sim/clock).
    #[arg(long, value_name = "RFC3339")]
    pub simulated_clock: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub (embedded broker, rules, alarms, HTTP).
    Run(RunArgs),
    /// Administer the district model, devices and contacts.
    Admin {
        #[command(subcommand)]
        command: Admin,
    },
    /// Check a rules file, or replay recorded device messages through it (no hub,
    /// database or settings needed). Exit codes: 0 ok, 1 mistake in the rules file,
    /// 2 cannot run (unreadable file, bad arguments), 3 bad lines in the recording.
    Rules {
        #[command(subcommand)]
        command: Rules,
    },
}

#[derive(Debug, Subcommand)]
pub enum Rules {
    /// Parse and validate a rules file: print a summary, or FILE:LINE:COL: error: ...
    /// with the offending line and a caret under the mistake.
    Check {
        /// The rules file (TOML), e.g. alert-rules/rules/default.toml.
        file: PathBuf,
    },
    /// Replay a recorded stream (JSONL) through a rules file on virtual time and print
    /// the alarms it would raise and clear, then raises per rule. See docs/rules.md (section 7).
    Test {
        /// The rules file (TOML).
        file: PathBuf,
        /// The recorded stream: one JSON object per line,
        /// {"at":..., "household":..., "device":..., "event":{...}} or {..., "status":"offline"}.
        #[arg(long, value_name = "RECORDED.jsonl")]
        events: PathBuf,
        /// One JSON object per decision on stdout (the summary goes to stderr).
        #[arg(long)]
        json: bool,
        /// Replay up to this instant (RFC 3339 or Unix ms): timers fire until then, later
        /// lines are not replayed. Default: the last line's time.
        #[arg(long, value_name = "RFC3339", value_parser = crate::rules_tool::parse_instant)]
        until: Option<alert_rules::Millis>,
    },
}

#[derive(Debug, Subcommand)]
pub enum Admin {
    AddTown {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
    },
    AddVillage {
        #[arg(long)]
        id: String,
        #[arg(long)]
        town: String,
        #[arg(long)]
        name: String,
    },
    AddHousehold {
        #[arg(long)]
        id: String,
        #[arg(long)]
        village: String,
        #[arg(long)]
        address: String,
    },
    /// Register a device; prints its secret once (it is stored only as a hash).
    AddDevice {
        #[arg(long)]
        id: String,
        #[arg(long)]
        household: String,
        /// sos, fall, motion, door, bed, smoke, gas, water_leak, water_meter, power_meter, wearable, ...
        #[arg(long)]
        kind: String,
        #[arg(long, default_value = "")]
        vendor: String,
    },
    /// Create a contact; prints its API token once.
    AddContact {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        phone: Option<String>,
        /// family | village | town | district
        #[arg(long)]
        role: String,
        /// household:<id> | village:<id> | town:<id> | district
        #[arg(long)]
        scope: String,
        #[arg(long, default_value_t = 0)]
        priority: i64,
        /// The account this contact is (default: the contact's id). A family member who
        /// is a contact for several homes uses one account for all of them and sees all.
        #[arg(long)]
        account: Option<String>,
    },
    /// Give a device a new secret (printed once). Changes the database only: a running
    /// hub closes the old connection only when rotated over REST (docs/api.md).
    RotateDevice {
        #[arg(long)]
        id: String,
    },
    /// Revoke a device: refused at its next CONNECT. (Over REST a running hub also closes
    /// its current connection at once.)
    RevokeDevice {
        #[arg(long)]
        id: String,
    },
    /// Disable an account (someone who left): its sessions and API tokens stop working at
    /// once; a running hub closes its open websockets within 30 s. `--enable` undoes it.
    DisableAccount {
        #[arg(long)]
        id: String,
        #[arg(long)]
        enable: bool,
    },
    /// Create (or reset) a login account; prints a generated first password once.
    AddAccount {
        #[arg(long)]
        id: String,
        #[arg(long)]
        username: String,
        /// family | village | town | district
        #[arg(long)]
        role: String,
        /// household:<id> | village:<id> | town:<id> | district
        #[arg(long)]
        scope: String,
    },
    /// Import towns, villages, households, elders, devices and contacts from CSV files in
    /// a directory (all or nothing; every bad row is reported as file:line: reason). New
    /// devices without a `secret` and new contacts without a `token` get one, printed once
    /// as CSV; existing ones keep theirs.
    Import {
        #[arg(long)]
        dir: PathBuf,
        /// Secret for devices whose row has none (test kits, simulations) instead of
        /// generating one per device.
        #[arg(long)]
        default_secret: Option<String>,
    },
    /// Export the district as the same CSV files `import` reads (no secrets or tokens:
    /// only their hashes are stored; re-importing the files keeps the existing ones).
    Export {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Seed the demo district.
    SeedDemo,
    /// Duty coverage of the coming days: for every area in the scope, hour by hour, who
    /// is on duty (shift, override, fallback, or all staff where there is no roster),
    /// with every hour nobody is on duty flagged. Exits with status 1 when there is such
    /// a gap, so a weekly cron job can warn.
    RosterCoverage {
        /// district | town:<id> | village:<id>
        #[arg(long, default_value = "district")]
        scope: String,
        /// How many days (1-31).
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// First day, YYYY-MM-DD in local time (from its midnight); default: from the
        /// current hour.
        #[arg(long, value_name = "DATE")]
        from: Option<String>,
        /// The district's UTC offset, e.g. +08:00; default: `timezone_offset` of the
        /// rules file in the settings (or of the built-in rules).
        #[arg(long, value_name = "OFFSET")]
        offset: Option<String>,
    },
}

pub fn main() -> ExitCode {
    crate::telemetry::init_logging();
    let cli = match Cli::parse() {
        // Supervisor tooling: no settings, database or async runtime.
        Cli {
            command: Some(Command::Rules { command }),
            ..
        } => return rules(command),
        cli => cli,
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref()).context("loading settings")?;
    let clock = SystemClock;
    match cli.command {
        None => serve(settings, cli.config.as_deref(), cli.run).await,
        Some(Command::Run(args)) => serve(settings, cli.config.as_deref(), args).await,
        Some(Command::Admin { command }) => {
            let store = Store::connect(&settings.database_url).await?;
            admin(&store, command, clock.now(), &settings).await
        }
        // `main` answers `hub rules` before loading settings or starting a runtime.
        Some(Command::Rules { .. }) => anyhow::bail!("`hub rules` does not run inside the hub"),
    }
}

/// `config`: the settings file, to tell a port that was set from a default one.
async fn serve(mut settings: Settings, config: Option<&Path>, args: RunArgs) -> anyhow::Result<()> {
    let start = match &args.simulated_clock {
        Some(t) => Some(
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "--simulated-clock {t:?}: {e} (use e.g. 2026-11-01T00:00:00+08:00)"
                    )
                })?,
        ),
        None => None,
    };
    let start_ms = start.map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64);
    // Ports first, before anything is created (crate::listen).
    let moved = crate::listen::prepare(&mut settings, config, args.demo)?;
    let fresh_db = new_sqlite_file(&settings.database_url);
    let app = match start_hub(settings, args.demo, start_ms).await {
        Ok(app) => app,
        Err(e) => {
            // A failed first start leaves no database behind (one that existed is kept).
            if let Some(path) = fresh_db {
                remove_sqlite_file(&path);
            }
            return Err(e);
        }
    };
    if args.demo {
        eprintln!("{}", demo::banner(app.http_addr, app.mqtt_addr));
        eprint!(
            "{}",
            crate::listen::moved_notice(&moved, app.http_addr, app.mqtt_addr)
        );
    }
    app.run_until_stopped().await
}

async fn start_hub(settings: Settings, demo: bool, start_ms: Option<i64>) -> anyhow::Result<App> {
    if demo {
        let store = Store::connect(&settings.database_url).await?;
        let seeded = demo::seed(&store, start_ms.unwrap_or_else(|| SystemClock.now())).await;
        store.pool().close().await;
        seeded?;
    }
    Ok(match start_ms {
        Some(ms) => App::build_simulated(settings, ManualClock::new(ms)).await?,
        None => App::build(settings, Arc::new(SystemClock)).await?,
    })
}

/// The SQLite file `database_url` names, when it does not exist yet (this start would
/// create it).
fn new_sqlite_file(database_url: &str) -> Option<PathBuf> {
    use std::str::FromStr;
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(database_url).ok()?;
    let path = opts.get_filename();
    (!path.as_os_str().is_empty() && path != Path::new(":memory:") && !path.exists())
        .then(|| path.to_owned())
}

/// Remove a SQLite database this start created, with its WAL files.
fn remove_sqlite_file(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

/// `hub rules ...`: the library does the work; here files are opened and outcomes
/// become exit codes (see [`rules_tool::exit_code`]).
fn rules(command: Rules) -> ExitCode {
    match rules_command(command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(rules_tool::exit_code::CANNOT_RUN)
        }
    }
}

fn rules_command(command: Rules) -> anyhow::Result<u8> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    let read = |path: &Path| {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let code = match command {
        Rules::Check { file } => {
            let src = read(&file)?;
            rules_tool::check(&file.display().to_string(), &src, &mut out, &mut err)?
        }
        Rules::Test {
            file,
            events,
            json,
            until,
        } => {
            let src = read(&file)?;
            match rules_tool::parse_rules(&file.display().to_string(), &src, &mut err)? {
                None => rules_tool::exit_code::INVALID_RULES,
                Some(rules) => {
                    let stream = std::fs::File::open(&events)
                        .with_context(|| format!("cannot read {}", events.display()))?;
                    let opts = rules_tool::ReplayOptions { json, until };
                    rules_tool::replay(
                        &rules,
                        &events.display().to_string(),
                        std::io::BufReader::new(stream),
                        &opts,
                        &mut out,
                        &mut err,
                    )?
                    .exit_code()
                }
            }
        }
    };
    out.flush().context("cannot write output")?;
    Ok(code)
}

fn check_id(kind: &str, id: &str) -> anyhow::Result<()> {
    crate::ingest::contract::DeviceId::parse(id)
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("{kind} id {id:?}: {e}"))
}

async fn admin(store: &Store, cmd: Admin, now: i64, settings: &Settings) -> anyhow::Result<()> {
    match cmd {
        Admin::AddTown { id, name } => {
            check_id("town", &id)?;
            store.upsert_town(&id, &name).await?;
        }
        Admin::AddVillage { id, town, name } => {
            check_id("village", &id)?;
            store
                .upsert_village(&id, &town, &name)
                .await
                .context("unknown town?")?;
        }
        Admin::AddHousehold {
            id,
            village,
            address,
        } => {
            check_id("household", &id)?;
            store
                .upsert_household(&id, &village, &address)
                .await
                .context("unknown village?")?;
        }
        Admin::AddDevice {
            id,
            household,
            kind,
            vendor,
        } => {
            check_id("device", &id)?;
            let secret = secrets::random_token();
            let s2 = secret.clone();
            let hash = tokio::task::spawn_blocking(move || secrets::hash_secret(&s2)).await??;
            store
                .upsert_device(&id, &household, &kind, &vendor, &hash, now)
                .await
                .context("unknown household?")?;
            println!("device {id} registered.\nMQTT client id and username: {id}\nsecret (shown once, store it in the device): {secret}");
        }
        Admin::AddContact {
            id,
            name,
            phone,
            role,
            scope,
            priority,
            account,
        } => {
            check_id("contact", &id)?;
            if let Some(a) = &account {
                check_id("account", a)?;
            }
            if !crate::store::ROLES.contains(&role.as_str()) {
                anyhow::bail!("role must be family, village, town or district");
            }
            let scope = Scope::parse(&scope).map_err(anyhow::Error::msg)?;
            let token = secrets::random_token();
            store
                .upsert_contact(
                    &id,
                    &name,
                    phone.as_deref(),
                    &role,
                    &scope,
                    priority,
                    account.as_deref(),
                    &token,
                    now,
                )
                .await?;
            println!("contact {id} created.\nAPI token of account {} (shown once; expires in 365 days): {token}", account.as_deref().unwrap_or(&id));
        }
        Admin::RotateDevice { id } => {
            let (secret, hash) = secrets::new_hashed_secret().await?;
            anyhow::ensure!(
                store.set_device_secret(&id, &hash).await?,
                "no active device {id}"
            );
            println!("device {id}: new secret (shown once): {secret}");
        }
        Admin::DisableAccount { id, enable } => {
            anyhow::ensure!(
                store
                    .set_account_disabled(&id, (!enable).then_some(now))
                    .await?,
                "no account {id}"
            );
            println!(
                "account {id} {}",
                if enable { "enabled" } else { "disabled" }
            );
        }
        Admin::RevokeDevice { id } => {
            anyhow::ensure!(
                store.revoke_device(&id, now).await?,
                "no active device {id}"
            );
            println!("device {id} revoked");
        }
        Admin::AddAccount {
            id,
            username,
            role,
            scope,
        } => {
            check_id("account", &id)?;
            let scope = Scope::parse(&scope).map_err(anyhow::Error::msg)?;
            let want = match role.as_str() {
                "family" => "household",
                "village" | "town" | "district" => role.as_str(),
                _ => anyhow::bail!("role must be family, village, town or district"),
            };
            anyhow::ensure!(
                scope.to_string().split(':').next() == Some(want),
                "a {role} account needs a {want} scope"
            );
            anyhow::ensure!(
                store.scope_within(&scope, &Scope::District).await?,
                "scope {scope} does not exist"
            );
            let password = secrets::random_token();
            let pw = password.clone();
            let hash = tokio::task::spawn_blocking(move || secrets::hash_secret(&pw)).await??;
            store
                .upsert_account(&id, &username, &hash, &role, &scope, now)
                .await?;
            println!("account {id} ({username}) created.\nfirst password (shown once; change it after logging in): {password}");
        }
        Admin::Import {
            dir,
            default_secret,
        } => import(store, &dir, default_secret.as_deref(), now).await?,
        Admin::Export { dir } => {
            let batch = store.export().await?;
            crate::import::write_dir(&dir, &batch)
                .with_context(|| format!("writing CSV files to {}", dir.display()))?;
            eprintln!(
                "exported {} towns, {} villages, {} households, {} elders, {} devices, {} contacts to {}",
                batch.towns.len(),
                batch.villages.len(),
                batch.households.len(),
                batch.elders.len(),
                batch.devices.len(),
                batch.contacts.len(),
                dir.display()
            );
        }
        Admin::SeedDemo => {
            demo::seed(store, now).await?;
            println!("demo district seeded");
        }
        Admin::RosterCoverage {
            scope,
            days,
            from,
            offset,
        } => {
            roster_coverage(
                store,
                settings,
                &scope,
                days,
                from.as_deref(),
                offset.as_deref(),
                now,
            )
            .await?
        }
    }
    Ok(())
}

/// `hub admin roster-coverage`: the coverage report as a table; an error (exit status 1)
/// after printing it when some area has nobody on duty at some hour.
async fn roster_coverage(
    store: &Store,
    settings: &Settings,
    scope: &str,
    days: u32,
    from: Option<&str>,
    offset: Option<&str>,
    now: i64,
) -> anyhow::Result<()> {
    use crate::roster::{self, Source};
    let scope = Scope::parse(scope).map_err(anyhow::Error::msg)?;
    anyhow::ensure!((1..=31).contains(&days), "--days must be from 1 to 31");
    anyhow::ensure!(
        store.scope_within(&scope, &Scope::District).await?,
        "scope {scope} does not exist"
    );
    let offset = match (offset, &settings.rules.file) {
        (Some(o), _) => roster::parse_utc_offset(o).map_err(anyhow::Error::msg)?,
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading rules file {}", path.display()))?;
            alert_rules::RuleSet::from_toml_str(&text)
                .with_context(|| format!("rules file {}", path.display()))?
                .utc_offset_minutes()
        }
        (None, None) => alert_rules::RuleSet::default_rules().utc_offset_minutes(),
    };
    let from = match from {
        Some(d) => roster::day_start(roster::parse_date(d).map_err(anyhow::Error::msg)?, offset),
        None => roster::hour_floor(now, offset),
    };
    let hours = days * 24;
    let areas = store.roster_coverage(&scope, from, hours, offset).await?;
    let when = |ms: i64| {
        let day = roster::local_day(ms, offset);
        let minute = roster::local_minute(ms, offset);
        let date = roster::format_date(day);
        format!(
            "{} {} {:02}:{:02}",
            roster::weekday_name(day),
            date.get(5..).unwrap_or(&date),
            minute / 60,
            minute % 60
        )
    };
    let sign = if offset < 0 { '-' } else { '+' };
    let mut out = String::new();
    out.push_str(&format!(
        "Duty coverage of {scope}, {} to {} (UTC{sign}{:02}:{:02})\n",
        when(from),
        when(from + i64::from(hours) * roster::HOUR_MS),
        offset.abs() / 60,
        offset.abs() % 60
    ));
    out.push_str("Each hour: S shift, O override (holiday, sick leave), F fallback only, A all staff (no roster), ! NOBODY on duty\n");
    let mut gaps = Vec::new();
    for a in &areas {
        let c = &a.coverage;
        out.push_str(&format!(
            "\n{}  ({}{})\n",
            a.area,
            if a.roster {
                "roster"
            } else {
                "no roster: all staff"
            },
            a.fallback
                .as_deref()
                .map(|f| format!(", fallback {f}"))
                .unwrap_or_default()
        ));
        out.push_str("  hour      ");
        for h in 0..24 {
            out.push_str(&format!(" {h:02}"));
        }
        out.push('\n');
        // One line per local day; hours outside the report stay blank.
        let mut grid: Vec<(i64, [char; 24])> = Vec::new();
        for h in &c.hours {
            let day = roster::local_day(h.start, offset);
            let hour = usize::from(roster::local_minute(h.start, offset) / 60).min(23);
            if grid.last().is_none_or(|(d, _)| *d != day) {
                grid.push((day, [' '; 24]));
            }
            let mark = if h.nobody_minutes > 0 {
                '!'
            } else if h.sources.contains(&Source::Fallback) {
                'F'
            } else if h.sources.contains(&Source::Override) {
                'O'
            } else if h.sources.contains(&Source::NoRoster) {
                'A'
            } else {
                'S'
            };
            if let Some((_, cells)) = grid.last_mut() {
                cells[hour] = mark;
            }
        }
        for (day, cells) in &grid {
            let date = roster::format_date(*day);
            out.push_str(&format!(
                "  {} {}",
                roster::weekday_name(*day),
                date.get(5..).unwrap_or(&date)
            ));
            for cell in cells {
                out.push_str(&format!("  {cell}"));
            }
            out.push('\n');
        }
        out.push_str("  on duty:\n");
        for r in &c.runs {
            let who = if r.on_duty.is_empty() {
                "!! NOBODY ON DUTY".to_owned()
            } else {
                format!("{} ({})", r.on_duty.join(", "), r.source.as_str())
            };
            out.push_str(&format!("    {} - {}  {who}\n", when(r.from), when(r.to)));
        }
        for (f, t) in &c.gaps {
            gaps.push(format!(
                "  {:<24} {} - {}",
                a.area.to_string(),
                when(*f),
                when(*t)
            ));
        }
    }
    if gaps.is_empty() {
        out.push_str("\nNo gaps: somebody is on duty in every area at every hour.\n");
    } else {
        out.push_str("\nGAPS: nobody on duty at some level\n");
        for g in &gaps {
            out.push_str(g);
            out.push('\n');
        }
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .context("cannot write output")?;
    stdout.flush().context("cannot write output")?;
    let short = areas.iter().filter(|a| !a.coverage.is_covered()).count();
    anyhow::ensure!(
        short == 0,
        "{short} of {} areas have hours with nobody on duty (see GAPS above)",
        areas.len()
    );
    Ok(())
}

async fn import(
    store: &Store,
    dir: &std::path::Path,
    default_secret: Option<&str>,
    now: i64,
) -> anyhow::Result<()> {
    let files = |name: &str| {
        let path = dir.join(name);
        path.exists().then(|| std::fs::read(&path))
    };
    let report = crate::import::apply(store, &files, default_secret, now).await?;
    eprintln!("imported {}", report.counts());
    // CSV on stdout, through the spreadsheet writer like every CSV the hub writes (ids
    // may begin with "-").
    let mut out = crate::spreadsheet::Writer::from_writer(std::io::stdout().lock());
    if !report.device_secrets.is_empty() {
        eprintln!("generated device secrets (shown once; store them in the devices):");
        out.write_record(["device_id", "secret"])?;
        for (id, s) in &report.device_secrets {
            out.write_record([id, s])?;
        }
        out.flush()?;
    }
    if !report.contact_tokens.is_empty() {
        eprintln!("generated API tokens (shown once; hand each to its person):");
        out.write_record(["contact_id", "token"])?;
        for (id, t) in &report.contact_tokens {
            out.write_record([id, t])?;
        }
    }
    out.flush()?;
    Ok(())
}
