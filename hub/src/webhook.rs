//! The district platform's webhook: every `notified` step of an alarm is posted as JSON
//! to one HTTPS endpoint, signed, with an id the receiver uses to drop repeats.
//!
//! Request: `POST <url>`, `Content-Type: application/json`, headers
//! - `X-Anxin-Delivery: <delivery id>` — the same on every retry of one delivery;
//! - `X-Anxin-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
//!
//! The receiver recomputes the HMAC over the timestamp, a dot and the raw body, compares
//! in constant time, refuses a timestamp more than 5 minutes from its clock (replay),
//! and keeps the delivery ids it saw for at least 10 minutes (retries and replays inside
//! the window). Answer 2xx when stored; 429 (with `Retry-After`) or 5xx to be asked again
//! later; any other 4xx is final. docs/operations.md has a receiver in a few lines.

use std::time::Duration;

use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::delivery::{Channel, ChannelKind, SendError, Sent};
use crate::store::{Delivery, Store};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookSettings {
    /// Where to post, e.g. `https://platform.example.gov/anxin/events`.
    pub url: String,
    /// Shared secret for the signature (at least 16 characters).
    pub secret: String,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    10
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &str, unix_secs: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(unix_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={unix_secs},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// What a receiver does: check the signature header and the timestamp (±`tolerance`).
pub fn verify(secret: &str, header: &str, body: &[u8], now_secs: i64, tolerance: i64) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = Some(v),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    if (now_secs - t).abs() > tolerance {
        return false;
    }
    let want = signature(secret, t, body);
    let want = want.rsplit_once("v1=").map_or("", |(_, v)| v);
    subtle::ConstantTimeEq::ct_eq(want.as_bytes(), v1.as_bytes()).into()
}

pub struct WebhookChannel {
    settings: WebhookSettings,
    http: reqwest::Client,
    store: Store,
}

impl WebhookChannel {
    pub fn new(settings: WebhookSettings, store: Store) -> Result<Self, String> {
        if settings.secret.chars().count() < 16 {
            return Err("[webhook] secret must be at least 16 characters".into());
        }
        if !(settings.url.starts_with("https://") || settings.url.starts_with("http://")) {
            return Err("[webhook] url must be http(s)://…".into());
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.timeout_secs.max(1)))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(WebhookChannel {
            settings,
            http,
            store,
        })
    }

    async fn post(&self, job: &Delivery) -> Result<Sent, SendError> {
        let fail = |retryable: bool, message: String| SendError {
            retryable,
            retry_after: None,
            message,
        };
        // The alarm as it is now and the step that asked for this delivery.
        let alarm = self
            .store
            .alarm(&job.alarm_id)
            .await
            .map_err(|e| fail(true, e.to_string()))?;
        let step = self
            .store
            .timeline(&job.alarm_id)
            .await
            .map_err(|e| fail(true, e.to_string()))?
            .into_iter()
            .find(|s| s.seq == job.step_seq);
        let body = serde_json::to_vec(&serde_json::json!({
            "delivery_id": job.id,
            "step": step,
            "alarm": alarm,
        }))
        .map_err(|e| fail(false, e.to_string()))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let resp = self
            .http
            .post(&self.settings.url)
            .header("content-type", "application/json")
            .header("x-anxin-delivery", &job.id)
            .header(
                "x-anxin-signature",
                signature(&self.settings.secret, now, &body),
            )
            .body(body)
            .send()
            .await
            .map_err(|e| fail(true, format!("webhook unreachable: {}", e.without_url())))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(Sent {
                provider_id: None,
                status: Some(status.as_u16().to_string()),
            });
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Err(SendError {
            retryable: status.as_u16() == 429 || status.is_server_error(),
            retry_after,
            message: format!("webhook answered {status}"),
        })
    }
}

impl Channel for WebhookChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Webhook
    }

    fn send<'a>(&'a self, job: &'a Delivery) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(self.post(job))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_with_the_secret_body_and_a_fresh_timestamp() {
        let body = br#"{"delivery_id":"d1"}"#;
        let h = signature("a shared secret!", 1_800_000_000, body);
        assert!(h.starts_with("t=1800000000,v1="), "{h}");
        assert_eq!(h.len(), "t=1800000000,v1=".len() + 64);
        assert!(verify("a shared secret!", &h, body, 1_800_000_100, 300));
        assert!(!verify("another secret!!", &h, body, 1_800_000_100, 300));
        assert!(!verify("a shared secret!", &h, b"{}", 1_800_000_100, 300));
        assert!(
            !verify("a shared secret!", &h, body, 1_800_000_400, 300),
            "replayed after 400 s"
        );
        assert!(!verify(
            "a shared secret!",
            "v1=00",
            body,
            1_800_000_000,
            300
        ));
        // Computed independently: python3 -c 'import hmac, hashlib; print(hmac.new(
        //   b"a shared secret!", b"1800000000." + body, hashlib.sha256).hexdigest())'
        assert_eq!(
            h,
            "t=1800000000,v1=2cdc5a42c6a8bcd7ca61a81bb3b54aa761d53a0c2de14f3cd20f31fd49031cf5"
        );
    }
}
