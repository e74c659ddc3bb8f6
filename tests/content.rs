//! End-to-end: videos, likes, favorites, comments, hashtags, views and counters, from
//! REST command to GraphQL, on every profile.

mod common;

use std::collections::HashSet;

use common::{Plaza, Profile};
use serde_json::{Value, json};

fn publish(plaza: &Plaza, token: &str, title: &str, description: &str, hashtags: &[&str]) -> (String, u64) {
    let body = json!({ "title": title, "description": description, "media_url": "https://cdn.example.com/v.mp4", "hashtags": hashtags });
    let reply = plaza.send("POST", "/api/v1/videos", Some(body), Some(token), &[]);
    assert_eq!(reply.status, 201, "{}", reply.body);
    (reply.body["video_id"].as_str().unwrap().to_owned(), reply.position())
}

const VIDEO: &str = "query($id: ID!) { video(id: $id) {
    id title description mediaUrl hashtags likeCount favoriteCount commentCount viewCount createdAt
    viewerHasLiked viewerHasFavorited author { id username }
} }";

fn video(plaza: &Plaza, id: &str, token: Option<&str>, position: u64) -> Value {
    plaza.graphql(VIDEO, json!({ "id": id }), token, position)["video"].clone()
}

/// Every page of a connection query (`$first`, `$after`); returns the node ids in order
/// and the total count.
fn all_pages(plaza: &Plaza, query: &str, field: &str, mut variables: Value, position: u64) -> (Vec<String>, i64) {
    let (mut ids, mut after, mut total) = (Vec::new(), Value::Null, 0);
    loop {
        variables["after"] = after;
        variables["first"] = json!(2);
        let data = plaza.graphql(query, variables.clone(), None, position);
        let connection = &data[field];
        total = connection["totalCount"].as_i64().unwrap_or(total);
        ids.extend(connection["edges"].as_array().unwrap().iter().map(|e| e["node"]["id"].as_str().unwrap().to_owned()));
        if !connection["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            return (ids, total);
        }
        after = connection["pageInfo"]["endCursor"].clone();
    }
}

const VIDEOS_BY: &str = "query($id: ID!, $first: Int, $after: String) {
    videos(authorId: $id, first: $first, after: $after) { totalCount edges { node { id } } pageInfo { hasNextPage endCursor } } }";

fn videos_are_published_edited_and_deleted_by_their_author(profile: Profile) {
    let plaza = Plaza::start(profile);
    let (alice, alice_token, _) = plaza.register("alice");
    let (_, bob_token, _) = plaza.register("bob");

    let anonymous = plaza.send("POST", "/api/v1/videos", Some(json!({ "title": "x", "media_url": "https://x.org/v.mp4" })), None, &[]);
    assert_eq!((anonymous.status, anonymous.code()), (401, "unauthenticated"));
    for bad in [json!({ "title": " ", "media_url": "https://x.org/v.mp4" }), json!({ "title": "ok", "media_url": "ftp://x.org/v" })] {
        let reply = plaza.send("POST", "/api/v1/videos", Some(bad), Some(&alice_token), &[]);
        assert_eq!((reply.status, reply.code()), (400, "invalid_video"), "{}", reply.body);
    }
    let reply = plaza.send(
        "POST",
        "/api/v1/videos",
        Some(json!({ "title": "ok", "media_url": "https://x.org/v", "hashtags": ["no spaces"] })),
        Some(&alice_token),
        &[],
    );
    assert_eq!((reply.status, reply.code()), (400, "invalid_hashtag"));

    let (first, _) = publish(&plaza, &alice_token, "First", "my #Cat video", &["pets"]);
    let mut ids = vec![first.clone()];
    let mut position = 0;
    for i in 0..4 {
        let (id, at) = publish(&plaza, &alice_token, &format!("Video {i}"), "", &[]);
        ids.push(id);
        position = at;
    }
    let shown = video(&plaza, &first, None, position);
    assert_eq!(shown["title"], "First");
    assert_eq!(shown["hashtags"], json!(["pets", "cat"]));
    assert_eq!(shown["author"]["id"], alice.as_str());
    assert_eq!((shown["likeCount"].as_i64(), shown["viewCount"].as_i64()), (Some(0), Some(0)));

    let path = format!("/api/v1/videos/{first}");
    let edit = json!({ "title": "First, edited", "description": "now #dogs" });
    let reply = plaza.send("PUT", &path, Some(edit.clone()), Some(&bob_token), &[]);
    assert_eq!((reply.status, reply.code()), (403, "forbidden"));
    let reply = plaza.send("PUT", &path, Some(edit), Some(&alice_token), &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let shown = video(&plaza, &first, None, reply.position());
    assert_eq!((shown["title"].as_str(), &shown["hashtags"]), (Some("First, edited"), &json!(["dogs"])));

    ids.reverse(); // newest first
    let (listed, total) = all_pages(&plaza, VIDEOS_BY, "videos", json!({ "id": alice }), position);
    assert_eq!((listed, total), (ids.clone(), 5));

    assert_eq!(plaza.send("DELETE", &path, None, Some(&bob_token), &[]).status, 403);
    let deleted = plaza.send("DELETE", &path, None, Some(&alice_token), &[]);
    assert_eq!(deleted.status, 200);
    let again = plaza.send("DELETE", &path, None, Some(&alice_token), &[]);
    assert_eq!((again.status, again.code()), (404, "video_not_found"));
    assert_eq!(plaza.send("PUT", "/api/v1/videos/not-a-uuid", Some(json!({ "title": "x" })), Some(&alice_token), &[]).status, 404);
    assert_eq!(video(&plaza, &first, None, deleted.position()), Value::Null);
    let (listed, total) = all_pages(&plaza, VIDEOS_BY, "videos", json!({ "id": alice }), deleted.position());
    assert_eq!((listed.len(), total), (4, 4));
    assert!(!listed.contains(&first));
}

const LIKED: &str = "query($id: ID!, $first: Int, $after: String) {
    likedVideos(userId: $id, first: $first, after: $after) { totalCount edges { node { id } } pageInfo { hasNextPage endCursor } } }";
const FAVORITES: &str = "query($id: ID!, $first: Int, $after: String) {
    favorites(userId: $id, first: $first, after: $after) { totalCount edges { node { id } } pageInfo { hasNextPage endCursor } } }";

fn likes_and_favorites_once_per_user(profile: Profile) {
    let plaza = Plaza::start(profile);
    let (_, author, _) = plaza.register("author");
    let (bob, bob_token, _) = plaza.register("bob");
    let (_, carol_token, _) = plaza.register("carol");
    let videos: Vec<String> = (0..3).map(|i| publish(&plaza, &author, &format!("V{i}"), "", &[]).0).collect();
    let react =
        |method: &str, what: &str, video: &str, token: &str| plaza.send(method, &format!("/api/v1/videos/{video}/{what}"), None, Some(token), &[]);

    assert_eq!(react("POST", "like", &videos[0], "").status, 401);
    let mut position = 0;
    for video in &videos {
        position = react("POST", "like", video, &bob_token).position();
    }
    let twice = react("POST", "like", &videos[0], &bob_token);
    assert_eq!((twice.status, twice.code()), (409, "already_liked"));
    let carol_liked = react("POST", "like", &videos[0], &carol_token);
    assert_eq!(carol_liked.status, 200);
    let fav = react("POST", "favorite", &videos[1], &bob_token);
    assert_eq!(fav.status, 200);
    let fav_twice = react("POST", "favorite", &videos[1], &bob_token);
    assert_eq!((fav_twice.status, fav_twice.code()), (409, "already_favorited"));
    let not_fav = react("DELETE", "favorite", &videos[0], &bob_token);
    assert_eq!((not_fav.status, not_fav.code()), (409, "not_favorited"));
    let unknown = react("POST", "like", &uuid::Uuid::new_v4().to_string(), &bob_token);
    assert_eq!((unknown.status, unknown.code()), (404, "video_not_found"));
    position = position.max(fav.position()).max(carol_liked.position());

    let shown = video(&plaza, &videos[0], Some(&bob_token), position);
    assert_eq!(
        (shown["likeCount"].as_i64(), shown["viewerHasLiked"].as_bool(), shown["viewerHasFavorited"].as_bool()),
        (Some(2), Some(true), Some(false))
    );
    assert_eq!(video(&plaza, &videos[0], None, position)["viewerHasLiked"], false);
    let shown = video(&plaza, &videos[1], Some(&bob_token), position);
    assert_eq!((shown["favoriteCount"].as_i64(), shown["viewerHasFavorited"].as_bool()), (Some(1), Some(true)));

    let newest_first: Vec<String> = videos.iter().rev().cloned().collect();
    assert_eq!(all_pages(&plaza, LIKED, "likedVideos", json!({ "id": bob }), position), (newest_first, 3));
    assert_eq!(all_pages(&plaza, FAVORITES, "favorites", json!({ "id": bob }), position), (vec![videos[1].clone()], 1));

    let unliked = react("DELETE", "like", &videos[0], &bob_token);
    assert_eq!(unliked.status, 200);
    let not_liked = react("DELETE", "like", &videos[0], &bob_token);
    assert_eq!((not_liked.status, not_liked.code()), (409, "not_liked"));
    assert_eq!(video(&plaza, &videos[0], None, unliked.position())["likeCount"], 1);

    // A deleted video cannot be liked and leaves every list.
    let deleted = plaza.send("DELETE", &format!("/api/v1/videos/{}", videos[2]), None, Some(&author), &[]);
    assert_eq!(deleted.status, 200);
    let gone = react("POST", "like", &videos[2], &carol_token);
    assert_eq!((gone.status, gone.code()), (404, "video_not_found"));
    let (liked, total) = all_pages(&plaza, LIKED, "likedVideos", json!({ "id": bob }), deleted.position());
    assert_eq!((liked, total), (vec![videos[1].clone()], 1));
}

const COMMENTS: &str = "query($id: ID!, $first: Int, $after: String) {
    comments(videoId: $id, first: $first, after: $after) {
        totalCount pageInfo { hasNextPage endCursor }
        edges { node { id body likeCount replyCount author { username } replies(first: 10) { totalCount edges { node { id parentId } } } } }
    } }";

fn comments_nest_one_level_and_vanish_when_deleted(profile: Profile) {
    let plaza = Plaza::start(profile);
    let (_, author, _) = plaza.register("author");
    let (_, bob, _) = plaza.register("bob");
    let (_, carol, _) = plaza.register("carol");
    let (video_id, _) = publish(&plaza, &author, "Talk", "", &[]);
    let comment = |token: &str, body: Value| plaza.send("POST", &format!("/api/v1/videos/{video_id}/comments"), Some(body), Some(token), &[]);

    let empty = comment(&bob, json!({ "body": "  " }));
    assert_eq!((empty.status, empty.code()), (400, "invalid_comment"));
    let tops: Vec<String> = (0..3)
        .map(|i| {
            let reply = comment(&bob, json!({ "body": format!("top {i}") }));
            assert_eq!(reply.status, 201, "{}", reply.body);
            reply.body["comment_id"].as_str().unwrap().to_owned()
        })
        .collect();
    let reply = comment(&carol, json!({ "body": "a reply", "parent_id": tops[0] }));
    assert_eq!(reply.status, 201);
    let reply_id = reply.body["comment_id"].as_str().unwrap().to_owned();
    let nested = comment(&carol, json!({ "body": "too deep", "parent_id": reply_id }));
    assert_eq!((nested.status, nested.code()), (400, "invalid_parent"));
    let unknown_video =
        plaza.send("POST", &format!("/api/v1/videos/{}/comments", uuid::Uuid::new_v4()), Some(json!({ "body": "hi" })), Some(&bob), &[]);
    assert_eq!((unknown_video.status, unknown_video.code()), (404, "video_not_found"));

    let liked = plaza.send("POST", &format!("/api/v1/comments/{}/like", tops[0]), None, Some(&carol), &[]);
    assert_eq!(liked.status, 200);
    let twice = plaza.send("POST", &format!("/api/v1/comments/{}/like", tops[0]), None, Some(&carol), &[]);
    assert_eq!((twice.status, twice.code()), (409, "already_liked"));
    let position = liked.position();

    assert_eq!(video(&plaza, &video_id, None, position)["commentCount"], 4);
    let newest_first: Vec<String> = tops.iter().rev().cloned().collect();
    assert_eq!(all_pages(&plaza, COMMENTS, "comments", json!({ "id": video_id }), position), (newest_first, 3));
    let data = plaza.graphql(COMMENTS, json!({ "id": video_id, "first": 10 }), None, position);
    let oldest = data["comments"]["edges"].as_array().unwrap().last().unwrap()["node"].clone();
    assert_eq!((oldest["likeCount"].as_i64(), oldest["replyCount"].as_i64()), (Some(1), Some(1)));
    assert_eq!(oldest["replies"]["edges"][0]["node"]["id"], reply_id.as_str());
    assert_eq!(oldest["author"]["username"], "bob");

    // Only the comment's author or the video's author deletes it.
    let path = |id: &str| format!("/api/v1/comments/{id}");
    assert_eq!(plaza.send("DELETE", &path(&tops[1]), None, Some(&carol), &[]).status, 403);
    assert_eq!(plaza.send("DELETE", &path(&tops[1]), None, Some(&bob), &[]).status, 200);
    // Deleting a comment takes its replies along, in lists and in counts.
    let deleted = plaza.send("DELETE", &path(&tops[0]), None, Some(&author), &[]);
    assert_eq!(deleted.status, 200);
    let again = plaza.send("DELETE", &path(&tops[0]), None, Some(&author), &[]);
    assert_eq!((again.status, again.code()), (404, "comment_not_found"));
    assert_eq!(video(&plaza, &video_id, None, deleted.position())["commentCount"], 1);
    assert_eq!(all_pages(&plaza, COMMENTS, "comments", json!({ "id": video_id }), deleted.position()), (vec![tops[2].clone()], 1));
}

fn hashtags_have_pages_counts_and_lists(profile: Profile) {
    let plaza = Plaza::start(profile);
    let (_, token, _) = plaza.register("tagger");
    let page = plaza.send("POST", "/api/v1/hashtags", Some(json!({ "name": "#Cats", "description": "all the cats" })), Some(&token), &[]);
    assert_eq!(page.status, 201, "{}", page.body);
    assert_eq!(page.body["name"], "cats");
    let twice = plaza.send("POST", "/api/v1/hashtags", Some(json!({ "name": "cats" })), Some(&token), &[]);
    assert_eq!((twice.status, twice.code()), (409, "hashtag_exists"));
    let bad = plaza.send("POST", "/api/v1/hashtags", Some(json!({ "name": "two words" })), Some(&token), &[]);
    assert_eq!((bad.status, bad.code()), (400, "invalid_hashtag"));

    let mut cats = Vec::new();
    let mut position = 0;
    for i in 0..3 {
        let (id, at) = publish(&plaza, &token, &format!("Cat {i}"), "so #cute", &["cats"]);
        cats.push(id);
        position = at;
    }
    let (dog, at) = publish(&plaza, &token, "Dog", "a #cute dog", &[]);
    position = position.max(at);

    let data = plaza.graphql("{ hashtag(name: \"#CATS\") { name description videoCount } }", json!({}), None, position);
    assert_eq!(data["hashtag"], json!({ "name": "cats", "description": "all the cats", "videoCount": 3 }));
    let data = plaza.graphql("{ hashtag(name: \"cute\") { name description videoCount } }", json!({}), None, position);
    assert_eq!(data["hashtag"], json!({ "name": "cute", "description": null, "videoCount": 4 }));
    assert_eq!(plaza.graphql("{ hashtag(name: \"nothing\") { name } }", json!({}), None, position)["hashtag"], Value::Null);
    let hot = plaza.graphql("{ hotHashtags(first: 2) { name videoCount } }", json!({}), None, position);
    assert_eq!(hot["hotHashtags"], json!([{ "name": "cute", "videoCount": 4 }, { "name": "cats", "videoCount": 3 }]));

    const BY_TAG: &str = "query($name: String!, $first: Int, $after: String) {
        videosByHashtag(name: $name, first: $first, after: $after) { totalCount edges { node { id } } pageInfo { hasNextPage endCursor } } }";
    let newest_first: Vec<String> = cats.iter().rev().cloned().collect();
    assert_eq!(all_pages(&plaza, BY_TAG, "videosByHashtag", json!({ "name": "cats" }), position), (newest_first, 3));
    let deleted = plaza.send("DELETE", &format!("/api/v1/videos/{dog}"), None, Some(&token), &[]);
    let data = plaza.graphql("{ hashtag(name: \"cute\") { videoCount } }", json!({}), None, deleted.position());
    assert_eq!(data["hashtag"]["videoCount"], 3, "a deleted video leaves its hashtags' counts");
}

fn views_and_counters_add_up(profile: Profile) {
    let plaza = Plaza::start_with(profile, &[("PLAZA_RATE_LIMIT_IP_PER_SEC", "0")]);
    let (_, token, _) = plaza.register("viewer");
    let (video_id, _) = publish(&plaza, &token, "Watched", "", &[]);
    let mut last = 0;
    for expected in 1..=3 {
        let view = plaza.send("POST", &format!("/api/v1/videos/{video_id}/views"), None, None, &[]);
        assert_eq!(view.status, 200, "{}", view.body);
        assert_eq!(view.body["current_value"], expected);
        last = expected;
    }
    let unknown = plaza.send("POST", &format!("/api/v1/videos/{}/views", uuid::Uuid::new_v4()), None, None, &[]);
    assert_eq!((unknown.status, unknown.code()), (404, "video_not_found"));

    let increment = |resource: &str, kind: &str, delta: i64| {
        plaza.send("POST", "/api/v1/counter/increment", Some(json!({ "resource_id": resource, "counter_type": kind, "delta": delta })), None, &[])
    };
    for (body, code) in
        [(json!({ "resource_id": "", "counter_type": "x", "delta": 1 }), "invalid_counter"), (json!({ "resource_id": "a" }), "invalid_request")]
    {
        let reply = plaza.send("POST", "/api/v1/counter/increment", Some(body), None, &[]);
        assert_eq!((reply.status, reply.code()), (400, code), "{}", reply.body);
    }
    assert_eq!(increment("a", "clicks", 0).code(), "invalid_counter");
    assert_eq!(increment("page-1", "clicks", 5).body["current_value"], 5);
    assert_eq!(increment("page-1", "clicks", -2).body["current_value"], 3);

    // 50 clients x 200 increments of one counter at once: every answer is distinct and
    // the total adds up exactly.
    const CLIENTS: usize = 50;
    const EACH: usize = 200; // Load itself is measured by `make bench` (wrk), not here.
    let values: Vec<i64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|_| {
                scope.spawn(|| {
                    (0..EACH)
                        .map(|_| {
                            let reply = increment("hot", "likes", 1);
                            assert_eq!(reply.status, 200, "{}", reply.body);
                            reply.body["current_value"].as_i64().unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let distinct: HashSet<i64> = values.iter().copied().collect();
    assert_eq!(distinct.len(), CLIENTS * EACH, "every increment answered its own value");
    assert_eq!(values.iter().max().copied(), Some((CLIENTS * EACH) as i64));

    // The read side sees them once projected: a later command's position covers them.
    let (_, _, position) = plaza.register("reader");
    let data = plaza.graphql(
        "{ hot: counter(resourceId: \"hot\", counterType: \"likes\") { value }
           many: counters(keys: [{ resourceId: \"page-1\", counterType: \"clicks\" }, { resourceId: \"none\", counterType: \"clicks\" }]) { resourceId value }
           top: topCounters(counterType: \"likes\", first: 1) { resourceId value } }",
        json!({}),
        None,
        position,
    );
    let expected_total = (CLIENTS * EACH) as i64;
    assert_eq!(data["hot"]["value"], expected_total);
    assert_eq!(data["many"], json!([{ "resourceId": "page-1", "value": 3 }, { "resourceId": "none", "value": 0 }]));
    assert_eq!(data["top"], json!([{ "resourceId": "hot", "value": expected_total }]));
    assert_eq!(video(&plaza, &video_id, None, position)["viewCount"], last);

    // After a restart the totals continue from the durable increments.
    plaza.restart();
    assert_eq!(increment("hot", "likes", 1).body["current_value"], expected_total + 1);
    let view = plaza.send("POST", &format!("/api/v1/videos/{video_id}/views"), None, None, &[]);
    assert_eq!(view.body["current_value"], last + 1);
}

on_every_profile!(
    videos_are_published_edited_and_deleted_by_their_author,
    likes_and_favorites_once_per_user,
    comments_nest_one_level_and_vanish_when_deleted,
    hashtags_have_pages_counts_and_lists,
    views_and_counters_add_up,
);
