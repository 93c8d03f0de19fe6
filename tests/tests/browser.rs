//! The web pages in a real browser (issue 7): headless Chromium over WebDriver against a
//! hub with the demo district. A village worker's board shows a fall published over
//! MQTT within 2 s, flashing and sounding; acknowledging it there shows it acknowledged
//! on the town's board; a board cut off by a hub restart is marked stale, reconnects
//! within seconds of the hub being back and catches up on what was raised meanwhile; a
//! reloaded board in a browser that blocks autoplay says its alarm is silent and sounds
//! after one click or key anywhere; a family sees its elder on a phone-sized screen and
//! cannot open another household's page.
//!
//! Skipped (with a message) where Chromium is not installed, unless
//! `ANXIN_BROWSER_TESTS=1` (CI) — see `anxin_tests::browser`. With
//! `ANXIN_SCREENSHOTS=docs/screenshots` the tests also save the README's screenshots.

use std::time::{Duration, Instant};

use anxin_tests::browser::{self, Browser, DESKTOP, PHONE};
use anxin_tests::{TestHub, PATIENCE};
use device_sim::payload;
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use serde_json::{json, Value};

/// One browser test at a time: Chromium is heavy on a 2-core machine, and the 2-second
/// check should measure the hub, not a fight for the CPU.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const PASSWORD: &str = hub::demo::DEMO_PASSWORD;

fn row(id: &str) -> String {
    format!(".alarm[data-alarm-id=\"{id}\"]")
}

async fn wait_connected(b: &Browser) {
    b.wait_js(
        "the page's websocket",
        "return document.body.dataset.conn === 'open';",
    )
    .await
    .expect("websocket open");
}

#[tokio::test]
async fn a_fall_reaches_the_village_board_within_2_s_and_its_acknowledgement_the_town_board() {
    let Some(chrome) = browser::available() else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().await;
    let hub = TestHub::spawn().await;
    let village = Browser::start(&chrome, &hub.http, DESKTOP)
        .await
        .expect("browser");
    let town = Browser::start(&chrome, &hub.http, DESKTOP)
        .await
        .expect("browser");
    village.login("c-village-1", PASSWORD).await.expect("login");
    town.login("c-town-1", PASSWORD).await.expect("login");
    for b in [&village, &town] {
        let path = b.js("return location.pathname;", vec![]).await.expect("js");
        assert_eq!(path, json!("/board"), "staff land on the board");
        wait_connected(b).await;
    }
    assert_eq!(
        village.text(".empty").await.expect("empty board"),
        "当前没有未处理的报警",
        "zh-CN by default"
    );
    assert_eq!(
        village
            .js("return document.body.dataset.alerting;", vec![])
            .await
            .expect("js"),
        json!("off")
    );

    // A fall in h-1 (village v-1, town t-1), published over MQTT by the detector.
    let started = Instant::now();
    let id = hub.raise("demo-fall-1", "fall").await;
    village
        .wait_js(
            "the fall on the village board",
            &format!("return !!document.querySelector('{}');", row(&id)),
        )
        .await
        .expect("alarm shown");
    let shown_after = started.elapsed();
    eprintln!("fall published -> on the village board: {shown_after:?}");
    assert!(
        shown_after < Duration::from_secs(2),
        "the alarm took {shown_after:?} to reach the board (target: 2 s)"
    );
    // Flashing and sounding until someone acknowledges.
    let state = village
        .js(
            &format!(
                "const r = document.querySelector('{}'); return [document.body.dataset.alerting, r.classList.contains('flash'), r.dataset.severity, r.querySelector('.where').textContent, r.querySelector('.ago').textContent];",
                row(&id)
            ),
            vec![],
        )
        .await
        .expect("js");
    assert_eq!(state[0], json!("on"), "the board is alerting");
    assert_eq!(state[1], json!(true), "the new critical alarm flashes");
    assert_eq!(state[2], json!("critical"));
    let where_ = state[3].as_str().unwrap_or_default();
    assert!(
        where_.contains("Demo Elder 1") && where_.contains("1 Demo Lane"),
        "the row names the elder and the address: {where_}"
    );
    assert_eq!(state[4], json!("刚刚"), "raised just now");
    village
        .wait_js(
            "the alarm sound to play",
            "return document.body.dataset.sound === 'on' && Number(document.body.dataset.beeps || 0) >= 1;",
        )
        .await
        .expect("sound plays");
    town.wait_js(
        "the fall on the town board",
        &format!("return !!document.querySelector('{}');", row(&id)),
    )
    .await
    .expect("town sees it");
    assert_eq!(village.horizontal_overflow().await.expect("overflow"), 0);
    assert_eq!(village.viewport().await.expect("viewport"), (1280, 800));
    village.screenshot("board").await.expect("screenshot");

    // The worker acknowledges on the board; the town's board shows it live.
    village
        .click(&format!("{} button.ack", row(&id)))
        .await
        .expect("acknowledge");
    town.wait_js(
        "the acknowledgement on the town board, with the worker's name",
        &format!(
            "const r = document.querySelector('{}'); return r && r.dataset.state === 'acknowledged' && r.textContent.includes('Demo contact 2（村）于');",
            row(&id)
        ),
    )
    .await
    .expect("town sees the acknowledgement");
    village
        .wait_js(
            "the village board to stop alerting",
            "return document.body.dataset.alerting === 'off';",
        )
        .await
        .expect("alerting stops");
    let beeps = village
        .js("return Number(document.body.dataset.beeps || 0);", vec![])
        .await
        .expect("js");
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(
        village
            .js("return Number(document.body.dataset.beeps || 0);", vec![])
            .await
            .expect("js"),
        beeps,
        "no more beeps once acknowledged"
    );
    let stored: Value = hub.api().alarm("demo-district", &id).await;
    assert_eq!(stored["alarm"]["state"], "acknowledged");
    assert_eq!(stored["alarm"]["acked_by"], "c-village-1");

    // The timeline on one click, and resolving with a disposition and a note.
    village.click(&row(&id)).await.expect("open the alarm");
    village
        .wait_js(
            "the timeline",
            "return document.querySelectorAll('#detail .timeline li[data-step=acknowledged]').length === 1 && location.pathname.startsWith('/board/alarms/');",
        )
        .await
        .expect("timeline shown");
    village
        .js(
            "document.querySelector('#disposition').value = 'visited_ok'; document.querySelector('#resolve-note').value = '已上门，老人平安';",
            vec![],
        )
        .await
        .expect("fill the form");
    village.click("#detail-resolve").await.expect("resolve");
    for b in [&village, &town] {
        b.wait_js(
            "the resolved alarm to leave the board",
            &format!("return !document.querySelector('{}');", row(&id)),
        )
        .await
        .expect("resolved alarm leaves the board");
    }
    let stored: Value = hub.api().alarm("demo-district", &id).await;
    assert_eq!(stored["alarm"]["disposition"], "visited_ok");
    assert_eq!(stored["alarm"]["resolution_note"], "已上门，老人平安");
    village.close().await;
    town.close().await;
    hub.app.shutdown().await;
}

#[tokio::test]
async fn a_board_cut_off_by_a_restart_shows_the_alarm_raised_meanwhile() {
    let Some(chrome) = browser::available() else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().await;
    let hub = TestHub::spawn().await;
    let board = Browser::start(&chrome, &hub.http, DESKTOP)
        .await
        .expect("browser");
    board.login("c-town-1", PASSWORD).await.expect("login");
    wait_connected(&board).await;
    assert_eq!(
        board.text(".empty").await.expect("empty board"),
        "当前没有未处理的报警"
    );

    // A 12 s outage (as a hub restart with a slow start took). While it lasts the board
    // must not claim there is nothing to do: the list is greyed and says it may be out
    // of date. Once the hub answers again the board must be live within seconds.
    const OUTAGE: Duration = Duration::from_secs(12);
    const STALE_JS: &str = "const l = document.querySelector('#alarms'); const next = document.querySelector('#conn-banner').textContent.match(/(\\d+) 秒后/); return [document.body.dataset.conn === 'lost' && l.classList.contains('stale') && l.innerText.includes('数据可能不是最新') && !l.innerText.includes('当前没有未处理的报警') && getComputedStyle(document.querySelector('main')).filter.includes('grayscale'), next ? Number(next[1]) : 0];";
    let mut stale_checks = (0, 0);
    // The longest wait for the next try the banner announced (the backoff's cap).
    let mut longest_backoff = 0;
    let hub = hub
        .restart_in_place(async {
            board
                .wait_js(
                    "the connection-lost banner",
                    "return document.body.dataset.conn === 'lost';",
                )
                .await
                .expect("banner while disconnected");
            let down = Instant::now();
            while down.elapsed() < OUTAGE {
                let check = board.js(STALE_JS, vec![]).await.expect("js");
                longest_backoff = longest_backoff.max(check[1].as_i64().unwrap_or_default());
                stale_checks.0 += 1;
                if check[0] == json!(true) {
                    stale_checks.1 += 1;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
        .await;
    // An SOS as soon as the hub is back, while the board reconnects.
    let back = Instant::now();
    let (sos, live_after) = tokio::join!(hub.raise("demo-pendant-1", "sos"), async {
        wait_connected(&board).await;
        back.elapsed()
    });
    board
        .wait_js(
            "the SOS raised as the hub came back",
            &format!("return !!document.querySelector('{}');", row(&sos)),
        )
        .await
        .expect("SOS shown");
    let sos_after = back.elapsed();
    eprintln!(
        "after a {OUTAGE:?} outage: hub back -> board live {live_after:?}, -> SOS shown {sos_after:?} (longest announced backoff {longest_backoff} s)"
    );
    assert!(
        (1..=5).contains(&longest_backoff),
        "the next try is never more than 5 s away (announced: {longest_backoff} s)"
    );
    assert_eq!(
        stale_checks.1, stale_checks.0,
        "the list is marked stale all through the outage ({} of {} checks)",
        stale_checks.1, stale_checks.0
    );
    assert!(
        live_after < Duration::from_millis(2500),
        "the board took {live_after:?} to reconnect once the hub was back"
    );
    let stale_after = board
        .js(
            "const l = document.querySelector('#alarms'); return [l.classList.contains('stale'), !!l.querySelector('.stale-note'), getComputedStyle(document.querySelector('main')).filter];",
            vec![],
        )
        .await
        .expect("js");
    assert_eq!(
        stale_after,
        json!([false, false, "none"]),
        "not marked stale once live"
    );
    let (status, body) = hub
        .api()
        .post(
            "demo-town-1",
            &format!("/api/alarms/{sos}/resolve"),
            json!({ "disposition": "false_alarm" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // An alarm the board saw before the cut, acknowledged meanwhile: it must change too.
    let before = hub.raise("demo-pendant-1", "sos").await;
    board
        .wait_js(
            "the first alarm",
            &format!("return !!document.querySelector('{}');", row(&before)),
        )
        .await
        .expect("first alarm shown");

    let hub = hub
        .restart_in_place(async {
            board
                .wait_js(
                    "the connection-lost banner",
                    "const b = document.querySelector('#conn-banner'); return document.body.dataset.conn === 'lost' && !b.hidden && b.textContent.includes('连接已断开');",
                )
                .await
                .expect("banner while disconnected");
            board.screenshot("board-offline").await.expect("screenshot");
        })
        .await;
    // Raised while the board is still waiting to reconnect (its first retry is ~1 s
    // after the cut; the hub is back and the alarm committed well before that).
    let during = hub.raise("demo-pendant-2", "sos").await;
    let (status, body) = hub
        .api()
        .post(
            "demo-town-1",
            &format!("/api/alarms/{before}/acknowledge"),
            json!({ "note": "phoned her" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    board
        .wait_js(
            "the alarm raised during the cut, and the other's new state",
            &format!(
                "const a = document.querySelector('{}'); const b = document.querySelector('{}'); return !!a && b && b.dataset.state === 'acknowledged' && document.body.dataset.conn === 'open';",
                row(&during),
                row(&before)
            ),
        )
        .await
        .expect("caught up after reconnecting");
    let (reconnects, banner_hidden) = {
        let v = board
            .js(
                "return [Number(document.body.dataset.reconnects || 0), document.querySelector('#conn-banner').hidden];",
                vec![],
            )
            .await
            .expect("js");
        (v[0].clone(), v[1].clone())
    };
    assert!(reconnects.as_i64() >= Some(1), "reconnected: {reconnects}");
    assert_eq!(banner_hidden, json!(true), "banner gone once connected");
    board.close().await;
    hub.app.shutdown().await;
}

/// A wall board reloaded (or re-opened) in a browser that blocks autoplay: while a
/// critical alarm waits unacknowledged, a full-width banner says the sound is blocked,
/// and one click anywhere on the page (not on the sound button) starts the beeps.
#[tokio::test]
async fn a_reloaded_board_says_its_sound_is_blocked_and_one_click_anywhere_starts_it() {
    let Some(chrome) = browser::available() else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().await;
    let hub = TestHub::spawn().await;
    let id = hub.raise("demo-pendant-1", "sos").await;
    let board = Browser::start_blocking_autoplay(&chrome, &hub.http, DESKTOP)
        .await
        .expect("browser");
    board.login("c-village-1", PASSWORD).await.expect("login");
    wait_connected(&board).await;
    // Whether the login's click carried over to the board depends on the browser;
    // reported, not required.
    let after_login = board
        .wait_js(
            "the board's sound state",
            "return document.body.dataset.sound;",
        )
        .await
        .expect("sound state");
    eprintln!("sound state on the board right after logging in: {after_login}");

    // The reload: a new page, no gesture on it yet.
    board.client.refresh().await.expect("reload");
    board.wait_ready().await.expect("board after the reload");
    wait_connected(&board).await;
    let silent = board
        .wait_js(
            "the silent-alarm banner",
            &format!(
                "const b = document.querySelector('#sound-banner'); return !!document.querySelector('{}') && document.body.dataset.alerting === 'on' && document.body.dataset.sound === 'blocked' && b && !b.hidden && b.offsetWidth >= window.innerWidth - 1 ? b.innerText : null;",
                row(&id)
            ),
        )
        .await
        .expect("the banner says the alarm is silent");
    assert!(
        silent
            .as_str()
            .unwrap_or_default()
            .contains("浏览器阻止了报警声音"),
        "{silent}"
    );
    assert_eq!(
        board
            .js("return Number(document.body.dataset.beeps || 0);", vec![])
            .await
            .expect("js"),
        json!(0),
        "no beep while the browser blocks the sound"
    );
    board
        .screenshot("board-sound-blocked")
        .await
        .expect("screenshot");

    // One click on the list's heading: not the sound button, not a row.
    let clicked = Instant::now();
    board.click(".list-head h1").await.expect("click");
    board
        .wait_js(
            "the first beep after the click",
            "return document.body.dataset.sound === 'on' && Number(document.body.dataset.beeps || 0) >= 1 && document.querySelector('#sound-banner').hidden;",
        )
        .await
        .expect("one click anywhere starts the sound");
    eprintln!("click anywhere -> first beep: {:?}", clicked.elapsed());
    assert_eq!(
        board
            .js(
                "return [!!document.querySelector('#sound-btn'), location.pathname];",
                vec![]
            )
            .await
            .expect("js"),
        json!([false, "/board"]),
        "the sound button is gone and the click opened nothing"
    );

    // A key counts as well as a click.
    board.client.refresh().await.expect("reload");
    board.wait_ready().await.expect("board after the reload");
    board
        .wait_js(
            "the silent-alarm banner again",
            "return document.body.dataset.sound === 'blocked' && document.body.dataset.alerting === 'on' && !document.querySelector('#sound-banner').hidden;",
        )
        .await
        .expect("silent again after a reload");
    board
        .client
        .perform_actions(
            KeyActions::new("keyboard".to_owned())
                .then(KeyAction::Down { value: 'x' })
                .then(KeyAction::Up { value: 'x' }),
        )
        .await
        .expect("a key");
    board
        .wait_js(
            "a beep after a key",
            "return document.body.dataset.sound === 'on' && Number(document.body.dataset.beeps || 0) >= 1;",
        )
        .await
        .expect("one key starts the sound");
    board.close().await;

    // The board PC setting docs/pages.md gives: the hub's address allowed to play sound.
    let kiosk = Browser::start_with_sound_allowed_for_the_site(&chrome, &hub.http, DESKTOP)
        .await
        .expect("browser");
    kiosk.login("c-village-1", PASSWORD).await.expect("login");
    kiosk.client.refresh().await.expect("reload");
    kiosk.wait_ready().await.expect("board after the reload");
    kiosk
        .wait_js(
            "a beep without any click on the reloaded board",
            "return document.body.dataset.sound === 'on' && Number(document.body.dataset.beeps || 0) >= 1 && document.querySelector('#sound-banner').hidden;",
        )
        .await
        .expect("a site allowed to play sound beeps after a reload");
    kiosk.close().await;
    hub.app.shutdown().await;
}

#[tokio::test]
async fn a_family_sees_its_elder_on_a_phone_and_cannot_open_another_home() {
    let Some(chrome) = browser::available() else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().await;
    let hub = TestHub::spawn().await;
    let phone = Browser::start(&chrome, &hub.http, PHONE)
        .await
        .expect("browser");
    // A crafted link cannot send the login on to another site.
    phone
        .login_at("/login?next=/%5Cexample.com", "c-family-1", PASSWORD)
        .await
        .expect("login");
    assert_eq!(
        phone
            .js("return [location.host, location.pathname];", vec![])
            .await
            .expect("js"),
        json!([hub.http.trim_start_matches("http://"), "/family"]),
        "a family account lands on the family view, on this hub"
    );
    let card = ".elder-card[data-household=\"h-1\"]";
    phone
        .wait_js(
            "the elder's card",
            &format!("const c = document.querySelector('{card}'); return c && c.dataset.status === 'normal';"),
        )
        .await
        .expect("card");
    let text = phone.text(card).await.expect("card text");
    assert!(text.contains("Demo Elder 1"), "{text}");
    assert!(text.contains("一切正常"), "plain status: {text}");
    assert_eq!(
        phone
            .js(
                "return document.querySelectorAll('.elder-card').length;",
                vec![]
            )
            .await
            .expect("js"),
        json!(1),
        "only their own elder"
    );
    assert_eq!(phone.viewport().await.expect("viewport"), (390, 844));
    assert_eq!(phone.horizontal_overflow().await.expect("overflow"), 0);

    // An SOS: the card turns into the alarm, and "I'm handling it" acknowledges it.
    let id = hub.raise("demo-pendant-1", "sos").await;
    phone
        .wait_js(
            "the alarm on the card",
            &format!("const c = document.querySelector('{card}'); return c.dataset.status === 'alarm' && !!c.querySelector('.alert-box[data-alarm-id=\"{id}\"] button.handle');"),
        )
        .await
        .expect("alarm on the card");
    assert_eq!(phone.horizontal_overflow().await.expect("overflow"), 0);
    phone.screenshot("family").await.expect("screenshot");
    phone
        .js(
            &format!("document.querySelector('{card} .fam-note').value = '我已打电话，妈妈没事';"),
            vec![],
        )
        .await
        .expect("note");
    phone
        .click(&format!("{card} button.handle"))
        .await
        .expect("handle");
    phone
        .wait_js(
            "the card to show it handled",
            &format!("const b = document.querySelector('.alert-box[data-alarm-id=\"{id}\"]'); return b && b.dataset.state === 'acknowledged';"),
        )
        .await
        .expect("acknowledged");
    let stored: Value = hub.api().alarm("demo-district", &id).await;
    assert_eq!(stored["alarm"]["acked_by"], "c-family-1");
    let noted = stored["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .any(|s| s["step"] == "acknowledged" && s["detail"]["note"] == "我已打电话，妈妈没事");
    assert!(noted, "the note is on the timeline: {}", stored["timeline"]);

    // URL tampering: another household's page and data are not there for this account.
    for path in ["/home/h-2", "/home/h-does-not-exist", "/supervisor"] {
        phone.goto(path).await.expect("goto");
        phone
            .wait_js(
                "the not-found page",
                "return document.body.dataset.page === 'not-found';",
            )
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    let status = phone
        .js(
            "return fetch('/api/households/h-2').then(r => r.status);",
            vec![],
        )
        .await
        .expect("fetch");
    assert_eq!(status, json!(404));
    let other = hub.raise("demo-pendant-2", "sos").await;
    phone
        .goto(&format!("/board/alarms/{other}"))
        .await
        .expect("goto");
    phone
        .wait_js(
            "the not-found page",
            "return document.body.dataset.page === 'not-found';",
        )
        .await
        .expect("another household's alarm is not found");
    // Its own home page works.
    phone.goto("/home/h-1").await.expect("goto");
    phone.wait_ready().await.expect("home view");

    // English on request, remembered.
    phone.goto("/family").await.expect("goto");
    phone.wait_ready().await.expect("family view");
    phone
        .js(
            "const s = document.querySelector('#lang'); s.value = 'en'; s.dispatchEvent(new Event('change'));",
            vec![],
        )
        .await
        .expect("switch language");
    phone
        .wait_js(
            "the English page",
            "return document.body.dataset.ready === '1' && document.documentElement.lang === 'en' && document.querySelector('h1').textContent === 'My family';",
        )
        .await
        .expect("english");
    phone.close().await;
    hub.app.shutdown().await;
}

#[tokio::test]
async fn the_home_view_and_the_supervisor_view_show_a_districts_state() {
    let Some(chrome) = browser::available() else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().await;
    let hub = TestHub::spawn().await;
    // Some life in h-1, a low battery, and alarms in two villages, one acknowledged.
    let pir = hub.device("demo-pir-1").await;
    pir.send(&payload::event("motion", json!({ "occupancy": true })))
        .await
        .expect("motion");
    pir.send(&payload::event("battery", json!({ "percent": 15 })))
        .await
        .expect("battery");
    let a1 = hub.raise("demo-pendant-1", "sos").await;
    let _a2 = hub.raise("demo-pendant-2", "sos").await;
    let _a3 = hub.raise("demo-fall-1", "fall").await;
    hub.clock.advance(Duration::from_secs(95));
    let (status, body) = hub
        .api()
        .post(
            "demo-village-1",
            &format!("/api/alarms/{a1}/acknowledge"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let b = Browser::start(&chrome, &hub.http, DESKTOP)
        .await
        .expect("browser");
    b.login("c-village-1", PASSWORD).await.expect("login");
    b.goto("/home/h-1").await.expect("goto");
    b.wait_ready().await.expect("home view");
    let devices = b
        .js(
            "return [...document.querySelectorAll('#devices tbody tr')].map(r => [r.dataset.device, r.cells[2].textContent, r.cells[3].textContent, r.cells[4].textContent]);",
            vec![],
        )
        .await
        .expect("devices");
    let pir_row = devices
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r[0] == "demo-pir-1")
        .cloned()
        .unwrap_or_else(|| panic!("demo-pir-1 listed: {devices}"));
    assert_eq!(pir_row[1], "在线", "{pir_row}");
    assert_eq!(pir_row[2], "15%", "{pir_row}");
    assert!(
        pir_row[3].as_str().unwrap_or_default().contains("电量"),
        "{pir_row}"
    );
    let last = b.text("#last-activity").await.expect("last activity");
    assert!(!last.contains("尚无"), "motion counts as activity: {last}");
    let events = b.text(".events").await.expect("events");
    assert!(events.contains("人体感应"), "{events}");
    assert_eq!(b.horizontal_overflow().await.expect("overflow"), 0);
    b.screenshot("home").await.expect("screenshot");
    // Outside the village: 404.
    b.goto("/home/h-3").await.expect("goto");
    b.wait_js(
        "not found",
        "return document.body.dataset.page === 'not-found';",
    )
    .await
    .expect("h-3 is outside v-1");
    b.close().await;

    let d = Browser::start(&chrome, &hub.http, DESKTOP)
        .await
        .expect("browser");
    d.login("c-district", PASSWORD).await.expect("login");
    d.goto("/supervisor").await.expect("goto");
    d.wait_ready().await.expect("supervisor view");
    let tiles = d
        .js(
            "return ['#k-open', '#k-unacked', '#k-median'].map(s => document.querySelector(s + ' .v').textContent);",
            vec![],
        )
        .await
        .expect("tiles");
    assert_eq!(tiles[0], "3", "{tiles}");
    assert_eq!(tiles[1], "2", "{tiles}");
    assert_eq!(
        tiles[2], "1 分 35 秒",
        "one acknowledgement after 95 s: {tiles}"
    );
    let bars = d
        .js(
            "return document.querySelectorAll('#chart-villages rect.bar').length;",
            vec![],
        )
        .await
        .expect("chart");
    assert_eq!(
        bars,
        json!(4),
        "two villages with open alarms, two bars each"
    );
    assert_eq!(d.horizontal_overflow().await.expect("overflow"), 0);
    d.screenshot("supervisor").await.expect("screenshot");
    d.close().await;

    // Village workers are often on a phone: the board fits one too, alarm panel included.
    let p = Browser::start(&chrome, &hub.http, PHONE)
        .await
        .expect("browser");
    p.login("c-village-1", PASSWORD).await.expect("login");
    p.wait_js(
        "two alarms on the phone board",
        "return document.querySelectorAll('.alarm').length === 2;",
    )
    .await
    .expect("alarms");
    assert_eq!(p.horizontal_overflow().await.expect("overflow"), 0);
    p.screenshot("board-phone").await.expect("screenshot");
    p.click(".alarm").await.expect("open");
    p.wait_js(
        "the alarm panel",
        "return !!document.querySelector('#detail .timeline li');",
    )
    .await
    .expect("panel");
    assert_eq!(p.horizontal_overflow().await.expect("overflow"), 0);
    p.close().await;
    hub.app.shutdown().await;
}

#[tokio::test]
async fn the_board_shows_who_was_called_and_whether_they_answered() {
    use anxin_tests::fake_twilio::FakeTwilio;
    let Some(chrome) = browser::available() else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().await;
    const VILLAGE_PHONE: &str = "+8613800000001";
    const FAMILY_PHONE: &str = "+8613800000002";
    let fake = FakeTwilio::start("AC00000000000000000000000000000001", "fake-auth-token").await;
    // The hub's public URL (for Twilio's callbacks) must be known before it starts.
    let tweak = fake.hub_tweak(|_| {});
    let hub = TestHub::spawn_tweaked(hub::clock::Clock::now(&hub::clock::SystemClock), tweak).await;
    let now = hub::clock::Clock::now(&hub.clock);
    for (id, name, role, scope, phone, token) in [
        (
            "c-village-1",
            "Wang Wei",
            "village",
            "village:v-1",
            VILLAGE_PHONE,
            "demo-village-1",
        ),
        (
            "c-family-1",
            "Li Na",
            "family",
            "household:h-1",
            FAMILY_PHONE,
            "demo-family-1",
        ),
    ] {
        let scope = hub::store::Scope::parse(scope).expect("scope");
        hub.app
            .store
            .upsert_contact(id, name, Some(phone), role, &scope, 0, None, token, now)
            .await
            .expect("contact with a phone");
        sqlx::query("UPDATE contacts SET channels = 'critical=voice' WHERE id = $1")
            .bind(id)
            .execute(hub.app.store.pool())
            .await
            .expect("channels");
    }
    let board = Browser::start(&chrome, &hub.http, DESKTOP)
        .await
        .expect("browser");
    board.login("c-village-1", PASSWORD).await.expect("login");
    wait_connected(&board).await;

    let id = hub.raise("demo-pendant-1", "sos").await;
    let calls = fake.wait_for_calls(2, PATIENCE).await;
    let sid_to = |phone: &str| {
        calls
            .iter()
            .find(|c| c.param("To") == Some(phone))
            .map(|c| c.sid().to_owned())
            .unwrap_or_else(|| panic!("a call to {phone}"))
    };
    // The board lists both calls first (sent, no answer yet) ...
    board
        .wait_js(
            "both calls on the row",
            &format!(
                "const r = document.querySelector('{}'); return r && [...r.querySelectorAll('.deliveries .chip')].filter(c => c.textContent.includes('电话')).length === 2;",
                row(&id)
            ),
        )
        .await
        .expect("calls listed");
    // ... then Twilio reports how they went.
    assert_eq!(
        fake.status_callback(&sid_to(FAMILY_PHONE), "completed")
            .await
            .status,
        200
    );
    assert_eq!(
        fake.status_callback(&sid_to(VILLAGE_PHONE), "no-answer")
            .await
            .status,
        200
    );
    // The row lists each person called, the channel and the outcome: the hub tells the
    // board when a delivery changes (its periodic refresh, every 30 s, is too slow here).
    let chips = browser::wait_js_for(
        &board,
        "the call outcomes on the row",
        &format!(
            "const r = document.querySelector('{}'); if (!r) return null; const t = [...r.querySelectorAll('.deliveries .chip')].map(c => c.textContent); return t.includes('Li Na · 电话 · 已接听') && t.includes('Wang Wei · 电话 · 无人接听') ? t : null;",
            row(&id)
        ),
        Duration::from_secs(5),
    )
    .await
    .expect("outcomes shown");
    eprintln!("delivery chips: {chips}");
    // "On my way" from the alarm's panel acknowledges it with an arrival time.
    board.click(&row(&id)).await.expect("open");
    board
        .wait_js(
            "the panel",
            "return !!document.querySelector('#detail-en-route');",
        )
        .await
        .expect("panel");
    board.click("#detail-en-route").await.expect("on my way");
    board
        .wait_js(
            "the row to show 'on the way'",
            &format!("const r = document.querySelector('{}'); return r && r.dataset.state === 'acknowledged' && r.textContent.includes('正在赶往现场，预计');", row(&id)),
        )
        .await
        .expect("en route");
    board
        .wait_js(
            "the panel to show the new state",
            "return !!document.querySelector('#detail .timeline li[data-step=acknowledged]');",
        )
        .await
        .expect("timeline updated");
    board.screenshot("board-alarm").await.expect("screenshot");
    let stored = hub.api().alarm("demo-district", &id).await;
    assert_eq!(stored["alarm"]["response"], "en_route");
    assert_eq!(stored["alarm"]["acked_by"], "c-village-1");
    board.close().await;
    hub.app.shutdown().await;
}

/// Every ASCII token of `s` (runs of letters, digits and `_ : . -`), as the pages' raw-code
/// check splits visible text.
fn ascii_tokens(s: &str) -> Vec<String> {
    s.split(|c: char| !(c.is_ascii_alphanumeric() || "_:.-".contains(c)))
        .map(|t| t.trim_matches(|c: char| c == '.' || c == ':' || c == '-'))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The ASCII tokens a zh-CN page may show: ids, names and addresses of the demo data
/// (what the district's directory and the homes' device lists hold), the product's
/// own words (SOS), and the language picker's "English". Never a role, a step or a
/// state: those have Chinese texts.
async fn allowed_tokens(hub: &TestHub) -> std::collections::BTreeSet<String> {
    let (status, dir) = hub.api().get("demo-district", "/api/directory").await;
    assert_eq!(status, 200, "{dir}");
    let mut strings: Vec<String> = vec!["SOS".into(), "English".into()];
    let text = |v: &Value| v.as_str().map(str::to_owned);
    for p in dir["people"].as_array().into_iter().flatten() {
        strings.extend([text(&p["id"]), text(&p["name"])].into_iter().flatten());
    }
    for v in dir["villages"].as_array().into_iter().flatten() {
        for k in ["id", "name", "town_id", "town_name"] {
            strings.extend(text(&v[k]));
        }
    }
    for h in dir["households"].as_array().into_iter().flatten() {
        for k in [
            "id",
            "address",
            "village_id",
            "village_name",
            "town_id",
            "town_name",
        ] {
            strings.extend(text(&h[k]));
        }
        strings.extend(
            h["elders"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(text),
        );
        let id = h["id"].as_str().unwrap_or_default();
        let (_, home) = hub
            .api()
            .get("demo-district", &format!("/api/households/{id}"))
            .await;
        for d in home["devices"].as_array().into_iter().flatten() {
            strings.extend(text(&d["id"]));
        }
        for e in home["elders"].as_array().into_iter().flatten() {
            strings.extend(text(&e["name"]));
        }
    }
    strings.iter().flat_map(|s| ascii_tokens(s)).collect()
}

/// Fail on any visible text of the page that is a raw code or English: an ASCII token
/// with a run of 3+ letters that is not an id or a name of the demo data (`en_route`,
/// `on_site`, `hub`, `device:demo-pendant-1`, `family`, `min` all fail).
async fn assert_no_raw_text(b: &Browser, page: &str, allowed: &std::collections::BTreeSet<String>) {
    let text = b
        .js("return document.body.innerText;", vec![])
        .await
        .expect("page text");
    let text = text.as_str().unwrap_or_default();
    let has_word = |t: &str| {
        t.as_bytes()
            .windows(3)
            .any(|w| w.iter().all(u8::is_ascii_alphabetic))
    };
    let bad: Vec<String> = ascii_tokens(text)
        .into_iter()
        .filter(|t| has_word(t) && !allowed.contains(t))
        .collect();
    assert!(
        bad.is_empty(),
        "{page}: raw codes or English on the zh-CN page: {bad:?}\n---\n{text}"
    );
}

#[tokio::test]
async fn every_text_on_the_zh_cn_pages_is_chinese_and_says_who_was_told() {
    let Some(chrome) = browser::available() else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().await;
    let hub = TestHub::spawn().await;
    let allowed = allowed_tokens(&hub).await;
    assert!(
        !allowed.contains("hub") && !allowed.contains("family") && !allowed.contains("en_route"),
        "the allow-list holds only data: {allowed:?}"
    );
    let pir = hub.device("demo-pir-1").await;
    pir.send(&payload::event("motion", json!({ "occupancy": true })))
        .await
        .expect("motion");
    // An SOS in h-1 nobody takes for 200 s climbs to the town (c-town-1 is told); then
    // the family takes it and the village worker is on the way.
    let sos = hub.raise("demo-pendant-1", "sos").await;
    hub.advance(200);
    hub.app.alarms.run_due().await.expect("escalation pass");
    let (status, body) = hub
        .api()
        .post(
            "demo-family-1",
            &format!("/api/alarms/{sos}/acknowledge"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = hub
        .api()
        .post(
            "demo-village-1",
            &format!("/api/alarms/{sos}/en-route"),
            json!({ "eta_minutes": 20 }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // A fall nobody has taken yet.
    let fall = hub.raise("demo-fall-1", "fall").await;

    // The board: each row says who was told, at which level, by name and role.
    let b = Browser::start(&chrome, &hub.http, DESKTOP)
        .await
        .expect("browser");
    b.login("c-village-1", PASSWORD).await.expect("login");
    wait_connected(&b).await;
    let told = |id: &str| {
        format!(
            "const r = document.querySelector('{}'); return r && r.querySelectorAll('.told .told-line').length ? [...r.querySelectorAll('.told .told-line')].map(l => l.textContent) : null;",
            row(id)
        )
    };
    let sos_told = browser::wait_js_for(&b, "who was told of the SOS", &told(&sos), PATIENCE)
        .await
        .expect("recipients on the SOS row");
    assert_eq!(
        sos_told,
        json!([
            "已通知：Demo contact 1（家属）、Demo contact 2（村）",
            "已上报至镇/街道：Demo contact 5（镇）"
        ]),
        "the people told at each level, by name and role"
    );
    let fall_told = browser::wait_js_for(&b, "who was told of the fall", &told(&fall), PATIENCE)
        .await
        .expect("recipients on the fall row");
    assert_eq!(
        fall_told,
        json!(["已通知：Demo contact 1（家属）、Demo contact 2（村）"])
    );
    let sos_row = b
        .js(
            &format!(
                "const r = document.querySelector('{}'); return [r.querySelectorAll('.badge').length, r.querySelector('.badge').textContent, r.querySelector('.level').textContent, r.querySelector('.acked').textContent];",
                row(&sos)
            ),
            vec![],
        )
        .await
        .expect("row");
    assert_eq!(sos_row[0], json!(1), "one status badge per row: {sos_row}");
    let badge = sos_row[1].as_str().unwrap_or_default();
    assert!(
        badge.starts_with("正在赶往现场，预计 ") && badge.ends_with(" 到"),
        "on the way, with the arrival time: {badge}"
    );
    assert_eq!(sos_row[2], json!("已上报至：镇/街道"));
    let acked = sos_row[3].as_str().unwrap_or_default();
    assert!(
        acked.starts_with("Demo contact 1（家属）于 "),
        "the family member who took it, shown as family: {acked}"
    );
    assert_no_raw_text(&b, "board", &allowed).await;

    // The alarm's panel: the detail from the rule, the timeline in words.
    b.click(&row(&sos)).await.expect("open the SOS");
    b.wait_js(
        "the timeline with the on-my-way step and who was told",
        "return !!document.querySelector('#detail .timeline li[data-step=en_route]') && document.querySelectorAll('#detail-told .told-line').length === 2;",
    )
    .await
    .expect("panel");
    let steps = b
        .js(
            "return [...document.querySelectorAll('#detail .timeline li')].map(l => [l.dataset.step, l.textContent]);",
            vec![],
        )
        .await
        .expect("timeline");
    let steps = steps.as_array().cloned().unwrap_or_default();
    let step = |name: &str| -> Vec<String> {
        steps
            .iter()
            .filter(|s| s[0] == name)
            .map(|s| s[1].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert!(
        step("raised")
            .iter()
            .any(|t| t.contains("报警设备 demo-pendant-1")),
        "raised by the device, said in words: {steps:?}"
    );
    let notified = step("notified");
    assert!(
        notified
            .iter()
            .any(|t| t.contains("已通知")
                && t.contains("Demo contact 1（家属）、Demo contact 2（村）")),
        "{notified:?}"
    );
    assert!(
        notified
            .iter()
            .any(|t| t.contains("已上报至镇/街道") && t.contains("Demo contact 5（镇）")),
        "{notified:?}"
    );
    assert!(
        step("escalated")
            .iter()
            .any(|t| t.contains("上报至镇/街道") && t.contains("系统")),
        "{steps:?}"
    );
    assert!(
        step("acknowledged")
            .iter()
            .any(|t| t.contains("Demo contact 1（家属）")),
        "{steps:?}"
    );
    assert!(
        step("en_route")
            .iter()
            .any(|t| t.contains("正在赶往现场") && t.contains("预计")),
        "{steps:?}"
    );
    assert_eq!(
        b.text("#detail-text").await.expect("detail"),
        "设备 demo-pendant-1 的 SOS 按钮被按下"
    );
    assert_no_raw_text(&b, "alarm panel", &allowed).await;
    b.click(&row(&fall)).await.expect("open the fall");
    b.wait_js(
        "the fall's panel",
        "return !!document.querySelector('#detail-ack') && !!document.querySelector('#detail .timeline li[data-step=notified]');",
    )
    .await
    .expect("panel");
    assert_eq!(
        b.text("#detail-en-route").await.expect("button"),
        "我正在赶往现场"
    );
    assert_no_raw_text(&b, "alarm panel (new alarm)", &allowed).await;

    // The home view: contacts' roles in words.
    b.goto("/home/h-1").await.expect("goto");
    b.wait_ready().await.expect("home view");
    let duty = b.text("#home").await.expect("home");
    assert!(duty.contains("家属") || duty.contains("村"), "{duty}");
    assert_no_raw_text(&b, "home view", &allowed).await;

    // The supervisor view: one duration format (the SOS waited 200 s).
    b.goto("/supervisor").await.expect("goto");
    b.wait_ready().await.expect("supervisor view");
    b.wait_js(
        "the tiles",
        "return !!document.querySelector('#k-median .v');",
    )
    .await
    .expect("tiles");
    assert_eq!(b.text("#k-median .v").await.expect("median"), "3 分 20 秒");
    assert_no_raw_text(&b, "supervisor view", &allowed).await;
    b.close().await;

    // The family view: the family member sees that they took it, and who is on the way.
    let f = Browser::start(&chrome, &hub.http, PHONE)
        .await
        .expect("browser");
    f.login("c-family-1", PASSWORD).await.expect("login");
    let card = ".elder-card[data-household=\"h-1\"]";
    f.wait_js(
        "the family card with the alarms",
        &format!("const c = document.querySelector('{card}'); return c && c.dataset.status === 'alarm' && !!c.querySelector('.alert-box[data-alarm-id=\"{sos}\"]');"),
    )
    .await
    .expect("card");
    let boxed = f
        .text(&format!(".alert-box[data-alarm-id=\"{sos}\"]"))
        .await
        .expect("alarm box");
    assert!(
        boxed.contains("您正在处理") && boxed.contains("正在赶往现场，预计"),
        "{boxed}"
    );
    assert_no_raw_text(&f, "family view", &allowed).await;
    // The same in English, from the same catalogue.
    f.js(
        "localStorage.setItem('anxin.lang', 'en'); location.reload();",
        vec![],
    )
    .await
    .expect("switch to English");
    f.wait_js(
        "the English family view with the alarm",
        &format!("return document.documentElement.lang === 'en' && document.body.dataset.ready === '1' && !!document.querySelector('.alert-box[data-alarm-id=\"{sos}\"]');"),
    )
    .await
    .expect("english");
    let boxed = f
        .text(&format!(".alert-box[data-alarm-id=\"{sos}\"]"))
        .await
        .expect("alarm box");
    assert!(
        boxed.contains("SOS button pressed")
            && boxed.contains("You are handling it")
            && boxed.contains("On the way, arriving "),
        "{boxed}"
    );
    f.close().await;
    hub.app.shutdown().await;
}
