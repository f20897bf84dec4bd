//! Compiling C programs against the headers and `libSaMsg.so` this build made.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `target/<profile>`: where cargo put this test binary's `deps/`, and the libraries.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// Compiles `sources` with `cc -std=c11 -Wall -Wextra -Werror` against `target/include` and
/// `libSaMsg.so` into a temporary executable named after `tag`.
pub fn compile(sources: &[PathBuf], tag: &str) -> PathBuf {
    let profile = profile_dir();
    let include = profile.parent().unwrap().join("include");
    assert!(
        profile.join("libSaMsg.so").exists()
            && ["saMsg.h", "saAis.h", "baton.h"]
                .iter()
                .all(|h| include.join(h).exists()),
        "{} or the headers in {} were not built: `cargo test` builds no cdylib; run \
         `cargo build --release -p baton-ffi` (the README's test command does) first",
        profile.join("libSaMsg.so").display(),
        include.display()
    );
    let exe = std::env::temp_dir().join(format!("baton-cc-{tag}"));
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
        .args(sources)
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
    exe
}

/// A source file of this crate, by its path from the crate's directory.
pub fn source(path: impl AsRef<Path>) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}
