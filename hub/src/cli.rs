//! The `hub` command: run the hub, or administer the district.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::store::{Scope, Store};
use crate::{demo, secrets, App};

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
    /// With no subcommand: run. Seed the demo district first (public credentials!).
    #[arg(long)]
    pub demo: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub (embedded broker, rules, alarms, HTTP).
    Run {
        /// Seed the demo district first (public credentials!).
        #[arg(long)]
        demo: bool,
    },
    /// Administer the district model, devices and contacts.
    Admin {
        #[command(subcommand)]
        command: Admin,
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
    },
    /// Seed the demo district.
    SeedDemo,
}

pub fn main() -> ExitCode {
    crate::telemetry::init_logging();
    let cli = Cli::parse();
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
        None => serve(settings, cli.demo).await,
        Some(Command::Run { demo }) => serve(settings, demo || cli.demo).await,
        Some(Command::Admin { command }) => {
            let store = Store::connect(&settings.database_url).await?;
            admin(&store, command, clock.now()).await
        }
    }
}

async fn serve(settings: Settings, demo: bool) -> anyhow::Result<()> {
    if demo {
        let store = Store::connect(&settings.database_url).await?;
        demo::seed(&store, SystemClock.now()).await?;
    }
    let app = App::build(settings, Arc::new(SystemClock)).await?;
    if demo {
        eprintln!("{}", demo::banner(app.http_addr, app.mqtt_addr));
    }
    app.run_until_stopped().await
}

fn check_id(kind: &str, id: &str) -> anyhow::Result<()> {
    crate::ingest::contract::DeviceId::parse(id)
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("{kind} id {id:?}: {e}"))
}

async fn admin(store: &Store, cmd: Admin, now: i64) -> anyhow::Result<()> {
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
        } => {
            check_id("contact", &id)?;
            if !["family", "village", "town", "district"].contains(&role.as_str()) {
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
                    &token,
                    now,
                )
                .await?;
            println!("contact {id} created.\nAPI token (shown once): {token}");
        }
        Admin::SeedDemo => {
            demo::seed(store, now).await?;
            println!("demo district seeded");
        }
    }
    Ok(())
}
