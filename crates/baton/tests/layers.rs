//! The modules of `baton` are layers, and imports point down only (docs/design.md, "Module
//! map"): a module may name the modules below it, never one above. This test parses the
//! sources (with `syn`) and fails on any path that reaches a layer above its own: through
//! `crate::`, `super::`, `self::`, `$crate::` in a macro, a `use` group at any depth, or an
//! item the crate root re-exports. It also refuses what would hide a module from it
//! (`#[path]`, `include!`, `extern crate self`) and a module missing from the map (a new
//! module must be given its place).

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use std::path::{Path, PathBuf};
use syn::visit::Visit;

/// The layers, lowest first. A new feature module goes above `queue` (or above what it uses).
const LAYERS: &[&str] = &[
    "error", "name", "sys", "segment", "recovery", "owner", "queue",
];

/// The module a source file is, as a path from the crate root (`queue/mod.rs` is `queue`,
/// `sys/clock.rs` is `sys::clock`, `lib.rs` the root).
fn module_of(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.strip_suffix(".rs").unwrap_or(&last).to_string();
        if stem != "mod" && stem != "lib" {
            parts.push(stem);
        }
    }
    parts
}

/// Everything one file names that the check looks at.
struct Scan {
    /// The module the code being read is in (the file's, then inline `mod`s within it).
    module: Vec<String>,
    /// `(line, absolute module path)` of every path into the crate.
    reached: Vec<(usize, Vec<String>)>,
    /// `(line, what)` of every construct that is refused outright.
    refused: Vec<(usize, String)>,
}

impl Scan {
    /// Resolves a path, written in this file, to a path from the crate root; `None` if it
    /// leads outside the crate (std, another crate) or to something local to this module.
    fn resolve(&self, segments: &[String]) -> Option<Vec<String>> {
        let first = segments.first()?;
        match first.as_str() {
            "crate" | "$crate" => Some(segments[1..].to_vec()),
            "self" => Some([&self.module[..], &segments[1..]].concat()),
            "super" => {
                let ups = segments.iter().take_while(|s| *s == "super").count();
                let base = self.module.len().checked_sub(ups)?;
                Some([&self.module[..base], &segments[ups..]].concat())
            }
            // In the root, a module of the crate is named without `crate::`.
            name if self.module.is_empty() && LAYERS.contains(&name) => Some(segments.to_vec()),
            _ => None,
        }
    }

    fn reach(&mut self, line: usize, segments: &[String]) {
        if segments.first().is_some_and(|s| s == "super") && self.resolve(segments).is_none() {
            self.refused
                .push((line, "`super::` above the crate root".into()));
        } else if let Some(path) = self.resolve(segments) {
            self.reached.push((line, path));
        }
    }

    /// Every path of a `use` tree, group members at any depth.
    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                prefix.push(n.ident.to_string());
                self.reach(n.ident.span().start().line, prefix);
                prefix.pop();
            }
            syn::UseTree::Rename(r) => {
                prefix.push(r.ident.to_string());
                self.reach(r.ident.span().start().line, prefix);
                prefix.pop();
            }
            syn::UseTree::Glob(g) => {
                let line = g.star_token.spans[0].start().line;
                self.reach(line, prefix);
            }
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }

    /// `crate :: name`, `$crate :: name`, `super ::`, `self ::` in a macro's tokens (macro
    /// bodies are not parsed), with `{ .. }` groups after them at any depth.
    fn tokens(&mut self, tokens: TokenStream) {
        let flat: Vec<TokenTree> = tokens.into_iter().collect();
        for (i, t) in flat.iter().enumerate() {
            match t {
                TokenTree::Group(g) => self.tokens(g.stream()),
                TokenTree::Ident(id) if id == "crate" || id == "super" || id == "self" => {
                    let first = if id == "crate"
                        && i > 0
                        && matches!(&flat[i - 1], TokenTree::Punct(p) if p.as_char() == '$')
                    {
                        "$crate".to_string()
                    } else {
                        id.to_string()
                    };
                    let line = id.span().start().line;
                    self.token_path(line, vec![first], &flat[i + 1..]);
                }
                _ => {}
            }
        }
    }

    /// Follows `:: name :: name ..` (and `:: { a, b::c, .. }`) after `prefix` in `rest`.
    fn token_path(&mut self, line: usize, mut prefix: Vec<String>, rest: &[TokenTree]) {
        let mut j = 0;
        loop {
            let colons = matches!(
                (rest.get(j), rest.get(j + 1)),
                (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
                    if a.as_char() == ':' && b.as_char() == ':'
            );
            if !colons {
                break;
            }
            match rest.get(j + 2) {
                Some(TokenTree::Ident(next)) => {
                    prefix.push(next.to_string());
                    j += 3;
                }
                Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => {
                    let members: Vec<TokenTree> = g.stream().into_iter().collect();
                    for member in
                        members.split(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == ','))
                    {
                        if let Some(TokenTree::Ident(first)) = member.first() {
                            let mut path = prefix.clone();
                            path.push(first.to_string());
                            self.token_path(line, path, &member[1..]);
                        }
                    }
                    return;
                }
                _ => break,
            }
        }
        if prefix.len() > 1 {
            self.reach(line, &prefix);
        }
    }
}

impl<'ast> Visit<'ast> for Scan {
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let mut prefix = Vec::new();
        if u.leading_colon.is_some() {
            return; // `::name`: another crate
        }
        self.use_tree(&mut prefix, &u.tree);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        if p.leading_colon.is_none() {
            let segments: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
            let line = p.segments[0].ident.span().start().line;
            if segments.len() > 1 || segments[0] != "self" {
                self.reach(line, &segments);
            }
        }
        syn::visit::visit_path(self, p);
    }

    /// `pub(crate)`, `pub(super)`, `pub(in ..)`: who may see an item, not a path to one.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        let line = m.path.segments[0].ident.span().start().line;
        if m.path.segments.last().is_some_and(|s| s.ident == "include") {
            self.refused
                .push((line, "`include!` hides code from this check".into()));
        }
        self.tokens(m.tokens.clone());
        syn::visit::visit_macro(self, m);
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        // `#[path = ..]`, also inside `#[cfg_attr(.., path = ..)]`.
        let names_path = |a: &syn::Attribute| {
            a.path().is_ident("path")
                || (a.path().is_ident("cfg_attr") && {
                    let tokens: Vec<TokenTree> = match &a.meta {
                        syn::Meta::List(l) => l.tokens.clone().into_iter().collect(),
                        _ => Vec::new(),
                    };
                    tokens.windows(2).any(|w| {
                        matches!((&w[0], &w[1]), (TokenTree::Ident(i), TokenTree::Punct(p))
                            if i == "path" && p.as_char() == '=')
                    })
                })
        };
        if m.attrs.iter().any(names_path) {
            let line = m.ident.span().start().line;
            self.refused.push((
                line,
                format!(
                    "`#[path]` on `mod {}`: a module lives in the file of its name",
                    m.ident
                ),
            ));
        }
        // Inside an inline module (`mod tests { .. }`), paths are relative to it.
        let inline = m.content.is_some();
        if inline {
            self.module.push(m.ident.to_string());
        }
        syn::visit::visit_item_mod(self, m);
        if inline {
            self.module.pop();
        }
    }

    fn visit_item_extern_crate(&mut self, e: &'ast syn::ItemExternCrate) {
        if e.ident == "self" {
            let line = e.ident.span().start().line;
            self.refused.push((
                line,
                "`extern crate self`: a second name for the crate".into(),
            ));
        }
        syn::visit::visit_item_extern_crate(self, e);
    }
}

/// What breaks the rule in the given files (path relative to `src/`, text).
fn violations(files: &[(PathBuf, String)]) -> Vec<String> {
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut bad = Vec::new();
    for (path, text) in files {
        let file = match syn::parse_file(text) {
            Ok(f) => f,
            Err(e) => {
                bad.push(format!("{}: does not parse: {e}", path.display()));
                continue;
            }
        };
        let module = module_of(path);
        let mut scan = Scan {
            module: module.clone(),
            reached: Vec::new(),
            refused: Vec::new(),
        };
        scan.visit_file(&file);
        for (line, what) in &scan.refused {
            bad.push(format!("{}:{line}: {what}", path.display()));
        }
        let Some(layer) = module.first() else {
            continue; // the root re-exports the API; what it may hide is refused above
        };
        let Some(own) = rank(layer) else {
            bad.push(format!(
                "{}: module `{layer}` has no place in LAYERS (tests/layers.rs, docs/design.md)",
                path.display()
            ));
            continue;
        };
        for (line, target) in &scan.reached {
            match target.first().map(|t| (t, rank(t))) {
                Some((t, Some(r))) if r > own => bad.push(format!(
                    "{}:{line}: `{layer}` reaches `{}`, in `{t}`, a layer above it",
                    path.display(),
                    target.join("::")
                )),
                // An item of the root: a re-export, which could hide any layer. A layer names
                // the module an item lives in.
                Some((t, None)) if target.len() == 1 => bad.push(format!(
                    "{}:{line}: `{layer}` reaches `crate::{t}`, not a layer: name the module it lives in",
                    path.display()
                )),
                Some((t, None)) => bad.push(format!(
                    "{}:{line}: `crate::{t}` is not a layer: name the module it lives in",
                    path.display()
                )),
                // The root itself (`use crate as root;`, `use super::super as up;`, `use
                // crate::*;`): a name for everything, which would hide what it reaches.
                None => bad.push(format!(
                    "{}:{line}: `{layer}` names the crate root itself: name the module it needs",
                    path.display()
                )),
                _ => {}
            }
        }
    }
    bad
}

fn sources() -> Vec<(PathBuf, String)> {
    let src = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src"));
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

fn check(path: &str, text: &str) -> Vec<String> {
    violations(&[(PathBuf::from(path), text.to_string())])
}

#[test]
fn downward_and_sideways_imports_pass() {
    let fine = [
        (
            "sys/clock.rs",
            "use crate::error::OpenError;\nuse crate::name::Domain;\n",
        ),
        (
            "queue/sender.rs",
            "use super::IDLE_TICK;\nuse super::receiver::Owned;\nuse crate::owner::Wait;\n",
        ),
        (
            "queue/mod.rs",
            "mod sender;\npub use sender::Sender;\nuse self::sender::Loan;\n",
        ),
        (
            "segment/mod.rs",
            "// crate::queue in a comment\nconst S: &str = \"crate::queue\";\n",
        ),
        (
            "owner.rs",
            "fn f() { let _ = std::sync::Arc::new(1); let _ = baton_ring::lane::CELL; }\n",
        ),
        ("lib.rs", "mod queue;\npub use queue::Queue;\n"),
    ];
    for (path, text) in fine {
        assert_eq!(check(path, text), Vec::<String>::new(), "{path}");
    }
}

#[test]
fn every_way_up_is_found() {
    let up = [
        (
            "sys/clock.rs",
            "use crate::queue::Queue;\n",
            "reaches `queue::Queue`",
        ),
        (
            "sys/clock.rs",
            "use super::super::queue::Queue;\n",
            "reaches `queue::Queue`",
        ),
        (
            "sys/clock.rs",
            "use crate :: queue :: Queue;\n",
            "reaches `queue::Queue`",
        ),
        (
            "sys/clock.rs",
            "use crate::{error::X, {queue::Queue}};\n",
            "reaches `queue::Queue`",
        ),
        ("sys/clock.rs", "use crate::queue::*;\n", "reaches `queue`"),
        (
            "segment/mod.rs",
            "fn f() { let _ = crate::owner::acquire; }\n",
            "reaches `owner::acquire`",
        ),
        (
            "segment/mod.rs",
            "macro_rules! m { () => { $crate::owner::acquire() }; }\n",
            "reaches `owner::acquire`",
        ),
        (
            "segment/mod.rs",
            "fn f() { g!(crate::recovery::x); }\n",
            "reaches `recovery::x`",
        ),
        (
            "sys/shm.rs",
            "const U: &str = \"https://x\"; use crate::queue::Queue;\n",
            "reaches `queue::Queue`",
        ),
        (
            "sys/clock.rs",
            "use super::super::Q;\n",
            "reaches `crate::Q`",
        ),
        (
            "sys/clock.rs",
            "use crate::Queue;\n",
            "reaches `crate::Queue`",
        ),
        (
            "sys/mod.rs",
            "#[path = \"../queue/evil.rs\"]\nmod evil;\n",
            "`#[path]`",
        ),
        (
            "sys/mod.rs",
            "include!(\"../queue/evil.rs\");\n",
            "`include!`",
        ),
        (
            "lib.rs",
            "extern crate self as baton;\n",
            "`extern crate self`",
        ),
        (
            "sys/clock.rs",
            "use super::super::super::x;\n",
            "above the crate root",
        ),
        (
            "rpc.rs",
            "use crate::queue::Queue;\n",
            "module `rpc` has no place",
        ),
    ];
    for (path, text, want) in up {
        let bad = check(path, text);
        assert!(
            bad.iter().any(|b| b.contains(want)),
            "{path}: {text:?}: wanted {want:?}, got {bad:#?}"
        );
    }
}
