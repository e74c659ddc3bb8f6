//! The HTTP server every Plaza process runs: hyper's HTTP/1.1 connection loop with the
//! limits an internet-facing service needs, which `axum::serve` does not set.
//!
//! - A client must send a request's head within `header_timeout` (this also ends idle
//!   keep-alive connections) and its body within `body_timeout` (the body readers use
//!   it: [`BodyTimeout`]), so half-sent requests cannot hold connections (slowloris).
//! - At most `max_connections_per_ip` connections per client address; another is
//!   answered 429 `too_many_connections` and closed.
//! - URIs over [`MAX_URI_BYTES`] are answered 414, heads over [`MAX_HEAD_BYTES`] 431,
//!   and requests hyper cannot parse itself get the JSON error shape too
//!   ([`JsonProtocolErrors`]).
//! - On shutdown, no new connections; connections in flight finish their request.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower_service::Service;
use tracing::{debug, warn};

use crate::json_error;

/// Request URIs longer than this are answered 414 `uri_too_long`.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Request heads (request line and headers) longer than this are answered 431
/// `headers_too_large`. Above hyper's own URI limit (64 KiB), so a longer URI is 414.
pub const MAX_HEAD_BYTES: usize = 128 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct ServerSettings {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// 0: no limit.
    pub max_connections_per_ip: usize,
}

/// How long a handler may take to receive the request body; set on every request.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub Duration);

/// Serves `app` on `listener` until `shutdown` completes, then lets the connections in
/// flight finish their requests.
pub async fn serve(listener: TcpListener, app: Router, settings: ServerSettings, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    let slots = Arc::new(Slots { limit: settings.max_connections_per_ip, held: Mutex::default() });
    // Each connection task holds a receiver: `closed()` on the sender tells when all
    // have finished; a value sent tells them to shut down gracefully.
    let (stop, stopped) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Some(slot) = slots.take(peer.ip()) else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(stream, peer, slot, app.clone(), settings, stopped.clone()));
    }
    drop(listener);
    drop(stopped);
    let _ = stop.send(true);
    stop.closed().await;
    Ok(())
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, slot: Slot, app: Router, settings: ServerSettings, mut stop: watch::Receiver<bool>) {
    let slot = ConnectionSlot(Arc::new(slot));
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        let slot = slot.clone();
        let mut app = app.clone();
        async move {
            if request.uri().to_string().len() > MAX_URI_BYTES {
                let message = format!("request URIs are limited to {MAX_URI_BYTES} bytes");
                return Ok::<Response, Infallible>(json_error(StatusCode::URI_TOO_LONG, "uri_too_long", &message).into_response());
            }
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(slot);
            request.extensions_mut().insert(BodyTimeout(settings.body_timeout));
            let sent_body = request.headers().contains_key(header::TRANSFER_ENCODING)
                || request.headers().get(header::CONTENT_LENGTH).is_some_and(|length| length.as_bytes() != b"0");
            let read = Arc::new(AtomicBool::new(false));
            let request = request.map(|body| Body::new(ReadToEnd { body, read: read.clone() }));
            let mut response = app.call(request).await?;
            if sent_body && !read.load(Ordering::Relaxed) {
                // hyper closes a connection whose request body was left unread (a refusal
                // before the handler read it): say so, or the client would reuse it.
                response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(response)
        }
    });
    let io = TokioIo::new(JsonProtocolErrors::new(stream));
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(settings.header_timeout).max_header_size(MAX_HEAD_BYTES);
    let connection = builder.serve_connection(io, service).with_upgrades();
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = async { drop(stop.wait_for(|stop| *stop).await) } => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        debug!(%peer, %error, "connection ended with an error");
    }
}

/// A request body that notes when it was read to its end.
struct ReadToEnd {
    body: Incoming,
    read: Arc<AtomicBool>,
}

impl hyper::body::Body for ReadToEnd {
    type Data = <Incoming as hyper::body::Body>::Data;
    type Error = <Incoming as hyper::body::Body>::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = ready!(Pin::new(&mut self.body).poll_frame(cx));
        if frame.is_none() || self.body.is_end_stream() {
            self.read.store(true, Ordering::Relaxed);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Answers a connection over the per-address limit, then closes it.
async fn refuse(mut stream: TcpStream) {
    let body = json_body("too_many_connections", "too many connections from your address; close some and retry");
    let answer = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

fn json_body(code: &str, message: &str) -> String {
    serde_json::json!({ "error": code, "message": message }).to_string()
}

/// Connections held per client address.
struct Slots {
    limit: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// A connection's place in the per-address limit, in each request's extensions: a
/// handler that takes the connection over (a WebSocket) keeps it for as long.
#[derive(Clone)]
pub struct ConnectionSlot(#[allow(dead_code)] Arc<Slot>);

/// One connection's place; given back when dropped.
struct Slot {
    slots: Arc<Slots>,
    ip: IpAddr,
}

impl Slots {
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = held.entry(ip).or_default();
        if self.limit > 0 && *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(Slot { slots: self.clone(), ip })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = held.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

/// A connection whose writes pass through unchanged, except one kind: hyper answers a
/// request it cannot parse (a URI over 64 KiB, a head larger than its buffer, a
/// malformed request line) by itself, with a bare head and no body, and closes the
/// connection. No hook changes that answer, so it is rewritten here into the JSON error
/// shape. Recognised by its form: a 4xx head with `content-length: 0` and nothing after
/// it, which Plaza's handlers never send (their errors all have a JSON body).
pub struct JsonProtocolErrors<IO> {
    inner: IO,
    /// A rewritten answer still being written, how much of it is written, and the
    /// length of the write it replaces (reported once it is all out).
    pending: Option<(Vec<u8>, usize, usize)>,
}

impl<IO> JsonProtocolErrors<IO> {
    pub fn new(inner: IO) -> Self {
        Self { inner, pending: None }
    }
}

/// The JSON answer replacing hyper's bare error head `head`, if it is one.
fn rewrite_bare_error(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let status_line = text.strip_prefix("HTTP/1.1 4")?.split("\r\n").next()?;
    let (head_only, rest) = text.split_once("\r\n\r\n")?;
    if !rest.is_empty() || !head_only.to_ascii_lowercase().contains("\r\ncontent-length: 0") {
        return None;
    }
    let status = format!("4{}", &status_line[..2.min(status_line.len())]);
    let (code, message) = match status.as_str() {
        "414" => ("uri_too_long", "the request URI is too long"),
        "431" => ("headers_too_large", "the request headers are too large"),
        _ => ("bad_request", "the request is not valid HTTP/1.1"),
    };
    let body = json_body(code, message);
    Some(
        format!("HTTP/1.1 4{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
            .into_bytes(),
    )
}

impl<IO: AsyncRead + Unpin> AsyncRead for JsonProtocolErrors<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> JsonProtocolErrors<IO> {
    /// Writes what is pending; ready with the replaced write's length once done.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        while let Some((bytes, written, replaces)) = &mut self.pending {
            if *written == bytes.len() {
                let replaces = *replaces;
                self.pending = None;
                return Poll::Ready(Ok(replaces));
            }
            match ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..])) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => *written += n,
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
        Poll::Ready(Ok(0))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for JsonProtocolErrors<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.pending.is_none() {
            match rewrite_bare_error(buf) {
                Some(rewritten) => self.pending = Some((rewritten, 0, buf.len())),
                None => return Pin::new(&mut self.inner).poll_write(cx, buf),
            }
        }
        self.poll_pending(cx)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Not vectored: hyper then hands each write over as one buffer, so an error head is
    // seen whole.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bare_client_error_heads_are_rewritten() {
        let bare = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 10:00:00 GMT\r\n\r\n";
        let rewritten = String::from_utf8(rewrite_bare_error(bare).unwrap()).unwrap();
        assert!(rewritten.starts_with("HTTP/1.1 414 URI Too Long\r\ncontent-type: application/json\r\n"), "{rewritten}");
        assert!(rewritten.ends_with(r#"{"error":"uri_too_long","message":"the request URI is too long"}"#), "{rewritten}");
        let bad = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        assert!(String::from_utf8(rewrite_bare_error(bad).unwrap()).unwrap().contains("bad_request"));

        let with_body = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        assert!(rewrite_bare_error(with_body).is_none());
        assert!(rewrite_bare_error(b"HTTP/1.1 404 Not Found\r\ncontent-length: 20\r\n\r\n").is_none(), "a HEAD answer");
        assert!(rewrite_bare_error(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(rewrite_bare_error(b"{\"error\":\"HTTP/1.1 400\"}").is_none());
    }

    #[tokio::test]
    async fn connections_per_address_are_counted_and_given_back() {
        let slots = Arc::new(Slots { limit: 2, held: Mutex::default() });
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let first = slots.take(a).unwrap();
        let _second = slots.take(a).unwrap();
        assert!(slots.take(a).is_none());
        assert!(slots.take(b).is_some(), "per address");
        drop(first);
        assert!(slots.take(a).is_some());
    }
}
