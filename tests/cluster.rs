//! The cluster profile under faults: write-api, read-api, relay and two projectors as
//! separate processes on PostgreSQL, Kafka and Redis. Processes and the broker are
//! killed and restarted while commands keep arriving; afterwards every acknowledged
//! command is in the read models exactly once, and the read models equal a fresh
//! rebuild from the event store.

mod common;

#[path = "../infra/tests/common/broker.rs"]
mod broker;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{PROJECTORS, Plaza, Profile, RELAY};
use plaza_infra::postgres::{PgEventStore, PgReadModels};
use plaza_projections::{Progress, Projector, ReadModelDb};
use serde_json::{Value, json};

/// Users that follow and unfollow each other under load. Each client thread owns one
/// follower and toggles its follows of the targets in turn, so every command succeeds
/// and the expected end state is known exactly.
struct Load {
    targets: Vec<String>,
    clients: Vec<(String, String)>,
}

/// What the clients' acknowledged commands add up to.
#[derive(Default)]
struct Acknowledged {
    /// (follower, followee) -> following after the last acknowledged command.
    follows: BTreeMap<(String, String), bool>,
    commands: usize,
    last_position: u64,
}

impl Load {
    fn register(plaza: &Plaza, clients: usize, targets: usize) -> Self {
        let targets = (0..targets).map(|i| plaza.register(&format!("target{i}")).0).collect();
        let clients = (0..clients)
            .map(|i| {
                let (id, token, _) = plaza.register(&format!("client{i}"));
                (id, token)
            })
            .collect();
        Self { targets, clients }
    }

    /// Runs the clients until `stop`; returns what was acknowledged. Any answer other
    /// than 200 fails the test: the write side does not depend on the relay, the
    /// projectors or the broker.
    fn run(&self, plaza: &Plaza, stop: &AtomicBool) -> Acknowledged {
        std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .clients
                .iter()
                .map(|(client, token)| {
                    scope.spawn(move || {
                        let mut mine = Acknowledged::default();
                        let mut round = 0;
                        while !stop.load(Ordering::Relaxed) {
                            let target = &self.targets[round % self.targets.len()];
                            let following = mine.follows.get(&(client.clone(), target.clone())).copied().unwrap_or(false);
                            let method = if following { "DELETE" } else { "POST" };
                            let reply = plaza.send(method, &format!("/api/v1/users/{target}/follow"), None, Some(token), &[]);
                            assert_eq!(reply.status, 200, "{method} follow: {}", reply.body);
                            mine.follows.insert((client.clone(), target.clone()), !following);
                            mine.commands += 1;
                            mine.last_position = mine.last_position.max(reply.position());
                            round += 1;
                        }
                        mine
                    })
                })
                .collect();
            let mut all = Acknowledged::default();
            for handle in handles {
                let mine = handle.join().unwrap();
                all.follows.extend(mine.follows);
                all.commands += mine.commands;
                all.last_position = all.last_position.max(mine.last_position);
            }
            all
        })
    }
}

/// The load hammers the write API on purpose: no rate limits.
const UNLIMITED: [(&str, &str); 2] = [("PLAZA_RATE_LIMIT_USER_PER_SEC", "0"), ("PLAZA_RATE_LIMIT_IP_PER_SEC", "0")];

fn block_on<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(future)
}

/// Checks the read models against the acknowledged commands, through GraphQL.
fn assert_reflects(plaza: &Plaza, load: &Load, acknowledged: &Acknowledged) {
    const COUNTS: &str =
        "query($id: ID!) { user(id: $id) { followersCount followingCount } following(userId: $id, first: 100) { edges { node { id } } } }";
    for (client, _) in &load.clients {
        let data = plaza.graphql(COUNTS, json!({ "id": client }), None, acknowledged.last_position);
        let expected: Vec<&String> = acknowledged.follows.iter().filter(|((f, _), on)| f == client && **on).map(|((_, t), _)| t).collect();
        let mut shown: Vec<String> =
            data["following"]["edges"].as_array().unwrap().iter().map(|e| e["node"]["id"].as_str().unwrap().to_owned()).collect();
        shown.sort();
        let mut wanted: Vec<String> = expected.iter().map(|t| (*t).clone()).collect();
        wanted.sort();
        assert_eq!(shown, wanted, "whom {client} follows");
        assert_eq!(data["user"]["followingCount"], wanted.len(), "following count of {client}");
    }
    for target in &load.targets {
        let data = plaza.graphql(COUNTS, json!({ "id": target }), None, acknowledged.last_position);
        let followers = acknowledged.follows.iter().filter(|((_, t), on)| t == target && **on).count();
        assert_eq!(data["user"]["followersCount"], followers, "followers of {target}");
    }
}

/// A checksum of every read-model table of a database (each table's rows as text,
/// sorted), by the plain names readers use. The change logs are left out: they number
/// what subscribers were told in commit order, which Kafka's interleaving decides.
async fn read_model_checksums(url: &str) -> BTreeMap<String, String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let tables = client
        .query(
            // Read models are the views onto each projection's live generation.
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'VIEW'",
            &[],
        )
        .await
        .unwrap();
    let mut sums = BTreeMap::new();
    for row in tables {
        let table: String = row.get(0);
        if matches!(table.as_str(), "conversation_changes" | "notification_changes") {
            continue;
        }
        let sql = format!("SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')), count(*) FROM {table} t");
        let sum = client.query_one(&sql, &[]).await.unwrap();
        sums.insert(table, format!("{} ({} rows)", sum.get::<_, String>(0), sum.get::<_, i64>(1)));
    }
    sums
}

/// Rebuilds every projection from the event store into a fresh database and compares
/// the tables with the live read models.
fn assert_equals_a_fresh_rebuild(plaza: &Plaza) {
    let live = plaza.database_url().unwrap();
    let fresh = common::Database::create();
    block_on(async {
        let store = Arc::new(PgEventStore::connect(&live).await.unwrap());
        let db: Arc<dyn ReadModelDb> = Arc::new(PgReadModels::connect(&fresh.url).unwrap());
        for projection in plaza_projections::all(Default::default()) {
            Projector::new(projection, store.clone(), db.clone(), Progress::default()).catch_up().await.unwrap();
        }
        let (live_sums, fresh_sums) = (read_model_checksums(&live).await, read_model_checksums(&fresh.url).await);
        assert!(!fresh_sums.is_empty());
        assert_eq!(live_sums, fresh_sums, "live read models equal a rebuild from the event store");
    });
}

#[test]
fn killed_projector_and_relay_lose_nothing_and_repeat_nothing() {
    let plaza = Plaza::start_with(Profile::Cluster, &[UNLIMITED[0], UNLIMITED[1], ("PLAZA_CONSISTENCY_TIMEOUT_MS", "60000")]);
    let load = Load::register(&plaza, 6, 4);
    let stop = AtomicBool::new(false);
    let acknowledged = std::thread::scope(|scope| {
        let running = scope.spawn(|| load.run(&plaza, &stop));
        std::thread::sleep(Duration::from_secs(2));
        plaza.kill9_process(PROJECTORS[0]);
        plaza.kill9_process(RELAY);
        std::thread::sleep(Duration::from_secs(2));
        plaza.start_process(RELAY);
        plaza.start_process(PROJECTORS[0]);
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, Ordering::Relaxed);
        running.join().unwrap()
    });
    assert!(acknowledged.commands > 50, "the load ran: {} commands", acknowledged.commands);
    assert_reflects(&plaza, &load, &acknowledged);
    assert_equals_a_fresh_rebuild(&plaza);
}

/// Failover without waiting for the consumer group: the partitions of a projector
/// killed with SIGKILL are consumed by the other one within seconds (before the broker
/// expires the dead member), and `projections status` shows who holds them meanwhile.
#[test]
fn a_killed_projectors_partitions_are_rescued_and_status_shows_it() {
    let plaza = Plaza::start_with(Profile::Cluster, &[("PLAZA_CONSISTENCY_TIMEOUT_MS", "60000")]);
    let (_, token, _) = plaza.register("alice");
    let (bob, _, _) = plaza.register("bob");
    plaza.kill9_process(PROJECTORS[0]);
    let killed = Instant::now();
    let mut rescued = None;
    while rescued.is_none() && killed.elapsed() < Duration::from_secs(60) {
        let (ok, out, err) = plaza.cli(&["projections", "status", "--json"], &[]);
        assert!(ok, "{err}");
        let statuses: Value = serde_json::from_str(&out).unwrap();
        rescued = statuses.as_array().unwrap().iter().flat_map(|s| s["partitions"].as_array().unwrap()).find_map(|p| {
            let owner = p["owner"].as_str()?;
            owner.ends_with("+rescue").then(|| owner.to_owned())
        });
        std::thread::sleep(Duration::from_millis(100));
    }
    let rescuer = rescued.unwrap_or_else(|| panic!("no partition was rescued within 60 s:\n{}", plaza.log()));
    let (ok, out, _) = plaza.cli(&["projections", "status"], &[]);
    assert!(ok && out.contains(&format!("held by {rescuer}")), "{out}");
    // Every partition is consumed: a follow (to whichever partition) becomes visible.
    let position = plaza.send("POST", &format!("/api/v1/users/{bob}/follow"), None, Some(&token), &[]).position();
    let followers = plaza.graphql("query($id: ID!) { user(id: $id) { followersCount } }", json!({ "id": bob }), None, position);
    assert_eq!(followers["user"]["followersCount"], 1);
}

#[test]
fn events_reach_the_read_models_after_the_broker_returns() {
    let mut broker = broker::Broker::start();
    let brokers = broker.brokers();
    let plaza = Plaza::start_with(
        Profile::Cluster,
        &[UNLIMITED[0], UNLIMITED[1], ("PLAZA_KAFKA_BROKERS", &brokers), ("PLAZA_CONSISTENCY_TIMEOUT_MS", "60000")],
    );
    let load = Load::register(&plaza, 4, 3);
    let stop = AtomicBool::new(false);
    let acknowledged = std::thread::scope(|scope| {
        let running = scope.spawn(|| load.run(&plaza, &stop));
        std::thread::sleep(Duration::from_secs(1));
        broker.kill9();
        std::thread::sleep(Duration::from_secs(3));
        broker.launch();
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        running.join().unwrap()
    });
    assert!(acknowledged.commands > 20, "the load ran: {} commands", acknowledged.commands);
    assert_reflects(&plaza, &load, &acknowledged);
    assert_equals_a_fresh_rebuild(&plaza);
}

#[test]
fn stopped_roles_finish_their_work_and_the_others_take_over() {
    let plaza = Plaza::start(Profile::Cluster);
    let (_, token, _) = plaza.register("alice");
    let (bob, _, _) = plaza.register("bob");
    let follow = |plaza: &Plaza, method: &str| plaza.send(method, &format!("/api/v1/users/{bob}/follow"), None, Some(&token), &[]);
    let followers = |plaza: &Plaza, position: u64| {
        plaza.graphql("query($id: ID!) { user(id: $id) { followersCount } }", json!({ "id": bob }), None, position)["user"]["followersCount"].clone()
    };

    // SIGTERM: the projector leaves its group; the other one takes every partition.
    assert!(plaza.stop_process(PROJECTORS[0]).success(), "{}", plaza.log());
    let position = follow(&plaza, "POST").position();
    assert_eq!(followers(&plaza, position), 1);

    // The relay stops after its batch; what arrives meanwhile is relayed after a restart.
    assert!(plaza.stop_process(RELAY).success(), "{}", plaza.log());
    let position = follow(&plaza, "DELETE").position();
    plaza.start_process(RELAY);
    assert_eq!(followers(&plaza, position), 0);
    assert!(plaza.log().contains("kafka projector stopped"));
}
