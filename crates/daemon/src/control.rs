//! The control plane: the Unix socket, who is calling, and what they may ask.
//!
//! `socket` binds with the hygiene a daemon owes its host, `server` accepts
//! connections, `auth` maps peer credentials to roles, `limits` decides who gets a
//! connection slot, `conn` speaks the protocol on one connection, and `handlers` holds
//! one small function per request.

pub mod auth;
mod conn;
pub mod handlers;
pub mod limits;
pub mod server;
pub mod socket;
