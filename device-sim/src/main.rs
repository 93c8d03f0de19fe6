//! `device-sim`: act as one registered device and publish one event.
//!
//! ```text
//! device-sim --port 1884 --device demo-pendant-1 --secret demo-secret sos
//! device-sim --port 1884 --device demo-door-1 --secret demo-secret door '{"open":true}'
//! ```

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use device_sim::{payload, Device, DeviceConfig};

#[derive(Debug, Parser)]
#[command(
    name = "device-sim",
    about = "Simulated Anxin device (device contract v1)"
)]
struct Args {
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
    /// power_meter, heart_rate, temperature, battery, heartbeat.
    kind: String,
    /// Kind-specific fields as a JSON object, e.g. '{"open":true}'.
    #[arg(default_value = "{}")]
    fields: String,
    /// Seconds to keep retrying a critical event before giving up.
    #[arg(long, default_value_t = 60)]
    give_up_secs: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let fields: serde_json::Value = serde_json::from_str(&args.fields)
        .map_err(|e| anyhow::anyhow!("fields must be a JSON object: {e}"))?;
    if !fields.is_object() {
        anyhow::bail!("fields must be a JSON object, e.g. '{{\"open\":true}}'");
    }
    let config = DeviceConfig::new(args.host, args.port, &args.device, args.secret);
    let dev = Device::connect(config, Duration::from_secs(10)).await?;
    let event = payload::event(&args.kind, fields.clone());
    println!("publishing {event}");
    if payload::is_critical(&args.kind, &fields) {
        let ack = dev
            .send_critical(&event, Duration::from_secs(args.give_up_secs))
            .await?;
        println!("acknowledged by hub: {ack}");
    } else {
        let mut rx = dev.subscribe();
        dev.send(&event).await?;
        // Report an error the hub sends back within a moment.
        if let Ok(Ok(device_sim::FromHub::Error(e))) =
            tokio::time::timeout(Duration::from_millis(500), rx.recv()).await
        {
            anyhow::bail!("hub rejected the event: {e}");
        }
        println!("sent (non-critical events are not acknowledged)");
    }
    dev.disconnect().await;
    Ok(())
}
