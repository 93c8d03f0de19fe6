//! The Twilio wire layer (`hub::twilio`) against the local fake Twilio
//! (`anxin_tests::fake_twilio`): what the client posts, how it reads failures, and the
//! signatures on the callbacks the fake drives.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anxin_tests::fake_twilio::{
    CallbackReply, Endpoint, Failure, FakeTwilio, SentCallback, Signing,
};
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::HeaderMap;
use hub::twilio::callbacks::{
    self, AnsweredBy, CallStatus, Gather, IncomingSms, MessageStatus, StatusCallback,
};
use hub::twilio::twiml::{self, Language, Menu};
use hub::twilio::{signature, AuthToken, CallContent, Client, Sent, TwilioError};

const SID: &str = "AC00000000000000000000000000000001";
const TOKEN: &str = "fake-auth-token";
const ELDER_PHONE: &str = "+8613800138000";

async fn fake_and_client() -> (FakeTwilio, Client) {
    let fake = FakeTwilio::start(SID, TOKEN).await;
    let client = Client::new(&fake.settings("http://127.0.0.1:9")).expect("client");
    (fake, client)
}

#[tokio::test]
async fn an_sms_is_posted_with_its_parameters_and_basic_auth() {
    let (fake, client) = fake_and_client().await;
    let sent = client
        .send_sms(
            ELDER_PHONE,
            "安心：张阿姨家 SOS & <跌倒>，回复1确认",
            Some("http://127.0.0.1:9/twilio/status?d=42&a=1"),
        )
        .await
        .expect("sent");
    assert!(
        sent.sid.starts_with("SM") && sent.sid.len() == 34,
        "{sent:?}"
    );
    assert_eq!(sent.status, "queued");

    let messages = fake.messages();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m.sid(), sent.sid);
    assert_eq!(
        m.params,
        vec![
            ("To".to_string(), ELDER_PHONE.to_string()),
            ("From".to_string(), "+15005550006".to_string()),
            (
                "Body".to_string(),
                "安心：张阿姨家 SOS & <跌倒>，回复1确认".to_string()
            ),
            (
                "StatusCallback".to_string(),
                "http://127.0.0.1:9/twilio/status?d=42&a=1".to_string()
            ),
        ]
    );

    // No callback asked for: no StatusCallback parameter. Every message gets its own sid.
    let second = client.send_sms(ELDER_PHONE, "2", None).await.expect("sent");
    assert_ne!(second.sid, sent.sid);
    assert_eq!(fake.messages()[1].param("StatusCallback"), None);

    // The fake accepted those because the credentials were right: a wrong token is refused
    // with Twilio's 401, which is not worth retrying, and nothing is sent.
    let mut wrong = fake.settings("http://127.0.0.1:9");
    wrong.auth_token = AuthToken::new("not-the-token");
    let refused = Client::new(&wrong)
        .expect("client")
        .send_sms(ELDER_PHONE, "x", None)
        .await;
    let Err(e) = refused else {
        panic!("{refused:?}")
    };
    assert!(
        matches!(
            e,
            TwilioError::Rejected {
                status: 401,
                code: Some(20003),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(!e.retryable());
    assert_eq!(fake.messages().len(), 2);
    assert_eq!(fake.requests().len(), 3);
    assert_eq!(fake.requests()[2].status, 401);
}

#[tokio::test]
async fn a_call_is_posted_with_twiml_status_events_ring_time_and_machine_detection() {
    let (fake, client) = fake_and_client().await;
    let menu = twiml::menu(&Menu::alarm(
        Language::ZhCn,
        "紧急呼叫：张阿姨家。",
        "http://127.0.0.1:9/twilio/gather?d=42",
    ));
    let sent = client
        .place_call(
            ELDER_PHONE,
            CallContent::Twiml(&menu),
            Some("http://127.0.0.1:9/twilio/status?d=42"),
            true,
        )
        .await
        .expect("placed");
    assert!(
        sent.sid.starts_with("CA") && sent.sid.len() == 34,
        "{sent:?}"
    );
    assert_eq!(sent.status, "queued");

    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert_eq!(c.param("To"), Some(ELDER_PHONE));
    assert_eq!(c.param("From"), Some("+15005550006"));
    assert_eq!(c.param("Twiml"), Some(menu.as_str()));
    assert_eq!(c.param("Url"), None);
    assert_eq!(
        c.param("StatusCallback"),
        Some("http://127.0.0.1:9/twilio/status?d=42")
    );
    assert_eq!(c.param("StatusCallbackMethod"), Some("POST"));
    assert_eq!(
        c.params_named("StatusCallbackEvent"),
        vec!["answered", "completed"]
    );
    assert_eq!(c.param("Timeout"), Some("30"));
    assert_eq!(c.param("MachineDetection"), Some("Enable"));

    // A call by URL, without callback or machine detection.
    client
        .place_call(
            ELDER_PHONE,
            CallContent::Url("http://127.0.0.1:9/twilio/voice?d=42"),
            None,
            false,
        )
        .await
        .expect("placed");
    let c = &fake.calls()[1];
    assert_eq!(c.param("Url"), Some("http://127.0.0.1:9/twilio/voice?d=42"));
    assert_eq!(c.param("Method"), Some("POST"));
    assert_eq!(c.param("Twiml"), None);
    assert_eq!(c.param("StatusCallback"), None);
    assert!(c.params_named("StatusCallbackEvent").is_empty());
    assert_eq!(c.param("MachineDetection"), None);
    assert_eq!(fake.messages().len(), 0, "calls are not messages");
}

#[tokio::test]
async fn server_error_then_rate_limit_then_success_sends_exactly_once() {
    let (fake, client) = fake_and_client().await;
    fake.script(
        Endpoint::Messages,
        [
            Failure::ServerError,
            Failure::RateLimited {
                retry_after_secs: Some(3),
            },
        ],
    );

    let first = client.send_sms(ELDER_PHONE, "1", None).await;
    let Err(e) = first else { panic!("{first:?}") };
    assert!(
        matches!(
            e,
            TwilioError::Server {
                status: 500,
                code: Some(20500),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.retryable());
    assert_eq!(e.retry_after(), None);

    let second = client.send_sms(ELDER_PHONE, "1", None).await;
    let Err(e) = second else { panic!("{second:?}") };
    assert_eq!(
        e,
        TwilioError::RateLimited {
            retry_after: Some(Duration::from_secs(3))
        }
    );
    assert!(e.retryable());

    let third = client
        .send_sms(ELDER_PHONE, "1", None)
        .await
        .expect("succeeds after the script");
    let messages = fake.messages();
    assert_eq!(messages.len(), 1, "exactly one message");
    assert_eq!(messages[0].sid(), third.sid);
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![500, 429, 201]);

    // Scripts are per endpoint: calls were never affected. A 429 without Retry-After.
    fake.script(
        Endpoint::Calls,
        [Failure::RateLimited {
            retry_after_secs: None,
        }],
    );
    let limited = client
        .place_call(ELDER_PHONE, CallContent::Twiml("<Response/>"), None, false)
        .await;
    assert_eq!(limited, Err(TwilioError::RateLimited { retry_after: None }));
    client
        .send_sms(ELDER_PHONE, "SMS unaffected", None)
        .await
        .expect("sent");
}

#[tokio::test]
async fn a_hang_longer_than_the_timeout_is_a_timeout() {
    let fake = FakeTwilio::start(SID, TOKEN).await;
    let mut settings = fake.settings("http://127.0.0.1:9");
    settings.timeout_secs = 1;
    let client = Client::new(&settings).expect("client");
    fake.script(Endpoint::Calls, [Failure::Hang(Duration::from_secs(5))]);

    let started = Instant::now();
    let hung = client
        .place_call(ELDER_PHONE, CallContent::Twiml("<Response/>"), None, false)
        .await;
    let waited = started.elapsed();
    assert_eq!(hung, Err(TwilioError::Timeout));
    assert!(TwilioError::Timeout.retryable());
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "the client gave up after its timeout, not after the hang: {waited:?}"
    );
    assert_eq!(fake.requests().len(), 1, "the request did arrive");

    client
        .place_call(ELDER_PHONE, CallContent::Twiml("<Response/>"), None, false)
        .await
        .expect("the next call goes through");
    assert_eq!(fake.calls().len(), 1);
}

#[tokio::test]
async fn a_bad_number_is_rejected_not_retried_and_not_quoted() {
    let (fake, client) = fake_and_client().await;
    let bad = "+0138001380001";
    let rejected = client.send_sms(bad, "x", None).await;
    let Err(e) = rejected else {
        panic!("{rejected:?}")
    };
    let TwilioError::Rejected {
        status: 400,
        code: Some(21211),
        message,
    } = &e
    else {
        panic!("{e:?}")
    };
    assert!(message.contains("<number>"), "{message}");
    assert!(!e.retryable());
    assert!(
        !e.to_string().contains("138001380001") && !format!("{e:?}").contains("138001380001"),
        "Twilio quotes the number; the error must not: {e}"
    );
    assert!(fake.messages().is_empty());

    // Any other scripted 4xx: rejected too.
    fake.script(
        Endpoint::Calls,
        [Failure::Reject {
            status: 400,
            code: 21610,
            message: "Attempt to send to unsubscribed recipient".into(),
        }],
    );
    let rejected = client
        .place_call(ELDER_PHONE, CallContent::Twiml("<Response/>"), None, false)
        .await;
    assert_eq!(
        rejected,
        Err(TwilioError::Rejected {
            status: 400,
            code: Some(21610),
            message: "Attempt to send to unsubscribed recipient".into()
        })
    );
}

#[tokio::test]
async fn an_unreachable_twilio_is_a_retryable_transport_error() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let fake = FakeTwilio::start(SID, TOKEN).await;
    let mut settings = fake.settings("http://127.0.0.1:9");
    settings.api_base = format!("http://{closed}");
    let result = Client::new(&settings)
        .expect("client")
        .send_sms(ELDER_PHONE, "x", None)
        .await;
    let Err(e) = result else { panic!("{result:?}") };
    assert!(matches!(e, TwilioError::Transport(_)), "{e:?}");
    assert!(e.retryable());
}

#[tokio::test]
async fn wait_for_messages_returns_once_they_arrive() {
    let (fake, client) = fake_and_client().await;
    let sender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        for body in ["a", "b"] {
            client
                .send_sms(ELDER_PHONE, body, None)
                .await
                .expect("sent");
        }
    });
    let got = fake.wait_for_messages(2, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].param("Body"), Some("b"));
    sender.await.expect("sender");
}

#[tokio::test]
#[should_panic(expected = "waited")]
async fn wait_for_messages_fails_when_none_come() {
    let fake = FakeTwilio::start(SID, TOKEN).await;
    fake.wait_for_messages(1, Duration::from_millis(200)).await;
}

// ---- callbacks ------------------------------------------------------------------------

/// What the receiving side (standing in for the hub) got.
#[derive(Debug, Clone)]
struct Received {
    path_and_query: String,
    params: Vec<(String, String)>,
    signature: Option<String>,
}

/// A stand-in for the hub's webhooks: records every POST and answers like the hub would:
/// `/gather` (first menu) with a second menu whose action is `/gather2?step=2`, `/gather2`
/// with a goodbye, `/voice` (a call's Url) with the first menu, anything else `<Response/>`.
struct Receiver {
    base: String,
    got: Arc<Mutex<Vec<Received>>>,
    _server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let app = axum::Router::new()
            .fallback(receive)
            .with_state((got.clone(), base.clone()));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            base,
            got,
            _server: server,
        }
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().expect("lock").clone()
    }

    /// Whether what arrived at `r` carries Twilio's signature (as the hub will check it).
    fn verifies(&self, r: &Received, token: &str) -> bool {
        let url = self.url(&r.path_and_query);
        signature::verify(token, &url, &r.params, r.signature.as_deref().unwrap_or(""))
    }
}

async fn receive(
    State((got, base)): State<(Arc<Mutex<Vec<Received>>>, String)>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> String {
    let params = callbacks::parse_form(&body).expect("a form");
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    got.lock().expect("lock").push(Received {
        path_and_query: path_and_query.clone(),
        params,
        signature: headers
            .get(signature::HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
    let first_menu = || {
        twiml::menu(&Menu::alarm(
            Language::ZhCn,
            "紧急呼叫 & <测试>",
            &format!("{base}/gather?d=42&n=1"),
        ))
    };
    match uri.path() {
        "/voice" => first_menu(),
        "/gather" => twiml::menu(&Menu::alarm(
            Language::EnUs,
            "Again",
            &format!("{base}/gather2?step=2"),
        )),
        "/gather2" => twiml::say_and_hang_up(Language::EnUs.into(), "Thank you."),
        _ => twiml::empty(),
    }
}

#[tokio::test]
async fn status_callbacks_are_signed_and_parse() {
    let (fake, client) = fake_and_client().await;
    let hub = Receiver::start().await;
    let sms = client
        .send_sms(ELDER_PHONE, "x", Some(&hub.url("/status?d=1")))
        .await
        .expect("sent");
    let call = client
        .place_call(
            ELDER_PHONE,
            CallContent::Twiml("<Response/>"),
            Some(&hub.url("/status?d=2")),
            true,
        )
        .await
        .expect("placed");

    let reply = fake.status_callback(&sms.sid, "delivered").await;
    assert_eq!(reply.status, 200);
    fake.status_callback(&sms.sid, "undelivered").await;
    fake.status_callback_with(&call.sid, "completed", &[("AnsweredBy", "machine_start")])
        .await;
    fake.status_callback(&call.sid, "no-answer").await;
    fake.status_callback(&call.sid, "busy").await;

    let got = hub.received();
    assert_eq!(got.len(), 5);
    for r in &got {
        assert!(hub.verifies(r, TOKEN), "valid signature: {r:?}");
        assert!(!hub.verifies(r, "another-token"), "token matters: {r:?}");
    }
    assert_eq!(got[0].path_and_query, "/status?d=1");
    assert_eq!(got[2].path_and_query, "/status?d=2");

    let parsed: Vec<StatusCallback> = got
        .iter()
        .map(|r| StatusCallback::from_params(&r.params).expect("parses"))
        .collect();
    let StatusCallback::Message(m) = &parsed[0] else {
        panic!("{parsed:?}")
    };
    assert_eq!(
        (m.message_sid.as_str(), &m.status),
        (sms.sid.as_str(), &MessageStatus::Delivered)
    );
    assert_eq!(m.account_sid.as_deref(), Some(SID));
    let StatusCallback::Message(m) = &parsed[1] else {
        panic!("{parsed:?}")
    };
    assert!(m.status.is_failure());
    assert_eq!(m.error_code, Some(30003));
    let StatusCallback::Call(c) = &parsed[2] else {
        panic!("{parsed:?}")
    };
    assert_eq!(c.call_sid, call.sid);
    assert_eq!(c.status, CallStatus::Completed);
    assert_eq!(c.answered_by, Some(AnsweredBy::MachineStart));
    assert_eq!(c.sequence_number, Some(0));
    let statuses: Vec<&CallStatus> = parsed[3..]
        .iter()
        .map(|p| match p {
            StatusCallback::Call(c) => &c.status,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(statuses, vec![&CallStatus::NoAnswer, &CallStatus::Busy]);
}

#[tokio::test]
async fn keypad_digits_reach_the_gather_action_and_the_call_follows_the_answer() {
    let (fake, client) = fake_and_client().await;
    let hub = Receiver::start().await;
    let menu = twiml::menu(&Menu::alarm(
        Language::ZhCn,
        "紧急呼叫",
        &hub.url("/gather?d=42&n=0"),
    ));
    let Sent { sid, .. } = client
        .place_call(ELDER_PHONE, CallContent::Twiml(&menu), None, false)
        .await
        .expect("placed");

    assert_eq!(fake.answer(&sid).await, menu);
    let reply = fake.press(&sid, "5").await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("<Gather"), "{reply:?}");
    // The call now runs the hub's answer: the next key goes to its action.
    let reply = fake.press(&sid, "1").await;
    assert_eq!(
        reply,
        CallbackReply {
            status: 200,
            body: twiml::say_and_hang_up(Language::EnUs.into(), "Thank you.")
        }
    );

    let got = hub.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].path_and_query, "/gather?d=42&n=0");
    assert_eq!(got[1].path_and_query, "/gather2?step=2");
    for (r, digits) in got.iter().zip(["5", "1"]) {
        assert!(hub.verifies(r, TOKEN), "{r:?}");
        let g = Gather::from_params(&r.params).expect("parses");
        assert_eq!(g.call_sid, sid);
        assert_eq!(g.digits.as_deref(), Some(digits));
    }
}

#[tokio::test]
async fn a_call_by_url_fetches_its_twiml_signed_and_no_key_follows_the_redirect() {
    let (fake, client) = fake_and_client().await;
    let hub = Receiver::start().await;
    let Sent { sid, .. } = client
        .place_call(
            ELDER_PHONE,
            CallContent::Url(&hub.url("/voice?d=7")),
            None,
            true,
        )
        .await
        .expect("placed");

    // Pressing before anything else answers the call first (POST to its Url).
    let reply = fake.press(&sid, "9").await;
    assert_eq!(reply.status, 200);
    // No key on the second menu: Twilio follows its <Redirect> (to the same action).
    let reply = fake.no_key(&sid).await;
    assert_eq!(reply.status, 200);

    let got = hub.received();
    let paths: Vec<&str> = got.iter().map(|r| r.path_and_query.as_str()).collect();
    assert_eq!(
        paths,
        vec!["/voice?d=7", "/gather?d=42&n=1", "/gather2?step=2"]
    );
    for r in &got {
        assert!(hub.verifies(r, TOKEN), "{r:?}");
        let g = Gather::from_params(&r.params).expect("parses");
        assert_eq!(g.call_sid, sid);
        assert_eq!(
            g.answered_by,
            Some(AnsweredBy::Human),
            "machine detection was on"
        );
    }
    let digits: Vec<Option<String>> = got
        .iter()
        .map(|r| Gather::from_params(&r.params).expect("parses").digits)
        .collect();
    assert_eq!(digits, vec![None, Some("9".to_string()), None]);
}

#[tokio::test]
async fn incoming_sms_is_signed_and_parses() {
    let fake = FakeTwilio::start(SID, TOKEN).await;
    let hub = Receiver::start().await;
    let reply = fake
        .incoming_sms(ELDER_PHONE, "+15005550006", "1 收到", &hub.url("/sms"))
        .await;
    assert_eq!(reply.status, 200);
    let got = hub.received();
    assert_eq!(got.len(), 1);
    assert!(hub.verifies(&got[0], TOKEN));
    let sms = IncomingSms::from_params(&got[0].params).expect("parses");
    assert_eq!(sms.from, ELDER_PHONE);
    assert_eq!(sms.to, "+15005550006");
    assert_eq!(sms.body, "1 收到");
    assert!(sms.message_sid.starts_with("SM"));
    assert_eq!(sms.account_sid.as_deref(), Some(SID));
}

#[tokio::test]
async fn forged_missing_and_replayed_signatures_do_not_verify() {
    let (fake, client) = fake_and_client().await;
    let hub = Receiver::start().await;
    let menu = twiml::menu(&Menu::alarm(Language::ZhCn, "x", &hub.url("/gather?d=1")));
    let call = client
        .place_call(
            ELDER_PHONE,
            CallContent::Twiml(&menu),
            Some(&hub.url("/status?d=1")),
            false,
        )
        .await
        .expect("placed");

    for signing in [Signing::Forged, Signing::Missing, Signing::Replayed] {
        let cb = fake.with_signing(signing);
        cb.status_callback(&call.sid, "completed").await;
        cb.press(&call.sid, "1").await;
        cb.incoming_sms(ELDER_PHONE, "+15005550006", "1", &hub.url("/sms"))
            .await;
    }
    // And one genuine callback, so the check above is not vacuous.
    fake.press(&call.sid, "1").await;

    let got = hub.received();
    assert_eq!(got.len(), 10);
    for (i, r) in got[..9].iter().enumerate() {
        assert!(
            !hub.verifies(r, TOKEN),
            "callback {i} must not verify: {r:?}"
        );
    }
    assert!(got[3].signature.is_none(), "Missing sends no header");
    assert!(got[0].signature.is_some() && got[6].signature.is_some());
    assert!(hub.verifies(&got[9], TOKEN), "the genuine one verifies");

    let sent: Vec<SentCallback> = fake.callbacks();
    assert_eq!(sent.len(), 10);
    assert_eq!(sent[9].signature.as_deref(), got[9].signature.as_deref());
}
