//! Section 2: the HTTP command path against a real `plaza serve` process, with
//! `GET /healthz` on the same server as the no-op baseline.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tokio::runtime::Runtime;

use crate::Settings;
use crate::pg::FreshDatabase;
use crate::stats::{Measurement, Window, WorkerLog};

/// Concurrent client threads (each also owns one follow target).
pub const CLIENTS: usize = 16;
const PASSWORD: &str = "correct horse battery staple";

pub struct HttpResult {
    pub profile: &'static str,
    pub healthz: Measurement,
    pub commands: Measurement,
    pub visibility: Visibility,
}

/// Commands each followed by a GraphQL read that waits for the command's position.
pub struct Visibility {
    pub profile: &'static str,
    /// The command alone.
    pub commands: Measurement,
    /// From sending the command until the GraphQL answer that includes it arrived.
    pub visible: Measurement,
}

impl HttpResult {
    /// Command throughput as a fraction of the no-op baseline's.
    pub fn ratio(&self) -> f64 {
        let baseline = self.healthz.per_second();
        if baseline > 0.0 { self.commands.per_second() / baseline } else { 0.0 }
    }
}

pub fn run_all(runtime: &Runtime, plaza: &Path, settings: &Settings, admin: &str) -> anyhow::Result<Vec<HttpResult>> {
    let embedded =
        run_profile(plaza, "embedded (SQLite)", &[("PLAZA_STORE_URL", "sqlite".into()), ("PLAZA_READ_MODELS_URL", "sqlite".into())], settings)?;

    let database = runtime.block_on(FreshDatabase::create(admin))?;
    let env = [("PLAZA_STORE_URL", database.url.clone()), ("PLAZA_READ_MODELS_URL", database.url.clone())];
    let postgres = run_profile(plaza, "PostgreSQL", &env, settings);
    let dropped = runtime.block_on(database.drop_now());
    let postgres = postgres?;
    dropped?;
    Ok(vec![embedded, postgres])
}

fn run_profile(plaza: &Path, profile: &'static str, env: &[(&'static str, String)], settings: &Settings) -> anyhow::Result<HttpResult> {
    eprintln!("[http] {profile}: starting plaza serve");
    let mut server = Server::start(plaza, env)?;
    eprintln!("[http] {profile}: registering {CLIENTS} clients and {CLIENTS} targets");
    let pairs = register_pairs(&server.base)?;

    eprintln!("[http] {profile}: GET /healthz, {CLIENTS} clients...");
    let healthz = run_clients(&server.base, &pairs, Workload::Healthz, settings)?;
    eprintln!("[http] {profile}: healthz: {}", healthz.summary("requests"));

    eprintln!("[http] {profile}: follow/unfollow, {CLIENTS} clients...");
    let commands = run_clients(&server.base, &pairs, Workload::FollowUnfollow, settings)?;
    eprintln!("[http] {profile}: commands: {}", commands.summary("requests"));
    let visibility = run_visibility(profile, &server.base, &server.base, &pairs, settings)?;
    server.check_alive()?;
    Ok(HttpResult { profile, healthz, commands, visibility })
}

/// Measures command -> visible in GraphQL: each client sends a follow (or unfollow),
/// then a GraphQL read of the target's follower count with `Plaza-Min-Position` set to
/// the command's position, which waits until the read models include the command.
pub fn run_visibility(profile: &'static str, write_base: &str, read_base: &str, pairs: &[Pair], settings: &Settings) -> anyhow::Result<Visibility> {
    eprintln!("[visibility] {profile}: command, then GraphQL read at its position, {} clients...", pairs.len());
    let window = Window::starting_now(settings.warmup, settings.http_case);
    let logs = std::thread::scope(|scope| {
        let handles: Vec<_> = pairs.iter().map(|pair| scope.spawn(move || visibility_client(write_base, read_base, pair, window))).collect();
        handles.into_iter().map(|handle| handle.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))).collect::<Result<Vec<_>, _>>()
    })?;
    let (commands, visible): (Vec<WorkerLog>, Vec<WorkerLog>) = logs.into_iter().unzip();
    let result = Visibility { profile, commands: Measurement::finish(&window, commands), visible: Measurement::finish(&window, visible) };
    eprintln!("[visibility] {profile}: commands {}", result.commands.summary("requests"));
    eprintln!("[visibility] {profile}: visible {}", result.visible.summary("reads"));
    Ok(result)
}

fn visibility_client(write_base: &str, read_base: &str, pair: &Pair, window: Window) -> (WorkerLog, WorkerLog) {
    let agent = agent(Duration::from_secs(30));
    let follow_url = format!("{write_base}/api/v1/users/{}/follow", pair.target);
    let graphql_url = format!("{read_base}/graphql");
    let bearer = format!("Bearer {}", pair.token);
    let query = json!({ "query": "query($id: ID!) { user(id: $id) { followersCount } }", "variables": { "id": pair.target } });
    let (mut commands, mut visible) = (WorkerLog::default(), WorkerLog::default());
    let mut follow_next = true;
    loop {
        let started = Instant::now();
        if !window.is_open(started) {
            return (commands, visible);
        }
        let answer = if follow_next {
            agent.post(&follow_url).header("authorization", &bearer).send_empty()
        } else {
            agent.delete(&follow_url).header("authorization", &bearer).call()
        };
        follow_next = !follow_next;
        let position = position_of(answer);
        commands.record(&window, started, started.elapsed(), position.is_some());
        let Some(position) = position else { continue };
        let read = agent.post(&graphql_url).header("plaza-min-position", position.to_string()).send_json(&query);
        visible.record(&window, started, started.elapsed(), answered(read, "followersCount"));
    }
}

/// The `position` of a command's 200 answer.
fn position_of(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Option<u64> {
    let mut response = result.ok()?;
    let body = response.body_mut().read_to_string().ok()?;
    if response.status() != 200 {
        return None;
    }
    serde_json::from_str::<Value>(&body).ok()?["position"].as_u64()
}

/// A `plaza` child process (one role, or `serve`) with its own data directory; killed
/// on drop.
pub struct Server {
    pub base: String,
    /// The settings it was started with (to start another like it).
    pub env: Vec<(&'static str, String)>,
    child: Child,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(plaza: &Path, env: &[(&'static str, String)]) -> anyhow::Result<Self> {
        Self::start_role(plaza, "serve", env)
    }

    pub fn start_role(plaza: &Path, role: &str, env: &[(&'static str, String)]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
        let port = free_port()?;
        let log_path = dir.path().join("plaza.log");
        let log = File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut command = Command::new(plaza);
        command.arg(role).stdout(Stdio::null()).stderr(log);
        // Only our settings: no PLAZA_* (or config file) inherited from the caller's shell.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PLAZA_") {
                command.env_remove(key);
            }
        }
        command
            .env("PLAZA_LISTEN", format!("127.0.0.1:{port}"))
            .env("PLAZA_DATA_DIR", dir.path().join("data"))
            .env("PLAZA_LOG", "warn")
            // The benchmark is one client host hammering on purpose.
            .env("PLAZA_RATE_LIMIT_USER_PER_SEC", "0")
            .env("PLAZA_RATE_LIMIT_IP_PER_SEC", "0")
            .env("PLAZA_GRAPHQL_RATE_LIMIT_USER_PER_SEC", "0")
            .env("PLAZA_GRAPHQL_RATE_LIMIT_IP_PER_SEC", "0")
            .env("PLAZA_HTTP_MAX_CONNECTIONS_PER_IP", "0")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        let child = command.spawn().with_context(|| format!("cannot start {}", plaza.display()))?;
        let mut server = Self { base: format!("http://127.0.0.1:{port}"), env: env.to_vec(), child, log_path, _dir: dir };
        server.wait_until_ready()?;
        Ok(server)
    }

    fn wait_until_ready(&mut self) -> anyhow::Result<()> {
        let agent = agent(Duration::from_secs(2));
        let url = format!("{}/readyz", self.base);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            self.check_alive()?;
            if agent.get(&url).call().is_ok_and(|response| response.status() == 200) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("plaza did not become ready within 60 s; its log:\n{}", self.log())
    }

    /// The process id (for its memory use).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait().context("cannot check the plaza process")? {
            bail!("plaza exited with {status}; its log:\n{}", self.log());
        }
        Ok(())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// A keep-alive HTTP client that returns error statuses as answers.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(timeout)).build().into()
}

/// A client and the user it follows and unfollows.
pub struct Pair {
    token: String,
    target: String,
}

/// Registers `CLIENTS` clients and as many targets, one thread per pair.
pub fn register_pairs(base: &str) -> anyhow::Result<Vec<Pair>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|i| {
                scope.spawn(move || -> anyhow::Result<Pair> {
                    let agent = agent(Duration::from_secs(60));
                    let (_, token) = register(&agent, base, &format!("client_{i}"))?;
                    let (target, _) = register(&agent, base, &format!("target_{i}"))?;
                    Ok(Pair { token, target })
                })
            })
            .collect();
        handles.into_iter().map(|handle| handle.join().map_err(|_| anyhow::anyhow!("a registration thread panicked"))?).collect()
    })
}

/// Registers one user; returns (user id, token).
pub fn register(agent: &ureq::Agent, base: &str, username: &str) -> anyhow::Result<(String, String)> {
    let body = json!({ "username": username, "email": format!("{username}@bench.example"), "password": PASSWORD });
    let mut response = agent.post(format!("{base}/api/v1/users/register")).send_json(&body).with_context(|| format!("cannot register {username}"))?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    if status != 201 {
        bail!("registering {username} answered {status}: {text}");
    }
    let answer: Value = serde_json::from_str(&text).with_context(|| format!("registration answer is not JSON: {text}"))?;
    let field = |name: &str| answer[name].as_str().map(str::to_owned).with_context(|| format!("no {name} in the registration answer: {text}"));
    Ok((field("user_id")?, field("token")?))
}

#[derive(Clone, Copy)]
enum Workload {
    /// `GET /healthz`: routing, HTTP and the client, no work.
    Healthz,
    /// Alternating `POST` and `DELETE /api/v1/users/{target}/follow`.
    FollowUnfollow,
}

/// Runs one client thread per pair until the window closes.
fn run_clients(base: &str, pairs: &[Pair], workload: Workload, settings: &Settings) -> anyhow::Result<Measurement> {
    let window = Window::starting_now(settings.warmup, settings.http_case);
    let logs = std::thread::scope(|scope| {
        let handles: Vec<_> = pairs.iter().map(|pair| scope.spawn(move || client(base, pair, workload, window))).collect();
        handles.into_iter().map(|handle| handle.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))).collect::<Result<Vec<_>, _>>()
    })?;
    Ok(Measurement::finish(&window, logs))
}

fn client(base: &str, pair: &Pair, workload: Workload, window: Window) -> WorkerLog {
    let agent = agent(Duration::from_secs(30));
    let follow_url = format!("{base}/api/v1/users/{}/follow", pair.target);
    let healthz_url = format!("{base}/healthz");
    let bearer = format!("Bearer {}", pair.token);
    let mut log = WorkerLog::default();
    let mut follow_next = true;
    loop {
        let started = Instant::now();
        if !window.is_open(started) {
            return log;
        }
        let ok = match workload {
            Workload::Healthz => answered(agent.get(&healthz_url).call(), "ok"),
            Workload::FollowUnfollow if follow_next => answered(agent.post(&follow_url).header("authorization", &bearer).send_empty(), "position"),
            Workload::FollowUnfollow => answered(agent.delete(&follow_url).header("authorization", &bearer).call(), "position"),
        };
        log.record(&window, started, started.elapsed(), ok);
        follow_next = !follow_next;
    }
}

/// Follows and unfollows (one thread per pair) until `stop`; returns the highest
/// position a command was acknowledged with, and how many were.
pub fn follow_load(base: &str, pairs: &[Pair], stop: &std::sync::atomic::AtomicBool) -> (u64, u64) {
    use std::sync::atomic::Ordering;
    std::thread::scope(|scope| {
        let handles: Vec<_> = pairs
            .iter()
            .map(|pair| {
                scope.spawn(move || {
                    let agent = agent(Duration::from_secs(30));
                    let url = format!("{base}/api/v1/users/{}/follow", pair.target);
                    let bearer = format!("Bearer {}", pair.token);
                    let (mut highest, mut acknowledged, mut follow_next) = (0, 0, true);
                    while !stop.load(Ordering::Relaxed) {
                        let answer = if follow_next {
                            agent.post(&url).header("authorization", &bearer).send_empty()
                        } else {
                            agent.delete(&url).header("authorization", &bearer).call()
                        };
                        if let Some(position) = position_of(answer) {
                            (highest, acknowledged) = (highest.max(position), acknowledged + 1);
                        }
                        follow_next = !follow_next;
                    }
                    (highest, acknowledged)
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).fold((0, 0), |(h, n), (hi, ni)| (h.max(hi), n + ni))
    })
}

/// Whether the request answered 200 with a body containing `expected`. The body is
/// always read, so the connection can be reused.
fn answered(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>, expected: &str) -> bool {
    match result {
        Ok(mut response) => {
            let body = response.body_mut().read_to_string().unwrap_or_default();
            response.status() == 200 && body.contains(expected)
        }
        Err(_) => false,
    }
}
