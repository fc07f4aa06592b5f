//! Test support: start the `fanout` binary on a generated config (ports picked by the OS and
//! read back from its `listening` log line), a plain HTTP client, and raw-socket helpers.

use mockend::MockServer;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// Held by the tests that open thousands of sockets in this process (10,000 idle connections;
/// a burst of 2,000 pages with its 10,000 backend connections): one at a time, so that together
/// they stay under the open-file limit (20,000 on these machines) and each measures the
/// gateway's memory alone.
pub static MANY_SOCKETS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A running `fanout serve` process; killed on drop.
pub struct Gateway {
    child: Child,
    /// `http://127.0.0.1:PORT` of the public listener.
    pub url: String,
    /// `http://127.0.0.1:PORT` of the admin listener.
    pub admin: String,
    /// The public listener's address.
    pub addr: std::net::SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    /// Held by [`Gateway::stall_stdout`]: the reader takes it before keeping each line.
    reading: Arc<tokio::sync::Mutex<()>>,
    dir: PathBuf,
    file: PathBuf,
}

/// A fresh temporary directory for one test.
pub fn temp_dir() -> PathBuf {
    let n = NEXT_DIR.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("fanout-e2e-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `yaml` to a file in a fresh temp dir and returns both.
pub fn write_config(yaml: &str) -> (PathBuf, PathBuf) {
    let dir = temp_dir();
    let file = dir.join("fanout.yaml");
    std::fs::write(&file, yaml).unwrap();
    (dir, file)
}

/// Runs `fanout ARGS --config FILE` to completion with `yaml` as the config.
pub fn run_fanout(args: &[&str], yaml: &str) -> std::process::Output {
    run_fanout_with_env(args, yaml, &[])
}

/// [`run_fanout`] with extra environment variables (e.g. `FANOUT__…` overrides).
pub fn run_fanout_with_env(args: &[&str], yaml: &str, env: &[(&str, &str)]) -> std::process::Output {
    let (dir, file) = write_config(yaml);
    let mut command = Command::new(env!("CARGO_BIN_EXE_fanout"));
    command.args(args).arg("--config").arg(&file).envs(env.iter().copied());
    let output = command.output().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
    output
}

/// A config with `backends` (name, server) and the given `endpoints:` YAML list.
pub fn config(backends: &[(&str, &MockServer)], endpoints: &str) -> String {
    Config::new(backends, endpoints).render()
}

/// A test's gateway config, built by section: each setting lands in its section by
/// construction. (Editing generated YAML with `String::replace` runs the test on another config
/// when the text it looks for has changed: nothing checks that it matched.)
pub struct Config {
    /// `server:` settings, each `key: value` (a value may span lines, indented under it).
    server: Vec<String>,
    telemetry: Vec<String>,
    state: Vec<String>,
    /// Each backend's name and settings (`url` first).
    backends: Vec<(String, Vec<String>)>,
    endpoints: String,
}

impl Config {
    /// Listeners on ephemeral ports, a 5 s shutdown grace, a 2 s head deadline, `backends` (name,
    /// server) and the `endpoints:` YAML list.
    pub fn new(backends: &[(&str, &MockServer)], endpoints: &str) -> Self {
        let server = [
            "listen: 127.0.0.1:0",
            "admin_listen: 127.0.0.1:0",
            "shutdown_grace: 5s",
            "header_read_timeout: 2s",
        ];
        Config {
            server: server.map(str::to_owned).to_vec(),
            telemetry: Vec::new(),
            state: Vec::new(),
            backends: backends
                .iter()
                .map(|(name, server)| ((*name).to_owned(), vec![format!("url: {}", server.url())]))
                .collect(),
            endpoints: endpoints.to_owned(),
        }
    }

    /// Sets a `server:` setting (`"max_in_flight: 1"`), replacing the one with its key if any.
    pub fn server(mut self, setting: &str) -> Self {
        set(&mut self.server, setting);
        self
    }

    /// Removes the `server:` setting `key`, so that its default applies.
    pub fn server_default(mut self, key: &str) -> Self {
        let before = self.server.len();
        self.server.retain(|setting| key_of(setting) != key);
        assert_eq!(self.server.len() + 1, before, "no server setting {key} to remove");
        self
    }

    /// Sets a `state:` setting (`"redis: { url: … }"`).
    pub fn state(mut self, setting: &str) -> Self {
        set(&mut self.state, setting);
        self
    }

    /// Sets a `telemetry:` setting.
    pub fn telemetry(mut self, setting: &str) -> Self {
        set(&mut self.telemetry, setting);
        self
    }

    /// Sets a setting of the backend `name` (`"url: …"`, `"http2: true"`), adding the backend if
    /// it is not there yet.
    pub fn backend(mut self, name: &str, setting: &str) -> Self {
        match self.backends.iter_mut().find(|(known, _)| known == name) {
            Some((_, settings)) => set(settings, setting),
            None => self.backends.push((name.to_owned(), vec![setting.to_owned()])),
        }
        self
    }

    /// The YAML text.
    pub fn render(&self) -> String {
        let section = |name: &str, settings: &[String], indent: &str| {
            let mut text = format!("{name}:\n");
            for setting in settings {
                for line in setting.lines() {
                    text.push_str(&format!("{indent}{line}\n"));
                }
            }
            text
        };
        let mut yaml = section("server", &self.server, "  ");
        if !self.telemetry.is_empty() {
            yaml.push_str(&section("telemetry", &self.telemetry, "  "));
        }
        if !self.state.is_empty() {
            yaml.push_str(&section("state", &self.state, "  "));
        }
        yaml.push_str("backends:\n");
        for (name, settings) in &self.backends {
            yaml.push_str(&section(&format!("  {name}"), settings, "    "));
        }
        yaml.push_str("endpoints:\n");
        yaml.push_str(&self.endpoints);
        yaml
    }
}

/// The key of a `key: value` setting.
fn key_of(setting: &str) -> &str {
    setting.split(':').next().unwrap_or_default().trim()
}

/// Puts `setting` in `settings`, in place of the one with the same key if any.
fn set(settings: &mut Vec<String>, setting: &str) {
    match settings.iter_mut().find(|known| key_of(known) == key_of(setting)) {
        Some(known) => *known = setting.to_owned(),
        None => settings.push(setting.to_owned()),
    }
}

/// `text` with its one occurrence of `from` replaced by `to`; fails the test when `from` occurs
/// any other number of times (a replacement that matches nothing would change nothing).
pub fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from:?} should occur once in:\n{text}");
    text.replacen(from, to, 1)
}

impl Gateway {
    /// Starts `fanout serve` on `yaml` and waits until it listens.
    pub fn start(yaml: &str) -> Gateway {
        Gateway::start_with_env(yaml, &[])
    }

    /// Starts `fanout serve` on `yaml` with extra environment variables.
    pub fn start_with_env(yaml: &str, env: &[(&str, &str)]) -> Gateway {
        let (dir, file) = write_config(yaml);
        Gateway::start_file(dir, file, env)
    }

    /// Starts `fanout serve --config FILE` and waits until it listens; `dir` (which holds the
    /// config) is removed when the gateway is dropped.
    pub fn start_file(dir: PathBuf, file: PathBuf, env: &[(&str, &str)]) -> Gateway {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fanout"))
            .arg("serve")
            .arg("--config")
            .arg(&file)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let reading = Arc::new(tokio::sync::Mutex::new(()));
        let stdout = child.stdout.take().unwrap();
        let (sink, gate) = (Arc::clone(&logs), Arc::clone(&reading));
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _reading = gate.blocking_lock();
                sink.lock().unwrap().push(line);
            }
        });
        let started = Instant::now();
        loop {
            let listening = logs.lock().unwrap().iter().find_map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).ok()?;
                if v["message"] != "listening" {
                    return None;
                }
                Some((v["public"].as_str()?.to_owned(), v["admin"].as_str()?.to_owned()))
            });
            if let Some((public, admin)) = listening {
                return Gateway {
                    child,
                    url: format!("http://{public}"),
                    admin: format!("http://{admin}"),
                    addr: public.parse().unwrap(),
                    logs,
                    reading,
                    dir,
                    file,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("fanout exited before listening: {status}");
            }
            if started.elapsed() > Duration::from_secs(10) {
                // Not left running: its open stdout pipe would keep the test binary waiting.
                let _ = child.kill();
                let _ = child.wait();
                panic!("fanout did not log its `listening` line within 10 s (log_level above info?)");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The process's resident memory now and its peak since the last [`Gateway::reset_peak_rss`]
    /// (or its start), in bytes (Linux `/proc`: `VmRSS`, `VmHWM`).
    pub fn rss(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib = |key: &str| -> u64 {
            let line = status.lines().find(|l| l.starts_with(key)).unwrap();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        };
        (kib("VmRSS:") * 1024, kib("VmHWM:") * 1024)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resets the peak resident memory to the current one (`/proc/PID/clear_refs`).
    pub fn reset_peak_rss(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5").unwrap();
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends the signal `name` (`TERM`, `HUP`, …).
    pub fn signal(&self, name: &str) {
        let status =
            Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
    }

    /// The config file the gateway was started with.
    pub fn config_file(&self) -> &std::path::Path {
        &self.file
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Stops reading the process's stdout until the guard is dropped, as a stalled log
    /// collector would: once the pipe is full, the process's writes to stdout block.
    pub async fn stall_stdout(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.reading.lock().await
    }

    /// The log lines written so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// The JSON log lines written so far, parsed.
    pub fn json_logs(&self) -> Vec<serde_json::Value> {
        self.logs().iter().filter_map(|line| serde_json::from_str(line).ok()).collect()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Parses Prometheus text into `series{labels} -> value`.
pub fn samples(text: &str) -> std::collections::HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// A client that never uses a proxy and keeps connections alive.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// GETs `url` and returns (status, headers, JSON body).
pub async fn get_json(url: &str) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let response = client().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap();
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&body)));
    (status, headers, json)
}

/// Writes raw bytes on a new connection and reads the answer until close or `limit`.
pub async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8], limit: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status code of the first response in a raw HTTP/1.1 answer.
pub fn raw_status(answer: &str) -> Option<u16> {
    answer.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// GETs the raw request-target `target` over a plain socket (no client-side normalisation of
/// `..` or `%2e`) and returns the status and the body.
pub async fn raw_get(addr: std::net::SocketAddr, target: &str) -> (Option<u16>, String) {
    let request = format!("GET {target} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
    let answer = raw_exchange(addr, request.as_bytes(), Duration::from_secs(5)).await;
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (raw_status(&answer), body)
}

/// Polls `condition` every 10 ms (yielding to the runtime) until it holds or `limit` passes.
pub async fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}

/// A one-route raw HTTP/1.1 backend on 127.0.0.1:0: for every connection it reads the request
/// head and writes `head` followed by `chunks`, each write `pause` after the one before, then
/// closes. For answers mockend cannot give (chunked bodies of any size, bodies in pieces).
/// Returns its base URL; the task ends with the runtime.
pub async fn raw_backend(head: &str, chunks: Vec<Vec<u8>>, pause: Duration) -> String {
    let head = head.to_owned();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (head, chunks) = (head.clone(), chunks.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(head.as_bytes()).await;
                for chunk in chunks {
                    tokio::time::sleep(pause).await;
                    if stream.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

/// A real `redis-server` on a free port of 127.0.0.1, without persistence; killed on drop.
/// (`make test` installs Debian's redis-server when missing: `scripts/tools.sh redis`.)
pub struct RedisServer {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
}

impl RedisServer {
    /// Starts one on a free port and waits until it answers.
    pub fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = RedisServer { child: None, port };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again, on the same port) and waits until it answers `PING`.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is not installed: run `bash scripts/tools.sh redis` (make test does)");
        self.child = Some(child);
        let started = Instant::now();
        while self.cli(&["PING"]).trim() != "PONG" {
            assert!(started.elapsed() < Duration::from_secs(10), "redis-server did not answer within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it at once (SIGKILL: no goodbye to its clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs one `redis-cli` command against it; its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let output =
            Command::new("redis-cli").args(["-p", &self.port.to_string()]).args(args).output().unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
