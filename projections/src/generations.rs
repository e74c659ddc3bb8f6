//! Generations: every build of a projection's tables, side by side.
//!
//! A projection's SQL names its tables plainly (`videos`, `likes`). In the database each
//! build of them, a *generation*, has its own physical tables (`videos__g3`) and indexes,
//! and the plain names are views onto the live generation's tables. Readers only ever
//! use the plain names. A rebuild fills a new generation beside the live one, while the
//! live one keeps serving and applying; once the new one has caught up, one transaction
//! points the views at it and retires the old one, whose tables are dropped after.
//!
//! Each generation is recorded in `projection_generations` with the projection code's
//! [`version`](crate::Projection::version) that built it, its state, its checkpoint and
//! whether it is paused. A projector applies to a generation only while that row says
//! it may (the guard is the first statement of every applying transaction, so a switch
//! and an apply never interleave).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::coalesce::{self, Runnable, Shape};
use crate::{Projection, ReadModelDb, ReadModelError, Row, SqlValue, Statement};

/// Bookkeeping shared by every projection: generations, and per generation the state of
/// each Kafka partition it is fed from.
pub const BOOKKEEPING_DDL: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS projection_generations (
        projection TEXT NOT NULL,
        generation BIGINT NOT NULL,
        version BIGINT NOT NULL,
        state TEXT NOT NULL,
        position BIGINT NOT NULL DEFAULT 0,
        paused BIGINT NOT NULL DEFAULT 0,
        started_at BIGINT NOT NULL,
        live_at BIGINT,
        applied_at BIGINT,
        PRIMARY KEY (projection, generation)
    )",
    "CREATE TABLE IF NOT EXISTS generation_partitions (
        projection TEXT NOT NULL,
        generation BIGINT NOT NULL,
        topic TEXT NOT NULL,
        kafka_partition BIGINT NOT NULL,
        next_offset BIGINT NOT NULL,
        position BIGINT NOT NULL,
        owner TEXT,
        owner_seen_at BIGINT,
        PRIMARY KEY (projection, generation, topic, kafka_partition)
    )",
    "CREATE TABLE IF NOT EXISTS dead_letters (
        projection TEXT NOT NULL,
        generation BIGINT NOT NULL,
        position BIGINT NOT NULL,
        stream_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        state TEXT NOT NULL,
        error TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        parked_at BIGINT NOT NULL,
        PRIMARY KEY (projection, generation, position)
    )",
    "CREATE INDEX IF NOT EXISTS dead_letters_by_stream ON dead_letters (projection, generation, stream_id)",
    "CREATE TABLE IF NOT EXISTS projection_health (
        projection TEXT NOT NULL,
        reporter TEXT NOT NULL,
        events_last_minute BIGINT NOT NULL,
        failing BIGINT NOT NULL,
        last_error TEXT,
        last_error_at BIGINT,
        reported_at BIGINT NOT NULL,
        PRIMARY KEY (projection, reporter)
    )",
];

/// What a generation is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Being filled from the store's history; nobody reads it yet.
    Building,
    /// What the views show.
    Live,
    /// Replaced; its tables are about to be dropped.
    Retired,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Building => "building",
            Self::Live => "live",
            Self::Retired => "retired",
        }
    }

    fn parse(text: &str) -> Result<Self, ReadModelError> {
        match text {
            "building" => Ok(Self::Building),
            "live" => Ok(Self::Live),
            "retired" => Ok(Self::Retired),
            other => Err(ReadModelError::Shape(format!("unknown generation state {other:?}"))),
        }
    }
}

/// One row of `projection_generations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub generation: u64,
    pub version: u64,
    pub state: State,
    /// Global position applied (projectors that tail the store).
    pub position: u64,
    pub paused: bool,
    /// Unix milliseconds.
    pub started_at: i64,
    pub live_at: Option<i64>,
    /// When it last applied a batch (Unix milliseconds).
    pub applied_at: Option<i64>,
}

impl Generation {
    fn from_row(row: &Row) -> Result<Self, ReadModelError> {
        Ok(Self {
            generation: row.int(0)? as u64,
            version: row.int(1)? as u64,
            state: State::parse(row.text(2)?)?,
            position: row.int(3)? as u64,
            paused: row.int(4)? != 0,
            started_at: row.int(5)?,
            live_at: match row.0.get(6) {
                Some(SqlValue::Int(at)) => Some(*at),
                _ => None,
            },
            applied_at: match row.0.get(7) {
                Some(SqlValue::Int(at)) => Some(*at),
                _ => None,
            },
        })
    }
}

const GENERATIONS: &str = "SELECT generation, version, state, position, paused, started_at, live_at, applied_at
     FROM projection_generations WHERE projection = $1 ORDER BY generation";

/// Every generation of `projection`, oldest first.
pub async fn generations(db: &dyn ReadModelDb, projection: &str) -> Result<Vec<Generation>, ReadModelError> {
    db.query(GENERATIONS, vec![projection.into()]).await?.iter().map(Generation::from_row).collect()
}

/// The generation the views show, if any.
pub async fn live(db: &dyn ReadModelDb, projection: &str) -> Result<Option<Generation>, ReadModelError> {
    Ok(generations(db, projection).await?.into_iter().find(|g| g.state == State::Live))
}

pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Makes sure `projection` has a live generation: the first one is created live, empty,
/// with its views, for the projector to fill. Safe to race from several processes.
pub async fn ensure_live(db: &dyn ReadModelDb, projection: &dyn Projection) -> Result<Generation, ReadModelError> {
    loop {
        let all = generations(db, projection.name()).await?;
        if let Some(live) = all.iter().find(|g| g.state == State::Live) {
            return Ok(live.clone());
        }
        if all.is_empty() && adopt_legacy(db, projection).await? {
            continue;
        }
        let generation = all.iter().map(|g| g.generation).max().unwrap_or(0) + 1;
        let tables = Tables::new(projection.schema(), generation);
        let mut steps = vec![Step::require(Statement::new(
            "INSERT INTO projection_generations (projection, generation, version, state, started_at, live_at)
             VALUES ($1, $2, $3, 'live', $4, $4) ON CONFLICT DO NOTHING",
            [projection.name().into(), SqlValue::Int(generation as i64), SqlValue::Int(projection.version() as i64), SqlValue::Int(now_millis())],
        ))];
        steps.extend(tables.ddl(projection.schema()).into_iter().map(Step::run));
        steps.extend(tables.views().into_iter().map(Step::run));
        // Lost a race with another process: read what it created.
        db.transact(steps).await?;
    }
}

/// Read models written before generations existed (plain tables, a row in
/// `projection_checkpoints`) become generation 0, version 0: they keep serving while the
/// projector, finding them older than its code, rebuilds beside them. Returns whether
/// there were any.
async fn adopt_legacy(db: &dyn ReadModelDb, projection: &dyn Projection) -> Result<bool, ReadModelError> {
    const LEGACY: &str = "SELECT position FROM projection_checkpoints WHERE projection = $1";
    // No such table: a database younger than generations.
    let Ok(rows) = db.query(LEGACY, vec![projection.name().into()]).await else { return Ok(false) };
    let Some(position) = rows.first().map(|row| row.int(0)).transpose()? else { return Ok(false) };
    let name = projection.name();
    let tables = Tables::new(projection.schema(), 0);
    let mut steps = vec![
        Step::require(Statement::new("DELETE FROM projection_checkpoints WHERE projection = $1", [name.into()])),
        Step::require(Statement::new(
            "INSERT INTO projection_generations (projection, generation, version, state, position, started_at, live_at)
             VALUES ($1, 0, 0, 'live', $2, $3, $3)",
            [name.into(), SqlValue::Int(position), SqlValue::Int(now_millis())],
        )),
        Step::run(Statement::new(
            "INSERT INTO generation_partitions (projection, generation, topic, kafka_partition, next_offset, position)
             SELECT projection, 0, topic, kafka_partition, next_offset, position FROM projection_partitions WHERE projection = $1",
            [name.into()],
        )),
    ];
    for table in tables.tables() {
        steps.push(Step::run(Statement::owned(format!("ALTER TABLE {table} RENAME TO {}", tables.physical(table)), [])));
    }
    steps.extend(tables.views().into_iter().map(Step::run));
    let adopted = db.transact(steps).await?;
    if adopted {
        tracing::info!(projection = name, position, "read model from before generations kept as generation 0; it is rebuilt beside");
    }
    Ok(adopted)
}

/// Starts a generation to be built beside the live one (or returns the unfinished build
/// of the same code version, to resume it). A build of another version is dropped.
pub async fn start_building(db: &dyn ReadModelDb, projection: &dyn Projection) -> Result<Generation, ReadModelError> {
    let all = generations(db, projection.name()).await?;
    for stale in all.iter().filter(|g| g.state == State::Building && g.version != projection.version()) {
        discard(db, projection, stale.generation).await?;
    }
    if let Some(building) = all.iter().find(|g| g.state == State::Building && g.version == projection.version()) {
        return Ok(building.clone());
    }
    let generation = all.iter().map(|g| g.generation).max().unwrap_or(0) + 1;
    let tables = Tables::new(projection.schema(), generation);
    let mut steps = vec![Step::require(Statement::new(
        "INSERT INTO projection_generations (projection, generation, version, state, started_at)
         VALUES ($1, $2, $3, 'building', $4) ON CONFLICT DO NOTHING",
        [projection.name().into(), SqlValue::Int(generation as i64), SqlValue::Int(projection.version() as i64), SqlValue::Int(now_millis())],
    ))];
    // The query indexes come once it has caught up ([`create_query_indexes`]).
    let (_, now) = split_query_indexes(projection);
    steps.extend(tables.ddl(&now).into_iter().map(Step::run));
    if !db.transact(steps).await? {
        return Err(ReadModelError::Database(format!("generation {generation} of {} was created by someone else", projection.name())));
    }
    Ok(generations(db, projection.name()).await?.into_iter().find(|g| g.generation == generation).expect("just created"))
}

/// The projection's DDL split into its query indexes ([`Projection::query_indexes`])
/// and the rest.
fn split_query_indexes(projection: &dyn Projection) -> (Vec<&'static str>, Vec<&'static str>) {
    projection.schema().iter().partition(|ddl| object_name(ddl).is_some_and(|name| projection.query_indexes().contains(&name)))
}

/// Creates the query indexes of a generation being built, once it has caught up (a
/// no-op when they exist).
pub async fn create_query_indexes(db: &dyn ReadModelDb, projection: &dyn Projection, generation: u64) -> Result<(), ReadModelError> {
    let (indexes, _) = split_query_indexes(projection);
    if indexes.is_empty() {
        return Ok(());
    }
    let steps = Tables::new(projection.schema(), generation).ddl(&indexes).into_iter().map(Step::run).collect();
    db.transact(steps).await.map(drop)
}

/// Points the views at generation `to` and retires the live generation `from`, in one
/// transaction, if `to` has applied at least everything `from` has (through every Kafka
/// partition too, whose offsets `to` then takes over at its own position). Returns false
/// when `to` is not there yet: build on and try again.
pub async fn switch(db: &dyn ReadModelDb, projection: &dyn Projection, from: Option<u64>, to: u64) -> Result<bool, ReadModelError> {
    let name = projection.name();
    let (to_param, from_param) = (SqlValue::Int(to as i64), SqlValue::Int(from.map_or(-1, |g| g as i64)));
    let mut steps = Vec::new();
    if from.is_some() {
        // Locks the live row first, as every apply does: an apply in flight commits first.
        steps.push(Step::require(Statement::new(
            "UPDATE projection_generations SET state = 'retired' WHERE projection = $1 AND generation = $2 AND state = 'live'",
            [name.into(), from_param.clone()],
        )));
    }
    steps.push(Step::require(Statement::new(
        "UPDATE projection_generations SET state = 'live', live_at = $4
         WHERE projection = $1 AND generation = $2 AND state = 'building'
           AND position >= COALESCE(
               (SELECT MAX(p.position) FROM generation_partitions p WHERE p.projection = $1 AND p.generation = $3),
               (SELECT g.position FROM projection_generations g WHERE g.projection = $1 AND g.generation = $3),
               0)",
        [name.into(), to_param.clone(), from_param.clone(), SqlValue::Int(now_millis())],
    )));
    steps.push(Step::run(Statement::new(
        "INSERT INTO generation_partitions (projection, generation, topic, kafka_partition, next_offset, position)
         SELECT p.projection, $2, p.topic, p.kafka_partition, p.next_offset, g.position
         FROM generation_partitions p JOIN projection_generations g ON g.projection = p.projection AND g.generation = $2
         WHERE p.projection = $1 AND p.generation = $3",
        [name.into(), to_param, from_param],
    )));
    if let Some(from) = from {
        // The change logs go on where the live generation's were (whatever a build by an
        // older binary may have written to them goes).
        let (old, new) = (Tables::new(projection.schema(), from), Tables::new(projection.schema(), to));
        for table in projection.carried_over() {
            let (old, new) = (old.physical(table), new.physical(table));
            steps.push(Step::run(Statement::owned(format!("DELETE FROM {new}"), [])));
            steps.push(Step::run(Statement::owned(format!("INSERT INTO {new} SELECT * FROM {old}"), [])));
        }
    }
    steps.extend(Tables::new(projection.schema(), to).views().into_iter().map(Step::run));
    db.transact(steps).await
}

/// Drops a generation's tables and forgets it.
pub async fn discard(db: &dyn ReadModelDb, projection: &dyn Projection, generation: u64) -> Result<(), ReadModelError> {
    let mut steps: Vec<Step> = Tables::new(projection.schema(), generation).drops().into_iter().map(Step::run).collect();
    for sql in [
        "DELETE FROM generation_partitions WHERE projection = $1 AND generation = $2",
        "DELETE FROM projection_generations WHERE projection = $1 AND generation = $2",
    ] {
        steps.push(Step::run(Statement::new(sql, [projection.name().into(), SqlValue::Int(generation as i64)])));
    }
    db.transact(steps).await.map(drop)
}

/// Drops every retired generation of `projection`.
pub async fn discard_retired(db: &dyn ReadModelDb, projection: &dyn Projection) -> Result<(), ReadModelError> {
    for retired in generations(db, projection.name()).await?.into_iter().filter(|g| g.state == State::Retired) {
        discard(db, projection, retired.generation).await?;
    }
    Ok(())
}

/// Pauses or resumes the live generation's projector (it checks before every batch).
pub async fn set_paused(db: &dyn ReadModelDb, projection: &str, paused: bool) -> Result<bool, ReadModelError> {
    let changed = db
        .execute(Statement::new(
            "UPDATE projection_generations SET paused = $2 WHERE projection = $1 AND state = 'live'",
            [projection.into(), SqlValue::Int(paused.into())],
        ))
        .await?;
    Ok(changed > 0)
}

/// One statement of [`ReadModelDb::transact`]; a required one that changes no row
/// rolls the whole transaction back.
#[derive(Debug, Clone)]
pub struct Step {
    pub statement: Statement,
    pub required: bool,
}

impl Step {
    pub fn run(statement: Statement) -> Self {
        Self { statement, required: false }
    }

    pub fn require(statement: Statement) -> Self {
        Self { statement, required: true }
    }
}

/// Moves a generation's checkpoint to `$3` if it may take changes now, and if its stored
/// checkpoint is not before `$5`, the one the batch continues from. `$4` is the time
/// (Unix milliseconds), kept as when the generation last applied.
///
/// The check on `$5` is what lets PostgreSQL commit read models asynchronously: a commit
/// it acknowledged and then lost in a crash leaves the stored checkpoint behind the
/// projector's, and the projector's next batch is refused ([`ReadModelError::Uncommitted`])
/// instead of going on past the events the crash took back.
///
/// [`ReadModelError::Uncommitted`]: crate::ReadModelError::Uncommitted
pub const GUARD: &str = "UPDATE projection_generations SET position = CASE WHEN $3 > position THEN $3 ELSE position END, applied_at = $4
     WHERE projection = $1 AND generation = $2 AND (state = 'building' OR (state = 'live' AND paused = 0)) AND position >= $5";

/// Whether a generation may take changes now: after [`GUARD`] refused a batch, tells a
/// stopped generation from one whose checkpoint is behind the batch.
pub const TAKES_CHANGES: &str = "SELECT position FROM projection_generations
     WHERE projection = $1 AND generation = $2 AND (state = 'building' OR (state = 'live' AND paused = 0))";

/// One generation's physical names: `videos` is `videos__g3`, and so are its indexes.
/// Statements are renamed once per distinct SQL text and cached.
pub struct Tables {
    projection: &'static str,
    generation: u64,
    suffix: String,
    objects: HashSet<&'static str>,
    tables: Vec<&'static str>,
    /// Physical names of the tables a rebuild leaves to the switch-over.
    carried_over: Vec<String>,
    hold_commits: Option<Duration>,
    shapes: Mutex<HashMap<(usize, usize), Arc<Shape>>>,
}

impl std::fmt::Debug for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.projection, self.suffix)
    }
}

/// The table or index a `CREATE .. IF NOT EXISTS name` statement creates.
fn object_name(ddl: &'static str) -> Option<&'static str> {
    let words: Vec<&'static str> = ddl.split(|c: char| c.is_whitespace() || c == '(').filter(|w| !w.is_empty()).collect();
    let at = words.windows(4).position(|w| w[0] == "IF" && w[1] == "NOT" && w[2] == "EXISTS")?;
    Some(words[at + 3])
}

/// Words after which a name in SQL is a table or an index.
const NAME_FOLLOWS: &[&str] = &["FROM", "INTO", "UPDATE", "JOIN", "TABLE", "EXISTS", "ON", "INDEX"];

impl Tables {
    pub fn new(schema: &'static [&'static str], generation: u64) -> Self {
        Self::named("", schema, generation)
    }

    /// As [`Tables::new`], remembering the projection's name for messages.
    pub fn of(projection: &dyn Projection, generation: u64) -> Self {
        let mut tables = Self::named(projection.name(), projection.schema(), generation);
        tables.carried_over = projection.carried_over().iter().map(|table| tables.physical(table)).collect();
        tables
    }

    fn named(projection: &'static str, schema: &'static [&'static str], generation: u64) -> Self {
        let mut objects = HashSet::new();
        let mut tables = Vec::new();
        for ddl in schema {
            if let Some(name) = object_name(ddl) {
                objects.insert(name);
                if ddl.split_whitespace().nth(1) == Some("TABLE") {
                    tables.push(name);
                }
            }
        }
        Self {
            projection,
            generation,
            suffix: format!("__g{generation}"),
            objects,
            tables,
            carried_over: Vec::new(),
            hold_commits: None,
            shapes: Mutex::default(),
        }
    }

    /// Marks a generation being built, which nobody reads yet: the database may hold
    /// its batches uncommitted for up to `at_most` and commit them at once
    /// ([`ReadModelDb::apply`]). Each commit of SQLite in WAL mode writes every page the
    /// transaction changed to the log, and a batch of a rebuild changes nearly every page
    /// of a large table's keys (likes by video and user): committing a content rebuild
    /// every batch wrote about six times the database's size.
    pub fn with_held_commits(mut self, at_most: Duration) -> Self {
        self.hold_commits = (!at_most.is_zero()).then_some(at_most);
        self
    }

    /// How long batches may be held uncommitted, if at all.
    pub fn hold_commits(&self) -> Option<Duration> {
        self.hold_commits
    }

    pub fn projection(&self) -> &'static str {
        self.projection
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The projection's tables by their plain names.
    pub fn tables(&self) -> &[&'static str] {
        &self.tables
    }

    pub fn physical(&self, name: &str) -> String {
        format!("{name}{}", self.suffix)
    }

    /// The statement's SQL with this generation's names.
    pub fn sql(&self, statement: &Statement) -> Arc<str> {
        self.shape(statement).sql.clone()
    }

    /// What is known about the statement's SQL with this generation's names (worked out
    /// once per text a projection writes).
    pub fn shape(&self, statement: &Statement) -> Arc<Shape> {
        let new = |text: &str| {
            let (sql, tables) = scan(text, &self.objects, &self.suffix);
            Arc::new(Shape::new(sql, tables))
        };
        match &statement.sql {
            Cow::Borrowed(text) => {
                let key = (text.as_ptr() as usize, text.len());
                let mut shapes = self.shapes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                shapes.entry(key).or_insert_with(|| new(text)).clone()
            }
            Cow::Owned(text) => new(text),
        }
    }

    /// Whether the statement writes a table of [`Projection::carried_over`], which a
    /// rebuild leaves alone.
    pub fn carried_over(&self, statement: &Statement) -> bool {
        !self.carried_over.is_empty() && self.shape(statement).uses(&self.carried_over)
    }

    /// The statements on this generation's tables, as set-based statements where that
    /// changes nothing ([`crate::coalesce`]); with `multi_row`, in multi-row statements.
    pub fn coalesce(&self, statements: Vec<Statement>, multi_row: bool) -> Vec<Runnable> {
        coalesce::coalesce(statements, |statement| self.shape(statement), multi_row)
    }

    /// The projection's DDL (or some of it) with this generation's names.
    pub fn ddl(&self, schema: &[&'static str]) -> Vec<Statement> {
        schema.iter().map(|ddl| Statement::owned(rename(ddl, &self.objects, &self.suffix), [])).collect()
    }

    /// Points each plain name at this generation's table.
    pub fn views(&self) -> Vec<Statement> {
        self.tables
            .iter()
            .flat_map(|table| {
                [
                    Statement::owned(format!("DROP VIEW IF EXISTS {table}"), []),
                    Statement::owned(format!("CREATE VIEW {table} AS SELECT * FROM {}", self.physical(table)), []),
                ]
            })
            .collect()
    }

    /// Drops this generation's tables (their indexes go with them).
    pub fn drops(&self) -> Vec<Statement> {
        self.tables.iter().map(|table| Statement::owned(format!("DROP TABLE IF EXISTS {}", self.physical(table)), [])).collect()
    }
}

/// Appends `suffix` to every name in `objects` where SQL uses it as a table or index:
/// after one of [`NAME_FOLLOWS`], or as a qualifier (`videos.id`). Column names that
/// happen to equal a table's name are left alone, and so is everything in quotes.
fn rename(sql: &str, objects: &HashSet<&str>, suffix: &str) -> String {
    scan(sql, objects, suffix).0
}

/// [`rename`], and the tables the statement uses: the renamed objects, and any other
/// name after `FROM`, `INTO`, `UPDATE` or `JOIN` (a bookkeeping table).
fn scan(sql: &str, objects: &HashSet<&str>, suffix: &str) -> (String, Vec<String>) {
    let mut out = String::with_capacity(sql.len() + 32);
    let mut used = Vec::new();
    let mut previous_word = "";
    let mut chars = sql.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c == '\'' {
            out.push(c);
            for (_, c) in chars.by_ref() {
                out.push(c);
                if c == '\'' {
                    break;
                }
            }
            previous_word = "";
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut end = start + c.len_utf8();
            while let Some(&(at, next)) = chars.peek() {
                if !(next.is_ascii_alphanumeric() || next == '_') {
                    break;
                }
                end = at + next.len_utf8();
                chars.next();
            }
            let word = &sql[start..end];
            let qualifier = chars.peek().is_some_and(|&(_, next)| next == '.');
            let qualified = sql[..start].ends_with('.');
            let follows = |keywords: &[&str]| keywords.iter().any(|k| k.eq_ignore_ascii_case(previous_word));
            out.push_str(word);
            if objects.contains(word) && !qualified && (qualifier || follows(NAME_FOLLOWS)) {
                out.push_str(suffix);
                used.push(format!("{word}{suffix}"));
            } else if !qualified && !word.eq_ignore_ascii_case("SET") && follows(&["FROM", "INTO", "UPDATE", "JOIN"]) {
                used.push(word.to_owned());
            }
            previous_word = word;
        } else {
            if !c.is_whitespace() {
                previous_word = "";
            }
            out.push(c);
        }
    }
    used.sort();
    used.dedup();
    (out, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &[&str] = &[
        "CREATE TABLE IF NOT EXISTS videos (id TEXT PRIMARY KEY, likes BIGINT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS videos_by_likes ON videos (likes)",
        "CREATE TABLE IF NOT EXISTS likes (video_id TEXT, user_id TEXT)",
        "CREATE UNIQUE INDEX IF NOT EXISTS likes_by_user ON likes(user_id)",
    ];

    fn renamed(sql: &'static str) -> String {
        Tables::new(SCHEMA, 7).sql(&Statement::new(sql, [])).to_string()
    }

    #[test]
    fn tables_and_indexes_are_named_by_generation() {
        let tables = Tables::new(SCHEMA, 7);
        assert_eq!(tables.tables(), ["videos", "likes"]);
        let ddl: Vec<String> = tables.ddl(SCHEMA).iter().map(|s| s.sql.to_string()).collect();
        assert_eq!(ddl[0], "CREATE TABLE IF NOT EXISTS videos__g7 (id TEXT PRIMARY KEY, likes BIGINT NOT NULL)");
        assert_eq!(ddl[1], "CREATE INDEX IF NOT EXISTS videos_by_likes__g7 ON videos__g7 (likes)");
        assert_eq!(ddl[3], "CREATE UNIQUE INDEX IF NOT EXISTS likes_by_user__g7 ON likes__g7(user_id)");
        assert_eq!(tables.views()[1].sql, "CREATE VIEW videos AS SELECT * FROM videos__g7");
    }

    #[test]
    fn only_names_used_as_tables_are_renamed() {
        assert_eq!(
            renamed("INSERT INTO videos (id, likes) VALUES ($1, 1) ON CONFLICT (id) DO UPDATE SET likes = videos.likes + excluded.likes"),
            "INSERT INTO videos__g7 (id, likes) VALUES ($1, 1) ON CONFLICT (id) DO UPDATE SET likes = videos__g7.likes + excluded.likes"
        );
        assert_eq!(
            renamed("DELETE FROM likes WHERE video_id IN (SELECT id FROM videos v WHERE v.likes > 0) AND 'from likes' <> ''"),
            "DELETE FROM likes__g7 WHERE video_id IN (SELECT id FROM videos__g7 v WHERE v.likes > 0) AND 'from likes' <> ''"
        );
        assert_eq!(
            renamed("UPDATE likes SET user_id = 'é' WHERE EXISTS (SELECT 1 FROM likes)"),
            "UPDATE likes__g7 SET user_id = 'é' WHERE EXISTS (SELECT 1 FROM likes__g7)"
        );
    }

    #[test]
    fn every_projection_names_its_objects_plainly_and_once() {
        let mut seen = HashSet::new();
        for projection in crate::all(Default::default()) {
            let tables = Tables::of(projection.as_ref(), 1);
            assert!(!tables.tables().is_empty(), "{} declares no table", projection.name());
            for ddl in tables.ddl(projection.schema()) {
                assert!(ddl.sql.contains("__g1"), "{}: {} is not renamed", projection.name(), ddl.sql);
            }
            for name in &tables.objects {
                assert!(seen.insert(*name), "{name} is declared by two projections");
            }
            for index in projection.query_indexes() {
                let ddl = projection.schema().iter().find(|ddl| object_name(ddl) == Some(index));
                assert!(
                    ddl.is_some_and(|ddl| ddl.starts_with("CREATE INDEX")),
                    "{}: query index {index} is not a plain index of the schema",
                    projection.name()
                );
            }
        }
    }
}
