//! Headless Chromium driven over WebDriver (chromedriver + fantoccini), for the tests of
//! the web pages (`tests/tests/browser.rs`).
//!
//! Each [`Browser`] runs its own chromedriver on a free port and its own Chromium
//! profile in a temporary directory. Chromium and chromedriver come from Debian's
//! `chromium` and `chromium-driver` packages (`.ci/run` installs them); the paths can be
//! changed with `ANXIN_CHROMIUM` and `ANXIN_CHROMEDRIVER`. Without them the browser tests
//! are skipped with a message, unless `ANXIN_BROWSER_TESTS=1` (CI sets it) makes a
//! missing browser a failure.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// How long a page may take to show something that should appear at once.
pub const PAGE_PATIENCE: Duration = Duration::from_secs(10);

fn path_from(var: &str, default: &str) -> Option<PathBuf> {
    let p = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    p.exists().then_some(p)
}

/// Chromium and chromedriver, if installed. `None` (with a message) skips a test;
/// with `ANXIN_BROWSER_TESTS=1` a missing browser fails it instead.
pub fn available() -> Option<(PathBuf, PathBuf)> {
    let found = path_from("ANXIN_CHROMIUM", "/usr/bin/chromium")
        .zip(path_from("ANXIN_CHROMEDRIVER", "/usr/bin/chromedriver"));
    if found.is_none() {
        assert!(
            std::env::var("ANXIN_BROWSER_TESTS").as_deref() != Ok("1"),
            "ANXIN_BROWSER_TESTS=1 but Chromium or chromedriver is missing \
             (apt-get install chromium chromium-driver, or set ANXIN_CHROMIUM / ANXIN_CHROMEDRIVER)"
        );
        eprintln!(
            "browser test skipped: Chromium or chromedriver not installed \
             (apt-get install chromium chromium-driver)"
        );
    }
    found
}

/// What the browser window looks like.
#[derive(Debug, Clone, Copy)]
pub enum Viewport {
    /// A desktop window, CSS pixels.
    Desktop { width: u32, height: u32 },
    /// A phone (Chrome's mobile emulation: touch, device pixel ratio 3).
    Phone { width: u32, height: u32 },
}

/// The board's target screen.
pub const DESKTOP: Viewport = Viewport::Desktop {
    width: 1280,
    height: 800,
};
/// The family view's target phone.
pub const PHONE: Viewport = Viewport::Phone {
    width: 390,
    height: 844,
};

/// How the browser treats a page's sound.
#[derive(Debug, Clone, Copy)]
enum Sound {
    /// `--autoplay-policy=no-user-gesture-required`: every page may sound at once.
    Autoplay,
    /// Chromium's default: no sound before a click or key on the page.
    Blocked,
    /// The default, but the hub's address allowed to play sound in the site settings.
    SiteAllowed,
}

/// chromedriver in a process group of its own, with the Chromium it starts. Dropping it
/// ends the whole group, so a test that fails (and never closes its session) leaves no
/// browser behind.
struct Driver {
    child: Child,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group id is chromedriver's pid (`process_group(0)`); `kill` the program,
        // since this workspace forbids the unsafe call.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One headless Chromium window.
pub struct Browser {
    pub client: Client,
    pub base: String,
    _driver: Driver,
    _profile: tempfile::TempDir,
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl Browser {
    /// Start chromedriver and a Chromium session showing pages of `base`
    /// (e.g. `http://127.0.0.1:PORT`), set up as a kiosk: pages may play sound without
    /// a click first (`--autoplay-policy=no-user-gesture-required`).
    pub async fn start(
        paths: &(PathBuf, PathBuf),
        base: &str,
        viewport: Viewport,
    ) -> anyhow::Result<Browser> {
        Self::launch(paths, base, viewport, Sound::Autoplay).await
    }

    /// [`Browser::start`] with the browser's default autoplay policy: no sound until
    /// someone clicks or types on the page (an ordinary browser, a reloaded wall board).
    pub async fn start_blocking_autoplay(
        paths: &(PathBuf, PathBuf),
        base: &str,
        viewport: Viewport,
    ) -> anyhow::Result<Browser> {
        Self::launch(paths, base, viewport, Sound::Blocked).await
    }

    /// [`Browser::start_blocking_autoplay`], but with `base` allowed to play sound in the
    /// site settings (Site settings → Sound → Allow), as docs/pages.md tells a board PC.
    pub async fn start_with_sound_allowed_for_the_site(
        paths: &(PathBuf, PathBuf),
        base: &str,
        viewport: Viewport,
    ) -> anyhow::Result<Browser> {
        Self::launch(paths, base, viewport, Sound::SiteAllowed).await
    }

    async fn launch(
        (chromium, chromedriver): &(PathBuf, PathBuf),
        base: &str,
        viewport: Viewport,
        sound: Sound,
    ) -> anyhow::Result<Browser> {
        let port = free_port()?;
        let child = Command::new(chromedriver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", chromedriver.display()))?;
        let driver = Driver { child };
        let profile = tempfile::tempdir()?;
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-extensions".to_owned(),
            "--hide-scrollbars".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        if let Sound::Autoplay = sound {
            // The board plays its alarm sound without a click first (a kiosk setting).
            args.push("--autoplay-policy=no-user-gesture-required".to_owned());
        } else {
            // Chromium's own default, said out loud (headless might differ).
            args.push("--autoplay-policy=document-user-activation-required".to_owned());
        }
        let mut options = json!({ "binary": chromium.display().to_string() });
        match viewport {
            Viewport::Desktop { width, height } => {
                // The viewport itself (a window of this size would lose some height to
                // the browser's own bars, even headless).
                args.push(format!("--window-size={width},{}", height + 200));
                options["mobileEmulation"] = json!({
                    "deviceMetrics": { "width": width, "height": height, "pixelRatio": 1.0, "mobile": false, "touch": false },
                });
            }
            Viewport::Phone { width, height } => {
                options["mobileEmulation"] = json!({
                    "deviceMetrics": { "width": width, "height": height, "pixelRatio": 3.0, "touch": true },
                    "userAgent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Mobile Safari/537.36",
                });
            }
        }
        options["args"] = json!(args);
        if let Sound::SiteAllowed = sound {
            // What Site settings → Sound → Allow stores in the profile (1: allow).
            let site = format!("{},*", base.trim_end_matches('/'));
            options["prefs"] = json!({
                "profile.content_settings.exceptions.sound": { site: { "setting": 1 } },
            });
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        let url = format!("http://127.0.0.1:{port}");
        // chromedriver needs a moment to listen.
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => bail!("chromedriver session: {e}"),
            }
        };
        Ok(Browser {
            client,
            base: base.trim_end_matches('/').to_owned(),
            _driver: driver,
            _profile: profile,
        })
    }

    pub async fn goto(&self, path: &str) -> anyhow::Result<()> {
        self.client.goto(&format!("{}{path}", self.base)).await?;
        Ok(())
    }

    /// Run `script` (a function body; `arguments[i]` are `args`) in the page.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        Ok(self.client.execute(script, args).await?)
    }

    /// [`wait_js_for`] with [`PAGE_PATIENCE`].
    pub async fn wait_js(&self, what: &str, script: &str) -> anyhow::Result<Value> {
        wait_js_for(self, what, script, PAGE_PATIENCE).await
    }

    /// Wait until the page's script has loaded its data (`body[data-ready]`).
    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        self.wait_js(
            "the page to load",
            "return document.body.dataset.ready === '1';",
        )
        .await
        .map(|_| ())
    }

    /// Log in through the login page (`username`, `password`), ending on the page it
    /// leads to.
    pub async fn login(&self, username: &str, password: &str) -> anyhow::Result<()> {
        self.login_at("/login", username, password).await
    }

    /// [`Browser::login`] from a given login URL (e.g. with `?next=`).
    pub async fn login_at(
        &self,
        login_path: &str,
        username: &str,
        password: &str,
    ) -> anyhow::Result<()> {
        self.goto(login_path).await?;
        self.wait_ready().await?;
        self.client
            .find(Locator::Css("#username"))
            .await?
            .send_keys(username)
            .await?;
        self.client
            .find(Locator::Css("#password"))
            .await?
            .send_keys(password)
            .await?;
        self.client
            .find(Locator::Css("#login button[type=submit]"))
            .await?
            .click()
            .await?;
        self.wait_js(
            "the login to lead away from /login",
            "return location.pathname !== '/login' && document.body.dataset.ready === '1';",
        )
        .await?;
        Ok(())
    }

    /// Click the first element matching `css`. Pages re-render when data arrives, so an
    /// element found a moment ago may have been replaced: find it again then.
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let mut tries = 0;
        loop {
            let clicked = match self.client.find(Locator::Css(css)).await {
                Ok(e) => e.click().await.map_err(anyhow::Error::from),
                Err(e) => Err(e.into()),
            };
            match clicked {
                Ok(()) => return Ok(()),
                Err(e) if tries >= 5 => return Err(e.context(format!("clicking {css}"))),
                Err(_) => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// The rendered text of the first element matching `css`, read in one step in the
    /// page (no element handle that a re-render could make stale).
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        let v = self
            .js(
                "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
                vec![json!(css)],
            )
            .await?;
        match v {
            Value::String(s) => Ok(s),
            _ => bail!("no element matches {css}"),
        }
    }

    /// Page width beyond the viewport, CSS pixels (0: no horizontal scrolling).
    pub async fn horizontal_overflow(&self) -> anyhow::Result<i64> {
        let v = self
            .js(
                "const e = document.documentElement; return Math.max(e.scrollWidth, document.body.scrollWidth) - e.clientWidth;",
                vec![],
            )
            .await?;
        v.as_i64().context("overflow is a number")
    }

    /// The viewport, CSS pixels.
    pub async fn viewport(&self) -> anyhow::Result<(i64, i64)> {
        let v = self
            .js("return [window.innerWidth, window.innerHeight];", vec![])
            .await?;
        Ok((
            v[0].as_i64().context("width")?,
            v[1].as_i64().context("height")?,
        ))
    }

    /// Save a PNG of the viewport when `ANXIN_SCREENSHOTS` names a directory.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<()> {
        let Some(dir) = std::env::var_os("ANXIN_SCREENSHOTS") else {
            return Ok(());
        };
        let png = self.client.screenshot().await?;
        std::fs::create_dir_all(&dir)?;
        std::fs::write(PathBuf::from(dir).join(format!("{name}.png")), png)?;
        Ok(())
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// Wait until `script` returns something truthy (up to `patience`); its value.
pub async fn wait_js_for(
    b: &Browser,
    what: &str,
    script: &str,
    patience: Duration,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + patience;
    loop {
        if let Ok(v) = b.js(script, vec![]).await {
            let truthy =
                !matches!(&v, Value::Null | Value::Bool(false)) && v != json!(0) && v != json!("");
            if truthy {
                return Ok(v);
            }
        }
        if Instant::now() > deadline {
            let url = b.client.current_url().await.map(|u| u.to_string());
            bail!("timed out waiting for {what} (page {url:?})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
