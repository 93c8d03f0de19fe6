//! The hub refuses to start on bad configuration, and says exactly what is wrong.

use std::sync::Arc;

use hub::clock::ManualClock;
use hub::App;

#[tokio::test]
async fn an_invalid_rules_file_stops_start_up_with_its_line_number() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "timezone_offset = \"+08:00\"\n\n[[rule]]\nid = \"day\"\nkind = \"inactivity\"\nactivity = [\"motion\"]\nhours = 4.0\nwindow = \"07:00-25:00\"\nseverity = \"warning\"\ntitle = \"t\"\n",
    )
    .expect("write");
    let mut settings = anxin_tests::settings_for(dir.path());
    settings.rules.file = Some(rules);
    let err = match App::build(settings, Arc::new(ManualClock::new(0))).await {
        Ok(_) => panic!("hub started with an invalid rules file"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("rules.toml"), "{err}");
    assert!(err.contains("line 8"), "{err}");
}

#[tokio::test]
async fn a_taken_mqtt_port_is_an_error_not_a_silent_log_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut settings = anxin_tests::settings_for(dir.path());
    settings.mqtt.listen = taken.local_addr().expect("addr");
    let err = match App::build(settings, Arc::new(ManualClock::new(0))).await {
        Ok(_) => panic!("hub started on a taken port"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("not available"), "{err}");
}
