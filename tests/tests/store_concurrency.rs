//! Regression: "database is locked" lost a device-offline alarm in the 30-day simulation.
//! Deferred transactions that read, then write, fail at once when another connection
//! wrote in between; write transactions now take the lock at BEGIN and wait for it.

use alert_rules::{Action, Decision, Severity};
use hub::store::{Deadlines, Store};

#[tokio::test]
async fn concurrent_raises_and_acknowledgements_never_fail_with_database_is_locked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::connect(&format!(
        "sqlite://{}",
        dir.path().join("anxin.db").display()
    ))
    .await
    .expect("db");
    hub::demo::seed(&store, 0).await.expect("seed");
    let deadlines = Deadlines {
        level_deadline_at: Some(1_000),
        renotify_at: None,
        overdue_at: None,
    };
    let mut tasks = Vec::new();
    for i in 0..64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let d = Decision {
                action: Action::Raise,
                household: Some(["h-1", "h-2", "h-3"][i % 3].to_owned()),
                village: None,
                max_level: None,
                device: Some(format!("dev-{i}")),
                rule_id: "device-offline".into(),
                condition_key: format!("device-offline:dev-{i}"),
                severity: Severity::Warning,
                title: "Device offline".into(),
                detail: String::new(),
                at: 0,
            };
            let raised = store.raise(&d, deadlines, None, i as i64).await?;
            store
                .acknowledge(
                    &raised.alarm.id,
                    "c-district",
                    "api",
                    None,
                    None,
                    i as i64 + 1,
                )
                .await?;
            Ok::<_, hub::store::StoreError>(())
        }));
    }
    for t in tasks {
        t.await
            .expect("task")
            .expect("no write may fail under concurrency");
    }
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM alarms WHERE state = 'acknowledged'")
        .fetch_one(store.pool())
        .await
        .expect("count");
    assert_eq!(n, 64);
}
