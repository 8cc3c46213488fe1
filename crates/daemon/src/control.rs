//! The control plane: the Unix socket, who is calling, and what they may ask.
//!
//! `socket` binds with the hygiene a daemon owes its host, `server` accepts and caps
//! connections, `conn` speaks the protocol on one connection, `auth` maps peer
//! credentials to roles, and `handlers` holds one small function per request.

pub mod auth;
mod conn;
pub mod handlers;
pub mod server;
pub mod socket;
