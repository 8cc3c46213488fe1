//! The outermost frames: the handshake, then requests one way and events and responses
//! the other.
//!
//! The first variant of each enum is the handshake and must never move: a peer of any
//! version decodes it, so a version mismatch is reported instead of misread.

use serde::{Deserialize, Serialize};

use crate::{Event, Request, Response};

/// Everything a client sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ClientFrame {
    /// The first frame on every connection: which protocol the client speaks.
    Hello(Hello),
    /// One request; the client waits for its [`Response`] before sending another.
    Request(Request),
}

/// The client's opening of the handshake.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    /// The [`crate::PROTOCOL_VERSION`] the client was built with.
    pub protocol: u32,
    /// Who is calling, for the logs (for example `drctl 0.1.0`).
    pub client: String,
}

/// Everything the server sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ServerFrame {
    /// The server accepts the handshake.
    Welcome(Welcome),
    /// Progress on the request in flight; any number may come before its response.
    Event(Event),
    /// The final answer to the request in flight, or to a bad handshake.
    Response(Response),
}

/// The server's answer to a good [`Hello`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Welcome {
    /// The protocol the server speaks (equal to the client's).
    pub protocol: u32,
    /// The daemon's version, for `drctl status` and bug reports.
    pub daemon_version: String,
}
