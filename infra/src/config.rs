//! Configuration in layers: built-in defaults, then an optional TOML file, then
//! `PLAZA_*` environment variables (`PLAZA_LISTEN`, `PLAZA_STORE_URL`, ...).

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address both APIs listen on.
    pub listen: String,
    /// Where the embedded profile keeps its files.
    pub data_dir: PathBuf,
    /// Event store: `sqlite` (a file in `data_dir`), `sqlite:///path/file.db`, or
    /// `postgres://user@host:port/db`.
    pub store_url: String,
    /// EventStoreDB only: a prefix for every stream name, so several deployments (or
    /// test runs) can share one server. Empty by default.
    pub store_namespace: String,
    /// Read models: same forms as `store_url`.
    pub read_models_url: String,
    /// HS256 secret for access tokens. When unset, a random secret is created once
    /// in `data_dir/jwt-secret` (fine for one machine; set it for several).
    pub jwt_secret: Option<Secret>,
    /// Access-token lifetime in seconds.
    pub token_ttl_secs: u64,
    /// How long a read carrying `Plaza-Min-Position` may wait for the read models.
    pub consistency_timeout_ms: u64,
    /// Log filter, in `RUST_LOG` syntax.
    pub log: String,
    /// How events reach the projectors: `direct` (each projector tails the event store)
    /// or `kafka` (the relay produces them to Kafka; projectors consume in groups).
    pub distribution: Distribution,
    /// Kafka bootstrap servers (cluster profile).
    pub kafka_brokers: String,
    /// The topic the relay produces every event to.
    pub kafka_topic: String,
    /// Partitions of that topic when Plaza creates it.
    pub kafka_partitions: i32,
    /// Redis for what several processes share (change notices, rate limits), e.g.
    /// `redis://127.0.0.1:6379`. Empty: kept in each process.
    pub redis_url: String,
    /// Prefix of every Redis key and channel Plaza uses.
    pub redis_prefix: String,
    /// A search engine every process shares (Elasticsearch, `http://host:9200`), instead
    /// of a tantivy index in each read API's data dir. Needs the `elasticsearch` feature.
    pub search_url: String,
    /// Prefix of the shared search engine's index names.
    pub search_prefix: String,
    /// Commands per second a signed-in user may send (0: unlimited), and the burst.
    pub rate_limit_user_per_sec: u32,
    pub rate_limit_user_burst: u32,
    /// Commands per second one client IP may send (0: unlimited), and the burst.
    pub rate_limit_ip_per_sec: u32,
    pub rate_limit_ip_burst: u32,
    /// Proxies in front of the write API whose `X-Forwarded-For` names the client IP.
    pub trusted_proxy_hops: usize,
    /// Authors with this many followers or more are not fanned out to their followers'
    /// timelines on write; their videos are pulled when a follower reads the feed.
    pub feed_fanout_limit: i64,
    /// Members a group may have.
    pub group_max_members: usize,
    /// How long after sending a message its sender may edit it.
    pub message_edit_window_secs: u64,
    /// How long a user counts as online after their last heartbeat.
    pub presence_ttl_secs: u64,
    /// Log lines as `text` or `json` (one object per line).
    pub log_format: String,
    /// Where to send traces (OTLP over HTTP, protobuf), e.g. `http://127.0.0.1:4318`
    /// for a local OpenTelemetry Collector; `/v1/traces` is added. Empty: none.
    pub otlp_endpoint: String,
    /// Events a rebuild reads and applies at a time.
    pub rebuild_batch_size: usize,
    /// How long a rebuild into SQLite may hold applied batches before it commits them
    /// (0: every batch). Another process writing the same read models waits that long.
    pub rebuild_commit_ms: u64,
    /// Attempts at an event a projection fails on before it counts as failing.
    pub projection_max_attempts: u32,
    /// Then: `park` it as a dead letter and go on, or `stop` and keep retrying.
    pub projection_on_failure: OnFailure,
    /// A projection with events waiting that applied nothing for this long is stalled.
    pub projection_stall_secs: u64,
    /// Test only: adds the `poison_test` projection, which fails on profile updates whose
    /// bio is "poison" until a row is in its `poison_fixes` table.
    pub test_poison_projection: bool,
    /// Notifications of one kind about one thing (likes of a video, follows of a user)
    /// join the previous one while it is unread and was updated this recently.
    pub notification_group_window_secs: u64,
    /// The `system` notification every new user gets (the welcome flow).
    pub welcome_text: String,
    /// Usernames every new user follows on registering (the welcome flow), as a list or
    /// one comma-separated string (`PLAZA_WELCOME_FOLLOW=plaza,news`).
    #[serde(deserialize_with = "list_or_commas")]
    pub welcome_follow: Vec<String>,
    /// Test only: the welcome flow stops for good after its notice to this username,
    /// before its follows, so a test can kill the process there (empty: never).
    pub test_pause_welcome_after_notice: String,
    /// GraphQL requests per second a signed-in user may send (0: unlimited), and the
    /// burst; buckets apart from the commands'.
    pub graphql_rate_limit_user_per_sec: u32,
    pub graphql_rate_limit_user_burst: u32,
    /// GraphQL requests per second one client IP may send (0: unlimited), and the burst.
    pub graphql_rate_limit_ip_per_sec: u32,
    pub graphql_rate_limit_ip_burst: u32,
    /// Whether GraphQL answers introspection (`__schema`, `__type`) and suggests field
    /// names in errors.
    pub graphql_introspection: bool,
    /// Wrong passwords an account may get before each further login attempt waits
    /// (0: never waits).
    pub login_free_failures: u32,
    /// Wrong passwords one client IP may send, over all accounts, before it waits.
    pub login_ip_free_failures: u32,
    /// The first wait, in milliseconds; each further failure doubles it.
    pub login_backoff_ms: u64,
    /// The longest wait, in seconds; failures are forgotten this long after the last.
    pub login_backoff_max_secs: u64,
    /// Time a client has to send a request's head (also ends idle keep-alive
    /// connections), in milliseconds.
    pub http_header_timeout_ms: u64,
    /// Time a client has to send a request's body, in milliseconds.
    pub http_body_timeout_ms: u64,
    /// Open connections one client address may hold (0: unlimited).
    pub http_max_connections_per_ip: usize,
}

/// The shortest token secret Plaza accepts: HS256 needs 256 bits of key.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    Direct,
    Kafka,
}

/// What a projection does with an event it keeps failing on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    Park,
    Stop,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            data_dir: "./data".into(),
            store_url: "sqlite".into(),
            store_namespace: String::new(),
            read_models_url: "sqlite".into(),
            jwt_secret: None,
            token_ttl_secs: 24 * 3600,
            consistency_timeout_ms: 5000,
            log: "info".into(),
            distribution: Distribution::Direct,
            kafka_brokers: "127.0.0.1:9092".into(),
            kafka_topic: "plaza.events".into(),
            kafka_partitions: 6,
            redis_url: String::new(),
            redis_prefix: "plaza:".into(),
            search_url: String::new(),
            search_prefix: "plaza".into(),
            rate_limit_user_per_sec: 20,
            rate_limit_user_burst: 60,
            rate_limit_ip_per_sec: 200,
            rate_limit_ip_burst: 400,
            trusted_proxy_hops: 0,
            feed_fanout_limit: 1000,
            group_max_members: 10_000,
            message_edit_window_secs: 900,
            presence_ttl_secs: 300,
            log_format: "text".into(),
            otlp_endpoint: String::new(),
            rebuild_batch_size: 50_000,
            rebuild_commit_ms: 1_000,
            projection_max_attempts: 5,
            projection_on_failure: OnFailure::Park,
            projection_stall_secs: 60,
            test_poison_projection: false,
            notification_group_window_secs: 3600,
            welcome_text: "Welcome to Plaza! Follow people you like, and their videos will show up in your feed.".into(),
            welcome_follow: Vec::new(),
            test_pause_welcome_after_notice: String::new(),
            graphql_rate_limit_user_per_sec: 50,
            graphql_rate_limit_user_burst: 100,
            graphql_rate_limit_ip_per_sec: 200,
            graphql_rate_limit_ip_burst: 400,
            graphql_introspection: true,
            login_free_failures: 5,
            login_ip_free_failures: 20,
            login_backoff_ms: 1000,
            login_backoff_max_secs: 900,
            http_header_timeout_ms: 10_000,
            http_body_timeout_ms: 30_000,
            http_max_connections_per_ip: 256,
        }
    }
}

impl Config {
    pub fn load(file: Option<&Path>) -> Result<Self, Box<figment::Error>> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(Box::new(figment::Error::from(format!("configuration file {} does not exist", file.display()))));
            }
            figment = figment.merge(Toml::file(file));
        }
        let config: Self = figment.merge(Env::prefixed("PLAZA_")).extract().map_err(Box::new)?;
        if config.jwt_secret.as_ref().is_some_and(|s| s.0.len() < MIN_JWT_SECRET_BYTES) {
            return Err(Box::new(figment::Error::from(format!("jwt_secret (PLAZA_JWT_SECRET) must be at least {MIN_JWT_SECRET_BYTES} bytes"))));
        }
        Ok(config)
    }

    /// The token secret: configured, or created once in the data directory.
    pub fn jwt_secret(&self) -> std::io::Result<Secret> {
        if let Some(secret) = &self.jwt_secret {
            return Ok(secret.clone());
        }
        crate::files::private_dir(&self.data_dir)?;
        let path = self.data_dir.join("jwt-secret");
        if let Ok(existing) = std::fs::read_to_string(&path)
            && existing.trim().len() >= MIN_JWT_SECRET_BYTES
        {
            return Ok(Secret(existing.trim().to_owned()));
        }
        // 64 hex digits from two random UUIDs: 244 random bits.
        let secret = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        crate::files::write_private(&path, &secret)?;
        Ok(Secret(secret))
    }
}

impl Config {
    /// The configuration as TOML, with the token secret and database passwords hidden.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.store_url = redact_url(&self.store_url);
        shown.read_models_url = redact_url(&self.read_models_url);
        shown.redis_url = redact_url(&self.redis_url);
        shown.search_url = redact_url(&self.search_url);
        shown.jwt_secret = self.jwt_secret.as_ref().map(|_| Secret("***".into()));
        toml::to_string_pretty(&shown).expect("configuration serializes")
    }
}

/// A list of names given as a list, or as one string of names separated by commas.
fn list_or_commas<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Names {
        List(Vec<String>),
        Commas(String),
    }
    let names = match Names::deserialize(deserializer)? {
        Names::List(names) => names,
        Names::Commas(text) => text.split(',').map(str::to_owned).collect(),
    };
    Ok(names.into_iter().map(|name| name.trim().to_owned()).filter(|name| !name.is_empty()).collect())
}

/// Hides the password of a database URL (`postgres://user:***@host/db`).
pub fn redact_url(url: &str) -> String {
    let (Some(scheme), Some(at)) = (url.find("://"), url.rfind('@')) else { return url.to_owned() };
    if at < scheme {
        return url.to_owned();
    }
    match url[scheme + 3..at].split_once(':') {
        Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
        None => url.to_owned(),
    }
}

/// A secret string that never prints itself.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's signature
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_file_which_overrides_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("plaza.toml", "listen = \"0.0.0.0:9000\"\ntoken_ttl_secs = 60\n")?;
            jail.set_env("PLAZA_TOKEN_TTL_SECS", "120");
            jail.set_env("PLAZA_STORE_URL", "postgres://postgres@127.0.0.1/plaza");
            let config = Config::load(Some(Path::new("plaza.toml"))).map_err(|e| *e)?;
            assert_eq!(config.listen, "0.0.0.0:9000");
            assert_eq!(config.token_ttl_secs, 120);
            assert_eq!(config.store_url, "postgres://postgres@127.0.0.1/plaza");
            assert_eq!(config.read_models_url, "sqlite");
            Ok(())
        });
    }

    #[test]
    fn short_token_secrets_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("PLAZA_JWT_SECRET", "x".repeat(31));
            let error = Config::load(None).unwrap_err();
            assert!(error.to_string().contains("at least 32 bytes"), "{error}");
            jail.set_env("PLAZA_JWT_SECRET", "x".repeat(32));
            assert!(Config::load(None).is_ok());
            Ok(())
        });
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        assert!(Config::load(Some(Path::new("/nonexistent/plaza.toml"))).is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret("hunter2".into())), "Secret(***)");
        let config =
            Config { jwt_secret: Some(Secret("hunter2".into())), store_url: "postgres://plaza:hunter2@db:5432/plaza".into(), ..Config::default() };
        let shown = config.to_redacted_toml();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("postgres://plaza:***@db:5432/plaza"), "{shown}");
        assert_eq!(redact_url("postgres://postgres@127.0.0.1/x"), "postgres://postgres@127.0.0.1/x");
    }
}
