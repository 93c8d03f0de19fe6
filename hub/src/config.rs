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
    /// The district platform's webhook (`[webhook]`); unset: none.
    #[serde(default)]
    pub webhook: Option<crate::webhook::WebhookSettings>,
    /// `[twilio]`: SMS and voice through Twilio. Absent = Twilio off (no SMS, no calls).
    #[serde(default)]
    pub twilio: Option<crate::twilio::TwilioSettings>,
    /// `[health]`: when `/healthz` reports a stalled pipeline.
    #[serde(default)]
    pub health: HealthSettings,
}

/// The pipeline watchdog behind `/healthz` (see `crate::health`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct HealthSettings {
    /// A stage that has work waiting and finishes none of it for this long is stalled:
    /// `/healthz` answers 503 and the stall is logged and counted. Longer than any
    /// legitimate pause (a database retry backs off for at most 5 s at a time).
    pub stall_after_secs: u64,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            stall_after_secs: 20,
        }
    }
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
    /// Limits per source address on device connections (`[mqtt.source_limits]`).
    #[serde(default)]
    pub source_limits: SourceLimitSettings,
    /// Limits per device connection on what it publishes (`[mqtt.device_limits]`).
    #[serde(default)]
    pub device_limits: DeviceLimitSettings,
}

/// A publish budget per device connection (docs/security.md, issue 14 finding 3). One
/// device flooding valid messages (5.86 M heartbeats in 60 s, measured) held back every
/// other home's SOS by 18-23 s: ingest and the rules stage serve all devices in turn, so
/// one device's share must be bounded before its messages reach them. The budget is a
/// token bucket checked in the broker's codec: an over-budget publish is acknowledged to
/// the device's MQTT client but delivered nowhere, counted, and at most once a second
/// reported on the device's `errors` topic with code `rate_limited` (the device retries a
/// critical event until it is acknowledged, as the contract asks). A device that goes on
/// flooding is disconnected.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DeviceLimitSettings {
    /// Publishes one device connection may make per second, sustained. 0 = no limit.
    /// A sensor sends a few messages a minute; 10 a second is far above any real one.
    pub publishes_per_sec: u32,
    /// ...and at once: a device flushing events it buffered while offline.
    pub publish_burst: u32,
    /// Refused publishes within 10 s after which the connection is closed. 0 = never.
    pub disconnect_after_refused: u32,
}

impl Default for DeviceLimitSettings {
    fn default() -> Self {
        Self {
            publishes_per_sec: 10,
            publish_burst: 300,
            disconnect_after_refused: 1_000,
        }
    }
}

/// Limits per source address on the MQTT listener (docs/security.md T3, T10). A source is
/// an IPv4 address or an IPv6 /64 (what one subscriber is usually given). Only *failed*
/// CONNECTs count towards a block, so a village behind one NAT address reconnecting after
/// a power cut is never blocked for its successes; the raw connection rate is generous.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SourceLimitSettings {
    /// Failed CONNECTs (wrong secret, unknown or malformed device id, for any device ids)
    /// one source may make at once before it is blocked. 0 turns the block off.
    pub max_failures: u32,
    /// The budget refills over this many seconds: a source may go on failing at
    /// `max_failures` per `failure_window_secs` without being blocked.
    pub failure_window_secs: u64,
    /// How long a blocked source's CONNECTs are refused, whatever their credentials.
    /// Connections it already has are not touched.
    pub block_secs: u64,
    /// New TCP connections one source may open per second, sustained. 0 = no limit.
    pub connects_per_sec: u32,
    /// ...and at once (a burst, e.g. every device behind one NAT reconnecting).
    pub connect_burst: u32,
    /// Also limit loopback sources (127.0.0.0/8, ::1). Off by default: the hub's own
    /// ingest connects over loopback, and so does a TLS proxy on the same host, where one
    /// address stands for every device (such a proxy must limit per source itself).
    pub limit_loopback: bool,
    /// Sources never limited (CIDR, e.g. `"203.0.113.0/24"`): a vendor's cloud that
    /// relays many devices from few addresses, a TLS proxy on another host.
    pub exempt: Vec<ipnet::IpNet>,
}

impl Default for SourceLimitSettings {
    fn default() -> Self {
        Self {
            max_failures: 30,
            failure_window_secs: 60,
            block_secs: 60,
            connects_per_sec: 50,
            connect_burst: 500,
            limit_loopback: false,
            exempt: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpSettings {
    /// REST + websocket. Port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// Serve `/metrics` (and `/healthz`) on this address only, not on `listen`: e.g.
    /// `127.0.0.1:9464`, so metrics never pass the public proxy. Unset: `/metrics` is on
    /// `listen`, without a token.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Reverse proxies whose `X-Forwarded-For`, `X-Forwarded-Host` and
    /// `X-Forwarded-Proto` are believed (CIDRs, e.g. `["127.0.0.1/32", "::1/128"]` for a
    /// TLS proxy on the hub's own host). Empty (the default): those headers are ignored
    /// and the client is the TCP peer, so nobody can claim another address by sending
    /// them. From a listed peer, the client is the right-most `X-Forwarded-For` address
    /// that is not itself listed (docs/security.md T3, T7).
    #[serde(default)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The origins the web pages are served from (`"https://anxin.example.org"`), for a
    /// proxy that passes neither the browser's `Host` nor `X-Forwarded-Host`. The request's
    /// own host is always accepted (cross-site request forgery check, docs/security.md T7).
    #[serde(default)]
    pub public_origins: Vec<String>,
    /// Also limit logins from loopback (127.0.0.0/8, ::1) per address. Off by default,
    /// like `[mqtt.source_limits] limit_loopback`: a proxy on the same host that is not
    /// in `trusted_proxies` makes every visitor one loopback address, and one guesser
    /// would keep everybody out.
    #[serde(default)]
    pub limit_loopback_logins: bool,
    /// Open websockets one account may hold (all its sessions and tokens together); a
    /// board page holds one. Each costs memory: 17 kB of RSS measured per idle socket
    /// (137 kB before the read buffer was made smaller, `http::READ_BUFFER`), plus what
    /// a slow reader's queued messages take.
    #[serde(default = "default_ws_per_account")]
    pub max_websockets_per_account: usize,
    /// Open websockets in all.
    #[serde(default = "default_ws_total")]
    pub max_websockets: usize,
}

fn default_ws_per_account() -> usize {
    20
}

fn default_ws_total() -> usize {
    5_000
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
    /// At most this many repeats per level (then the level waits for its deadline, or, at
    /// the top level, for someone to answer). Unset: no bound.
    #[serde(default)]
    pub max_repeats: Option<u32>,
    /// An alarm not *resolved* this long after it was raised is escalated to the district as overdue.
    pub overdue_after_secs: Option<u64>,
    /// An *acknowledged* alarm with nobody reported on site this long after the
    /// acknowledgement re-escalates to the next level (and again after as long, up to the
    /// top). Unset: no such check.
    #[serde(default)]
    pub on_site_within_secs: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EscalationSettings {
    pub critical: EscalationPolicy,
    pub warning: EscalationPolicy,
    pub info: EscalationPolicy,
    /// The highest level (the district).
    pub top_level: u8,
    /// Rules whose alarms first call the elder's own phone (needs `[twilio]` and an
    /// elder with a phone; otherwise the contacts are told at once). SOS, smoke, gas and
    /// leaks should never be here.
    #[serde(default = "default_verify_rules")]
    pub verify_first_rules: Vec<String>,
    /// How long the elder has to press 1 before the contacts are told anyway, seconds.
    #[serde(default = "default_verify_secs")]
    pub verify_within_secs: u64,
}

fn default_verify_rules() -> Vec<String> {
    [
        "no-activity-daytime",
        "no-activity-long",
        "not-up-by-10",
        "daily-checkin",
        "fall",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn default_verify_secs() -> u64 {
    180
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
                source_limits: SourceLimitSettings::default(),
                device_limits: DeviceLimitSettings::default(),
            },
            http: HttpSettings {
                listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
                metrics_listen: None,
                trusted_proxies: Vec::new(),
                public_origins: Vec::new(),
                limit_loopback_logins: false,
                max_websockets_per_account: default_ws_per_account(),
                max_websockets: default_ws_total(),
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
                    max_repeats: Some(5),
                    overdue_after_secs: Some(24 * 3600),
                    on_site_within_secs: Some(30 * 60),
                },
                warning: EscalationPolicy {
                    ack_deadlines_secs: vec![1800, 3600],
                    renotify_secs: None,
                    max_repeats: None,
                    overdue_after_secs: Some(24 * 3600),
                    on_site_within_secs: None,
                },
                info: EscalationPolicy {
                    ack_deadlines_secs: vec![],
                    renotify_secs: None,
                    max_repeats: None,
                    overdue_after_secs: None,
                    on_site_within_secs: None,
                },
                top_level: 2,
                verify_first_rules: default_verify_rules(),
                verify_within_secs: default_verify_secs(),
            },
            webhook: None,
            twilio: None,
            health: HealthSettings::default(),
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

/// Where a setting was given, when it was not left at its compiled-in default: for
/// messages that name the setting to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingSource {
    /// The environment variable, e.g. `HUB_MQTT__LISTEN`.
    Env(String),
    /// The settings file (`hub --config FILE`), and the key in it (`[mqtt] listen`).
    File { path: PathBuf, key: String },
}

impl std::fmt::Display for SettingSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SettingSource::Env(var) => f.write_str(var),
            SettingSource::File { path, key } => write!(f, "{key} in {}", path.display()),
        }
    }
}

impl Settings {
    /// Where `key` (dotted, e.g. `"mqtt.listen"`) was set: the `HUB_*` environment
    /// (which wins, as in [`Settings::load`]), else the file; `None` for the default.
    pub fn source_of(file: Option<&Path>, key: &str) -> Option<SettingSource> {
        if Figment::from(Env::prefixed("HUB_").split("__"))
            .find_value(key)
            .is_ok()
        {
            return Some(SettingSource::Env(env_var_name(key)));
        }
        let path = file?;
        Figment::from(Toml::file_exact(path))
            .find_value(key)
            .is_ok()
            .then(|| SettingSource::File {
                path: path.to_owned(),
                key: match key.rsplit_once('.') {
                    Some((table, leaf)) => format!("[{table}] {leaf}"),
                    None => key.to_owned(),
                },
            })
    }
}

/// `mqtt.listen` → `HUB_MQTT__LISTEN`.
pub fn env_var_name(key: &str) -> String {
    format!("HUB_{}", key.replace('.', "__").to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment's test jail dictates the closure type
    fn where_a_listen_address_was_set() {
        figment::Jail::expect_with(|jail| {
            assert_eq!(Settings::source_of(None, "mqtt.listen"), None);
            jail.create_file("hub.toml", "[mqtt]\nlisten = \"127.0.0.1:1884\"\n")?;
            let file = Path::new("hub.toml");
            assert_eq!(
                Settings::source_of(Some(file), "mqtt.listen")
                    .map(|s| s.to_string())
                    .as_deref(),
                Some("[mqtt] listen in hub.toml")
            );
            assert_eq!(Settings::source_of(Some(file), "http.listen"), None);
            jail.set_env("HUB_MQTT__LISTEN", "127.0.0.1:1885");
            jail.set_env("hub_http__listen", "127.0.0.1:9000");
            assert_eq!(
                Settings::source_of(Some(file), "mqtt.listen"),
                Some(SettingSource::Env("HUB_MQTT__LISTEN".into()))
            );
            assert_eq!(
                Settings::source_of(None, "http.listen"),
                Some(SettingSource::Env("HUB_HTTP__LISTEN".into()))
            );
            Ok(())
        });
    }

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
            assert_eq!(s.mqtt.source_limits, SourceLimitSettings::default());
            assert_eq!(s.twilio, None, "Twilio is off unless configured");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's test jail dictates the closure type
    fn source_limits_are_set_in_part_from_the_file_and_env() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "hub.toml",
                "[mqtt.source_limits]\nblock_secs = 300\nexempt = [\"203.0.113.0/24\", \"2001:db8::/48\"]\n",
            )?;
            jail.set_env("HUB_MQTT__SOURCE_LIMITS__LIMIT_LOOPBACK", "true");
            let s = Settings::load(Some(Path::new("hub.toml"))).map_err(|e| *e)?;
            let l = &s.mqtt.source_limits;
            assert_eq!(l.block_secs, 300);
            assert!(l.limit_loopback);
            assert_eq!(l.max_failures, 30, "unset fields keep their defaults");
            assert_eq!(l.exempt.len(), 2);
            assert!(l.exempt[0].contains(&"203.0.113.9".parse::<std::net::IpAddr>().expect("ip")));
            // A list in the environment (the form docs/operations.md shows).
            jail.set_env("HUB_MQTT__SOURCE_LIMITS__EXEMPT", "[\"198.51.100.0/24\"]");
            let s = Settings::load(Some(Path::new("hub.toml"))).map_err(|e| *e)?;
            assert_eq!(
                s.mqtt.source_limits.exempt,
                vec!["198.51.100.0/24".parse::<ipnet::IpNet>().expect("cidr")]
            );
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's test jail dictates the closure type
    fn http_hardening_settings_from_the_file_and_env() {
        figment::Jail::expect_with(|jail| {
            let s = Settings::load(None).map_err(|e| *e)?;
            assert!(
                s.http.trusted_proxies.is_empty(),
                "nobody is trusted by default"
            );
            assert!(s.http.public_origins.is_empty());
            assert!(!s.http.limit_loopback_logins);
            assert_eq!(s.http.max_websockets_per_account, 20);
            assert_eq!(s.http.max_websockets, 5_000);
            jail.create_file(
                "hub.toml",
                "[http]\nlisten = \"127.0.0.1:8080\"\ntrusted_proxies = [\"127.0.0.1/32\", \"::1/128\"]\n\
                 public_origins = [\"https://anxin.example.org\"]\nmax_websockets_per_account = 5\n",
            )?;
            jail.set_env("HUB_HTTP__MAX_WEBSOCKETS", "100");
            let s = Settings::load(Some(Path::new("hub.toml"))).map_err(|e| *e)?;
            assert_eq!(s.http.trusted_proxies.len(), 2);
            assert_eq!(s.http.public_origins, vec!["https://anxin.example.org"]);
            assert_eq!(s.http.max_websockets_per_account, 5);
            assert_eq!(s.http.max_websockets, 100);
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's test jail dictates the closure type
    fn twilio_from_the_file_with_the_token_from_env() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "hub.toml",
                "[twilio]\naccount_sid = \"AC0123\"\nfrom_sms = \"+8613800000000\"\n\
                 from_voice = \"+8613800000001\"\npublic_base_url = \"https://hub.example.org\"\n",
            )?;
            jail.set_env("HUB_TWILIO__AUTH_TOKEN", "tok-from-env");
            jail.set_env("HUB_TWILIO__TIMEOUT_SECS", "5");
            let s = Settings::load(Some(Path::new("hub.toml"))).map_err(|e| *e)?;
            let t = s.twilio.expect("configured");
            assert_eq!(t.account_sid, "AC0123");
            assert_eq!(t.auth_token.expose(), "tok-from-env");
            assert_eq!(t.timeout_secs, 5);
            assert_eq!(t.api_base, "https://api.twilio.com", "default");
            assert_eq!(t.ring_secs, 30, "default");
            assert!(!format!("{t:?}").contains("tok-from-env"));
            // A [twilio] section without its token is an error at start, not Twilio off.
            jail.clear_env();
            assert!(Settings::load(Some(Path::new("hub.toml"))).is_err());
            Ok(())
        });
    }
}
