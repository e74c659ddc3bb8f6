//! The search port's conformance suite: what every engine must answer alike. It runs on
//! the embedded tantivy index always, and on Elasticsearch when
//! `PLAZA_TEST_ELASTICSEARCH_URL` names a server (built with the `elasticsearch` feature).

use plaza_domain::search::{
    IndexChange, SearchDocument, SearchIndex, SearchKind, SearchPage, SearchRequest, SearchSort, SearchWriter, normalize_query,
};
use plaza_infra::tantivy::TantivySearch;
use uuid::Uuid;

mod common;

const DAY: i64 = 86_400_000_000;

fn video(title: &str, description: &str, hashtags: &[&str], day: i64, likes: i64) -> SearchDocument {
    SearchDocument::Video {
        video_id: Uuid::now_v7(),
        author_id: Uuid::now_v7(),
        title: title.into(),
        description: description.into(),
        hashtags: hashtags.iter().map(|h| h.to_string()).collect(),
        created_at: day * DAY,
        likes,
    }
}

fn request(query: &str, kind: SearchKind, sort: SearchSort) -> SearchRequest {
    SearchRequest { query: normalize_query(query).unwrap(), kind, sort, since: None, offset: 0, first: 20, count: true }
}

/// The ids a search finds, in order.
async fn found(index: &dyn SearchIndex, query: &str, kind: SearchKind, sort: SearchSort) -> Vec<String> {
    index.search(request(query, kind, sort)).await.unwrap().hits.into_iter().map(|hit| hit.id).collect()
}

async fn videos(index: &dyn SearchIndex, query: &str) -> Vec<String> {
    found(index, query, SearchKind::Videos, SearchSort::Relevance).await
}

struct Library {
    cats: SearchDocument,
    dogs: SearchDocument,
    kids: SearchDocument,
    chinese: SearchDocument,
    script: SearchDocument,
}

impl Library {
    fn new() -> Self {
        Self {
            cats: video("Funny cats compilation", "The best cat moments of the year", &["cats", "funny"], 1, 50),
            dogs: video("Dogs playing fetch", "A sunny afternoon in the park", &["dogs"], 2, 500),
            kids: video("Cat videos for kids", "Gentle and calm", &["cats"], 3, 5),
            chinese: video("超级搞笑的猫咪视频", "每天都有新的猫咪", &["搞笑"], 4, 20),
            script: video("<script>alert(1)</script> cats & mice", "", &[], 5, 0),
        }
    }

    fn all(&self) -> Vec<&SearchDocument> {
        vec![&self.cats, &self.dogs, &self.kids, &self.chinese, &self.script]
    }
}

fn id(document: &SearchDocument) -> String {
    document.id()
}

async fn conformance(index: &(impl SearchIndex + SearchWriter)) {
    let library = Library::new();
    let mut changes: Vec<IndexChange> = library.all().into_iter().cloned().map(IndexChange::Put).collect();
    let alice = SearchDocument::User {
        user_id: Uuid::now_v7(),
        username: "alice_wonder".into(),
        display_name: Some("Alice Liddell".into()),
        bio: Some("I film my cats".into()),
        created_at: DAY,
        followers: 0,
    };
    let bob =
        SearchDocument::User { user_id: Uuid::now_v7(), username: "bob".into(), display_name: None, bio: None, created_at: 2 * DAY, followers: 0 };
    changes.push(IndexChange::Put(alice.clone()));
    changes.push(IndexChange::Put(bob.clone()));
    changes.push(IndexChange::Put(SearchDocument::Hashtag { name: "summer".into(), created_at: DAY, videos: 3 }));
    changes.push(IndexChange::Put(SearchDocument::Hashtag { name: "summertime".into(), created_at: DAY, videos: 9 }));
    index.apply(changes, 42).await.unwrap();
    assert_eq!(index.position().await.unwrap(), 42);

    // English words, every one must match, in any field.
    assert_eq!(videos(index, "funny cats").await[0], id(&library.cats));
    assert_eq!(videos(index, "sunny park").await, vec![id(&library.dogs)], "words from the description");
    assert!(videos(index, "funny horses").await.is_empty(), "every word must match");
    assert_eq!(videos(index, "funny dogs").await, vec![id(&library.dogs)], "funny is one edit from sunny, in its description");
    // Chinese, segmented: `搞笑视频` finds `超级搞笑的猫咪视频`.
    assert_eq!(videos(index, "搞笑视频").await, vec![id(&library.chinese)]);
    assert_eq!(videos(index, "猫咪").await, vec![id(&library.chinese)]);
    // One typo in a word of 5+ letters; none in a shorter one.
    assert_eq!(videos(index, "compilaton").await, vec![id(&library.cats)]);
    assert_eq!(videos(index, "fetvh dogs").await, vec![id(&library.dogs)], "fetvh is one edit from fetch (5 letters)");
    assert!(videos(index, "dgs playing").await.is_empty(), "no typo in a 3-letter word");
    // The last word is a prefix.
    assert_eq!(videos(index, "compil").await, vec![id(&library.cats)]);
    assert_eq!(videos(index, "funny ca").await, vec![id(&library.cats)]);
    assert!(videos(index, "compil funny").await.is_empty(), "only the last word is a prefix");
    // Sorts.
    let cats = |sort| found(index, "cats", SearchKind::Videos, sort);
    assert_eq!(cats(SearchSort::Newest).await, vec![id(&library.script), id(&library.kids), id(&library.cats)]);
    assert_eq!(cats(SearchSort::MostLiked).await, vec![id(&library.cats), id(&library.kids), id(&library.script)]);
    let relevance = index.search(request("cats", SearchKind::Videos, SearchSort::Relevance)).await.unwrap();
    assert!(relevance.hits.windows(2).all(|w| w[0].score >= w[1].score), "best first: {relevance:?}");
    // Since.
    let recent = SearchRequest { since: Some(3 * DAY), ..request("cats", SearchKind::Videos, SearchSort::Newest) };
    assert_eq!(index.search(recent).await.unwrap().hits.len(), 2);
    // Pages.
    let page = |offset, first| SearchRequest { offset, first, ..request("cats", SearchKind::Videos, SearchSort::Newest) };
    let SearchPage { hits, total, more } = index.search(page(1, 1)).await.unwrap();
    assert_eq!((hits.len(), total, more), (1, Some(3), true));
    let uncounted = index.search(SearchRequest { count: false, ..page(1, 2) }).await.unwrap();
    assert_eq!((uncounted.hits.len(), uncounted.total, uncounted.more), (2, None, false));
    assert_eq!(hits[0].id, id(&library.kids));
    assert!(index.search(page(3, 20)).await.unwrap().hits.is_empty());
    // Highlights: matched words in <em>, everything HTML escaped.
    let script = index.search(request("mice", SearchKind::Videos, SearchSort::Relevance)).await.unwrap();
    let title = &script.hits[0].highlights[0];
    assert_eq!(title.field, "title");
    assert_eq!(title.fragment, "&lt;script&gt;alert(1)&lt;/script&gt; cats &amp; <em>mice</em>");
    let typo = index.search(request("compilaton", SearchKind::Videos, SearchSort::Relevance)).await.unwrap();
    assert_eq!(typo.hits[0].highlights[0].fragment, "Funny cats <em>compilation</em>", "a fuzzy match is highlighted too");
    let chinese = index.search(request("搞笑视频", SearchKind::Videos, SearchSort::Relevance)).await.unwrap();
    assert!(chinese.hits[0].highlights[0].fragment.contains("<em>搞笑</em>"), "{chinese:?}");
    // Query syntax is text; punctuation alone finds nothing.
    assert!(videos(index, "title:(cats) AND -dogs*").await.is_empty());
    assert!(videos(index, "!!!").await.is_empty());
    // Users and hashtags.
    let users = |query| found(index, query, SearchKind::Users, SearchSort::Relevance);
    assert_eq!(users("alice").await, vec![id(&alice)], "the username's words");
    assert_eq!(users("liddell").await, vec![id(&alice)], "the display name");
    assert_eq!(users("bo").await, vec![id(&bob)], "a prefix");
    assert!(users("funny").await.is_empty(), "users are not videos");
    // Exact matches come first, then those that need a typo or a prefix (each in order).
    assert_eq!(found(index, "summer", SearchKind::Hashtags, SearchSort::MostLiked).await, vec!["summer", "summertime"]);
    assert_eq!(found(index, "summe", SearchKind::Hashtags, SearchSort::MostLiked).await, vec!["summertime", "summer"]);
    let second_tier = SearchRequest { offset: 1, first: 1, ..request("summer", SearchKind::Hashtags, SearchSort::MostLiked) };
    let SearchPage { hits, total, more } = index.search(second_tier).await.unwrap();
    assert_eq!((hits[0].id.as_str(), total, more), ("summertime", Some(2), false), "a page starting in the second tier");

    // An edited title is found by its new words only; a deleted video by none.
    let SearchDocument::Video { video_id, author_id, .. } = library.dogs.clone() else { unreachable!() };
    let edited = SearchDocument::Video {
        video_id,
        author_id,
        title: "Puppies at the beach".into(),
        description: String::new(),
        hashtags: vec![],
        created_at: 2 * DAY,
        likes: 500,
    };
    index.apply(vec![IndexChange::Put(edited), IndexChange::Delete { kind: SearchKind::Videos, id: id(&library.cats) }], 43).await.unwrap();
    assert!(videos(index, "fetch").await.is_empty());
    assert_eq!(videos(index, "puppies beach").await, vec![video_id.to_string()]);
    let mut cats = videos(index, "cats").await;
    cats.sort();
    let mut expected = vec![id(&library.kids), id(&library.script)];
    expected.sort();
    assert_eq!(cats, expected, "the deleted video is gone");
    assert!(!videos(index, "compilation").await.contains(&id(&library.cats)));
    assert_eq!(index.position().await.unwrap(), 43);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tantivy_answers_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let index = TantivySearch::open(dir.path()).unwrap();
    conformance(&index).await;
    drop(index);
    // The checkpoint and the documents survive a reopen.
    let index = TantivySearch::open(dir.path()).unwrap();
    assert_eq!(index.position().await.unwrap(), 43);
    assert_eq!(videos(&index, "puppies").await.len(), 1);
}

/// Completions of a typed prefix: titles, usernames and hashtags whose text starts with
/// it (folded), most popular first; deleted objects are not suggested.
async fn suggestions(index: &(impl SearchIndex + SearchWriter)) {
    let user = |username: &str, followers| SearchDocument::User {
        user_id: Uuid::now_v7(),
        username: username.into(),
        display_name: None,
        bio: None,
        created_at: DAY,
        followers,
    };
    let gone = video("Funny hats", "", &[], 1, 900);
    let long = "A very long title that goes on past the indexed prefix, about cats";
    let changes = vec![
        IndexChange::Put(video("Funny cats compilation", "", &[], 1, 50)),
        IndexChange::Put(video("FUNNY  Dogs", "", &[], 2, 500)),
        IndexChange::Put(video("Fun facts", "", &[], 3, 5)),
        IndexChange::Put(video("超级搞笑的猫咪视频", "", &[], 4, 20)),
        IndexChange::Put(video(long, "", &[], 5, 1)),
        IndexChange::Put(video("A very long title that goes on past the indexed prefix, about dogs", "", &[], 5, 2)),
        IndexChange::Put(gone.clone()),
        IndexChange::Put(user("funnyguy", 70)),
        IndexChange::Put(user("bob", 1000)),
        IndexChange::Put(SearchDocument::Hashtag { name: "funny".into(), created_at: DAY, videos: 60 }),
    ];
    index.apply(changes, 7).await.unwrap();
    index.apply(vec![IndexChange::Delete { kind: SearchKind::Videos, id: gone.id() }], 8).await.unwrap();
    let texts = |prefix: &'static str, first| async move {
        let found = index.suggest(&normalize_query(prefix).unwrap(), first).await.unwrap();
        found.into_iter().map(|s| (s.text, s.kind, s.popularity)).collect::<Vec<_>>()
    };
    assert_eq!(
        texts("Funny", 10).await,
        vec![
            ("FUNNY  Dogs".to_owned(), SearchKind::Videos, 500),
            ("funnyguy".to_owned(), SearchKind::Users, 70),
            ("funny".to_owned(), SearchKind::Hashtags, 60),
            ("Funny cats compilation".to_owned(), SearchKind::Videos, 50),
        ],
        "folded, most popular first, the deleted video left out"
    );
    assert_eq!(texts("fun", 2).await.len(), 2);
    assert_eq!(texts("funny d", 10).await, vec![("FUNNY  Dogs".to_owned(), SearchKind::Videos, 500)], "white space folded");
    assert_eq!(texts("超级搞笑", 10).await[0].0, "超级搞笑的猫咪视频");
    let beyond = texts("a very long title that goes on past the indexed prefix, about c", 10).await;
    assert_eq!(beyond, vec![(long.to_owned(), SearchKind::Videos, 1)], "a prefix longer than the indexed ones is compared");
    assert!(texts("zebra", 10).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tantivy_suggests_completions() {
    let dir = tempfile::tempdir().unwrap();
    suggestions(&TantivySearch::open(dir.path()).unwrap()).await;
}

/// Generations: a rebuild fills a new index beside the serving one, which the serving
/// side takes up once it is published; an index of another version is built anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_index_is_taken_up() {
    let dir = tempfile::tempdir().unwrap();
    let serving = TantivySearch::open(dir.path()).unwrap();
    serving.apply(vec![IndexChange::Put(video("Old cats", "", &[], 1, 0))], 5).await.unwrap();
    assert!(!serving.take_up_rebuilt().await.unwrap(), "nothing rebuilt yet");

    let (rebuilt, lock) = TantivySearch::rebuild(dir.path()).unwrap().expect("no other rebuild");
    assert!(TantivySearch::rebuild(dir.path()).unwrap().is_none(), "one rebuild at a time");
    let new = video("New cats", "", &[], 2, 0);
    rebuilt.apply(vec![IndexChange::Put(new.clone())], 9).await.unwrap();
    assert!(!serving.take_up_rebuilt().await.unwrap(), "not before it is published");
    assert_eq!(videos(&serving, "cats").await.len(), 1);
    let name = rebuilt.publish().unwrap();
    drop(lock);

    let old_directory = serving.directory();
    assert!(serving.take_up_rebuilt().await.unwrap());
    assert_eq!((videos(&serving, "cats").await, serving.position().await.unwrap()), (vec![id(&new)], 9));
    assert!(serving.directory().ends_with(&name) && !old_directory.exists(), "the old index is deleted");
    assert!(!serving.take_up_rebuilt().await.unwrap());
    drop(serving);

    // A generation of another version (an older binary's) is not opened: a new one is.
    std::fs::write(dir.path().join("CURRENT"), "v1-1").unwrap();
    std::fs::create_dir(dir.path().join("v1-1")).unwrap();
    let reopened = TantivySearch::open(dir.path()).unwrap();
    assert_eq!(reopened.position().await.unwrap(), 0, "built anew from the events");
    assert!(!dir.path().join("v1-1").exists());
}

mod projection {
    use std::sync::Arc;
    use std::time::Duration;

    use chrono::Utc;
    use plaza_domain::search::{SearchIndex, SearchKind, SearchSort, SearchWriter};
    use plaza_domain::{Event, EventStore, ExpectedVersion, Metadata, NewEvent};
    use plaza_infra::sqlite::SqliteEventStore;
    use plaza_infra::tantivy::TantivySearch;
    use plaza_projections::search::SearchProjector;
    use tokio::sync::watch;
    use uuid::Uuid;

    use super::found;

    pub async fn append(store: &dyn EventStore, stream: &str, event: Event) {
        let new = NewEvent::new(Uuid::now_v7(), &event, Metadata::default(), Utc::now());
        store.append(stream, ExpectedVersion::Any, vec![new]).await.unwrap();
    }

    pub async fn publish(store: &dyn EventStore, author_id: Uuid, title: &str, hashtags: &[&str]) -> Uuid {
        let video_id = Uuid::now_v7();
        let event = Event::VideoPublished {
            video_id,
            author_id,
            title: title.into(),
            description: String::new(),
            media_url: "https://cdn.example/v.mp4".into(),
            hashtags: hashtags.iter().map(|h| h.to_string()).collect(),
        };
        append(store, &format!("video-{video_id}"), event).await;
        video_id
    }

    pub async fn like(store: &dyn EventStore, video_id: Uuid, times: usize) {
        for _ in 0..times {
            let user_id = Uuid::now_v7();
            append(store, &format!("like-{video_id}-{user_id}"), Event::VideoLiked { video_id, user_id }).await;
        }
    }

    /// The search projection keeps documents as the events leave them, across batches
    /// and restarts: edits, deletions, likes, hashtag counts and profiles. `open` opens
    /// the same index each time.
    pub async fn follows_the_events<I: SearchIndex + SearchWriter + 'static>(open: impl AsyncFn() -> I) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).unwrap());
        let index = Arc::new(open().await);
        let user_id = Uuid::now_v7();
        let registered = Event::UserRegistered { user_id, username: "alice".into(), email: "a@example.com".into(), password_hash: "h".into() };
        append(&*store, &format!("user-{user_id}"), registered).await;
        let profile = Event::ProfileUpdated { user_id, display_name: Some("Alice Liddell".into()), bio: Some("cat person".into()), avatar_url: None };
        append(&*store, &format!("user-{user_id}"), profile).await;
        let edited = publish(&*store, user_id, "Funny cats", &["cats", "funny"]).await;
        let deleted = publish(&*store, user_id, "Cat tricks", &["cats"]).await;
        let fewer = publish(&*store, user_id, "Cats again", &["cats"]).await;
        let more = publish(&*store, user_id, "Cats forever", &["cats"]).await;
        like(&*store, fewer, 2).await;
        like(&*store, more, 5).await;
        like(&*store, deleted, 9).await;
        let update = Event::VideoUpdated {
            video_id: edited,
            author_id: user_id,
            title: "Hilarious kittens".into(),
            description: String::new(),
            hashtags: vec!["kittens".into()],
        };
        append(&*store, &format!("video-{edited}"), update).await;
        append(&*store, &format!("video-{deleted}"), Event::VideoDeleted { video_id: deleted, author_id: user_id }).await;
        let page = Event::HashtagCreated { name: "summer".into(), description: None, created_by: user_id };
        append(&*store, "hashtag-summer", page).await;

        // Small batches: documents are read back from the index between them.
        let head = store.head().await.unwrap();
        assert_eq!(SearchProjector::new(index.clone(), store.clone()).with_batch_size(3).catch_up().await.unwrap(), head);
        assert_eq!(index.position().await.unwrap(), head);

        let videos = |query: &'static str, sort| found(&*index, query, SearchKind::Videos, sort);
        assert_eq!(videos("cats", SearchSort::MostLiked).await, vec![more.to_string(), fewer.to_string()], "edited and deleted are gone");
        assert_eq!(videos("kittens", SearchSort::Relevance).await, vec![edited.to_string()]);
        assert!(videos("funny", SearchSort::Relevance).await.is_empty());
        assert_eq!(found(&*index, "liddell", SearchKind::Users, SearchSort::Relevance).await, vec![user_id.to_string()]);
        let hashtags = found(&*index, "cats kittens summer funny", SearchKind::Hashtags, SearchSort::Relevance).await;
        assert!(hashtags.is_empty(), "one hashtag matches every word or none");
        let counts = |name: &'static str| {
            let index = index.clone();
            async move {
                match index.get(SearchKind::Hashtags, name).await.unwrap() {
                    Some(plaza_domain::search::SearchDocument::Hashtag { videos, .. }) => videos,
                    other => panic!("{name}: {other:?}"),
                }
            }
        };
        assert_eq!((counts("cats").await, counts("kittens").await, counts("funny").await, counts("summer").await), (2, 1, 0, 0));

        // A restart goes on from the index's position.
        like(&*store, fewer, 4).await;
        drop(index);
        let index = Arc::new(open().await);
        SearchProjector::new(index.clone(), store.clone()).catch_up().await.unwrap();
        let videos = |query: &'static str, sort| found(&*index, query, SearchKind::Videos, sort);
        assert_eq!(videos("cats", SearchSort::MostLiked).await, vec![fewer.to_string(), more.to_string()]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_search_projection_follows_the_events() {
        let dir = tempfile::tempdir().unwrap();
        follows_the_events(async || TantivySearch::open(dir.path()).unwrap()).await;
    }

    /// While events keep coming, the projector applies a batch once a second (here once
    /// an hour), unless a reader waits for a position it has not applied (a consistency
    /// token): then the next batch is applied at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_reader_hurries_the_next_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).unwrap());
        let index = Arc::new(TantivySearch::open(&dir.path().join("search")).unwrap());
        let projector = SearchProjector::new(index.clone(), store.clone()).with_commit_every(Duration::from_secs(3600));
        let (mut applied, hurry) = (projector.applied(), projector.hurry());
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(projector.run(shutdown));
        let wait = Duration::from_secs(60);

        // Idle, it applies at once; then it waits before the next batch.
        let video = publish(&*store, Uuid::now_v7(), "Cats", &[]).await;
        let published = store.head().await.unwrap();
        tokio::time::timeout(wait, applied.wait_for(|&at| at >= published)).await.expect("an idle projector applies at once").unwrap();
        like(&*store, video, 1).await;
        let liked = store.head().await.unwrap();
        hurry.notify_one();
        tokio::time::timeout(wait, applied.wait_for(|&at| at >= liked)).await.expect("a hurried projector applies the next batch").unwrap();
        assert_eq!(found(&*index, "cats", SearchKind::Videos, SearchSort::MostLiked).await, vec![video.to_string()]);
        stop.send(true).unwrap();
        task.await.unwrap();
    }
}

/// The search projection fed from the events topic (a real broker, tansu) leaves the
/// same documents as the projector tailing the store, however the partitions come in,
/// and across a restart of the feed.
mod kafka {
    use std::sync::Arc;
    use std::time::Duration;

    use plaza_domain::search::{SearchKind, SearchWriter};
    use plaza_domain::{Event, EventStore};
    use plaza_infra::kafka::{KafkaSearchFeed, KafkaSettings, Relay, ensure_topic};
    use plaza_infra::postgres::PgEventStore;
    use plaza_infra::tantivy::TantivySearch;
    use plaza_projections::search::SearchProjector;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    use tokio::sync::watch;
    use uuid::Uuid;

    use super::common::{self, broker::Broker};
    use super::projection::{append, like, publish};

    /// Starts a feed into the index in `dir`, which runs until `stop` turns true.
    fn start_feed(dir: &std::path::Path, settings: &KafkaSettings, store: Option<Arc<PgEventStore>>) -> Feed {
        let index = Arc::new(TantivySearch::open(dir).unwrap());
        let mut feed = KafkaSearchFeed::new(index, settings).with_batch_size(7);
        if let Some(store) = store {
            feed = feed.with_store(store);
        }
        let applied = feed.applied();
        let (stop, shutdown) = watch::channel(false);
        Feed { stop, task: tokio::spawn(feed.run(shutdown)), applied }
    }

    struct Feed {
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
        applied: watch::Receiver<u64>,
    }

    impl Feed {
        /// Waits until the feed has applied `head`, then stops it.
        async fn stop_at(mut self, head: u64) {
            let applied = self.applied.wait_for(|&at| at >= head);
            tokio::time::timeout(Duration::from_secs(90), applied).await.expect("the feed applies the events in time").unwrap();
            self.stop.send(true).unwrap();
            self.task.await.unwrap();
        }
    }

    /// The feed's consumer group has committed an offset for every partition, noting the
    /// index's position `head` where the broker keeps such notes (tansu keeps none).
    async fn committed(settings: &KafkaSettings, head: u64) {
        let consumer: BaseConsumer =
            ClientConfig::new().set("bootstrap.servers", &settings.brokers).set("group.id", format!("{}.search", settings.topic)).create().unwrap();
        let mut wanted = TopicPartitionList::new();
        for partition in 0..settings.partitions {
            wanted.add_partition(&settings.topic, partition);
        }
        let mut notes = Vec::new();
        for _ in 0..50 {
            let committed = consumer.committed_offsets(wanted.clone(), Duration::from_secs(10)).unwrap();
            notes = committed.elements().iter().map(|e| (e.offset(), e.metadata().to_owned())).collect();
            if notes.iter().all(|(offset, note)| matches!(offset, Offset::Offset(_)) && (note.is_empty() || *note == head.to_string())) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("committed: {notes:?}, head {head}");
    }

    /// Every document in `fed` is as in `reference`.
    async fn same_documents(fed: &dyn SearchWriter, reference: &dyn SearchWriter, ids: &[(SearchKind, String)]) {
        for (kind, id) in ids {
            assert_eq!(fed.get(*kind, id).await.unwrap(), reference.get(*kind, id).await.unwrap(), "{kind:?} {id}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_search_feed_merges_the_partitions_back_into_order() {
        let broker = Broker::start();
        let store = Arc::new(PgEventStore::connect(&common::fresh_database().await).await.unwrap());
        let settings = KafkaSettings { brokers: broker.brokers(), topic: format!("plaza-test-{}", Uuid::new_v4().simple()), partitions: 4 };
        ensure_topic(&settings).await.unwrap();
        let (stop_relay, shutdown) = watch::channel(false);
        let relay = Relay::new(&settings, store.clone(), store.clone()).unwrap();
        let relay = tokio::spawn(async move { relay.run(shutdown).await });

        // Users who follow each other, videos sharing hashtags (counted from every
        // video's partition), likes, an edit that moves hashtags and a deletion.
        let users: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
        let mut ids: Vec<(SearchKind, String)> = Vec::new();
        for (n, &user_id) in users.iter().enumerate() {
            let registered =
                Event::UserRegistered { user_id, username: format!("user{n}"), email: format!("u{n}@example.com"), password_hash: "h".into() };
            append(&*store, &format!("user-{user_id}"), registered).await;
            ids.push((SearchKind::Users, user_id.to_string()));
        }
        for (n, &follower_id) in users.iter().enumerate() {
            for &followee_id in &users[..n] {
                append(&*store, &format!("follow-{follower_id}-{followee_id}"), Event::UserFollowed { follower_id, followee_id }).await;
            }
        }
        let mut videos = Vec::new();
        for n in 0..12 {
            let tags: &[&str] = match n % 3 {
                0 => &["cats"],
                1 => &["cats", "funny"],
                _ => &["dogs", "funny"],
            };
            let video_id = publish(&*store, users[n % users.len()], &format!("video number {n}"), tags).await;
            like(&*store, video_id, n % 4).await;
            ids.push((SearchKind::Videos, video_id.to_string()));
            videos.push(video_id);
        }
        for tag in ["cats", "funny", "dogs", "kittens"] {
            ids.push((SearchKind::Hashtags, tag.to_owned()));
        }
        let update = Event::VideoUpdated {
            video_id: videos[1],
            author_id: users[1],
            title: "kittens now".into(),
            description: String::new(),
            hashtags: vec!["kittens".into()],
        };
        append(&*store, &format!("video-{}", videos[1]), update).await;
        append(&*store, &format!("video-{}", videos[2]), Event::VideoDeleted { video_id: videos[2], author_id: users[2] }).await;

        let dir = tempfile::tempdir().unwrap();
        let (fed, reference) = (dir.path().join("fed"), dir.path().join("reference"));
        start_feed(&fed, &settings, None).stop_at(store.head().await.unwrap()).await;
        committed(&settings, store.head().await.unwrap()).await;
        let index = TantivySearch::open(&reference).unwrap();
        SearchProjector::new(Arc::new(index), store.clone()).catch_up().await.unwrap();
        {
            let (fed, reference) = (TantivySearch::open(&fed).unwrap(), TantivySearch::open(&reference).unwrap());
            same_documents(&fed, &reference, &ids).await;
            assert_eq!(fed.position().await.unwrap(), store.head().await.unwrap());
        }

        // A restart goes on from the committed offsets (after catching up from the store,
        // which has nothing new): nothing counted twice.
        let feed = start_feed(&fed, &settings, Some(store.clone()));
        for &video_id in &videos[3..6] {
            like(&*store, video_id, 3).await;
        }
        feed.stop_at(store.head().await.unwrap()).await;
        let reference = Arc::new(TantivySearch::open(&reference).unwrap());
        SearchProjector::new(reference.clone(), store.clone()).catch_up().await.unwrap();
        same_documents(&TantivySearch::open(&fed).unwrap(), &*reference, &ids).await;
        match reference.get(SearchKind::Hashtags, "funny").await.unwrap() {
            Some(plaza_domain::search::SearchDocument::Hashtag { videos, .. }) => assert_eq!(videos, 6, "8 videos, one edited away, one deleted"),
            other => panic!("{other:?}"),
        }

        stop_relay.send(true).unwrap();
        relay.await.unwrap().unwrap();
    }
}

/// The same suites on Elasticsearch, each test in indices of its own (a random prefix),
/// deleted when it passes. Skipped without `PLAZA_TEST_ELASTICSEARCH_URL`.
#[cfg(feature = "elasticsearch")]
mod elasticsearch {
    use plaza_domain::search::{IndexChange, SearchDocument, SearchKind, SearchWriter};
    use plaza_infra::elasticsearch::ElasticsearchSearch;
    use uuid::Uuid;

    use super::{conformance, projection, suggestions, video, videos};

    /// The server to test against, if one is named.
    fn server() -> Option<String> {
        let url = std::env::var("PLAZA_TEST_ELASTICSEARCH_URL").ok().filter(|url| !url.is_empty());
        if url.is_none() {
            eprintln!("elasticsearch: SKIPPED (set PLAZA_TEST_ELASTICSEARCH_URL=http://host:9200 to run it)");
        }
        url
    }

    fn prefix() -> String {
        format!("plaza-test-{}", Uuid::new_v4().simple())
    }

    /// The client the search projector writes with, on a first deployment.
    async fn writer(url: &str, prefix: &str) -> ElasticsearchSearch {
        ElasticsearchSearch::open(url, prefix).await.unwrap().writer().await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn elasticsearch_answers_the_conformance_suite() {
        let Some(url) = server() else { return };
        let prefix = prefix();
        let index = writer(&url, &prefix).await;
        conformance(&index).await;
        // A reader, through the alias, finds the checkpoint and the documents.
        let reader = ElasticsearchSearch::open(&url, &prefix).await.unwrap();
        assert_eq!(reader.position().await.unwrap(), 43);
        assert_eq!(videos(&reader, "puppies").await.len(), 1);
        index.delete_index().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn elasticsearch_suggests_completions() {
        let Some(url) = server() else { return };
        let index = writer(&url, &prefix()).await;
        suggestions(&index).await;
        index.delete_index().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_search_projection_follows_the_events() {
        let Some(url) = server() else { return };
        let prefix = prefix();
        projection::follows_the_events(async || writer(&url, &prefix).await).await;
        writer(&url, &prefix).await.delete_index().await.unwrap();
    }

    /// A batch applied again, or late, leaves newer documents and the checkpoint alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_older_batch_never_overwrites_a_newer_document() {
        let Some(url) = server() else { return };
        let index = writer(&url, &prefix()).await;
        let newer = video("Newer title", "", &[], 1, 0);
        let mut older = newer.clone();
        let SearchDocument::Video { video_id, title, .. } = &mut older else { unreachable!() };
        let video_id = *video_id;
        *title = "Older title".into();
        index.apply(vec![IndexChange::Put(newer.clone())], 10).await.unwrap();
        index.apply(vec![IndexChange::Put(newer.clone())], 10).await.unwrap();
        index.apply(vec![IndexChange::Put(older)], 5).await.unwrap();
        index.apply(vec![IndexChange::Delete { kind: SearchKind::Videos, id: video_id.to_string() }], 7).await.unwrap();
        assert_eq!(index.get(SearchKind::Videos, &video_id.to_string()).await.unwrap(), Some(newer));
        assert_eq!(index.position().await.unwrap(), 10);
        assert_eq!(videos(&index, "newer").await, vec![video_id.to_string()]);
        assert!(videos(&index, "older").await.is_empty());
        index.delete_index().await.unwrap();
    }

    /// A rebuild fills a new index while searches go on in the old one; the search
    /// projector takes it up when published, then moves the search alias at once and
    /// deletes the old index.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rebuild_is_taken_up_then_swapped_in() {
        let Some(url) = server() else { return };
        let prefix = prefix();
        let reader = ElasticsearchSearch::open(&url, &prefix).await.unwrap();
        let live = reader.writer().await.unwrap();
        let old_index = live.index();
        let old = video("Alpha", "", &[], 1, 0);
        live.apply(vec![IndexChange::Put(old.clone())], 3).await.unwrap();
        assert!(!live.take_up_rebuilt().await.unwrap(), "nothing rebuilt");

        let left = reader.rebuilding().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let rebuild = reader.rebuilding().await.unwrap();
        assert_ne!(left.index(), rebuild.index());
        assert!(left.create_index().await.unwrap(), "an interrupted rebuild's index is deleted by the next rebuild");
        left.delete_index().await.unwrap();
        let new = video("Beta", "", &[], 1, 0);
        rebuild.apply(vec![IndexChange::Put(new.clone())], 4).await.unwrap();
        assert_eq!(videos(&reader, "alpha").await, vec![old.id()], "searches still go to the old index");
        assert_eq!(rebuild.position().await.unwrap(), 4, "a get sees the bulk before any refresh");
        rebuild.publish().await.unwrap();

        assert!(live.take_up_rebuilt().await.unwrap(), "the projector switches to the rebuilt index");
        assert_eq!(live.index(), rebuild.index());
        assert_eq!((live.position().await.unwrap(), reader.position().await.unwrap()), (4, 3), "searches still see the old one");
        assert!(!live.take_up_rebuilt().await.unwrap());
        assert_eq!(reader.alias_targets().await.unwrap(), vec![rebuild.index()]);
        assert_eq!(reader.position().await.unwrap(), 4);
        assert_eq!(videos(&reader, "beta").await, vec![new.id()]);
        assert!(videos(&reader, "alpha").await.is_empty());
        assert!(live.with_index(&old_index).create_index().await.unwrap(), "the old index was deleted");
        live.with_index(&old_index).delete_index().await.unwrap();
        live.delete_index().await.unwrap();
    }
}

/// Without the `elasticsearch` feature, a configured shared search engine is refused
/// with the way to get one, not ignored.
#[cfg(not(feature = "elasticsearch"))]
#[tokio::test]
async fn a_shared_search_engine_needs_the_elasticsearch_feature() {
    let config = plaza_infra::Config { search_url: "http://127.0.0.1:9200".into(), ..Default::default() };
    let error = plaza_infra::open_shared_search(&config).await.err().expect("refused").to_string();
    assert!(error.contains("--features elasticsearch"), "{error}");
}
