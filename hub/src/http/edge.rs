//! Where a request comes from: the client's address behind trusted proxies, and whether
//! a browser request that the session cookie would authenticate comes from the hub's own
//! pages (cross-site request forgery, docs/security.md T7).
//!
//! **Client address.** `X-Forwarded-For` is read only when the TCP peer is listed in
//! `[http] trusted_proxies`; then the client is the right-most address in it that is not
//! itself a trusted proxy (every trusted hop appends the address it saw, so the entries
//! to the right of the first untrusted one were written by proxies we trust, and
//! anything to its left may be made up by the client). From any other peer the header is
//! ignored: nobody can pick the address their attempts are counted against.
//!
//! **Same origin.** A request that changes something (any method but GET, HEAD and
//! OPTIONS), and every websocket handshake, that would be authenticated by the
//! `anxin_session` cookie must come from the hub's own origin: its `Origin` must name the
//! request's host (the `Host` header, or `X-Forwarded-Host` from a trusted proxy) or one
//! of `[http] public_origins`. Without an `Origin`, `Sec-Fetch-Site` must be `same-origin`
//! or `none`. A request with neither header is accepted (see [`Verdict`]). Requests with
//! an `Authorization` header or a `?token=` are not affected: a page on another site
//! cannot make a browser send those (the hub answers no CORS preflight).

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::uri::Authority;
use axum::http::{header, HeaderMap, Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState, Presented};
use crate::config::HttpSettings;

/// What the hub knows about its place in the network (from `[http]`).
#[derive(Debug, Default)]
pub struct Edge {
    trusted_proxies: Vec<ipnet::IpNet>,
    /// `[http] public_origins`, parsed.
    origins: Vec<Origin>,
    /// Cross-origin refusals are logged at most every 10 s: anyone can send a made-up
    /// cookie with a foreign `Origin`, as fast as they like. Every one is counted.
    log: LogGate,
}

/// Lets a log line about refusals through at most every [`LogGate::EVERY`], with the
/// number of refusals since the last one, so that a flood of refused requests does not
/// become a flood of log lines (the MQTT per-source limits do the same).
#[derive(Debug, Default)]
pub struct LogGate(Mutex<(Option<Instant>, u64)>);

impl LogGate {
    const EVERY: Duration = Duration::from_secs(10);

    /// A refusal happened: `Some(n)` when it is to be logged (`n` refusals since the last
    /// log line, this one included).
    pub fn refused(&self) -> Option<u64> {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.1 += 1;
        let now = Instant::now();
        if g.0.is_some_and(|at| now.duration_since(at) < Self::EVERY) {
            return None;
        }
        g.0 = Some(now);
        Some(std::mem::take(&mut g.1))
    }
}

/// A web origin: scheme, host (lower case) and port (the scheme's default when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    https: bool,
    host: String,
    port: u16,
}

impl Origin {
    /// `https://anxin.example.org[:port]`: an `Origin` header's form. `null` and anything
    /// with a path, query, user or another scheme is not an origin.
    fn parse(s: &str) -> Option<Origin> {
        let uri: Uri = s.trim().parse().ok()?;
        let https = match uri.scheme_str()? {
            "https" => true,
            "http" => false,
            _ => return None,
        };
        let authority = uri.authority()?;
        if authority.as_str().contains('@') || uri.query().is_some() {
            return None;
        }
        if !matches!(uri.path(), "" | "/") {
            return None;
        }
        Some(Origin {
            https,
            host: authority.host().to_ascii_lowercase(),
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
        })
    }

    /// Is this origin the host named by `authority` (a `Host` header's value)? `https`:
    /// the scheme the client used, when a trusted proxy said so; without it, either
    /// scheme is taken for the host (the hub serves plain HTTP itself, so an `https`
    /// origin for its own host name is the TLS proxy in front of it).
    fn is_host(&self, authority: &str, https: Option<bool>) -> bool {
        let Ok(a) = authority.trim().parse::<Authority>() else {
            return false;
        };
        if https.is_some_and(|h| h != self.https) {
            return false;
        }
        let default = if self.https { 443 } else { 80 };
        a.host().eq_ignore_ascii_case(&self.host) && a.port_u16().unwrap_or(default) == self.port
    }
}

/// The outcome of the same-origin check.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Not a cookie-authenticated state change or websocket: nothing to check.
    NotApplicable,
    /// `Origin` is the hub's own, or `Sec-Fetch-Site` says `same-origin` / `none`.
    SameOrigin,
    /// Neither `Origin` nor `Sec-Fetch-Site`: not sent by any browser of the last years
    /// on such a request (they send `Origin` on every POST, PUT, DELETE and websocket
    /// handshake, and `Sec-Fetch-Site` on every request), so this is a script or an old
    /// client with a copied cookie. Accepted: cross-*site* requests do not carry the
    /// `SameSite=Strict` cookie at all, and what remains — a page on the same site but
    /// another origin (another port or subdomain) driving a browser too old to send
    /// either header — is not worth breaking such scripts for.
    Unmarked,
    /// From another origin: refused.
    Foreign,
}

impl Edge {
    pub fn new(settings: &HttpSettings) -> anyhow::Result<Edge> {
        let origins = settings
            .public_origins
            .iter()
            .map(|o| {
                Origin::parse(o).ok_or_else(|| {
                    anyhow::anyhow!(
                        "[http] public_origins: {o:?} is not an origin like \"https://anxin.example.org\""
                    )
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Edge {
            trusted_proxies: settings.trusted_proxies.clone(),
            origins,
            log: LogGate::default(),
        })
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// The TCP peer, if the server was started with connect info.
    fn peer(parts: &Parts) -> Option<IpAddr> {
        parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ci| ci.0.ip().to_canonical())
    }

    /// The client's address: the peer, or behind trusted proxies the right-most
    /// `X-Forwarded-For` address that is not a trusted proxy. An entry that is not an
    /// address (a misconfigured proxy passing the client's header on) stops the walk at
    /// the last trusted hop, which is then taken as the client.
    pub fn client_ip(&self, parts: &Parts) -> Option<IpAddr> {
        let peer = Self::peer(parts)?;
        if !self.trusts(peer) {
            return Some(peer);
        }
        let mut client = peer;
        let values: Vec<&str> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        for entry in values.iter().rev().flat_map(|v| v.rsplit(',')) {
            let Some(ip) = forwarded_ip(entry) else {
                tracing::debug!("unreadable X-Forwarded-For entry from a trusted proxy");
                return Some(client);
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        Some(client)
    }

    /// [`Edge::client_ip`] as text (for the audit log).
    pub fn client_addr(&self, parts: &Parts) -> Option<String> {
        self.client_ip(parts).map(|ip| ip.to_string())
    }

    /// Is a request that would be authenticated by the session cookie from the hub's
    /// own pages? See the module docs.
    pub(super) fn verdict(&self, parts: &Parts) -> Verdict {
        let websocket = parts
            .headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        let changes = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !(changes || websocket) || !matches!(super::presented(parts), Some(Presented::Cookie(_)))
        {
            return Verdict::NotApplicable;
        }
        if let Some(origin) = parts.headers.get(header::ORIGIN) {
            let own = origin
                .to_str()
                .ok()
                .and_then(Origin::parse)
                .is_some_and(|o| self.is_own(&o, parts));
            return if own {
                Verdict::SameOrigin
            } else {
                Verdict::Foreign
            };
        }
        match parts.headers.get("sec-fetch-site").map(|v| v.to_str()) {
            None => Verdict::Unmarked,
            Some(Ok("same-origin" | "none")) => Verdict::SameOrigin,
            Some(_) => Verdict::Foreign,
        }
    }

    fn is_own(&self, origin: &Origin, parts: &Parts) -> bool {
        if self.origins.contains(origin) {
            return true;
        }
        let from_proxy = Self::peer(parts).is_some_and(|p| self.trusts(p));
        let last = |h: &HeaderMap, name: &str| {
            h.get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .last()
                .map(|v| v.trim().to_owned())
        };
        let (host, https) = if from_proxy {
            let host = last(&parts.headers, "x-forwarded-host");
            let proto =
                last(&parts.headers, "x-forwarded-proto").map(|p| p.eq_ignore_ascii_case("https"));
            (host, proto)
        } else {
            (None, None)
        };
        let host = host.or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
        host.is_some_and(|h| origin.is_host(&h, https))
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:5678`), as some proxies write it.
fn forwarded_ip(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// Middleware: refuse cookie-authenticated state changes and websocket handshakes from
/// other origins with 403, before any handler runs; logged and counted in
/// `anxin_http_refused_total{reason="cross_origin"}`.
pub(super) async fn same_origin_only(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    if state.edge.verdict(&parts) == Verdict::Foreign {
        metrics::counter!("anxin_http_refused_total", "reason" => "cross_origin").increment(1);
        if let Some(refused) = state.edge.log.refused() {
            let origin = parts
                .headers
                .get(header::ORIGIN)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::warn!(
                method = %parts.method,
                path = parts.uri.path(),
                origin = origin.chars().take(100).collect::<String>(),
                source = state.edge.client_addr(&parts).as_deref().unwrap_or("?"),
                refused,
                "refused a cross-origin request with the session cookie"
            );
        }
        return ApiError::Forbidden(
            "cross-origin request refused: the session cookie is only accepted from the hub's own pages (send an Authorization header instead)"
                .into(),
        )
        .into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(trusted: &[&str], origins: &[&str]) -> Edge {
        let settings = HttpSettings {
            trusted_proxies: trusted.iter().map(|t| t.parse().expect("cidr")).collect(),
            public_origins: origins.iter().map(|o| o.to_string()).collect(),
            ..crate::config::Settings::default().http
        };
        Edge::new(&settings).expect("edge")
    }

    fn parts(peer: &str, headers: &[(&str, &str)], method: Method) -> Parts {
        let mut b = axum::http::Request::builder()
            .method(method)
            .uri("/api/alarms/a-1/acknowledge");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let (mut parts, _) = b.body(()).expect("request").into_parts();
        parts.extensions.insert(ConnectInfo(SocketAddr::new(
            peer.parse().expect("ip"),
            40000,
        )));
        parts
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("ip"))
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let none = edge(&[], &[]);
        let xff = [("x-forwarded-for", "198.51.100.7")];
        assert_eq!(
            none.client_ip(&parts("127.0.0.1", &xff, Method::POST)),
            ip("127.0.0.1"),
            "no proxy trusted: the header is ignored"
        );
        let proxy = edge(&["127.0.0.1/32", "10.0.0.0/8"], &[]);
        assert_eq!(
            proxy.client_ip(&parts("127.0.0.1", &xff, Method::POST)),
            ip("198.51.100.7")
        );
        assert_eq!(
            proxy.client_ip(&parts("192.0.2.9", &xff, Method::POST)),
            ip("192.0.2.9"),
            "an untrusted peer cannot claim an address"
        );
        // The client prepends a made-up address; the proxies append what they saw.
        let chain = [
            ("x-forwarded-for", "203.0.113.1, 198.51.100.7"),
            ("x-forwarded-for", "10.1.2.3"),
        ];
        assert_eq!(
            proxy.client_ip(&parts("127.0.0.1", &chain, Method::POST)),
            ip("198.51.100.7"),
            "right-most address that is not a trusted proxy"
        );
        let ported = [("x-forwarded-for", "[2001:db8::7]:5555")];
        assert_eq!(
            proxy.client_ip(&parts("127.0.0.1", &ported, Method::POST)),
            ip("2001:db8::7")
        );
        let garbage = [("x-forwarded-for", "unknown")];
        assert_eq!(
            proxy.client_ip(&parts("127.0.0.1", &garbage, Method::POST)),
            ip("127.0.0.1"),
            "unreadable: the last trusted hop"
        );
        assert_eq!(
            proxy.client_ip(&parts("127.0.0.1", &[], Method::POST)),
            ip("127.0.0.1"),
            "a proxy that sets no header is the client"
        );
    }

    #[test]
    fn cookie_state_changes_must_come_from_the_hubs_own_origin() {
        let e = edge(&["127.0.0.1/32"], &["https://anxin.example.org"]);
        let cookie = ("cookie", "anxin_session=s");
        let host = ("host", "hub.local:8080");
        let v = |peer: &str, extra: &[(&str, &str)], m: Method| {
            let mut h = vec![cookie, host];
            h.extend_from_slice(extra);
            e.verdict(&parts(peer, &h, m))
        };
        let p = "192.0.2.1";
        assert_eq!(
            v(p, &[("origin", "http://hub.local:8080")], Method::POST),
            Verdict::SameOrigin
        );
        assert_eq!(
            v(p, &[("origin", "https://hub.local:8080")], Method::POST),
            Verdict::SameOrigin
        );
        assert_eq!(
            v(p, &[("origin", "HTTP://Hub.Local:8080")], Method::POST),
            Verdict::SameOrigin
        );
        assert_eq!(
            v(p, &[("origin", "https://anxin.example.org")], Method::POST),
            Verdict::SameOrigin
        );
        assert_eq!(
            v(
                p,
                &[("origin", "https://anxin.example.org:443")],
                Method::POST
            ),
            Verdict::SameOrigin
        );
        for foreign in [
            "http://evil.example",
            "http://hub.local:8081",
            "http://hub.local",
            "null",
            "http://hub.local:8080/path",
            "ftp://hub.local:8080",
        ] {
            assert_eq!(
                v(p, &[("origin", foreign)], Method::POST),
                Verdict::Foreign,
                "{foreign}"
            );
        }
        // Origin wins over Sec-Fetch-Site; without Origin, Sec-Fetch-Site decides.
        assert_eq!(
            v(p, &[("sec-fetch-site", "cross-site")], Method::POST),
            Verdict::Foreign
        );
        assert_eq!(
            v(p, &[("sec-fetch-site", "same-site")], Method::DELETE),
            Verdict::Foreign
        );
        assert_eq!(
            v(p, &[("sec-fetch-site", "same-origin")], Method::PUT),
            Verdict::SameOrigin
        );
        assert_eq!(v(p, &[], Method::POST), Verdict::Unmarked);
        // Reads are not checked; a websocket handshake is.
        assert_eq!(
            v(p, &[("origin", "http://evil.example")], Method::GET),
            Verdict::NotApplicable
        );
        assert_eq!(
            v(
                p,
                &[("origin", "http://evil.example"), ("upgrade", "websocket")],
                Method::GET
            ),
            Verdict::Foreign
        );
        // A bearer token is not the cookie: not checked.
        assert_eq!(
            v(
                p,
                &[
                    ("origin", "http://evil.example"),
                    ("authorization", "Bearer t")
                ],
                Method::POST
            ),
            Verdict::NotApplicable
        );
        // X-Forwarded-Host and -Proto count only from a trusted proxy.
        let fwd = [
            ("origin", "https://board.example.net"),
            ("x-forwarded-host", "board.example.net"),
            ("x-forwarded-proto", "https"),
        ];
        assert_eq!(v("127.0.0.1", &fwd, Method::POST), Verdict::SameOrigin);
        assert_eq!(v(p, &fwd, Method::POST), Verdict::Foreign);
        let wrong_scheme = [
            ("origin", "http://board.example.net"),
            ("x-forwarded-host", "board.example.net"),
            ("x-forwarded-proto", "https"),
        ];
        assert_eq!(
            v("127.0.0.1", &wrong_scheme, Method::POST),
            Verdict::Foreign
        );
    }

    #[test]
    fn refusals_are_logged_at_most_every_ten_seconds() {
        let gate = LogGate::default();
        assert_eq!(gate.refused(), Some(1));
        assert_eq!(gate.refused(), None);
        assert_eq!(gate.refused(), None);
        gate.0.lock().expect("lock").0 = Some(Instant::now() - LogGate::EVERY);
        assert_eq!(
            gate.refused(),
            Some(3),
            "the two quiet ones are reported with it"
        );
    }

    #[test]
    fn a_bad_public_origin_stops_the_start() {
        let settings = HttpSettings {
            public_origins: vec!["anxin.example.org".into()],
            ..crate::config::Settings::default().http
        };
        assert!(Edge::new(&settings).is_err());
    }
}
