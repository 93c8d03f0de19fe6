//! Accounts and sessions (issue 5): login with a password gives a session — an HTTP-only
//! cookie for the board, a bearer token for API clients — that carries the account's
//! scope; logout and expiry end it; a password change ends every other session; logins
//! and failed logins are audited; guessing is slowed but never locks the account out.

use anxin_tests::TestHub;
use reqwest::Method;
use serde_json::{json, Value};

async fn add_account(hub: &TestHub, id: &str, username: &str, password: &str, scope: &str) {
    let hash = hub::secrets::hash_secret(password).expect("hash");
    let scope = hub::store::Scope::parse(scope).expect("scope");
    let role = match &scope {
        hub::store::Scope::Household(_) | hub::store::Scope::Households(_) => "family",
        hub::store::Scope::Village(_) => "village",
        hub::store::Scope::Town(_) => "town",
        hub::store::Scope::District => "district",
    };
    hub.app
        .store
        .upsert_account(
            id,
            username,
            &hash,
            role,
            &scope,
            hub::clock::Clock::now(&hub.clock),
        )
        .await
        .expect("account");
}

async fn login(hub: &TestHub, username: &str, password: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/api/login", hub.http))
        .json(&json!({ "username": username, "password": password }))
        .send()
        .await
        .expect("login request")
}

/// Log in; the session token.
async fn session(hub: &TestHub, username: &str, password: &str) -> String {
    let body: Value = login(hub, username, password)
        .await
        .json()
        .await
        .expect("json");
    body["token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn login_sessions_logout_expiry_and_password_change() {
    let hub = TestHub::spawn().await;
    add_account(
        &hub,
        "a-wang",
        "wang.v1",
        "correct horse battery",
        "village:v-1",
    )
    .await;

    // Wrong password or unknown user: the same 401.
    assert_eq!(login(&hub, "wang.v1", "nope").await.status(), 401);
    assert_eq!(login(&hub, "nobody", "nope").await.status(), 401);

    let r = login(&hub, "wang.v1", "correct horse battery").await;
    assert_eq!(r.status(), 200);
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("session cookie")
        .to_owned();
    assert!(cookie.starts_with("anxin_session="), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    let body: Value = r.json().await.expect("json");
    let token = body["token"].as_str().expect("token").to_owned();
    assert_eq!(body["account_id"], "a-wang");

    // The session carries the account's scope: bearer (API) and cookie (board).
    let api = hub.api();
    let (s, me) = api.get(&token, "/api/me").await;
    assert_eq!(s, 200);
    assert_eq!(me["id"], "a-wang");
    assert_eq!(me["scope"], json!({"kind": "village", "id": "v-1"}));
    let cookie_pair = cookie.split(';').next().expect("pair").to_owned();
    let via_cookie = reqwest::Client::new()
        .get(format!("{}/api/alarms?scope=village:v-3", hub.http))
        .header("cookie", &cookie_pair)
        .send()
        .await
        .expect("request");
    assert_eq!(via_cookie.status(), 403, "the account's scope applies");

    // A second session; a password change ends every other one.
    let other = session(&hub, "wang.v1", "correct horse battery").await;
    let (s, _) = api
        .call(
            Method::POST,
            &token,
            "/api/password",
            Some(json!({"old_password": "wrong", "new_password": "a much longer one"})),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = api
        .call(
            Method::POST,
            &token,
            "/api/password",
            Some(json!({"old_password": "correct horse battery", "new_password": "short"})),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = api
        .call(
            Method::POST,
            &token,
            "/api/password",
            Some(json!({"old_password": "correct horse battery", "new_password": "a much longer one"})),
        )
        .await;
    assert_eq!(s, 204);
    assert_eq!(
        api.get(&other, "/api/me").await.0,
        401,
        "other sessions ended"
    );
    assert_eq!(
        api.get(&token, "/api/me").await.0,
        200,
        "the caller's own session stays"
    );
    assert_eq!(
        login(&hub, "wang.v1", "correct horse battery")
            .await
            .status(),
        401
    );
    assert_eq!(
        login(&hub, "wang.v1", "a much longer one").await.status(),
        200
    );

    // Logout ends the session and clears the cookie.
    let r = reqwest::Client::new()
        .post(format!("{}/api/logout", hub.http))
        .bearer_auth(&token)
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), 204);
    assert!(r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.contains("Max-Age=0")));
    assert_eq!(api.get(&token, "/api/me").await.0, 401);

    // Sessions expire (12 h).
    let fresh = session(&hub, "wang.v1", "a much longer one").await;
    assert_eq!(api.get(&fresh, "/api/me").await.0, 200);
    hub.advance(12 * 3600 + 1);
    assert_eq!(api.get(&fresh, "/api/me").await.0, 401);

    // Logins and failed logins are in the audit log (ids only).
    let (_, audit) = api.get("demo-district", "/api/audit?limit=1000").await;
    let logins: Vec<(String, String)> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] == "login")
        .map(|e| {
            (
                e["actor"].as_str().unwrap_or_default().to_owned(),
                e["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(
        logins.contains(&("a-wang".into(), "allowed".into())),
        "{logins:?}"
    );
    assert!(
        logins.contains(&("unknown".into(), "denied".into())),
        "{logins:?}"
    );
    assert!(
        !audit.to_string().contains("wang.v1"),
        "usernames are not logged"
    );
}

#[tokio::test]
async fn guessing_a_password_is_slowed_but_the_right_one_still_works() {
    let hub = TestHub::spawn().await;
    add_account(&hub, "a-li", "li.t1", "the right password", "town:t-1").await;
    for _ in 0..5 {
        assert_eq!(login(&hub, "li.t1", "guess").await.status(), 401);
    }
    let t = std::time::Instant::now();
    assert_eq!(login(&hub, "li.t1", "guess").await.status(), 401);
    assert!(
        t.elapsed() >= std::time::Duration::from_secs(2),
        "slowed after 5 failures"
    );
    let t = std::time::Instant::now();
    assert_eq!(
        login(&hub, "li.t1", "the right password").await.status(),
        200
    );
    assert!(
        t.elapsed() < std::time::Duration::from_secs(2),
        "never locked out"
    );
}

/// API tokens belong to accounts: created from a logged-in session (shown once), listed
/// without the secret, used as bearer or on the websocket, revoked (the open websocket is
/// closed at once), and they expire. Logout and a password change close the websockets of
/// the sessions they end.
#[tokio::test]
async fn api_tokens_belong_to_an_account_expire_and_revoke_and_close_websockets() {
    let hub = TestHub::spawn().await;
    add_account(&hub, "a-li", "li.t1", "correct horse battery", "town:t-1").await;
    let api = hub.api();
    let session = session(&hub, "li.t1", "correct horse battery").await;

    // Bad requests: no label, too long a life.
    for body in [
        json!({"label": ""}),
        json!({"label": "pc", "expires_in_days": 0}),
        json!({"label": "pc", "expires_in_days": 366}),
    ] {
        let (s, b) = api
            .call(Method::POST, &session, "/api/tokens", Some(body.clone()))
            .await;
        assert_eq!(s, 400, "{body} -> {b}");
    }
    let (s, made) = api
        .call(
            Method::POST,
            &session,
            "/api/tokens",
            Some(json!({"label": "town office PC", "expires_in_days": 30})),
        )
        .await;
    assert_eq!(s, 201, "{made}");
    let token = made["token"].as_str().expect("token shown once").to_owned();
    let id = made["id"].as_str().expect("id").to_owned();
    let now = hub::clock::Clock::now(&hub.clock);
    assert_eq!(made["expires_at"], json!(now + 30 * 86_400_000));

    // The token is the account: same id and scope.
    let (s, me) = api.get(&token, "/api/me").await;
    assert_eq!(s, 200);
    assert_eq!(me["id"], "a-li");
    assert_eq!(me["scope"], json!({"kind": "town", "id": "t-1"}));
    assert_eq!(api.get(&token, "/api/alarms?scope=town:t-2").await.0, 403);

    // Listed without the secret; an API token cannot mint more tokens.
    let (s, list) = api.get(&session, "/api/tokens").await;
    assert_eq!(s, 200);
    assert_eq!(list["tokens"][0]["id"], json!(id));
    assert_eq!(list["tokens"][0]["label"], "town office PC");
    assert!(list["tokens"][0]["last_used_at"].is_i64(), "{list}");
    assert!(
        !list.to_string().contains(&token),
        "the token is never listed"
    );
    let (s, _) = api
        .call(
            Method::POST,
            &token,
            "/api/tokens",
            Some(json!({"label": "more"})),
        )
        .await;
    assert_eq!(s, 403);

    // Someone else's token cannot be listed or revoked (404, like a missing one); the
    // district can see it.
    assert_eq!(
        api.get("demo-village-1", "/api/tokens?account=a-li")
            .await
            .0,
        403
    );
    let (s, _) = api
        .call(
            Method::DELETE,
            "demo-village-1",
            &format!("/api/tokens/{id}"),
            None,
        )
        .await;
    assert_eq!(s, 404);
    let (s, seen) = api.get("demo-district", "/api/tokens?account=a-li").await;
    assert_eq!(s, 200);
    assert_eq!(seen["tokens"][0]["id"], json!(id));

    // Revoking closes the websocket that uses the token, at once; a websocket of the
    // same account on another credential (its session) stays open.
    let mut ws = hub.ws(&token, None).await;
    let mut still = hub.ws(&session, None).await;
    let (s, _) = api
        .call(Method::DELETE, &session, &format!("/api/tokens/{id}"), None)
        .await;
    assert_eq!(s, 204);
    assert_eq!(
        ws.close_code(std::time::Duration::from_secs(5)).await,
        Some(hub::http::WS_CLOSE_CREDENTIAL_ENDED)
    );
    assert_eq!(api.get(&token, "/api/me").await.0, 401);
    assert_eq!(
        still
            .close_code(std::time::Duration::from_millis(300))
            .await,
        None,
        "the session's websocket is not closed by another token's revocation"
    );

    let (_, short) = api
        .call(
            Method::POST,
            &session,
            "/api/tokens",
            Some(json!({"label": "one day", "expires_in_days": 1})),
        )
        .await;
    let short = short["token"].as_str().expect("token").to_owned();

    // Logout closes the session's websocket.
    let r = reqwest::Client::new()
        .post(format!("{}/api/logout", hub.http))
        .bearer_auth(&session)
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), 204);
    assert_eq!(
        still.close_code(std::time::Duration::from_secs(5)).await,
        Some(hub::http::WS_CLOSE_CREDENTIAL_ENDED)
    );

    // Tokens expire.
    assert_eq!(api.get(&short, "/api/me").await.0, 200);
    hub.advance(86_400 + 1);
    assert_eq!(api.get(&short, "/api/me").await.0, 401);

    // Created and revoked tokens are audited.
    let (_, audit) = api.get("demo-district", "/api/audit?limit=1000").await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["actor"] == "a-li")
        .filter_map(|e| e["action"].as_str())
        .collect();
    for a in ["token.create", "token.revoke", "logout"] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
}

/// Login attempts are limited per source address: one address trying many usernames is
/// answered 429 with `Retry-After` once its budget of failures (20 at once, 10 a minute)
/// is spent. The address is the one a trusted proxy reports (loopback itself is not
/// limited by default).
#[tokio::test]
async fn one_address_trying_many_usernames_is_told_to_wait() {
    let hub = TestHub::spawn_tweaked(
        hub::clock::Clock::now(&hub::clock::SystemClock),
        std::sync::Arc::new(|s: &mut hub::Settings| {
            s.http.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")];
        }),
    )
    .await;
    add_account(
        &hub,
        "a-zhao",
        "zhao.v2",
        "correct horse battery",
        "village:v-2",
    )
    .await;
    let from = |username: &str, password: &str| {
        reqwest::Client::new()
            .post(format!("{}/api/login", hub.http))
            .header("x-forwarded-for", "198.51.100.20")
            .json(&json!({ "username": username, "password": password }))
            .send()
    };
    // The 21st failure overdraws the budget (it is still checked) and blocks the address.
    for i in 0..=hub::http::accounts::LOGIN_BURST {
        let r = from(&format!("user{i}"), "guess").await.expect("login");
        assert_eq!(r.status(), 401, "attempt {i} is checked");
    }
    let r = from("zhao.v2", "correct horse battery")
        .await
        .expect("login");
    assert_eq!(r.status(), 429, "the budget of this address is spent");
    let wait: u64 = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!(
        (1..=6).contains(&wait),
        "one attempt refills in 6 s, got {wait}"
    );
    let body: Value = r.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("too many login attempts")),
        "{body}"
    );
}

/// A disabled account (someone who left) is refused with every credential at once; its
/// sessions are ended for good, its API tokens work again if it is enabled again.
#[tokio::test]
async fn a_disabled_account_is_refused_with_every_credential() {
    let hub = TestHub::spawn().await;
    add_account(
        &hub,
        "a-qian",
        "qian.v1",
        "correct horse battery",
        "village:v-1",
    )
    .await;
    let api = hub.api();
    let session = session(&hub, "qian.v1", "correct horse battery").await;
    let (s, made) = api
        .call(
            Method::POST,
            &session,
            "/api/tokens",
            Some(json!({"label": "pc"})),
        )
        .await;
    assert_eq!(s, 201);
    let token = made["token"].as_str().expect("token").to_owned();
    let now = hub::clock::Clock::now(&hub.clock);

    assert!(hub
        .app
        .store
        .set_account_disabled("a-qian", Some(now))
        .await
        .expect("disable"));
    assert_eq!(api.get(&session, "/api/me").await.0, 401);
    assert_eq!(api.get(&token, "/api/me").await.0, 401);
    assert_eq!(
        login(&hub, "qian.v1", "correct horse battery")
            .await
            .status(),
        401
    );

    assert!(hub
        .app
        .store
        .set_account_disabled("a-qian", None)
        .await
        .expect("enable"));
    assert_eq!(api.get(&token, "/api/me").await.0, 200);
    assert_eq!(
        api.get(&session, "/api/me").await.0,
        401,
        "sessions stay ended"
    );
    assert!(!hub
        .app
        .store
        .set_account_disabled("no-such-account", Some(now))
        .await
        .expect("query"));
}
