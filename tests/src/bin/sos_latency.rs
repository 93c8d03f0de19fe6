//! Measure how long an SOS takes from `mosquitto_pub` (the documented topic and payload)
//! to a websocket client of the right village, against a running hub started with
//! `--demo`. Each round resolves the previous alarm so every SOS raises a new one.
//!
//! ```text
//! cargo run -p anxin-tests --bin sos-latency -- --mqtt-port 1884 --http http://127.0.0.1:8080 --rounds 50
//! ```

use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mqtt_port = arg("--mqtt-port", "1883");
    let http = arg("--http", "http://127.0.0.1:8080");
    let rounds: usize = arg("--rounds", "20").parse()?;
    let ws_url = format!(
        "{}/api/ws?token=demo-village-1",
        http.replacen("http://", "ws://", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await?;
    ws.next().await; // hello
    let api = reqwest::Client::new();
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let ts = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)?;
        let event_id = format!("lat-{}-{i}", uuid::Uuid::new_v4().simple());
        let payload = json!({"v": 1, "event_id": event_id, "ts": ts, "kind": "sos"}).to_string();
        let start = Instant::now();
        let status = Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &mqtt_port,
                "-V",
                "mqttv311",
                "-q",
                "1",
            ])
            .args([
                "-i",
                "demo-pendant-1",
                "-u",
                "demo-pendant-1",
                "-P",
                "demo-secret",
            ])
            .args([
                "-t",
                "anxin/v1/devices/demo-pendant-1/events",
                "-m",
                &payload,
            ])
            .status()?;
        anyhow::ensure!(status.success(), "mosquitto_pub failed");
        let alarm_id = loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await?
                .ok_or_else(|| anyhow::anyhow!("websocket closed"))??;
            let v: Value = serde_json::from_str(msg.to_text()?)?;
            if v["step"] == "raised" && v["alarm"]["household_id"] == "h-1" {
                break v["alarm"]["id"].as_str().unwrap_or_default().to_owned();
            }
        };
        samples.push(start.elapsed());
        api.post(format!("{http}/api/alarms/{alarm_id}/resolve"))
            .bearer_auth("demo-village-1")
            .json(&json!({"disposition": "other", "note": "latency measurement"}))
            .send()
            .await?
            .error_for_status()?;
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "SOS mosquitto_pub -> websocket (village v-1), {} rounds: min {:.1} ms, median {:.1} ms, p95 {:.1} ms, max {:.1} ms (includes starting mosquitto_pub)",
        samples.len(),
        ms(samples[0]),
        ms(samples[samples.len() / 2]),
        ms(samples[(samples.len() * 95 / 100).min(samples.len() - 1)]),
        ms(samples[samples.len() - 1]),
    );
    Ok(())
}
