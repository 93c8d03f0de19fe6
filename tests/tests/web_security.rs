//! Abuse resistance on the web endpoints (issue 5): security headers on every response,
//! request bodies limited, unauthenticated calls refused.

use anxin_tests::TestHub;

#[tokio::test]
async fn every_response_carries_the_security_headers_and_bodies_are_limited() {
    let hub = TestHub::spawn().await;
    let http = reqwest::Client::new();
    for (path, token) in [
        ("/healthz", None),
        ("/api/me", Some("demo-village-1")),
        ("/api/alarms", None),
    ] {
        let mut req = http.get(format!("{}{path}", hub.http));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.expect("request");
        let h = r.headers();
        for (name, want) in [
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            ("referrer-policy", "no-referrer"),
            ("cache-control", "no-store"),
            (
                "content-security-policy",
                "default-src 'none'; frame-ancestors 'none'",
            ),
        ] {
            assert_eq!(
                h.get(name).and_then(|v| v.to_str().ok()),
                Some(want),
                "{path}: header {name}"
            );
        }
        if token.is_none() && path.starts_with("/api") {
            assert_eq!(r.status().as_u16(), 401, "{path}");
        }
    }
    // A body over 16 KiB is refused before any handler sees it.
    let big = serde_json::json!({ "note": "x".repeat(20 * 1024) });
    let r = http
        .post(format!("{}/api/alarms/any/acknowledge", hub.http))
        .bearer_auth("demo-village-1")
        .json(&big)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 413);
}

/// With `[http] metrics_listen`, `/metrics` is served only there: the public listener
/// answers 404, so metrics never pass the proxy in front of it.
#[tokio::test]
async fn metrics_can_live_on_their_own_listener_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = anxin_tests::settings_for(dir.path());
    settings.http.metrics_listen = Some("127.0.0.1:0".parse().expect("addr"));
    let app = hub::App::build(settings, std::sync::Arc::new(hub::clock::SystemClock))
        .await
        .expect("hub starts");
    let metrics = app.metrics_addr.expect("metrics listener bound");
    assert_ne!(metrics, app.http_addr);
    let get = |url: String| async move {
        let r = reqwest::get(url).await.expect("request");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    };
    // Something to count: a failed login.
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/login", app.http_addr))
        .json(&serde_json::json!({"username": "nobody", "password": "x"}))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 401);
    let (status, _) = get(format!("http://{}/metrics", app.http_addr)).await;
    assert_eq!(status, 404, "not on the public listener");
    let (status, body) = get(format!("http://{metrics}/metrics")).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("anxin_logins_total"),
        "prometheus text: {body:.300}"
    );
    app.shutdown().await;
}
