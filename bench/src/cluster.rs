//! Section 4: the cluster profile. Command -> visible-in-GraphQL delay with write-api,
//! read-api, relay and two projectors as separate processes on PostgreSQL, Kafka
//! (tansu) and Redis; and projection throughput through Kafka, relay included.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use plaza_infra::kafka::{KafkaProjector, KafkaSettings, Relay, RelayCheckpoints};
use plaza_infra::postgres::{PgEventStore, PgReadModels};
use plaza_projections::accounts::AccountsProjection;
use plaza_projections::db::APPLIED_POSITIONS;
use plaza_projections::{LocalNotices, ReadModelDb};
use tokio::runtime::Runtime;
use tokio::sync::watch;
use uuid::Uuid;

use crate::Settings;
use crate::http::{Server, Visibility, register_pairs, run_visibility};
use crate::pg::FreshDatabase;
use crate::projection::{Prefill, check_count, prefill};

/// Partitions of the benchmark's topics, as in the end-to-end tests.
pub const PARTITIONS: i32 = 4;

pub struct KafkaThroughput {
    /// What was measured: the relay, or projectors consuming.
    pub stage: String,
    pub events: u64,
    /// Until the first event was through (consumer group join, topic set-up).
    pub startup: Duration,
    /// From the first event through to the last.
    pub elapsed: Duration,
}

impl KafkaThroughput {
    pub fn per_second(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 { self.events as f64 / seconds } else { 0.0 }
    }
}

pub struct ClusterResult {
    pub visibility: Visibility,
    pub kafka: Vec<KafkaThroughput>,
    pub failover: Vec<Failover>,
}

/// Commands under load while (or without) a projector is killed and replaced.
pub struct Failover {
    pub case: &'static str,
    pub commands: u64,
    /// From the end of the load until a read with `Plaza-Min-Position` of the last
    /// acknowledged command answered.
    pub visible_after: Duration,
}

pub fn kafka_brokers() -> String {
    std::env::var("PLAZA_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

fn redis_url() -> String {
    std::env::var("PLAZA_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub fn run_all(runtime: &Runtime, plaza: &Path, settings: &Settings, admin: &str) -> anyhow::Result<ClusterResult> {
    let database = runtime.block_on(FreshDatabase::create(admin))?;
    let visibility = visibility(plaza, settings, &database.url);
    let dropped = runtime.block_on(database.drop_now());
    let visibility = visibility?;
    dropped?;
    let mut failovers = Vec::new();
    for kill in [false, true] {
        let database = runtime.block_on(FreshDatabase::create(admin))?;
        let result = failover(plaza, &database.url, kill);
        let dropped = runtime.block_on(database.drop_now());
        failovers.push(result?);
        dropped?;
    }
    let kafka = runtime.block_on(kafka_throughput(settings, admin))?;
    Ok(ClusterResult { visibility, kafka, failover: failovers })
}

/// Starts the five processes of the cluster profile and measures command -> visible.
fn visibility(plaza: &Path, settings: &Settings, url: &str) -> anyhow::Result<Visibility> {
    let mut processes = start(plaza, url)?;
    let (write_base, read_base) = (processes[0].base.clone(), processes[1].base.clone());
    let pairs = register_pairs(&write_base)?;
    let visibility = run_visibility("cluster (Kafka, Redis)", &write_base, &read_base, &pairs, settings)?;
    for process in &mut processes {
        process.check_alive()?;
    }
    Ok(visibility)
}

/// 16 clients follow and unfollow for 8 s. With `kill`, one of the two projectors gets
/// SIGKILL after 3 s and a new one starts 2 s later. Then: how long after the load
/// until the read side has every acknowledged command.
fn failover(plaza: &Path, url: &str, kill: bool) -> anyhow::Result<Failover> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut processes = start(plaza, url)?;
    let (write_base, read_base) = (processes[0].base.clone(), processes[1].base.clone());
    let pairs = register_pairs(&write_base)?;
    let case = if kill { "a projector killed (SIGKILL) under load, a new one started 2 s later" } else { "no failure (baseline)" };
    eprintln!("[cluster] failover: {case}");
    let stop = AtomicBool::new(false);
    let (highest, commands) = std::thread::scope(|scope| -> anyhow::Result<(u64, u64)> {
        let load = scope.spawn(|| crate::http::follow_load(&write_base, &pairs, &stop));
        std::thread::sleep(Duration::from_secs(3));
        if kill {
            drop(processes.pop()); // SIGKILL
            std::thread::sleep(Duration::from_secs(2));
            let env = processes[0].env.clone();
            processes.push(Server::start_role(plaza, "projector", &env)?);
            std::thread::sleep(Duration::from_secs(3));
        } else {
            std::thread::sleep(Duration::from_secs(5));
        }
        stop.store(true, Ordering::Relaxed);
        load.join().map_err(|_| anyhow::anyhow!("the load panicked"))
    })?;
    let load_ended = Instant::now();
    let agent = crate::http::agent(Duration::from_secs(30));
    let query = serde_json::json!({ "query": "{ __typename }" });
    loop {
        let answer = agent.post(format!("{read_base}/graphql")).header("plaza-min-position", highest.to_string()).send_json(&query);
        if answer.is_ok_and(|a| a.status() == 200) {
            break;
        }
        if load_ended.elapsed() > Duration::from_secs(120) {
            bail!("the read side did not reach position {highest} within 120 s after the load");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let visible_after = load_ended.elapsed();
    eprintln!("[cluster] failover: {commands} commands, all visible {:.2} s after the load ended", visible_after.as_secs_f64());
    for process in &mut processes {
        process.check_alive()?;
    }
    Ok(Failover { case, commands, visible_after })
}

/// Starts the cluster profile on database `url`, a new topic and a new Redis prefix:
/// write-api, read-api, relay and two projectors, in that order.
pub fn start(plaza: &Path, url: &str) -> anyhow::Result<Vec<Server>> {
    let run = Uuid::new_v4().simple().to_string();
    let env = [
        ("PLAZA_STORE_URL", url.to_owned()),
        ("PLAZA_READ_MODELS_URL", url.to_owned()),
        ("PLAZA_DISTRIBUTION", "kafka".to_owned()),
        ("PLAZA_KAFKA_BROKERS", kafka_brokers()),
        ("PLAZA_KAFKA_TOPIC", format!("plaza-bench-{run}")),
        ("PLAZA_KAFKA_PARTITIONS", PARTITIONS.to_string()),
        ("PLAZA_REDIS_URL", redis_url()),
        ("PLAZA_REDIS_PREFIX", format!("plaza-bench-{run}:")),
        ("PLAZA_JWT_SECRET", format!("bench-{run}")),
    ];
    eprintln!("[cluster] starting write-api, read-api, relay and two projectors");
    let mut processes = Vec::new();
    for role in ["write-api", "read-api", "relay", "projector", "projector"] {
        processes.push(Server::start_role(plaza, role, &env).with_context(|| format!("cannot start plaza {role}"))?);
    }
    Ok(processes)
}

/// Prefills a PostgreSQL event store, relays it into a fresh topic, then has one and
/// then two Kafka projectors (one consumer group) build the accounts read model from it.
async fn kafka_throughput(settings: &Settings, admin: &str) -> anyhow::Result<Vec<KafkaThroughput>> {
    let store_db = FreshDatabase::create(admin).await?;
    let result = relay_and_project(settings, admin, &store_db.url).await;
    store_db.drop_now().await?;
    result
}

async fn relay_and_project(settings: &Settings, admin: &str, store_url: &str) -> anyhow::Result<Vec<KafkaThroughput>> {
    let store = Arc::new(PgEventStore::connect(store_url).await?);
    eprintln!("[kafka] prefilling a PostgreSQL event store with about {} events...", settings.projection_events);
    let prefilled = prefill(store.clone(), settings.projection_events).await?;
    let kafka = KafkaSettings { brokers: kafka_brokers(), topic: format!("plaza-bench-{}", Uuid::new_v4().simple()), partitions: PARTITIONS };

    eprintln!("[kafka] relaying {} events to {} ({PARTITIONS} partitions)...", prefilled.events, kafka.topic);
    let relay = Relay::new(&kafka, store.clone(), store.clone())?;
    let (stop, shutdown) = watch::channel(false);
    let started = Instant::now();
    let running = tokio::spawn(async move { relay.run(shutdown).await });
    let checkpoint = format!("relay:{}", kafka.topic);
    let (startup, elapsed) = time_until(started, prefilled.events, "the relay", || store.load(&checkpoint)).await?;
    stop.send(true).ok();
    running.await??;
    let mut results = vec![KafkaThroughput { stage: "relay: event store -> Kafka".into(), events: prefilled.events, startup, elapsed }];
    eprintln!("[kafka] relay: {:.0} events/s", results[0].per_second());

    for consumers in [1, 2] {
        let database = FreshDatabase::create(admin).await?;
        let measured = project(&kafka, consumers, &database.url, &prefilled).await;
        database.drop_now().await?;
        let measured = measured?;
        eprintln!("[kafka] {consumers} projector(s): {:.0} events/s", measured.per_second());
        results.push(measured);
    }
    Ok(results)
}

/// Runs `consumers` Kafka projectors of the accounts projection into fresh read models
/// until they have applied the whole topic, then checks the read model.
async fn project(kafka: &KafkaSettings, consumers: usize, read_url: &str, prefilled: &Prefill) -> anyhow::Result<KafkaThroughput> {
    let db: Arc<dyn ReadModelDb> = Arc::new(PgReadModels::connect(read_url)?);
    let (stop, shutdown) = watch::channel(false);
    let started = Instant::now();
    let running: Vec<_> = (0..consumers)
        .map(|_| {
            let projector = KafkaProjector::new(Arc::new(AccountsProjection), db.clone(), Arc::new(LocalNotices::default()), kafka);
            tokio::spawn(projector.run(shutdown.clone()))
        })
        .collect();
    let (startup, elapsed) =
        time_until(started, prefilled.events, "the projectors", || async { Ok(applied_position(db.as_ref(), &kafka.topic).await) }).await?;
    stop.send(true).ok();
    for projector in running {
        projector.await?;
    }
    let what = format!("{consumers} Kafka projector(s) -> PostgreSQL");
    check_count(db.as_ref(), "SELECT count(*) FROM users", prefilled.users, &what).await?;
    check_count(db.as_ref(), "SELECT count(*) FROM follows", prefilled.pairs, &what).await?;
    Ok(KafkaThroughput { stage: what, events: prefilled.events, startup, elapsed })
}

/// Polls `through` (how far a stage got) until it reaches `last`; answers the time from
/// `started` until the first event was through (start-up), and from then to the last.
async fn time_until<F, Fut>(started: Instant, last: u64, what: &str, through: F) -> anyhow::Result<(Duration, Duration)>
where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<u64>>,
{
    let mut first = None;
    loop {
        let position = through().await?;
        if position > 0 && first.is_none() {
            first = Some(started.elapsed());
        }
        if position >= last {
            let done = started.elapsed();
            let startup = first.unwrap_or(done);
            return Ok((startup, done - startup));
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("{what} did not finish within 10 minutes ({position} of {last})");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How far the accounts projection has applied the log (0 before its tables exist).
async fn applied_position(db: &dyn ReadModelDb, topic: &str) -> u64 {
    match db.query(APPLIED_POSITIONS, vec![topic.into()]).await {
        Ok(rows) => rows.iter().filter_map(|row| row.int(1).ok()).min().unwrap_or(0) as u64,
        Err(_) => 0,
    }
}
