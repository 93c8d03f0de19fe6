//! The listen addresses, checked before the hub creates anything (issue 15, item 7).
//!
//! A new user's first command is `cargo run -p hub -- --demo`, often on a machine where
//! Mosquitto already has 1883. So, before the database is opened or seeded:
//! - with `--demo` and a port left at its default, a taken port moves to the next free
//!   one (1884, 1885, …) and the hub says so where it prints the demo credentials;
//! - a port that was set (`HUB_MQTT__LISTEN`, `HUB_HTTP__LISTEN`, or the settings file),
//!   and any taken port without `--demo`, stops the start at once with an error that
//!   names the setting to change. A production hub never moves its ports by itself:
//!   devices and proxies are configured with them.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;

use crate::config::{env_var_name, SettingSource, Settings};

/// How many ports above a taken default `--demo` tries before giving up.
const DEMO_TRIES: u16 = 20;

/// One listening socket the hub opens.
#[derive(Debug, Clone, Copy)]
pub struct Socket {
    /// For people: `MQTT (devices)`.
    pub what: &'static str,
    /// The settings key: `mqtt.listen`.
    pub key: &'static str,
    /// What usually holds its default port, for the error message.
    pub usual_suspect: &'static str,
}

pub const MQTT: Socket = Socket {
    what: "MQTT (devices)",
    key: "mqtt.listen",
    usual_suspect: "another MQTT broker, such as Mosquitto, or another hub",
};

pub const HTTP: Socket = Socket {
    what: "HTTP (web pages and API)",
    key: "http.listen",
    usual_suspect: "another web server or hub",
};

/// A default port that was taken, and where the hub listens instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    pub what: &'static str,
    pub env: String,
    pub wanted: SocketAddr,
    pub got: SocketAddr,
}

/// Check `settings.mqtt.listen` and `settings.http.listen` and move taken default ports
/// when `demo` (see the module documentation). `config` is the settings file, to tell a
/// default from a setting. Returns the ports that moved.
pub fn prepare(
    settings: &mut Settings,
    config: Option<&Path>,
    demo: bool,
) -> anyhow::Result<Vec<Moved>> {
    let mut moved = Vec::new();
    for (socket, addr) in [
        (MQTT, &mut settings.mqtt.listen),
        (HTTP, &mut settings.http.listen),
    ] {
        let source = Settings::source_of(config, socket.key);
        let got = choose(socket, *addr, source.as_ref(), demo)?;
        if got != *addr {
            moved.push(Moved {
                what: socket.what,
                env: env_var_name(socket.key),
                wanted: *addr,
                got,
            });
            *addr = got;
        }
    }
    Ok(moved)
}

/// `addr` when it can be bound now; else, when `may_move` and the address is the
/// default (`source` is `None`), the first free port above it; else an error naming
/// the setting. (Bound and released again: the hub binds for real moments later.)
pub fn choose(
    socket: Socket,
    addr: SocketAddr,
    source: Option<&SettingSource>,
    may_move: bool,
) -> anyhow::Result<SocketAddr> {
    let err = match TcpListener::bind(addr) {
        Ok(_) => return Ok(addr),
        Err(e) => e,
    };
    let env = env_var_name(socket.key);
    let taken = err.kind() == ErrorKind::AddrInUse;
    if taken && may_move && source.is_none() && addr.port() != 0 {
        let mut candidate = addr;
        for port in (addr.port().saturating_add(1)..=u16::MAX).take(usize::from(DEMO_TRIES)) {
            candidate.set_port(port);
            if TcpListener::bind(candidate).is_ok() {
                return Ok(candidate);
            }
        }
    }
    let mut example = addr;
    example.set_port(addr.port().saturating_add(1));
    let why = if taken {
        format!(
            "port {} is already in use ({}?)",
            addr.port(),
            socket.usual_suspect
        )
    } else {
        err.to_string()
    };
    let fix = match source {
        Some(SettingSource::Env(var)) => {
            format!("set {var} to a free address, e.g. {var}={example}")
        }
        Some(file @ SettingSource::File { .. }) => {
            format!("change {file}, or override it with {env}, e.g. {env}={example}")
        }
        None => format!("choose a free address with {env}, e.g. {env}={example}"),
    };
    let set = match source {
        Some(s) => format!(" (set by {s})"),
        None => String::new(),
    };
    anyhow::bail!(
        "cannot listen for {} on {addr}{set}: {why}. To fix it, {fix}",
        socket.what
    )
}

/// The lines `hub --demo` prints when a port moved: hard to miss, and with the
/// addresses a user types next.
pub fn moved_notice(moved: &[Moved], http: SocketAddr, mqtt: SocketAddr) -> String {
    let mut s = String::new();
    if moved.is_empty() {
        return s;
    }
    let rule = "!".repeat(78);
    s.push_str(&format!("\n{rule}\n"));
    for m in moved {
        s.push_str(&format!(
            "!! {} port {} was taken, so this hub listens on port {} instead.\n",
            m.what,
            m.wanted.port(),
            m.got.port()
        ));
    }
    s.push_str(&format!(
        "!! Board: http://localhost:{}/    MQTT for devices: localhost:{}\n",
        http.port(),
        mqtt.port()
    ));
    let set = moved
        .iter()
        .map(|m| format!("{}={}", m.env, m.got))
        .collect::<Vec<_>>()
        .join(" ");
    s.push_str(&format!("!! To choose the ports yourself: {set}\n{rule}\n"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken() -> (TcpListener, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = l.local_addr().expect("addr");
        (l, a)
    }

    #[test]
    fn a_free_address_is_kept_whatever_its_source() {
        let (l, addr) = taken();
        drop(l);
        let env = SettingSource::Env("HUB_HTTP__LISTEN".into());
        assert_eq!(choose(HTTP, addr, Some(&env), false).expect("free"), addr);
        assert_eq!(choose(HTTP, addr, None, true).expect("free"), addr);
    }

    #[test]
    fn a_taken_default_moves_up_with_demo() {
        let (_hold, addr) = taken();
        let got = choose(MQTT, addr, None, true).expect("moves");
        assert_ne!(got, addr);
        assert!(got.port() > addr.port() && got.port() <= addr.port() + DEMO_TRIES);
        assert_eq!(got.ip(), addr.ip());
    }

    #[test]
    fn a_taken_port_that_was_set_names_the_setting() {
        let (_hold, addr) = taken();
        let env = SettingSource::Env("HUB_MQTT__LISTEN".into());
        let err = choose(MQTT, addr, Some(&env), true)
            .expect_err("a set port never moves")
            .to_string();
        assert!(err.contains("HUB_MQTT__LISTEN"), "{err}");
        assert!(err.contains("already in use"), "{err}");
        assert!(err.contains("Mosquitto"), "{err}");
        let file = SettingSource::File {
            path: "hub.toml".into(),
            key: "[http] listen".into(),
        };
        let err = choose(HTTP, addr, Some(&file), true)
            .expect_err("a set port never moves")
            .to_string();
        assert!(err.contains("[http] listen in hub.toml"), "{err}");
        assert!(err.contains("HUB_HTTP__LISTEN"), "{err}");
    }

    #[test]
    fn without_demo_a_taken_default_stops_the_start_and_names_the_variable() {
        let (_hold, addr) = taken();
        let err = choose(HTTP, addr, None, false)
            .expect_err("production never moves a port")
            .to_string();
        assert!(err.contains("HUB_HTTP__LISTEN="), "{err}");
    }

    #[test]
    fn the_notice_gives_the_addresses_to_type() {
        let moved = [Moved {
            what: MQTT.what,
            env: "HUB_MQTT__LISTEN".into(),
            wanted: "0.0.0.0:1883".parse().expect("addr"),
            got: "0.0.0.0:1884".parse().expect("addr"),
        }];
        let s = moved_notice(
            &moved,
            "0.0.0.0:8080".parse().expect("addr"),
            "0.0.0.0:1884".parse().expect("addr"),
        );
        assert!(s.contains("port 1883 was taken"), "{s}");
        assert!(s.contains("http://localhost:8080/"), "{s}");
        assert!(s.contains("localhost:1884"), "{s}");
        assert!(s.contains("HUB_MQTT__LISTEN=0.0.0.0:1884"), "{s}");
        assert!(moved_notice(
            &[],
            "0.0.0.0:8080".parse().expect("addr"),
            "0.0.0.0:1883".parse().expect("addr")
        )
        .is_empty());
    }
}
