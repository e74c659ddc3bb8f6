//! GraphQL over WebSocket at `/graphql/ws`: the `graphql-transport-ws` protocol
//! (github.com/enisdenjo/graphql-ws, PROTOCOL.md), written here because async-graphql's
//! own handler answers protocol errors with other close codes than the protocol's.
//!
//! - The token goes in `connection_init`'s payload (`{"token": "..."}`): browsers cannot
//!   set headers on a WebSocket. A missing or bad token closes with 4401, and so does
//!   the token's expiry, at that moment.
//! - Close codes: 4400 a message that is not the protocol's, 4401 unauthorized (no or a
//!   bad token, a subscribe before the acknowledgement, an expired token), 4406 the
//!   subprotocol was not asked for, 4408 no `connection_init` within [`INIT_TIMEOUT`],
//!   4409 a subscription id already in use, 4429 a second `connection_init`.
//! - The connection polls its subscriptions itself, and only while it can write: a
//!   client that does not read stops them taking events from the hub, and the hub tells
//!   them to resync when they fall too far behind.
//! - While the connection is open, its user counts as online (presence).
//! - A subscribe's `extensions.minPosition` (a command's position) waits until the read
//!   models include it, as the `Plaza-Min-Position` header does for queries.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_graphql::Response as GraphQLResponse;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use futures_util::future::{AbortHandle, Abortable};
use futures_util::stream::{BoxStream, SelectAll};
use plaza_edge::ConnectionSlot;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::render::RenderKey;
use crate::{MAX_BODY_BYTES, ReadApi, RequestCache, Viewer, nesting};

pub const PROTOCOL: &str = "graphql-transport-ws";
/// How long a client has to send `connection_init`.
pub const INIT_TIMEOUT: Duration = Duration::from_secs(3);
/// Subscriptions one connection may hold at once.
const MAX_SUBSCRIPTIONS: usize = 100;

/// Upgrades `GET /graphql/ws`.
pub async fn upgrade(State(api): State<Arc<ReadApi>>, request: Request) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
    let ip = plaza_edge::client_ip(request.headers(), peer, api.proxy_hops).unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let slot = request.extensions().get::<ConnectionSlot>().cloned();
    let (mut parts, _) = request.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &api).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            let status = rejection.status();
            let body = json!({ "errors": [{ "message": rejection.body_text(), "extensions": { "code": "websocket_upgrade_required" } }] });
            return (status, axum::Json(body)).into_response();
        }
    };
    // Small buffers: an idle connection should cost little. Each message is written at
    // once (no write buffering), for latency.
    let upgrade =
        upgrade.protocols([PROTOCOL]).read_buffer_size(4096).write_buffer_size(0).max_message_size(MAX_BODY_BYTES).max_frame_size(MAX_BODY_BYTES);
    let accepted = upgrade.selected_protocol().is_some();
    upgrade.on_upgrade(move |socket| async move {
        // The connection keeps its place in the per-address limit while it is open.
        let _slot = slot;
        Session { api, socket, ip, user: None, expires_at: None, running: HashMap::new(), results: SelectAll::new() }.run(accepted).await;
    })
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    ConnectionInit {
        #[serde(default)]
        payload: Option<Value>,
    },
    Ping {
        #[serde(default)]
        #[allow(dead_code)]
        payload: Option<Value>,
    },
    Pong {
        #[serde(default)]
        #[allow(dead_code)]
        payload: Option<Value>,
    },
    Subscribe {
        id: String,
        payload: Box<async_graphql::Request>,
    },
    Complete {
        id: String,
    },
}

/// A `next` message.
#[derive(Serialize)]
struct Next<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    payload: &'a GraphQLResponse,
}

/// Why the connection closes.
struct Close(u16, &'static str);

/// A running subscription's results, tagged with its id; `None` once it ended.
type Tagged = Abortable<BoxStream<'static, (String, Option<GraphQLResponse>)>>;

/// A running subscription: how to stop it, and whether it produced anything yet.
struct Running {
    stop: AbortHandle,
    started: bool,
    _counted: Counted,
}

/// Counts itself in a gauge while it lives (`plaza_subscriptions`,
/// `plaza_websocket_connections`).
struct Counted(&'static str);

impl Counted {
    fn new(gauge: &'static str) -> Self {
        metrics::gauge!(gauge).increment(1.0);
        Self(gauge)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        metrics::gauge!(self.0).decrement(1.0);
    }
}

struct Session {
    api: Arc<ReadApi>,
    socket: WebSocket,
    ip: IpAddr,
    user: Option<uuid::Uuid>,
    /// When the token expires (seconds since the epoch).
    expires_at: Option<u64>,
    running: HashMap<String, Running>,
    /// Every running subscription's results, polled by the connection itself: a client
    /// that does not read stops the polling, and its subscriptions fall behind.
    results: SelectAll<Tagged>,
}

impl Session {
    async fn run(mut self, accepted: bool) {
        let _connection = Counted::new("plaza_websocket_connections");
        if !accepted {
            return self.close(Close(4406, "Subprotocol not acceptable")).await;
        }
        let init_deadline = tokio::time::sleep(INIT_TIMEOUT);
        tokio::pin!(init_deadline);
        // Armed when the token is known.
        let expiry = tokio::time::sleep(Duration::from_secs(365 * 24 * 3600));
        tokio::pin!(expiry);
        let mut armed = false;
        let mut presence = tokio::time::interval(self.api.presence_every);
        presence.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let closing = loop {
            if let (false, Some(expires_at)) = (armed, self.expires_at) {
                expiry.as_mut().reset(tokio::time::Instant::now() + until_epoch(expires_at));
                armed = true;
            }
            tokio::select! {
                incoming = self.socket.recv() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        if let Err(close) = self.handle(&text).await {
                            break Some(close);
                        }
                    }
                    Some(Ok(Message::Binary(_))) => break Some(Close(4400, "Binary messages are not part of the protocol")),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break None,
                },
                Some((id, result)) = self.results.next(), if !self.results.is_empty() => {
                    if let Err(close) = self.deliver(id, result).await {
                        break Some(close);
                    }
                }
                _ = &mut init_deadline, if self.user.is_none() => break Some(Close(4408, "Connection initialisation timeout")),
                _ = &mut expiry, if armed => break Some(Close(4401, "Token expired")),
                _ = presence.tick(), if self.user.is_some() => seen(&self.api, self.user).await,
            }
        };
        for (_, running) in self.running.drain() {
            running.stop.abort();
        }
        if let Some(close) = closing {
            self.close(close).await;
        }
    }

    /// Sends one result of subscription `id`: `next`, or `error` when the operation was
    /// refused before it produced anything; `complete` once it ended.
    async fn deliver(&mut self, id: String, result: Option<GraphQLResponse>) -> Result<(), Close> {
        let Some(running) = self.running.get_mut(&id) else { return Ok(()) };
        let Some(response) = result else {
            self.running.remove(&id);
            return self.send(json!({ "id": id, "type": "complete" })).await;
        };
        let refused = !running.started && response.data == async_graphql::Value::Null && !response.errors.is_empty();
        running.started = true;
        if refused {
            if let Some(running) = self.running.remove(&id) {
                running.stop.abort();
            }
            return self.send(json!({ "id": id, "type": "error", "payload": response.errors })).await;
        }
        // Serialized straight from the response (no JSON tree in between): this runs
        // once per subscriber for every event.
        let next = serde_json::to_string(&Next { id: &id, kind: "next", payload: &response }).map_err(|_| Close(1011, "cannot send"))?;
        self.socket.send(Message::Text(next.into())).await.map_err(|_| Close(1011, "cannot send"))
    }

    async fn close(mut self, Close(code, reason): Close) {
        let frame = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
        if self.socket.send(Message::Close(Some(frame))).await.is_ok() {
            // Wait (briefly) for the client's close: dropping a socket with unread input
            // resets it, and the client may never read the code.
            let _ = tokio::time::timeout(Duration::from_secs(1), async { while let Some(Ok(_)) = self.socket.recv().await {} }).await;
        }
    }

    async fn send(&mut self, message: Value) -> Result<(), Close> {
        self.socket.send(Message::Text(message.to_string().into())).await.map_err(|_| Close(1011, "cannot send"))
    }

    async fn handle(&mut self, text: &str) -> Result<(), Close> {
        let Ok(message) = serde_json::from_str::<ClientMessage>(text) else {
            return Err(Close(4400, "Invalid message received"));
        };
        match message {
            ClientMessage::ConnectionInit { payload } => {
                if self.user.is_some() {
                    return Err(Close(4429, "Too many initialisation requests"));
                }
                let token = payload.as_ref().and_then(|p| p.get("token")).and_then(Value::as_str).unwrap_or_default();
                let Ok((user, expires_at)) = self.api.tokens.verify_until(token) else {
                    return Err(Close(4401, "Unauthorized: send a valid access token as connection_init's payload.token"));
                };
                (self.user, self.expires_at) = (Some(user), Some(expires_at));
                seen(&self.api, self.user).await;
                self.send(json!({ "type": "connection_ack" })).await
            }
            ClientMessage::Ping { .. } => self.send(json!({ "type": "pong" })).await,
            ClientMessage::Pong { .. } => Ok(()),
            ClientMessage::Subscribe { id, payload } => {
                let Some(user) = self.user else { return Err(Close(4401, "Unauthorized")) };
                if self.running.contains_key(&id) {
                    // The protocol's wording; the reason is static, so the id is not in it.
                    return Err(Close(4409, "Subscriber for this id already exists"));
                }
                if let Some(errors) = refusal(&self.api, self.ip, self.running.len(), user, &payload).await {
                    return self.send(json!({ "id": id, "type": "error", "payload": errors })).await;
                }
                // Read your writes: `extensions.minPosition` (a command's position) waits
                // until the read models include it, as `Plaza-Min-Position` does.
                if let Some(position) = payload.extensions.get("minPosition") {
                    let waited = match position {
                        async_graphql::Value::Number(n) => match n.as_u64() {
                            Some(position) => crate::wait_for_position(&self.api, position).await,
                            None => Err(crate::Refusal::invalid_min_position()),
                        },
                        _ => Err(crate::Refusal::invalid_min_position()),
                    };
                    if let Err(refusal) = waited {
                        let errors = json!([{ "message": refusal.message, "extensions": { "code": refusal.code } }]);
                        return self.send(json!({ "id": id, "type": "error", "payload": errors })).await;
                    }
                }
                let key = RenderKey::of(&payload);
                let request = (*payload).data(Viewer::new(Some(user))).data(RequestCache::default()).data(key);
                let (tag, end) = (id.clone(), id.clone());
                let stream = self.api.schema.execute_stream(request).map(move |response| (tag.clone(), Some(response)));
                let stream = stream.chain(futures_util::stream::once(async move { (end, None) })).boxed();
                let (stop, registration) = AbortHandle::new_pair();
                self.results.push(Abortable::new(stream, registration));
                self.running.insert(id, Running { stop, started: false, _counted: Counted::new("plaza_subscriptions") });
                Ok(())
            }
            ClientMessage::Complete { id } => {
                if let Some(running) = self.running.remove(&id) {
                    running.stop.abort();
                }
                Ok(())
            }
        }
    }
}

/// Why a subscribe is refused before it runs (as GraphQL errors), if it is.
async fn refusal(api: &ReadApi, ip: IpAddr, running: usize, user: uuid::Uuid, request: &async_graphql::Request) -> Option<Value> {
    let error = |code: &str, message: String| Some(json!([{ "message": message, "extensions": { "code": code } }]));
    if running >= MAX_SUBSCRIPTIONS {
        return error("too_many_subscriptions", format!("at most {MAX_SUBSCRIPTIONS} subscriptions per connection"));
    }
    if let Err(wait) = api.limiter.acquire(Some(user), ip).await {
        return error("rate_limited", format!("too many requests; retry in {} s", plaza_edge::retry_after_secs(wait)));
    }
    if let Err(depth) = nesting::check(&request.query) {
        return error("nesting_too_deep", format!("the document nests deeper than {} levels ({depth} and more)", nesting::MAX_NESTING));
    }
    None
}

/// Marks the user seen now. Presence is a hint: a failure to record it ends nothing.
async fn seen(api: &ReadApi, user: Option<uuid::Uuid>) {
    if let Some(user) = user {
        let _ = api.live.presence.seen(user, chrono::Utc::now()).await;
    }
}

/// How long until `epoch_secs`.
fn until_epoch(epoch_secs: u64) -> Duration {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Duration::from_secs(epoch_secs).saturating_sub(now)
}
