//! The web pages: the live alarm board, the home view, the supervisor view and the family
//! view, served by the hub itself from files compiled into the binary (`hub/assets`).
//!
//! Pages are static HTML shells plus one JavaScript module that reads the REST API and
//! the websocket with the session cookie. The server still decides who may open a page:
//! a page about a household or an alarm outside the caller's scope answers 404 (the same
//! check as the API), and a page needing a login sends an anonymous visitor to `/login`.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use rust_embed::RustEmbed;

use super::{ApiError, AppState, Caller};
use crate::authz::{self, Action};

#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

/// Pages may run the hub's own scripts and styles and talk to the hub; nothing else.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

fn file(path: &str, status: StatusCode) -> Response {
    let Some(f) = Assets::get(path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let mut resp = (status, f.data.into_owned()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    // Assets change with the binary; the page shells are tiny. Revalidate every time
    // (the API's `no-store` stays for data).
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

fn page(name: &str) -> Response {
    file(&format!("{name}.html"), StatusCode::OK)
}

fn not_found() -> Response {
    file("not-found.html", StatusCode::NOT_FOUND)
}

/// Where an anonymous visitor goes: the login page, coming back here afterwards.
fn to_login(next: &str) -> Response {
    let next: String = next
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "/-_.".contains(*c))
        .collect();
    Redirect::to(&format!("/login?next={next}")).into_response()
}

/// `GET /assets/{*path}`: the embedded scripts and styles.
pub(super) async fn asset(Path(path): Path<String>) -> Response {
    if path.ends_with(".html") {
        return not_found();
    }
    file(&path, StatusCode::OK)
}

pub(super) async fn login() -> Response {
    page("login")
}

/// `GET /`: the family view for family accounts, the board for staff, else the login.
pub(super) async fn root(caller: Result<Caller, ApiError>) -> Response {
    match caller {
        Ok(c) if c.contact.scope.is_family() => Redirect::to("/family").into_response(),
        Ok(_) => Redirect::to("/board").into_response(),
        Err(_) => Redirect::to("/login").into_response(),
    }
}

/// `GET /board`: the live alarm board (staff; families have their own view).
pub(super) async fn board(caller: Result<Caller, ApiError>) -> Response {
    match caller {
        Ok(c) if c.contact.scope.is_family() => Redirect::to("/family").into_response(),
        Ok(_) => page("board"),
        Err(_) => to_login("/board"),
    }
}

/// `GET /board/alarms/{id}`: the board with one alarm open (the link in SMS messages).
/// Families get their own view of it; an alarm outside the caller's scope is 404.
pub(super) async fn board_alarm(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    Path(id): Path<String>,
) -> Response {
    let Ok(c) = caller else {
        return to_login(&format!("/board/alarms/{id}"));
    };
    if authz::alarm(&state, &c, &id, Action::Read).await.is_err() {
        return not_found();
    }
    if c.contact.scope.is_family() {
        return page("family");
    }
    page("board")
}

/// `GET /home/{id}`: one household. Outside the caller's scope (or unknown): 404.
pub(super) async fn home(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    Path(id): Path<String>,
) -> Response {
    let Ok(c) = caller else {
        return to_login(&format!("/home/{id}"));
    };
    if authz::household(&state, &c, &id, Action::Read)
        .await
        .is_err()
    {
        return not_found();
    }
    page("home")
}

/// `GET /supervisor`: town and district staff (and villages, for their own village).
pub(super) async fn supervisor(caller: Result<Caller, ApiError>) -> Response {
    match caller {
        Ok(c) if c.contact.scope.is_family() => not_found(),
        Ok(_) => page("supervisor"),
        Err(_) => to_login("/supervisor"),
    }
}

/// `GET /family`: the family view (staff are sent to the board).
pub(super) async fn family(caller: Result<Caller, ApiError>) -> Response {
    match caller {
        Ok(c) if c.contact.scope.is_family() => page("family"),
        Ok(_) => Redirect::to("/board").into_response(),
        Err(_) => to_login("/family"),
    }
}

/// Any other path: the 404 page for browsers.
pub(super) async fn fallback() -> Response {
    not_found()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_and_script_is_embedded() {
        for f in [
            "login.html",
            "board.html",
            "home.html",
            "supervisor.html",
            "family.html",
            "not-found.html",
            "app.js",
            "i18n.js",
            "style.css",
        ] {
            assert!(Assets::get(f).is_some(), "{f} missing from hub/assets");
        }
    }

    /// The keys of one language's table in i18n.js (`"key": "text"` lines).
    fn keys(table: &str) -> std::collections::BTreeSet<String> {
        table
            .split('"')
            .collect::<Vec<_>>()
            .windows(3)
            .filter(|w| w[2].trim_start().starts_with(':') && w[1].contains('.'))
            .map(|w| w[1].to_owned())
            .collect()
    }

    #[test]
    fn both_languages_have_every_text() {
        let js = Assets::get("i18n.js").expect("i18n.js");
        let js = std::str::from_utf8(&js.data).expect("utf-8");
        let zh_at = js.find("const zh = {").expect("zh table");
        let en_at = js.find("const en = {").expect("en table");
        let end = js.find("const DICTS").expect("end of tables");
        let zh = keys(&js[zh_at..en_at]);
        let en = keys(&js[en_at..end]);
        assert!(zh.len() > 150, "parsed {} zh keys", zh.len());
        let missing_in_zh: Vec<_> = en.difference(&zh).collect();
        assert!(missing_in_zh.is_empty(), "not in zh-CN: {missing_in_zh:?}");
        let missing_in_en: Vec<_> = zh.difference(&en).collect();
        assert!(missing_in_en.is_empty(), "not in en: {missing_in_en:?}");
        // Every code a page turns into text through a prefix (`t("step." + s.step)`) has
        // a text: the lists come from the code that produces the codes.
        let rules = alert_rules::RuleSet::default_rules();
        let rule_ids = rules.rule_ids();
        let roles: Vec<&str> = crate::store::ROLES
            .iter()
            .copied()
            .chain(["elder"])
            .collect();
        let families: [(&str, &[&str]); 6] = [
            ("step.", &crate::store::TIMELINE_STEPS),
            ("role.", &roles),
            ("disp.", &crate::http::DISPOSITIONS),
            ("sig.", &alert_rules::SIGNAL_NAMES),
            ("rule.", &rule_ids),
            ("rdetail.", &rule_ids),
        ];
        let mut no_text = Vec::new();
        for (prefix, codes) in families {
            for code in codes {
                let key = format!("{prefix}{code}");
                if !zh.contains(&key) || !en.contains(&key) {
                    no_text.push(key);
                }
            }
        }
        assert!(
            no_text.is_empty(),
            "codes a page can show without a text in both languages: {no_text:?}"
        );
        // Every key the script asks for literally exists.
        let app = Assets::get("app.js").expect("app.js");
        let app = std::str::from_utf8(&app.data).expect("utf-8");
        let asked: Vec<&str> = app
            .match_indices("t(\"")
            .filter(|(at, _)| {
                !app[..*at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
            })
            .filter_map(|(at, _)| app[at + 3..].split('"').next())
            .filter(|k| !k.ends_with('.'))
            .collect();
        assert!(asked.len() > 50, "parsed {} t() calls", asked.len());
        let unknown: Vec<_> = asked.iter().filter(|k| !zh.contains(**k)).collect();
        assert!(
            unknown.is_empty(),
            "app.js asks for unknown texts: {unknown:?}"
        );
        let html: Vec<String> = [
            "login.html",
            "board.html",
            "home.html",
            "supervisor.html",
            "family.html",
            "not-found.html",
        ]
        .iter()
        .map(|f| String::from_utf8_lossy(&Assets::get(f).expect("page").data).into_owned())
        .collect();
        for page in &html {
            for k in page
                .split("data-i18n=\"")
                .skip(1)
                .filter_map(|r| r.split('"').next())
            {
                assert!(zh.contains(k), "a page asks for unknown text {k}");
            }
        }
    }

    #[test]
    fn the_login_redirect_keeps_only_a_path() {
        let r = to_login("/home/h-1\"><script>");
        let loc = r
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert_eq!(loc, "/login?next=/home/h-1script");
    }
}
