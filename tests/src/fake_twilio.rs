//! A local Twilio-compatible server for end-to-end tests (issue 6, item 8).
//!
//! [`FakeTwilio::start`] listens on `127.0.0.1:0` and speaks the part of Twilio's REST API
//! the hub uses: form POSTs to `/2010-04-01/Accounts/{sid}/Messages.json` and `Calls.json`
//! with HTTP Basic auth (`401` with Twilio's JSON otherwise), Twilio's checks of the
//! parameters the hub sends (`400` with Twilio's error codes: 21211 for a number that is not
//! E.164, ...), and Twilio-shaped JSON answers (`201`, a unique `SM…`/`CA…` sid, `queued`).
//! Every request is recorded ([`FakeTwilio::requests`], [`FakeTwilio::messages`],
//! [`FakeTwilio::calls`], [`FakeTwilio::wait_for_messages`]).
//!
//! Failures are scripted per endpoint ([`FakeTwilio::script`]): the next requests answer
//! 500, 429 with `Retry-After`, a 4xx, or hang, in order; after the script, requests succeed.
//!
//! It also plays Twilio's side of the callbacks, signed with `X-Twilio-Signature` exactly as
//! Twilio does (`hub::twilio::signature::compute` with the auth token): status callbacks
//! ([`FakeTwilio::status_callback`]), the keypad ([`FakeTwilio::press`] posts `Digits` to the
//! `<Gather action>` of the TwiML the call is running and returns the hub's answer, which the
//! call then runs), and incoming SMS ([`FakeTwilio::incoming_sms`]). The same callbacks with a
//! bad, missing or misdirected signature come from [`FakeTwilio::with_signing`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use hub::twilio::{signature, TwilioSettings};
use serde_json::{json, Value};

/// Which REST endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `Messages.json` (SMS).
    Messages,
    /// `Calls.json`.
    Calls,
}

/// A scripted answer in place of success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// `500` with Twilio's error JSON (code 20500).
    ServerError,
    /// `429` (code 20429), with `Retry-After: <secs>` if given.
    RateLimited { retry_after_secs: Option<u64> },
    /// Hold the request this long, then answer `500`: longer than the client's timeout, it
    /// is a timeout for the client. Nothing is sent or placed.
    Hang(Duration),
    /// Any status with a Twilio error code, e.g. `400`, 21610 ("unsubscribed recipient").
    Reject {
        status: u16,
        code: u32,
        message: String,
    },
}

/// One request the fake received, whatever it answered.
#[derive(Debug, Clone)]
pub struct Request {
    pub endpoint: Endpoint,
    /// The decoded form parameters, in the order sent (repeated names kept).
    pub params: Vec<(String, String)>,
    /// When it arrived.
    pub at: Instant,
    /// The HTTP status the fake answered (for a hang: the status after it).
    pub status: u16,
    /// The sid of the message or call created; None if the request was refused.
    pub sid: Option<String>,
}

impl Request {
    /// The first value of `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order (`StatusCallbackEvent` repeats).
    pub fn params_named(&self, name: &str) -> Vec<&str> {
        self.params
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn sid(&self) -> &str {
        self.sid.as_deref().unwrap_or("")
    }
}

/// How a callback is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// As Twilio signs: the account's auth token over the URL and the parameters.
    Valid,
    /// With another key (a forger who does not know the auth token).
    Forged,
    /// No `X-Twilio-Signature` header at all.
    Missing,
    /// A genuine signature of the same parameters, but for another URL: a signed request
    /// replayed to another endpoint.
    Replayed,
}

/// What the hub answered to a callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackReply {
    pub status: u16,
    /// TwiML for a `<Gather>` action or a call's `Url`; usually empty or `<Response/>` for
    /// status callbacks.
    pub body: String,
}

/// A callback the fake sent (for debugging and assertions).
#[derive(Debug, Clone)]
pub struct SentCallback {
    pub url: String,
    pub params: Vec<(String, String)>,
    /// The `X-Twilio-Signature` header sent, if any.
    pub signature: Option<String>,
    pub reply: CallbackReply,
}

/// The local Twilio. Stops when dropped.
pub struct FakeTwilio {
    addr: SocketAddr,
    shared: Arc<Shared>,
    http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

struct Shared {
    account_sid: String,
    auth_token: String,
    state: Mutex<FakeState>,
    /// Woken on every recorded request (`wait_for_*`).
    changed: tokio::sync::Notify,
}

#[derive(Default)]
struct FakeState {
    requests: Vec<Request>,
    scripts: HashMap<Endpoint, VecDeque<Failure>>,
    /// Per call sid: what the call is running now and its callback counter.
    calls: HashMap<String, CallState>,
    callbacks: Vec<SentCallback>,
}

#[derive(Default, Clone)]
struct CallState {
    /// The TwiML the call runs now: the `Twiml` it was placed with, what its `Url` answered,
    /// or what the last `<Gather>` action answered.
    twiml: Option<String>,
    /// `SequenceNumber` of the next status callback.
    sequence: u32,
}

impl Drop for FakeTwilio {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeTwilio {
    /// Listen on `127.0.0.1:0` for account `account_sid` with `auth_token`.
    pub async fn start(account_sid: &str, auth_token: &str) -> FakeTwilio {
        let shared = Arc::new(Shared {
            account_sid: account_sid.to_owned(),
            auth_token: auth_token.to_owned(),
            state: Mutex::new(FakeState::default()),
            changed: tokio::sync::Notify::new(),
        });
        let app = Router::new()
            .route("/2010-04-01/Accounts/{sid}/{resource}", post(create))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake Twilio");
        let addr = listener.local_addr().expect("local addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        FakeTwilio {
            addr,
            shared,
            http,
            server,
        }
    }

    /// `http://127.0.0.1:<port>`: the `api_base` for the hub.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn account_sid(&self) -> &str {
        &self.shared.account_sid
    }

    pub fn auth_token(&self) -> &str {
        &self.shared.auth_token
    }

    /// Settings pointing the hub at this fake: its account, `api_base`, callbacks built on
    /// `public_base_url` (the hub's HTTP address in a test), a 2 s timeout.
    /// Settings for a test hub whose SMS and calls come here: the hub's HTTP port is
    /// reserved first, since callback URLs (and their signatures) are built from its
    /// public address. `more` changes anything else (kept across restarts).
    pub fn hub_tweak(
        &self,
        more: impl Fn(&mut hub::Settings) + Send + Sync + 'static,
    ) -> crate::Tweak {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let settings = self.settings(&format!("http://127.0.0.1:{port}"));
        Arc::new(move |s: &mut hub::Settings| {
            s.http.listen = format!("127.0.0.1:{port}").parse().expect("addr");
            s.twilio = Some(settings.clone());
            more(s);
        })
    }

    pub fn settings(&self, public_base_url: &str) -> TwilioSettings {
        TwilioSettings {
            api_base: self.base_url(),
            timeout_secs: 2,
            ..TwilioSettings::new(self.account_sid(), self.auth_token(), public_base_url)
        }
    }

    /// Answer the next requests to `endpoint` with `failures`, in order (after any already
    /// scripted); then succeed again.
    pub fn script(&self, endpoint: Endpoint, failures: impl IntoIterator<Item = Failure>) {
        self.state()
            .scripts
            .entry(endpoint)
            .or_default()
            .extend(failures);
    }

    /// Every request received, in order, including refused ones.
    pub fn requests(&self) -> Vec<Request> {
        self.state().requests.clone()
    }

    /// The SMS Twilio would have sent (accepted `Messages.json` requests), in order.
    pub fn messages(&self) -> Vec<Request> {
        self.accepted(Endpoint::Messages)
    }

    /// The calls Twilio would have placed, in order.
    pub fn calls(&self) -> Vec<Request> {
        self.accepted(Endpoint::Calls)
    }

    /// The callbacks sent so far, in order.
    pub fn callbacks(&self) -> Vec<SentCallback> {
        self.state().callbacks.clone()
    }

    /// Wait until at least `n` SMS were accepted; panics after `timeout`.
    pub async fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<Request> {
        self.wait_for(Endpoint::Messages, n, timeout).await
    }

    /// Wait until at least `n` calls were accepted; panics after `timeout`.
    pub async fn wait_for_calls(&self, n: usize, timeout: Duration) -> Vec<Request> {
        self.wait_for(Endpoint::Calls, n, timeout).await
    }

    /// Callbacks signed as `signing` says.
    pub fn with_signing(&self, signing: Signing) -> Callbacks<'_> {
        Callbacks {
            fake: self,
            signing,
        }
    }

    /// A signed status callback for the message or call `sid` to its `StatusCallback`:
    /// `delivered`, `undelivered`, `failed` (SMS); `completed`, `no-answer`, `busy`,
    /// `failed` (calls).
    pub async fn status_callback(&self, sid: &str, status: &str) -> CallbackReply {
        self.with_signing(Signing::Valid)
            .status_callback(sid, status)
            .await
    }

    /// The same with extra parameters (`AnsweredBy`, `ErrorCode`, ...) that replace the
    /// defaults of the same name.
    pub async fn status_callback_with(
        &self,
        sid: &str,
        status: &str,
        extra: &[(&str, &str)],
    ) -> CallbackReply {
        self.with_signing(Signing::Valid)
            .status_callback_with(sid, status, extra)
            .await
    }

    /// The call picks up: the TwiML it runs (its `Twiml`, or what its `Url` answers to a
    /// signed POST).
    pub async fn answer(&self, call_sid: &str) -> String {
        self.with_signing(Signing::Valid).answer(call_sid).await
    }

    /// Press `digits` on the call: a signed POST to the `<Gather action>` of the TwiML it runs.
    /// Returns the hub's answer, which the call runs from then on.
    pub async fn press(&self, call_sid: &str, digits: &str) -> CallbackReply {
        self.with_signing(Signing::Valid)
            .press(call_sid, digits)
            .await
    }

    /// Let the `<Gather>` time out: a signed POST without `Digits` to the `<Redirect>` that
    /// follows it.
    pub async fn no_key(&self, call_sid: &str) -> CallbackReply {
        self.with_signing(Signing::Valid).no_key(call_sid).await
    }

    /// An SMS from `from` to the hub's number `to`, delivered to `webhook_url` (the number's
    /// "a message comes in" webhook), signed.
    pub async fn incoming_sms(
        &self,
        from: &str,
        to: &str,
        body: &str,
        webhook_url: &str,
    ) -> CallbackReply {
        self.with_signing(Signing::Valid)
            .incoming_sms(from, to, body, webhook_url)
            .await
    }

    fn state(&self) -> MutexGuard<'_, FakeState> {
        self.shared.state.lock().expect("fake Twilio state")
    }

    fn accepted(&self, endpoint: Endpoint) -> Vec<Request> {
        self.state()
            .requests
            .iter()
            .filter(|r| r.endpoint == endpoint && r.sid.is_some())
            .cloned()
            .collect()
    }

    async fn wait_for(&self, endpoint: Endpoint, n: usize, timeout: Duration) -> Vec<Request> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let got = self.accepted(endpoint);
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!(
                    "fake Twilio: waited {timeout:?} for {n} accepted {endpoint:?} requests, got {}",
                    got.len()
                );
            }
        }
    }

    /// The accepted request that created `sid`.
    fn created(&self, sid: &str) -> Request {
        self.state()
            .requests
            .iter()
            .find(|r| r.sid.as_deref() == Some(sid))
            .cloned()
            .unwrap_or_else(|| panic!("fake Twilio: no message or call {sid}"))
    }
}

/// Twilio's side of the callbacks, with a chosen [`Signing`].
pub struct Callbacks<'a> {
    fake: &'a FakeTwilio,
    signing: Signing,
}

impl Callbacks<'_> {
    /// See [`FakeTwilio::status_callback`].
    pub async fn status_callback(&self, sid: &str, status: &str) -> CallbackReply {
        self.status_callback_with(sid, status, &[]).await
    }

    /// See [`FakeTwilio::status_callback_with`].
    pub async fn status_callback_with(
        &self,
        sid: &str,
        status: &str,
        extra: &[(&str, &str)],
    ) -> CallbackReply {
        let created = self.fake.created(sid);
        let url = created
            .param("StatusCallback")
            .unwrap_or_else(|| panic!("fake Twilio: {sid} was sent without a StatusCallback"))
            .to_owned();
        let account = self.fake.account_sid().to_owned();
        let to = created.param("To").unwrap_or_default().to_owned();
        let from = created.param("From").unwrap_or_default().to_owned();
        let mut params: Vec<(String, String)> = match created.endpoint {
            Endpoint::Messages => {
                let mut p = pairs(&[
                    ("AccountSid", &account),
                    ("ApiVersion", "2010-04-01"),
                    ("From", &from),
                    ("MessageSid", sid),
                    ("MessageStatus", status),
                    ("SmsSid", sid),
                    ("SmsStatus", status),
                    ("To", &to),
                ]);
                // Twilio names the reason of a failure.
                match status {
                    "undelivered" => p.push(("ErrorCode".into(), "30003".into())),
                    "failed" => p.push(("ErrorCode".into(), "30008".into())),
                    _ => {}
                }
                p
            }
            Endpoint::Calls => {
                let sequence = {
                    let mut state = self.fake.state();
                    let call = state.calls.entry(sid.to_owned()).or_default();
                    call.sequence += 1;
                    call.sequence - 1
                };
                let mut p = pairs(&[
                    ("AccountSid", &account),
                    ("ApiVersion", "2010-04-01"),
                    ("CallSid", sid),
                    ("CallStatus", status),
                    ("CallbackSource", "call-progress-events"),
                    ("Called", &to),
                    ("Caller", &from),
                    ("Direction", "outbound-api"),
                    ("From", &from),
                    ("SequenceNumber", &sequence.to_string()),
                    ("To", &to),
                ]);
                if status == "completed" {
                    p.push(("CallDuration".into(), "15".into()));
                }
                p
            }
        };
        for (name, value) in extra {
            params.retain(|(k, _)| k != name);
            params.push(((*name).to_owned(), (*value).to_owned()));
        }
        self.post(&url, params).await
    }

    /// See [`FakeTwilio::answer`].
    pub async fn answer(&self, call_sid: &str) -> String {
        let created = self.fake.created(call_sid);
        if let Some(twiml) = created.param("Twiml") {
            let twiml = twiml.to_owned();
            self.set_twiml(call_sid, &twiml);
            return twiml;
        }
        let url = created
            .param("Url")
            .unwrap_or_else(|| panic!("fake Twilio: call {call_sid} has neither Twiml nor Url"))
            .to_owned();
        let reply = self.post(&url, self.call_params(&created, &[])).await;
        assert_eq!(
            reply.status, 200,
            "fake Twilio: the call's Url answered {reply:?}"
        );
        self.follow(call_sid, &reply);
        reply.body
    }

    /// See [`FakeTwilio::press`].
    pub async fn press(&self, call_sid: &str, digits: &str) -> CallbackReply {
        let twiml = self.current_twiml(call_sid).await;
        let action = gather_action(&twiml).unwrap_or_else(|| {
            panic!("fake Twilio: call {call_sid} runs no <Gather action=…>: {twiml}")
        });
        let created = self.fake.created(call_sid);
        let params = self.call_params(&created, &[("Digits", digits), ("FinishedOnKey", "")]);
        let reply = self.post(&action, params).await;
        self.follow(call_sid, &reply);
        reply
    }

    /// See [`FakeTwilio::no_key`].
    pub async fn no_key(&self, call_sid: &str) -> CallbackReply {
        let twiml = self.current_twiml(call_sid).await;
        let target = redirect_target(&twiml).unwrap_or_else(|| {
            panic!("fake Twilio: call {call_sid} has no <Redirect> after its menu: {twiml}")
        });
        let created = self.fake.created(call_sid);
        let reply = self.post(&target, self.call_params(&created, &[])).await;
        self.follow(call_sid, &reply);
        reply
    }

    /// See [`FakeTwilio::incoming_sms`].
    pub async fn incoming_sms(
        &self,
        from: &str,
        to: &str,
        body: &str,
        webhook_url: &str,
    ) -> CallbackReply {
        let sid = new_sid("SM");
        let account = self.fake.account_sid().to_owned();
        let params = pairs(&[
            ("AccountSid", &account),
            ("ApiVersion", "2010-04-01"),
            ("Body", body),
            ("From", from),
            ("MessageSid", &sid),
            ("NumMedia", "0"),
            ("NumSegments", "1"),
            ("SmsMessageSid", &sid),
            ("SmsSid", &sid),
            ("SmsStatus", "received"),
            ("To", to),
        ]);
        self.post(webhook_url, params).await
    }

    /// POST `params` to `url` as Twilio would, signed as `self.signing` says.
    pub async fn post(&self, url: &str, params: Vec<(String, String)>) -> CallbackReply {
        let token = self.fake.auth_token();
        let sig = match self.signing {
            Signing::Valid => Some(signature::compute(token, url, &params)),
            Signing::Forged => Some(signature::compute(&format!("forged-{token}"), url, &params)),
            Signing::Missing => None,
            Signing::Replayed => Some(signature::compute(
                token,
                &format!("{}/elsewhere", url.trim_end_matches('/')),
                &params,
            )),
        };
        let mut request = self
            .fake
            .http
            .post(url)
            .header(header::USER_AGENT, "TwilioProxy/1.1 (anxin fake)")
            .form(&params);
        if let Some(s) = &sig {
            request = request.header(signature::HEADER, s);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("fake Twilio: callback to {url} failed: {e}"));
        let reply = CallbackReply {
            status: response.status().as_u16(),
            body: response.text().await.unwrap_or_default(),
        };
        self.fake.state().callbacks.push(SentCallback {
            url: url.to_owned(),
            params,
            signature: sig,
            reply: reply.clone(),
        });
        reply
    }

    /// The parameters Twilio posts with every request about a call in progress.
    fn call_params(&self, created: &Request, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let account = self.fake.account_sid().to_owned();
        let to = created.param("To").unwrap_or_default();
        let from = created.param("From").unwrap_or_default();
        let mut p = pairs(&[
            ("AccountSid", &account),
            ("ApiVersion", "2010-04-01"),
            ("CallSid", created.sid()),
            ("CallStatus", "in-progress"),
            ("Called", to),
            ("Caller", from),
            ("Direction", "outbound-api"),
            ("From", from),
            ("To", to),
        ]);
        if created.param("MachineDetection").is_some() {
            p.push(("AnsweredBy".into(), "human".into()));
        }
        p.extend(pairs(extra));
        p
    }

    async fn current_twiml(&self, call_sid: &str) -> String {
        let current = self
            .fake
            .state()
            .calls
            .get(call_sid)
            .and_then(|c| c.twiml.clone());
        match current {
            Some(t) => t,
            None => self.answer(call_sid).await,
        }
    }

    /// The call runs what the hub answered, if the request was Twilio's own (a forged one is
    /// someone else's: the real call does not change) and the hub accepted it.
    fn follow(&self, call_sid: &str, reply: &CallbackReply) {
        if self.signing == Signing::Valid && reply.status == 200 {
            self.set_twiml(call_sid, &reply.body);
        }
    }

    fn set_twiml(&self, call_sid: &str, twiml: &str) {
        self.fake
            .state()
            .calls
            .entry(call_sid.to_owned())
            .or_default()
            .twiml = Some(twiml.to_owned());
    }
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// `SM…`/`CA…` and 32 hex digits, like Twilio's sids.
fn new_sid(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// The `action` attribute of the first `<Gather>`, unescaped.
pub fn gather_action(twiml: &str) -> Option<String> {
    let start = twiml.find("<Gather")?;
    let tag_end = start + twiml[start..].find('>')?;
    let tag = &twiml[start..tag_end];
    let value_start = tag.find(" action=\"")? + " action=\"".len();
    let value_len = tag[value_start..].find('"')?;
    Some(unescape(&tag[value_start..value_start + value_len]))
}

/// The URL of the first `<Redirect>`, unescaped.
pub fn redirect_target(twiml: &str) -> Option<String> {
    let start = twiml.find("<Redirect")?;
    let text_start = start + twiml[start..].find('>')? + 1;
    let text_len = twiml[text_start..].find("</Redirect>")?;
    Some(unescape(&twiml[text_start..text_start + text_len]))
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

// ---- the REST side --------------------------------------------------------------------

fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response {
    let body = json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status.as_u16(),
    });
    (status, axum::Json(body)).into_response()
}

/// Whether the Basic credentials are the account's sid and auth token.
fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(encoded) = value.strip_prefix("Basic ") else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let expected = format!("{}:{}", shared.account_sid, shared.auth_token);
    decoded == expected.as_bytes()
}

async fn create(
    State(shared): State<Arc<Shared>>,
    Path((sid, resource)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let endpoint = match resource.as_str() {
        "Messages.json" => Endpoint::Messages,
        "Calls.json" => Endpoint::Calls,
        _ => {
            return twilio_error(
                StatusCode::NOT_FOUND,
                20404,
                "The requested resource was not found",
            )
        }
    };
    let params: Vec<(String, String)> = match serde_urlencoded::from_bytes(&body) {
        Ok(p) => p,
        Err(_) => return twilio_error(StatusCode::BAD_REQUEST, 20001, "Invalid form body"),
    };
    let request = Request {
        endpoint,
        params,
        at: Instant::now(),
        status: 0,
        sid: None,
    };

    if !authorized(&shared, &headers) {
        record(&shared, request, 401, None);
        let mut response = twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"Twilio API\""),
        );
        return response;
    }
    if sid != shared.account_sid {
        record(&shared, request, 404, None);
        return twilio_error(
            StatusCode::NOT_FOUND,
            20404,
            "The requested resource was not found",
        );
    }

    let scripted = shared
        .state
        .lock()
        .expect("fake Twilio state")
        .scripts
        .get_mut(&endpoint)
        .and_then(VecDeque::pop_front);
    match scripted {
        Some(Failure::ServerError) => {
            record(&shared, request, 500, None);
            return twilio_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                20500,
                "Internal Server Error",
            );
        }
        Some(Failure::RateLimited { retry_after_secs }) => {
            record(&shared, request, 429, None);
            let mut response =
                twilio_error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests");
            if let Some(s) = retry_after_secs {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from(s));
            }
            return response;
        }
        Some(Failure::Hang(how_long)) => {
            record(&shared, request, 500, None);
            tokio::time::sleep(how_long).await;
            return twilio_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                20500,
                "Internal Server Error",
            );
        }
        Some(Failure::Reject {
            status,
            code,
            message,
        }) => {
            record(&shared, request, status, None);
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            return twilio_error(status, code, &message);
        }
        None => {}
    }

    if let Err((code, message)) = check_params(endpoint, &request) {
        record(&shared, request, 400, None);
        return twilio_error(StatusCode::BAD_REQUEST, code, &message);
    }

    let new = new_sid(match endpoint {
        Endpoint::Messages => "SM",
        Endpoint::Calls => "CA",
    });
    let to = request.param("To").unwrap_or_default().to_owned();
    let from = request.param("From").unwrap_or_default().to_owned();
    let resource_body = match endpoint {
        Endpoint::Messages => json!({
            "account_sid": shared.account_sid,
            "api_version": "2010-04-01",
            "body": request.param("Body"),
            "date_created": now_rfc2822(),
            "direction": "outbound-api",
            "error_code": null,
            "error_message": null,
            "from": from,
            "num_media": "0",
            "num_segments": "1",
            "price": null,
            "sid": new,
            "status": "queued",
            "to": to,
            "uri": format!("/2010-04-01/Accounts/{}/Messages/{new}.json", shared.account_sid),
        }),
        Endpoint::Calls => json!({
            "account_sid": shared.account_sid,
            "answered_by": null,
            "api_version": "2010-04-01",
            "date_created": now_rfc2822(),
            "direction": "outbound-api",
            "from": from,
            "sid": new,
            "status": "queued",
            "to": to,
            "uri": format!("/2010-04-01/Accounts/{}/Calls/{new}.json", shared.account_sid),
        }),
    };
    record(&shared, request, 201, Some(new));
    (StatusCode::CREATED, axum::Json::<Value>(resource_body)).into_response()
}

/// Twilio's checks of the parameters, with its error codes and messages (which quote the
/// number, as Twilio's do).
fn check_params(endpoint: Endpoint, request: &Request) -> Result<(), (u32, String)> {
    let present = |name: &str| request.param(name).is_some_and(|v| !v.is_empty());
    match endpoint {
        Endpoint::Messages => {
            if !present("To") {
                return Err((21604, "A 'To' phone number is required.".into()));
            }
            if !present("From") {
                return Err((21603, "A 'From' phone number is required.".into()));
            }
            if !present("Body") {
                return Err((21602, "Message body is required.".into()));
            }
        }
        Endpoint::Calls => {
            if !present("To") {
                return Err((21201, "No 'To' number is specified".into()));
            }
            if !present("From") {
                return Err((21213, "No 'From' number is specified".into()));
            }
            if !present("Url") && !present("Twiml") {
                return Err((21205, "Url parameter is required.".into()));
            }
        }
    }
    let to = request.param("To").unwrap_or_default();
    if !hub::twilio::is_e164(to) {
        return Err((
            21211,
            format!("The 'To' number {to} is not a valid phone number."),
        ));
    }
    Ok(())
}

fn record(shared: &Shared, mut request: Request, status: u16, sid: Option<String>) {
    request.status = status;
    request.sid = sid;
    shared
        .state
        .lock()
        .expect("fake Twilio state")
        .requests
        .push(request);
    shared.changed.notify_waiters();
}

fn now_rfc2822() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twiml_targets_are_found_and_unescaped() {
        let twiml = hub::twilio::twiml::menu(&hub::twilio::twiml::Menu::alarm(
            hub::twilio::twiml::Language::ZhCn,
            "a <b> & c",
            "http://127.0.0.1:1/g?a=1&b=2",
        ));
        assert_eq!(
            gather_action(&twiml).as_deref(),
            Some("http://127.0.0.1:1/g?a=1&b=2")
        );
        assert_eq!(
            redirect_target(&twiml).as_deref(),
            Some("http://127.0.0.1:1/g?a=1&b=2")
        );
        assert_eq!(gather_action("<Response><Say>x</Say></Response>"), None);
    }
}
