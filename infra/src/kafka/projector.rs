use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures_util::FutureExt;
use plaza_domain::EventStore;
use plaza_projections::dead_letters::{Changes, FAILED};
use plaza_projections::generations::{self, Tables};
use plaza_projections::health::Health;
use plaza_projections::partitions::{Consumed, Message};
use plaza_projections::rebuild::RebuildError;
use plaza_projections::runtime::FailurePolicy;
use plaza_projections::{ChangeNotices, Projection, ReadModelDb, ReadModelError, Rebuild, SqlValue, Statement};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use super::{KafkaSettings, Probe, ensure_topic, recorded_event, watermark};

/// A killed member's partitions move to the others once its session times out.
/// tansu's group coordinator can be slow to answer heartbeats under load, so shorter
/// sessions expel live members.
const SESSION_TIMEOUT_MS: &str = "12000";
/// How often a member notes in the read models that it holds its partitions.
const TOUCH_EVERY: Duration = Duration::from_secs(1);
/// A partition nobody has noted for this long is consumed by a live member outside the
/// group (a rescue, see [`KafkaProjector::look_after_partitions`]).
const RESCUE_AFTER: Duration = Duration::from_secs(4);
/// How a rescuing member signs the partitions it holds.
const RESCUER: &str = "+rescue";
/// A partition whose holder has not noted it for this long has no live consumer.
const OWNER_STALE: Duration = Duration::from_secs(15);
/// Members that find orphaned partitions wait a random time up to this long before
/// rejoining, so that one of them rejoins and the others follow its rebalance.
const REJOIN_JITTER_MS: u128 = 8_000;

const TOUCH_PARTITION: &str = "UPDATE generation_partitions SET owner = $5, owner_seen_at = $6
     WHERE projection = $1 AND generation = $2 AND topic = $3 AND kafka_partition = $4";
/// A rescuer's note: never over a group member's recent one, so the rescuer sees when
/// the group has given the partition to someone again.
const TOUCH_RESCUED: &str = "UPDATE generation_partitions SET owner = $5, owner_seen_at = $6
     WHERE projection = $1 AND generation = $2 AND topic = $3 AND kafka_partition = $4
       AND (owner IS NULL OR owner = $5 OR owner_seen_at IS NULL OR owner_seen_at < $7)";
const ORPHANED_PARTITIONS: &str = "SELECT count(*) FROM generation_partitions
     WHERE projection = $1 AND generation = $2 AND topic = $3 AND (owner_seen_at IS NULL OR owner_seen_at < $4 OR owner LIKE '%+rescue')";
const HOLDERS: &str = "SELECT kafka_partition, owner, owner_seen_at, next_offset FROM generation_partitions
     WHERE projection = $1 AND generation = $2 AND topic = $3";
/// How long a paused projector may hold a batch before Kafka gives its partitions to
/// another member (it rejoins when resumed; the database says where to start).
const MAX_POLL_INTERVAL_MS: &str = "3600000";

/// When this member last rejoined its group, and a rejoin it plans: when, and the
/// assignment it was planned against.
struct Rejoin {
    last: Instant,
    planned: Option<(Instant, Instant)>,
}

/// The partitions Kafka gave this member, and since when.
struct Membership {
    partitions: Vec<i32>,
    since: Instant,
}

/// Feeds one projection from the events topic, in the consumer group
/// `{topic}.{projection}`: several processes running the same projection share the
/// topic's partitions, and Kafka moves partitions between them as they come and go.
///
/// Each batch is applied with the partitions' next offsets and positions in one
/// read-model transaction ([`ReadModelDb::apply_consumed`]), which skips whatever was
/// applied before. When Kafka assigns a partition, reading starts at the offset the
/// read-model database holds: offsets are never committed to Kafka, the database is the
/// one truth (also after it was rebuilt or restored). A rebalance while a batch is in
/// flight re-reads messages that the database then skips. Nothing is applied twice and
/// nothing is skipped. (Committing offsets to Kafka as well, for lag tools, made
/// tansu's group coordinator stall heartbeats during rebalances; lag is in the
/// `projection_partitions` table instead.)
pub struct KafkaProjector {
    projection: Arc<dyn Projection>,
    db: Arc<dyn ReadModelDb>,
    /// For rebuilds, when the live generation is an older version.
    store: Option<Arc<dyn EventStore>>,
    /// The live generation this member applies to.
    tables: Arc<Mutex<Arc<Tables>>>,
    notices: Arc<dyn ChangeNotices>,
    settings: KafkaSettings,
    batch_size: usize,
    policy: FailurePolicy,
    /// This member's name in the `owner` column.
    member: String,
    membership: Arc<Mutex<Membership>>,
    joined: Arc<AtomicBool>,
    started: Instant,
}

/// Partitions this member consumes outside the group because nobody else does: a
/// consumer of its own with a manual assignment, which joins no group.
struct Rescue {
    consumer: StreamConsumer,
    partitions: BTreeSet<i32>,
}

/// The consumer's callbacks: on assignment, start each partition where the read models
/// say. librdkafka calls this from `recv`, on the task's worker thread; the database
/// read blocks that thread briefly (`block_in_place`), which is why the projector needs
/// the multi-threaded runtime.
struct Assignments {
    db: Arc<dyn ReadModelDb>,
    projection: &'static str,
    tables: Arc<Mutex<Arc<Tables>>>,
    topic: String,
    runtime: Handle,
    membership: Arc<Mutex<Membership>>,
    joined: Arc<AtomicBool>,
}

impl Assignments {
    fn note(&self, partitions: Vec<i32>) {
        *self.membership.lock().expect("membership lock") = Membership { partitions, since: Instant::now() };
    }
}

impl ClientContext for Assignments {}

impl ConsumerContext for Assignments {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, assignment: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let starts = tokio::task::block_in_place(|| self.runtime.block_on(self.stored_offsets()));
                let partitions: Vec<i32> = assignment.elements().iter().map(|e| e.partition()).collect();
                for &partition in &partitions {
                    // Unknown to the read models (or they cannot be read): from the start,
                    // which is always safe, since the database skips what it has.
                    let start = starts.get(&partition).map_or(Offset::Beginning, |next| Offset::Offset(*next));
                    if let Err(error) = assignment.set_partition_offset(&self.topic, partition, start) {
                        warn!(%error, partition, "cannot set a start offset");
                    }
                }
                info!(projection = self.projection, partitions = ?starts_of(assignment), "partitions assigned");
                if let Err(error) = consumer.assign(assignment) {
                    error!(projection = self.projection, %error, "cannot take the assigned partitions");
                }
                self.note(partitions);
                self.joined.store(true, Ordering::Relaxed);
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                info!(projection = self.projection, "partitions revoked");
                self.note(Vec::new());
                if let Err(error) = consumer.unassign() {
                    error!(projection = self.projection, %error, "cannot give partitions back");
                }
            }
            other => error!(projection = self.projection, error = ?other, "rebalance failed"),
        }
    }
}

impl Assignments {
    /// Each partition's next offset as the read models hold it; empty when they cannot
    /// be read after a few tries.
    async fn stored_offsets(&self) -> BTreeMap<i32, i64> {
        const SQL: &str = "SELECT kafka_partition, next_offset FROM generation_partitions WHERE projection = $1 AND generation = $2 AND topic = $3";
        let generation = self.tables.lock().expect("tables lock").generation();
        for attempt in 1..=5 {
            match self.db.query(SQL, vec![self.projection.into(), SqlValue::Int(generation as i64), self.topic.as_str().into()]).await {
                Ok(rows) => {
                    return rows.iter().filter_map(|row| Some((row.int(0).ok()? as i32, row.int(1).ok()?))).collect();
                }
                Err(error) => warn!(projection = self.projection, attempt, %error, "cannot read the stored offsets"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        BTreeMap::new()
    }
}

fn starts_of(assignment: &TopicPartitionList) -> Vec<(i32, String)> {
    assignment.elements().iter().map(|e| (e.partition(), format!("{:?}", e.offset()))).collect()
}

impl KafkaProjector {
    pub fn new(projection: Arc<dyn Projection>, db: Arc<dyn ReadModelDb>, notices: Arc<dyn ChangeNotices>, settings: &KafkaSettings) -> Self {
        let member = format!("{}-{}", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let membership = Arc::new(Mutex::new(Membership { partitions: Vec::new(), since: Instant::now() }));
        let tables = Arc::new(Mutex::new(Arc::new(Tables::of(&*projection, 0))));
        Self {
            projection,
            db,
            store: None,
            tables,
            notices,
            settings: settings.clone(),
            batch_size: 1000,
            policy: FailurePolicy::default(),
            member,
            membership,
            joined: Arc::default(),
            started: Instant::now(),
        }
    }

    /// Lets the projector rebuild from the store when the live generation was built by
    /// an older version of the projection.
    pub fn with_store(mut self, store: Arc<dyn EventStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// What to do with an event the projection keeps failing on.
    pub fn with_failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.policy = policy;
        self
    }

    fn tables(&self) -> Arc<Tables> {
        self.tables.lock().expect("tables lock").clone()
    }

    /// Turns true once the consumer group gave this projector its partitions (possibly
    /// none, when other members hold them all): it is consuming.
    pub fn joined(&self) -> Arc<AtomicBool> {
        self.joined.clone()
    }

    pub fn name(&self) -> &'static str {
        self.projection.name()
    }

    fn group(&self) -> String {
        format!("{}.{}", self.settings.topic, self.name())
    }

    /// Creates the topic if needed, finds the live generation this member can apply to
    /// (rebuilding first when it is an older version), and a state row for each of the
    /// topic's partitions in it. Returns false while there is none to apply to (paused,
    /// or built by a newer Plaza).
    pub async fn prepare(&self, shutdown: &watch::Receiver<bool>) -> anyhow::Result<bool> {
        let mut live = generations::ensure_live(&*self.db, &*self.projection).await?;
        let version = self.projection.version();
        if live.version < version {
            let Some(store) = &self.store else {
                anyhow::bail!("the live generation is version {}, this Plaza's is {version}, and no event store to rebuild from", live.version);
            };
            info!(projection = self.name(), live = live.version, version, "live generation is an older version: rebuilding beside it");
            let rebuild = Rebuild::new(self.projection.clone(), store.clone(), self.db.clone())
                .with_notices(self.notices.clone())
                .with_failure_policy(self.policy);
            match rebuild.run(&mut |_| {}, shutdown.clone()).await {
                Ok(Some(rebuilt)) => live = rebuilt,
                Ok(None) | Err(RebuildError::Busy) => return Ok(false),
                Err(error) => return Err(error.into()),
            }
        }
        if live.version > version {
            warn!(projection = self.name(), live = live.version, version, "live generation was built by a newer Plaza; this one leaves it alone");
            return Ok(false);
        }
        if live.paused {
            return Ok(false);
        }
        ensure_topic(&self.settings).await?;
        let partitions = Probe::new(&self.settings)?.partitions(Duration::from_secs(10)).await?;
        let tables = Arc::new(Tables::of(&*self.projection, live.generation));
        self.db.track_partitions(tables.clone(), &self.settings.topic, partitions).await?;
        *self.tables.lock().expect("tables lock") = tables;
        Ok(true)
    }

    fn consumer(&self) -> anyhow::Result<StreamConsumer<Assignments>> {
        let runtime = Handle::current();
        anyhow::ensure!(runtime.runtime_flavor() == RuntimeFlavor::MultiThread, "the kafka projector needs tokio's multi-threaded runtime");
        let assignments = Assignments {
            db: self.db.clone(),
            projection: self.name(),
            tables: self.tables.clone(),
            topic: self.settings.topic.clone(),
            runtime,
            membership: self.membership.clone(),
            joined: self.joined.clone(),
        };
        let consumer: StreamConsumer<Assignments> = ClientConfig::new()
            .set("bootstrap.servers", &self.settings.brokers)
            .set("group.id", self.group())
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", SESSION_TIMEOUT_MS)
            .set("heartbeat.interval.ms", "1000")
            .set("max.poll.interval.ms", MAX_POLL_INTERVAL_MS)
            // How long a fetch waits on an idle partition. tansu answers a fetch only after
            // this wait, with what it found when the fetch arrived, so it adds to the
            // command-to-visible delay (50 ms here gave about 100 ms; 10 ms, about 36 ms).
            .set("fetch.wait.max.ms", "10")
            .create_with_context(assignments)?;
        consumer.subscribe(&[&self.settings.topic])?;
        Ok(consumer)
    }

    /// The rescue's consumer: the same settings, a manual assignment, no group to join
    /// (its group id is only what librdkafka requires; it never commits).
    fn rescue_consumer(&self) -> anyhow::Result<StreamConsumer> {
        Ok(ClientConfig::new()
            .set("bootstrap.servers", &self.settings.brokers)
            .set("group.id", format!("{}.rescue.{}", self.group(), self.member))
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "10")
            .create()?)
    }

    /// Consumes until `shutdown` turns true; the batch in hand is finished first.
    /// Failures are logged and retried with backoff; no message is dropped.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let (consumer, rescue) = loop {
            match self.prepare(&shutdown).await {
                Ok(true) => match self.consumer().and_then(|c| Ok((c, self.rescue_consumer()?))) {
                    Ok(consumers) => break consumers,
                    Err(error) => warn!(projection = self.name(), %error, "kafka projector cannot start, retrying"),
                },
                Ok(false) => {}
                Err(error) => warn!(projection = self.name(), %error, "kafka projector cannot start, retrying"),
            }
            if sleep_or_shutdown(Duration::from_secs(1), &mut shutdown).await {
                return;
            }
        };
        let mut rescue = Rescue { consumer: rescue, partitions: BTreeSet::new() };
        info!(projection = self.name(), topic = %self.settings.topic, group = %self.group(), member = %self.member, "kafka projector started");
        let mut ticks = tokio::time::interval(TOUCH_EVERY);
        let mut rejoin = Rejoin { last: Instant::now(), planned: None };
        let mut health = Health::new(self.name());
        while !*shutdown.borrow() {
            let (first, rescued) = tokio::select! {
                message = consumer.recv() => (message.map(|m| self.consume(&m)), false),
                message = rescue.consumer.recv(), if !rescue.partitions.is_empty() => (message.map(|m| self.consume(&m)), true),
                _ = ticks.tick() => {
                    self.look_after_partitions(&consumer, &mut rescue, &mut rejoin).await;
                    health.report(&*self.db).await;
                    continue;
                }
                _ = shutdown.changed() => break,
            };
            let mut batch = Vec::new();
            match first {
                Ok(consumed) => batch.push(consumed),
                Err(error) => {
                    // Transport errors while a broker restarts: librdkafka reconnects.
                    debug!(projection = self.name(), %error, "kafka consumer error");
                    continue;
                }
            }
            // Whatever else has already arrived from the same consumer joins the batch.
            while batch.len() < self.batch_size {
                let next = if rescued { rescue.consumer.recv().now_or_never() } else { consumer.recv().now_or_never() };
                match next {
                    Some(Ok(message)) => batch.push(self.consume(&message)),
                    _ => break,
                }
            }
            if !self.apply(batch, &mut health, &mut shutdown).await {
                break;
            }
            self.notices.publish(self.name());
            health.report(&*self.db).await;
        }
        health.report(&*self.db).await;
        self.joined.store(false, Ordering::Relaxed);
        info!(projection = self.name(), "kafka projector stopped");
    }

    /// Notes in the read models that this member holds its partitions, and makes sure
    /// every partition is consumed:
    ///
    /// - A partition nobody has noted for [`RESCUE_AFTER`] (its member was killed, and
    ///   the group has not noticed yet: that takes the session timeout and a rebalance)
    ///   is consumed by this member outside the group, from the offset the read models
    ///   hold, until a member of the group notes it again. Two members reading the same
    ///   partition is safe: applies are serialised and skip what was applied
    ///   ([`ReadModelDb::apply_consumed`]).
    /// - One still without a group member for [`OWNER_STALE`], while this member has
    ///   been settled for a while, means the group's assignment went wrong (tansu's
    ///   coordinator can leave a dead member's partitions assigned to it after a
    ///   rebalance), so this member asks for a new assignment by rejoining the group.
    ///
    /// With a healthy group neither fires.
    async fn look_after_partitions(&self, consumer: &StreamConsumer<Assignments>, rescue: &mut Rescue, rejoin: &mut Rejoin) {
        let (partitions, since) = {
            let membership = self.membership.lock().expect("membership lock");
            (membership.partitions.clone(), membership.since)
        };
        let now = epoch_millis(SystemTime::now());
        let generation = SqlValue::Int(self.tables().generation() as i64);
        let rescuer = format!("{}{RESCUER}", self.member);
        let stale = SqlValue::Int(now - RESCUE_AFTER.as_millis() as i64);
        let held = partitions.iter().map(|p| (*p, false)).chain(rescue.partitions.iter().map(|p| (*p, true)));
        for (partition, rescued) in held {
            let mut params = vec![
                self.name().into(),
                generation.clone(),
                self.settings.topic.as_str().into(),
                SqlValue::Int(partition.into()),
                if rescued { rescuer.as_str().into() } else { self.member.as_str().into() },
                SqlValue::Int(now),
            ];
            let touch = if rescued {
                params.push(stale.clone());
                Statement::new(TOUCH_RESCUED, params)
            } else {
                Statement::new(TOUCH_PARTITION, params)
            };
            if let Err(error) = self.db.execute(touch).await {
                debug!(projection = self.name(), %error, "cannot note held partitions");
            }
        }
        self.rescue_orphans(&partitions, rescue, now).await;
        if since.elapsed() < OWNER_STALE || rejoin.last.elapsed() < OWNER_STALE || !self.partitions_orphaned(now).await {
            rejoin.planned = None;
            return;
        }
        match rejoin.planned {
            // Another member's rebalance came first: nothing to do.
            Some((_, planned_since)) if planned_since != since => rejoin.planned = None,
            Some((at, _)) if Instant::now() >= at => {
                warn!(projection = self.name(), "partitions without a live consumer; rejoining the group for a new assignment");
                consumer.unsubscribe();
                if let Err(error) = consumer.subscribe(&[&self.settings.topic]) {
                    error!(projection = self.name(), %error, "cannot rejoin the consumer group");
                }
                *rejoin = Rejoin { last: Instant::now(), planned: None };
            }
            Some(_) => {}
            None => {
                let jitter = Duration::from_millis((uuid::Uuid::new_v4().as_u128() % REJOIN_JITTER_MS) as u64);
                rejoin.planned = Some((Instant::now() + jitter, since));
            }
        }
    }

    /// Starts or stops consuming partitions outside the group: those that nobody (group
    /// member or another rescuer) noted for [`RESCUE_AFTER`], and this member does not
    /// hold in the group, once this member has run that long itself.
    async fn rescue_orphans(&self, mine: &[i32], rescue: &mut Rescue, now: i64) {
        let params = vec![self.name().into(), SqlValue::Int(self.tables().generation() as i64), self.settings.topic.as_str().into()];
        let rows = match self.db.query(HOLDERS, params).await {
            Ok(rows) => rows,
            Err(error) => {
                debug!(projection = self.name(), %error, "cannot read the partitions' holders");
                return;
            }
        };
        let stale = now - RESCUE_AFTER.as_millis() as i64;
        let rescuer = format!("{}{RESCUER}", self.member);
        let mut wanted = BTreeMap::new();
        for row in &rows {
            let (Ok(partition), Ok(owner), Ok(next_offset)) = (row.int(0), row.opt_text(1), row.int(3)) else { continue };
            let partition = partition as i32;
            let seen = row.int(2).unwrap_or(0);
            let held_by_another = owner.is_some_and(|o| o != rescuer) && seen >= stale;
            if !mine.contains(&partition) && !held_by_another && (rescue.partitions.contains(&partition) || self.started.elapsed() >= RESCUE_AFTER) {
                wanted.insert(partition, next_offset);
            }
        }
        if wanted.keys().copied().collect::<BTreeSet<_>>() == rescue.partitions {
            return;
        }
        let mut assignment = TopicPartitionList::new();
        for (partition, next_offset) in &wanted {
            if let Err(error) = assignment.add_partition_offset(&self.settings.topic, *partition, Offset::Offset(*next_offset)) {
                warn!(projection = self.name(), %error, "cannot plan a rescue");
                return;
            }
        }
        match rescue.consumer.assign(&assignment) {
            Ok(()) => {
                let partitions: BTreeSet<i32> = wanted.keys().copied().collect();
                if partitions.is_empty() {
                    info!(projection = self.name(), "rescue over: every partition has a member of the group again");
                } else {
                    warn!(projection = self.name(), ?partitions, "partitions without a live consumer; consuming them outside the group meanwhile");
                }
                rescue.partitions = partitions;
            }
            Err(error) => warn!(projection = self.name(), %error, "cannot assign the rescued partitions"),
        }
    }

    /// Whether some partition has had no live holder for [`OWNER_STALE`].
    async fn partitions_orphaned(&self, now: i64) -> bool {
        let stale = now - OWNER_STALE.as_millis() as i64;
        let generation = SqlValue::Int(self.tables().generation() as i64);
        let params = vec![self.name().into(), generation, self.settings.topic.as_str().into(), SqlValue::Int(stale)];
        match self.db.query(ORPHANED_PARTITIONS, params).await {
            Ok(rows) => rows.first().and_then(|row| row.int(0).ok()).unwrap_or(0) > 0,
            Err(error) => {
                debug!(projection = self.name(), %error, "cannot check partition holders");
                false
            }
        }
    }

    /// Applies a batch until it commits. A batch that fails is applied one message at a
    /// time, to find the one that fails: it is retried `max_attempts` times with backoff,
    /// then parked as a dead letter when the policy says so and the database answers (so
    /// the failure is the event's), or retried on. Returns false if shutdown was asked
    /// for first (the batch is then read again by whoever comes next).
    async fn apply(&self, batch: Vec<Consumed>, health: &mut Health, shutdown: &mut watch::Receiver<bool>) -> bool {
        let events = batch.iter().filter(|c| matches!(c.message, Message::Event(_))).count() as u64;
        match self.try_apply(batch.clone(), shutdown).await {
            Attempt::Done => {
                health.applied(events);
                return true;
            }
            Attempt::Shutdown => return false,
            Attempt::Failed(error) => debug!(projection = self.name(), %error, "batch failed; applying its messages one at a time"),
        }
        for mut consumed in batch {
            let (mut attempts, mut backoff) = (0, Duration::from_millis(100));
            loop {
                let error = match self.try_apply(vec![consumed.clone()], shutdown).await {
                    Attempt::Done => break,
                    Attempt::Shutdown => return false,
                    Attempt::Failed(error) => error,
                };
                attempts += 1;
                health.failed(&error);
                health.report(&*self.db).await;
                warn!(projection = self.name(), partition = consumed.partition, offset = consumed.offset, attempts, %error, "message failed");
                if let Message::Event(changes) = &consumed.message
                    && attempts >= self.policy.max_attempts
                    && self.policy.park
                    && !changes.dead_letter
                    && self.db.query("SELECT 1", vec![]).await.is_ok()
                {
                    warn!(projection = self.name(), position = changes.position, stream = %changes.stream_id, "parking the event as a dead letter");
                    consumed.message = Message::Event(changes.parked(&self.tables(), FAILED, &error.to_string(), attempts));
                    continue;
                }
                if sleep_or_shutdown(backoff, shutdown).await {
                    return false;
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            if matches!(consumed.message, Message::Event(_)) {
                health.applied(1);
            }
        }
        true
    }

    /// One attempt at applying a batch, first waiting out a generation that is paused or
    /// was replaced (a rebuild's switch hands its offsets to the new one).
    async fn try_apply(&self, batch: Vec<Consumed>, shutdown: &mut watch::Receiver<bool>) -> Attempt {
        loop {
            match self.db.apply_consumed(self.tables(), &self.settings.topic, batch.clone()).await {
                Ok(tally) => {
                    debug!(projection = self.name(), applied = tally.applied, skipped = tally.skipped, "kafka batch applied");
                    return Attempt::Done;
                }
                Err(ReadModelError::Stopped(..)) => {
                    info!(projection = self.name(), generation = self.tables().generation(), "generation paused or replaced");
                    loop {
                        match self.prepare(shutdown).await {
                            Ok(true) => break,
                            Ok(false) => {}
                            Err(error) => warn!(projection = self.name(), %error, "cannot find the live generation"),
                        }
                        if sleep_or_shutdown(Duration::from_secs(1), shutdown).await {
                            return Attempt::Shutdown;
                        }
                    }
                }
                Err(error) => return Attempt::Failed(error),
            }
        }
    }

    /// Turns a message into what applying it takes.
    fn consume(&self, message: &BorrowedMessage<'_>) -> Consumed {
        use rdkafka::Message as _;
        let (partition, offset) = (message.partition(), message.offset());
        let message = if let Some(position) = watermark(message) {
            Message::Watermark { position }
        } else {
            match recorded_event(message) {
                Ok(envelope) => Message::Event(Changes::of(&*self.projection, &envelope)),
                Err(error) => {
                    warn!(projection = self.name(), partition, offset, %error, "skipping a message that is not a relayed event");
                    Message::Unreadable
                }
            }
        };
        Consumed { partition, offset, message }
    }
}

/// How one attempt at applying a batch ended.
enum Attempt {
    Done,
    Failed(ReadModelError),
    Shutdown,
}

fn epoch_millis(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Sleeps; returns true if shutdown was requested meanwhile.
async fn sleep_or_shutdown(duration: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(duration) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}
