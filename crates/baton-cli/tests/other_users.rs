//! Another user on the same machine, and a full `/dev/shm`. These need root: to act as a
//! second user (`nobody`, through `setpriv`) and to mount a small tmpfs over `/dev/shm` in a
//! private mount namespace (`unshare -m`). CI runs as root; elsewhere each test says it cannot
//! run and returns.

mod common;
use baton::{OpenError, Queue};
use common::{Cli, TestDomain};
use std::process::Command;

fn root() -> bool {
    let is_root = nix::unistd::geteuid().is_root();
    if !is_root {
        eprintln!("not root: cannot act as another user or mount a tmpfs; test not run");
    }
    is_root
}

/// Runs a shell command as `nobody`.
fn as_nobody(script: &str) {
    let st = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
            script,
        ])
        .status()
        .expect("setpriv");
    assert!(st.success(), "as nobody: {script}");
}

#[test]
fn a_name_taken_by_another_user_is_refused_never_used() {
    if !root() {
        return;
    }
    let t = TestDomain::new("squat");
    let path = t.file("q");
    as_nobody(&format!(
        "umask 0; printf 'squatter' > {0}; chmod 666 {0}",
        path.display()
    ));
    match Queue::create(&t.domain, "q", &Default::default()) {
        Err(OpenError::PermissionDenied { reason, .. }) => {
            assert!(
                matches!(reason, baton::Denial::OtherUser { owner: 65534, .. }),
                "{reason}"
            )
        }
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
    assert!(matches!(
        Queue::open(&t.domain, "q"),
        Err(OpenError::PermissionDenied { .. })
    ));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"squatter",
        "their file is untouched"
    );
    let out = t.baton().args(["send", "q", "x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("uid 65534"));
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn gc_never_removes_another_users_files() {
    if !root() {
        return;
    }
    let t = TestDomain::new("gc-other");
    let dead = {
        let mut c = Command::new("true").spawn().unwrap();
        c.wait().unwrap();
        c.id()
    };
    let theirs =
        std::path::Path::new(baton::SHM_DIR).join(format!("baton.{}~.tmp.{dead}.0", t.name()));
    as_nobody(&format!("printf x > {}", theirs.display()));
    let removed = Queue::gc(&t.domain).unwrap();
    assert!(removed.is_empty(), "{removed:?}");
    assert!(theirs.exists());
    std::fs::remove_file(&theirs).unwrap();
}

/// `baton` in a private mount namespace whose `/dev/shm` is a fresh tmpfs with `options`.
fn in_small_shm(options: &str, script: &str) -> std::process::Output {
    let baton = env!("CARGO_BIN_EXE_baton");
    Command::new("unshare")
        .args([
            "-m",
            "sh",
            "-c",
            &format!(
                "mount -t tmpfs -o {options} tmpfs /dev/shm && BATON={baton} BATON_DOMAIN=full \
                 sh -c '{script}'; echo; echo left:; ls /dev/shm"
            ),
        ])
        .output()
        .expect("unshare")
}

#[test]
fn a_full_dev_shm_gives_no_space_at_create_and_leaves_no_file() {
    if !root() {
        return;
    }
    let out = in_small_shm("size=256k", "$BATON create big --capacity 1M");
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("baton: error: no space in shared memory") && err.contains("bytes"),
        "{err}"
    );
    let left = text.split("left:").nth(1).unwrap_or("");
    assert!(left.trim().is_empty(), "files left behind: {left}");
}

#[test]
fn running_out_of_files_in_dev_shm_is_a_clear_error() {
    if !root() {
        return;
    }
    let out = in_small_shm(
        "size=64m,nr_inodes=4",
        "for i in 1 2 3 4 5; do $BATON create q$i || exit 0; done",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines()
            .any(|l| l.starts_with("baton: error: no space in shared memory")),
        "{err}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let left = text.split("left:").nth(1).unwrap_or("");
    assert!(
        !left.contains(".tmp."),
        "a half-made queue was left: {left}"
    );
}
