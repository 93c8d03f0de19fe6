//! Issue 5: the permission matrix. For every role, every REST endpoint and websocket
//! subscription is tried inside and outside the role's scope, and the answer (status
//! and content) is checked against the table. A family account must not see another
//! household's alarm by any REST or websocket request.
//!
//! Every row goes through one helper, [`check`]; a failing row does not stop the run, so
//! one run prints every mismatch as a table (role, method, path, expected, got).
//!
//! The reading and acting-outside sections run twice: with each account's API token, and
//! with a session from `POST /api/login` sent as the board's cookie (REST and websocket).
//!
//! Grouped village incidents are not created here (they need a village-wide outage):
//! tests/tests/detection.rs covers who sees them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anxin_tests::{TestHub, PATIENCE};
use device_sim::{payload, Device};
use futures::StreamExt;
use hub::clock::Clock;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{self, Message};

/// A token no contact has.
const BAD_TOKEN: &str = "not-a-token";
/// An alarm id that does not exist.
const NO_SUCH_ALARM: &str = "00000000-0000-4000-8000-000000000000";
/// A Monday (the visit report takes the week's Monday).
const MONDAY: &str = "2026-11-30";
/// How long a websocket must stay quiet before we conclude nothing more is coming.
const QUIET: Duration = Duration::from_millis(1000);

const HOUSEHOLDS: [&str; 3] = ["h-1", "h-2", "h-3"];

/// One demo account and what its scope covers.
struct Role {
    name: &'static str,
    token: &'static str,
    /// The account id (recorded as the actor).
    contact: &'static str,
    scope: &'static str,
    households: &'static [&'static str],
    /// Villages the scope contains (none for a household scope).
    villages: &'static [&'static str],
}

impl Role {
    fn staff(&self) -> bool {
        !self.villages.is_empty()
    }
    fn has(&self, household: &str) -> bool {
        self.households.contains(&household)
    }
    /// May ask for `?scope=village:v-3`.
    fn has_v3(&self) -> bool {
        self.villages.contains(&"v-3")
    }
}

const ROLES: [Role; 7] = [
    Role {
        name: "family-1",
        token: "demo-family-1",
        contact: "c-family-1",
        scope: "household:h-1",
        households: &["h-1"],
        villages: &[],
    },
    Role {
        name: "village-1",
        token: "demo-village-1",
        contact: "c-village-1",
        scope: "village:v-1",
        households: &["h-1"],
        villages: &["v-1"],
    },
    Role {
        name: "village-3",
        token: "demo-village-3",
        contact: "c-village-3",
        scope: "village:v-3",
        households: &["h-3"],
        villages: &["v-3"],
    },
    Role {
        name: "town-1",
        token: "demo-town-1",
        contact: "c-town-1",
        scope: "town:t-1",
        households: &["h-1", "h-2"],
        villages: &["v-1", "v-2"],
    },
    Role {
        name: "town-2",
        token: "demo-town-2",
        contact: "c-town-2",
        scope: "town:t-2",
        households: &["h-3"],
        villages: &["v-3"],
    },
    Role {
        name: "district",
        token: "demo-district",
        contact: "c-district",
        scope: "district",
        households: &["h-1", "h-2", "h-3"],
        villages: &["v-1", "v-2", "v-3"],
    },
    // One family account for two homes in different towns (two contacts.csv rows with
    // `account = family-2`; the second row has no token of its own).
    Role {
        name: "family-2homes",
        token: "demo-family-2",
        contact: "family-2",
        scope: "households:h-2,h-3",
        households: &["h-2", "h-3"],
        villages: &[],
    },
];

/// A scope as the API writes it in JSON.
fn scope_json(scope: &str) -> Value {
    match scope.split_once(':') {
        Some(("households", ids)) => {
            json!({ "kind": "households", "id": ids.split(',').collect::<Vec<_>>() })
        }
        Some((kind, id)) => json!({ "kind": kind, "id": id }),
        None => json!({ "kind": scope }),
    }
}

/// How a row authenticates.
#[derive(Clone, Copy)]
enum Who {
    /// `Authorization: Bearer` (REST); `?token=` on the websocket, which cannot send headers.
    Token(&'static str),
    /// `?token=` in the query string, also on REST.
    QueryToken(&'static str),
    /// A session token in the board's `anxin_session` cookie (REST and websocket).
    Cookie(&'static str),
    Nobody,
}

/// What, beyond the status, a row asserts about the answer.
#[derive(Clone)]
enum Want {
    Status,
    /// JSON pointer → value.
    Fields(Vec<(&'static str, Value)>),
    /// `alarms[].id` is exactly this set.
    Alarms(BTreeSet<String>),
    /// The alarms mentioned by `updates[]` are exactly this set.
    Updates(BTreeSet<String>),
    /// `villages[].village_id`, in order.
    Villages(Vec<&'static str>),
    /// `households[].id`, in order.
    Households(Vec<&'static str>),
    /// Websocket with `since_seq=0`: the backlog mentions exactly these alarms.
    Backlog(BTreeSet<String>),
    /// Websocket, live: after SOS presses in h-2, h-3 and then h-1, steps arrive for
    /// exactly these households (and, within [`QUIET`], for no other).
    Live(BTreeSet<&'static str>),
}

#[derive(Clone)]
struct Row {
    who: String,
    auth: Who,
    /// GET, POST, PUT, DELETE, or WS.
    method: &'static str,
    path: String,
    body: Option<Value>,
    status: u16,
    want: Want,
}

fn row(role: &Role, method: &'static str, path: impl Into<String>, status: u16) -> Row {
    Row {
        who: role.name.to_owned(),
        auth: Who::Token(role.token),
        method,
        path: path.into(),
        body: None,
        status,
        want: Want::Status,
    }
}

impl Row {
    fn body(mut self, body: Value) -> Row {
        self.body = Some(body);
        self
    }
    fn want(mut self, want: Want) -> Row {
        self.want = want;
        self
    }
    /// The content check applies only when the expected status came back.
    fn want_if(self, ok: bool, want: Want) -> Row {
        if ok {
            self.want(want)
        } else {
            self
        }
    }
}

struct Mismatch {
    who: String,
    method: &'static str,
    path: String,
    expected: String,
    got: String,
}

/// The hub, the three demo pendants, and readable names for alarm ids.
struct Ctx {
    hub: TestHub,
    http: reqwest::Client,
    pendants: BTreeMap<&'static str, Device>,
    names: BTreeMap<String, String>,
    rows: usize,
    mismatches: Vec<Mismatch>,
}

impl Ctx {
    /// Press the SOS button in `household`; the id of the alarm it raised or repeated.
    async fn press(&mut self, household: &'static str) -> String {
        let ack = self.pendants[household]
            .send_critical(&payload::event("sos", json!({})), PATIENCE)
            .await
            .expect("sos acknowledged");
        assert_eq!(ack["result"], "stored", "{ack}");
        let id = ack["alarm_id"]
            .as_str()
            .unwrap_or_else(|| panic!("alarm id in ack: {ack}"))
            .to_owned();
        let n = self
            .names
            .values()
            .filter(|v| v.starts_with(household))
            .count();
        self.names
            .entry(id.clone())
            .or_insert_with(|| format!("{household}#{}", n + 1));
        id
    }

    fn name(&self, id: &str) -> String {
        self.names.get(id).cloned().unwrap_or_else(|| id.to_owned())
    }

    fn names_of<'a>(&self, ids: impl IntoIterator<Item = &'a String>) -> String {
        let v: Vec<String> = ids.into_iter().map(|id| self.name(id)).collect();
        format!("{{{}}}", v.join(", "))
    }

    fn describe(&self, row: &Row) -> String {
        let extra = match &row.want {
            Want::Status => String::new(),
            Want::Fields(f) => f
                .iter()
                .map(|(p, v)| format!(" {p}={v}"))
                .collect::<String>(),
            Want::Alarms(ids) => format!(" alarms {}", self.names_of(ids)),
            Want::Updates(ids) => format!(" updates of {}", self.names_of(ids)),
            Want::Villages(v) => format!(" villages {v:?}"),
            Want::Households(v) => format!(" households {v:?}"),
            Want::Backlog(ids) => format!(" backlog of {}", self.names_of(ids)),
            Want::Live(h) => format!(" live steps of {h:?}"),
        };
        format!("{}{extra}", row.status)
    }

    async fn run(&mut self, rows: Vec<Row>) {
        for row in rows {
            self.rows += 1;
            if let Err(got) = check(self, &row).await {
                let expected = self.describe(&row);
                self.mismatches.push(Mismatch {
                    who: row.who,
                    method: row.method,
                    path: row.path,
                    expected,
                    got,
                });
            }
        }
    }

    fn report(&self) -> String {
        let mut lines = vec![[
            "ROLE".to_owned(),
            "METHOD".to_owned(),
            "PATH".to_owned(),
            "EXPECTED".to_owned(),
            "GOT".to_owned(),
        ]];
        for m in &self.mismatches {
            lines.push([
                m.who.clone(),
                m.method.to_owned(),
                self.readable(&m.path),
                self.readable(&m.expected),
                self.readable(&m.got),
            ]);
        }
        let mut width = [0usize; 4];
        for l in &lines {
            for (w, cell) in width.iter_mut().zip(l.iter()) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = format!(
            "{} of {} permission rows failed:\n",
            self.mismatches.len(),
            self.rows
        );
        for l in &lines {
            out.push_str(&format!(
                "  {:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}\n",
                l[0],
                l[1],
                l[2],
                l[3],
                l[4],
                w0 = width[0],
                w1 = width[1],
                w2 = width[2],
                w3 = width[3],
            ));
        }
        out
    }

    /// Alarm ids replaced by their readable names.
    fn readable(&self, text: &str) -> String {
        let mut p = text.to_owned();
        for (id, name) in &self.names {
            p = p.replace(id.as_str(), &format!("<{name}>"));
        }
        p
    }
}

fn short(body: &Value) -> String {
    let s = body.to_string();
    if s.chars().count() > 90 {
        format!("{}…", s.chars().take(90).collect::<String>())
    } else {
        s
    }
}

fn with_query(path: &str, kv: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{kv}")
}

/// Run one row; `Err` describes what came back instead.
async fn check(ctx: &mut Ctx, row: &Row) -> Result<(), String> {
    if row.method == "WS" {
        return check_ws(ctx, row).await;
    }
    let path = match row.auth {
        Who::QueryToken(t) => with_query(&row.path, &format!("token={t}")),
        _ => row.path.clone(),
    };
    let method = reqwest::Method::from_bytes(row.method.as_bytes()).expect("method");
    let mut req = ctx.http.request(method, format!("{}{path}", ctx.hub.http));
    match row.auth {
        Who::Token(t) => req = req.bearer_auth(t),
        Who::Cookie(t) => req = req.header("cookie", format!("anxin_session={t}")),
        _ => {}
    }
    if let Some(b) = &row.body {
        req = req.json(b);
    }
    let resp = req.send().await.map_err(|e| format!("no answer: {e}"))?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status != row.status {
        return Err(format!("{status} {}", short(&body)));
    }
    let ids = |list: &Value, id: &str| -> BTreeSet<String> {
        list.as_array()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        x.pointer(id)
                            .and_then(Value::as_str)
                            .unwrap_or("?")
                            .to_owned()
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    match &row.want {
        Want::Status => Ok(()),
        Want::Fields(fields) => {
            for (ptr, want) in fields {
                let got = body.pointer(ptr).unwrap_or(&Value::Null);
                if got != want {
                    return Err(format!("{status} but {ptr}={got}"));
                }
            }
            Ok(())
        }
        Want::Alarms(want) => {
            let got = ids(&body["alarms"], "/id");
            if &got != want {
                return Err(format!("{status} but alarms {}", ctx.names_of(&got)));
            }
            Ok(())
        }
        Want::Updates(want) => {
            let got = ids(&body["updates"], "/alarm/id");
            if &got != want {
                return Err(format!("{status} but updates of {}", ctx.names_of(&got)));
            }
            Ok(())
        }
        Want::Villages(want) => {
            let got: Vec<String> = body["villages"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|v| v["village_id"].as_str().unwrap_or("?").to_owned())
                        .collect()
                })
                .unwrap_or_default();
            if &got != want {
                return Err(format!("{status} but villages {got:?}"));
            }
            Ok(())
        }
        Want::Households(want) => {
            let got: Vec<String> = body["households"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|v| v["id"].as_str().unwrap_or("?").to_owned())
                        .collect()
                })
                .unwrap_or_default();
            if &got != want {
                return Err(format!("{status} but households {got:?}"));
            }
            Ok(())
        }
        Want::Backlog(_) | Want::Live(_) => Err("a websocket expectation on a REST row".into()),
    }
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Next JSON text message within `within`, or None.
async fn next_json(ws: &mut WsStream, within: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).ok(),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

/// A websocket row: the upgrade's status (101 when subscribed), then, if subscribed,
/// what arrives on it.
async fn check_ws(ctx: &mut Ctx, row: &Row) -> Result<(), String> {
    let path = match row.auth {
        Who::Token(t) | Who::QueryToken(t) => with_query(&row.path, &format!("token={t}")),
        Who::Cookie(_) | Who::Nobody => row.path.clone(),
    };
    let url = format!("{}{path}", ctx.hub.http.replacen("http://", "ws://", 1));
    let mut req = tungstenite::client::IntoClientRequest::into_client_request(url)
        .map_err(|e| format!("bad request: {e}"))?;
    if let Who::Cookie(t) = row.auth {
        req.headers_mut().insert(
            "cookie",
            format!("anxin_session={t}").parse().expect("header value"),
        );
    }
    let mut ws = match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => ws,
        Err(tungstenite::Error::Http(resp)) => {
            let status = resp.status().as_u16();
            let body = resp
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .into_owned();
            return if status == row.status {
                Ok(())
            } else {
                Err(format!("{status} {body}"))
            };
        }
        Err(e) => return Err(format!("websocket error: {e}")),
    };
    if row.status != 101 {
        return Err("101 (subscribed)".into());
    }
    let hello = next_json(&mut ws, PATIENCE).await.unwrap_or_default();
    if hello["type"] != "hello" {
        return Err(format!("101 but no hello: {}", short(&hello)));
    }
    let result = match &row.want {
        Want::Status => Ok(()),
        Want::Backlog(want) => {
            let mut got = BTreeSet::new();
            while let Some(m) = next_json(&mut ws, QUIET).await {
                if m["type"] == "alarm" {
                    got.insert(m["alarm"]["id"].as_str().unwrap_or("?").to_owned());
                }
            }
            if &got == want {
                Ok(())
            } else {
                Err(format!("101 but backlog of {}", ctx.names_of(&got)))
            }
        }
        Want::Live(want) => {
            // Other households first, so a leaked step would arrive before the awaited one.
            for h in ["h-2", "h-3", "h-1"] {
                ctx.press(h).await;
            }
            let mut got = BTreeSet::new();
            let deadline = tokio::time::Instant::now() + PATIENCE;
            // Until every expected household was heard from, then a quiet period.
            loop {
                let waiting = !want.iter().all(|h| got.contains(*h));
                let left = if waiting {
                    deadline.saturating_duration_since(tokio::time::Instant::now())
                } else {
                    QUIET
                };
                let Some(m) = next_json(&mut ws, left).await else {
                    break;
                };
                if m["type"] == "alarm" && row.who.starts_with("family") {
                    // A family's websocket carries the family view of an alarm too.
                    for hidden in ["level", "town_id", "condition_key"] {
                        if m["alarm"].get(hidden).is_some() {
                            got.insert(format!("(alarm.{hidden} shown to a family)"));
                        }
                    }
                    if m["detail"].get("recipients").is_some() {
                        got.insert("(recipients shown to a family)".into());
                    }
                }
                if m["type"] == "alarm" {
                    got.insert(
                        m["alarm"]["household_id"]
                            .as_str()
                            .unwrap_or("(none)")
                            .to_owned(),
                    );
                }
            }
            let want: BTreeSet<String> = want.iter().map(|h| (*h).to_owned()).collect();
            if got == want {
                Ok(())
            } else {
                Err(format!("101 but live steps of {got:?}"))
            }
        }
        _ => Err("a REST expectation on a websocket row".into()),
    };
    let _ = ws.close(None).await;
    result
}

/// Give every role's account a password and log in: account id → session token.
async fn sessions(hub: &TestHub) -> BTreeMap<&'static str, &'static str> {
    let password = "a long enough password";
    let hash = hub::secrets::hash_secret(password).expect("hash");
    let mut out = BTreeMap::new();
    for r in &ROLES {
        let role = match r.scope.split(':').next() {
            Some("household" | "households") => "family",
            Some(kind) => kind,
            None => "district",
        };
        // The account exists (made by the import from contacts.csv); a password lets
        // it log in. Its own scope names one home; the others come from its contacts.
        let own = match r.scope.split_once(':') {
            Some(("households", ids)) => {
                format!("household:{}", ids.split(',').next().unwrap_or(""))
            }
            _ => r.scope.to_owned(),
        };
        let scope = hub::store::Scope::parse(&own).expect("scope");
        hub.app
            .store
            .upsert_account(r.contact, r.contact, &hash, role, &scope, hub.clock.now())
            .await
            .expect("password");
        let resp = reqwest::Client::new()
            .post(format!("{}/api/login", hub.http))
            .json(&json!({ "username": r.contact, "password": password }))
            .send()
            .await
            .expect("login");
        assert_eq!(resp.status(), 200, "login as {}", r.contact);
        let body: Value = resp.json().await.expect("json");
        let token = body["token"].as_str().expect("session token").to_owned();
        out.insert(r.contact, &*Box::leak(token.into_boxed_str()));
    }
    out
}

/// The same rows, authenticated with the role's session cookie instead of its token.
fn as_sessions(rows: &[Row], sessions: &BTreeMap<&'static str, &'static str>) -> Vec<Row> {
    rows.iter()
        .filter_map(|row| {
            let Who::Token(t) = row.auth else { return None };
            let r = ROLES.iter().find(|r| r.token == t)?;
            let mut row = row.clone();
            row.who = format!("{} (session)", row.who);
            row.auth = Who::Cookie(sessions[r.contact]);
            Some(row)
        })
        .collect()
}

/// `until` for a mode: one day after the hub's clock, RFC 3339.
fn a_day_later(now_ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(now_ms + 86_400_000) * 1_000_000,
    )
    .expect("time");
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

#[tokio::test]
async fn every_role_is_held_to_its_scope_on_every_endpoint_and_websocket() {
    let hub = TestHub::spawn().await;
    let mut pendants = BTreeMap::new();
    for (h, d) in [
        ("h-1", "demo-pendant-1"),
        ("h-2", "demo-pendant-2"),
        ("h-3", "demo-pendant-3"),
    ] {
        pendants.insert(h, hub.device(d).await);
    }
    let mut ctx = Ctx {
        hub,
        http: reqwest::Client::new(),
        pendants,
        names: BTreeMap::new(),
        rows: 0,
        mismatches: Vec::new(),
    };

    // An open SOS alarm in every household, so every village has one.
    let mut alarm = BTreeMap::new();
    for h in HOUSEHOLDS {
        let id = ctx.press(h).await;
        alarm.insert(h, id);
    }
    let in_scope =
        |r: &Role| -> BTreeSet<String> { r.households.iter().map(|h| alarm[h].clone()).collect() };
    let v3: BTreeSet<String> = [alarm["h-3"].clone()].into();
    let until = a_day_later(ctx.hub.clock.now());

    // ---- Reading: who am I, alarms, one alarm, updates, websocket subscriptions.
    let mut rows = Vec::new();
    for r in &ROLES {
        rows.push(row(r, "GET", "/api/me", 200).want(Want::Fields(vec![
            ("/id", json!(r.contact)),
            ("/scope", scope_json(r.scope)),
        ])));

        rows.push(row(r, "GET", "/api/alarms", 200).want(Want::Alarms(in_scope(r))));
        rows.push(
            row(
                r,
                "GET",
                "/api/alarms?scope=village:v-3",
                if r.has_v3() { 200 } else { 403 },
            )
            .want_if(r.has_v3(), Want::Alarms(v3.clone())),
        );
        // Naming one's own scope is fine; anything wider or beside it is not.
        if r.scope != "village:v-3" && !r.scope.starts_with("households:") {
            rows.push(
                row(r, "GET", format!("/api/alarms?scope={}", r.scope), 200)
                    .want(Want::Alarms(in_scope(r))),
            );
        }
        rows.push(
            row(
                r,
                "GET",
                "/api/alarms?scope=household:h-2",
                if r.has("h-2") { 200 } else { 403 },
            )
            .want_if(r.has("h-2"), Want::Alarms([alarm["h-2"].clone()].into())),
        );
        if r.scope != "district" {
            rows.push(row(r, "GET", "/api/alarms?scope=district", 403));
        }

        for h in HOUSEHOLDS {
            let id = &alarm[h];
            // Families see what happened and who took it, not the escalation machinery,
            // the staff areas or who else was notified.
            let town = if h == "h-3" { "t-2" } else { "t-1" };
            let (level, town_id) = if r.staff() {
                (json!(0), json!(town))
            } else {
                (Value::Null, Value::Null)
            };
            rows.push(if r.has(h) {
                row(r, "GET", format!("/api/alarms/{id}"), 200).want(Want::Fields(vec![
                    ("/alarm/id", json!(id)),
                    ("/alarm/household_id", json!(h)),
                    ("/alarm/severity", json!("critical")),
                    ("/alarm/level", level.clone()),
                    ("/alarm/town_id", town_id),
                    ("/timeline/1/step", json!("notified")),
                    ("/timeline/1/detail/level", level),
                ]))
            } else {
                // Exactly the answer for an alarm that does not exist.
                row(r, "GET", format!("/api/alarms/{id}"), 404)
                    .want(Want::Fields(vec![("/error", json!(format!("alarm {id}")))]))
            });
        }
        rows.push(
            row(r, "GET", format!("/api/alarms/{NO_SUCH_ALARM}"), 404).want(Want::Fields(vec![(
                "/error",
                json!(format!("alarm {NO_SUCH_ALARM}")),
            )])),
        );

        rows.push(row(r, "GET", "/api/updates?since_seq=0", 200).want(Want::Updates(in_scope(r))));
        rows.push(
            row(
                r,
                "GET",
                "/api/updates?since_seq=0&scope=village:v-3",
                if r.has_v3() { 200 } else { 403 },
            )
            .want_if(r.has_v3(), Want::Updates(v3.clone())),
        );

        // The pages' reads (issue 7): who am I, the directory, home views, deliveries,
        // the supervisor summary; and the pages themselves.
        rows.push(row(r, "GET", "/api/ui", 200).want(Want::Fields(vec![
            ("/contact/id", json!(r.contact)),
            ("/utc_offset_minutes", json!(480)),
        ])));
        rows.push(
            row(r, "GET", "/api/directory", 200).want(Want::Households(r.households.to_vec())),
        );
        rows.push(
            row(
                r,
                "GET",
                "/api/directory?scope=village:v-3",
                if r.has_v3() { 200 } else { 403 },
            )
            .want_if(r.has_v3(), Want::Households(vec!["h-3"])),
        );
        rows.push(
            row(r, "GET", "/api/summary", if r.staff() { 200 } else { 403 })
                .want_if(r.staff(), Want::Villages(r.villages.to_vec())),
        );
        for h in HOUSEHOLDS {
            let id = &alarm[h];
            rows.push(
                row(
                    r,
                    "GET",
                    format!("/api/households/{h}"),
                    if r.has(h) { 200 } else { 404 },
                )
                .want_if(
                    r.has(h),
                    Want::Fields(vec![
                        ("/household/id", json!(h)),
                        ("/alarms/0/id", json!(id)),
                    ]),
                ),
            );
            rows.push(row(
                r,
                "GET",
                format!("/home/{h}"),
                if r.has(h) { 200 } else { 404 },
            ));
            rows.push(row(
                r,
                "GET",
                format!("/board/alarms/{id}"),
                if r.has(h) { 200 } else { 404 },
            ));
            let deliveries = match (r.has(h), r.staff()) {
                (false, _) => 404,
                (true, true) => 200,
                (true, false) => 403,
            };
            rows.push(
                row(r, "GET", format!("/api/alarms/{id}/deliveries"), deliveries).want_if(
                    deliveries == 200,
                    Want::Fields(vec![("/alarm_id", json!(id))]),
                ),
            );
        }
        rows.push(row(r, "GET", "/api/households/h-none", 404));
        rows.push(row(
            r,
            "GET",
            "/supervisor",
            if r.staff() { 200 } else { 404 },
        ));

        rows.push(row(r, "WS", "/api/ws?since_seq=0", 101).want(Want::Backlog(in_scope(r))));
        rows.push(
            row(
                r,
                "WS",
                "/api/ws?scope=village:v-3&since_seq=0",
                if r.has_v3() { 101 } else { 403 },
            )
            .want_if(r.has_v3(), Want::Backlog(v3.clone())),
        );
        if r.scope != "district" {
            rows.push(row(r, "WS", "/api/ws?scope=district", 403));
        }
        if !r.has("h-2") {
            rows.push(row(r, "WS", "/api/ws?scope=household:h-2", 403));
        }
    }
    let sessions = sessions(&ctx.hub).await;
    let again = as_sessions(&rows, &sessions);
    ctx.run(rows).await;
    ctx.run(again).await;

    // ---- Care: modes, visits, the visit report; the rules reload.
    let mut rows = Vec::new();
    for r in &ROLES {
        for h in HOUSEHOLDS {
            let mode = format!("/api/households/{h}/mode");
            let visits = format!("/api/households/{h}/visits");
            let inside = r.has(h);
            let (ok, ok_put, ok_del) = if inside {
                (200, 200, 204)
            } else {
                (404, 404, 404)
            };
            rows.push(
                row(r, "GET", &mode, ok)
                    .want_if(inside, Want::Fields(vec![("/household_id", json!(h))])),
            );
            rows.push(
                row(r, "PUT", &mode, ok_put)
                    .body(json!({"kind": "away", "until": until}))
                    .want_if(
                        inside,
                        Want::Fields(vec![
                            ("/household_id", json!(h)),
                            ("/mode/kind", json!("away")),
                            ("/mode/set_by", json!(r.contact)),
                        ]),
                    ),
            );
            if inside {
                rows.push(row(r, "GET", &mode, 200).want(Want::Fields(vec![
                    ("/mode/kind", json!("away")),
                    ("/mode/set_by", json!(r.contact)),
                ])));
            }
            rows.push(row(r, "DELETE", &mode, ok_del));
            rows.push(
                row(r, "GET", &visits, ok)
                    .want_if(inside, Want::Fields(vec![("/household_id", json!(h))])),
            );
            let post = match (inside, r.staff()) {
                (false, _) => 404,
                (true, true) => 201,
                (true, false) => 403,
            };
            rows.push(row(r, "POST", &visits, post).body(json!({"action": "start"})));
        }

        let report = format!("/api/visits/compliance?week={MONDAY}");
        rows.push(
            row(r, "GET", &report, if r.staff() { 200 } else { 403 })
                .want_if(r.staff(), Want::Villages(r.villages.to_vec())),
        );
        rows.push(
            row(
                r,
                "GET",
                format!("{report}&scope=village:v-3"),
                if r.has_v3() { 200 } else { 403 },
            )
            .want_if(r.has_v3(), Want::Villages(vec!["v-3"])),
        );

        let district = r.scope == "district";
        rows.push(
            row(
                r,
                "POST",
                "/api/admin/rules/reload",
                if district { 200 } else { 403 },
            )
            .want_if(district, Want::Fields(vec![("/reloaded", json!(true))])),
        );
    }
    ctx.run(rows).await;

    // ---- No token, or a wrong one: 401 everywhere under /api.
    let a1 = alarm["h-1"].clone();
    let endpoints: Vec<(&'static str, String, Option<Value>)> = vec![
        ("GET", "/api/me".into(), None),
        ("GET", "/api/alarms".into(), None),
        ("GET", format!("/api/alarms/{a1}"), None),
        (
            "POST",
            format!("/api/alarms/{a1}/acknowledge"),
            Some(json!({})),
        ),
        (
            "POST",
            format!("/api/alarms/{a1}/resolve"),
            Some(json!({"disposition": "other"})),
        ),
        (
            "POST",
            format!("/api/alarms/{a1}/en-route"),
            Some(json!({"eta_minutes": 10})),
        ),
        ("POST", format!("/api/alarms/{a1}/on-site"), Some(json!({}))),
        ("GET", "/api/tokens".into(), None),
        ("POST", "/api/tokens".into(), Some(json!({"label": "x"}))),
        ("GET", "/api/updates?since_seq=0".into(), None),
        ("GET", "/api/households/h-1/mode".into(), None),
        (
            "PUT",
            "/api/households/h-1/mode".into(),
            Some(json!({"kind": "away", "until": until})),
        ),
        ("DELETE", "/api/households/h-1/mode".into(), None),
        ("GET", "/api/households/h-1/visits".into(), None),
        (
            "POST",
            "/api/households/h-1/visits".into(),
            Some(json!({"action": "start"})),
        ),
        ("GET", format!("/api/visits/compliance?week={MONDAY}"), None),
        ("POST", "/api/admin/rules/reload".into(), None),
        ("GET", "/api/rosters".into(), None),
        ("GET", "/api/rosters/on-duty?scope=village:v-1".into(), None),
        ("GET", "/api/rosters/coverage?days=7".into(), None),
        (
            "POST",
            "/api/rosters/overrides".into(),
            Some(json!({"area": "village:v-1", "from": "2030-01-01", "contact": "c-village-1"})),
        ),
        ("DELETE", "/api/rosters/overrides/1".into(), None),
        ("GET", "/api/ui".into(), None),
        ("GET", "/api/directory".into(), None),
        ("GET", "/api/households/h-1".into(), None),
        ("GET", format!("/api/alarms/{a1}/deliveries"), None),
        ("GET", "/api/summary".into(), None),
        ("WS", "/api/ws".into(), None),
    ];
    let mut rows = Vec::new();
    for (method, path, body) in &endpoints {
        for (who, auth) in [
            ("no token", Who::Nobody),
            ("wrong token", Who::Token(BAD_TOKEN)),
            ("wrong ?token=", Who::QueryToken(BAD_TOKEN)),
            // A valid token in the URL is accepted only by the websocket (URLs end up in
            // proxies' logs); REST needs the header.
            ("valid ?token= on REST", Who::QueryToken("demo-district")),
        ] {
            if *method == "WS" && who == "valid ?token= on REST" {
                continue;
            }
            if *method == "WS" && matches!(auth, Who::Token(_)) {
                continue; // the websocket takes its token in the query: same as the next
            }
            rows.push(Row {
                who: who.to_owned(),
                auth,
                method,
                path: path.clone(),
                body: body.clone(),
                status: 401,
                want: Want::Status,
            });
        }
    }
    ctx.run(rows).await;

    // ---- Acting on alarms outside one's scope: refused (403) and without effect. Acting
    // on an alarm that does not exist answers the same 403 (so 403 vs 404 does not reveal
    // whether an id exists elsewhere), except for the district, which sees everything.
    let mut rows = Vec::new();
    for r in &ROLES {
        let missing = if r.name == "district" { 404 } else { 403 };
        for h in HOUSEHOLDS.iter().filter(|h| !r.has(h)) {
            let id = &alarm[h];
            rows.push(row(r, "POST", format!("/api/alarms/{id}/acknowledge"), 403).body(json!({})));
            rows.push(
                row(r, "POST", format!("/api/alarms/{id}/resolve"), 403)
                    .body(json!({"disposition": "other"})),
            );
            rows.push(
                row(r, "POST", format!("/api/alarms/{id}/en-route"), 403)
                    .body(json!({"eta_minutes": 10})),
            );
            rows.push(row(r, "POST", format!("/api/alarms/{id}/on-site"), 403).body(json!({})));
        }
        rows.push(
            row(
                r,
                "POST",
                format!("/api/alarms/{NO_SUCH_ALARM}/acknowledge"),
                missing,
            )
            .body(json!({})),
        );
        rows.push(
            row(
                r,
                "POST",
                format!("/api/alarms/{NO_SUCH_ALARM}/resolve"),
                missing,
            )
            .body(json!({"disposition": "other"})),
        );
    }
    let again = as_sessions(&rows, &sessions);
    rows.extend(again);
    let district = &ROLES[5];
    for h in HOUSEHOLDS {
        let id = &alarm[h];
        rows.push(
            row(district, "GET", format!("/api/alarms/{id}"), 200).want(Want::Fields(vec![
                ("/alarm/state", json!("notified")),
                ("/alarm/acked_by", Value::Null),
                ("/alarm/resolved_by", Value::Null),
            ])),
        );
    }
    ctx.run(rows).await;

    // ---- Acting inside one's scope: acknowledge then resolve, each role on an alarm of
    // its own (a fresh SOS once the previous alarm in that household is resolved).
    let mut open: BTreeMap<&str, String> = alarm.clone();
    for r in &ROLES {
        let h = r.households[r.households.len() - 1];
        let id = match open.remove(h) {
            Some(id) => id,
            None => ctx.press(h).await,
        };
        let rows = vec![
            row(r, "POST", format!("/api/alarms/{id}/acknowledge"), 200)
                .body(json!({}))
                .want(Want::Fields(vec![
                    ("/step", json!("acknowledged")),
                    ("/alarm/id", json!(id)),
                    ("/alarm/acked_by", json!(r.contact)),
                ])),
            row(r, "POST", format!("/api/alarms/{id}/resolve"), 200)
                .body(json!({"disposition": "other"}))
                .want(Want::Fields(vec![
                    ("/step", json!("resolved")),
                    ("/alarm/state", json!("resolved")),
                    ("/alarm/resolved_by", json!(r.contact)),
                ])),
        ];
        ctx.run(rows).await;
    }

    // ---- Live websocket: every row presses SOS in h-2, h-3, then h-1, and the socket
    // gets steps of exactly its scope's households. Every alarm is resolved by now, so
    // the first row (the family) sees brand-new alarms raised after it connected.
    let live = |r: &Role, scope: Option<&str>, want: &[&'static str]| {
        let path = match scope {
            Some(s) => format!("/api/ws?scope={s}"),
            None => "/api/ws".to_owned(),
        };
        row(r, "WS", path, 101).want(Want::Live(want.iter().copied().collect()))
    };
    let mut rows = vec![
        row(&ROLES[5], "GET", "/api/alarms", 200).want(Want::Alarms(BTreeSet::new())),
        live(&ROLES[0], None, &["h-1"]),
        live(&ROLES[0], Some("household:h-1"), &["h-1"]),
    ];
    for r in &ROLES[1..] {
        rows.push(live(r, None, r.households));
    }
    rows.push(live(&ROLES[3], Some("village:v-2"), &["h-2"]));
    rows.push(live(&ROLES[5], Some("village:v-3"), &["h-3"]));
    rows.push(live(&ROLES[5], Some("household:h-1"), &["h-1"]));
    rows.push(live(&ROLES[6], Some("household:h-3"), &["h-3"]));
    ctx.run(rows).await;

    assert!(ctx.mismatches.is_empty(), "{}", ctx.report());
    // The matrix really ran (a table that silently lost rows would pass too easily).
    assert!(ctx.rows > 200, "only {} rows", ctx.rows);
}
