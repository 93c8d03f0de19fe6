//! Hardening of the web endpoints (issue 14): logins counted per client behind trusted
//! proxies and only when they fail, unknown usernames checked like known ones, the
//! session cookie refused from other origins, websockets capped per account and in all.

use std::sync::Arc;

use anxin_tests::{TestHub, PATIENCE};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

async fn add_account(hub: &TestHub, id: &str, username: &str, password: &str, scope: &str) {
    let hash = hub::secrets::hash_secret(password).expect("hash");
    let scope = hub::store::Scope::parse(scope).expect("scope");
    hub.app
        .store
        .upsert_account(
            id,
            username,
            &hash,
            "village",
            &scope,
            hub::clock::Clock::now(&hub.clock),
        )
        .await
        .expect("account");
}

/// `POST /api/login`, optionally with an `X-Forwarded-For`.
async fn login(hub: &TestHub, user: &str, password: &str, xff: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("{}/api/login", hub.http))
        .json(&json!({ "username": user, "password": password }));
    if let Some(a) = xff {
        req = req.header("x-forwarded-for", a);
    }
    req.send().await.expect("login request")
}

/// Log in; the `anxin_session=…` cookie pair.
async fn cookie(hub: &TestHub, user: &str, password: &str) -> String {
    let r = login(hub, user, password, None).await;
    assert_eq!(r.status(), 200);
    r.headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .expect("session cookie")
        .to_owned()
}

fn tweaked(f: impl Fn(&mut hub::Settings) + Send + Sync + 'static) -> anxin_tests::Tweak {
    Arc::new(f)
}

async fn metrics(hub: &TestHub) -> String {
    reqwest::get(format!("{}/metrics", hub.http))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

const PASSWORD: &str = "correct horse battery";

/// Behind a trusted proxy on the same host, logins are counted against the address the
/// proxy reports, and only failed ones: a guesser spends its own budget, successes
/// spend none, and a real user at another address is never refused. (Before: every
/// login counted, keyed on the proxy's loopback address, so one guesser kept everybody
/// out.)
#[tokio::test]
async fn behind_a_trusted_proxy_only_a_guessers_own_failures_limit_it() {
    let hub = TestHub::spawn_tweaked(
        hub::clock::Clock::now(&hub::clock::SystemClock),
        tweaked(|s| s.http.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")]),
    )
    .await;
    add_account(&hub, "a-wu", "wu.v1", PASSWORD, "village:v-1").await;
    let user = Some("198.51.100.7");
    let guesser = Some("203.0.113.66");
    // Successes never draw on the budget of their address.
    for i in 0..hub::http::accounts::LOGIN_BURST + 5 {
        let r = login(&hub, "wu.v1", PASSWORD, user).await;
        assert_eq!(r.status(), 200, "successful login {i}");
    }
    // The guesser's failures draw on its own address's budget only.
    for i in 0..=hub::http::accounts::LOGIN_BURST {
        let r = login(&hub, &format!("nobody{i}"), "guess", guesser).await;
        assert_eq!(r.status(), 401, "failure {i}: checked");
    }
    let r = login(&hub, "wu.v1", PASSWORD, guesser).await;
    assert_eq!(
        r.status(),
        429,
        "the guesser's address is blocked, even with a right password"
    );
    assert!(r.headers().get("retry-after").is_some());
    let r = login(&hub, "wu.v1", PASSWORD, user).await;
    assert_eq!(r.status(), 200, "the user behind the same proxy is not");
    // A client prepending a made-up address does not escape: the proxy appends the real one.
    let r = login(&hub, "wu.v1", PASSWORD, Some("192.0.2.1, 203.0.113.66")).await;
    assert_eq!(r.status(), 429);
    hub.app.shutdown().await;
}

/// From an address that is not a trusted proxy, `X-Forwarded-For` is ignored: a guesser
/// cannot spread its attempts over made-up addresses. (Loopback limited here so that the
/// test's own address counts.)
#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let hub = TestHub::spawn_tweaked(
        hub::clock::Clock::now(&hub::clock::SystemClock),
        tweaked(|s| s.http.limit_loopback_logins = true),
    )
    .await;
    for i in 0..=hub::http::accounts::LOGIN_BURST {
        let made_up = format!("198.51.100.{i}");
        let r = login(&hub, &format!("nobody{i}"), "guess", Some(&made_up)).await;
        assert_eq!(r.status(), 401, "failure {i}");
    }
    let r = login(&hub, "nobody", "guess", Some("192.0.2.200")).await;
    assert_eq!(r.status(), 429, "all counted against the real peer");
    hub.app.shutdown().await;
}

/// Without a trusted proxy, loopback is not limited (as for MQTT): a proxy on the same
/// host would make every visitor one address. Per-username slowing still applies.
#[tokio::test]
async fn logins_from_loopback_are_not_limited_per_address_by_default() {
    let hub = TestHub::spawn().await;
    for i in 0..hub::http::accounts::LOGIN_BURST + 5 {
        let r = login(&hub, &format!("nobody{i}"), "guess", None).await;
        assert_eq!(r.status(), 401, "failure {i} from loopback");
    }
    hub.app.shutdown().await;
}

/// A login with an unknown username, or for a disabled account, runs the same argon2
/// verification as one with a known username (against a dummy hash), so the answer time
/// does not tell which usernames exist. Counted, not timed.
#[tokio::test]
async fn unknown_and_disabled_usernames_cost_a_password_check_like_known_ones() {
    let hub = TestHub::spawn().await;
    add_account(&hub, "a-he", "he.v1", PASSWORD, "village:v-1").await;
    add_account(&hub, "a-gone", "gone.v1", PASSWORD, "village:v-1").await;
    let now = hub::clock::Clock::now(&hub.clock);
    assert!(hub
        .app
        .store
        .set_account_disabled("a-gone", Some(now))
        .await
        .expect("disable"));
    let checks = || hub.app.login_sources.password_checks();
    for (user, password, status) in [
        ("he.v1", "wrong", 401),
        ("he.v1", PASSWORD, 200),
        ("no.such.user", "wrong", 401),
        ("no.such.user", PASSWORD, 401),
        ("gone.v1", PASSWORD, 401),
    ] {
        let before = checks();
        let r = login(&hub, user, password, None).await;
        assert_eq!(r.status(), status, "{user}");
        assert_eq!(checks(), before + 1, "{user}: one argon2 verification");
    }
    hub.app.shutdown().await;
}

async fn acknowledge(
    hub: &TestHub,
    alarm: &str,
    cookie: &str,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/api/alarms/{alarm}/acknowledge", hub.http))
        .header("cookie", cookie);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("request");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The session cookie does not act from another origin: a body-less acknowledge (which
/// needs no JSON content type, so any page could send it) with a foreign `Origin`, or
/// without `Origin` but with `Sec-Fetch-Site: cross-site` / `same-site`, is refused with
/// 403 and the alarm stays unacknowledged; the same request from the hub's own origin
/// works; a bearer token is not affected.
#[tokio::test]
async fn the_session_cookie_does_not_act_from_another_origin() {
    let hub = TestHub::spawn().await;
    add_account(&hub, "a-ma", "ma.v1", PASSWORD, "village:v-1").await;
    let cookie = cookie(&hub, "ma.v1", PASSWORD).await;
    let alarm = hub.raise("demo-pendant-1", "sos").await;
    let api = hub.api();
    for headers in [
        vec![
            ("origin", "http://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ],
        vec![("origin", "null")],
        // Another port of the same host: same site, so the cookie is sent; not same origin.
        vec![
            ("origin", "http://127.0.0.1:1"),
            ("sec-fetch-site", "same-site"),
        ],
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site")],
    ] {
        let (status, body) = acknowledge(&hub, &alarm, &cookie, &headers).await;
        assert_eq!(status, 403, "{headers:?}: {body}");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("cross-origin request refused")),
            "{body}"
        );
        let state = api.alarm("demo-village-1", &alarm).await["alarm"]["state"].clone();
        assert_ne!(state, "acknowledged", "{headers:?}");
    }
    assert!(metrics(&hub)
        .await
        .contains("anxin_http_refused_total{reason=\"cross_origin\"}"));
    // Logout (and any other change) likewise.
    let r = reqwest::Client::new()
        .post(format!("{}/api/logout", hub.http))
        .header("cookie", &cookie)
        .header("origin", "http://evil.example")
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), 403);

    // From the hub's own page: accepted.
    let own = hub.http.clone();
    let (status, body) = acknowledge(
        &hub,
        &alarm,
        &cookie,
        &[("origin", &own), ("sec-fetch-site", "same-origin")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["alarm"]["state"], "acknowledged");
    // A bearer token is not a cookie a foreign page could make the browser send.
    let r = reqwest::Client::new()
        .post(format!("{}/api/alarms/{alarm}/on-site", hub.http))
        .bearer_auth("demo-village-1")
        .header("origin", "http://evil.example")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    // Reads with the cookie are not affected.
    let r = reqwest::Client::new()
        .get(format!("{}/api/me", hub.http))
        .header("cookie", &cookie)
        .header("origin", "http://evil.example")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    hub.app.shutdown().await;
}

/// Open a websocket with extra request headers; the HTTP status of a refused handshake,
/// or the first message (or close code) of an accepted one.
async fn ws_with(
    hub: &TestHub,
    query: &str,
    headers: &[(&str, &str)],
) -> Result<
    (
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        Value,
    ),
    u16,
> {
    let url = format!("{}/api/ws{query}", hub.http.replacen("http://", "ws://", 1));
    let mut req = url.into_client_request().expect("request");
    for (k, v) in headers {
        req.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            v.parse().expect("value"),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((mut stream, _)) => {
            let first = match tokio::time::timeout(PATIENCE, stream.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str(&t).expect("json"),
                Ok(Some(Ok(Message::Close(f)))) => {
                    json!({ "close": f.map(|f| u16::from(f.code)) })
                }
                other => panic!("nothing from the websocket: {other:?}"),
            };
            Ok((stream, first))
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("websocket: {e}"),
    }
}

/// A websocket opened with the session cookie from another origin is refused at the
/// handshake (it would stream the account's alarms to that page); from the hub's own
/// origin it opens; with a token it is not affected.
#[tokio::test]
async fn a_cookie_websocket_from_another_origin_is_refused() {
    let hub = TestHub::spawn().await;
    add_account(&hub, "a-lu", "lu.v1", PASSWORD, "village:v-1").await;
    let cookie = cookie(&hub, "lu.v1", PASSWORD).await;
    let refused = ws_with(
        &hub,
        "",
        &[("cookie", &cookie), ("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(refused.err(), Some(403));
    let own = hub.http.clone();
    let (_, hello) = ws_with(&hub, "", &[("cookie", &cookie), ("origin", &own)])
        .await
        .expect("own origin");
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["contact"], "a-lu");
    let (_, hello) = ws_with(
        &hub,
        "?token=demo-village-1",
        &[("origin", "http://evil.example")],
    )
    .await
    .expect("a token is not affected");
    assert_eq!(hello["type"], "hello");
    hub.app.shutdown().await;
}

/// One account may hold 20 websockets (the default): the 21st is upgraded and closed at
/// once with 4429 and a reason, while the 20 keep receiving; closing one frees a place;
/// other accounts are not affected.
#[tokio::test]
async fn websockets_are_capped_per_account() {
    let hub = TestHub::spawn().await;
    let cap = hub::Settings::default().http.max_websockets_per_account;
    assert_eq!(cap, 20);
    let mut open = Vec::new();
    for _ in 0..cap {
        open.push(hub.ws("demo-village-1", None).await);
    }
    let (_, first) = ws_with(&hub, "?token=demo-village-1", &[])
        .await
        .expect("upgraded");
    assert_eq!(
        first["close"],
        hub::http::sockets::CLOSE_ACCOUNT_LIMIT,
        "{first}"
    );
    assert_eq!(hub::http::sockets::CLOSE_ACCOUNT_LIMIT, 4429);
    assert!(metrics(&hub)
        .await
        .contains("anxin_http_refused_total{reason=\"websockets_per_account\"}"));
    let other = hub.ws("demo-village-2", None).await;
    assert_eq!(other.hello["type"], "hello", "another account");

    let alarm = hub.raise("demo-pendant-1", "sos").await;
    for ws in &mut open {
        let got = ws
            .wait_for("the new alarm", |m| m["alarm"]["id"] == alarm.as_str())
            .await;
        assert_eq!(got["type"], "alarm");
    }
    open.pop().expect("one").close().await;
    let reopened = hub
        .eventually("a place is free again", || async {
            match ws_with(&hub, "?token=demo-village-1", &[]).await {
                Ok((s, m)) if m["type"] == "hello" => Some(s),
                _ => None,
            }
        })
        .await;
    drop(reopened);
    other.close().await;
    hub.app.shutdown().await;
}

/// The hub-wide cap: past it, any account's websocket is closed with 4503.
#[tokio::test]
async fn websockets_are_capped_in_all() {
    let hub = TestHub::spawn_tweaked(
        hub::clock::Clock::now(&hub::clock::SystemClock),
        tweaked(|s| s.http.max_websockets = 2),
    )
    .await;
    let a = hub.ws("demo-village-1", None).await;
    let _b = hub.ws("demo-village-2", None).await;
    let (_, first) = ws_with(&hub, "?token=demo-district", &[])
        .await
        .expect("upgraded");
    assert_eq!(
        first["close"],
        hub::http::sockets::CLOSE_HUB_LIMIT,
        "{first}"
    );
    assert_eq!(hub::http::sockets::CLOSE_HUB_LIMIT, 4503);
    a.close().await;
    hub.eventually("a place is free again", || async {
        match ws_with(&hub, "?token=demo-district", &[]).await {
            Ok((_, m)) if m["type"] == "hello" => Some(()),
            _ => None,
        }
    })
    .await;
    hub.app.shutdown().await;
}
