//! `device-sim watch`: the live feed a board receives (`GET /api/ws`), one JSON line per
//! message — `hello`, then each alarm step and delivery change in the token's scope —
//! for a terminal or a script. It reconnects the way the hub's own board does
//! (docs/api.md, "How a board should reconnect"): with backoff, asking for every step
//! after the last one it printed (`since_seq`), so a hub restart loses nothing.

use std::io::Write;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::Backoff;

#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The hub's web address, `http://localhost:8080`.
    pub http: String,
    /// An API token (`demo-village-1`).
    pub token: String,
    /// Narrow the feed to a part of the token's scope (`village:v-1`).
    pub scope: Option<String>,
    /// Stop after this many alarm or delivery messages (the hello is not counted).
    pub count: Option<u64>,
    /// Stop after this long.
    pub exit_after: Option<Duration>,
    /// Waits between connection attempts.
    pub reconnect: Backoff,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("--http {0:?} must start with http:// or https://")]
    BadAddress(String),
    #[error("the hub refused the connection: HTTP {status}{}{hint}", if body.is_empty() { String::new() } else { format!(" ({body})") })]
    Refused {
        status: u16,
        body: String,
        hint: &'static str,
    },
    #[error("the hub ended this token's session ({0}): log in again or use another token")]
    CredentialEnded(String),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// Print the feed to `out` until `count` messages or `exit_after` (or forever).
/// `progress` receives connection changes, for a person watching (stderr).
pub async fn watch(
    opts: &WatchOptions,
    out: &mut (dyn Write + Send),
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<(), WatchError> {
    let base = if let Some(rest) = opts.http.strip_prefix("http://") {
        format!("ws://{}", rest.trim_end_matches('/'))
    } else if let Some(rest) = opts.http.strip_prefix("https://") {
        format!("wss://{}", rest.trim_end_matches('/'))
    } else {
        return Err(WatchError::BadAddress(opts.http.clone()));
    };
    let run = feed(opts, &base, out, progress);
    match opts.exit_after {
        Some(d) => tokio::time::timeout(d, run).await.unwrap_or(Ok(())),
        None => run.await,
    }
}

async fn feed(
    opts: &WatchOptions,
    base: &str,
    out: &mut (dyn Write + Send),
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<(), WatchError> {
    let mut last_seq: Option<i64> = None;
    let mut counted = 0u64;
    let mut backoff: Option<Duration> = None;
    let mut was_connected = false;
    loop {
        if let Some(wait) = backoff {
            tokio::time::sleep(opts.reconnect.jittered(wait)).await;
        }
        // The token is not shown in progress lines (they end up in terminals and logs).
        let mut url = format!("{base}/api/ws?token={}", opts.token);
        if let Some(s) = &opts.scope {
            url.push_str(&format!("&scope={s}"));
        }
        if let Some(seq) = last_seq {
            url.push_str(&format!("&since_seq={seq}"));
        }
        let mut stream = match tokio_tungstenite::connect_async(url).await {
            Ok((stream, _)) => stream,
            Err(tungstenite::Error::Http(resp)) if resp.status().is_client_error() => {
                let status = resp.status().as_u16();
                let body = resp
                    .body()
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(b).trim().to_owned())
                    .unwrap_or_default();
                let hint = match status {
                    401 => ": is the token right? (the demo tokens are printed by `hub --demo`)",
                    403 | 400 => ": is --scope within the token's scope?",
                    _ => "",
                };
                return Err(WatchError::Refused { status, body, hint });
            }
            Err(e) => {
                let wait = opts.reconnect.next(backoff);
                backoff = Some(wait);
                progress(&format!(
                    "cannot reach the hub at {} ({e}); retrying in about {} s",
                    opts.http,
                    wait.as_secs().max(1)
                ));
                continue;
            }
        };
        progress(&format!(
            "{} the hub at {}{}",
            if was_connected {
                "reconnected to"
            } else {
                "connected to"
            },
            opts.http,
            match last_seq {
                Some(seq) if was_connected => format!("; catching up after step {seq}"),
                _ => String::new(),
            }
        ));
        was_connected = true;
        let why = loop {
            match stream.next().await {
                Some(Ok(Message::Text(text))) => {
                    let msg: Value = match serde_json::from_str(&text) {
                        Ok(v) => v,
                        Err(_) => {
                            // Not JSON: shown as it came, on one line.
                            writeln!(out, "{}", text.replace('\n', " "))?;
                            out.flush()?;
                            continue;
                        }
                    };
                    let hello = msg.get("type").and_then(Value::as_str) == Some("hello");
                    if let Some(seq) = msg.get("seq").and_then(Value::as_i64) {
                        if !hello || last_seq.is_none() {
                            last_seq = Some(last_seq.map_or(seq, |l| l.max(seq)));
                        }
                    }
                    // As the hub sent it (its field order), when that is one line.
                    if text.contains('\n') {
                        writeln!(out, "{msg}")?;
                    } else {
                        writeln!(out, "{}", text.as_str())?;
                    }
                    out.flush()?;
                    if !hello {
                        counted += 1;
                        if opts.count.is_some_and(|n| counted >= n) {
                            return Ok(());
                        }
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    if code == 4401 {
                        return Err(WatchError::CredentialEnded(reason));
                    }
                    break format!("the hub closed the connection: {code} {reason}");
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => break format!("connection lost: {e}"),
                None => break "connection closed".to_owned(),
            }
        };
        let wait = opts.reconnect.next(None);
        backoff = Some(wait);
        progress(&format!(
            "{why}; reconnecting in about {} s",
            wait.as_secs().max(1)
        ));
    }
}
