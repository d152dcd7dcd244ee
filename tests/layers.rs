//! The layers of docs/ARCHITECTURE.md, enforced. Every library file under src/ is read (comments, doc comments and
//! `#[cfg(test)]` modules aside, since a test may use what sits above it), its `crate::` and `super::` paths are
//! resolved to modules, and the test fails naming each import that goes up a layer or across to a module of the
//! same rank, and each cycle between the files of one folder. The command line (src/main.rs, src/cli/) is the top
//! and is its own crate, so it is not read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The library's top-level modules, bottom to top. A module may use only modules of a lower rank than its own.
/// docs/ARCHITECTURE.md draws the same list; change both together.
const LAYERS: &[&str] = &[
    // values: errors, seeds, bounds, files written whole, parameters and shapes, metrics, plots
    "error",
    "rng",
    "limits",
    "memory",
    "atomic",
    "params",
    "metrics",
    "plot",
    "schedule",
    "stopping",
    "lbfgs",
    "optim",
    // data readers
    "data",
    // the settings of a run
    "config",
    // the training seam and its loops
    "train",
    // the backends
    "cpu",
    "gpu",
    // a fitted model
    "model",
    // checks and benchmarks that sit on the loop and the backends
    "numerics",
    "checkpoint",
    "shadow",
    "validate",
    "bench",
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|m| *m == module)
}

/// The code of a file: comments, doc comments and everything from the first `#[cfg(test)]` on removed (the test
/// modules sit at the end of their files).
fn code_of(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        // A trailing comment: cut at `//` when it is not inside a string literal (an even number of quotes before).
        let cut = line
            .match_indices("//")
            .find(|(i, _)| line[..*i].matches('"').count() % 2 == 0)
            .map_or(line.len(), |(i, _)| i);
        out.push_str(&line[..cut]);
        out.push('\n');
    }
    out
}

/// The first path segments after each occurrence of `prefix` (`crate::` or `super::`), groups (`{a, b::c}`) opened.
fn heads_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut heads = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in code.match_indices(prefix) {
        // `super::super::` and `crate::` inside identifiers (`my_crate::`) are not ours.
        let before = code[..i].chars().last();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let h = ident(item.trim());
                if !h.is_empty() {
                    heads.insert(h);
                }
            }
        } else {
            let h = ident(rest);
            if !h.is_empty() {
                heads.insert(h);
            }
        }
    }
    heads
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A library file's module path below `src/`: `train/fit.rs` → ["train", "fit"], `train/mod.rs` → ["train"].
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|l| l == "mod") {
        parts.pop();
    }
    parts
}

struct Library {
    /// Module path of each file → its code.
    files: BTreeMap<Vec<String>, String>,
}

fn library() -> Library {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    let mut files = BTreeMap::new();
    for p in paths {
        let rel = p.strip_prefix(&src).unwrap();
        let first = rel.iter().next().unwrap().to_string_lossy().to_string();
        if first == "main.rs" || first == "cli" || first == "lib.rs" {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(&p).unwrap());
        files.insert(module_path(rel), code);
    }
    Library { files }
}

#[test]
fn every_library_module_has_a_layer() {
    let lib = library();
    let unranked: BTreeSet<&str> = lib
        .files
        .keys()
        .map(|m| m[0].as_str())
        .filter(|m| rank(m).is_none())
        .collect();
    assert!(
        unranked.is_empty(),
        "modules missing from LAYERS (tests/layers.rs and docs/ARCHITECTURE.md): {unranked:?}"
    );
}

#[test]
fn no_module_uses_one_above_it() {
    let lib = library();
    let mut wrong = Vec::new();
    for (module, code) in &lib.files {
        let Some(own) = rank(&module[0]) else {
            continue;
        };
        for head in heads_after(code, "crate::") {
            let Some(r) = rank(&head) else {
                continue;
            };
            if head != module[0] && r >= own {
                wrong.push(format!(
                    "src/{}: uses crate::{head}, which is {} it",
                    module.join("/"),
                    if r == own { "beside" } else { "above" }
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers (docs/ARCHITECTURE.md):\n{}",
        wrong.join("\n")
    );
}

/// The files of one folder (`data/`, `train/`, `gpu/` …) form no cycle: `a` uses `b` when `a` names `super::b`
/// or `crate::folder::b`, for `b` a file or folder beside it.
#[test]
fn the_files_of_a_folder_form_no_cycle() {
    let lib = library();
    // edges[folder][a] = the siblings a uses
    let mut edges: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let modules: BTreeSet<&Vec<String>> = lib.files.keys().collect();
    for (module, code) in &lib.files {
        if module.len() < 2 {
            continue;
        }
        let folder = module[..module.len() - 1].to_vec();
        let me = module.last().unwrap().clone();
        let sibling = |name: &str| {
            let mut p = folder.clone();
            p.push(name.to_string());
            modules.contains(&p) || modules.iter().any(|m| m.starts_with(&p))
        };
        let mut used = heads_after(code, "super::");
        let qualified = format!("crate::{}::", folder.join("::"));
        used.extend(heads_after(code, &qualified));
        let uses: BTreeSet<String> = used
            .into_iter()
            .filter(|h| *h != me && sibling(h))
            .collect();
        edges.entry(folder).or_default().insert(me, uses);
    }
    let mut cycles = Vec::new();
    for (folder, graph) in &edges {
        // Depth-first search for a back edge; report the cycle it closes.
        fn visit(
            node: &str,
            graph: &BTreeMap<String, BTreeSet<String>>,
            stack: &mut Vec<String>,
            done: &mut BTreeSet<String>,
            found: &mut Vec<String>,
        ) {
            if let Some(at) = stack.iter().position(|n| n == node) {
                let mut c = stack[at..].to_vec();
                c.push(node.to_string());
                found.push(c.join(" → "));
                return;
            }
            if !done.insert(node.to_string()) {
                return;
            }
            stack.push(node.to_string());
            for next in graph.get(node).into_iter().flatten() {
                visit(next, graph, stack, done, found);
            }
            stack.pop();
        }
        let mut done = BTreeSet::new();
        let mut found = Vec::new();
        for node in graph.keys() {
            visit(node, graph, &mut Vec::new(), &mut done, &mut found);
        }
        for c in found {
            cycles.push(format!("src/{}/: {c}", folder.join("/")));
        }
    }
    assert!(
        cycles.is_empty(),
        "files of one folder that use each other in a loop:\n{}",
        cycles.join("\n")
    );
}

/// The checker itself: it sees an upward import, ignores comments and test modules, and opens groups.
#[test]
fn the_checker_reads_paths_as_written() {
    let code = code_of(
        "use crate::train::Backend; // crate::cli is not here\n/// [`crate::model`]\nuse crate::{data, rng::X};\n\
         let s = \"http://crate::gpu\";\n#[cfg(test)]\nmod tests { use crate::validate; }\n",
    );
    let heads = heads_after(&code, "crate::");
    let want: BTreeSet<String> = ["train", "data", "rng", "gpu"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    // "gpu" is inside a string literal that the reader does not parse: the check errs on the side of reporting.
    assert_eq!(heads, want);
    assert_eq!(
        module_path(Path::new("train/mod.rs")),
        vec!["train".to_string()]
    );
    assert_eq!(
        module_path(Path::new("gpu/trainer/plan.rs")),
        vec!["gpu", "trainer", "plan"]
    );
}
