//! Section 5: the content hot paths over HTTP, driven by `wrk` (an event-loop load
//! generator in C, so the client is not the bottleneck): likes, counter increments and
//! views, beside `GET /healthz` (a no-op axum handler) measured on the same server in the
//! same run. Embedded profile (`plaza serve`) and cluster profile (five processes).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::json;
use tokio::runtime::Runtime;

use crate::Settings;
use crate::http::{Server, agent, register};
use crate::pg::FreshDatabase;

/// Users that like, follow and comment, and videos they like: 60,000 (user, video)
/// pairs and 39,800 (follower, followee) pairs. A script that has used every pair turns
/// to undoing them (unlike, unfollow), so every answer is a fresh state change.
pub const LIKERS: usize = 200;
pub const VIDEOS: usize = 300;
/// Videos of the same author and hashtag that no workload likes or views. A fast machine
/// likes every one of the `VIDEOS` in a run; RECOMMENDED never shows a viewer what they
/// already like, so without these its pages would be empty.
pub const UNSEEN: usize = 300;
/// Messages in the conversation whose page the messages workload reads.
pub const MESSAGES: usize = 50;

pub struct Load {
    pub profile: &'static str,
    pub workload: &'static str,
    pub connections: usize,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: u64,
    /// Answers other than 2xx, and socket errors.
    pub failures: u64,
    /// After a write workload: seconds from the end of its burst until every read model
    /// included its last event. The next workload starts only then, so a backlog of
    /// projections is not measured against it.
    pub caught_up_s: Option<f64>,
}

#[derive(Default)]
pub struct HotPaths {
    pub loads: Vec<Load>,
    /// The same workloads against the `--before` binary, in the same run.
    pub before: Vec<Load>,
}

/// The servers measured: Plaza, optionally an earlier Plaza, and optionally the
/// cqrs-es peer.
pub struct Binaries<'a> {
    pub plaza: &'a Path,
    pub before: Option<&'a Path>,
    pub peer: Option<&'a Path>,
    /// Only these profiles (all if empty).
    pub profiles: &'a [Profile],
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    Embedded,
    Postgres,
    Cluster,
}

pub const EMBEDDED: &str = "embedded (SQLite)";
pub const POSTGRES: &str = "PostgreSQL";
pub const CLUSTER: &str = "cluster (PostgreSQL, Kafka, Redis)";
pub const PEER: &str = "cqrs-es 0.5 + postgres-es peer";
pub const RECOMMENDED_AFTER_REFRESH: &str = "GraphQL: RECOMMENDED after a refresh (a new ranking), one client";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Workload {
    Noop,
    Like,
    Favorite,
    Follow,
    Comment,
    Increment,
    View,
    User,
    Videos,
    Hot,
    HotAliases,
    Recommended,
    RecommendedCold,
    Messages,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Self::Noop => "GET /healthz (no-op baseline)",
            Self::Like => "like a video",
            Self::Favorite => "favorite a video",
            Self::Follow => "follow a user",
            Self::Comment => "comment on a video",
            Self::Increment => "counter increment",
            Self::View => "view a video",
            Self::User => "GraphQL: user(id) with counts",
            Self::Videos => "GraphQL: videos(authorId, first: 10) with authors",
            Self::Hot => "GraphQL: HOT feed, 10 videos",
            Self::HotAliases => "GraphQL: HOT feed under 5 aliases",
            Self::Recommended => "GraphQL: RECOMMENDED feed, signed in",
            Self::RecommendedCold => RECOMMENDED_AFTER_REFRESH,
            Self::Messages => "GraphQL: a conversation's last 20 messages",
        }
    }

    /// Whether the read API answers it (the write API answers the others).
    fn reads(self) -> bool {
        matches!(self, Self::User | Self::Videos | Self::Hot | Self::HotAliases | Self::Recommended | Self::Messages)
    }
}

/// What each profile runs, with how many connections.
fn workloads(profile: &str) -> Vec<(Workload, usize)> {
    use Workload::*;
    match profile {
        EMBEDDED => vec![
            (Noop, 64),
            (Like, 64),
            (Favorite, 64),
            (Follow, 64),
            (Comment, 64),
            (Increment, 64),
            (Increment, 256),
            (View, 64),
            (User, 64),
            (Videos, 64),
            (Hot, 64),
            (HotAliases, 64),
            (RecommendedCold, 1),
            (Recommended, 64),
            (Messages, 64),
        ],
        POSTGRES => {
            vec![
                (Noop, 64),
                (Like, 64),
                (Follow, 64),
                (Increment, 64),
                (View, 64),
                (User, 64),
                (Videos, 64),
                (Hot, 64),
                (RecommendedCold, 1),
                (Recommended, 64),
                (Messages, 64),
            ]
        }
        _ => vec![(Noop, 64), (Like, 64), (Increment, 64), (Increment, 256), (View, 64), (Hot, 64), (HotAliases, 64)],
    }
}

pub fn run_all(runtime: &Runtime, binaries: &Binaries<'_>, settings: &Settings, admin: &str) -> anyhow::Result<HotPaths> {
    if Command::new("wrk").arg("--version").output().is_err() {
        bail!("wrk is not installed; `make bench` installs it (apt-get install wrk)");
    }
    let mut hot = HotPaths::default();
    let runs = |profile| binaries.profiles.is_empty() || binaries.profiles.contains(&profile);
    hot.loads = run_binary(runtime, binaries.plaza, binaries.peer, &runs, settings, admin)?;
    if let Some(before) = binaries.before {
        eprintln!("[hot] the same workloads against the earlier build {}", before.display());
        hot.before = run_binary(runtime, before, None, &runs, settings, admin)?;
    }
    Ok(hot)
}

fn run_binary(
    runtime: &Runtime,
    plaza: &Path,
    peer: Option<&Path>,
    runs: &dyn Fn(Profile) -> bool,
    settings: &Settings,
    admin: &str,
) -> anyhow::Result<Vec<Load>> {
    let mut loads = Vec::new();
    if runs(Profile::Embedded) {
        eprintln!("[hot] embedded: starting plaza serve");
        let mut server = Server::start_role(plaza, "serve", &[])?;
        let base = server.base.clone();
        loads.extend(run_profile(EMBEDDED, &base, &base, settings)?);
        server.check_alive()?;
    }
    if runs(Profile::Postgres) {
        let database = runtime.block_on(FreshDatabase::create(admin))?;
        let measured = (|| {
            eprintln!("[hot] PostgreSQL: starting plaza serve");
            let env = [("PLAZA_STORE_URL", database.url.clone()), ("PLAZA_READ_MODELS_URL", database.url.clone())];
            let mut server = Server::start_role(plaza, "serve", &env)?;
            let base = server.base.clone();
            let mut measured = run_profile(POSTGRES, &base, &base, settings)?;
            server.check_alive()?;
            drop(server);
            if let Some(peer) = peer {
                measured.push(run_peer(runtime, peer, settings, admin)?);
            }
            Ok::<_, anyhow::Error>(measured)
        })();
        runtime.block_on(database.drop_now())?;
        loads.extend(measured?);
    }
    if !runs(Profile::Cluster) {
        return Ok(loads);
    }
    let database = runtime.block_on(FreshDatabase::create(admin))?;
    let cluster = (|| {
        eprintln!("[hot] cluster: starting write-api, read-api, relay and two projectors");
        let mut processes = crate::cluster::start(plaza, &database.url)?;
        let (write, read) = (processes[0].base.clone(), processes[1].base.clone());
        let measured = run_profile(CLUSTER, &write, &read, settings)?;
        for process in &mut processes {
            process.check_alive()?;
        }
        Ok::<_, anyhow::Error>(measured)
    })();
    runtime.block_on(database.drop_now())?;
    loads.extend(cluster?);
    Ok(loads)
}

/// The like workload against the cqrs-es peer (`bench/peer`) on its own fresh database
/// of the same PostgreSQL server.
fn run_peer(runtime: &Runtime, peer: &Path, settings: &Settings, admin: &str) -> anyhow::Result<Load> {
    let database = runtime.block_on(FreshDatabase::create(admin))?;
    let measured = (|| {
        eprintln!("[hot] peer: starting plaza-peer serve");
        let mut server = Server::start_role(peer, "serve", &[("PEER_DATABASE_URL", database.url.clone())])?;
        let base = server.base.clone();
        let agent = agent(Duration::from_secs(30));
        let mut tokens = Vec::with_capacity(LIKERS);
        for i in 0..LIKERS {
            let answer = post_json(&agent, &format!("{base}/api/v1/users"), None, &json!({ "username": format!("liker_{i}") }))?;
            tokens.push(answer["token"].as_str().context("no token from the peer")?.to_owned());
        }
        let mut videos = Vec::with_capacity(VIDEOS);
        for i in 0..VIDEOS {
            let answer = post_json(&agent, &format!("{base}/api/v1/videos"), Some(&tokens[0]), &json!({ "title": format!("Video {i}") }))?;
            videos.push(answer["video_id"].as_str().context("no video id from the peer")?.to_owned());
        }
        let dir = tempfile::tempdir()?;
        let likes = script(&dir, "peer-likes.lua", &pairs_script(&tokens, &videos, "/api/v1/videos/", "/like"))?;
        let load = measure(PEER, Workload::Like, &base, Some(&likes), 64, settings)?;
        server.check_alive()?;
        Ok::<_, anyhow::Error>(load)
    })();
    runtime.block_on(database.drop_now())?;
    measured
}

fn measure(
    profile: &'static str,
    workload: Workload,
    base: &str,
    script: Option<&Path>,
    connections: usize,
    settings: &Settings,
) -> anyhow::Result<Load> {
    let seconds = settings.http_case.as_secs().max(1);
    let url = if script.is_none() { format!("{base}/healthz") } else { base.to_owned() };
    let name = workload.name();
    if workload.reads() {
        // Not counted: fills what a server that has been up a while holds (SQLite's
        // pages, prepared statements, the HOT ranking, each viewer's RECOMMENDED one).
        let warmup = settings.warmup.as_secs().max(1);
        eprintln!("[hot] {profile}: {name}, warm-up {warmup} s...");
        wrk(profile, name, &url, script, connections, warmup)?;
    }
    eprintln!("[hot] {profile}: {name}, {connections} connections, {seconds} s...");
    let load = wrk(profile, name, &url, script, connections, seconds)?;
    eprintln!("[hot] {profile}: {name}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {} failures", load.per_second, load.p50_ms, load.p99_ms, load.failures);
    Ok(load)
}

fn run_profile(profile: &'static str, write: &str, read: &str, settings: &Settings) -> anyhow::Result<Vec<Load>> {
    let prepared = prepare(write, read)?;
    let dir = tempfile::tempdir()?;
    let mut loads = Vec::new();
    for (workload, connections) in workloads(profile) {
        if workload == Workload::RecommendedCold {
            loads.push(prepared.new_recommendations(profile, write, read)?);
            continue;
        }
        let script = match workload {
            Workload::Noop => None,
            _ => Some(script(&dir, "workload.lua", &prepared.script(workload))?),
        };
        let base = if workload.reads() { read } else { write };
        let mut load = measure(profile, workload, base, script.as_deref(), connections, settings)?;
        if !workload.reads() && workload != Workload::Noop {
            load.caught_up_s = Some(prepared.caught_up(write, read)?.as_secs_f64());
        }
        loads.push(load);
    }
    // Touch the read side so a dead read API shows.
    let answer = agent(Duration::from_secs(10)).get(format!("{read}/healthz")).call().context("the read API does not answer")?;
    if answer.status() != 200 {
        bail!("the read API answered {}", answer.status());
    }
    Ok(loads)
}

/// The users, videos and conversation the workloads use.
struct Prepared {
    /// (user id, token) of each liker.
    users: Vec<(String, String)>,
    author: String,
    videos: Vec<String>,
    conversation: String,
}

/// Registers the likers and one author with `VIDEOS` + `UNSEEN` videos, and a
/// conversation of two likers with `MESSAGES` messages; waits until the read side holds
/// them.
fn prepare(write: &str, read: &str) -> anyhow::Result<Prepared> {
    eprintln!("[hot] registering {LIKERS} users, publishing {} videos, sending {MESSAGES} messages (not measured)", VIDEOS + UNSEEN);
    let run = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let users = std::thread::scope(|scope| {
        let handles: Vec<_> =
            (0..LIKERS).map(|i| scope.spawn(move || register(&agent(Duration::from_secs(60)), write, &format!("liker_{run}_{i}")))).collect();
        handles.into_iter().map(|h| h.join().map_err(|_| anyhow::anyhow!("a registration thread panicked"))?).collect::<anyhow::Result<Vec<_>>>()
    })?;
    let (author, author_token) = register(&agent(Duration::from_secs(60)), write, &format!("author_{run}"))?;
    let agent = agent(Duration::from_secs(30));
    let mut videos = Vec::with_capacity(VIDEOS);
    for i in 0..VIDEOS + UNSEEN {
        let body = json!({ "title": format!("Video {i}"), "description": "#bench", "media_url": "https://cdn.example.com/v.mp4" });
        let answer = post_json(&agent, &format!("{write}/api/v1/videos"), Some(&author_token), &body)?;
        if i < VIDEOS {
            videos.push(answer["video_id"].as_str().context("no video id")?.to_owned());
        }
    }
    let (a, b) = (&users[0], &users[1]);
    let started = post_json(&agent, &format!("{write}/api/v1/conversations"), Some(&a.1), &json!({ "kind": "direct", "member_id": b.0 }))?;
    let conversation = started["conversation_id"].as_str().context("no conversation id")?.to_owned();
    let mut position = 0;
    for i in 0..MESSAGES {
        let from = if i % 2 == 0 { a } else { b };
        let sent = post_json(
            &agent,
            &format!("{write}/api/v1/conversations/{conversation}/messages"),
            Some(&from.1),
            &json!({ "body": format!("message {i}") }),
        )?;
        position = sent["position"].as_u64().unwrap_or(position);
    }
    crate::messaging::caught_up(read, position)?;
    Ok(Prepared { users, author, videos, conversation })
}

fn post_json(agent: &ureq::Agent, url: &str, token: Option<&str>, body: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
    let mut request = agent.post(url);
    if let Some(token) = token {
        request = request.header("authorization", &format!("Bearer {token}"));
    }
    let mut answer = request.send_json(body).with_context(|| format!("POST {url}"))?;
    let text = answer.body_mut().read_to_string()?;
    if !answer.status().is_success() {
        bail!("POST {url} answered {}: {text}", answer.status());
    }
    serde_json::from_str(&text).with_context(|| format!("POST {url} answered {text}"))
}

impl Prepared {
    /// Sends one message (an append after every event of the burst just measured) and
    /// waits until the read models include it.
    fn caught_up(&self, write: &str, read: &str) -> anyhow::Result<Duration> {
        let (conversation, from) = (&self.conversation, &self.users[0].1);
        let url = format!("{write}/api/v1/conversations/{conversation}/messages");
        let sent = post_json(&agent(Duration::from_secs(60)), &url, Some(from), &json!({ "body": "caught up?" }))?;
        crate::messaging::caught_up(read, sent["position"].as_u64().context("no position in the message's answer")?)
    }

    /// Each user in turn refreshes their recommendations and, once the read models hold
    /// the new seed, asks for the first 10 of RECOMMENDED (with `Plaza-Min-Position`,
    /// which ranks anew too): what a viewer waits for when no ranking of theirs is
    /// kept. One request at a time, on an otherwise idle server; only the GraphQL
    /// request is timed.
    fn new_recommendations(&self, profile: &'static str, write: &str, read: &str) -> anyhow::Result<Load> {
        const QUERY: &str = "{ feed(kind: RECOMMENDED, first: 10) { edges { node { id title likeCount author { username } } } } }";
        let name = Workload::RecommendedCold.name();
        eprintln!("[hot] {profile}: {name}, {LIKERS} viewers...");
        let agent = agent(Duration::from_secs(30));
        let (mut latencies, mut failures) = (Vec::with_capacity(self.users.len()), 0);
        for (_, token) in &self.users {
            let refreshed = post_json(&agent, &format!("{write}/api/v1/recommend/refresh"), Some(token), &json!({}))?;
            let position = refreshed["position"].as_u64().context("no position in the refresh's answer")?.to_string();
            let reached =
                || agent.post(format!("{read}/graphql")).header("plaza-min-position", &position).send_json(json!({ "query": "{ __typename }" }));
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while !reached().is_ok_and(|answer| answer.status() == 200) {
                if std::time::Instant::now() > deadline {
                    bail!("the read models did not reach position {position} within 60 s");
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let started = std::time::Instant::now();
            let answer = agent
                .post(format!("{read}/graphql"))
                .header("authorization", &format!("Bearer {token}"))
                .header("plaza-min-position", &position)
                .send_json(json!({ "query": QUERY }));
            let latency = started.elapsed();
            // A page of fewer than 10 would measure an empty feed, not a ranking.
            let ok = answer.is_ok_and(|mut answer| {
                answer.status() == 200
                    && answer.body_mut().read_json::<serde_json::Value>().is_ok_and(|page| {
                        page.get("errors").is_none() && page["data"]["feed"]["edges"].as_array().is_some_and(|edges| edges.len() == 10)
                    })
            });
            match ok {
                true => latencies.push(latency),
                false => failures += 1,
            }
        }
        latencies.sort_unstable();
        let busy: Duration = latencies.iter().sum();
        let load = Load {
            profile,
            workload: name,
            connections: 1,
            per_second: latencies.len() as f64 / busy.as_secs_f64().max(f64::MIN_POSITIVE),
            p50_ms: crate::stats::percentile_ms(&latencies, 50.0),
            p99_ms: crate::stats::percentile_ms(&latencies, 99.0),
            requests: latencies.len() as u64 + failures,
            failures,
            caught_up_s: None,
        };
        eprintln!(
            "[hot] {profile}: {name}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {} failures",
            load.per_second, load.p50_ms, load.p99_ms, load.failures
        );
        Ok(load)
    }

    fn tokens(&self) -> Vec<String> {
        self.users.iter().map(|(_, token)| token.clone()).collect()
    }

    fn script(&self, workload: Workload) -> String {
        let ids: Vec<String> = self.users.iter().map(|(id, _)| id.clone()).collect();
        match workload {
            Workload::Noop | Workload::RecommendedCold => String::new(),
            Workload::Like => pairs_script(&self.tokens(), &self.videos, "/api/v1/videos/", "/like"),
            Workload::Favorite => pairs_script(&self.tokens(), &self.videos, "/api/v1/videos/", "/favorite"),
            Workload::Follow => follow_script(&self.tokens(), &ids),
            Workload::Comment => comment_script(&self.tokens(), &self.videos),
            Workload::Increment => INCREMENTS.to_owned(),
            Workload::View => views_script(&self.videos),
            Workload::User => rotating_graphql_script(&ids, false, "{ user(id: \\\"ID\\\") { username followersCount followingCount } }"),
            Workload::Videos => graphql_script(
                &format!(
                    "{{ videos(authorId: \"{}\", first: 10) {{ edges {{ node {{ id title likeCount viewCount author {{ username }} }} }} }} }}",
                    self.author
                ),
                None,
            ),
            Workload::Hot => graphql_script(&hot_feed_query(1), None),
            Workload::HotAliases => graphql_script(&hot_feed_query(HOT_ALIASES), None),
            Workload::Recommended => rotating_graphql_script(
                &self.tokens(),
                true,
                "{ feed(kind: RECOMMENDED, first: 10) { edges { node { id title likeCount author { username } } } } }",
            ),
            Workload::Messages => graphql_script(
                &format!(
                    "{{ messages(conversationId: \"{}\", last: 20) {{ edges {{ node {{ id seq body createdAt sender {{ username }} }} }} }} }}",
                    self.conversation
                ),
                Some(&self.users[0].1),
            ),
        }
    }
}

fn script(dir: &tempfile::TempDir, name: &str, text: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.path().join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

fn lua_strings(values: &[String]) -> String {
    values.iter().map(|v| format!("\"{v}\"")).collect::<Vec<_>>().join(",")
}

/// wrk calls `request()` once before the run to check the script, and sends nothing of
/// that call. A script whose requests must each be sent (a pair liked is later unliked)
/// answers that call with a request of no consequence.
const WRK_CHECKS_FIRST: &str = "local checked = false\n";

/// Walks the (user, thing) pairs in turn (wrk runs one thread), so no pair repeats: `POST
/// {prefix}{thing}{suffix}` as that user; once every pair was used, `DELETE` them in the
/// same order, and so on.
fn pairs_script(tokens: &[String], things: &[String], prefix: &str, suffix: &str) -> String {
    let mut lua = String::new();
    let _ = writeln!(lua, "local tokens = {{{}}}", lua_strings(tokens));
    let _ = writeln!(lua, "local things = {{{}}}", lua_strings(things));
    lua.push_str(WRK_CHECKS_FIRST);
    let _ = write!(
        lua,
        r#"local k = 0
request = function()
  if not checked then checked = true return wrk.format("GET", "/healthz") end
  -- pair k = (user k % users, thing (k // users) % things): distinct within a round
  local user = tokens[(k % #tokens) + 1]
  local thing = things[(math.floor(k / #tokens) % #things) + 1]
  local method = "POST"
  if math.floor(k / (#tokens * #things)) % 2 == 1 then method = "DELETE" end
  k = k + 1
  return wrk.format(method, "{prefix}" .. thing .. "{suffix}", {{ ["Authorization"] = "Bearer " .. user, ["Content-Type"] = "application/json" }}, "")
end
"#
    );
    lua
}

/// Each liker follows every other liker in turn (then unfollows, and so on).
fn follow_script(tokens: &[String], ids: &[String]) -> String {
    let mut lua = String::new();
    let _ = writeln!(lua, "local tokens = {{{}}}", lua_strings(tokens));
    let _ = writeln!(lua, "local ids = {{{}}}", lua_strings(ids));
    lua.push_str(WRK_CHECKS_FIRST);
    lua.push_str(
        r#"local k = 0
local n = #tokens
request = function()
  if not checked then checked = true return wrk.format("GET", "/healthz") end
  local a = k % n
  local b = (a + 1 + math.floor(k / n) % (n - 1)) % n
  local method = "POST"
  if math.floor(k / (n * (n - 1))) % 2 == 1 then method = "DELETE" end
  k = k + 1
  return wrk.format(method, "/api/v1/users/" .. ids[b + 1] .. "/follow", { ["Authorization"] = "Bearer " .. tokens[a + 1] }, "")
end
"#,
    );
    lua
}

/// Likers comment on the videos in turn (a new `comment-{id}` stream each).
fn comment_script(tokens: &[String], videos: &[String]) -> String {
    let mut lua = String::new();
    let _ = writeln!(lua, "local tokens = {{{}}}", lua_strings(tokens));
    let _ = writeln!(lua, "local videos = {{{}}}", lua_strings(videos));
    lua.push_str(
        r#"local k = 0
request = function()
  local user = tokens[(k % #tokens) + 1]
  local video = videos[(k % #videos) + 1]
  k = k + 1
  return wrk.format("POST", "/api/v1/videos/" .. video .. "/comments", { ["Authorization"] = "Bearer " .. user, ["Content-Type"] = "application/json" }, '{"body":"Nice one!"}')
end
"#,
    );
    lua
}

const INCREMENTS: &str = r#"wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  local body = '{"resource_id":"bench-' .. (n % 1000) .. '","counter_type":"clicks","delta":1}'
  return wrk.format(nil, "/api/v1/counter/increment", nil, body)
end
"#;

/// How many aliases of the HOT feed the aliased GraphQL workload asks for.
pub const HOT_ALIASES: usize = 5;

/// `{ a0: feed(kind: HOT, first: 10) { ... } a1: ... }` with `aliases` aliases.
fn hot_feed_query(aliases: usize) -> String {
    let fields: String =
        (0..aliases).map(|i| format!("a{i}: feed(kind: HOT, first: 10) {{ totalCount edges {{ node {{ id title likeCount }} }} }} ")).collect();
    format!("{{ {fields}}}")
}

/// A GraphQL request with a fixed body, anonymous or with a bearer token.
fn graphql_script(query: &str, token: Option<&str>) -> String {
    let body = json!({ "query": query }).to_string();
    let mut lua =
        format!("wrk.method = \"POST\"\nwrk.path = \"/graphql\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = [[{body}]]\n");
    if let Some(token) = token {
        let _ = writeln!(lua, "wrk.headers[\"Authorization\"] = \"Bearer {token}\"");
    }
    lua
}

/// A GraphQL request per value in turn: the query (JSON-escaped, as in a body) with `ID`
/// replaced by the value, or signed in with the value as a token when `as_token`.
fn rotating_graphql_script(values: &[String], as_token: bool, escaped_query: &str) -> String {
    format!(
        r#"local values = {{{}}}
local n = 0
request = function()
  n = n + 1
  local value = values[(n % #values) + 1]
  local headers = {{ ["Content-Type"] = "application/json" }}
  local query = [[{escaped_query}]]
  if {as_token} then headers["Authorization"] = "Bearer " .. value else query = query:gsub("ID", value) end
  return wrk.format("POST", "/graphql", headers, '{{"query":"' .. query .. '"}}')
end
"#,
        lua_strings(values)
    )
}

fn views_script(videos: &[String]) -> String {
    format!(
        "local videos = {{{}}}\nlocal n = 0\nrequest = function()\n  n = n + 1\n  return wrk.format(\"POST\", \"/api/v1/videos/\" .. videos[(n % #videos) + 1] .. \"/views\", nil, \"\")\nend\n",
        lua_strings(videos)
    )
}

/// Runs wrk (one thread, `connections` keep-alive connections) and reads its summary.
pub fn wrk(
    profile: &'static str,
    workload: &'static str,
    url: &str,
    script: Option<&Path>,
    connections: usize,
    seconds: u64,
) -> anyhow::Result<Load> {
    let mut command = Command::new("wrk");
    command.args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s"), "--latency", "--timeout", "10s"]);
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let output = command.arg(url).output().context("cannot run wrk")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&output.stderr));
    }
    parse_wrk(profile, workload, connections, &text).with_context(|| format!("cannot read wrk's summary:\n{text}"))
}

fn parse_wrk(profile: &'static str, workload: &'static str, connections: usize, text: &str) -> Option<Load> {
    let value_after = |label: &str| text.lines().find_map(|line| line.trim().strip_prefix(label)).map(str::trim);
    let latency = |percentile: &str| value_after(percentile).and_then(duration_ms);
    let per_second: f64 = value_after("Requests/sec:")?.parse().ok()?;
    let requests: u64 = text.lines().find(|l| l.contains("requests in"))?.split_whitespace().next()?.parse().ok()?;
    let non_2xx: u64 = value_after("Non-2xx or 3xx responses:").and_then(|v| v.parse().ok()).unwrap_or(0);
    let socket_errors: u64 =
        value_after("Socket errors:").map(|v| v.split(',').filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok()).sum()).unwrap_or(0);
    Some(Load {
        profile,
        workload,
        connections,
        per_second,
        p50_ms: latency("50%")?,
        p99_ms: latency("99%")?,
        requests,
        failures: non_2xx + socket_errors,
        caught_up_s: None,
    })
}

/// wrk's `1.23ms`, `456.00us`, `1.50s` in milliseconds.
fn duration_ms(text: &str) -> Option<f64> {
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    Some(number.parse::<f64>().ok()? * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_summaries_are_read() {
        let text = "Running 5s test @ http://127.0.0.1:1\n  1 threads and 64 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency     2.51ms    1.02ms  20.00ms   80.00%\n  Latency Distribution\n     50%    2.34ms\n     75%    3.00ms\n     90%    4.00ms\n     99%  806.00us\n  124527 requests in 5.00s, 20.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n  Non-2xx or 3xx responses: 5\nRequests/sec:  24905.28\nTransfer/sec:      4.00MB\n";
        let load = parse_wrk("p", "w", 64, text).unwrap();
        assert_eq!((load.requests, load.failures), (124_527, 8));
        assert!((load.per_second - 24905.28).abs() < 0.01);
        assert!((load.p50_ms - 2.34).abs() < 1e-9 && (load.p99_ms - 0.806).abs() < 1e-9);
    }
}
