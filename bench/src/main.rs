//! `plaza-bench`: measures the event store adapters, the HTTP command path of a real
//! `plaza serve` process, projection catch-up and the cluster profile (visibility delay,
//! Kafka throughput), and writes a Markdown report. It never asserts timings; it only
//! reports them. Progress goes to stderr.

mod appends;
mod cluster;
mod hotpaths;
mod http;
mod messaging;
mod notifications;
mod pg;
mod projection;
mod rebuild;
mod report;
mod search;
mod stats;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;

/// Measures Plaza's throughput and latency and writes a Markdown report.
#[derive(Parser)]
#[command(name = "plaza-bench", about, long_about = None)]
struct Cli {
    /// Where to write the Markdown report (its folder is created).
    #[arg(long, value_name = "PATH", default_value = "docs/benchmarks.md")]
    out: PathBuf,

    /// Measured duration of each case, in seconds [default: 4 for the event store,
    /// 5 for HTTP].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    seconds: Option<u64>,

    /// Smoke run: 1-second cases and about 10,000 projected events.
    #[arg(long)]
    quick: bool,

    /// Events in the log of the rebuild and export section [default: 1,000,000;
    /// 20,000 with --quick].
    #[arg(long, value_name = "N")]
    rebuild_events: Option<usize>,

    /// Rebuild only these projections (repeatable) [default: all].
    #[arg(long, value_name = "NAME")]
    rebuild_projection: Vec<String>,

    /// An earlier `plaza` binary: section 5 runs its workloads against it too, in the
    /// same run, and reports both.
    #[arg(long, value_name = "PATH")]
    before: Option<PathBuf>,

    /// Run section 5 only on these profiles (repeatable) [default: all].
    #[arg(long, value_enum, value_name = "PROFILE")]
    profile: Vec<hotpaths::Profile>,

    /// Run only these sections (repeatable); the report then holds only them.
    #[arg(long, value_enum, value_name = "SECTION")]
    only: Vec<Section>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Section {
    Appends,
    Http,
    Projection,
    Cluster,
    Hot,
    Messaging,
    Rebuild,
    Notifications,
    Search,
}

/// How long and how big each section runs.
pub struct Settings {
    pub warmup: Duration,
    pub store_case: Duration,
    pub http_case: Duration,
    pub projection_events: usize,
    pub rebuild_events: usize,
    pub rebuild_projections: Vec<String>,
    pub quick: bool,
}

impl Settings {
    fn from_cli(cli: &Cli) -> Self {
        let (mut store_case, mut http_case) = if cli.quick { (1, 1) } else { (4, 5) };
        if let Some(seconds) = cli.seconds {
            (store_case, http_case) = (seconds, seconds);
        }
        Self {
            warmup: if cli.quick { Duration::from_millis(250) } else { Duration::from_secs(1) },
            store_case: Duration::from_secs(store_case),
            http_case: Duration::from_secs(http_case),
            projection_events: if cli.quick { 10_000 } else { 50_000 },
            rebuild_events: cli.rebuild_events.unwrap_or(if cli.quick { 20_000 } else { 1_000_000 }),
            rebuild_projections: cli.rebuild_projection.clone(),
            quick: cli.quick,
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::from_cli(&cli);
    let plaza = plaza_binary()?;
    let admin = pg::admin_url();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the tokio runtime")?;
    runtime.block_on(pg::check_reachable(&admin))?;
    let machine = report::Machine::detect();
    let date = chrono::Utc::now();
    eprintln!("plaza-bench: server {}, PostgreSQL {admin}", plaza.display());

    let runs = |section| cli.only.is_empty() || cli.only.contains(&section);
    let appends = if runs(Section::Appends) { runtime.block_on(appends::run_all(&settings, &admin))? } else { vec![] };
    let http = if runs(Section::Http) { http::run_all(&runtime, &plaza, &settings, &admin)? } else { vec![] };
    let projection = if runs(Section::Projection) { runtime.block_on(projection::run_all(&settings, &admin))? } else { vec![] };
    let cluster = if runs(Section::Cluster) { Some(cluster::run_all(&runtime, &plaza, &settings, &admin)?) } else { None };
    let peer = plaza.with_file_name("plaza-peer");
    let binaries =
        hotpaths::Binaries { plaza: &plaza, before: cli.before.as_deref(), peer: peer.is_file().then_some(peer.as_path()), profiles: &cli.profile };
    if binaries.peer.is_none() {
        eprintln!("plaza-bench: no cqrs-es peer at {} (`make bench` builds it): its row is left out", peer.display());
    }
    let hot = if runs(Section::Hot) { Some(hotpaths::run_all(&runtime, &binaries, &settings, &admin)?) } else { None };
    let messaging = if runs(Section::Messaging) { Some(messaging::run_all(&runtime, &plaza, &settings, &admin)?) } else { None };
    let rebuild = if runs(Section::Rebuild) { Some(runtime.block_on(rebuild::run_all(&plaza, &settings, &admin))?) } else { None };
    let notifications = if runs(Section::Notifications) { Some(notifications::run_all(&runtime, &plaza, &settings, &admin)?) } else { None };
    let search = if runs(Section::Search) { Some(search::run_all(&runtime, &settings)?) } else { None };

    let report = report::Report {
        date,
        machine: &machine,
        settings: &settings,
        appends: &appends,
        http: &http,
        projection: &projection,
        cluster: cluster.as_ref(),
        hot: hot.as_ref(),
        messaging: messaging.as_ref(),
        rebuild: rebuild.as_ref(),
        notifications: notifications.as_ref(),
        search: search.as_ref(),
    };
    write_report(&cli.out, &report.render())?;
    eprintln!("plaza-bench: report written to {}", cli.out.display());
    Ok(())
}

/// The `plaza` server binary built next to this one (same target directory and profile).
fn plaza_binary() -> anyhow::Result<PathBuf> {
    let plaza = std::env::current_exe().context("cannot find the plaza-bench executable")?.with_file_name("plaza");
    if !plaza.is_file() {
        bail!("the plaza server binary is missing at {}; run `cargo build --release --bin plaza` first", plaza.display());
    }
    Ok(plaza)
}

fn write_report(path: &Path, markdown: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, markdown).with_context(|| format!("cannot write {}", path.display()))
}
