//! Issue 6, delivery guarantees: every notification beyond the board is a delivery row
//! planned with its step; failed sends retry with back-off (a 429's `Retry-After` is
//! honoured) on the hub's injected clock; a restart during a pending retry sends once.
//! Shown here with the district platform's webhook (signed, with a delivery id).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anxin_tests::{TestHub, PATIENCE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use device_sim::payload;
use serde_json::{json, Value};

const SECRET: &str = "district platform secret";

/// One post as received: headers and raw body.
type Post = (HeaderMap, Vec<u8>);

/// A receiving platform that answers the scripted statuses first, then 200.
#[derive(Clone, Default)]
struct Receiver {
    script: Arc<Mutex<VecDeque<u16>>>,
    posts: Arc<Mutex<Vec<Post>>>,
}

impl Receiver {
    async fn start(script: &[u16]) -> (Receiver, String) {
        let r = Receiver::default();
        r.script
            .lock()
            .expect("lock")
            .extend(script.iter().copied());
        let state = r.clone();
        let app = axum::Router::new().route(
            "/events",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let state = state.clone();
                async move {
                    state
                        .posts
                        .lock()
                        .expect("lock")
                        .push((headers, body.to_vec()));
                    let next = state.script.lock().expect("lock").pop_front();
                    match next {
                        Some(429) => (
                            StatusCode::TOO_MANY_REQUESTS,
                            [("retry-after", "1")],
                            "slow down",
                        )
                            .into_response(),
                        Some(code) => StatusCode::from_u16(code)
                            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
                            .into_response(),
                        None => StatusCode::OK.into_response(),
                    }
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/events", l.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        (r, url)
    }

    fn count(&self) -> usize {
        self.posts.lock().expect("lock").len()
    }

    fn posts(&self) -> Vec<Post> {
        self.posts.lock().expect("lock").clone()
    }

    async fn wait_for(&self, n: usize) {
        anxin_tests::eventually(&format!("{n} webhook posts"), &mut || async {
            (self.count() >= n).then_some(())
        })
        .await
    }
}

async fn hub_posting_to(url: String) -> TestHub {
    let tweak: anxin_tests::Tweak = Arc::new(move |s: &mut hub::Settings| {
        s.webhook = Some(hub::webhook::WebhookSettings {
            url: url.clone(),
            secret: SECRET.into(),
            timeout_secs: 5,
        });
    });
    TestHub::spawn_tweaked(hub::clock::Clock::now(&hub::clock::SystemClock), tweak).await
}

async fn press_sos(hub: &TestHub) -> String {
    let pendant = hub.device("demo-pendant-1").await;
    let ack = pendant
        .send_critical(&payload::event("sos", json!({})), PATIENCE)
        .await
        .expect("sos acknowledged");
    ack["alarm_id"].as_str().expect("alarm id").to_owned()
}

/// Every post is signed over its timestamp and body, and carries the delivery id.
fn check_signed(headers: &HeaderMap, body: &[u8]) -> String {
    let sig = headers
        .get("x-anxin-signature")
        .and_then(|v| v.to_str().ok())
        .expect("signature header");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64;
    assert!(
        hub::webhook::verify(SECRET, sig, body, now, 300),
        "signature {sig} verifies"
    );
    assert!(!hub::webhook::verify(
        "not the secret!!",
        sig,
        body,
        now,
        300
    ));
    headers
        .get("x-anxin-delivery")
        .and_then(|v| v.to_str().ok())
        .expect("delivery id")
        .to_owned()
}

#[tokio::test]
async fn a_notification_reaches_the_platform_once_through_a_500_and_a_429() {
    let (receiver, url) = Receiver::start(&[500, 429]).await;
    let hub = hub_posting_to(url).await;
    let alarm = press_sos(&hub).await;

    // First try at once: 500.
    receiver.wait_for(1).await;
    // The retry waits for its back-off (2.5–5 s after the first failure) on the hub's
    // clock: nothing more arrives while the clock stands still.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.count(), 1, "no retry before the back-off");
    hub.advance(5);
    receiver.wait_for(2).await; // 429, Retry-After: 1
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.count(), 2, "Retry-After is honoured");
    hub.advance(1);
    receiver.wait_for(3).await; // 200

    // Exactly one delivery, three attempts, the same id on each post.
    let ids: Vec<String> = receiver
        .posts()
        .iter()
        .map(|(h, b)| check_signed(h, b))
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let (_, body) = &receiver.posts()[2];
    let body: Value = serde_json::from_slice(body).expect("json");
    assert_eq!(body["delivery_id"], json!(ids[0]));
    assert_eq!(body["alarm"]["id"], json!(alarm));
    assert_eq!(body["step"]["step"], "notified");

    let store = &hub.app.store;
    let d = hub
        .eventually("the delivery is recorded as sent", || async {
            let d = store.deliveries(&alarm).await.expect("deliveries");
            (d.len() == 1 && d[0].state == "sent").then(|| d[0].clone())
        })
        .await;
    assert_eq!((d.channel.as_str(), d.attempts), ("webhook", 3));
    let outcomes: Vec<String> = store
        .delivery_attempts(&d.id)
        .await
        .expect("attempts")
        .into_iter()
        .map(|a| a.outcome)
        .collect();
    assert_eq!(outcomes, ["retry", "retry", "sent"]);

    // Nothing more is sent later.
    hub.advance(600);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let more: Vec<String> = receiver
        .posts()
        .iter()
        .map(|(h, b)| check_signed(h, b))
        .filter(|id| *id == ids[0])
        .collect();
    assert_eq!(more.len(), 3, "no post of this delivery after it was sent");
}

#[tokio::test]
async fn a_restart_during_a_pending_retry_sends_once() {
    let (receiver, url) = Receiver::start(&[503]).await;
    let hub = hub_posting_to(url).await;
    let alarm = press_sos(&hub).await;
    receiver.wait_for(1).await;
    let store = hub.app.store.clone();
    hub.eventually("the retry is pending", || async {
        let d = store.deliveries(&alarm).await.expect("deliveries");
        (d.len() == 1 && d[0].state == "pending" && d[0].attempts == 1).then_some(())
    })
    .await;

    // Stop and start again while the retry waits.
    let hub = hub.restart().await;
    assert_eq!(receiver.count(), 1, "the restart itself sends nothing");
    hub.advance(5);
    receiver.wait_for(2).await;
    hub.advance(600);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // (Later notifications of the alarm — a repeat after 60 s, escalations — are
    // deliveries of their own, with other ids.)
    let ids: Vec<String> = receiver
        .posts()
        .iter()
        .map(|(h, b)| check_signed(h, b))
        .collect();
    let first = ids.iter().filter(|id| **id == ids[0]).count();
    assert_eq!(first, 2, "the failed try and one successful retry: {ids:?}");
    let d = hub.app.store.deliveries(&alarm).await.expect("deliveries");
    let d = d.iter().find(|d| d.id == ids[0]).expect("the delivery");
    assert_eq!((d.state.as_str(), d.attempts), ("sent", 2));
}
