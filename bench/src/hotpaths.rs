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

/// Users that like, and videos they like: every (user, video) pair is liked at most
/// once, so every like is a new, successful command.
pub const LIKERS: usize = 200;
pub const VIDEOS: usize = 300;

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
}

pub struct HotPaths {
    pub loads: Vec<Load>,
}

pub fn run_all(runtime: &Runtime, plaza: &Path, settings: &Settings, admin: &str) -> anyhow::Result<HotPaths> {
    if Command::new("wrk").arg("--version").output().is_err() {
        bail!("wrk is not installed; `make bench` installs it (apt-get install wrk)");
    }
    let mut loads = Vec::new();
    {
        eprintln!("[hot] embedded: starting plaza serve");
        let mut server = Server::start_role(plaza, "serve", &[])?;
        let base = server.base.clone();
        loads.extend(run_profile("embedded (SQLite)", &base, &base, settings)?);
        server.check_alive()?;
    }
    let database = runtime.block_on(FreshDatabase::create(admin))?;
    let cluster = (|| {
        eprintln!("[hot] cluster: starting write-api, read-api, relay and two projectors");
        let mut processes = crate::cluster::start(plaza, &database.url)?;
        let (write, read) = (processes[0].base.clone(), processes[1].base.clone());
        let measured = run_profile("cluster (PostgreSQL, Kafka, Redis)", &write, &read, settings)?;
        for process in &mut processes {
            process.check_alive()?;
        }
        Ok::<_, anyhow::Error>(measured)
    })();
    runtime.block_on(database.drop_now())?;
    loads.extend(cluster?);
    Ok(HotPaths { loads })
}

fn run_profile(profile: &'static str, write: &str, read: &str, settings: &Settings) -> anyhow::Result<Vec<Load>> {
    let (tokens, videos) = prepare(write)?;
    let dir = tempfile::tempdir()?;
    let likes = script(&dir, "likes.lua", &likes_script(&tokens, &videos))?;
    let increments = script(&dir, "increments.lua", INCREMENTS)?;
    let views = script(&dir, "views.lua", &views_script(&videos))?;
    let hot_feed = script(&dir, "hot.lua", &graphql_script(&hot_feed_query(1)))?;
    let hot_aliases = script(&dir, "hot-aliases.lua", &graphql_script(&hot_feed_query(HOT_ALIASES)))?;
    let seconds = settings.http_case.as_secs().max(1);
    let mut loads = Vec::new();
    for (workload, base, script, connections) in [
        ("GET /healthz (no-op baseline)", write, None, 64),
        ("like a video", write, Some(&likes), 64),
        ("counter increment", write, Some(&increments), 64),
        ("counter increment", write, Some(&increments), 256),
        ("view a video", write, Some(&views), 64),
        ("GraphQL: HOT feed, 10 videos", read, Some(&hot_feed), 64),
        ("GraphQL: HOT feed under 5 aliases", read, Some(&hot_aliases), 64),
    ] {
        let url = if script.is_none() { format!("{base}/healthz") } else { base.to_owned() };
        eprintln!("[hot] {profile}: {workload}, {connections} connections, {seconds} s...");
        let load = wrk(profile, workload, &url, script.map(|p| p.as_path()), connections, seconds)?;
        eprintln!(
            "[hot] {profile}: {workload}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {} failures",
            load.per_second, load.p50_ms, load.p99_ms, load.failures
        );
        loads.push(load);
    }
    // The read side is not part of these workloads; touch it so a dead read API shows.
    let answer = agent(Duration::from_secs(10)).get(format!("{read}/healthz")).call().context("the read API does not answer")?;
    if answer.status() != 200 {
        bail!("the read API answered {}", answer.status());
    }
    Ok(loads)
}

/// Registers the likers and one author with `VIDEOS` videos; returns the likers' tokens
/// and the video ids.
fn prepare(base: &str) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    eprintln!("[hot] registering {LIKERS} users and publishing {VIDEOS} videos (not measured)");
    let run = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let tokens = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..LIKERS)
            .map(|i| scope.spawn(move || register(&agent(Duration::from_secs(60)), base, &format!("liker_{run}_{i}")).map(|(_, token)| token)))
            .collect();
        handles.into_iter().map(|h| h.join().map_err(|_| anyhow::anyhow!("a registration thread panicked"))?).collect::<anyhow::Result<Vec<_>>>()
    })?;
    let (_, author) = register(&agent(Duration::from_secs(60)), base, &format!("author_{run}"))?;
    let agent = agent(Duration::from_secs(30));
    let mut videos = Vec::with_capacity(VIDEOS);
    for i in 0..VIDEOS {
        let body = json!({ "title": format!("Video {i}"), "description": "#bench", "media_url": "https://cdn.example.com/v.mp4" });
        let mut answer = agent
            .post(format!("{base}/api/v1/videos"))
            .header("authorization", &format!("Bearer {author}"))
            .send_json(&body)
            .context("cannot publish a video")?;
        let text = answer.body_mut().read_to_string()?;
        let value: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("publishing answered {text}"))?;
        videos.push(value["video_id"].as_str().with_context(|| format!("publishing answered {text}"))?.to_owned());
    }
    Ok((tokens, videos))
}

fn script(dir: &tempfile::TempDir, name: &str, text: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.path().join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

fn lua_strings(values: &[String]) -> String {
    values.iter().map(|v| format!("\"{v}\"")).collect::<Vec<_>>().join(",")
}

/// Walks the (user, video) pairs in turn (wrk runs one thread), so no pair repeats.
fn likes_script(tokens: &[String], videos: &[String]) -> String {
    let mut lua = String::new();
    let _ = writeln!(lua, "local tokens = {{{}}}", lua_strings(tokens));
    let _ = writeln!(lua, "local videos = {{{}}}", lua_strings(videos));
    lua.push_str(
        r#"local k = 0
request = function()
  -- pair k = (user k % users, video k // users): distinct for every k below users * videos
  local user = tokens[(k % #tokens) + 1]
  local video = videos[(math.floor(k / #tokens) % #videos) + 1]
  k = k + 1
  return wrk.format("POST", "/api/v1/videos/" .. video .. "/like", { ["Authorization"] = "Bearer " .. user }, "")
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

/// An anonymous GraphQL request with a fixed body.
fn graphql_script(query: &str) -> String {
    let body = json!({ "query": query }).to_string();
    format!("wrk.method = \"POST\"\nwrk.path = \"/graphql\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = [[{body}]]\n")
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
