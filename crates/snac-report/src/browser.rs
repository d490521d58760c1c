//! Opens `report.html` in headless Chromium: to check that its script ran
//! without errors (the DOM after the script, plus the console log) and to
//! take a screenshot. Used by `snac report --screenshot` and by the tests.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Chromium: `$SNAC_CHROMIUM`, else `chromium` or `chromium-browser` on PATH.
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SNAC_CHROMIUM").map(PathBuf::from) {
        return path.exists().then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// How long a page may take.
const TIMEOUT: Duration = Duration::from_secs(90);

/// What Chromium saw of a page.
#[derive(Clone, Debug)]
pub struct PageCheck {
    /// The DOM after the scripts ran.
    pub dom: String,
    /// Console lines Chromium logged (errors and messages of the page).
    pub console: Vec<String>,
}

impl PageCheck {
    /// The report's script finished (`<body data-ready="1">`).
    pub fn ready(&self) -> bool {
        self.dom.contains("data-ready=\"1\"")
    }

    /// Errors the page collected (`#js-errors`), empty when none.
    pub fn js_errors(&self) -> String {
        let Some(start) = self.dom.find("id=\"js-errors\"") else { return String::new() };
        let rest = &self.dom[start..];
        let open = rest.find('>').map_or(rest.len(), |i| i + 1);
        let close = rest.find("</pre>").unwrap_or(rest.len());
        rest[open.min(close)..close].trim().to_string()
    }

    /// The value of an attribute in the DOM (the first one of that name),
    /// with HTML entities undone.
    pub fn attribute(&self, name: &str) -> Option<String> {
        let start = self.dom.find(&format!(" {name}=\""))? + name.len() + 3;
        let end = start + self.dom[start..].find('"')?;
        let raw = &self.dom[start..end];
        Some(raw.replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    }

    /// Number of `<circle class="pt` elements in the Pareto scatter.
    pub fn scatter_points(&self) -> usize {
        self.dom.matches("<circle class=\"pt").count()
    }
}

/// A fresh profile directory, removed on drop.
struct Profile(PathBuf);

impl Profile {
    fn new() -> Result<Profile> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("snac-chromium-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Profile(dir))
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn file_url(html: &Path, fragment: &str) -> Result<String> {
    let absolute = html.canonicalize().with_context(|| format!("{} does not exist", html.display()))?;
    Ok(format!("file://{}{fragment}", absolute.display()))
}

/// Runs Chromium headless on `html` with `extra` flags; returns (stdout, stderr).
fn run(chromium: &Path, html: &Path, fragment: &str, extra: &[String]) -> Result<(String, String)> {
    let profile = Profile::new()?;
    let mut command = Command::new(chromium);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .args(extra)
        .arg(file_url(html, fragment)?)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().with_context(|| format!("starting {}", chromium.display()))?;
    // Read both pipes on threads so a full pipe never blocks Chromium.
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{} did not finish {} within {} s", chromium.display(), html.display(), TIMEOUT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
    if !status.success() {
        bail!("{} failed on {} ({status}): {}", chromium.display(), html.display(), stderr.trim());
    }
    Ok((stdout, stderr))
}

/// Loads the page, lets its scripts run, and returns the DOM and console.
pub fn check_page(chromium: &Path, html: &Path) -> Result<PageCheck> {
    load(chromium, html, "")
}

/// [`check_page`] with `#selftest`: the report's script also hovers over a
/// point and switches the y axis, and records both in `<body>` attributes
/// ([`PageCheck::attribute`]).
pub fn self_test(chromium: &Path, html: &Path) -> Result<PageCheck> {
    load(chromium, html, "#selftest")
}

fn load(chromium: &Path, html: &Path, fragment: &str) -> Result<PageCheck> {
    let (dom, stderr) = run(chromium, html, fragment, &["--dump-dom".into(), "--virtual-time-budget=3000".into()])?;
    let console = stderr.lines().filter(|line| line.contains("CONSOLE")).map(str::to_string).collect();
    Ok(PageCheck { dom, console })
}

/// Saves a PNG screenshot of the page at `size` (width, height).
pub fn screenshot(chromium: &Path, html: &Path, png: &Path, size: (u32, u32)) -> Result<()> {
    let png_abs = std::path::absolute(png).with_context(|| format!("resolving {}", png.display()))?;
    run(
        chromium,
        html,
        "",
        &[
            format!("--screenshot={}", png_abs.display()),
            format!("--window-size={},{}", size.0, size.1),
            "--hide-scrollbars".into(),
            "--virtual-time-budget=3000".into(),
        ],
    )?;
    if !png_abs.exists() {
        bail!("{} wrote no screenshot to {}", chromium.display(), png_abs.display());
    }
    Ok(())
}
