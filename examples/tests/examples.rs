//! The examples are part of the documentation: they must run and show what they promise.

use std::path::PathBuf;
use std::process::Command;

/// `target/<profile>/examples/<name>`, built by `cargo test` next to this test binary.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    profile_dir.join("examples").join(name)
}

#[test]
fn quickstart_receives_by_priority_and_takes_over() {
    let out = Command::new(example("quickstart")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("took the queue over"), "{text}");
}

#[test]
fn active_standby_shows_every_numbered_message_with_no_gap() {
    let out = Command::new(example("active_standby")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("3 takeovers"), "{text}");
    for from in ["A", "B", "A2"] {
        assert!(text.contains(&format!("from {from}: #0..")), "{text}");
    }
    assert!(!text.contains("MISSING"), "{text}");
}

#[test]
fn server_pool_answers_every_request_and_the_killed_servers_once_more_flagged() {
    let out = Command::new(example("server_pool")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("every request answered"), "{text}");
    assert!(text.contains("REDELIVERED"), "{text}");
    assert!(text.contains("killed s2"), "{text}");
}

#[test]
fn tokio_select_waits_on_a_queue_a_listener_and_a_timer_in_one_loop() {
    let out = Command::new(example("tokio_select")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("5 messages, 2 connections"), "{text}");
    for i in 1..=5 {
        assert!(text.contains(&format!("queue: message {i}")), "{text}");
    }
}
