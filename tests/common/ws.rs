//! A `graphql-transport-ws` client for tests, over a blocking WebSocket.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

pub struct Client {
    socket: WebSocket<TcpStream>,
}

/// How the server ended a connection.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed(pub u16);

impl Client {
    /// Connects to `/graphql/ws` of the process on `port`, asking for the protocol
    /// (`protocol: false`: asking for none).
    pub fn connect(port: u16, protocol: bool) -> Self {
        let mut request = format!("ws://127.0.0.1:{port}/graphql/ws").into_client_request().unwrap();
        if protocol {
            request.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
        }
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        // A loaded machine may take seconds to answer the upgrade; reads after it poll.
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let (socket, _) = tungstenite::client(request, stream).expect("the WebSocket handshake");
        socket.get_ref().set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        Self { socket }
    }

    /// Connects and initialises with the token; panics unless acknowledged.
    pub fn signed_in(port: u16, token: &str) -> Self {
        let mut client = Self::connect(port, true);
        client.send(json!({ "type": "connection_init", "payload": { "token": token } }));
        let ack = client.next_message(Duration::from_secs(10)).expect("connection_ack");
        assert_eq!(ack["type"], "connection_ack", "{ack}");
        client
    }

    pub fn send(&mut self, message: Value) {
        self.socket.send(Message::Text(message.to_string().into())).unwrap();
    }

    pub fn send_text(&mut self, text: &str) {
        self.socket.send(Message::Text(text.to_owned().into())).unwrap();
    }

    pub fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } }));
    }

    /// Subscribes once the read models include `position` (read your writes).
    pub fn subscribe_at(&mut self, id: &str, query: &str, variables: Value, position: u64) {
        let payload = json!({ "query": query, "variables": variables, "extensions": { "minPosition": position } });
        self.send(json!({ "id": id, "type": "subscribe", "payload": payload }));
    }

    /// The next protocol message (pings answered), or how the connection closed; `None`
    /// when nothing came within `wait`.
    pub fn poll(&mut self, wait: Duration) -> Option<Result<Value, Closed>> {
        let deadline = Instant::now() + wait;
        loop {
            match self.socket.read() {
                Ok(Message::Text(text)) => {
                    let message: Value = serde_json::from_str(&text).unwrap();
                    if message["type"] == "ping" {
                        self.send(json!({ "type": "pong" }));
                        continue;
                    }
                    return Some(Ok(message));
                }
                Ok(Message::Close(frame)) => return Some(Err(Closed(frame.map_or(1005, |f| u16::from(f.code))))),
                Ok(_) => {}
                // A signal (another test's child process exiting) interrupted the read:
                // nothing was lost, read again. (This was the rare 1006 of earlier runs.)
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted) =>
                {
                    if Instant::now() >= deadline {
                        return None;
                    }
                }
                Err(error) => {
                    // No close frame: the connection broke. Say how, for the test's log.
                    eprintln!("the WebSocket read failed: {error}");
                    return Some(Err(Closed(1006)));
                }
            }
        }
    }

    /// The next protocol message, or how the connection closed; panics after `wait`.
    pub fn next_message(&mut self, wait: Duration) -> Result<Value, Closed> {
        self.poll(wait).unwrap_or_else(|| panic!("no message within {wait:?}"))
    }

    /// The payload of the next `next` for subscription `id`.
    pub fn next_data(&mut self, id: &str) -> Value {
        let message = self.next_message(Duration::from_secs(20)).expect("a message");
        assert_eq!((message["type"].as_str(), message["id"].as_str()), (Some("next"), Some(id)), "{message}");
        message["payload"]["data"].clone()
    }

    /// Waits for the server to close the connection (skipping what it still sends);
    /// answers its close code.
    pub fn closed(&mut self, wait: Duration) -> u16 {
        loop {
            if let Err(Closed(code)) = self.next_message(wait) {
                return code;
            }
        }
    }

    /// No message arrives within `wait`.
    pub fn quiet(&mut self, wait: Duration) {
        if let Some(message) = self.poll(wait) {
            panic!("expected nothing, got {message:?}");
        }
    }

    pub fn close(mut self) {
        let _ = self.socket.close(Some(tungstenite::protocol::CloseFrame { code: CloseCode::Normal, reason: "bye".into() }));
    }
}
