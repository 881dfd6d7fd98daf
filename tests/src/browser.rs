//! Headless Chromium driven over WebDriver (chromedriver), with fake camera and
//! microphone, as a commentator's browser.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::{Proc, TempDir, free_tcp_port, wait_for};

/// One browser session; the browser and its driver end on drop.
pub struct Browser {
    base: String,
    session: String,
    agent: ureq::Agent,
    _driver: Proc,
    _profile: TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile.
    pub fn start() -> Result<Browser> {
        Self::start_with(&[])
    }

    /// The same, with more Chromium flags (e.g. `--ignore-certificate-errors` for
    /// a self-signed server).
    pub fn start_with(extra: &[&str]) -> Result<Browser> {
        let port = free_tcp_port();
        Self::launch(Command::new("chromedriver").arg(format!("--port={port}")), format!("http://127.0.0.1:{port}"), extra)
    }

    /// The same, with Chromium (and its driver) inside network namespace `ns`: it
    /// reaches the server only over the namespace's link, through whatever the
    /// namespace's firewall lets pass.
    pub fn start_in(ns: &crate::net::Namespace, extra: &[&str]) -> Result<Browser> {
        let port = free_tcp_port();
        let mut driver = ns.command("chromedriver");
        // The driver answers this test (at the machine's end of the link) only.
        driver.args([format!("--port={port}"), format!("--allowed-ips={}", ns.host)]);
        Self::launch(&mut driver, format!("http://{}:{port}", ns.ip), extra)
    }

    fn launch(driver: &mut Command, base: String, extra: &[&str]) -> Result<Browser> {
        let driver = driver
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start chromedriver (install chromium-driver: scripts/install-deps.sh test)")?;
        let driver = Proc(driver);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        wait_for("chromedriver", Duration::from_secs(20), || {
            agent.get(&format!("{base}/status")).call().ok().filter(|r| r.status() == 200)
        })?;
        let profile = TempDir::new("chromium");
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--use-fake-device-for-media-stream".into(),
            "--use-fake-ui-for-media-stream".into(),
            "--autoplay-policy=no-user-gesture-required".into(),
            "--allow-loopback-in-peer-connection".into(),
            "--disable-dev-shm-usage".into(),
            format!("--user-data-dir={}", profile.0.display()),
        ];
        let args: Vec<String> = args.into_iter().chain(extra.iter().map(|a| a.to_string())).collect();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}
        }}});
        let v = post(&agent, &format!("{base}/session"), &caps)?;
        let session = v["value"]["sessionId"].as_str().context("no session id from chromedriver")?.to_string();
        Ok(Browser { base, session, agent, _driver: driver, _profile: profile })
    }

    /// Kills this Chromium at once (SIGKILL, as a crash or a closed laptop lid
    /// would end it): its pages get no chance to say goodbye.
    pub fn kill(&self) -> Result<()> {
        let profile = self._profile.0.display().to_string();
        let status = Command::new("pkill").args(["-KILL", "-f", &format!("user-data-dir={profile}")]).status()?;
        anyhow::ensure!(status.success(), "no Chromium process with profile {profile} to kill");
        Ok(())
    }

    fn url(&self, path: &str) -> String {
        format!("{}/session/{}/{path}", self.base, self.session)
    }

    /// Opens a page.
    pub fn goto(&self, url: &str) -> Result<()> {
        post(&self.agent, &self.url("url"), &json!({"url": url}))?;
        Ok(())
    }

    /// Opens a room page (`/room/{id}?token=…`) and joins as a person would: the
    /// pre-join screen's Join, once it is ready (devices listed, or watch-only).
    pub fn join_room(&self, url: &str) -> Result<()> {
        self.open_room(url)?;
        self.eval("document.querySelector('#btn-join').click()")?;
        Ok(())
    }

    /// Its driver is reached at `ip` now (the namespace it runs in moved).
    pub fn driver_moved_to(&mut self, ip: std::net::Ipv4Addr) {
        let port = self.base.rsplit(':').next().unwrap_or_default().to_string();
        self.base = format!("http://{ip}:{port}");
    }

    /// Opens a room page and waits on its pre-join screen until Join can be pressed.
    pub fn open_room(&self, url: &str) -> Result<()> {
        self.goto(url)?;
        wait_for("the pre-join screen's Join", Duration::from_secs(30), || {
            let ready = self.eval("const b = document.querySelector('#btn-join'); return !!b && !b.disabled && b.offsetParent !== null").ok()?;
            (ready == json!(true)).then_some(())
        })
        .map_err(|e| {
            // What the person would have seen, to tell a slow page from a stuck one.
            let seen = self
                .eval(
                    "const t = (id) => { const e = document.getElementById(id); return e && !e.hidden ? e.textContent.trim() : null; };
                     return { url: location.href, view: window.casecast?.view, state: window.casecast?.state,
                              status: t('conn-text'),
                              banner: t('banner-text'), hint: t('join-hint'), media: t('media-error-text'),
                              outage: t('outage-detail'), fatal: t('fatal-text'), ready: document.readyState,
                              loaded: performance.getEntriesByType('resource').map((e) => `${e.name.split('?')[0]} ${Math.round(e.responseEnd)}ms ${e.responseStatus ?? ''}`) };",
                )
                .unwrap_or(Value::Null);
            anyhow::anyhow!("{e}; the page showed {seen}")
        })?;
        Ok(())
    }

    /// Runs an async script: the last argument is the callback to call with the result.
    pub fn eval_async(&self, script: &str) -> Result<Value> {
        let v = post(&self.agent, &self.url("execute/async"), &json!({"script": script, "args": []}))?;
        Ok(v["value"].clone())
    }

    /// Runs a script and returns its value.
    pub fn eval(&self, script: &str) -> Result<Value> {
        let v = post(&self.agent, &self.url("execute/sync"), &json!({"script": script, "args": []}))?;
        Ok(v["value"].clone())
    }

    /// Puts a local file into the page's `<input type=file>` chosen by `css`, as a
    /// user picking it would.
    pub fn choose_file(&self, css: &str, path: &std::path::Path) -> Result<()> {
        let v = post(&self.agent, &self.url("element"), &json!({"using": "css selector", "value": css}))?;
        let id = v["value"]["element-6066-11e4-a52e-4f735466cecf"].as_str().with_context(|| format!("no element {css}: {v}"))?.to_string();
        post(&self.agent, &self.url(&format!("element/{id}/value")), &json!({"text": path.display().to_string()}))?;
        Ok(())
    }

    /// Saves a PNG screenshot of the page, in a window `width`×`height`.
    pub fn screenshot(&self, path: &std::path::Path, width: u32, height: u32) -> Result<()> {
        use base64::Engine;
        post(&self.agent, &self.url("window/rect"), &json!({"width": width, "height": height}))?;
        // The page has taken its new size (and laid itself out again) when it says so.
        wait_for("the window's new size", Duration::from_secs(10), || {
            let w = self.eval("return window.outerWidth").ok()?.as_u64()?;
            (w == u64::from(width)).then(|| self.eval("return new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(() => ok(true))))"))
        })??;
        let v: Value = self.agent.get(&self.url("screenshot")).call()?.body_mut().read_json()?;
        let png = base64::engine::general_purpose::STANDARD.decode(v["value"].as_str().context("no screenshot")?)?;
        std::fs::write(path, png)?;
        Ok(())
    }

    /// Lays the page out as a screen `width`×`height` CSS pixels shows it (a phone, a
    /// tablet), whatever the window's size (Chromium's device metrics override, as
    /// its device toolbar does), and saves a PNG of what it shows.
    pub fn screenshot_as(&self, path: &std::path::Path, width: u32, height: u32, mobile: bool) -> Result<()> {
        use base64::Engine;
        let params = json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile});
        post(&self.agent, &self.url("goog/cdp/execute"), &json!({"cmd": "Emulation.setDeviceMetricsOverride", "params": params}))?;
        wait_for(&format!("the page's new size ({width} px)"), Duration::from_secs(10), || {
            let w = self.eval("return window.innerWidth").ok()?.as_u64()?;
            (w == u64::from(width)).then(|| self.eval("return new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(() => ok(true))))"))
        })??;
        let v: Value = self.agent.get(&self.url("screenshot")).call()?.body_mut().read_json()?;
        let png = base64::engine::general_purpose::STANDARD.decode(v["value"].as_str().context("no screenshot")?)?;
        std::fs::write(path, png)?;
        Ok(())
    }

    /// The browser's console log, for failures.
    pub fn title(&self) -> String {
        self.eval("return document.title").map(|v| v.to_string()).unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.agent.delete(&format!("{}/session/{}", self.base, self.session)).call();
    }
}

fn post(agent: &ureq::Agent, url: &str, body: &Value) -> Result<Value> {
    let mut r = agent.post(url).send_json(body)?;
    let status = r.status().as_u16();
    let v: Value = r.body_mut().read_json()?;
    if status != 200 {
        bail!("webdriver {url}: {status} {}", v["value"]["message"]);
    }
    Ok(v)
}
