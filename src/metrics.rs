//! `/metrics` on every process, in Prometheus' text format (`metrics` and
//! `metrics-exporter-prometheus`). Every crate records to the `metrics` facade; this
//! module installs the recorder, times HTTP requests, samples the projections'
//! positions and lag, and renders the text.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `plaza_http_requests_total` | counter | method, route (matched, never the raw path), status |
//! | `plaza_http_request_duration_seconds` | histogram | method, route |
//! | `plaza_commands_total` | counter | command (`POST /api/v1/...`), outcome (`ok`, `rejected`, `failed`) |
//! | `plaza_rate_limited_total` | counter | route |
//! | `plaza_append_seconds`, `plaza_append_batch_appends` | histogram | |
//! | `plaza_events_appended_total` | counter | |
//! | `plaza_projection_events_applied_total`, `_failures_total`, `_dead_letters_parked_total` | counter | projection |
//! | `plaza_projection_applied_position`, `_lag_events`, `_lag_seconds`, `_dead_letters`, `_stalled` | gauge | projection |
//! | `plaza_projection_kafka_lag_messages` | gauge | projection, partition |
//! | `plaza_relay_position` | gauge | |
//! | `plaza_relay_events_total` | counter | |
//! | `plaza_websocket_connections`, `plaza_subscriptions` | gauge | |

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use plaza_domain::EventStore;
use plaza_projections::{Projection, ReadModelDb};
use tokio::sync::watch;

/// Latency buckets (seconds) of every histogram: 0.5 ms to 10 s.
const BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Batch sizes of `plaza_append_batch_appends`.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];

/// How often queued histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the process's recorder (once) and returns what renders it.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets(BUCKETS)?
        .set_buckets_for_metric(metrics_exporter_prometheus::Matcher::Full("plaza_append_batch_appends".into()), BATCH_BUCKETS)?
        .install_recorder()?;
    // Every histogram sample waits in memory until a scrape or an upkeep drains it: a
    // server nobody scrapes grew by some 20 bytes a request. This is the upkeep that the
    // exporter's own `install` would run.
    let upkeep = handle.clone();
    std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
        loop {
            std::thread::sleep(UPKEEP_EVERY);
            upkeep.run_upkeep();
        }
    })?;
    Ok(HANDLE.get_or_init(|| handle).clone())
}

pub fn routes(handle: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render()).into_response() }
        }),
    )
}

/// Middleware: counts and times every request by its matched route.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    metrics::histogram!("plaza_http_request_duration_seconds", "method" => method.clone(), "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("plaza_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status.as_str().to_owned())
        .increment(1);
    if route.starts_with("/api/v1/") && method != "GET" {
        let outcome = match status.as_u16() {
            200..=399 => "ok",
            400..=499 => "rejected",
            _ => "failed",
        };
        metrics::counter!("plaza_commands_total", "command" => format!("{method} {route}"), "outcome" => outcome).increment(1);
    }
    if status.as_u16() == 429 {
        metrics::counter!("plaza_rate_limited_total", "route" => route).increment(1);
    }
    response
}

/// Samples the status of the projections run here into gauges, every 5 s until shutdown
/// (with Kafka's partition ends when Kafka feeds them).
pub async fn sample_projections(
    projections: Vec<Arc<dyn Projection>>,
    db: Arc<dyn ReadModelDb>,
    store: Arc<dyn EventStore>,
    config: Arc<plaza_infra::Config>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    while !*shutdown.borrow() {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.changed() => break,
        }
        let statuses = match crate::ops::statuses_of(&config, &projections, db.as_ref(), store.as_ref()).await {
            Ok(statuses) => statuses,
            Err(error) => {
                tracing::debug!(%error, "cannot sample the projections for metrics");
                continue;
            }
        };
        for s in statuses {
            let name = s.name.clone();
            metrics::gauge!("plaza_projection_applied_position", "projection" => name.clone()).set(s.applied_position as f64);
            metrics::gauge!("plaza_projection_lag_events", "projection" => name.clone()).set(s.lag_events as f64);
            metrics::gauge!("plaza_projection_lag_seconds", "projection" => name.clone()).set(s.lag_seconds);
            metrics::gauge!("plaza_projection_dead_letters", "projection" => name.clone()).set(s.dead_letters as f64);
            metrics::gauge!("plaza_projection_stalled", "projection" => name.clone()).set(if s.stalled { 1.0 } else { 0.0 });
            for p in &s.partitions {
                if let Some(lag) = p.lag_messages {
                    metrics::gauge!("plaza_projection_kafka_lag_messages", "projection" => name.clone(), "partition" => p.partition.to_string())
                        .set(lag as f64);
                }
            }
        }
    }
}
