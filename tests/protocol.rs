//! Bad clients: wrong versions, garbage, oversized frames, silence and crowds. The
//! daemon answers what it can, closes the connection, and goes on serving others.
#![allow(clippy::unwrap_used)]

use drd_integration_tests::{text, Daemon, RawConn};
use drd_proto::{codec, ClientFrame, ErrorKind, Request, Response, ServerFrame};

fn error_of(frame: Option<ServerFrame>) -> (ErrorKind, String) {
    match frame {
        Some(ServerFrame::Response(Response::Error(e))) => (e.kind, e.message),
        other => panic!("expected an error reply, got {other:?}"),
    }
}

fn still_serves(daemon: &Daemon) {
    let out = daemon.drctl(&["status"]);
    assert!(
        out.status.success(),
        "daemon stopped serving: {}",
        text(&out)
    );
}

#[test]
fn a_client_of_another_protocol_version_is_told_so() {
    let daemon = Daemon::start("");
    let mut conn = RawConn::connect(&daemon.socket()).unwrap();
    let (kind, message) = error_of(conn.hello(999).unwrap());
    assert_eq!(kind, ErrorKind::VersionMismatch);
    assert!(message.contains("protocol 999"), "{message}");
    let ours = format!("protocol {}", drd_proto::PROTOCOL_VERSION);
    assert!(message.contains(&ours), "{message}");
    assert!(conn.closed_by_server());
    still_serves(&daemon);
}

#[test]
fn a_request_before_the_handshake_is_refused() {
    let daemon = Daemon::start("");
    let mut conn = RawConn::connect(&daemon.socket()).unwrap();
    let request = ClientFrame::Request(Request::Status { audit_tail: 1 });
    conn.send_frame(&codec::encode(&request).unwrap()).unwrap();
    let (kind, message) = error_of(conn.read_frame().unwrap());
    assert_eq!(kind, ErrorKind::BadRequest);
    assert!(message.contains("handshake"), "{message}");
    still_serves(&daemon);
}

#[test]
fn a_malformed_frame_gets_an_error_and_a_closed_connection() {
    let daemon = Daemon::start("");
    let mut conn = RawConn::connect(&daemon.socket()).unwrap();
    conn.handshake().unwrap();
    conn.send_frame(&[0x01, 0xee, 0xff, 0x13, 0x37, 0x00, 0x42])
        .unwrap();
    let (kind, message) = error_of(conn.read_frame().unwrap());
    assert_eq!(kind, ErrorKind::BadRequest);
    assert!(message.contains("malformed request"), "{message}");
    assert!(conn.closed_by_server());
    still_serves(&daemon);
}

#[test]
fn an_oversized_length_prefix_is_refused_without_reading_it() {
    let daemon = Daemon::start("");
    let mut conn = RawConn::connect(&daemon.socket()).unwrap();
    conn.handshake().unwrap();
    // Announce 4 GiB - 1, send a few bytes: the daemon must not wait for or allocate it.
    conn.send_raw(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).unwrap();
    let (kind, message) = error_of(conn.read_frame().unwrap());
    assert_eq!(kind, ErrorKind::BadRequest);
    assert!(message.contains("unreadable frame"), "{message}");
    assert!(conn.closed_by_server());
    still_serves(&daemon);
}

#[test]
fn garbage_bytes_instead_of_a_handshake() {
    let daemon = Daemon::start("");
    let mut conn = RawConn::connect(&daemon.socket()).unwrap();
    conn.send_raw(b"GET / HTTP/1.1\r\nHost: drd\r\n\r\n")
        .unwrap();
    let (kind, _) = error_of(conn.read_frame().unwrap());
    assert_eq!(kind, ErrorKind::BadRequest);
    assert!(conn.closed_by_server());

    // Short garbage that is a valid frame holding an invalid hello.
    let mut conn = RawConn::connect(&daemon.socket()).unwrap();
    conn.send_frame(&[0x07; 16]).unwrap();
    let (kind, message) = error_of(conn.read_frame().unwrap());
    assert_eq!(kind, ErrorKind::BadRequest);
    assert!(message.contains("bad handshake"), "{message}");
    still_serves(&daemon);
}

#[test]
fn a_silent_client_is_timed_out() {
    let daemon = Daemon::start("handshake_timeout = \"300ms\"\nidle_timeout = \"500ms\"");
    let mut silent = RawConn::connect(&daemon.socket()).unwrap();
    let (_, message) = error_of(silent.read_frame().unwrap());
    assert!(message.contains("idle"), "{message}");
    assert!(silent.closed_by_server());

    let mut idle = RawConn::connect(&daemon.socket()).unwrap();
    idle.handshake().unwrap();
    assert!(idle.closed_by_server());
    still_serves(&daemon);
}

#[test]
fn connections_beyond_the_cap_are_told_the_daemon_is_busy() {
    // root may use the reserved slot too: two shared and one reserved.
    let daemon = Daemon::start("max_connections = 2\nreserved_connections = 1");
    // The readiness probe's connection may still hold a slot for a moment after it
    // closed, so take the three slots as soon as they are free.
    let mut held: Vec<RawConn> = Vec::new();
    drd_integration_tests::eventually("three connection slots", || {
        let mut c = RawConn::connect(&daemon.socket()).unwrap();
        if c.handshake().is_ok() {
            held.push(c);
        }
        held.len() == 3
    });
    let mut fourth = RawConn::connect(&daemon.socket()).unwrap();
    let (kind, message) = error_of(fourth.read_frame().unwrap());
    assert_eq!(kind, ErrorKind::Busy);
    assert!(message.contains("too many connections"), "{message}");

    let out = daemon.drctl(&["status"]);
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("too many connections"),
        "drctl says why it was turned away: {}",
        text(&out)
    );

    held.pop();
    drd_integration_tests::eventually("a free connection slot", || {
        daemon.drctl(&["status"]).status.success()
    });
}
