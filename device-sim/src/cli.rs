//! The `device-sim` command (the binary's `main` only calls [`main`]); a library module
//! so that the end-to-end tests run exactly the commands the README shows.
//!
//! ```text
//! device-sim send --port 1884 --device demo-pendant-1 --secret demo-secret sos
//! device-sim send --port 1884 --device demo-door-1 --secret demo-secret door '{"open":true}'
//! device-sim watch --http http://localhost:8080 --token demo-village-1   # the live feed
//! device-sim generate --out sim/                       # a district + 30 days + ground truth
//! device-sim run --dir sim/ --port 1884 --http http://127.0.0.1:8080
//! device-sim evaluate --dir sim/ --http http://127.0.0.1:8080
//! device-sim bench --out bench/results          # Anxin vs bare Mosquitto (docs/benchmarks.md)
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::sim::{self, SimConfig};
use crate::{drive, evaluate, payload, Backoff};
use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "device-sim",
    about = "Simulated Anxin devices and districts (device contract v1)"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Act as one registered device and publish one event. A critical event (sos, fall,
    /// smoke, gas, water_leak) is kept until the hub acknowledges it: through an outage,
    /// the device reconnects and sends it again until --give-up-secs have passed.
    Send(SendArgs),
    /// Print the hub's live feed (what a board receives) as one JSON line per message:
    /// hello, then every alarm step and delivery change in the token's scope. Reconnects
    /// by itself and catches up; runs until Ctrl-C, --count or --exit-after.
    Watch(WatchArgs),
    /// Generate a simulated district, its month of daily life and incidents with ground
    /// truth, and the CSV files to import it into the hub (`hub admin import --dir DIR`).
    Generate(GenerateArgs),
    /// Play a generated scenario into a hub started with --simulated-clock.
    Run(RunArgs),
    /// Compare the hub's alarms with the scenario's ground truth.
    Evaluate(EvaluateArgs),
    /// Benchmark the hub against a bare MQTT broker (see docs/benchmarks.md).
    Bench(BenchArgs),
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// Seconds and small N instead of the full run (about 20 minutes).
    #[arg(long)]
    quick: bool,
    /// The hub binary to start (default: `hub` beside this executable; build both with
    /// `cargo build --release -p hub -p device-sim`).
    #[arg(long)]
    hub_bin: Option<PathBuf>,
    /// The bare broker to compare with (one wildcard subscriber is attached).
    #[arg(long, default_value = "127.0.0.1:1883")]
    mosquitto: std::net::SocketAddr,
    /// Run the hub alone, without the comparison.
    #[arg(long)]
    no_mosquitto: bool,
    /// Comma-separated subset of: throughput, latency, connections, storm, restart.
    #[arg(long, value_delimiter = ',')]
    scenarios: Option<Vec<String>>,
    /// Device counts of the throughput scenario.
    #[arg(long, value_delimiter = ',')]
    devices: Option<Vec<usize>>,
    /// Device counts of the connection-scale steps (the last also gets the reconnect storm).
    #[arg(long, value_delimiter = ',')]
    connections: Option<Vec<usize>>,
    /// Where bench-<label>.json and .md go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Label of the result files (default: the date and time).
    #[arg(long)]
    label: Option<String>,
    /// Scratch directory for hub databases and logs (default: a temporary directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct SendArgs {
    #[arg(long, default_value = "127.0.0.1", env = "ANXIN_MQTT_HOST")]
    host: String,
    #[arg(long, default_value_t = 1883, env = "ANXIN_MQTT_PORT")]
    port: u16,
    /// Device id (also the MQTT client id and username).
    #[arg(long)]
    device: String,
    /// Device secret printed at provisioning.
    #[arg(long, env = "ANXIN_DEVICE_SECRET")]
    secret: String,
    /// Event kind: sos, fall, motion, door, bed, smoke, gas, water_leak, water_meter,
    /// power_meter, heart_rate, temperature, battery, heartbeat, steps, checkin, visit,
    /// away.
    kind: String,
    /// Kind-specific fields as a JSON object, e.g. '{"open":true}'.
    #[arg(default_value = "{}")]
    fields: String,
    /// Seconds, from the start, to keep connecting and sending before giving up (a
    /// critical event until it is acknowledged).
    #[arg(long, default_value_t = 60)]
    give_up_secs: u64,
}

#[derive(Debug, clap::Args)]
struct WatchArgs {
    /// The hub's web address.
    #[arg(long, default_value = "http://localhost:8080", env = "ANXIN_HTTP")]
    http: String,
    /// An API token: whose feed (its scope) you see.
    #[arg(long, env = "ANXIN_TOKEN")]
    token: String,
    /// Only part of the token's scope, e.g. village:v-1.
    #[arg(long)]
    scope: Option<String>,
    /// Exit after this many alarm or delivery messages (the hello is not counted).
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Exit after this many seconds.
    #[arg(long, value_name = "SECS")]
    exit_after: Option<u64>,
}

#[derive(Debug, clap::Args)]
struct GenerateArgs {
    /// Output directory (created).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 8)]
    towns: usize,
    #[arg(long, default_value_t = 111)]
    villages: usize,
    #[arg(long, default_value_t = 200)]
    households: usize,
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// First simulated day, local midnight (+08:00).
    #[arg(long, default_value = "2026-11-02")]
    start: String,
    /// Secret of every simulated device (import with `--default-secret`).
    #[arg(long, default_value = "sim-secret")]
    secret: String,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Directory written by `generate`.
    #[arg(long)]
    dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 1883)]
    port: u16,
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    http: String,
    /// District-scope API token.
    #[arg(long, default_value = "demo-district")]
    token: String,
    /// Simulated seconds per step.
    #[arg(long, default_value_t = 60)]
    step_secs: i64,
}

#[derive(Debug, clap::Args)]
struct EvaluateArgs {
    #[arg(long)]
    dir: PathBuf,
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    http: String,
    #[arg(long, default_value = "demo-district")]
    token: String,
    /// The run's step (`run --step-secs`): events are observed up to one step late.
    #[arg(long, default_value_t = 60)]
    step_secs: i64,
}

/// Parse the arguments and run; errors are printed as `error: ...` with exit status 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run_cli(cli))
}

/// Run a parsed command line.
pub async fn run_cli(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Send(a) => send(a).await,
        Command::Watch(a) => watch(a).await,
        Command::Generate(a) => generate(a),
        Command::Run(a) => run(a).await,
        Command::Evaluate(a) => evaluate_cmd(a).await,
        Command::Bench(a) => bench(a).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn send(args: SendArgs) -> anyhow::Result<()> {
    let fields: serde_json::Value = serde_json::from_str(&args.fields)
        .map_err(|e| anyhow::anyhow!("fields must be a JSON object: {e}"))?;
    if !fields.is_object() {
        return Err(crate::send::SendError::BadFields.into());
    }
    let opts = crate::send::SendOptions {
        host: args.host,
        port: args.port,
        device: args.device,
        secret: args.secret,
        kind: args.kind,
        fields,
        give_up: Duration::from_secs(args.give_up_secs),
        reconnect: Backoff::PATIENT,
    };
    let event = payload::event(&opts.kind, opts.fields.clone());
    println!("publishing {event}");
    match crate::send::send(&opts, &event, &mut |line| eprintln!("{line}")).await? {
        crate::send::Sent::Acknowledged(ack) => println!("acknowledged by hub: {ack}"),
        crate::send::Sent::Published => {
            println!("sent (non-critical events are not acknowledged)")
        }
    }
    Ok(())
}

async fn watch(args: WatchArgs) -> anyhow::Result<()> {
    let opts = crate::watch::WatchOptions {
        http: args.http,
        token: args.token,
        scope: args.scope,
        count: args.count,
        exit_after: args.exit_after.map(Duration::from_secs),
        reconnect: Backoff::PATIENT,
    };
    let mut out = std::io::stdout();
    crate::watch::watch(&opts, &mut out, &mut |line| eprintln!("{line}")).await?;
    Ok(())
}

fn local_midnight_ms(date: &str) -> anyhow::Result<i64> {
    let t = time::OffsetDateTime::parse(
        &format!("{date}T00:00:00+08:00"),
        &time::format_description::well_known::Rfc3339,
    )
    .with_context(|| format!("--start {date:?} must be a date like 2026-11-01"))?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

fn generate(a: GenerateArgs) -> anyhow::Result<()> {
    let config = SimConfig {
        seed: a.seed,
        towns: a.towns,
        villages: a.villages,
        households: a.households,
        start: local_midnight_ms(&a.start)?,
        days: a.days,
        ..SimConfig::default()
    };
    let began = std::time::Instant::now();
    let scenario = sim::generate(&config);
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    scenario.write_csv(&a.out).context("writing CSV files")?;
    std::fs::write(
        a.out.join("scenario.json"),
        serde_json::to_string_pretty(&config)?,
    )?;
    std::fs::write(a.out.join("secret.txt"), &a.secret)?;
    let rules = sim::rules_file::sim_rules(&config, &scenario.district)?;
    std::fs::write(a.out.join("rules.toml"), &rules.text)?;
    for note in &rules.notes {
        eprintln!("rules.toml: {note}");
    }
    std::fs::write(
        a.out.join("incidents.json"),
        serde_json::to_string_pretty(&scenario.incidents_json())?,
    )?;
    eprintln!(
        "generated {} households, {} devices, {} events, {} incidents over {} days in {:.1} s → {}",
        scenario.district.households.len(),
        scenario
            .district
            .households
            .iter()
            .map(|h| h.devices.len())
            .sum::<usize>(),
        scenario.events.len(),
        scenario.incidents.len(),
        config.days,
        began.elapsed().as_secs_f64(),
        a.out.display()
    );
    let mut kinds = std::collections::BTreeMap::new();
    for i in &scenario.incidents {
        *kinds.entry(i.kind.as_str()).or_insert(0usize) += 1;
    }
    let kinds = kinds
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>();
    eprintln!("incidents by kind: {}", kinds.join(", "));
    let homes = &scenario.district.households;
    eprintln!(
        "households: {} with the daily check-in, {} interval water meters, {} interval power meters",
        homes.iter().filter(|h| h.checkin).count(),
        homes.iter().filter(|h| h.interval_water).count(),
        homes.iter().filter(|h| h.interval_power).count(),
    );
    eprintln!(
        "next: hub admin import --dir {0} --default-secret {2}\n      HUB_RULES__FILE={0}/rules.toml hub run --demo --simulated-clock {1}T00:00:00+08:00\n      device-sim run --dir {0}; device-sim evaluate --dir {0}",
        a.out.display(),
        a.start,
        a.secret
    );
    Ok(())
}

fn load(dir: &Path) -> anyhow::Result<(sim::Scenario, String)> {
    let text = std::fs::read_to_string(dir.join("scenario.json")).with_context(|| {
        format!(
            "reading {}/scenario.json (run `device-sim generate` first)",
            dir.display()
        )
    })?;
    let config: SimConfig = serde_json::from_str(&text).context("scenario.json")?;
    let secret =
        std::fs::read_to_string(dir.join("secret.txt")).unwrap_or_else(|_| "sim-secret".into());
    Ok((sim::generate(&config), secret.trim().to_owned()))
}

async fn run(a: RunArgs) -> anyhow::Result<()> {
    let (scenario, secret) = load(&a.dir)?;
    let opts = drive::RunOptions {
        host: a.host,
        mqtt_port: a.port,
        http: a.http,
        token: a.token,
        secret,
        step_ms: a.step_secs.max(1) * 1000,
        connect_concurrency: 200,
    };
    let report = drive::run(&scenario, &opts).await?;
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(a.dir.join("run.json"), &json)?;
    println!("{json}");
    Ok(())
}

async fn evaluate_cmd(a: EvaluateArgs) -> anyhow::Result<()> {
    let (scenario, _) = load(&a.dir)?;
    let detections = evaluate::fetch_detections(&a.http, &a.token).await?;
    let report = evaluate::evaluate(&scenario, &detections, a.step_secs.max(0) * 1000);
    let md = report.markdown();
    std::fs::write(a.dir.join("evaluation.md"), &md)?;
    std::fs::write(
        a.dir.join("evaluation.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    println!("{md}");
    Ok(())
}

async fn bench(a: BenchArgs) -> anyhow::Result<()> {
    use crate::bench::{self, BenchConfig, ALL_SCENARIOS};
    let hub_bin = match a.hub_bin {
        Some(p) => p,
        None => bench::default_hub_bin().context(
            "no hub binary beside device-sim: build both (cargo build --release -p hub -p device-sim) or pass --hub-bin",
        )?,
    };
    let mosquitto = (!a.no_mosquitto).then_some(a.mosquitto);
    let tmp = tempfile::tempdir()?;
    let work = a.work_dir.unwrap_or_else(|| tmp.path().to_owned());
    let mut cfg = if a.quick {
        BenchConfig::quick(hub_bin, mosquitto, work)
    } else {
        BenchConfig::full(hub_bin, mosquitto, work)
    };
    if let Some(s) = a.scenarios {
        for x in &s {
            anyhow::ensure!(
                ALL_SCENARIOS.contains(&x.as_str()),
                "unknown scenario {x:?}; choose from {}",
                ALL_SCENARIOS.join(", ")
            );
        }
        cfg.scenarios = s;
    }
    if let Some(d) = a.devices {
        cfg.throughput_devices = d;
    }
    if let Some(c) = a.connections {
        cfg.connection_steps = c;
    }
    let report = bench::run(cfg).await?;
    let label = a.label.unwrap_or_else(|| {
        let now = time::OffsetDateTime::now_utc();
        format!(
            "{:04}-{:02}-{:02}T{:02}{:02}",
            now.year(),
            now.month() as u8,
            now.day(),
            now.hour(),
            now.minute()
        )
    });
    let md = bench::write(&report, &a.out, &label)?;
    println!("{}", report.markdown());
    eprintln!("written: {} (and .json)", md.display());
    Ok(())
}
