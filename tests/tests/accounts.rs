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
        hub::store::Scope::Household(_) => "family",
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
    let other = login(&hub, "wang.v1", "correct horse battery")
        .await
        .json::<Value>()
        .await
        .expect("json")["token"]
        .as_str()
        .expect("token")
        .to_owned();
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
    let fresh = login(&hub, "wang.v1", "a much longer one")
        .await
        .json::<Value>()
        .await
        .expect("json")["token"]
        .as_str()
        .expect("token")
        .to_owned();
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
