use tracing_subscriber::EnvFilter;

/// Structured logs to stderr: text, or one JSON object per line with `format = "json"`
/// (`PLAZA_LOG_FORMAT=json`). `RUST_LOG` wins over the configured filter.
pub fn init(filter: &str, format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        "json" => builder.json().flatten_event(true).try_init(),
        _ => builder.try_init(),
    };
}
