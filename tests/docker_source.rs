//! The `docker` backup source against the real Docker engine: containers chosen by
//! name or label, their inspect documents and volumes stored and restored, and the
//! container paused or stopped during the backup and always running again after.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use drd_integration_tests::docker::{self, Container};

#[test]
fn the_test_image_runs_with_a_volume_and_a_bind_mount() {
    if !docker::require_docker() {
        return;
    }
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("conf"), "hello\n").unwrap();
    let web = Container::new("img")
        .volume("data", "/data")
        .bind(host.path(), "/conf")
        .label("drd.test.case", "img")
        .start();
    web.exec(&["sh", "-c", "echo stored > /data/file"]);
    assert_eq!(web.exec(&["cat", "/conf/conf"]), "hello");
    let on_host = std::fs::read_to_string(web.volume_path("data").join("file")).unwrap();
    assert_eq!(on_host, "stored\n");
    web.stop();
    web.wait_status("exited", Duration::from_secs(5));
    web.start();
    web.wait_status("running", Duration::from_secs(10));
    let volume = web.volume_name("data");
    drop(web);
    assert!(!docker::docker(&["volume", "inspect", &volume])
        .status
        .success());
}
