//! The Twilio wire layer: what goes to Twilio and what Twilio posts back, nothing more.
//!
//! - [`Client`] ([`client`]): send an SMS, place a call — form-encoded POSTs to
//!   `{api_base}/2010-04-01/Accounts/{AccountSid}/Messages.json` and `Calls.json` with HTTP
//!   Basic auth; Twilio's JSON answer becomes [`Sent`] or a [`TwilioError`] that says whether
//!   a retry can help ([`TwilioError::retryable`]).
//! - [`signature`]: `X-Twilio-Signature` (HMAC-SHA1 over the URL and the sorted POST
//!   parameters): [`signature::compute`] and [`signature::verify`] (constant time).
//! - [`twiml`]: voice TwiML built with every text escaped: the keypad menu and a plain
//!   "say, then hang up".
//! - [`callbacks`]: typed views of what Twilio posts to the hub (status callbacks, keypad
//!   digits, incoming SMS), parsed from the form body *after* the signature was verified.
//!
//! Why a small client of our own rather than a crate: the `twilio` crate hard-codes the
//! `api.twilio.com` host (no test server possible) and `twilio-rs` 0.1.1 sends no parameters;
//! the two endpoints we need are one form POST each (ARCHITECTURE.md, "Decisions").
//!
//! The module does no retries, keeps no state and knows no alarms: delivery rows, backoff and
//! escalation are the notifier's. Privacy: nothing here logs, and errors never carry a phone
//! number or the auth token (Twilio's own error messages are passed through
//! [`redact_numbers`]).

pub mod callbacks;
pub mod client;
pub mod signature;
pub mod twiml;

use serde::{Deserialize, Serialize};

pub use client::{CallContent, Client, Sent, TwilioError};

/// The `[twilio]` settings section. Absent (`Settings::twilio == None`) = Twilio is off.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TwilioSettings {
    /// Where the REST API lives. Only tests (the local fake) change it; the same code talks
    /// to `https://api.twilio.com` unchanged.
    #[serde(default = "default_api_base")]
    pub api_base: String,
    /// `AC…`: the account the hub sends as; the user name of Basic auth and part of every path.
    pub account_sid: String,
    /// The account's auth token: the Basic auth password and the key Twilio signs callbacks
    /// with. Set it through `HUB_TWILIO__AUTH_TOKEN`, not in a file others can read.
    pub auth_token: AuthToken,
    /// The Twilio number SMS are sent from (E.164, `+8613…`); replies to it come back to the
    /// incoming-SMS webhook.
    pub from_sms: String,
    /// The Twilio number calls are placed from (E.164); may be the same as `from_sms`.
    pub from_voice: String,
    /// The hub's externally reachable base URL (`https://anxin.example.org`), as Twilio sees
    /// it: callback URLs are built from it, and signatures are computed over those URLs, so it
    /// must be exactly what a proxy in front of the hub receives.
    pub public_base_url: String,
    /// Whole-request timeout for one REST call, seconds: a call that takes longer is
    /// [`TwilioError::Timeout`].
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// How long a placed call rings before Twilio gives up (`Timeout` of `Calls.json`; Twilio
    /// reports `no-answer`), seconds.
    #[serde(default = "default_ring_secs")]
    pub ring_secs: u32,
}

fn default_api_base() -> String {
    "https://api.twilio.com".into()
}
fn default_timeout_secs() -> u64 {
    10
}
fn default_ring_secs() -> u32 {
    30
}

impl TwilioSettings {
    /// Settings for `account_sid`/`auth_token` with every other field at its default and
    /// placeholder numbers (tests and examples; real numbers come from the config file).
    pub fn new(account_sid: &str, auth_token: &str, public_base_url: &str) -> TwilioSettings {
        TwilioSettings {
            api_base: default_api_base(),
            account_sid: account_sid.into(),
            auth_token: AuthToken::new(auth_token),
            from_sms: "+15005550006".into(),
            from_voice: "+15005550006".into(),
            public_base_url: public_base_url.into(),
            timeout_secs: default_timeout_secs(),
            ring_secs: default_ring_secs(),
        }
    }

    /// The public URL of one of the hub's own paths (`/twilio/status?d=42`), for callback
    /// parameters and for verifying the signature of what arrives there.
    pub fn public_url(&self, path_and_query: &str) -> String {
        format!(
            "{}/{}",
            self.public_base_url.trim_end_matches('/'),
            path_and_query.trim_start_matches('/')
        )
    }
}

/// A secret that `Debug` never prints, so settings can be printed with `{:?}` safely.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AuthToken(String);

impl AuthToken {
    pub fn new(token: &str) -> AuthToken {
        AuthToken(token.into())
    }
    /// The token itself: for Basic auth and signatures only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthToken(<redacted>)")
    }
}

/// An E.164 number: `+`, then 8 to 15 digits, the first not 0.
pub fn is_e164(number: &str) -> bool {
    let Some(digits) = number.strip_prefix('+') else {
        return false;
    };
    (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// `text` with every run of 6 or more digits (optionally after `+`, spaces and dashes
/// inside) replaced by `<number>`: Twilio's error messages quote the number they refused
/// ("The 'To' number +86138… is not a valid phone number"), and errors end up in logs.
pub fn redact_numbers(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let start = i;
        let mut j = i;
        if chars[j] == '+' {
            j += 1;
        }
        let mut digits = 0;
        let mut end = j;
        while j < chars.len() {
            if chars[j].is_ascii_digit() {
                digits += 1;
                j += 1;
                end = j;
            } else if (chars[j] == ' ' || chars[j] == '-')
                && digits > 0
                && chars.get(j + 1).is_some_and(|c| c.is_ascii_digit())
            {
                j += 1;
            } else {
                break;
            }
        }
        if digits >= 6 {
            out.push_str("<number>");
            i = end;
        } else {
            out.push(chars[start]);
            i = start + 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_defaults_and_redacted_debug() {
        let s: TwilioSettings = toml::from_str(
            r#"
            account_sid = "AC123"
            auth_token = "very-secret"
            from_sms = "+8613800000000"
            from_voice = "+8613800000001"
            public_base_url = "https://hub.example.org/"
            "#,
        )
        .expect("parses");
        assert_eq!(s.api_base, "https://api.twilio.com");
        assert_eq!(s.timeout_secs, 10);
        assert_eq!(s.ring_secs, 30);
        assert_eq!(s.auth_token.expose(), "very-secret");
        let debug = format!("{s:?}");
        assert!(!debug.contains("very-secret"), "{debug}");
        assert_eq!(
            s.public_url("/twilio/status?d=1"),
            "https://hub.example.org/twilio/status?d=1"
        );
    }

    #[test]
    fn e164() {
        for ok in ["+8613800138000", "+15005550006", "+12345678"] {
            assert!(is_e164(ok), "{ok}");
        }
        for bad in [
            "8613800138000",
            "+0123456789",
            "+1234567",
            "+1234567890123456",
            "+86 138",
            "",
        ] {
            assert!(!is_e164(bad), "{bad}");
        }
    }

    #[test]
    fn numbers_are_redacted_from_provider_messages() {
        let cases = [
            (
                "The 'To' number +8613800138000 is not a valid phone number.",
                "The 'To' number <number> is not a valid phone number.",
            ),
            ("call 138 0013 8000 now", "call <number> now"),
            ("+1 415-867-5309", "<number>"),
            ("error 21211 at 12:30", "error 21211 at 12:30"),
            ("Too Many Requests", "Too Many Requests"),
            ("号码+8613800138000无效", "号码<number>无效"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_numbers(input), want, "{input}");
        }
    }
}
