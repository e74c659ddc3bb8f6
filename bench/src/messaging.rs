//! Section 6: messaging. Message throughput over HTTP with `wrk` (across 1,000 direct
//! conversations, and into one group), beside `GET /healthz` on the same server; then
//! delivery latency to 1,000 and 10,000 WebSocket subscribers of one group (from the
//! `POST` of a message to its arrival at each subscriber), and the server's memory per
//! idle subscriber connection. Embedded profile and cluster profile.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::Settings;
use crate::hotpaths::{Load, wrk};
use crate::http::{Server, agent, register};
use crate::pg::FreshDatabase;

/// Users who talk: every pair of them may have a direct conversation.
const USERS: usize = 50;
/// Direct conversations the direct-message workload spreads over.
pub const DIRECT: usize = 1000;
/// The number of the probe message that tells every subscription listens.
const PROBE: usize = 999_999_999;

pub struct Delivery {
    pub profile: &'static str,
    pub subscribers: usize,
    pub messages: usize,
    /// Messages sent per second while measuring.
    pub rate: f64,
    /// Deliveries seen, and expected (subscribers x messages).
    pub delivered: usize,
    pub expected: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Growth of the read API's resident memory per open, subscribed, idle connection.
    pub kib_per_connection: Option<f64>,
    /// How long opening and subscribing every connection took.
    pub setup: Duration,
    /// CPU time the read API spent per delivery while the messages went out.
    pub cpu_us_per_delivery: Option<f64>,
}

pub struct Messaging {
    pub loads: Vec<Load>,
    pub deliveries: Vec<Delivery>,
}

pub fn run_all(runtime: &Runtime, plaza: &Path, settings: &Settings, admin: &str) -> anyhow::Result<Messaging> {
    let mut messaging = Messaging { loads: Vec::new(), deliveries: Vec::new() };
    {
        eprintln!("[messaging] embedded: starting plaza serve");
        let mut server = Server::start_role(plaza, "serve", &[])?;
        let base = server.base.clone();
        run_profile(runtime, "embedded (SQLite)", &base, &base, server.pid(), settings, &mut messaging)?;
        server.check_alive()?;
    }
    let database = runtime.block_on(FreshDatabase::create(admin))?;
    let cluster = (|| {
        eprintln!("[messaging] cluster: starting write-api, read-api, relay and two projectors");
        let mut processes = crate::cluster::start(plaza, &database.url)?;
        let (write, read) = (processes[0].base.clone(), processes[1].base.clone());
        run_profile(runtime, "cluster (PostgreSQL, Kafka, Redis)", &write, &read, processes[1].pid(), settings, &mut messaging)?;
        for process in &mut processes {
            process.check_alive()?;
        }
        Ok::<_, anyhow::Error>(())
    })();
    runtime.block_on(database.drop_now())?;
    cluster?;
    Ok(messaging)
}

fn run_profile(
    runtime: &Runtime,
    profile: &'static str,
    write: &str,
    read: &str,
    read_pid: u32,
    settings: &Settings,
    messaging: &mut Messaging,
) -> anyhow::Result<()> {
    let people = prepare(write)?;
    let dir = tempfile::tempdir()?;
    let direct = script(&dir, "direct.lua", &direct_script(&people))?;
    let group = script(&dir, "group.lua", &group_script(&people))?;
    let seconds = settings.http_case.as_secs().max(1);
    for (workload, script, connections) in [
        ("GET /healthz (no-op baseline)", None, 64),
        ("message, 1,000 direct conversations", Some(&direct), 64),
        ("message, 1,000 direct conversations", Some(&direct), 256),
        ("message into one group", Some(&group), 64),
        ("message into one group", Some(&group), 256),
    ] {
        let url = if script.is_none() { format!("{write}/healthz") } else { write.to_owned() };
        eprintln!("[messaging] {profile}: {workload}, {connections} connections, {seconds} s...");
        let load = wrk(profile, workload, &url, script.map(|p| p.as_path()), connections, seconds)?;
        eprintln!(
            "[messaging] {profile}: {workload}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {} failures",
            load.per_second, load.p50_ms, load.p99_ms, load.failures
        );
        messaging.loads.push(load);
    }
    // Deliveries go to a group of their own, quiet but for the measured messages.
    let ids: Vec<&str> = people.users[1..].iter().map(|(id, _)| id.as_str()).collect();
    let (live_group, position) = start_group(write, &people.users[0].1, &ids)?;
    // The throughput runs leave the projections behind (through Kafka, by many
    // seconds): deliveries are measured once they caught up.
    caught_up(read, position)?;
    let tokens: Vec<String> = people.users.iter().map(|(_, token)| token.clone()).collect();
    for (subscribers, rate) in [(1000, 20.0), (10_000, 2.0)] {
        let messages = if settings.quick { 5 } else { (rate * settings.http_case.as_secs_f64() * 2.0) as usize };
        let target = Target { write, read, group: &live_group, position, sender: &tokens[0] };
        let delivery = runtime.block_on(deliver(profile, &target, &tokens, subscribers, messages, rate, read_pid))?;
        eprintln!(
            "[messaging] {profile}: {subscribers} subscribers: {}/{} delivered, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {:?} KiB per connection, {:?} µs CPU per delivery",
            delivery.delivered,
            delivery.expected,
            delivery.p50_ms,
            delivery.p99_ms,
            delivery.max_ms,
            delivery.kib_per_connection,
            delivery.cpu_us_per_delivery
        );
        messaging.deliveries.push(delivery);
    }
    Ok(())
}

struct People {
    /// (user id, token)
    users: Vec<(String, String)>,
    /// Direct conversations: (conversation id, a member's token).
    direct: Vec<(String, String)>,
    /// A group of everyone.
    group: String,
}

fn prepare(base: &str) -> anyhow::Result<People> {
    eprintln!("[messaging] registering {USERS} users, starting {DIRECT} direct conversations and a group (not measured)");
    let run = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let users = std::thread::scope(|scope| {
        let handles: Vec<_> =
            (0..USERS).map(|i| scope.spawn(move || register(&agent(Duration::from_secs(60)), base, &format!("talker_{run}_{i}")))).collect();
        handles.into_iter().map(|h| h.join().map_err(|_| anyhow::anyhow!("a registration thread panicked"))?).collect::<anyhow::Result<Vec<_>>>()
    })?;
    let pairs: Vec<(usize, usize)> = (0..USERS).flat_map(|a| (a + 1..USERS).map(move |b| (a, b))).take(DIRECT).collect();
    if pairs.len() < DIRECT {
        bail!("{USERS} users make fewer than {DIRECT} pairs");
    }
    let agent = agent(Duration::from_secs(30));
    let mut direct = Vec::with_capacity(DIRECT);
    for (a, b) in pairs {
        let answer = post(&agent, &format!("{base}/api/v1/conversations"), &users[a].1, &json!({ "kind": "direct", "member_id": users[b].0 }))?;
        direct.push((answer["conversation_id"].as_str().context("no conversation id")?.to_owned(), users[a].1.clone()));
    }
    let ids: Vec<&str> = users[1..].iter().map(|(id, _)| id.as_str()).collect();
    let (group, _) = start_group(base, &users[0].1, &ids)?;
    Ok(People { users, direct, group })
}

fn start_group(base: &str, owner: &str, members: &[&str]) -> anyhow::Result<(String, u64)> {
    let answer = post(
        &agent(Duration::from_secs(30)),
        &format!("{base}/api/v1/conversations"),
        owner,
        &json!({ "kind": "group", "title": "Bench", "member_ids": members }),
    )?;
    Ok((answer["conversation_id"].as_str().context("no conversation id")?.to_owned(), answer["position"].as_u64().unwrap_or(0)))
}

/// Waits until the read API's read models include `position`.
pub fn caught_up(read: &str, position: u64) -> anyhow::Result<Duration> {
    let agent = agent(Duration::from_secs(60));
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(600) {
        let answer =
            agent.post(format!("{read}/graphql")).header("plaza-min-position", &position.to_string()).send_json(json!({ "query": "{ __typename }" }));
        if answer.is_ok_and(|a| a.status() == 200) {
            eprintln!("[caught up] the read models reached position {position} in {:.1} s", started.elapsed().as_secs_f64());
            return Ok(started.elapsed());
        }
    }
    bail!("the read models did not reach position {position} within 10 minutes")
}

fn post(agent: &ureq::Agent, url: &str, token: &str, body: &Value) -> anyhow::Result<Value> {
    let mut answer = agent.post(url).header("authorization", &format!("Bearer {token}")).send_json(body).with_context(|| format!("POST {url}"))?;
    let text = answer.body_mut().read_to_string()?;
    if !answer.status().is_success() {
        bail!("POST {url} answered {}: {text}", answer.status());
    }
    serde_json::from_str(&text).with_context(|| format!("POST {url} answered {text}"))
}

fn script(dir: &tempfile::TempDir, name: &str, text: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.path().join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

fn lua_strings<'a>(values: impl Iterator<Item = &'a str>) -> String {
    values.map(|v| format!("\"{v}\"")).collect::<Vec<_>>().join(",")
}

/// Each request sends to the next direct conversation, as one of its members.
fn direct_script(people: &People) -> String {
    let mut lua = String::new();
    let _ = writeln!(lua, "local conversations = {{{}}}", lua_strings(people.direct.iter().map(|(id, _)| id.as_str())));
    let _ = writeln!(lua, "local tokens = {{{}}}", lua_strings(people.direct.iter().map(|(_, token)| token.as_str())));
    lua.push_str(
        r#"local k = 0
request = function()
  local i = (k % #conversations) + 1
  k = k + 1
  return wrk.format("POST", "/api/v1/conversations/" .. conversations[i] .. "/messages",
    { ["Authorization"] = "Bearer " .. tokens[i], ["Content-Type"] = "application/json" }, '{"body":"hello there"}')
end
"#,
    );
    lua
}

/// Each request sends into the one group, from its members in turn.
fn group_script(people: &People) -> String {
    let mut lua = String::new();
    let _ = writeln!(lua, "local tokens = {{{}}}", lua_strings(people.users.iter().map(|(_, token)| token.as_str())));
    let _ = writeln!(lua, "local path = \"/api/v1/conversations/{}/messages\"", people.group);
    lua.push_str(
        r#"local k = 0
request = function()
  k = k + 1
  return wrk.format("POST", path, { ["Authorization"] = "Bearer " .. tokens[(k % #tokens) + 1], ["Content-Type"] = "application/json" }, '{"body":"hello all"}')
end
"#,
    );
    lua
}

struct Target<'a> {
    write: &'a str,
    read: &'a str,
    group: &'a str,
    position: u64,
    sender: &'a str,
}

fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// Opens `subscribers` connections to the read API (tokens in turn), subscribes each to
/// the group, sends `messages` messages at `rate` a second that carry their send time,
/// and measures when each subscriber hears of each.
async fn deliver(
    profile: &'static str,
    target: &Target<'_>,
    tokens: &[String],
    subscribers: usize,
    messages: usize,
    rate: f64,
    read_pid: u32,
) -> anyhow::Result<Delivery> {
    eprintln!("[messaging] {profile}: opening {subscribers} subscriber connections...");
    let before = resident_kib(read_pid);
    let started = Instant::now();
    let ws = format!("{}/graphql/ws", target.read.replacen("http", "ws", 1));
    let subscribe = json!({ "id": "1", "type": "subscribe", "payload": {
        "query": "subscription($id: ID!) { conversationEvents(conversationId: $id) { kind message { seq body sender { username } } } }",
        "variables": { "id": target.group }, "extensions": { "minPosition": target.position } } })
    .to_string();
    // Subscribers report (subscriber, message number, latency in µs) for each message
    // they hear.
    let (heard, mut hearing) = tokio::sync::mpsc::unbounded_channel::<(usize, usize, i64)>();
    let ready = Arc::new(AtomicUsize::new(0));
    let opening = Arc::new(tokio::sync::Semaphore::new(200));
    let mut tasks = Vec::with_capacity(subscribers);
    for i in 0..subscribers {
        let (ws, token, subscribe, heard, ready, opening) =
            (ws.clone(), tokens[i % tokens.len()].clone(), subscribe.clone(), heard.clone(), ready.clone(), opening.clone());
        tasks.push(tokio::spawn(async move {
            let permit = opening.acquire_owned().await.ok()?;
            let mut request = ws.into_client_request().ok()?;
            request.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse().ok()?);
            let (mut socket, _) = tokio_tungstenite::connect_async(request).await.ok()?;
            socket.send(Message::Text(json!({ "type": "connection_init", "payload": { "token": token } }).to_string().into())).await.ok()?;
            socket.next().await?.ok()?;
            socket.send(Message::Text(subscribe.into())).await.ok()?;
            drop(permit);
            ready.fetch_add(1, Ordering::Relaxed);
            while let Some(Ok(message)) = socket.next().await {
                if let Message::Text(text) = message
                    && let Some((number, sent)) = stamp(&text)
                {
                    let _ = heard.send((i, number, now_micros() - sent));
                }
            }
            Some(())
        }));
    }
    drop(heard);
    let deadline = Instant::now() + Duration::from_secs(120);
    while ready.load(Ordering::Relaxed) < subscribers && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let setup = started.elapsed();
    let opened = ready.load(Ordering::Relaxed);
    if opened < subscribers {
        bail!("only {opened} of {subscribers} subscribers connected within 120 s");
    }
    // Probe messages, one a second, until every subscriber heard one: then every
    // subscription listens (a subscribe the server handles after a probe misses it).
    let mut probed = vec![false; subscribers];
    let mut hearers = 0;
    let probe_deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut next_probe = tokio::time::Instant::now();
    while hearers < subscribers {
        if tokio::time::Instant::now() >= probe_deadline {
            bail!("only {hearers} of {subscribers} subscribers heard a probe message within 60 s");
        }
        if tokio::time::Instant::now() >= next_probe {
            send_message(target, PROBE, 0).await?;
            next_probe += Duration::from_secs(1);
        }
        match tokio::time::timeout_at(next_probe.min(probe_deadline), hearing.recv()).await {
            Ok(Some((subscriber, number, _))) if number == PROBE && !probed[subscriber] => {
                probed[subscriber] = true;
                hearers += 1;
            }
            Ok(Some(_)) => {}
            Ok(None) => bail!("every subscriber connection closed"),
            Err(_) => {}
        }
    }
    let after = resident_kib(read_pid);
    let kib_per_connection = before.zip(after).map(|(before, after)| (after as f64 - before as f64) / subscribers as f64);

    eprintln!("[messaging] {profile}: {messages} messages at {rate}/s to {subscribers} subscribers...");
    let cpu_before = cpu_ticks(read_pid);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let sender = {
        let (write, group, sender) = (target.write.to_owned(), target.group.to_owned(), target.sender.to_owned());
        tokio::spawn(async move {
            let target = Target { write: &write, read: "", group: &group, position: 0, sender: &sender };
            let mut tick = tokio::time::interval(interval);
            for number in 0..messages {
                tick.tick().await;
                send_message(&target, number, now_micros()).await?;
            }
            Ok::<_, anyhow::Error>(())
        })
    };
    let expected = subscribers * messages;
    let mut latencies: Vec<i64> = Vec::with_capacity(expected);
    let last = tokio::time::Instant::now() + interval * messages as u32 + Duration::from_secs(15);
    while latencies.len() < expected {
        match tokio::time::timeout_at(last, hearing.recv()).await {
            Ok(Some((_, number, latency))) if number < messages => latencies.push(latency),
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    sender.await.context("the sender task failed")??;
    let cpu_us_per_delivery = cpu_before.zip(cpu_ticks(read_pid)).map(|(before, after)| {
        // Ticks are 1/100 s on Linux.
        (after - before) as f64 * 10_000.0 / latencies.len().max(1) as f64
    });
    for task in tasks {
        task.abort();
    }
    latencies.sort_unstable();
    let at =
        |q: f64| latencies.get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1))).map_or(0.0, |us| *us as f64 / 1000.0);
    Ok(Delivery {
        profile,
        subscribers,
        messages,
        rate,
        delivered: latencies.len(),
        expected,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        max_ms: latencies.last().map_or(0.0, |us| *us as f64 / 1000.0),
        kib_per_connection,
        setup,
        cpu_us_per_delivery,
    })
}

/// Sends message `number` with its send time in the body: `m:<number> t:<micros>`.
async fn send_message(target: &Target<'_>, number: usize, sent: i64) -> anyhow::Result<()> {
    let url = format!("{}/api/v1/conversations/{}/messages", target.write, target.group);
    let (token, body) = (target.sender.to_owned(), json!({ "body": format!("m:{number} t:{sent}") }));
    tokio::task::spawn_blocking(move || post(&agent(Duration::from_secs(30)), &url, &token, &body).map(drop)).await?
}

/// The number and send time a message's body carries (`"body":"m:<n> t:<micros>"`),
/// read without parsing the JSON around it.
fn stamp(text: &str) -> Option<(usize, i64)> {
    let rest = &text[text.find(r#""body":"m:"#)? + 10..];
    let (number, rest) = rest.split_once(" t:")?;
    let sent: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((number.parse().ok()?, sent.parse().ok()?))
}

/// A process's user and system CPU time, in clock ticks (Linux).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after its `)`.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// A process's resident memory in KiB (Linux).
fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| line.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_their_number_and_time() {
        let text = r#"{"id":"1","type":"next","payload":{"data":{"conversationEvents":{"message":{"body":"m:7 t:1764500000123456"}}}}}"#;
        assert_eq!(stamp(text), Some((7, 1_764_500_000_123_456)));
        assert_eq!(stamp(r#"{"body":"hello"}"#), None);
    }
}
