//! `plaza projections ...`: what operators run against a deployment's databases.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use plaza_infra::kafka::Probe;
use plaza_infra::redis::{Redis, RedisNotices};
use plaza_infra::{Config, Distribution};
use plaza_projections::dead_letters::{self, Selection};
use plaza_projections::rebuild::{RebuildError, RebuildProgress};
use plaza_projections::status::ProjectionStatus;
use plaza_projections::{ChangeNotices, LocalNotices, Projection, ReadModelDb, Rebuild, generations};
use tokio::sync::watch;

#[derive(Subcommand)]
pub enum ProjectionsCommand {
    /// For every projection: state, live version and generation, applied and head
    /// positions, lag in events and seconds, a rebuild in progress, Kafka partitions.
    Status {
        /// JSON (the same document as GET /admin/projections) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild NAME from the event store's history into new tables beside the live ones,
    /// which keep serving and applying; when the new ones have caught up, switch over in
    /// one transaction and drop the old. Interrupted (even by SIGKILL) and run again, it
    /// continues where it stopped. Refuses to run while another rebuild of NAME runs.
    /// `search` rebuilds this machine's search index (in the data dir) beside the serving
    /// one, which processes serving searches take up once it has caught up; interrupted,
    /// it starts over.
    Rebuild { name: String },
    /// Stop applying events to NAME (its projectors, in every process, finish the batch
    /// in hand and wait); reads keep being served, falling behind.
    Pause { name: String },
    /// Let NAME's projectors apply again.
    Resume { name: String },
    /// Time travel: build NAME as it stood at global position P into a new SQLite file
    /// that any SQL tool can open (its tables under their usual names).
    Build {
        name: String,
        #[arg(long, value_name = "P")]
        to_position: u64,
        #[arg(long, value_name = "FILE")]
        into: std::path::PathBuf,
    },
    /// Events a projection kept failing on, parked with their errors (and the later
    /// events of their streams, queued behind them).
    #[command(subcommand)]
    DeadLetters(DeadLettersCommand),
}

#[derive(Subcommand)]
pub enum DeadLettersCommand {
    /// Every projection's dead letters, in position order.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Apply NAME's parked events again, in position order (after fixing what made them
    /// fail); a stream whose event fails again keeps the rest of its events parked.
    Retry {
        name: String,
        #[command(flatten)]
        which: Which,
        /// Only say how many events it would replay.
        #[arg(long)]
        dry_run: bool,
    },
    /// Drop NAME's dead letters without applying them (the events stay in the store).
    Skip {
        name: String,
        #[command(flatten)]
        which: Which,
    },
}

/// One dead letter (by its position) or all of a projection's.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
pub struct Which {
    /// The dead letter at this global position.
    #[arg(long, value_name = "POSITION")]
    id: Option<u64>,
    /// Every dead letter of the projection.
    #[arg(long)]
    all: bool,
}

impl Which {
    fn selection(&self) -> Selection {
        match self.id {
            Some(position) => Selection::One(position),
            None => Selection::All,
        }
    }
}

/// Every projection, and every process manager's checkpoint (which status, pause,
/// resume and dead letters treat as a projection).
pub(crate) fn with_processes(config: &Config) -> Vec<Arc<dyn Projection>> {
    let mut all = plaza_infra::projections(config);
    all.extend(plaza_infra::process_checkpoints());
    all
}

/// Finds a projection (or a process manager's checkpoint) by name, or says which exist.
fn projection(name: &str, config: &Config) -> anyhow::Result<Arc<dyn Projection>> {
    let all = with_processes(config);
    let known: Vec<&str> = all.iter().map(|p| p.name()).collect();
    all.iter().find(|p| p.name() == name).cloned().ok_or_else(|| anyhow::anyhow!("unknown projection {name:?}; known: {}", known.join(", ")))
}

pub async fn projections(config: &Config, command: ProjectionsCommand) -> anyhow::Result<()> {
    match command {
        ProjectionsCommand::Status { json } => {
            let statuses = status(config).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&statuses)?);
            } else {
                print!("{}", status_table(&statuses));
            }
            Ok(())
        }
        ProjectionsCommand::Rebuild { name } | ProjectionsCommand::Build { name, .. } if plaza_infra::PROCESS_NAMES.contains(&name.as_str()) => {
            anyhow::bail!("{name} is a process manager: it has no read model to build (its checkpoint only moves forward)")
        }
        ProjectionsCommand::Rebuild { name } if name == "search" => rebuild_search(config).await,
        ProjectionsCommand::Rebuild { name } => rebuild(config, projection(&name, config)?).await,
        ProjectionsCommand::Pause { name } => pause(config, &name, true).await,
        ProjectionsCommand::Resume { name } => pause(config, &name, false).await,
        ProjectionsCommand::DeadLetters(command) => dead_letters_command(config, command).await,
        ProjectionsCommand::Build { name, to_position, into } => build(config, projection(&name, config)?, to_position, &into).await,
    }
}

/// Every projection's status, with the Kafka partitions' ends when Kafka feeds them.
pub async fn status(config: &Config) -> anyhow::Result<Vec<ProjectionStatus>> {
    let store = plaza_infra::open_event_store(config).await.context("cannot open the event store")?;
    let db = plaza_infra::open_read_models(config).await.context("cannot open the read models")?;
    let projections = with_processes(config);
    for projection in &projections {
        generations::ensure_live(db.as_ref(), projection.as_ref()).await?;
    }
    statuses_of(config, &projections, db.as_ref(), store.as_ref()).await
}

/// The status of `projections` as the configuration sees it: stalled after
/// `projection_stall_secs`, with the Kafka partitions' ends when Kafka feeds them.
pub(crate) async fn statuses_of(
    config: &Config,
    projections: &[Arc<dyn Projection>],
    db: &dyn ReadModelDb,
    store: &dyn plaza_domain::EventStore,
) -> anyhow::Result<Vec<ProjectionStatus>> {
    let stall = Duration::from_secs(config.projection_stall_secs);
    let mut statuses = plaza_projections::status::collect(projections, db, store, stall).await?;
    if config.distribution == Distribution::Kafka {
        add_partition_ends(config, &mut statuses).await;
    }
    Ok(statuses)
}

async fn add_partition_ends(config: &Config, statuses: &mut [ProjectionStatus]) {
    let settings = plaza_infra::kafka_settings(config);
    let ends = async {
        let probe = Probe::new(&settings)?;
        let partitions = probe.partitions(Duration::from_secs(5)).await?;
        probe.end_offsets(partitions, Duration::from_secs(5)).await
    };
    match ends.await {
        Ok(ends) => {
            for partition in statuses.iter_mut().flat_map(|s| s.partitions.iter_mut()).filter(|p| p.topic == settings.topic) {
                if let Some((_, end)) = ends.iter().find(|(p, _)| i64::from(*p) == partition.partition) {
                    partition.end_offset = Some(*end);
                    partition.lag_messages = Some((end - partition.next_offset).max(0));
                }
            }
        }
        Err(error) => tracing::warn!(%error, "cannot ask Kafka where its partitions end"),
    }
}

fn status_table(statuses: &[ProjectionStatus]) -> String {
    let mut out = format!(
        "{:<14} {:<12} {:>7} {:>4} {:>10} {:>10} {:>8} {:>8} {:>8} {:>5}  {}\n",
        "PROJECTION", "STATE", "VERSION", "GEN", "APPLIED", "HEAD", "LAG", "LAG(s)", "EVENTS/s", "DEAD", "REBUILD"
    );
    for s in statuses {
        let version = match s.version {
            Some(v) if v != s.code_version => format!("{v}->{}", s.code_version),
            Some(v) => v.to_string(),
            None => "-".into(),
        };
        let rebuild = s.rebuild.as_ref().map_or(String::new(), |b| {
            format!("generation {} (version {}) at {} of {}", b.generation, b.version, b.applied_position, s.head_position)
        });
        out += &format!(
            "{:<14} {:<12} {:>7} {:>4} {:>10} {:>10} {:>8} {:>8.1} {:>8.1} {:>5}  {}\n",
            s.name,
            s.state,
            version,
            s.generation.map_or("-".into(), |g| g.to_string()),
            s.applied_position,
            s.head_position,
            s.lag_events,
            s.lag_seconds,
            s.events_per_sec,
            s.dead_letters,
            rebuild
        );
        if let Some(error) = &s.last_error {
            out += &format!("  last error: {error}\n");
        }
        for p in &s.partitions {
            let lag = p.lag_messages.map_or("?".into(), |l| l.to_string());
            let now = chrono::Utc::now().timestamp_millis();
            let holder = match (&p.owner, p.owner_seen_at) {
                (Some(owner), Some(seen)) => format!(", held by {owner} ({:.1} s ago)", (now - seen) as f64 / 1000.0),
                _ => String::new(),
            };
            out += &format!(
                "  {} partition {:>2}: next offset {:>8}, position {:>10}, lag {lag} messages{holder}\n",
                p.topic, p.partition, p.next_offset, p.position
            );
        }
    }
    out
}

async fn pause(config: &Config, name: &str, paused: bool) -> anyhow::Result<()> {
    let projection = projection(name, config)?;
    let db = plaza_infra::open_read_models(config).await.context("cannot open the read models")?;
    generations::ensure_live(db.as_ref(), projection.as_ref()).await?;
    generations::set_paused(db.as_ref(), name, paused).await?;
    println!("{name}: {}", if paused { "paused (projectors finish their batch in hand and wait)" } else { "resumed" });
    Ok(())
}

async fn rebuild(config: &Config, projection: Arc<dyn Projection>) -> anyhow::Result<()> {
    let name = projection.name();
    let store = plaza_infra::open_event_store(config).await.context("cannot open the event store")?;
    let db: Arc<dyn ReadModelDb> = plaza_infra::open_read_models(config).await.context("cannot open the read models")?;
    // Read APIs elsewhere hear of the switch through Redis when there is one.
    let notices: Arc<dyn ChangeNotices> = match config.redis_url.is_empty() {
        true => Arc::new(LocalNotices::default()),
        false => Arc::new(RedisNotices::new(&Redis::open(&config.redis_url, &config.redis_prefix)?)),
    };
    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        crate::shutdown_signal().await;
        let _ = stop.send(true);
    });
    let mut report = Reporter::new(name, config.rebuild_batch_size);
    let rebuild = Rebuild::new(projection.clone(), store, db)
        .with_notices(notices)
        .with_batch_size(config.rebuild_batch_size)
        .with_commit_interval(Duration::from_millis(config.rebuild_commit_ms))
        .with_failure_policy(plaza_infra::failure_policy(config));
    match rebuild.run(&mut |progress| report.report(progress), shutdown).await {
        Ok(Some(live)) => {
            report.finish(&format!("{name}: switched to generation {} (version {}) at position {}", live.generation, live.version, live.position));
            Ok(())
        }
        Ok(None) => {
            report.finish(&format!("{name}: interrupted; run the same command again to continue"));
            std::process::exit(130);
        }
        Err(RebuildError::Busy) => anyhow::bail!("a rebuild of {name} is already running (run `plaza projections status` to follow it)"),
        Err(error) => Err(error).with_context(|| format!("rebuild of {name} failed; run the same command again to continue")),
    }
}

/// Rebuilds the search index beside the serving one, then names it the one to serve:
/// in this machine's data dir, where the processes serving searches from it take it up
/// at their next idle moment ([`plaza_infra::tantivy::generations`]); or, with
/// `search_url`, a new Elasticsearch index the cluster's search projector takes up,
/// then swaps the search alias to ([`plaza_infra::SearchRebuild`]).
async fn rebuild_search(config: &Config) -> anyhow::Result<()> {
    let store = plaza_infra::open_event_store(config).await.context("cannot open the event store")?;
    let Some(rebuild) = plaza_infra::SearchRebuild::start(config).await? else {
        anyhow::bail!("a rebuild of search is already running");
    };
    let (stop, mut shutdown) = watch::channel(false);
    tokio::spawn(async move {
        crate::shutdown_signal().await;
        let _ = stop.send(true);
    });
    let mut report = Reporter::new("search", 1000);
    let (started, mut events) = (Instant::now(), 0);
    let projector = plaza_projections::search::SearchProjector::new(rebuild.writer(), store.clone());
    // Catch up to the head, then again to the head that moved meanwhile, until a pass
    // finds nothing new: the processes serving then have little to apply after the switch.
    let mut position = 0;
    loop {
        let mut progress = |at: u64, head: u64| {
            events += at.saturating_sub(position);
            position = at;
            report.report(&RebuildProgress { generation: 0, position: at, head, events, started });
        };
        let caught_up = tokio::select! {
            caught_up = projector.catch_up_with(&mut progress) => caught_up?,
            _ = shutdown.changed() => {
                report.finish("search: interrupted; run the same command again (it starts over)");
                std::process::exit(130);
            }
        };
        if caught_up >= store.head().await? {
            break;
        }
    }
    drop(projector);
    let name = rebuild.publish().await?;
    report.finish(&format!("search: switched to index {name} at position {position}"));
    Ok(())
}

/// Rebuild progress: a bar with events/s and ETA on a terminal, a log line every few
/// seconds otherwise.
struct Reporter {
    name: &'static str,
    /// Events per batch.
    batch: u64,
    bar: Option<ProgressBar>,
    last_line: Instant,
}

impl Reporter {
    fn new(name: &'static str, batch: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} positions, {per_sec}, ETA {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(name);
            bar
        });
        Self { name, batch: batch as u64, bar, last_line: Instant::now() }
    }

    fn report(&mut self, progress: &RebuildProgress) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(progress.head);
                bar.set_position(progress.position);
            }
            // The first batch, then every 2 s.
            None if progress.events <= self.batch || self.last_line.elapsed() >= Duration::from_secs(2) || progress.position >= progress.head => {
                self.last_line = Instant::now();
                let rate = progress.events as f64 / progress.started.elapsed().as_secs_f64().max(0.001);
                let eta = progress.head.saturating_sub(progress.position) as f64 / rate.max(1.0);
                eprintln!(
                    "{}: generation {} at position {} of {} ({:.0} events/s, ETA {:.0} s)",
                    self.name, progress.generation, progress.position, progress.head, rate, eta
                );
            }
            None => {}
        }
    }

    fn finish(&self, message: &str) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        println!("{message}");
    }
}

async fn dead_letters_command(config: &Config, command: DeadLettersCommand) -> anyhow::Result<()> {
    let db = plaza_infra::open_read_models(config).await.context("cannot open the read models")?;
    for projection in with_processes(config) {
        generations::ensure_live(db.as_ref(), projection.as_ref()).await?;
    }
    match command {
        DeadLettersCommand::List { json } => {
            let letters = dead_letters::list(db.as_ref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&letters)?);
            } else if letters.is_empty() {
                println!("no dead letters");
            } else {
                println!("{:<14} {:>10} {:<8} {:<22} {:<44} ERROR", "PROJECTION", "POSITION", "STATE", "EVENT", "STREAM");
                for d in letters {
                    println!("{:<14} {:>10} {:<8} {:<22} {:<44} {}", d.projection, d.position, d.state, d.event_type, d.stream_id, d.error);
                }
            }
            Ok(())
        }
        DeadLettersCommand::Retry { name, which, dry_run } => {
            let projection = projection(&name, config)?;
            let selection = which.selection();
            let count = dead_letters::count(db.as_ref(), &name, selection).await?;
            if let (Selection::One(position), 0) = (selection, count) {
                anyhow::bail!("{name} has no dead letter at position {position}");
            }
            if dry_run {
                println!("{name}: would replay {count} events");
                return Ok(());
            }
            let store = plaza_infra::open_event_store(config).await.context("cannot open the event store")?;
            let outcome = match plaza_infra::processes(config, store.clone()).into_iter().find(|p| p.name() == name) {
                Some(process) => plaza_projections::processes::retry(db.as_ref(), store.as_ref(), process.as_ref(), selection).await?,
                None => dead_letters::retry(db.as_ref(), store.as_ref(), projection.as_ref(), selection).await?,
            };
            println!("{name}: replayed {} events; {} still parked", outcome.applied, outcome.still_parked);
            for error in &outcome.errors {
                eprintln!("{name}: {error}");
            }
            anyhow::ensure!(outcome.errors.is_empty(), "some events failed again and stay parked");
            Ok(())
        }
        DeadLettersCommand::Skip { name, which } => {
            projection(&name, config)?;
            let selection = which.selection();
            let skipped = dead_letters::skip(db.as_ref(), &name, selection).await?;
            if let (Selection::One(position), 0) = (selection, skipped) {
                anyhow::bail!("{name} has no dead letter at position {position}");
            }
            println!("{name}: skipped {skipped} events");
            Ok(())
        }
    }
}

/// Builds `projection` from the store's history up to `to` into a new SQLite file.
async fn build(config: &Config, projection: Arc<dyn Projection>, to: u64, into: &std::path::Path) -> anyhow::Result<()> {
    anyhow::ensure!(!into.exists(), "{} exists; give a new file", into.display());
    let store = plaza_infra::open_event_store(config).await.context("cannot open the event store")?;
    let head = store.head().await?;
    anyhow::ensure!(to <= head, "--to-position {to} is beyond the event log's head ({head})");
    let db = plaza_infra::sqlite::SqliteReadModels::open(into).with_context(|| format!("cannot create {}", into.display()))?;
    let live = generations::ensure_live(&db, projection.as_ref()).await?;
    let tables = Arc::new(plaza_projections::Tables::of(projection.as_ref(), live.generation));
    let bar = std::io::stderr().is_terminal().then(|| ProgressBar::new(to));
    let (mut position, mut events) = (0, 0);
    while position < to {
        let page = store.read_all(position, config.rebuild_batch_size.max(1)).await?;
        let page: Vec<_> = page.into_iter().take_while(|e| e.position <= to).collect();
        let Some(last) = page.last().map(|e| e.position) else { break };
        let changes = page.iter().map(|e| plaza_projections::Changes::of(projection.as_ref(), e)).collect();
        db.apply(tables.clone(), changes, position, last).await.with_context(|| format!("cannot apply the events up to position {last}"))?;
        (position, events) = (last, events + page.len());
        if let Some(bar) = &bar {
            bar.set_position(position);
        }
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    println!("{}: built at position {to} into {} ({events} events)", projection.name(), into.display());
    Ok(())
}
