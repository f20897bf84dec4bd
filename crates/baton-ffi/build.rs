//! Writes the C headers to `target/include/` and a pkg-config file to `target/pkgconfig/`, so
//! that `cargo build --release -p baton-ffi` leaves a C program everything it needs (see
//! docs/c-api.md). The target directory is found from `OUT_DIR`
//! (`<target>/<profile>/build/<pkg>/out`).

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    let Some(profile_dir) = out.ancestors().nth(3) else {
        return;
    };
    let Some(target) = profile_dir.parent() else {
        return;
    };
    let include = target.join("include");
    let pkgconfig = target.join("pkgconfig");
    let _ = std::fs::create_dir_all(&include);
    let _ = std::fs::create_dir_all(&pkgconfig);
    for h in ["saAis.h", "saMsg.h"] {
        let from = manifest.join("include").join(h);
        println!("cargo:rerun-if-changed={}", from.display());
        let _ = std::fs::copy(&from, include.join(h));
    }
    let pc = format!(
        "prefix={target}\nincludedir=${{prefix}}/include\nlibdir={libdir}\n\n\
         Name: SaMsg\nDescription: SA-Forum Message Service over baton shared-memory queues\n\
         Version: {version}\nCflags: -I${{includedir}}\nLibs: -L${{libdir}} -lSaMsg\n\
         Libs.private: -lpthread -ldl -lm\n",
        target = target.display(),
        libdir = profile_dir.display(),
        version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default(),
    );
    let _ = std::fs::write(pkgconfig.join("SaMsg.pc"), pc);
    println!("cargo:rerun-if-changed=build.rs");
}
