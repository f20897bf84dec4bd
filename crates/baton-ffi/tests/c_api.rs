//! Compiles the C test program (`tests/c/msg_test.c`) with `cc` against the headers and
//! `libSaMsg.so` this build made, and runs it in a domain of its own.

#[path = "../../baton/tests/common/mod.rs"]
mod common;
use std::path::PathBuf;
use std::process::Command;

/// `target/<profile>`: where cargo put this test binary's `deps/`, and the libraries.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// Compiles `tests/c/<file>` against the headers and `libSaMsg.so`, and runs it in domain
/// `t`; its standard output.
fn compile_and_run(file: &str, t: &common::TestDomain) -> String {
    let profile = profile_dir();
    let lib = profile.join("libSaMsg.so");
    assert!(
        lib.exists(),
        "{} was not built: `cargo test` builds no cdylib; run `cargo build --release -p baton-ffi` \
         (the README's test command does) first",
        lib.display()
    );
    let include = profile.parent().unwrap().join("include");
    assert!(
        include.join("saMsg.h").exists(),
        "headers not written to {}",
        include.display()
    );
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c")
        .join(file);
    let exe = std::env::temp_dir().join(format!("baton-{file}-{}", t.name()));
    let cc = Command::new("cc")
        .args([
            "-std=c11",
            "-D_DEFAULT_SOURCE",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-o",
        ])
        .arg(&exe)
        .arg(&src)
        .arg(format!("-I{}", include.display()))
        .arg(format!("-L{}", profile.display()))
        .arg(format!("-Wl,-rpath,{}", profile.display()))
        .args(["-lSaMsg", "-lpthread"])
        .output()
        .expect("cc runs");
    assert!(
        cc.status.success(),
        "cc: {}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let out = Command::new(&exe)
        .env("BATON_DOMAIN", t.name())
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&exe);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{file}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.into_owned()
}

#[test]
fn the_c_test_program_passes_against_libsamsg() {
    let t = common::TestDomain::new("c-api");
    let stdout = compile_and_run("msg_test.c", &t);
    assert!(stdout.starts_with("ok "), "{stdout}");
    assert!(t.leftovers().is_empty(), "left: {:?}", t.leftovers());
}

/// The review's cases: gets on a closed or cancelled handle, dispatch ONE, names, a dispatch
/// beside a blocking get, an unlinked callback queue, fork, finalize racing a standby open.
#[test]
fn the_adversarial_c_cases_pass() {
    let t = common::TestDomain::new("c-adv");
    let stdout = compile_and_run("adversarial.c", &t);
    assert!(stdout.contains("ok: 0 failed"), "{stdout}");
}
