//! The modules of `baton` are layers, and imports point down only (docs/design.md, "Module
//! map"): a module may name the modules below it, never one above. This test reads the
//! sources and fails on any `crate::<module>` that points up, and on a module missing from
//! the map (a new module must be given its place).

/// The layers, lowest first. A new feature module goes above `queue` (or above what it uses).
const LAYERS: &[&str] = &[
    "error", "name", "sys", "segment", "recovery", "owner", "queue",
];

/// Every `crate::<module>` a source text names, with its line number, including the members
/// of a grouped `use crate::{a, b::c}`. Comments are skipped.
fn crate_references(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut line_of = Vec::new();
    let mut code = String::new();
    for (i, line) in text.lines().enumerate() {
        let line = match line.find("//") {
            Some(c) => &line[..c],
            None => line,
        };
        code.push_str(line);
        code.push('\n');
        line_of.extend(std::iter::repeat_n(i + 1, line.len() + 1));
    }
    let bytes = code.as_bytes();
    let ident = |from: usize| -> String {
        code[from..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut at = 0;
    while let Some(pos) = code[at..].find("crate::") {
        let start = at + pos;
        at = start + "crate::".len();
        // `$crate::` and `baton_ring::...crate::` are not ours; `crate::` must start a path.
        if start > 0
            && (bytes[start - 1].is_ascii_alphanumeric()
                || bytes[start - 1] == b'_'
                || bytes[start - 1] == b'$'
                || bytes[start - 1] == b':')
        {
            continue;
        }
        if bytes.get(at) == Some(&b'{') {
            // A group: the first identifier of each top-level member.
            let mut depth = 0;
            let mut member_start = at + 1;
            for (k, &b) in bytes.iter().enumerate().skip(at) {
                match b {
                    b'{' => depth += 1,
                    b'}' | b',' if depth == 1 => {
                        let member = ident(
                            code[member_start..k]
                                .find(|c: char| !c.is_whitespace())
                                .map_or(k, |o| member_start + o),
                        );
                        if !member.is_empty() && member != "self" {
                            found.push((line_of[member_start], member));
                        }
                        member_start = k + 1;
                        if b == b'}' {
                            break;
                        }
                    }
                    b'}' => depth -= 1,
                    _ => {}
                }
            }
        } else {
            found.push((line_of[start], ident(at)));
        }
    }
    found
}

/// The layer a source file belongs to: the first component of its path under `src/`
/// (`src/queue/sender.rs` is in `queue`); `None` for the crate root.
fn layer_of(relative: &std::path::Path) -> Option<String> {
    let first = relative
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (name != "lib").then_some(name)
}

/// What breaks the rule in the given files (path relative to `src/`, text).
fn violations(files: &[(std::path::PathBuf, String)]) -> Vec<String> {
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut bad = Vec::new();
    for (path, text) in files {
        let Some(layer) = layer_of(path) else {
            continue;
        };
        let Some(own) = rank(&layer) else {
            bad.push(format!(
                "{}: module `{layer}` has no place in LAYERS (tests/layers.rs, docs/design.md)",
                path.display()
            ));
            continue;
        };
        for (line, target) in crate_references(text) {
            match rank(&target) {
                Some(r) if r > own => bad.push(format!(
                    "{}:{line}: `{layer}` imports `crate::{target}`, a layer above it",
                    path.display()
                )),
                // Items the crate root re-exports are the public API: a layer uses its own
                // module's items by their module path instead.
                None => bad.push(format!(
                    "{}:{line}: `crate::{target}` is not a layer: name the module it lives in",
                    path.display()
                )),
                _ => {}
            }
        }
    }
    bad
}

fn sources() -> Vec<(std::path::PathBuf, String)> {
    let src = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src"));
    let mut files = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if p.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&p).unwrap();
            files.push((p.strip_prefix(&src).unwrap().to_path_buf(), text));
        }
    }
    files.sort();
    files
}

#[test]
fn every_module_imports_only_from_layers_below_it() {
    let files = sources();
    assert!(files.len() > 10, "found the sources");
    let bad = violations(&files);
    assert!(bad.is_empty(), "imports that point up:\n{}", bad.join("\n"));
}

#[test]
fn the_check_finds_an_import_that_points_up_and_a_module_out_of_the_map() {
    let files = vec![
        (
            "sys/clock.rs".into(),
            "use crate::error::OpenError; // fine\nuse crate::{name::Domain, queue::Queue};\n"
                .to_string(),
        ),
        (
            "segment/mod.rs".into(),
            "fn f() { let _ = crate::owner::acquire; }\n// crate::queue in a comment is fine\n"
                .to_string(),
        ),
        ("rpc.rs".into(), "use crate::queue::Queue;\n".to_string()),
    ];
    let bad = violations(&files);
    assert_eq!(bad.len(), 3, "{bad:#?}");
    assert!(
        bad[0].starts_with("sys/clock.rs:2: `sys` imports `crate::queue`"),
        "{}",
        bad[0]
    );
    assert!(
        bad[1].starts_with("segment/mod.rs:1: `segment` imports `crate::owner`"),
        "{}",
        bad[1]
    );
    assert!(bad[2].contains("module `rpc` has no place"), "{}", bad[2]);
}
