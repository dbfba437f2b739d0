//! The server crate's modules form no cycle: reading each module's non-test code for the paths
//! it names (`crate::a::b`, `super::c`, a child's `d::`), no module reaches itself again. A
//! cycle is how the router and the handlers once grew into each other; this keeps the layers of
//! `docs/architecture.md` true.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`api::tokens`, empty for the crate root) -> its file.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts == ["main"] {
                continue;
            }
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                parts.pop();
            }
            found.insert(parts.join("::"), path);
        }
    }
    found
}

/// The code a module runs outside its tests, without comments.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths that follow `prefix::` in `code`, each as its segments (a `{a, b::c}` group
/// gives one path per member).
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let needle = format!("{prefix}::");
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(&needle) {
        let starts_word = !rest[..at].chars().next_back().is_some_and(is_ident);
        rest = &rest[at + needle.len()..];
        if !starts_word {
            continue;
        }
        let mut segments = Vec::new();
        let mut tail = rest;
        loop {
            let end = tail.find(|c: char| !is_ident(c)).unwrap_or(tail.len());
            if end == 0 {
                break;
            }
            segments.push(tail[..end].to_owned());
            tail = &tail[end..];
            match tail.strip_prefix("::") {
                Some(more) => tail = more,
                None => break,
            }
        }
        if let Some(group) = tail.strip_prefix('{') {
            let group = group.split('}').next().unwrap_or_default();
            for member in group.split(',') {
                let mut path = segments.clone();
                path.extend(
                    member
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .split("::")
                        .filter(|s| !s.is_empty() && *s != "self")
                        .map(str::to_owned),
                );
                paths.push(path);
            }
        } else if !segments.is_empty() {
            // `super::*` names nothing: it is how an inline module reaches its own file.
            paths.push(segments);
        }
    }
    paths
}

/// The longest module named by a path from `base`.
fn resolve(
    modules: &BTreeMap<String, PathBuf>,
    base: &[String],
    path: &[String],
) -> Option<String> {
    let full: Vec<String> = base.iter().chain(path).cloned().collect();
    (1..=full.len())
        .rev()
        .map(|n| full[..n].join("::"))
        .find(|name| modules.contains_key(name))
}

/// Each module's edges to the other modules it names.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules(src);
    let mut edges = BTreeMap::new();
    for (name, path) in &modules {
        let code = code(path);
        let me: Vec<String> = name
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let parent = &me[..me.len().saturating_sub(1)];
        let mut to = BTreeSet::new();
        for path in paths_after(&code, "crate") {
            to.extend(resolve(&modules, &[], &path));
        }
        for path in paths_after(&code, "super") {
            to.extend(resolve(&modules, parent, &path));
        }
        // A child named by its own name (`tokens::ENDPOINTS` in `api`).
        for child in modules.keys() {
            let Some(short) = child
                .strip_prefix(&format!("{name}::"))
                .or(name.is_empty().then_some(child.as_str()))
            else {
                continue;
            };
            if !short.contains("::") && !paths_after(&code, short).is_empty() {
                to.insert(child.clone());
            }
        }
        to.remove(name);
        to.remove("");
        edges.insert(name.clone(), to);
    }
    edges
}

/// A cycle through `from`, if there is one, as the modules along it.
fn cycle_through(edges: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut stack = vec![(from.to_owned(), vec![from.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((at, trail)) = stack.pop() {
        for next in edges.get(&at).into_iter().flatten() {
            if next == from {
                let mut cycle = trail.clone();
                cycle.push(from.to_owned());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = trail.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

fn cycles(src: &Path) -> Vec<String> {
    let edges = graph(src);
    edges
        .keys()
        .filter_map(|module| cycle_through(&edges, module))
        .map(|cycle| cycle.join(" -> "))
        .collect()
}

#[test]
fn the_server_crate_has_no_module_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = graph(&src);
    // The graph is really read: the router names the endpoints, the handlers the state.
    assert!(edges["router"].contains("api"), "{:?}", edges["router"]);
    assert!(edges["api::tokens"].contains("state"));
    assert!(edges["api"].contains("api::tokens"));
    assert_eq!(cycles(&src), Vec::<String>::new());
}

#[test]
fn a_planted_cycle_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("api")).unwrap();
    std::fs::write(src.join("lib.rs"), "pub mod api;\npub mod state;\n").unwrap();
    std::fs::write(
        src.join("api/mod.rs"),
        "pub mod tokens;\npub const ALL: &[u8] = tokens::ALL;\n",
    )
    .unwrap();
    std::fs::write(
        src.join("api/tokens.rs"),
        "use crate::state::AppState;\npub const ALL: &[u8] = &[];\n",
    )
    .unwrap();
    std::fs::write(
        src.join("state.rs"),
        "// crate::api::tokens in a comment is no edge\npub struct AppState;\n",
    )
    .unwrap();
    assert_eq!(cycles(src), Vec::<String>::new());
    std::fs::write(
        src.join("state.rs"),
        "use super::api::{self, tokens::ALL};\npub struct AppState;\n#[cfg(test)]\nmod tests { use crate::x; }\n",
    )
    .unwrap();
    let found = cycles(src);
    assert!(
        found
            .iter()
            .any(|c| c.starts_with("state -> ") && c.ends_with(" -> state")),
        "{found:?}"
    );
}
