//! The repository stands alone. No file may cite the design and specification documents that
//! lay beside it while doorman was first written (`docs/` now says what they said), and every
//! test that `docs/` points at must exist.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Text that cites a document outside the repository, compared in lower case. This file names
/// them in order to find them, so it is the one file not searched.
const OUTSIDE_CITATIONS: [&str; 11] = [
    "../shared",
    "shared/spec",
    "shared/reference",
    "spec/simplejwt-wire",
    "spec/security.md",
    "spec/dependencies",
    "simplejwt-wire.md",
    "dependencies.md",
    "design.md",
    "security spec",
    "spec section",
];

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The lines of `text` that cite an outside document, numbered from 1. Besides the strings
/// above, "spec" followed by a section number ("spec 4", "spec 2.6") counts.
fn citations(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let line = line.to_lowercase();
            OUTSIDE_CITATIONS.iter().any(|c| line.contains(c)) || cites_a_spec_section(&line)
        })
        .map(|(i, line)| (i + 1, line.trim().chars().take(160).collect()))
        .collect()
}

fn cites_a_spec_section(line: &str) -> bool {
    line.match_indices("spec ").any(|(at, _)| {
        let word_start = line[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric());
        let numbered = line[at + 5..].starts_with(|c: char| c.is_ascii_digit());
        word_start && numbered
    })
}

/// The files to search, relative to `root`: what git tracks or would track (untracked files
/// that aren't ignored), or, without git, every file outside `target/` and `.git/`.
fn files(root: &Path) -> Vec<PathBuf> {
    let listed = Command::new("git")
        .arg("-C")
        .arg(root)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .output();
    match listed {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect(),
        _ => {
            let mut found = Vec::new();
            walk(root, Path::new(""), &mut found);
            found
        }
    }
}

fn walk(root: &Path, dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
        return;
    };
    for entry in entries.flatten() {
        let path = dir.join(entry.file_name());
        let skipped = matches!(entry.file_name().to_str(), Some("target" | ".git"));
        match entry.file_type() {
            Ok(t) if t.is_dir() && !skipped => walk(root, &path, found),
            Ok(t) if t.is_file() => found.push(path),
            _ => {}
        }
    }
}

/// `path:line: text` for every citation of an outside document in the text files under `root`.
fn outside_citations(root: &Path) -> Vec<String> {
    let this_file = std::fs::canonicalize(root.join(file!())).ok();
    let mut found = Vec::new();
    for path in files(root) {
        if this_file.is_some() && std::fs::canonicalize(root.join(&path)).ok() == this_file {
            continue;
        }
        // Binary files, and files git lists that are gone from the work tree, are skipped.
        let Ok(bytes) = std::fs::read(root.join(&path)) else {
            continue;
        };
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        if text.contains('\0') {
            continue;
        }
        for (line, excerpt) in citations(&text) {
            found.push(format!("{}:{line}: {excerpt}", path.display()));
        }
    }
    found.sort();
    found
}

/// Every `` `some/file.rs::test_name` `` in the Markdown files of `root/docs` whose file is
/// missing or has no `fn test_name(`.
fn broken_test_pointers(root: &Path) -> Vec<String> {
    let mut broken = Vec::new();
    let docs = files(root)
        .into_iter()
        .filter(|p| p.starts_with("docs") && p.extension().is_some_and(|e| e == "md"));
    for doc in docs {
        let Ok(text) = std::fs::read_to_string(root.join(&doc)) else {
            continue;
        };
        // Code spans are the odd pieces between backticks, once fenced blocks are left out.
        let mut fenced = false;
        let prose: String = text
            .lines()
            .filter(|line| {
                if line.trim_start().starts_with("```") {
                    fenced = !fenced;
                    return false;
                }
                !fenced
            })
            .map(|line| format!("{line}\n"))
            .collect();
        for span in prose.split('`').skip(1).step_by(2) {
            let Some((file, test)) = span.split_once("::") else {
                continue;
            };
            let is_test_name =
                !test.is_empty() && test.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !file.ends_with(".rs") || !is_test_name {
                continue;
            }
            let source = std::fs::read_to_string(root.join(file)).unwrap_or_default();
            if !source.contains(&format!("fn {test}(")) {
                broken.push(format!("{}: {span}", doc.display()));
            }
        }
    }
    broken
}

#[test]
fn no_file_cites_documents_outside_the_repository() {
    let found = outside_citations(&root());
    assert!(
        found.is_empty(),
        "these lines cite documents outside the repository; cite docs/ instead:\n{}",
        found.join("\n")
    );
}

#[test]
fn docs_point_only_at_tests_that_exist() {
    let broken = broken_test_pointers(&root());
    assert!(
        broken.is_empty(),
        "docs/ points at tests that don't exist:\n{}",
        broken.join("\n")
    );
}

/// Both checks can fail: planted citations and a planted pointer are found, in a tree without
/// git, while `target/` and `.git/` are left alone.
#[test]
fn planted_citations_and_pointers_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let write = |path: &str, text: &str| {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "src/lib.rs",
        "//! Fine.\n//! As in `../shared/spec/security.md`.\nfn ok() {}\n// spec 4: planted\n",
    );
    write(
        "docs/notes.md",
        "# Notes\nSee the Security Spec, and DESIGN.md.\nA spec, 4 times: fine.\n\
         ```\nnot a `span\n```\nShown by `src/lib.rs::ok` and `src/lib.rs::gone`.\n",
    );
    write("target/debug/copy.md", "../shared/spec/security.md\n");
    write(".git/notes", "../shared/spec/security.md\n");

    let found = outside_citations(dir.path());
    assert_eq!(
        found,
        [
            "docs/notes.md:2: See the Security Spec, and DESIGN.md.",
            "src/lib.rs:2: //! As in `../shared/spec/security.md`.",
            "src/lib.rs:4: // spec 4: planted",
        ],
        "{found:#?}"
    );
    assert_eq!(
        broken_test_pointers(dir.path()),
        ["docs/notes.md: src/lib.rs::gone"]
    );
}
