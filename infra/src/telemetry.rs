//! Logs and traces. Logs go to stderr as text, or one JSON object per line with
//! `log_format = "json"` (`PLAZA_LOG_FORMAT=json`). With `otlp_endpoint`
//! (`PLAZA_OTLP_ENDPOINT`) the spans also go to an OpenTelemetry collector over OTLP/HTTP
//! (protobuf), in batches from a thread of their own; the standard `OTEL_BSP_*`
//! variables tune the batches. `RUST_LOG` wins over the configured filter, for both.

use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::Config;

static TRACES: OnceLock<SdkTracerProvider> = OnceLock::new();

pub fn init(config: &Config) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match config.log_format.as_str() {
        "json" => logs.json().flatten_event(true).boxed(),
        _ => logs.boxed(),
    };
    let (traces, failed) = match config.otlp_endpoint.trim() {
        "" => (None, None),
        endpoint => match tracer_provider(endpoint) {
            Ok(provider) => {
                let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("plaza"));
                let _ = TRACES.set(provider);
                (Some(layer), None)
            }
            Err(error) => (None, Some(error)),
        },
    };
    let _ = tracing_subscriber::registry().with(logs).with(traces).with(filter).try_init();
    if let Some(error) = failed {
        tracing::error!(%error, endpoint = %config.otlp_endpoint, "cannot export traces over OTLP");
    }
}

fn tracer_provider(endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
    let exporter =
        opentelemetry_otlp::SpanExporter::builder().with_http().with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/'))).build()?;
    let resource = Resource::builder().with_service_name("plaza").build();
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
}

/// Sends the spans still waiting in the batch; call before the process exits.
pub fn shutdown() {
    if let Some(provider) = TRACES.get()
        && let Err(error) = provider.shutdown()
    {
        eprintln!("plaza: cannot flush the last traces: {error}");
    }
}
