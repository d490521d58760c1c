//! House rules of the workspace's source, checked on every test run (after
//! rust-analyzer's `tidy` tests): every module says what it is for, no
//! function outgrows a screenful or two, module dependencies inside a crate
//! point one way, no match over layer kinds decides for unknown kinds through
//! a `_ =>` arm, and no comment points at a document outside the repository.
//! See `docs/architecture.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest function body allowed outside tests, in lines.
const MAX_FUNCTION_LINES: usize = 120;

/// Enums whose variants are layer kinds: a match over them lists every
/// variant, so that a new kind fails to compile until each stage decides.
const LAYER_KIND_ENUMS: [&str; 4] = ["Layer", "NetLayer", "QLayer", "BlockType"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `.rs` file under `crates/<crate>/src`, by crate name.
fn sources() -> BTreeMap<String, Vec<PathBuf>> {
    let mut crates = BTreeMap::new();
    let root = workspace().join("crates");
    for entry in std::fs::read_dir(&root).expect("crates/ is readable") {
        let dir = entry.expect("crates/ entry").path();
        let src = dir.join("src");
        if !src.is_dir() {
            continue;
        }
        let mut files = Vec::new();
        collect_rs(&src, &mut files);
        files.sort();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        crates.insert(name, files);
    }
    assert!(crates.len() >= 5, "expected the workspace's crates under {}", root.display());
    crates
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source dir is readable") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn relative(path: &Path) -> String {
    let root = workspace().canonicalize().unwrap();
    let path = path.canonicalize().unwrap();
    path.strip_prefix(&root).unwrap_or(&path).display().to_string()
}

/// A whole file is test code: `tests.rs` modules and the storage
/// conformance suite (compiled only under `cfg(test)`).
fn is_test_file(path: &Path) -> bool {
    let name = path.file_name().unwrap().to_string_lossy();
    name == "tests.rs" || name == "conformance.rs"
}

/// The file's lines with `#[cfg(test)]` items, line comments and the
/// contents of string literals blanked out (line numbers are kept).
fn code_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip_depth: Option<i64> = None;
    let mut depth = 0i64;
    let mut pending_cfg_test = false;
    let mut in_string = false;
    for raw in text.lines() {
        let line = strip_line(raw, &mut in_string);
        let opens = line.matches('{').count() as i64;
        let closes = line.matches('}').count() as i64;
        if skip_depth.is_none() && pending_cfg_test && opens > 0 {
            skip_depth = Some(depth);
            pending_cfg_test = false;
        }
        if skip_depth.is_none() && raw.trim_start().starts_with("#[cfg(test)]") {
            pending_cfg_test = true;
        }
        depth += opens - closes;
        if let Some(at) = skip_depth {
            out.push(String::new());
            if depth <= at {
                skip_depth = None;
            }
        } else if pending_cfg_test && line.trim_end().ends_with(';') {
            // `#[cfg(test)] mod tests;` or a test-only `use`.
            pending_cfg_test = false;
            out.push(String::new());
        } else {
            out.push(line);
        }
    }
    out
}

/// One line without its `//` comment and with string and char literal
/// contents removed; `in_string` carries a string across lines.
fn strip_line(raw: &str, in_string: &mut bool) -> String {
    let mut out = String::with_capacity(raw.len());
    let chars: Vec<char> = raw.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if *in_string {
            if c == '\\' {
                i += 2;
                continue;
            }
            if c == '"' {
                *in_string = false;
                out.push('"');
            }
            i += 1;
            continue;
        }
        match c {
            '"' => {
                *in_string = true;
                out.push('"');
            }
            '/' if chars.get(i + 1) == Some(&'/') => break,
            '\'' => {
                // A char literal ('x', '\n', '{') or a lifetime ('a).
                if chars.get(i + 1) == Some(&'\\') {
                    let close = chars[i + 2..].iter().position(|&c| c == '\'').map(|p| i + 2 + p);
                    i = close.unwrap_or(i) + 1;
                    out.push_str("' '");
                    continue;
                }
                if chars.get(i + 2) == Some(&'\'') {
                    i += 3;
                    out.push_str("' '");
                    continue;
                }
                out.push(c);
            }
            _ => out.push(c),
        }
        i += 1;
    }
    out
}

#[test]
fn every_module_opens_with_a_doc_paragraph() {
    let mut missing = Vec::new();
    for files in sources().values() {
        for file in files {
            let text = std::fs::read_to_string(file).unwrap();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            if !first.starts_with("//!") {
                missing.push(relative(file));
            }
        }
    }
    assert!(missing.is_empty(), "modules without a `//!` paragraph saying what they are for: {missing:#?}");
}

/// `(name, first line, length)` of every function with a body.
fn functions(lines: &[String]) -> Vec<(String, usize, usize)> {
    let mut found = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        let Some(name) = function_name(line) else { continue };
        let mut depth = 0i64;
        let mut opened = false;
        for (offset, body) in lines[start..].iter().enumerate() {
            if !opened && body.contains(';') && !body.contains('{') {
                break; // a declaration without a body
            }
            depth += body.matches('{').count() as i64 - body.matches('}').count() as i64;
            opened |= body.contains('{');
            if opened && depth <= 0 {
                found.push((name.clone(), start + 1, offset + 1));
                break;
            }
        }
    }
    found
}

fn function_name(line: &str) -> Option<String> {
    let mut words = line.split_whitespace().peekable();
    while let Some(word) = words.next() {
        if word == "fn" {
            let next = words.peek()?;
            let name: String = next.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            return (!name.is_empty()).then_some(name);
        }
        let qualifier = word.starts_with("pub") || matches!(word, "const" | "unsafe" | "async" | "extern" | "\"C\"");
        if !qualifier {
            return None;
        }
    }
    None
}

#[test]
fn no_function_is_longer_than_the_limit() {
    let mut long = Vec::new();
    for files in sources().values() {
        for file in files.iter().filter(|f| !is_test_file(f)) {
            let lines = code_lines(&std::fs::read_to_string(file).unwrap());
            for (name, line, length) in functions(&lines) {
                if length > MAX_FUNCTION_LINES {
                    long.push(format!("{}:{line} `{name}` is {length} lines", relative(file)));
                }
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines (split them, e.g. one function per layer kind): {long:#?}"
    );
}

/// The crate's top-level module a source file belongs to (`storage` for
/// `src/storage/sqlite.rs`), or `None` for the crate root.
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_string_lossy().into_owned();
    let name = first.trim_end_matches(".rs").to_string();
    (!matches!(name.as_str(), "lib" | "main")).then_some(name)
}

/// The top-level modules a line of code names through `crate::`.
fn crate_references(line: &str, out: &mut BTreeSet<String>) {
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // e.g. `snac_core::` is another crate
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = matching_brace(group);
            for item in split_top_level(&group[..end]) {
                let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() && name != "self" {
                    out.insert(name);
                }
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
}

fn matching_brace(text: &str) -> usize {
    let mut depth = 0;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    text.len()
}

fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Which top-level modules each top-level module of a crate uses (outside
/// tests), joining a `use` statement's lines so grouped imports are seen.
fn module_graph(files: &[PathBuf]) -> BTreeMap<String, BTreeSet<String>> {
    let src = files[0].ancestors().find(|a| a.ends_with("src")).unwrap().to_path_buf();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files.iter().filter(|f| !is_test_file(f)) {
        let Some(module) = top_module(&src, file) else { continue };
        let lines = code_lines(&std::fs::read_to_string(file).unwrap());
        let mut uses = BTreeSet::new();
        crate_references(&lines.join(" "), &mut uses);
        uses.remove(&module);
        graph.entry(module).or_default().extend(uses);
    }
    let known: BTreeSet<String> = graph.keys().cloned().collect();
    for uses in graph.values_mut() {
        uses.retain(|u| known.contains(u)); // items of the crate root, macros
    }
    graph
}

/// A cycle in the graph, as a path that returns to its start.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|start| visit(start, graph, &mut done, &mut Vec::new()))
}

#[test]
fn module_dependencies_within_a_crate_point_one_way() {
    let mut cycles = Vec::new();
    for (krate, files) in sources() {
        let graph = module_graph(&files);
        if let Some(cycle) = find_cycle(&graph) {
            cycles.push(format!("{krate}: {}", cycle.join(" -> ")));
        }
    }
    assert!(cycles.is_empty(), "module cycles (move the shared items down into their own module): {cycles:#?}");
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    assert_eq!(find_cycle(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])), None);
    let cycle = find_cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])).expect("a cycle");
    assert_eq!(cycle.first(), cycle.last());
    assert_eq!(cycle.len(), 4);
    let mut uses = BTreeSet::new();
    crate_references("use crate::{arch::{Arch, Layer}, fixed::FixedPoint}; let x = snac_core::cost::y;", &mut uses);
    assert_eq!(uses.into_iter().collect::<Vec<_>>(), ["arch", "fixed"]);
}

/// `_ =>` arms of matches whose other arms name a layer-kind enum.
fn wildcard_layer_arms(lines: &[String]) -> Vec<usize> {
    let mut found = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        if !(trimmed.starts_with("_ =>") || trimmed.starts_with("_ if ")) {
            continue;
        }
        let indent = line.len() - trimmed.len();
        for earlier in lines[..at].iter().rev() {
            let text = earlier.trim_start();
            if text.is_empty() {
                continue;
            }
            let earlier_indent = earlier.len() - text.len();
            if earlier_indent < indent {
                break; // the `match` line: the arms are all seen
            }
            let names_a_kind = LAYER_KIND_ENUMS.iter().any(|e| {
                let pattern = text.trim_start_matches(['(', '&', '|', ' ']);
                pattern.starts_with(&format!("{e}::")) || pattern.contains(&format!("| {e}::"))
            });
            if earlier_indent == indent && names_a_kind {
                found.push(at + 1);
                break;
            }
        }
    }
    found
}

#[test]
fn matches_over_layer_kinds_list_every_kind() {
    let mut wildcards = Vec::new();
    for files in sources().values() {
        for file in files.iter().filter(|f| !is_test_file(f)) {
            let lines = code_lines(&std::fs::read_to_string(file).unwrap());
            for line in wildcard_layer_arms(&lines) {
                wildcards.push(format!("{}:{line}", relative(file)));
            }
        }
    }
    assert!(
        wildcards.is_empty(),
        "`_ =>` arms over layer kinds ({LAYER_KIND_ENUMS:?}); list the kinds so a new one needs a decision: {wildcards:#?}"
    );
}

#[test]
fn the_wildcard_finder_finds_wildcards() {
    let code = |s: &str| s.lines().map(String::from).collect::<Vec<_>>();
    let wild = code("match l {\n    Layer::Dense { .. } => 1,\n    _ => 0,\n}");
    assert_eq!(wildcard_layer_arms(&wild), [3]);
    let listed = code("match l {\n    Layer::Dense { .. } => 1,\n    Layer::Flatten => 0,\n}");
    assert!(wildcard_layer_arms(&listed).is_empty());
    let other = code("match name {\n    \"relu\" => 1,\n    _ => 0,\n}");
    assert!(wildcard_layer_arms(&other).is_empty());
}

#[test]
fn comments_point_only_at_documents_in_the_repository() {
    let mut dangling = Vec::new();
    for files in sources().values() {
        for file in files {
            for (at, line) in std::fs::read_to_string(file).unwrap().lines().enumerate() {
                if line.contains("REFERENCE.md") || line.contains("REFERENCE §") {
                    dangling.push(format!("{}:{}", relative(file), at + 1));
                }
            }
        }
    }
    assert!(dangling.is_empty(), "references to REFERENCE.md, which is not in the repository: {dangling:#?}");
    for doc in ["docs/architecture.md", "docs/snac-pack-compat.md"] {
        assert!(workspace().join(doc).is_file(), "{doc} is missing");
    }
}

/// Paths in `docs/architecture.md`'s checklists name real files.
#[test]
fn the_architecture_guide_names_real_files() {
    let guide = std::fs::read_to_string(workspace().join("docs/architecture.md")).expect("docs/architecture.md");
    let mut missing = Vec::new();
    let mut named = 0;
    for quoted in guide.split('`').skip(1).step_by(2) {
        let path = quoted.trim_end_matches('/');
        if !(path.starts_with("crates/") || path.starts_with("docs/") || path.starts_with(".ci/")) {
            continue;
        }
        let path = path.split([' ', ':']).next().unwrap();
        named += 1;
        if !workspace().join(path).exists() {
            missing.push(path.to_string());
        }
    }
    assert!(named >= 20, "the guide names only {named} files");
    assert!(missing.is_empty(), "docs/architecture.md names files that do not exist: {missing:#?}");
}
