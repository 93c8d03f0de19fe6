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

/// The web pages (issue 7): their own content policy (the hub's scripts, styles and
/// connections only, no inline script, no framing), the right content types, the login
/// for anonymous visitors, and 404s that answer JSON under /api and a page elsewhere.
#[tokio::test]
async fn pages_carry_their_own_strict_policy_and_anonymous_visitors_go_to_the_login() {
    let hub = TestHub::spawn().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    for (path, content_type) in [
        ("/login", "text/html; charset=utf-8"),
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/style.css", "text/css; charset=utf-8"),
    ] {
        let r = http
            .get(format!("{}{path}", hub.http))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert_eq!(get("content-type"), content_type, "{path}");
        let csp = get("content-security-policy");
        for part in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(part), "{path}: {part} in {csp}");
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(get("x-frame-options"), "DENY", "{path}");
        assert_eq!(get("x-content-type-options"), "nosniff", "{path}");
    }
    for (path, to) in [
        ("/board", "/login?next=/board"),
        ("/home/h-1", "/login?next=/home/h-1"),
        ("/supervisor", "/login?next=/supervisor"),
        ("/", "/login"),
    ] {
        let r = http
            .get(format!("{}{path}", hub.http))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(
            r.headers().get("location").and_then(|v| v.to_str().ok()),
            Some(to),
            "{path}"
        );
    }
    // Page shells are not served as assets; unknown paths: JSON under /api, a page elsewhere.
    let r = http
        .get(format!("{}/assets/board.html", hub.http))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404);
    let r = http
        .get(format!("{}/api/nothing-here", hub.http))
        .bearer_auth("demo-village-1")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"], "no endpoint /api/nothing-here");
    let r = http
        .get(format!("{}/nothing-here", hub.http))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404);
    assert!(r
        .text()
        .await
        .expect("text")
        .contains("data-page=\"not-found\""));
    hub.app.shutdown().await;
}
