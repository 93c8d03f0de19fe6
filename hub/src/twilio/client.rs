//! The REST client: one form POST per SMS or call, Twilio's answer classified.
//!
//! What a caller branches on is [`TwilioError::retryable`]: 429 (with its `Retry-After`),
//! 5xx, timeouts and transport failures may succeed later; any other 4xx (a bad number, bad
//! credentials, an unverified trial number) will not. A timed-out request may still have
//! reached Twilio, so a retry after [`TwilioError::Timeout`] can send twice; for alarms a
//! duplicate is the lesser harm. A 2xx without a usable `sid` is [`TwilioError::InvalidResponse`]
//! and *not* retryable: Twilio accepted the request, and a retry would send it again.

use std::time::Duration;

use reqwest::header::{HeaderValue, ACCEPT, RETRY_AFTER, USER_AGENT};
use serde::Deserialize;

use super::{is_e164, redact_numbers, AuthToken, TwilioSettings};

/// The call progress events the hub asks Twilio to report to a call's `StatusCallback`:
/// `answered` (someone or something picked up; with machine detection it carries
/// `AnsweredBy`) and `completed` (the final outcome: `completed`, `busy`, `no-answer`,
/// `failed` or `canceled`). Sent as repeated `StatusCallbackEvent` parameters, as Twilio's
/// helper libraries do.
pub const CALL_STATUS_EVENTS: [&str; 2] = ["answered", "completed"];

/// A Twilio REST client for one account. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct Client {
    /// Pooled HTTPS client with the whole-request timeout of `timeout_secs`.
    http: reqwest::Client,
    /// `{api_base}/2010-04-01/Accounts/{sid}/Messages.json`, built once.
    messages_url: String,
    /// `.../Calls.json`.
    calls_url: String,
    /// Basic auth user.
    account_sid: String,
    /// Basic auth password (never logged: `AuthToken`'s Debug is redacted).
    auth_token: AuthToken,
    /// Sender of SMS.
    from_sms: String,
    /// Caller id of calls.
    from_voice: String,
    /// `Timeout` of a call: seconds it rings before `no-answer`.
    ring_secs: u32,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("messages_url", &self.messages_url)
            .field("calls_url", &self.calls_url)
            .finish_non_exhaustive()
    }
}

/// Twilio accepted the request: the resource's sid (`SM…` for a message, `CA…` for a call;
/// status callbacks name it) and its first status (usually `queued`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub sid: String,
    pub status: String,
}

/// What a call does once answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallContent<'a> {
    /// TwiML inline (`Twiml`; Twilio limits it to 4000 characters), e.g. from
    /// [`super::twiml::menu`].
    Twiml(&'a str),
    /// A URL Twilio fetches the TwiML from with a signed POST (`Url`).
    Url(&'a str),
}

/// Why a request to Twilio did not result in a sent message or placed call. No variant ever
/// holds the auth token or a phone number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TwilioError {
    /// 429: too many requests. Retry after `retry_after` (Twilio's `Retry-After`, seconds)
    /// or, if it sent none, after a backoff of the caller's choosing.
    #[error("Twilio rate limit (429){}", fmt_retry_after(*retry_after))]
    RateLimited { retry_after: Option<Duration> },
    /// 5xx: Twilio failed; retryable.
    #[error("Twilio server error {status}{}: {message}", fmt_code(*code))]
    Server {
        status: u16,
        /// Twilio's error code (<https://www.twilio.com/docs/api/errors>), when it sent one.
        code: Option<u32>,
        /// Twilio's message, phone numbers redacted.
        message: String,
    },
    /// Another 4xx: the request itself is wrong (a bad or unreachable number: 21211, 21614;
    /// bad credentials: 20003; ...). Retrying the same request will not help.
    #[error("Twilio rejected the request with {status}{}: {message}", fmt_code(*code))]
    Rejected {
        status: u16,
        code: Option<u32>,
        message: String,
    },
    /// No complete answer within `timeout_secs`. The request may have reached Twilio.
    #[error("Twilio did not answer in time")]
    Timeout,
    /// Connection refused or reset, DNS, TLS: the request most likely did not reach Twilio.
    #[error("could not reach Twilio: {0}")]
    Transport(String),
    /// An answer Twilio does not give: a 2xx without a sid, a redirect, ...
    #[error("unexpected answer from Twilio ({status}): {detail}")]
    InvalidResponse { status: u16, detail: String },
    /// The settings cannot work (`Client::new`).
    #[error("Twilio settings: {0}")]
    Config(String),
}

fn fmt_retry_after(retry_after: Option<Duration>) -> String {
    retry_after
        .map(|d| format!(", retry after {} s", d.as_secs()))
        .unwrap_or_default()
}

fn fmt_code(code: Option<u32>) -> String {
    code.map(|c| format!(" (code {c})")).unwrap_or_default()
}

impl TwilioError {
    /// Whether the same request may succeed later: rate limits, server errors, timeouts and
    /// transport failures.
    pub fn retryable(&self) -> bool {
        match self {
            TwilioError::RateLimited { .. }
            | TwilioError::Server { .. }
            | TwilioError::Timeout
            | TwilioError::Transport(_) => true,
            TwilioError::Rejected { .. }
            | TwilioError::InvalidResponse { .. }
            | TwilioError::Config(_) => false,
        }
    }

    /// The wait Twilio asked for (429 with `Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            TwilioError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}

impl Client {
    /// A client for the account in `settings`. Checks the settings (URLs parse, numbers are
    /// E.164, sid and token present); makes no request.
    pub fn new(settings: &TwilioSettings) -> Result<Client, TwilioError> {
        let bad = |what: &str| Err(TwilioError::Config(what.to_owned()));
        let base = settings.api_base.trim_end_matches('/');
        match reqwest::Url::parse(base) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => return bad("api_base is not an http(s) URL"),
        }
        match reqwest::Url::parse(&settings.public_base_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => return bad("public_base_url is not an http(s) URL"),
        }
        let sid = settings.account_sid.trim();
        if sid.is_empty() || !sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return bad("account_sid must be the account's AC… sid");
        }
        if settings.auth_token.expose().is_empty() {
            return bad("auth_token is empty");
        }
        if !is_e164(&settings.from_sms) {
            return bad("from_sms is not an E.164 number (+ and 8 to 15 digits)");
        }
        if !is_e164(&settings.from_voice) {
            return bad("from_voice is not an E.164 number (+ and 8 to 15 digits)");
        }
        if settings.timeout_secs == 0 {
            return bad("timeout_secs must be at least 1");
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.timeout_secs))
            .connect_timeout(Duration::from_secs(settings.timeout_secs))
            // Twilio's API does not redirect; never follow one with credentials attached.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| TwilioError::Config(format!("HTTP client: {}", error_chain(&e))))?;
        let account = format!("{base}/2010-04-01/Accounts/{sid}");
        Ok(Client {
            http,
            messages_url: format!("{account}/Messages.json"),
            calls_url: format!("{account}/Calls.json"),
            account_sid: sid.to_owned(),
            auth_token: settings.auth_token.clone(),
            from_sms: settings.from_sms.clone(),
            from_voice: settings.from_voice.clone(),
            ring_secs: settings.ring_secs,
        })
    }

    /// Send `body` to `to` (E.164) from `from_sms`. `status_callback`: where Twilio posts
    /// the message's progress (`sent`, `delivered`, `undelivered`, `failed`).
    pub async fn send_sms(
        &self,
        to: &str,
        body: &str,
        status_callback: Option<&str>,
    ) -> Result<Sent, TwilioError> {
        let mut form = vec![("To", to), ("From", self.from_sms.as_str()), ("Body", body)];
        if let Some(url) = status_callback {
            form.push(("StatusCallback", url));
        }
        self.post(&self.messages_url, &form).await
    }

    /// Call `to` (E.164) from `from_voice`; once answered, Twilio runs `content`. The call
    /// rings `ring_secs` before Twilio gives up (`no-answer`). `status_callback` receives
    /// the [`CALL_STATUS_EVENTS`]. `machine_detection`: ask Twilio to tell a person from
    /// voicemail (`MachineDetection=Enable`; the callbacks then carry `AnsweredBy`), so that
    /// voicemail can count as "not reached".
    pub async fn place_call(
        &self,
        to: &str,
        content: CallContent<'_>,
        status_callback: Option<&str>,
        machine_detection: bool,
    ) -> Result<Sent, TwilioError> {
        let ring = self.ring_secs.to_string();
        let mut form = vec![("To", to), ("From", self.from_voice.as_str())];
        match content {
            CallContent::Twiml(twiml) => form.push(("Twiml", twiml)),
            CallContent::Url(url) => {
                form.push(("Url", url));
                form.push(("Method", "POST"));
            }
        }
        if let Some(url) = status_callback {
            form.push(("StatusCallback", url));
            form.push(("StatusCallbackMethod", "POST"));
            for event in CALL_STATUS_EVENTS {
                form.push(("StatusCallbackEvent", event));
            }
        }
        form.push(("Timeout", &ring));
        if machine_detection {
            form.push(("MachineDetection", "Enable"));
        }
        self.post(&self.calls_url, &form).await
    }

    async fn post(&self, url: &str, form: &[(&str, &str)]) -> Result<Sent, TwilioError> {
        let response = self
            .http
            .post(url)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .header(
                USER_AGENT,
                HeaderValue::from_static(concat!("anxin-hub/", env!("CARGO_PKG_VERSION"))),
            )
            .form(form)
            .send()
            .await
            .map_err(request_error)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.bytes().await.map_err(request_error)?;
        interpret(status, retry_after.as_deref(), &body)
    }
}

/// A failed request: a timeout, or anything else on the way (the URL is left out: it holds
/// only the account sid, but errors should not grow with every path).
fn request_error(e: reqwest::Error) -> TwilioError {
    if e.is_timeout() {
        TwilioError::Timeout
    } else {
        TwilioError::Transport(error_chain(&e.without_url()))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Twilio's answer to a create request.
#[derive(Deserialize)]
struct Created {
    sid: Option<String>,
    status: Option<String>,
}

/// Twilio's error body: `{"code": 21211, "message": "...", "more_info": "...", "status": 400}`.
#[derive(Deserialize)]
struct ErrorBody {
    code: Option<u32>,
    message: Option<String>,
}

/// Classify Twilio's answer (status, `Retry-After` header, body). Pure, so every case is a
/// unit test.
fn interpret(status: u16, retry_after: Option<&str>, body: &[u8]) -> Result<Sent, TwilioError> {
    match status {
        200..=299 => match serde_json::from_slice::<Created>(body) {
            Ok(Created {
                sid: Some(sid),
                status,
            }) if !sid.is_empty() => Ok(Sent {
                sid,
                status: status.unwrap_or_default(),
            }),
            Ok(_) => Err(TwilioError::InvalidResponse {
                status,
                detail: "no sid in the answer".into(),
            }),
            Err(e) => Err(TwilioError::InvalidResponse {
                status,
                detail: format!("answer is not Twilio's JSON: {e}"),
            }),
        },
        429 => Err(TwilioError::RateLimited {
            retry_after: retry_after
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
        }),
        400..=499 => {
            let (code, message) = error_body(body);
            Err(TwilioError::Rejected {
                status,
                code,
                message,
            })
        }
        500..=599 => {
            let (code, message) = error_body(body);
            Err(TwilioError::Server {
                status,
                code,
                message,
            })
        }
        _ => Err(TwilioError::InvalidResponse {
            status,
            detail: "unexpected HTTP status".into(),
        }),
    }
}

/// Code and (redacted, bounded) message from an error body that may not be Twilio's JSON
/// (a proxy's HTML page, an empty body).
fn error_body(body: &[u8]) -> (Option<u32>, String) {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { code, message }) => (code, redact_numbers(&message.unwrap_or_default())),
        Err(_) => {
            let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
            (None, redact_numbers(text.trim()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified() {
        let ok = interpret(
            201,
            None,
            br#"{"sid":"SM123","status":"queued","to":"+8613800138000"}"#,
        );
        assert_eq!(
            ok,
            Ok(Sent {
                sid: "SM123".into(),
                status: "queued".into()
            })
        );

        let limited = interpret(
            429,
            Some(" 7 "),
            br#"{"code":20429,"message":"Too Many Requests"}"#,
        );
        assert_eq!(
            limited,
            Err(TwilioError::RateLimited {
                retry_after: Some(Duration::from_secs(7))
            })
        );
        assert_eq!(
            limited.expect_err("429").to_string(),
            "Twilio rate limit (429), retry after 7 s"
        );
        // A Retry-After that is an HTTP date (or garbage) is not honoured: the caller backs off.
        assert_eq!(
            interpret(429, Some("Wed, 21 Oct 2015 07:28:00 GMT"), b""),
            Err(TwilioError::RateLimited { retry_after: None })
        );
        assert_eq!(
            interpret(429, None, b""),
            Err(TwilioError::RateLimited { retry_after: None })
        );

        let rejected = interpret(
            400,
            None,
            br#"{"code":21211,"message":"The 'To' number +8613800138000 is not a valid phone number.","more_info":"https://www.twilio.com/docs/errors/21211","status":400}"#,
        );
        let Err(e) = rejected else {
            panic!("{rejected:?}")
        };
        assert_eq!(
            e,
            TwilioError::Rejected {
                status: 400,
                code: Some(21211),
                message: "The 'To' number <number> is not a valid phone number.".into()
            }
        );
        assert!(!e.retryable());
        assert!(!e.to_string().contains("8613800138000"), "{e}");
        assert!(e.to_string().contains("code 21211"), "{e}");

        let unauthorized = interpret(401, None, br#"{"code":20003,"message":"Authenticate"}"#);
        assert!(matches!(
            unauthorized,
            Err(TwilioError::Rejected {
                status: 401,
                code: Some(20003),
                ..
            })
        ));

        let server = interpret(503, None, b"<html>Service Unavailable</html>");
        assert_eq!(
            server,
            Err(TwilioError::Server {
                status: 503,
                code: None,
                message: "<html>Service Unavailable</html>".into()
            })
        );

        assert!(matches!(
            interpret(200, None, br#"{"status":"queued"}"#),
            Err(TwilioError::InvalidResponse { status: 200, .. })
        ));
        assert!(matches!(
            interpret(201, None, b"not json"),
            Err(TwilioError::InvalidResponse { status: 201, .. })
        ));
        assert!(matches!(
            interpret(302, None, b""),
            Err(TwilioError::InvalidResponse { status: 302, .. })
        ));
    }

    #[test]
    fn what_is_retryable() {
        let retryable = [
            TwilioError::RateLimited { retry_after: None },
            TwilioError::Server {
                status: 500,
                code: None,
                message: String::new(),
            },
            TwilioError::Timeout,
            TwilioError::Transport("connection refused".into()),
        ];
        for e in retryable {
            assert!(e.retryable(), "{e:?}");
        }
        let permanent = [
            TwilioError::Rejected {
                status: 400,
                code: Some(21211),
                message: String::new(),
            },
            TwilioError::InvalidResponse {
                status: 200,
                detail: String::new(),
            },
            TwilioError::Config(String::new()),
        ];
        for e in permanent {
            assert!(!e.retryable(), "{e:?}");
        }
        assert_eq!(
            TwilioError::RateLimited {
                retry_after: Some(Duration::from_secs(3))
            }
            .retry_after(),
            Some(Duration::from_secs(3))
        );
        assert_eq!(TwilioError::Timeout.retry_after(), None);
    }

    #[test]
    fn settings_are_checked() {
        let good = TwilioSettings::new("AC123", "token", "https://hub.example.org");
        assert!(Client::new(&good).is_ok());
        type Breakage = (&'static str, fn(&mut TwilioSettings));
        let cases: [Breakage; 7] = [
            ("api_base", |s| s.api_base = "ftp://x".into()),
            ("public_base_url", |s| {
                s.public_base_url = "hub.example.org".into()
            }),
            ("account_sid", |s| s.account_sid = "AC/../x".into()),
            ("auth_token", |s| s.auth_token = AuthToken::new("")),
            ("from_sms", |s| s.from_sms = "13800138000".into()),
            ("from_voice", |s| s.from_voice = "Anxin".into()),
            ("timeout_secs", |s| s.timeout_secs = 0),
        ];
        for (field, break_it) in cases {
            let mut s = good.clone();
            break_it(&mut s);
            match Client::new(&s) {
                Err(TwilioError::Config(m)) => assert!(m.contains(field), "{field}: {m}"),
                other => panic!("{field}: {other:?}"),
            }
        }
        let client = Client::new(&TwilioSettings {
            api_base: "http://127.0.0.1:9/".into(),
            ..good
        })
        .expect("client");
        assert_eq!(
            client.messages_url,
            "http://127.0.0.1:9/2010-04-01/Accounts/AC123/Messages.json"
        );
        assert!(!format!("{client:?}").contains("token"));
    }
}
