//! The authorization matrix: every command, and every query that reads what belongs to
//! one user, tried as an anonymous caller, as another user and as the owner, with the
//! status each must get. One table; every new route adds its row.

mod common;

use common::{Plaza, Profile};
use serde_json::{Value, json};

/// Who sends a request.
#[derive(Clone, Copy, Debug)]
enum As {
    Anonymous,
    /// A signed-in user who owns nothing here.
    Other,
    /// The owner: of the profile, video or comment the row acts on (for commands on no
    /// one's thing, a signed-in user acting for themselves).
    Owner,
}

const CALLERS: [As; 3] = [As::Anonymous, As::Other, As::Owner];

/// What a row acts on, made fresh for each row so one cell's success cannot change
/// another row's answer.
struct Scene {
    owner: String,
    owner_token: String,
    other_token: String,
    video: String,
    /// The owner's comment on the owner's video.
    comment: String,
    /// Someone else's comment on the owner's video (the video's author may delete it).
    their_comment: String,
    /// The other user's id (not in the conversation).
    other: String,
    /// A group the owner owns, with one more member; the other user is not in it.
    conversation: String,
    member: String,
    /// The owner's message in that group.
    message: String,
}

fn scene(plaza: &Plaza, row: usize) -> Scene {
    let (owner, owner_token, _) = plaza.register(&format!("owner{row}"));
    let (other, other_token, _) = plaza.register(&format!("other{row}"));
    let (member, commenter_token, _) = plaza.register(&format!("commenter{row}"));
    let video = plaza.send("POST", "/api/v1/videos", Some(json!({ "title": "Mine", "media_url": "https://x.org/v.mp4" })), Some(&owner_token), &[]);
    let video = video.body["video_id"].as_str().unwrap().to_owned();
    let comment = |token: &str| {
        let reply = plaza.send("POST", &format!("/api/v1/videos/{video}/comments"), Some(json!({ "body": "hi" })), Some(token), &[]);
        reply.body["comment_id"].as_str().unwrap().to_owned()
    };
    let (comment, their_comment) = (comment(&owner_token), comment(&commenter_token));
    let group = json!({ "kind": "group", "title": "Ours", "member_ids": [member] });
    let conversation =
        plaza.send("POST", "/api/v1/conversations", Some(group), Some(&owner_token), &[]).body["conversation_id"].as_str().unwrap().to_owned();
    let sent =
        plaza.send("POST", &format!("/api/v1/conversations/{conversation}/messages"), Some(json!({ "body": "hello" })), Some(&owner_token), &[]);
    let message = sent.body["message_id"].as_str().unwrap().to_owned();
    Scene { owner, owner_token, other_token, video, comment, their_comment, other, conversation, member, message }
}

/// One command: method, path and body (`{owner}`, `{video}`, `{comment}`,
/// `{their_comment}`, `{other}`, `{conversation}`, `{member}`, `{message}` are filled in), and the status for anonymous, other, owner.
type Row = (&'static str, &'static str, Option<Value>, [u16; 3]);

fn rows() -> Vec<Row> {
    let profile = || Some(json!({ "bio": "mine" }));
    let video = || Some(json!({ "title": "Edited", "media_url": "https://x.org/v.mp4" }));
    vec![
        // Things that belong to someone: only the owner.
        ("PUT", "/api/v1/users/{owner}", profile(), [401, 403, 200]),
        ("PUT", "/api/v1/videos/{video}", Some(json!({ "title": "Edited" })), [401, 403, 200]),
        ("DELETE", "/api/v1/videos/{video}", None, [401, 403, 200]),
        ("DELETE", "/api/v1/comments/{comment}", None, [401, 403, 200]),
        // The video's author may delete any comment on it.
        ("DELETE", "/api/v1/comments/{their_comment}", None, [401, 403, 200]),
        // A conversation: its members only (anyone else learns nothing: 404); managing
        // it, its owner (or admins).
        ("PUT", "/api/v1/conversations/{conversation}", Some(json!({ "title": "Renamed" })), [401, 404, 200]),
        ("POST", "/api/v1/conversations/{conversation}/members", Some(json!({ "user_ids": ["{other}"] })), [401, 404, 200]),
        ("PUT", "/api/v1/conversations/{conversation}/members/{member}", Some(json!({ "role": "admin" })), [401, 404, 200]),
        ("DELETE", "/api/v1/conversations/{conversation}/members/{member}", None, [401, 404, 200]),
        ("POST", "/api/v1/conversations/{conversation}/messages", Some(json!({ "body": "hi" })), [401, 404, 201]),
        ("POST", "/api/v1/conversations/{conversation}/read", Some(json!({ "seq": 1 })), [401, 404, 200]),
        ("POST", "/api/v1/conversations/{conversation}/typing", None, [401, 404, 204]),
        ("PUT", "/api/v1/messages/{message}", Some(json!({ "body": "edited" })), [401, 404, 200]),
        ("DELETE", "/api/v1/messages/{message}", None, [401, 404, 200]),
        ("PUT", "/api/v1/users/{owner}/notification-settings", Some(json!({ "video_liked": false })), [401, 403, 200]),
        // Things any signed-in user may do.
        ("POST", "/api/v1/conversations", Some(json!({ "kind": "group", "title": "New", "member_ids": [] })), [401, 201, 201]),
        ("POST", "/api/v1/conversations", Some(json!({ "kind": "direct", "member_id": "{member}" })), [401, 201, 201]),
        ("POST", "/api/v1/presence/heartbeat", None, [401, 204, 204]),
        ("POST", "/api/v1/users/{owner}/follow", None, [401, 200, 400]),
        ("DELETE", "/api/v1/users/{owner}/follow", None, [401, 409, 400]),
        ("POST", "/api/v1/videos", video(), [401, 201, 201]),
        ("POST", "/api/v1/videos/{video}/like", None, [401, 200, 200]),
        ("DELETE", "/api/v1/videos/{video}/like", None, [401, 409, 409]),
        ("POST", "/api/v1/videos/{video}/favorite", None, [401, 200, 200]),
        ("DELETE", "/api/v1/videos/{video}/favorite", None, [401, 409, 409]),
        ("POST", "/api/v1/videos/{video}/comments", Some(json!({ "body": "nice" })), [401, 201, 201]),
        ("POST", "/api/v1/comments/{comment}/like", None, [401, 200, 200]),
        ("DELETE", "/api/v1/comments/{comment}/like", None, [401, 409, 409]),
        ("POST", "/api/v1/hashtags", Some(json!({ "name": "mine" })), [401, 201, 409]),
        ("POST", "/api/v1/recommend/refresh", None, [401, 200, 200]),
        ("POST", "/api/v1/notifications/read", Some(json!({ "all": true })), [401, 200, 200]),
        ("DELETE", "/api/v1/search/history", None, [401, 200, 200]),
        ("DELETE", "/api/v1/search/history/mine", None, [401, 200, 200]),
        // Anyone, signed in or not.
        ("POST", "/api/v1/videos/{video}/views", None, [200, 200, 200]),
        ("POST", "/api/v1/counter/increment", Some(json!({ "resource_id": "r", "counter_type": "clicks", "delta": 1 })), [200, 200, 200]),
        ("POST", "/api/v1/users/login", Some(json!({ "login": "nobody", "password": "wrong password" })), [401, 401, 401]),
        // The API's own description: anyone.
        ("GET", "/api/v1/openapi.json", None, [200, 200, 200]),
        // Derived counters: no one, through the generic endpoint.
        ("POST", "/api/v1/counter/increment", Some(json!({ "resource_id": "{video}", "counter_type": "views", "delta": 1 })), [403, 403, 403]),
    ]
}

fn fill(template: &str, scene: &Scene) -> String {
    template
        .replace("{owner}", &scene.owner)
        .replace("{video}", &scene.video)
        .replace("{their_comment}", &scene.their_comment)
        .replace("{comment}", &scene.comment)
        .replace("{other}", &scene.other)
        .replace("{conversation}", &scene.conversation)
        .replace("{member}", &scene.member)
        .replace("{message}", &scene.message)
}

fn token(scene: &Scene, caller: As) -> Option<&str> {
    match caller {
        As::Anonymous => None,
        As::Other => Some(&scene.other_token),
        As::Owner => Some(&scene.owner_token),
    }
}

#[test]
fn every_command_answers_each_caller_as_the_matrix_says() {
    let plaza = Plaza::start_with(Profile::Embedded, &[("PLAZA_RATE_LIMIT_IP_PER_SEC", "0"), ("PLAZA_RATE_LIMIT_USER_PER_SEC", "0")]);
    let mut wrong = Vec::new();
    for (row, (method, template, body, expected)) in rows().into_iter().enumerate() {
        let scene = scene(&plaza, row);
        let path = fill(template, &scene);
        let body = body.map(|b| serde_json::from_str(&fill(&b.to_string(), &scene)).unwrap());
        for (caller, status) in CALLERS.into_iter().zip(expected) {
            let reply = plaza.send(method, &path, body.clone(), token(&scene, caller), &[]);
            if reply.status != status {
                wrong.push(format!("{method} {template} as {caller:?}: {} (expected {status}) {}", reply.status, reply.body));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Queries whose answer depends on who asks: what each caller must see.
#[test]
fn queries_show_each_caller_only_their_own() {
    let plaza = Plaza::start(Profile::Embedded);
    let scene = scene(&plaza, 0);
    let (_, _, position) = plaza.register("last");
    let liked = plaza.send("POST", &format!("/api/v1/videos/{}/like", scene.video), None, Some(&scene.owner_token), &[]);
    let position = position.max(liked.position());
    let ask = |query: &str, caller: As| plaza.graphql_reply(query, json!({ "video": scene.video }), token(&scene, caller), Some(position)).body;
    // `me`: nobody, the other user, the owner.
    let me: Vec<Value> = CALLERS.iter().map(|c| ask("{ me { id } }", *c)["data"]["me"]["id"].clone()).collect();
    assert_eq!(me[0], Value::Null);
    assert!(me[1].is_string() && me[1] != json!(scene.owner), "{me:?}");
    assert_eq!(me[2], json!(scene.owner));
    // The viewer's own reactions: only the owner liked the video.
    let liked: Vec<Value> = CALLERS
        .iter()
        .map(|c| ask("query($video: ID!) { video(id: $video) { viewerHasLiked } }", *c)["data"]["video"]["viewerHasLiked"].clone())
        .collect();
    assert_eq!(liked, vec![json!(false), json!(false), json!(true)]);
    // A FOLLOWING feed is the signed-in viewer's own.
    let feed = |caller| ask("{ feed(kind: FOLLOWING, first: 5) { totalCount } }", caller);
    assert_eq!(feed(As::Anonymous)["errors"][0]["extensions"]["code"], "unauthenticated");
    assert_eq!(feed(As::Other)["data"]["feed"]["totalCount"], 0);
    // A conversation, its messages, and unread counts: its members only.
    let conversation = json!({ "id": scene.conversation });
    for query in [
        "query($id: ID!) { conversation(id: $id) { id } }",
        "query($id: ID!) { messages(conversationId: $id) { totalCount } }",
        "{ conversations { totalCount } }",
    ] {
        let codes: Vec<Value> = CALLERS
            .iter()
            .map(|c| {
                plaza.graphql_reply(query, conversation.clone(), token(&scene, *c), Some(position)).body["errors"][0]["extensions"]["code"].clone()
            })
            .collect();
        let expected = if query.contains("conversations") {
            [json!("unauthenticated"), Value::Null, Value::Null]
        } else {
            [json!("unauthenticated"), json!("conversation_not_found"), Value::Null]
        };
        assert_eq!(codes, expected, "{query}");
    }
    // Notifications: the signed-in user's own (the owner was told of the comment on
    // their video; the other user of nothing), and the unread count on `me` only.
    let notifications: Vec<Value> = CALLERS
        .iter()
        .map(|c| {
            let body = plaza.graphql_reply("{ notifications { totalCount } }", json!({}), token(&scene, *c), Some(position)).body;
            body["data"]["notifications"]["totalCount"].clone().as_i64().map_or_else(|| body["errors"][0]["extensions"]["code"].clone(), Value::from)
        })
        .collect();
    assert_eq!(notifications, vec![json!("unauthenticated"), json!(0), json!(1)]);
    let counted = |caller| {
        ask(&format!("{{ user(id: \"{}\") {{ unreadNotificationsCount }} }}", scene.owner), caller)["data"]["user"]["unreadNotificationsCount"]
            .clone()
    };
    assert_eq!((counted(As::Anonymous), counted(As::Other), counted(As::Owner)), (Value::Null, Value::Null, json!(1)));
    // Search is public: every caller finds the owner's published video.
    let found: Vec<Value> = CALLERS
        .iter()
        .map(|c| {
            let body = plaza
                .graphql_reply("{ search(query: \"mine\") { edges { node { video { id } } } } }", json!({}), token(&scene, *c), Some(position))
                .body;
            body["data"]["search"]["edges"][0]["node"]["video"]["id"].clone()
        })
        .collect();
    assert_eq!(found, vec![json!(scene.video); 3]);
    // Search history: each signed-in searcher's own (both searched "mine" above).
    let secret = plaza.graphql_reply("{ search(query: \"Private words\") { totalCount } }", json!({}), Some(&scene.owner_token), Some(position));
    let searched = secret.body["extensions"]["position"].as_u64().unwrap_or_else(|| panic!("{}", secret.body));
    let histories: Vec<Value> = CALLERS
        .iter()
        .map(|c| {
            let body = plaza.graphql_reply("{ searchHistory { query } }", json!({}), token(&scene, *c), Some(searched)).body;
            match body["data"]["searchHistory"].as_array() {
                Some(entries) => entries.iter().map(|e| e["query"].clone()).collect(),
                None => body["errors"][0]["extensions"]["code"].clone(),
            }
        })
        .collect();
    assert_eq!(histories, vec![json!("unauthenticated"), json!(["mine"]), json!(["private words", "mine"])]);
    let owners = plaza.graphql("{ conversations { totalCount } }", json!({}), Some(&scene.owner_token), position);
    assert_eq!(owners["conversations"]["totalCount"], 1);
    let others = plaza.graphql("{ conversations { totalCount } }", json!({}), Some(&scene.other_token), position);
    assert_eq!(others["conversations"]["totalCount"], 0);
}

/// The admin routes: nobody without a token (401; the page sends to its login form),
/// no signed-in user without the admin role (403), the admin yes. Roles are events:
/// granted and revoked with `plaza admin`, effective at once.
#[test]
fn admin_routes_answer_only_admins() {
    let plaza = Plaza::start_with(Profile::Embedded, &[("PLAZA_RATE_LIMIT_IP_PER_SEC", "0"), ("PLAZA_RATE_LIMIT_USER_PER_SEC", "0")]);
    let (_, user_token, _) = plaza.register("someone");
    let (_, admin_token, _) = plaza.register("operator");
    let (ok, out, err) = plaza.cli(&["admin", "grant", "operator"], &[]);
    assert!(ok && out.contains("operator: role admin granted"), "{out}{err}");
    let (ok, _, err) = plaza.cli(&["admin", "grant", "nobody_here"], &[]);
    assert!(!ok && err.contains("no user named \"nobody_here\""), "{err}");
    let (ok, _, err) = plaza.cli(&["admin", "grant", "operator", "--role", "root"], &[]);
    assert!(!ok && err.contains("unknown role"), "{err}");

    // (method, path, body, status for an admin)
    let rows: Vec<(&str, &str, Option<Value>, u16)> = vec![
        ("GET", "/admin", None, 200),
        ("GET", "/admin/projections", None, 200),
        ("GET", "/admin/dead-letters", None, 200),
        ("POST", "/admin/projections/content/pause", None, 200),
        ("POST", "/admin/projections/content/resume", None, 200),
        ("POST", "/admin/projections/content/dead-letters/retry", Some(json!({ "all": true })), 200),
        ("POST", "/admin/projections/content/dead-letters/skip", Some(json!({ "id": 12345 })), 200),
        ("POST", "/admin/projections/nope/pause", None, 404),
        ("POST", "/admin/projections/content/dead-letters/retry", Some(json!({})), 400),
    ];
    let mut wrong = Vec::new();
    for (method, path, body, admin_status) in &rows {
        let anonymous = if *path == "/admin" { 303 } else { 401 };
        for (who, token, status) in
            [("anonymous", None, anonymous), ("a user", Some(user_token.as_str()), 403), ("the admin", Some(admin_token.as_str()), *admin_status)]
        {
            let reply = plaza.send(method, path, body.clone(), token, &[]);
            if reply.status != status {
                wrong.push(format!("{method} {path} as {who}: {} (expected {status}) {}", reply.status, reply.body));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let status = plaza.send("GET", "/admin/projections", None, Some(&admin_token), &[]);
    let names: Vec<&str> = status.body.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["accounts", "content", "counters", "conversations", "feeds", "notifications", "searches", "welcome"]);

    // The page's cookie works for forms from this origin only.
    let login = plaza.send_form("/admin/login", "login=operator&password=correct+horse+battery", &[]);
    assert_eq!(login.status, 303, "{}", login.body);
    let cookie = login.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    assert!(login.header("set-cookie").unwrap().contains("HttpOnly; SameSite=Strict"));
    let same = plaza.send_form("/admin/projections/content/pause", "", &[("Cookie", &cookie), ("Origin", &plaza.base)]);
    assert_eq!(same.status, 303, "{}", same.body);
    let cross = plaza.send_form("/admin/projections/content/resume", "", &[("Cookie", &cookie), ("Origin", "http://evil.example")]);
    assert_eq!((cross.status, cross.code()), (403, "cross_origin"), "{}", cross.body);
    let wrong_password = plaza.send_form("/admin/login", "login=operator&password=nope", &[]);
    assert_eq!(wrong_password.status, 401);
    let not_admin = plaza.send_form("/admin/login", "login=someone&password=correct+horse+battery", &[]);
    assert_eq!(not_admin.status, 403);

    // Revoked: refused at once.
    let (ok, out, err) = plaza.cli(&["admin", "revoke", "operator"], &[]);
    assert!(ok && out.contains("operator: role admin revoked"), "{out}{err}");
    assert_eq!(plaza.send("GET", "/admin/projections", None, Some(&admin_token), &[]).status, 403);
}
