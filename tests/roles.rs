//! Authorization: peer credentials map to roles; a refusal is explained and audited;
//! nobody on the socket can take every connection slot from root or a responder.
#![allow(clippy::unwrap_used)]

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use drd_integration_tests::{audit_rows, eventually, python3_with, running_as_root, text, Daemon};
use drd_proto::codec;
use drd_proto::{ClientFrame, ErrorKind, Hello, Response, ServerFrame, PROTOCOL_VERSION};

/// A uid and gid that no one on the test machine uses.
const OTHER: u32 = 47_913;

/// Runs drctl as `OTHER`, a uid that is neither root nor the daemon's.
fn drctl_as_unprivileged(daemon: &Daemon, args: &[&str]) -> std::process::Output {
    daemon.drctl_as(OTHER, OTHER, args)
}

/// The uid and gid `drctl_as_unprivileged` runs with, or `None` (and the test is
/// skipped, or fails under CI) where the tests do not run as root: the daemon's own uid
/// holds every role, so only root can be a client that holds less.
fn unprivileged_ids() -> Option<(u32, u32)> {
    running_as_root("connecting as another user needs root").then_some((OTHER, OTHER))
}

#[test]
fn a_viewer_may_look_but_not_reload_and_the_refusal_is_audited() {
    let Some((uid, gid)) = unprivileged_ids() else {
        return;
    };
    let daemon = Daemon::start(&format!(
        "socket_group = {gid}\n[roles]\nviewer = {{ users = [{uid}] }}\noperator = {{ users = [1] }}"
    ));

    let out = drctl_as_unprivileged(&daemon, &["status"]);
    assert!(out.status.success(), "{}", text(&out));

    let out = drctl_as_unprivileged(&daemon, &["reload"]);
    assert_eq!(out.status.code(), Some(77), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("permission denied: reload needs operator"),
        "{stderr}"
    );

    let rows = audit_rows(&daemon.catalog());
    let refusal = rows
        .iter()
        .find(|r| r.1 == "request reload")
        .unwrap_or_else(|| panic!("no audit entry for the refusal: {rows:?}"));
    assert_eq!(refusal.2, "refused");
    assert!(
        refusal.0.starts_with(&format!("uid={uid} gid={gid} pid=")),
        "{refusal:?}"
    );
    assert!(refusal.3.contains("needs operator"), "{refusal:?}");
}

#[test]
fn a_peer_with_no_role_is_refused_even_status() {
    let Some((_, gid)) = unprivileged_ids() else {
        return;
    };
    let daemon = Daemon::start(&format!(
        "socket_group = {gid}\n[roles]\nviewer = {{ users = [1] }}"
    ));
    let out = drctl_as_unprivileged(&daemon, &["status"]);
    assert_eq!(out.status.code(), Some(77), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("holds no role"),
        "{}",
        text(&out)
    );
}

#[test]
fn group_membership_grants_a_role() {
    let Some((_, gid)) = unprivileged_ids() else {
        return;
    };
    let daemon = Daemon::start(&format!(
        "socket_group = {gid}\n[roles]\noperator = {{ groups = [{gid}] }}"
    ));
    let out = drctl_as_unprivileged(&daemon, &["reload"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// The group of the socket in the lockout tests; every test user below is in it.
const SOCKET_GID: u32 = 47_920;
/// A member of the socket group with no role.
const ROLELESS: u32 = 47_920;
/// A responder.
const RESPONDER: u32 = 47_921;
/// Two viewers.
const VIEWER: u32 = 47_922;
const VIEWER_2: u32 = 47_923;

/// `n` connections to drd from `uid`, each with a hello sent (or none, if silent),
/// held open until dropped: what a hostile (or leaky) member of the socket group does.
/// Done by a python3 child, since only a whole process can take another uid.
struct Holder {
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    n: usize,
    /// The first reply on each connection, once read: a welcome, or an error kind and
    /// message.
    replies: Vec<Result<(), (ErrorKind, String)>>,
}

const HOLD: &str = r#"
import socket, struct, sys
path, hello, n = sys.argv[1], bytes.fromhex(sys.argv[2]), int(sys.argv[3])
conns = []
for _ in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    if hello:
        try:
            s.sendall(struct.pack(">I", len(hello)) + hello)
        except OSError:
            pass  # turned away before the hello landed; the reason is still there to read
    conns.append(s)
print("opened", flush=True)
def first_reply(s):
    s.settimeout(120)
    data = b""
    try:
        while len(data) < 4 or len(data) < 4 + struct.unpack(">I", data[:4])[0]:
            chunk = s.recv(65536)
            if not chunk:
                return "closed"
            data += chunk
    except OSError as e:
        return "error"
    return data[4:4 + struct.unpack(">I", data[:4])[0]].hex()
for s in conns:
    print(first_reply(s), flush=True)
print("holding", flush=True)
sys.stdin.read()
"#;

impl Holder {
    /// Opens the connections (sending a hello on each unless `silent`) and returns
    /// once all are open, before any reply is read.
    fn open(daemon: &Daemon, uid: u32, n: usize, silent: bool) -> Holder {
        use std::io::BufRead;
        let hello = codec::encode(&ClientFrame::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            client: "holder".to_owned(),
        }))
        .unwrap();
        let hex: String = if silent {
            String::new()
        } else {
            hello.iter().map(|b| format!("{b:02x}")).collect()
        };
        // The system python: a per-user one (pyenv) may not be readable by the test user.
        let mut child = Command::new("/usr/bin/python3")
            .args(["-c", HOLD])
            .arg(daemon.socket())
            .arg(hex)
            .arg(n.to_string())
            .uid(uid)
            .gid(SOCKET_GID)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run python3");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(
            lines.next().map(Result::unwrap).as_deref(),
            Some("opened"),
            "the holder could not open its connections"
        );
        Holder {
            child,
            lines,
            n,
            replies: Vec::new(),
        }
    }

    /// Waits for the first reply on every connection.
    fn read_replies(&mut self) -> &mut Self {
        for line in self.lines.by_ref() {
            let line = line.unwrap();
            if line == "holding" {
                break;
            }
            let bytes: Vec<u8> = (0..line.len())
                .step_by(2)
                .filter_map(|i| u8::from_str_radix(line.get(i..i + 2)?, 16).ok())
                .collect();
            self.replies
                .push(match codec::decode::<ServerFrame>(&bytes) {
                    Ok(ServerFrame::Welcome(_)) => Ok(()),
                    Ok(ServerFrame::Response(Response::Error(e))) => Err((e.kind, e.message)),
                    other => panic!("unexpected first reply {line:?}: {other:?}"),
                });
        }
        assert_eq!(
            self.replies.len(),
            self.n,
            "the holder did not report every connection"
        );
        self
    }

    /// The message of a busy reply. Which connections are turned away is up to the
    /// order the daemon's tasks run in, not the order they were opened.
    fn busy_message(&self) -> String {
        self.replies
            .iter()
            .find_map(|r| match r {
                Err((ErrorKind::Busy, message)) => Some(message.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no busy reply: {:?}", self.replies))
    }

    fn count(&self, what: Result<(), ErrorKind>) -> usize {
        self.replies
            .iter()
            .filter(|r| r.as_ref().map_err(|(k, _)| *k) == what.as_ref().map_err(|k| *k))
            .count()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn drctl_as(daemon: &Daemon, uid: u32, args: &[&str]) -> std::process::Output {
    daemon.drctl_as(uid, SOCKET_GID, args)
}

fn lockout_daemon(extra: &str) -> Option<Daemon> {
    if !running_as_root("connecting as other users needs root")
        || !python3_with("socket", "the holder of connections is a python3 child")
    {
        return None;
    }
    Some(Daemon::start(&format!(
        "socket_group = {SOCKET_GID}\n{extra}\n[roles]\n\
         viewer = {{ users = [{VIEWER}, {VIEWER_2}] }}\nresponder = {{ users = [{RESPONDER}] }}"
    )))
}

/// Root and a responder get in at once, whatever the holder holds.
fn on_call_gets_in(daemon: &Daemon) {
    let out = daemon.drctl(&["status"]);
    assert!(out.status.success(), "root locked out: {}", text(&out));
    let out = drctl_as(daemon, RESPONDER, &["status"]);
    assert!(out.status.success(), "responder locked out: {}", text(&out));
}

#[test]
fn a_role_less_member_of_the_socket_group_cannot_lock_out_root() {
    let Some(daemon) = lockout_daemon("") else {
        return;
    };
    let mut holder = Holder::open(&daemon, ROLELESS, 70, false);
    on_call_gets_in(&daemon);
    holder.read_replies();

    // Every one of them was refused right after its hello, with the reason.
    assert_eq!(
        holder.count(Err(ErrorKind::PermissionDenied)),
        70,
        "{:?}",
        holder.replies
    );
    let (_, message) = holder.replies[0].clone().unwrap_err();
    assert!(message.contains("holds no role"), "{message}");
    let out = drctl_as(&daemon, ROLELESS, &["status"]);
    assert_eq!(out.status.code(), Some(77), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("roles.viewer"),
        "{}",
        text(&out)
    );

    // One audit entry per refused connection (70 held, one drctl).
    let refusals = audit_rows(&daemon.catalog())
        .into_iter()
        .filter(|r| r.0.starts_with(&format!("uid={ROLELESS} ")) && r.1 == "connect")
        .inspect(|r| assert_eq!(r.2, "refused", "{r:?}"))
        .count();
    assert_eq!(refusals, 71);
}

#[test]
fn one_viewer_holds_at_most_its_share_of_connections() {
    let Some(daemon) = lockout_daemon("") else {
        return;
    };
    let mut holder = Holder::open(&daemon, VIEWER, 70, false);
    on_call_gets_in(&daemon);
    holder.read_replies();
    assert_eq!(holder.count(Ok(())), 16, "{:?}", holder.replies);
    assert_eq!(holder.count(Err(ErrorKind::Busy)), 54);
    let message = holder.busy_message();
    assert!(message.contains("max_connections_per_uid"), "{message}");
    // Another viewer still gets one of the shared slots.
    let out = drctl_as(&daemon, VIEWER_2, &["status"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn slots_are_kept_for_root_and_responders_when_the_shared_ones_are_taken() {
    let Some(daemon) = lockout_daemon("max_connections = 4") else {
        return;
    };
    // The readiness probe's connection may hold a shared slot for a moment after it
    // closed, so try until the viewer gets all four.
    let mut holder = None;
    eventually("the viewer to hold every shared slot", || {
        let mut h = Holder::open(&daemon, VIEWER, 10, false);
        h.read_replies();
        let full = h.count(Ok(())) == 4 && h.count(Err(ErrorKind::Busy)) == 6;
        holder = full.then_some(h);
        full
    });
    let message = holder.as_ref().unwrap().busy_message();
    assert!(message.contains("too many connections"), "{message}");
    on_call_gets_in(&daemon);
    let out = drctl_as(&daemon, VIEWER_2, &["status"]);
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("too many connections"),
        "{}",
        text(&out)
    );
}

#[test]
fn silent_role_less_connections_do_not_keep_root_waiting() {
    // A handshake timeout far longer than getting in takes on a loaded machine: root
    // and the responder must be in while the silent connections are still waited on.
    let Some(daemon) = lockout_daemon("handshake_timeout = \"30s\"") else {
        return;
    };
    // 70 connections that never send their hello: 16 are waited on for it, the rest
    // are refused at once, and none takes a slot.
    let mut holder = Holder::open(&daemon, ROLELESS, 70, true);
    on_call_gets_in(&daemon);
    // Each is audited when refused: the 16 only at their timeout, so fewer than 70
    // entries mean root and the responder did not wait for the timeout.
    let refused = || {
        audit_rows(&daemon.catalog())
            .iter()
            .filter(|r| r.0.starts_with(&format!("uid={ROLELESS} ")) && r.1 == "connect")
            .count()
    };
    assert!(
        refused() < 70,
        "root and a responder got in only after the silent connections timed out"
    );
    holder.read_replies();
    assert_eq!(
        holder.count(Err(ErrorKind::PermissionDenied)),
        70,
        "{:?}",
        holder.replies
    );
}
