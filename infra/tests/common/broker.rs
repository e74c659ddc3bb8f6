//! A Kafka-protocol broker (tansu) of a test's own, on a free port with durable storage
//! in a temporary directory, so a test can kill and restart it without disturbing
//! others. `make services` installs tansu into ~/.cargo/bin.

use std::time::Duration;

pub struct Broker {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

/// A port for a broker of this process's own, from 12000 to 19999: below the kernel's
/// ephemeral range (which `bind(:0)` and every outgoing connection draw from, so such a
/// port could be taken before tansu binds it) and below the Plaza processes' 20000 to
/// 31999 (tests/common/mod.rs). A broker keeps its port when a test restarts it.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const FIRST: u16 = 12_000;
    const PORTS: u16 = 8_000;
    static NEXT: std::sync::LazyLock<AtomicU16> = std::sync::LazyLock::new(|| AtomicU16::new((std::process::id() % u32::from(PORTS)) as u16));
    loop {
        let port = FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % PORTS;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Broker {
    pub fn start() -> Self {
        let mut broker = Self { port: free_port(), dir: tempfile::tempdir().unwrap(), child: None };
        broker.launch();
        broker
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn launch(&mut self) {
        let tansu = std::env::var("PLAZA_TANSU").unwrap_or_else(|_| {
            let cargo_bin = std::path::Path::new(&std::env::var("HOME").unwrap()).join(".cargo/bin/tansu");
            if cargo_bin.exists() { cargo_bin.display().to_string() } else { "tansu".into() }
        });
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::File::options().create(true).append(true).open(self.dir.path().join("tansu.log")).unwrap();
        let child = std::process::Command::new(&tansu)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            // The sqlite:// path is relative to the broker's working directory.
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {tansu} ({e}); run `make services`"));
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                self.add_header_index();
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("tansu did not start on port {}", self.port);
    }

    /// The index `make services` adds to the shared broker (see scripts/services.sh):
    /// without it every fetched record scans every header stored.
    fn add_header_index(&self) {
        let db = rusqlite::Connection::open(self.dir.path().join("tansu.db")).unwrap();
        db.busy_timeout(Duration::from_secs(10)).unwrap();
        for _ in 0..100 {
            let created: i64 = db.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'header'", [], |row| row.get(0)).unwrap();
            if created == 1 {
                db.execute_batch("CREATE INDEX IF NOT EXISTS plaza_header_by_record ON header (topition, offset_id)").unwrap();
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("tansu did not create its tables");
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
    }
}
