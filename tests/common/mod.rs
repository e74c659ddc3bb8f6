//! End-to-end harness: starts `plaza serve` as a real process on a free port, with
//! its own data directory (embedded profile) or its own PostgreSQL database, and
//! talks to it over HTTP.

#![allow(dead_code)]

pub mod ws;

use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[derive(Clone, Copy, Debug)]
pub enum Profile {
    /// `plaza serve`: SQLite event store and read models in a temporary directory.
    Embedded,
    /// `plaza serve`: PostgreSQL event store and read models in a fresh database.
    Postgres,
    /// One process per role on a fresh PostgreSQL database: `plaza write-api`,
    /// `plaza read-api` and `plaza projector`.
    Roles,
    /// The cluster profile: `plaza write-api`, `plaza read-api`, `plaza relay` and two
    /// `plaza projector` processes; PostgreSQL event store and read models, Kafka
    /// (a topic of the test's own) and Redis (a key prefix of the test's own).
    Cluster,
}

/// Process indexes in the cluster profile.
pub const WRITE_API: usize = 0;
pub const READ_API: usize = 1;
pub const RELAY: usize = 2;
pub const PROJECTORS: [usize; 2] = [3, 4];

/// One `plaza` process of the deployment.
struct Process {
    args: Vec<&'static str>,
    port: u16,
    child: Mutex<Option<Child>>,
}

impl Process {
    /// The child process, if it runs. A test that panicked while holding it poisons the
    /// lock; the child is still there to stop, so the poison is ignored.
    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub struct Plaza {
    /// Where commands go (and health checks).
    pub base: String,
    /// Where GraphQL goes.
    pub read_base: String,
    processes: Vec<Process>,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    database: Option<String>,
    agent: ureq::Agent,
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }

    pub fn position(&self) -> u64 {
        self.body["position"].as_u64().unwrap_or_else(|| panic!("no position in {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

fn admin_url() -> String {
    std::env::var("PLAZA_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Runs a query that answers one integer on the given database.
pub fn query_i64(url: &str, sql: &str) -> i64 {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client.query_one(sql, &[]).await.unwrap().get(0)
    })
}

fn run_sql(sql: String) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let admin = admin_url();
        let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {admin} ({e}); run `make services`"));
        tokio::spawn(connection);
        client.batch_execute(&sql).await.unwrap();
    });
}

pub fn kafka_brokers() -> String {
    std::env::var("PLAZA_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn redis_url() -> String {
    std::env::var("PLAZA_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A PostgreSQL database of a test's own, dropped when the test ends.
pub struct Database {
    pub url: String,
    name: String,
}

impl Database {
    pub fn create() -> Self {
        let name = format!("plaza_e2e_{}", uuid::Uuid::new_v4().simple());
        run_sql(format!("CREATE DATABASE {name}"));
        Self { url: format!("{}/{name}", admin_url().rsplit_once('/').unwrap().0), name }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        run_sql(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

/// A port no other process of this test binary is given, free when asked. Not from the
/// kernel's ephemeral range (32768 and up here), where port 0 and every outgoing
/// connection take theirs: a port found free there could be taken again before the
/// process that is to listen on it binds it, and that process would then die while the
/// test talked to another test's server on that port.
fn free_port() -> u16 {
    const FIRST: u16 = 20_000;
    const PORTS: u16 = 12_000;
    // Test binaries run one after another; each starts at its own place all the same.
    static NEXT: LazyLock<AtomicU16> = LazyLock::new(|| AtomicU16::new((std::process::id() % u32::from(PORTS)) as u16));
    loop {
        let port = FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % PORTS;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Plaza {
    pub fn start(profile: Profile) -> Self {
        Self::start_with(profile, &[])
    }

    /// Starts with what presence and typing need across processes: the roles deployment
    /// otherwise runs without Redis, and its write and read APIs would not share them.
    pub fn start_live(profile: Profile, extra: &[(&str, &str)]) -> Self {
        let (redis, prefix) = (redis_url(), format!("plaza-e2e-{}:", uuid::Uuid::new_v4().simple()));
        let mut settings: Vec<(&str, &str)> = extra.to_vec();
        if let Profile::Roles = profile {
            settings.extend([("PLAZA_REDIS_URL", redis.as_str()), ("PLAZA_REDIS_PREFIX", prefix.as_str())]);
        }
        Self::start_with(profile, &settings)
    }

    /// Starts with extra `PLAZA_*` settings (an empty value unsets one).
    pub fn start_with(profile: Profile, extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut env = vec![
            ("PLAZA_DATA_DIR".to_owned(), dir.path().join("data").display().to_string()),
            ("PLAZA_LOG".to_owned(), "info,tower_http=error".to_owned()),
            // Processes that issue and check tokens must share the secret.
            ("PLAZA_JWT_SECRET".to_owned(), format!("test-secret-{}", uuid::Uuid::new_v4())),
            // No welcome notice: tests that count events or notifications see only their
            // own (tests/notifications.rs turns it on).
            ("PLAZA_WELCOME_TEXT".to_owned(), String::new()),
        ];
        let process = |args: Vec<&'static str>| Process { args, port: free_port(), child: Mutex::new(None) };
        let processes = match profile {
            Profile::Embedded | Profile::Postgres => vec![process(vec!["serve"])],
            Profile::Roles => vec![process(vec!["write-api"]), process(vec!["read-api"]), process(vec!["projector"])],
            Profile::Cluster => ["write-api", "read-api", "relay", "projector", "projector"].map(|role| process(vec![role])).into(),
        };
        if let Profile::Cluster = profile {
            let test = uuid::Uuid::new_v4().simple().to_string();
            env.extend([
                ("PLAZA_DISTRIBUTION".to_owned(), "kafka".to_owned()),
                ("PLAZA_KAFKA_BROKERS".to_owned(), kafka_brokers()),
                ("PLAZA_KAFKA_TOPIC".to_owned(), format!("plaza-e2e-{test}")),
                ("PLAZA_KAFKA_PARTITIONS".to_owned(), "4".to_owned()),
                ("PLAZA_REDIS_URL".to_owned(), redis_url()),
                ("PLAZA_REDIS_PREFIX".to_owned(), format!("plaza-e2e-{test}:")),
            ]);
        }
        let mut database = None;
        if let Profile::Postgres | Profile::Roles | Profile::Cluster = profile {
            let name = format!("plaza_e2e_{}", uuid::Uuid::new_v4().simple());
            run_sql(format!("CREATE DATABASE {name}"));
            let url = format!("{}/{name}", admin_url().rsplit_once('/').unwrap().0);
            env.push(("PLAZA_STORE_URL".into(), url.clone()));
            env.push(("PLAZA_READ_MODELS_URL".into(), url));
            database = Some(name);
        }
        // An extra setting replaces a default one; an empty value removes it.
        for (key, value) in extra {
            env.retain(|(k, _)| k != key);
            if !value.is_empty() {
                env.push(((*key).to_owned(), (*value).to_owned()));
            }
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            // Redirects are answers the tests check, not steps to follow.
            .max_redirects(0)
            .max_redirects_will_error(false)
            .build()
            .into();
        let base = format!("http://127.0.0.1:{}", processes[0].port);
        let read_base = format!("http://127.0.0.1:{}", processes[processes.len().min(2) - 1].port);
        let plaza = Self { base, read_base, processes, dir, env, database, agent };
        plaza.launch();
        plaza
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("plaza.log")
    }

    fn launch(&self) {
        for index in 0..self.processes.len() {
            self.start_process(index);
        }
    }

    /// Starts one process of the deployment (again) and waits until it is ready.
    pub fn start_process(&self, index: usize) {
        let log = File::options().create(true).append(true).open(self.log_path()).unwrap();
        let process = &self.processes[index];
        let mut child = Command::new(env!("CARGO_BIN_EXE_plaza"))
            .args(&process.args)
            .envs(self.env.iter().cloned())
            .env("PLAZA_LISTEN", format!("127.0.0.1:{}", process.port))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start plaza");
        let readyz = format!("http://127.0.0.1:{}/readyz", process.port);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("plaza {:?} exited with {status}:\n{}", process.args, self.log());
            }
            if self.agent.get(&readyz).call().is_ok_and(|r| r.status() == 200) {
                break;
            }
            assert!(Instant::now() < deadline, "plaza {:?} did not become ready:\n{}", process.args, self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        *process.child() = Some(child);
    }

    /// `plaza <args>` run against this deployment (its settings, data and databases),
    /// not started yet; stdout and stderr piped.
    pub fn command(&self, args: &[&str], extra: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_plaza"));
        command.args(args).envs(self.env.iter().cloned()).envs(extra.iter().copied()).stdout(Stdio::piped()).stderr(Stdio::piped());
        command
    }

    /// Runs `plaza <args>` against this deployment to its end; returns whether it
    /// succeeded, its stdout and its stderr.
    pub fn cli(&self, args: &[&str], extra: &[(&str, &str)]) -> (bool, String, String) {
        let output = self.command(args, extra).output().expect("run plaza");
        (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
    }

    /// Sets a user's bio; returns the command's position.
    pub fn update_bio(&self, user: &str, token: &str, bio: &str) -> u64 {
        let reply = self.send("PUT", &format!("/api/v1/users/{user}"), Some(json!({ "bio": bio })), Some(token), &[]);
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.position()
    }

    /// Runs SQL on the deployment's read-model database (PostgreSQL, or the embedded
    /// profile's SQLite `read.db`), as an operator with a SQL shell would.
    pub fn read_models_sql(&self, sql: &str) {
        match self.database_url() {
            Some(url) => {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(async move {
                    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
                    tokio::spawn(connection);
                    client.batch_execute(sql).await.unwrap();
                });
            }
            None => {
                let path = PathBuf::from(self.setting("PLAZA_DATA_DIR").unwrap()).join("read.db");
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.busy_timeout(Duration::from_secs(10)).unwrap();
                conn.execute_batch(sql).unwrap();
            }
        }
    }

    /// Kills one process with SIGKILL: no shutdown, no flushing.
    pub fn kill9_process(&self, index: usize) {
        if let Some(mut child) = self.processes[index].child().take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Stops one process with SIGTERM and waits until it has exited.
    pub fn stop_process(&self, index: usize) -> std::process::ExitStatus {
        let mut child = self.processes[index].child().take().expect("the process runs");
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        child.wait().unwrap()
    }

    /// The URL of the deployment's PostgreSQL database, if it has one.
    pub fn database_url(&self) -> Option<String> {
        self.env.iter().find(|(k, _)| k == "PLAZA_READ_MODELS_URL").map(|(_, v)| v.clone())
    }

    /// A `PLAZA_*` setting the processes run with.
    pub fn setting(&self, key: &str) -> Option<String> {
        self.env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    /// The last `lines` lines of the processes' log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The last `lines` lines of the processes' log without backtrace frames, so that
    /// a process's last error shows among the other processes' lines.
    pub fn log_digest(&self, lines: usize) -> String {
        let log = self.log();
        let frame = |line: &&str| {
            let line = line.trim_start();
            line.starts_with("at ") || line.split_once(": ").is_some_and(|(n, _)| n.parse::<u32>().is_ok())
        };
        let kept: Vec<&str> = log.lines().filter(|line| !frame(line)).collect();
        kept[kept.len().saturating_sub(lines)..].join("\n")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Kills every process with SIGKILL: no shutdown, no flushing.
    /// Changes a `PLAZA_*` setting for the processes started from now on (an empty
    /// value removes it).
    pub fn set_setting(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        if !value.is_empty() {
            self.env.push((key.to_owned(), value.to_owned()));
        }
    }

    pub fn kill9(&self) {
        for index in 0..self.processes.len() {
            self.kill9_process(index);
        }
    }

    pub fn restart(&self) {
        self.kill9();
        self.launch();
    }

    fn request(&self, method: &str, path: &str, body: Option<&[u8]>, headers: &[(&str, &str)]) -> Reply {
        let base = if path.starts_with("/graphql") { &self.read_base } else { &self.base };
        let url = format!("{base}{path}");
        let mut builder = ureq::http::Request::builder().method(method).uri(&url);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            builder = builder.header("content-type", "application/json");
        }
        let request = builder.body(body.map(<[u8]>::to_vec).unwrap_or_default()).unwrap();
        let mut response = match self.agent.run(request) {
            Ok(response) => response,
            Err(e) => return Reply { status: 0, body: json!({ "transport_error": e.to_string() }), headers: vec![] },
        };
        let headers = response.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned())).collect();
        let text = response.body_mut().with_config().limit(16 * 1024 * 1024).read_to_string().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply { status: response.status().as_u16(), body, headers }
    }

    /// The port of the read API (the process that serves GraphQL).
    pub fn read_port(&self) -> u16 {
        self.processes[self.processes.len().min(2) - 1].port
    }

    /// The port of one process of the deployment.
    pub fn port(&self, index: usize) -> u16 {
        self.processes[index].port
    }

    /// How many processes the deployment runs.
    pub fn process_count(&self) -> usize {
        self.processes.len()
    }

    /// Asserts that every process still runs and answers `GET /healthz`.
    pub fn assert_alive(&self) {
        for (index, process) in self.processes.iter().enumerate() {
            let exited = process.child().as_mut().and_then(|child| child.try_wait().unwrap());
            if let Some(status) = exited {
                panic!("plaza {:?} died with {status}:\n{}", process.args, self.log_digest(60));
            }
            let reply = self.agent.get(&format!("http://127.0.0.1:{}/healthz", self.port(index))).call();
            assert!(reply.is_ok_and(|r| r.status() == 200), "plaza {:?} does not answer /healthz:\n{}", process.args, self.log_tail(40));
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None, &[])
    }

    /// Sends a command with an optional bearer token and extra headers.
    pub fn send(&self, method: &str, path: &str, body: Option<Value>, token: Option<&str>, headers: &[(&str, &str)]) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(auth) = &auth {
            all.push(("authorization", auth));
        }
        let bytes = body.map(|b| b.to_string().into_bytes());
        self.request(method, path, bytes.as_deref(), &all)
    }

    /// POSTs an HTML form (`a=1&b=2`) with extra headers, as a browser would.
    pub fn send_form(&self, path: &str, form: &str, headers: &[(&str, &str)]) -> Reply {
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        all.push(("content-type", "application/x-www-form-urlencoded"));
        self.request("POST", path, Some(form.as_bytes()), &all)
    }

    pub fn send_raw(&self, method: &str, path: &str, body: &[u8]) -> Reply {
        self.request(method, path, Some(body), &[])
    }

    /// Registers a user and returns (user id, token, position).
    pub fn register(&self, username: &str) -> (String, String, u64) {
        let reply = self.send(
            "POST",
            "/api/v1/users/register",
            Some(json!({ "username": username, "email": format!("{username}@example.com"), "password": "correct horse battery" })),
            None,
            &[],
        );
        assert_eq!(reply.status, 201, "{}", reply.body);
        (reply.body["user_id"].as_str().unwrap().to_owned(), reply.body["token"].as_str().unwrap().to_owned(), reply.position())
    }

    /// Runs a GraphQL query after the read models reached `position`; returns the reply.
    pub fn graphql_reply(&self, query: &str, variables: Value, token: Option<&str>, position: Option<u64>) -> Reply {
        let min = position.map(|p| p.to_string());
        let mut headers = vec![];
        if let Some(min) = &min {
            headers.push(("plaza-min-position", min.as_str()));
        }
        self.send("POST", "/graphql", Some(json!({ "query": query, "variables": variables })), token, &headers)
    }

    /// Runs a GraphQL query that must succeed; returns `data`.
    /// A 503 `consistency_timeout` (the read models had not reached `position` within the
    /// server's wait, which a loaded machine can exceed) is asked again, as a client would.
    pub fn graphql(&self, query: &str, variables: Value, token: Option<&str>, position: u64) -> Value {
        let mut reply = self.graphql_reply(query, variables.clone(), token, Some(position));
        for _ in 0..10 {
            if reply.status != 503 || reply.body["errors"][0]["extensions"]["code"] != "consistency_timeout" {
                break;
            }
            reply = self.graphql_reply(query, variables.clone(), token, Some(position));
        }
        assert!(reply.status == 200 && reply.body.get("errors").is_none(), "{} {}\nlog tail:\n{}", reply.status, reply.body, self.log_tail(60));
        reply.body["data"].clone()
    }
}

impl Drop for Plaza {
    fn drop(&mut self) {
        // SIGTERM first: Kafka consumers then leave their groups instead of lingering
        // in the shared broker until their sessions time out.
        for process in &self.processes {
            if let Some(child) = process.child().as_ref() {
                let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for process in &self.processes {
            if let Some(child) = process.child().as_mut() {
                while Instant::now() < deadline && child.try_wait().ok().flatten().is_none() {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        self.kill9();
        // PLAZA_TEST_KEEP_LOGS=DIR keeps the processes' log of a failed test there.
        if let (true, Ok(dir)) = (std::thread::panicking(), std::env::var("PLAZA_TEST_KEEP_LOGS")) {
            let kept = PathBuf::from(dir).join(format!("plaza-{}.log", uuid::Uuid::new_v4().simple()));
            if std::fs::copy(self.log_path(), &kept).is_ok() {
                eprintln!("plaza log kept in {}", kept.display());
            }
        }
        if let Some(name) = &self.database {
            run_sql(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// What a server answered on a raw connection: the status (0 when it closed without an
/// answer) and the body (JSON when it parses).
pub struct RawReply {
    pub status: u16,
    pub head: String,
    pub body: Value,
}

/// Sends raw bytes on a new connection to `port`, then reads until the server closes the
/// connection or `wait` passes. For requests no HTTP client library would send.
pub fn raw_http(port: u16, request: &[u8], wait: Duration) -> RawReply {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    // The server may answer and close before it read everything: ignore write errors.
    let _ = stream.write_all(request);
    // Until the whole first answer (head and `content-length` bytes) is in, or the
    // server closes the connection, or `wait` passes.
    let mut received = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while !answer_complete(&received) {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
        }
    }
    parse_raw(&received)
}

fn answer_complete(received: &[u8]) -> bool {
    let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
    let length = head.lines().find_map(|line| line.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok());
    length.is_some_and(|length| received.len() >= end + 4 + length)
}

/// Parses one HTTP/1.1 response (status line, head, body) from raw bytes.
pub fn parse_raw(received: &[u8]) -> RawReply {
    let text = String::from_utf8_lossy(received).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    RawReply { status, head: head.to_owned(), body: serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())) }
}

/// Runs `plaza <args>` with the given settings and waits (at most 30 s) for it to exit;
/// returns whether it succeeded and what it logged. For configurations it must refuse.
pub fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_plaza"))
        .args(args)
        .env("PLAZA_DATA_DIR", dir.path().join("data"))
        .env("PLAZA_LISTEN", format!("127.0.0.1:{}", free_port()))
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start plaza");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    (output.status.success(), format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)))
}

/// Generates one `#[test]` per profile for each scenario function.
#[macro_export]
macro_rules! on_every_profile {
    ($($scenario:ident),* $(,)?) => {
        mod embedded {
            $( #[test] fn $scenario() { super::$scenario($crate::common::Profile::Embedded) } )*
        }
        mod postgres {
            $( #[test] fn $scenario() { super::$scenario($crate::common::Profile::Postgres) } )*
        }
        mod roles {
            $( #[test] fn $scenario() { super::$scenario($crate::common::Profile::Roles) } )*
        }
        mod cluster {
            $( #[test] fn $scenario() { super::$scenario($crate::common::Profile::Cluster) } )*
        }
    };
}

/// Generates one `#[test]` for the embedded and one for the cluster profile for each
/// scenario function.
#[macro_export]
macro_rules! on_embedded_and_cluster {
    ($($scenario:ident),* $(,)?) => {
        mod embedded {
            $( #[test] fn $scenario() { super::$scenario($crate::common::Profile::Embedded) } )*
        }
        mod cluster {
            $( #[test] fn $scenario() { super::$scenario($crate::common::Profile::Cluster) } )*
        }
    };
}
