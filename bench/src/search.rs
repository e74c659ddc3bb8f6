//! Section 9: search. How fast the search projection indexes generated videos (half with
//! English titles, half with Chinese) from a SQLite event store into the embedded
//! tantivy index, beside a no-op projection over the same events; then how fast that
//! index answers queries of each kind (several words, a typo, a prefix, Chinese, a sort),
//! one client at a time and two at once.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use plaza_domain::search::{SearchIndex, SearchKind, SearchRequest, SearchSort, normalize_query};
use plaza_domain::{Event, NewEvent};
use plaza_infra::sqlite::{SqliteEventStore, SqliteReadModels};
use plaza_infra::tantivy::TantivySearch;
use plaza_projections::processes::Checkpoint;
use plaza_projections::search::SearchProjector;
use plaza_projections::{Progress, Projector};
use uuid::Uuid;

use crate::Settings;
use crate::projection::new_event;
use crate::rebuild::append_all;
use crate::stats::{Measurement, Window, WorkerLog, thousands};

const ENGLISH: &[&str] = &[
    "funny",
    "cats",
    "dogs",
    "kitten",
    "puppy",
    "dance",
    "music",
    "guitar",
    "piano",
    "cooking",
    "pasta",
    "pizza",
    "street",
    "food",
    "travel",
    "mountain",
    "beach",
    "ocean",
    "sunset",
    "city",
    "night",
    "lights",
    "train",
    "football",
    "soccer",
    "tennis",
    "skate",
    "surfing",
    "garden",
    "flowers",
    "morning",
    "coffee",
    "recipe",
    "baking",
    "bread",
    "cake",
    "chocolate",
    "summer",
    "winter",
    "snow",
    "rain",
    "storm",
    "camping",
    "forest",
    "river",
    "fishing",
    "painting",
    "drawing",
    "comedy",
    "prank",
    "challenge",
    "tutorial",
    "makeup",
    "fashion",
    "vintage",
    "retro",
    "gaming",
    "speedrun",
    "review",
    "unboxing",
    "science",
    "space",
    "rocket",
    "robots",
    "coding",
    "history",
    "castle",
    "museum",
    "wedding",
    "birthday",
    "family",
    "friends",
    "school",
    "exam",
    "workout",
    "yoga",
    "running",
    "marathon",
    "cycling",
    "horses",
    "birds",
    "parrot",
    "turtle",
    "aquarium",
    "magic",
    "tricks",
    "origami",
    "lego",
    "drone",
    "footage",
    "wildlife",
    "safari",
    "desert",
    "island",
    "festival",
    "concert",
    "karaoke",
    "singing",
    "violin",
];
const CHINESE: &[&str] = &[
    "搞笑", "猫咪", "狗狗", "视频", "美食", "旅行", "音乐", "舞蹈", "篮球", "足球", "电影", "游戏", "学习", "英语", "数学", "编程", "手机", "电脑",
    "汽车", "城市", "夜景", "日落", "大海", "山水", "花园", "春天", "夏天", "秋天", "冬天", "下雪", "火锅", "烧烤", "面条", "饺子", "蛋糕", "咖啡",
    "奶茶", "宠物", "熊猫", "孩子", "家庭", "朋友", "生日", "婚礼", "运动", "跑步", "健身", "瑜伽", "唱歌", "吉他", "钢琴", "画画", "手工", "魔术",
    "挑战", "教程", "开箱", "测评", "科学", "太空", "历史", "故宫", "长城", "超级",
];

/// A small deterministic generator (xorshift): the same videos and queries every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, words: &[&'a str]) -> &'a str {
        words[(self.next() % words.len() as u64) as usize]
    }

    fn words(&mut self, words: &[&str], n: usize, separator: &str) -> String {
        (0..n).map(|_| self.pick(words)).collect::<Vec<_>>().join(separator)
    }
}

pub struct QueryCase {
    pub name: &'static str,
    pub example: String,
    pub clients: usize,
    pub measurement: Measurement,
    /// Mean matches per query.
    pub mean_total: f64,
}

pub struct SearchResults {
    pub videos: usize,
    pub indexed: Duration,
    pub baseline: Duration,
    pub index_bytes: u64,
    pub queries: Vec<QueryCase>,
}

/// The events of `n` generated videos, one stream each.
fn videos(n: usize, seed: u64) -> Vec<(String, Vec<NewEvent>)> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed);
    let authors: Vec<Uuid> = (0..1000).map(|_| Uuid::now_v7()).collect();
    (0..n)
        .map(|i| {
            let (title, description) = match i % 2 {
                0 => {
                    let k = 3 + (rng.next() % 3) as usize;
                    (rng.words(ENGLISH, k, " "), rng.words(ENGLISH, 8, " "))
                }
                _ => {
                    let k = 3 + (rng.next() % 3) as usize;
                    (rng.words(CHINESE, k, "的"), rng.words(CHINESE, 8, ""))
                }
            };
            let hashtags = vec![rng.pick(ENGLISH).to_owned(), rng.pick(CHINESE).to_owned()];
            let (video_id, author_id) = (Uuid::now_v7(), authors[i % authors.len()]);
            let event =
                Event::VideoPublished { video_id, author_id, title, description, media_url: format!("https://cdn.example/{i}.mp4"), hashtags };
            (format!("video-{video_id}"), vec![new_event(author_id, &event)])
        })
        .collect()
}

fn directory_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).map(|entries| entries.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0)
}

pub fn run_all(runtime: &tokio::runtime::Runtime, settings: &Settings) -> anyhow::Result<SearchResults> {
    let n = if settings.quick { 20_000 } else { 1_000_000 };
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteEventStore::open(&dir.path().join("events.db"))?);
    eprintln!("[search] appending {} generated videos...", thousands(n as u64));
    runtime.block_on(async {
        for chunk in (0..n).step_by(50_000) {
            append_all(&store, videos((n - chunk).min(50_000), chunk as u64 + 1)).await?;
        }
        anyhow::Ok(())
    })?;

    let index = Arc::new(TantivySearch::open(&dir.path().join("search"))?);
    let started = Instant::now();
    let position = runtime.block_on(SearchProjector::new(index.clone(), store.clone()).catch_up()).context("indexing failed")?;
    let indexed = started.elapsed();
    let db = Arc::new(SqliteReadModels::open(&dir.path().join("read.db"))?);
    let noop = Projector::new(Arc::new(Checkpoint("noop")), store.clone(), db, Progress::default());
    let started = Instant::now();
    runtime.block_on(noop.catch_up())?;
    let baseline = started.elapsed();
    let index_bytes = directory_bytes(&index.directory());
    eprintln!(
        "[search] indexed {} videos in {:.1} s: {:.0}/s (no-op {:.0}/s), index {} MB, {} segments, position {position}",
        thousands(n as u64),
        indexed.as_secs_f64(),
        n as f64 / indexed.as_secs_f64(),
        n as f64 / baseline.as_secs_f64(),
        index_bytes / 1_000_000,
        index.segments()
    );

    let seconds = if settings.quick { Duration::from_secs(1) } else { Duration::from_secs(5) };
    let mut queries = Vec::new();
    for (name, make) in query_kinds() {
        for clients in [1, 2] {
            let case = runtime.block_on(measure(index.clone(), name, make, clients, settings.warmup, seconds))?;
            eprintln!("[search] {name}, {clients} client(s): {}", case.measurement.summary("queries"));
            queries.push(case);
        }
    }
    Ok(SearchResults { videos: n, indexed, baseline, index_bytes, queries })
}

/// What a measured request does: a search sorted so, or suggestions.
#[derive(Clone, Copy)]
enum Ask {
    Search(SearchSort),
    Suggest,
}

type MakeQuery = fn(&mut Rng) -> (String, Ask);

fn query_kinds() -> Vec<(&'static str, MakeQuery)> {
    vec![
        ("two English words", |rng| (format!("{} {}", rng.pick(ENGLISH), rng.pick(ENGLISH)), Ask::Search(SearchSort::Relevance))),
        ("one typo (5+ letters)", |rng| {
            let word = loop {
                let word = rng.pick(ENGLISH);
                if word.len() >= 6 {
                    break word;
                }
            };
            // One letter dropped from the middle.
            let cut = word.len() / 2;
            (format!("{}{}", &word[..cut], &word[cut + 1..]), Ask::Search(SearchSort::Relevance))
        }),
        ("a word and a prefix", |rng| {
            let prefix: String = rng.pick(ENGLISH).chars().take(3).collect();
            (format!("{} {prefix}", rng.pick(ENGLISH)), Ask::Search(SearchSort::Relevance))
        }),
        ("two Chinese words", |rng| (format!("{}{}", rng.pick(CHINESE), rng.pick(CHINESE)), Ask::Search(SearchSort::Relevance))),
        ("one word, newest first", |rng| (rng.pick(ENGLISH).to_owned(), Ask::Search(SearchSort::Newest))),
        ("suggestions: 1 to 3 letters", |rng| {
            let letters = 1 + (rng.next() % 3) as usize;
            (rng.pick(ENGLISH).chars().take(letters).collect(), Ask::Suggest)
        }),
        ("suggestions: a word and a letter", |rng| (format!("{} {}", rng.pick(ENGLISH), &rng.pick(ENGLISH)[..1]), Ask::Suggest)),
    ]
}

/// `clients` tasks each searching one query after another for `seconds` after a warm-up.
async fn measure(
    index: Arc<TantivySearch>,
    name: &'static str,
    make: MakeQuery,
    clients: usize,
    warmup: Duration,
    seconds: Duration,
) -> anyhow::Result<QueryCase> {
    let window = Window::starting_now(warmup, seconds);
    let mut tasks = Vec::new();
    for client in 0..clients {
        let index = index.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ (client as u64 + 1));
            let mut log = WorkerLog::default();
            while window.is_open(Instant::now()) {
                let (query, ask) = make(&mut rng);
                let started = Instant::now();
                let ok = match ask {
                    Ask::Search(sort) => index.search(request(&query, sort, false)?).await.is_ok(),
                    Ask::Suggest => index.suggest(&normalize_query(&query)?, 10).await.is_ok(),
                };
                log.record(&window, started, started.elapsed(), ok);
            }
            anyhow::Ok(log)
        }));
    }
    let mut logs = Vec::new();
    for task in tasks {
        logs.push(task.await??);
    }
    let measurement = Measurement::finish(&window, logs);
    if measurement.errors > 0 {
        bail!("{name}: {} searches failed", measurement.errors);
    }
    // How many videos such queries match, counted apart (not timed).
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mut totals = 0;
    for _ in 0..50 {
        totals += match make(&mut rng) {
            (query, Ask::Search(sort)) => index.search(request(&query, sort, true)?).await?.total.unwrap_or_default(),
            (query, Ask::Suggest) => index.suggest(&normalize_query(&query)?, 10).await?.len(),
        };
    }
    let example = make(&mut Rng(7)).0;
    Ok(QueryCase { name, example, clients, measurement, mean_total: totals as f64 / 50.0 })
}

/// A first page of 20 videos, as a client asks without `totalCount` (`count` false).
fn request(query: &str, sort: SearchSort, count: bool) -> anyhow::Result<SearchRequest> {
    Ok(SearchRequest { query: normalize_query(query)?, kind: SearchKind::Videos, sort, since: None, offset: 0, first: 20, count })
}

pub fn render(r: &SearchResults, out: &mut String) {
    let _ = writeln!(out, "## 9. Search\n");
    let (rate, noop) = (r.videos as f64 / r.indexed.as_secs_f64(), r.videos as f64 / r.baseline.as_secs_f64());
    let _ = writeln!(out, "| Indexing | Videos | Time (s) | Videos/s | No-op events/s | vs no-op | Index size (MB) |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    let _ = writeln!(
        out,
        "| search projection into tantivy | {} | {:.1} | {} | {} | {:.1} % | {} |",
        thousands(r.videos as u64),
        r.indexed.as_secs_f64(),
        thousands(rate.round() as u64),
        thousands(noop.round() as u64),
        100.0 * rate / noop,
        thousands(r.index_bytes / 1_000_000)
    );
    let _ = writeln!(out, "\n| Query | Example | Clients | Queries/s | p50 (ms) | p99 (ms) | Mean matches |");
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|");
    for q in &r.queries {
        let m = &q.measurement;
        let _ = writeln!(
            out,
            "| {} | `{}` | {} | {} | {:.2} | {:.2} | {} |",
            q.name,
            q.example,
            q.clients,
            thousands(m.per_second().round() as u64),
            m.percentile_ms(50.0),
            m.percentile_ms(99.0),
            thousands(q.mean_total.round() as u64)
        );
    }
    let _ = writeln!(
        out,
        "\n**Method.** {} generated videos (half with 3 to 5 English words as the title and 8 as the description, half with 3 to 5 \
         Chinese words; two hashtags each) are appended to a SQLite event store (not measured); the search projector catches up \
         over them into an empty tantivy index (batches of 10,000 events, one commit each), timed; the no-op baseline is a \
         projection with no tables over the same events. Queries run on that index in the benchmark's process through the \
         `SearchIndex` port (not over HTTP), 20 results each with their highlights and without `totalCount` (counting visits \
         every match), one client or two at once, for 5 s after a 1 s warm-up; each query's words are drawn anew from the \
         generator's vocabularies (about 100 English and 60 Chinese words, so a word matches a large share of the videos); \
         the mean matches are counted apart over 50 such queries (for suggestions: those returned, at most 10).\n",
        thousands(r.videos as u64)
    );
}
