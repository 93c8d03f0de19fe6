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
