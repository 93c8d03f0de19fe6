//! Settings: compiled-in defaults → optional TOML file → `HUB_`-prefixed environment
//! variables (`HUB_MQTT__LISTEN=0.0.0.0:1884`, `HUB_DATABASE_URL=...`).
//! Tests build a [`Settings`] in code and never go through the environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use alert_rules::Severity;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// `sqlite://path/to/anxin.db` (created on first start) or `postgres://...` (later).
    pub database_url: String,
    pub mqtt: MqttSettings,
    pub http: HttpSettings,
    pub rules: RulesSettings,
    pub escalation: EscalationSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MqttSettings {
    /// Where the embedded broker listens for devices. Port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// Upper bound on simultaneous device connections.
    pub max_connections: usize,
    /// Size of one in-memory ring segment of the broker, in bytes. The ring
    /// (`segment_bytes × segment_count`) is the burst buffer between devices and ingest:
    /// rumqttd silently drops messages for a reader that falls further behind than this.
    pub segment_bytes: usize,
    pub segment_count: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpSettings {
    /// REST + websocket. Port 0 picks a free port (tests).
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RulesSettings {
    /// A rules file replacing the shipped defaults (`alert-rules/rules/default.toml`).
    pub file: Option<PathBuf>,
    /// How often the rules stage evaluates time-based rules (inactivity, device offline), seconds.
    pub tick_secs: u64,
    /// How often the rule engine's memory is saved to the database, seconds.
    pub save_state_secs: u64,
}

/// How an unacknowledged alarm climbs: level 0 = family + village staff, 1 = town, 2 = district.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EscalationPolicy {
    /// Acknowledgement deadline at each level before climbing to the next, in seconds.
    /// `[180, 300]`: 3 min at level 0, then 5 min at level 1, then level 2 (the last) holds.
    pub ack_deadlines_secs: Vec<u64>,
    /// Notify the current level again every N seconds until someone acknowledges.
    pub renotify_secs: Option<u64>,
    /// An alarm not *resolved* this long after it was raised is escalated to the district as overdue.
    pub overdue_after_secs: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EscalationSettings {
    pub critical: EscalationPolicy,
    pub warning: EscalationPolicy,
    pub info: EscalationPolicy,
    /// The highest level (the district).
    pub top_level: u8,
}

impl EscalationSettings {
    pub fn policy(&self, severity: Severity) -> &EscalationPolicy {
        match severity {
            Severity::Critical => &self.critical,
            Severity::Warning => &self.warning,
            Severity::Info => &self.info,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            database_url: "sqlite://anxin.db".into(),
            mqtt: MqttSettings {
                listen: SocketAddr::from(([0, 0, 0, 0], 1883)),
                max_connections: 20_000,
                segment_bytes: 16 * 1024 * 1024,
                segment_count: 4,
            },
            http: HttpSettings {
                listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            },
            rules: RulesSettings {
                file: None,
                tick_secs: 30,
                save_state_secs: 60,
            },
            escalation: EscalationSettings {
                critical: EscalationPolicy {
                    ack_deadlines_secs: vec![180, 300],
                    renotify_secs: Some(60),
                    overdue_after_secs: Some(24 * 3600),
                },
                warning: EscalationPolicy {
                    ack_deadlines_secs: vec![1800, 3600],
                    renotify_secs: None,
                    overdue_after_secs: Some(24 * 3600),
                },
                info: EscalationPolicy {
                    ack_deadlines_secs: vec![],
                    renotify_secs: None,
                    overdue_after_secs: None,
                },
                top_level: 2,
            },
        }
    }
}

impl Settings {
    /// Defaults, then the file (if given), then `HUB_*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Settings, Box<figment::Error>> {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            fig = fig.merge(Toml::file_exact(path));
        }
        fig.merge(Env::prefixed("HUB_").split("__"))
            .extract()
            .map_err(Box::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment's test jail dictates the closure type
    fn file_and_env_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("hub.toml", "[mqtt]\nlisten = \"127.0.0.1:1884\"\n")?;
            jail.set_env("HUB_HTTP__LISTEN", "127.0.0.1:9000");
            let s = Settings::load(Some(Path::new("hub.toml"))).map_err(|e| *e)?;
            assert_eq!(s.mqtt.listen.port(), 1884);
            assert_eq!(s.http.listen.port(), 9000);
            assert_eq!(s.escalation.critical.ack_deadlines_secs, vec![180, 300]);
            Ok(())
        });
    }
}
