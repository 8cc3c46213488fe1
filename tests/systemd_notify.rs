//! The sd_notify protocol, against a datagram socket standing in for systemd's.
#![allow(clippy::unwrap_used)]

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use drd_integration_tests::Daemon;
use nix::sys::signal::Signal;

fn receive_until(socket: &UnixDatagram, want: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            let found = message.lines().any(|l| l == want);
            seen.push(message);
            if found {
                return;
            }
        }
    }
    panic!("no {want} from drd; got {seen:?}");
}

#[test]
fn ready_watchdog_status_and_stopping_are_sent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();

    let mut daemon = Daemon::start_with_env(
        "",
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let mut seen = Vec::new();
    receive_until(&socket, "READY=1", &mut seen);
    assert!(seen.concat().contains("STATUS=serving on"), "{seen:?}");
    // Two pets at half of 400 ms.
    receive_until(&socket, "WATCHDOG=1", &mut seen);
    receive_until(&socket, "WATCHDOG=1", &mut seen);

    let status = daemon.drctl(&["status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("watchdog"));

    daemon.signal(Signal::SIGTERM);
    receive_until(&socket, "STOPPING=1", &mut seen);
    assert_eq!(daemon.wait_exit(Duration::from_secs(10)), Some(0));
}
