//! `/metrics` on every process: Prometheus text with the request, command, append,
//! projection, relay and WebSocket metrics, by route (never by raw path).

mod common;

use std::time::{Duration, Instant};

use common::{Plaza, Profile};
use serde_json::json;

/// The text of `/metrics` on process `index`, each sample line checked for the format.
fn scrape(plaza: &Plaza, index: usize) -> String {
    let url = format!("http://127.0.0.1:{}/metrics", plaza.port(index));
    let mut response = ureq::get(&url).call().unwrap();
    assert!(response.headers().get("content-type").unwrap().to_str().unwrap().starts_with("text/plain"));
    let text = response.body_mut().read_to_string().unwrap();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line}"));
        assert!(value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value), "bad value: {line}");
        let metric = name.split('{').next().unwrap();
        assert!(metric.starts_with("plaza_") && metric.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "bad name: {line}");
    }
    text
}

/// Scrapes until every expected fragment is there (gauges are sampled every 5 s).
fn scrape_until(plaza: &Plaza, index: usize, expected: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = scrape(plaza, index);
        let missing: Vec<&&str> = expected.iter().filter(|e| !text.contains(**e)).collect();
        if missing.is_empty() {
            return text;
        }
        assert!(Instant::now() < deadline, "missing {missing:?} in:\n{text}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn every_process_serves_its_metrics() {
    let plaza = Plaza::start(Profile::Embedded);
    let (alice, token, _) = plaza.register("alice");
    let (bob, _, _) = plaza.register("bob");
    let reply = plaza.send("POST", &format!("/api/v1/users/{bob}/follow"), None, Some(&token), &[]);
    plaza.graphql("query($id: ID!) { user(id: $id) { followersCount } }", json!({ "id": bob }), None, reply.position());
    assert_eq!(plaza.send("POST", &format!("/api/v1/users/{alice}/follow"), None, Some(&token), &[]).status, 400);
    plaza.send("GET", "/no/such/thing/12345", None, None, &[]);

    let text = scrape_until(
        &plaza,
        0,
        &[
            r#"plaza_http_requests_total{method="POST",route="/api/v1/users/register",status="201"} 2"#,
            r#"plaza_http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
            r#"plaza_http_request_duration_seconds_bucket{method="POST",route="/graphql",le="+Inf"}"#,
            r#"plaza_commands_total{command="POST /api/v1/users/{id}/follow",outcome="ok"} 1"#,
            r#"plaza_commands_total{command="POST /api/v1/users/{id}/follow",outcome="rejected"} 1"#,
            "plaza_events_appended_total ",
            "plaza_append_seconds_bucket",
            "plaza_append_batch_appends_bucket",
            r#"plaza_projection_events_applied_total{projection="accounts"}"#,
            r#"plaza_projection_applied_position{projection="accounts"}"#,
            r#"plaza_projection_lag_events{projection="accounts"} 0"#,
            r#"plaza_projection_dead_letters{projection="feeds"} 0"#,
        ],
    );
    assert!(!text.contains("12345"), "raw paths never become labels");
}

#[test]
fn cluster_roles_serve_their_own_metrics() {
    let plaza = Plaza::start(Profile::Cluster);
    let (_, _, position) = plaza.register("carol");
    plaza.graphql("{ user(username: \"carol\") { id } }", json!({}), None, position);
    scrape_until(&plaza, common::RELAY, &["plaza_relay_position ", "plaza_relay_events_total "]);
    scrape_until(&plaza, common::PROJECTORS[0], &[r#"plaza_projection_kafka_lag_messages{projection="accounts",partition="0"}"#]);
    scrape_until(&plaza, common::WRITE_API, &["plaza_events_appended_total ", r#"route="/api/v1/users/register""#]);
}

/// The request id (`X-Request-Id`, or a new one) comes back on the response, is the
/// correlation id in the events' metadata, and is in the logs of the request and of the
/// projector that applies its events (JSON logs).
#[test]
fn the_request_id_follows_a_command_into_its_events_and_the_projector() {
    let plaza = Plaza::start_with(Profile::Embedded, &[("PLAZA_LOG_FORMAT", "json"), ("PLAZA_LOG", "info,plaza_projections=debug,tower_http=debug")]);
    let id = uuid::Uuid::now_v7().to_string();
    let body = json!({ "username": "traced", "email": "traced@example.com", "password": "correct horse battery" });
    let reply = plaza.send("POST", "/api/v1/users/register", Some(body), None, &[("X-Request-Id", &id)]);
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.header("x-request-id"), Some(id.as_str()));
    let fresh = plaza.send("GET", "/healthz", None, None, &[]);
    assert!(fresh.header("x-request-id").is_some_and(|h| uuid::Uuid::try_parse(h).is_ok()), "a new id when none is given");
    plaza.graphql("{ user(username: \"traced\") { id } }", json!({}), None, reply.position());

    let events = std::path::PathBuf::from(plaza.setting("PLAZA_DATA_DIR").unwrap()).join("events.db");
    let conn = rusqlite::Connection::open(events).unwrap();
    let metadata: Vec<String> = conn
        .prepare("SELECT metadata FROM events WHERE event_type = 'UserRegistered'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(metadata.iter().all(|m| m.contains(&format!("\"correlation_id\":\"{id}\""))), "{metadata:?}");

    let log = plaza.log();
    let lines: Vec<serde_json::Value> = log.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    assert!(!lines.is_empty(), "JSON logs: {log}");
    let mentions = |text: &str| lines.iter().filter(|l| l.to_string().contains(text)).count();
    assert!(lines.iter().any(|l| l["message"] == "projecting event" && l.to_string().contains(&id)), "no projector line with {id}:\n{log}");
    assert!(mentions(&format!("\"request_id\":\"{id}\"")) > 0, "no request line with {id}:\n{log}");
}

/// A request the collector received: path, content type, body.
type Post = (String, String, Vec<u8>);

/// A stand-in for an OpenTelemetry collector: accepts OTLP/HTTP posts and keeps them.
struct Collector {
    url: String,
    posts: std::sync::Arc<std::sync::Mutex<Vec<Post>>>,
}

impl Collector {
    fn start() -> Self {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let posts = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = posts.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let kept = kept.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut stream = stream;
                    // One request after another on a keep-alive connection.
                    loop {
                        let mut request_line = String::new();
                        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                            return;
                        }
                        let (mut length, mut content_type) = (0, String::new());
                        loop {
                            let mut header = String::new();
                            reader.read_line(&mut header).unwrap();
                            let header = header.trim_end();
                            if header.is_empty() {
                                break;
                            }
                            let (name, value) = header.split_once(':').unwrap();
                            match name.to_ascii_lowercase().as_str() {
                                "content-length" => length = value.trim().parse().unwrap(),
                                "content-type" => content_type = value.trim().to_owned(),
                                _ => {}
                            }
                        }
                        let mut body = vec![0; length];
                        reader.read_exact(&mut body).unwrap();
                        let path = request_line.split(' ').nth(1).unwrap_or_default().to_owned();
                        kept.lock().unwrap().push((path, content_type, body));
                        stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n").unwrap();
                    }
                });
            }
        });
        Self { url, posts }
    }
}

/// `PLAZA_OTLP_ENDPOINT`: the request's span, with its request id, reaches a collector
/// as OTLP/HTTP protobuf (checked against a stand-in: no OpenTelemetry Collector can be
/// installed here).
#[test]
fn spans_are_exported_over_otlp() {
    let collector = Collector::start();
    let plaza = Plaza::start_with(Profile::Embedded, &[("PLAZA_OTLP_ENDPOINT", &collector.url), ("OTEL_BSP_SCHEDULE_DELAY", "200")]);
    let request_id = uuid::Uuid::new_v4().to_string();
    let path = format!("/api/v1/users/{}/follow", uuid::Uuid::new_v4());
    let reply = plaza.send("POST", &path, None, None, &[("x-request-id", &request_id)]);
    assert_eq!(reply.status, 401);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let posts = collector.posts.lock().unwrap().clone();
        let found = posts.iter().find(|(_, _, body)| body.windows(request_id.len()).any(|w| w == request_id.as_bytes()));
        if let Some((posted_to, content_type, body)) = found {
            assert_eq!(posted_to, "/v1/traces");
            assert_eq!(content_type, "application/x-protobuf");
            let has = |text: &str| body.windows(text.len()).any(|w| w == text.as_bytes());
            assert!(has("plaza") && has("request") && has(&path), "service name, span name and path are in the export");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no span with request id {request_id} reached the collector: {:?}",
            posts.iter().map(|(path, _, body)| format!("{path}: {}", String::from_utf8_lossy(body))).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
