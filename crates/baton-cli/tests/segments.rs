//! Segments on disk: exact modes whatever the umask, and files that were tampered with.

mod common;
use baton::{Attributes, OpenError, Queue, RecvError};
use common::TestDomain;
use std::os::unix::fs::{FileExt, PermissionsExt};

fn mode_of(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_mode_is_exact_under_umask_000_and_077() {
    let t = TestDomain::new("umask");
    for (umask, mode) in [
        ("000", "600"),
        ("077", "660"),
        ("077", "644"),
        ("000", "666"),
    ] {
        let name = format!("q{umask}{mode}");
        let script = format!("umask {umask} && exec \"$0\" create {name} --mode {mode}");
        let out = std::process::Command::new("sh")
            .args(["-c", &script, env!("CARGO_BIN_EXE_baton")])
            .env("BATON_DOMAIN", t.name())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            format!("{:o}", mode_of(&t.file(&name))),
            mode,
            "umask {umask}"
        );
    }
}

#[test]
fn the_default_mode_is_0600() {
    let t = TestDomain::new("mode-default");
    Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    assert_eq!(mode_of(&t.file("q")), 0o600);
}

#[test]
fn a_segment_whose_mode_was_changed_is_refused_unless_the_caller_opts_in() {
    let t = TestDomain::new("chmod");
    Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    std::fs::set_permissions(t.file("q"), std::fs::Permissions::from_mode(0o666)).unwrap();
    let e = Queue::open(&t.domain, "q").unwrap_err();
    assert!(matches!(e, OpenError::PermissionDenied { .. }), "{e}");
    assert!(e.to_string().contains("666"), "{e}");
    // Only on explicit request.
    let q = Queue::open_accepting_mode(&t.domain, "q").unwrap();
    q.sender().send(b"in").unwrap();
    assert_eq!(q.status().lanes[3].messages, 1);
}

#[test]
fn a_symlink_in_place_of_a_segment_is_refused() {
    let t = TestDomain::new("symlink");
    Queue::create(&t.domain, "real", &Attributes::default()).unwrap();
    std::os::unix::fs::symlink(t.file("real"), t.file("link")).unwrap();
    let e = Queue::open(&t.domain, "link").unwrap_err();
    assert!(e.to_string().contains("symbolic link"), "{e}");
}

#[test]
fn a_file_that_is_not_a_queue_is_corrupt() {
    let t = TestDomain::new("notaqueue");
    std::fs::write(t.file("junk"), vec![0x5a; 32768]).unwrap();
    std::fs::set_permissions(t.file("junk"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = Queue::open(&t.domain, "junk").unwrap_err();
    assert!(
        matches!(
            e,
            OpenError::Corrupt {
                reason: baton::SegmentDamage::BadMagic(_),
                ..
            }
        ) && e.to_string().contains("magic"),
        "{e}"
    );
    let e = Queue::create(&t.domain, "junk", &Attributes::default()).unwrap_err();
    assert!(
        matches!(e, OpenError::Corrupt { .. }),
        "create does not overwrite it either: {e}"
    );
}

fn overwrite(t: &TestDomain, name: &str, offset: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(t.file(name))
        .unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

#[test]
fn an_overwritten_header_is_rejected_with_a_clear_error() {
    let t = TestDomain::new("header");
    Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    overwrite(&t, "q", 0, &[0xff; 64]);
    let e = Queue::open(&t.domain, "q").unwrap_err();
    assert!(matches!(e, OpenError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("bad magic"), "{e}");
}

#[test]
fn a_header_with_a_byte_swapped_magic_is_incompatible() {
    let t = TestDomain::new("endian");
    Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let swapped = 0x4241_544F_4E51_0001u64.swap_bytes().to_ne_bytes();
    overwrite(&t, "q", 0, &swapped);
    let e = Queue::open(&t.domain, "q").unwrap_err();
    assert!(
        matches!(
            e,
            OpenError::Incompatible {
                reason: baton::Incompatibility::ByteOrder,
                ..
            }
        ) && e.to_string().contains("byte order"),
        "{e}"
    );
}

#[test]
fn a_header_of_another_format_version_is_incompatible() {
    let t = TestDomain::new("format");
    Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    overwrite(&t, "q", 8, &99u32.to_ne_bytes());
    let e = Queue::open(&t.domain, "q").unwrap_err();
    assert!(
        matches!(e, OpenError::Incompatible { .. }) && e.to_string().contains("format version 99"),
        "{e}"
    );
}

#[test]
fn a_header_with_a_foreign_abi_tag_is_incompatible() {
    let t = TestDomain::new("abi");
    Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    overwrite(&t, "q", 16, &32u32.to_ne_bytes()); // pointer width
    let e = Queue::open(&t.domain, "q").unwrap_err();
    assert!(
        matches!(e, OpenError::Incompatible { .. }) && e.to_string().contains("ABI"),
        "{e}"
    );
}

#[test]
fn a_header_whose_capacities_were_changed_is_corrupt() {
    let t = TestDomain::new("capacity");
    Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    // capacity[0] is at offset 72 (after magic, format, header size, ABI tag, size, time,
    // retention).
    overwrite(&t, "q", 72, &(1u64 << 40).to_ne_bytes());
    let e = Queue::open(&t.domain, "q").unwrap_err();
    assert!(matches!(e, OpenError::Corrupt { .. }), "{e}");
}

#[test]
fn a_truncated_segment_is_rejected() {
    let t = TestDomain::new("truncated");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    let size = q.status().size;
    drop(q);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(t.file("q"))
        .unwrap();
    f.set_len(size / 2).unwrap();
    let e = Queue::open(&t.domain, "q").unwrap_err();
    assert!(
        matches!(
            e,
            OpenError::Corrupt {
                reason: baton::SegmentDamage::Truncated { .. },
                ..
            }
        ) && e.to_string().contains("truncated"),
        "{e}"
    );
    f.set_len(100).unwrap();
    let e = Queue::open(&t.domain, "q").unwrap_err();
    assert!(e.to_string().contains("smaller than a header"), "{e}");
}

#[test]
fn scribbled_lane_stamps_make_receive_fail_with_corrupt_not_crash() {
    let t = TestDomain::new("stamps");
    let q = Queue::create(&t.domain, "q", &Attributes::default()).unwrap();
    q.sender().with_priority(0).unwrap().send(b"fine").unwrap();
    // Lane 0's stamps start after its control block, at the first 64-byte boundary past it.
    let mut rx = q.receiver().unwrap();
    assert_eq!(rx.recv().unwrap().payload(), b"fine");
    q.sender()
        .with_priority(0)
        .unwrap()
        .send(b"victim")
        .unwrap();
    let stamps_at = find_stamp(&t, 1);
    // Claimed at position 1, spanning a million cells, committed: impossible in a 1024-cell lane.
    overwrite(
        &t,
        "q",
        stamps_at,
        &((1u64 << 32) | (0xf_ffff << 12) | 2).to_ne_bytes(),
    );
    match rx.try_recv() {
        Err(RecvError::Corrupt(baton::Damage::Lane(baton::LaneDamage::BadSpan {
            cells, ..
        }))) => {
            assert_eq!(cells, 0xf_ffff)
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// Finds the file offset of the stamp for position `pos` of lane 0 by its tag.
fn find_stamp(t: &TestDomain, pos: u64) -> u64 {
    let bytes = std::fs::read(t.file("q")).unwrap();
    (32768..bytes.len() as u64)
        .step_by(8)
        .find(|&off| {
            let w = u64::from_ne_bytes(bytes[off as usize..off as usize + 8].try_into().unwrap());
            w >> 32 == pos && w & 0xf == 2
        })
        .expect("a committed stamp for the position")
}
