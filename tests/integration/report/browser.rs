//! A real headless browser for the report test: Debian's `chromium`, driven
//! through the Chrome `DevTools` Protocol over `--remote-debugging-pipe` (JSON
//! messages ending in NUL on file descriptors 3 and 4), so no WebSocket client
//! and no network are needed. [`Browser::load`] opens a page, waits for its load
//! event, evaluates an expression, and returns it with every console error,
//! uncaught exception and failed resource load the page produced.

use std::fs::File;
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::fd::{FromRawFd as _, RawFd};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long any one answer may take.
const PATIENCE: Duration = Duration::from_secs(60);

/// A running headless Chromium.
pub struct Browser {
    child: Child,
    to: File,
    from: Receiver<Value>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

/// What a page did.
pub struct Loaded {
    /// The evaluated expression's value.
    pub value: Value,
    /// Console errors, exceptions and failed loads, as text.
    pub errors: Vec<String>,
}

/// The browser to use: `$MSNR_CHROMIUM`, else `chromium`, `chromium-browser` or
/// `google-chrome` on the PATH.
pub fn find() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MSNR_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

fn pipe() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    (fds[0], fds[1])
}

impl Browser {
    /// Starts `exe` headless with a fresh profile and no network use of its own.
    ///
    /// # Errors
    /// When it cannot be started or does not answer.
    pub fn start(exe: &Path) -> Result<Self, String> {
        let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
        let (to_read, to_write) = pipe();
        let (from_read, from_write) = pipe();
        let mut cmd = Command::new(exe);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec; the
        // pipe ends are moved above 10 first so dup2 onto 3 and 4 cannot clobber them.
        unsafe {
            cmd.pre_exec(move || {
                let a = libc::fcntl(to_read, libc::F_DUPFD_CLOEXEC, 10);
                let b = libc::fcntl(from_write, libc::F_DUPFD_CLOEXEC, 10);
                if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| format!("{}: {e}", exe.display()));
        // SAFETY: each fd came from pipe2 above and is owned by exactly one File here.
        let (to, from_file) = unsafe {
            libc::close(to_read);
            libc::close(from_write);
            (File::from_raw_fd(to_write), File::from_raw_fd(from_read))
        };
        let child = child?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(from_file);
            let mut buf = Vec::new();
            while reader.read_until(0, &mut buf).is_ok_and(|n| n > 0) {
                buf.pop();
                if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
                buf.clear();
            }
        });
        let mut browser = Self { child, to, from: rx, next_id: 0, _profile: profile };
        browser.call(None, "Browser.getVersion", &json!({}), &mut Vec::new())?;
        Ok(browser)
    }

    /// Sends a command and waits for its answer; events that arrive meanwhile go to `events`.
    fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: &Value,
        events: &mut Vec<Value>,
    ) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).map_err(|e| e.to_string())?;
        bytes.push(0);
        self.to.write_all(&bytes).map_err(|e| format!("{method}: {e}"))?;
        let deadline = Instant::now() + PATIENCE;
        loop {
            let v = self.recv(deadline, method)?;
            if v["id"] == json!(id) {
                if let Some(err) = v.get("error") {
                    return Err(format!("{method}: {err}"));
                }
                return Ok(v["result"].clone());
            }
            events.push(v);
        }
    }

    fn recv(&self, deadline: Instant, what: &str) -> Result<Value, String> {
        match self.from.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(v) => Ok(v),
            Err(RecvTimeoutError::Timeout) => Err(format!("{what}: no answer in {PATIENCE:?}")),
            Err(RecvTimeoutError::Disconnected) => Err(format!("{what}: the browser closed its pipe")),
        }
    }

    /// Opens `page` in a new tab, waits for its load event, then evaluates `expression`
    /// (which must return a JSON-serialisable value).
    ///
    /// # Errors
    /// When the browser fails a command or the page never loads.
    pub fn load(&mut self, page: &Path, expression: &str) -> Result<Loaded, String> {
        let mut events = Vec::new();
        let target = self.call(None, "Target.createTarget", &json!({ "url": "about:blank" }), &mut events)?;
        let attached = self.call(
            None,
            "Target.attachToTarget",
            &json!({ "targetId": target["targetId"], "flatten": true }),
            &mut events,
        )?;
        let session = attached["sessionId"].as_str().ok_or("no session id")?.to_string();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            self.call(Some(&session), domain, &json!({}), &mut events)?;
        }
        events.clear();
        let url = format!("file://{}", page.canonicalize().map_err(|e| e.to_string())?.display());
        self.call(Some(&session), "Page.navigate", &json!({ "url": url }), &mut events)?;
        let deadline = Instant::now() + PATIENCE;
        while !events.iter().any(|e| e["method"] == "Page.loadEventFired" && e["sessionId"] == json!(session)) {
            events.push(self.recv(deadline, "the page's load event")?);
        }
        let value = self.call(
            Some(&session),
            "Runtime.evaluate",
            &json!({ "expression": expression, "returnByValue": true }),
            &mut events,
        )?;
        if let Some(ex) = value.get("exceptionDetails") {
            return Err(format!("the check itself threw: {ex}"));
        }
        let errors = events.iter().filter_map(error_of).collect();
        Ok(Loaded { value: value["result"]["value"].clone(), errors })
    }
}

/// A console error, uncaught exception or failed load, as text.
fn error_of(event: &Value) -> Option<String> {
    let p = &event["params"];
    match event["method"].as_str()? {
        "Runtime.exceptionThrown" => Some(format!("exception: {}", p["exceptionDetails"])),
        "Runtime.consoleAPICalled" if matches!(p["type"].as_str(), Some("error" | "assert")) => {
            Some(format!("console.{}: {}", p["type"], p["args"]))
        }
        "Log.entryAdded" if p["entry"]["level"] == "error" => {
            Some(format!("{}: {} {}", p["entry"]["source"], p["entry"]["text"], p["entry"]["url"]))
        }
        _ => None,
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.call(None, "Browser.close", &json!({}), &mut Vec::new());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
