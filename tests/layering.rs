//! The crate's layering, read from its source: nothing outside
//! `src/reactor/` names the reactor, and no two files import each other,
//! directly or round a circle (`crate::a::b` and `super::x` paths count;
//! test modules do not).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, relative to `root`, with its text.
fn sources(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            sources(root, &p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            out.insert(rel, std::fs::read_to_string(&p).unwrap());
        }
    }
}

/// The module path a file defines (`api/server.rs` -> `api::server`);
/// None for binaries.
fn module_of(rel: &str) -> Option<Vec<String>> {
    let stem = rel.strip_suffix(".rs")?;
    let mut parts: Vec<String> = stem.split('/').map(str::to_string).collect();
    if parts.first().is_some_and(|p| p == "bin") {
        return None;
    }
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    Some(parts)
}

/// The code of a file without its test module and its comment lines.
fn code_of(text: &str) -> String {
    let body = text.split("#[cfg(test)]").next().unwrap_or("");
    body.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_len(s: &str) -> usize {
    s.char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
        .map_or(s.len(), |(i, _)| i)
}

/// Reads one use-tree (`a::b::C`, `a::{b, c::{self, D}}`) at the start of
/// `s` below `base`, pushing every path it names; returns what is left.
fn use_tree<'a>(mut s: &'a str, mut base: Vec<String>, out: &mut Vec<Vec<String>>) -> &'a str {
    loop {
        s = s.trim_start();
        if let Some(group) = s.strip_prefix('{') {
            s = group;
            loop {
                s = s.trim_start();
                if let Some(r) = s.strip_prefix('}') {
                    return r;
                }
                if let Some(r) = s.strip_prefix(',') {
                    s = r;
                    continue;
                }
                if s.is_empty() {
                    return s;
                }
                if let Some(r) = s.strip_prefix("self") {
                    if ident_len(r) == 0 {
                        out.push(base.clone());
                        s = r;
                        continue;
                    }
                }
                let before = s.len();
                s = use_tree(s, base.clone(), out);
                if s.len() == before {
                    s = &s[s.chars().next().map_or(0, char::len_utf8)..];
                }
            }
        }
        let n = ident_len(s);
        if n == 0 {
            out.push(base);
            return s;
        }
        base.push(s[..n].to_string());
        s = &s[n..];
        match s.strip_prefix("::") {
            Some(r) => s = r,
            None => {
                out.push(base);
                return s;
            }
        }
    }
}

/// Every path that follows `prefix` (`crate::`, `super::`) in `code`.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue; // part of a longer path: `a::super::` is not ours
        }
        use_tree(&code[at + prefix.len()..], Vec::new(), &mut found);
    }
    found
}

struct Crate {
    files: BTreeMap<String, String>,
    modules: BTreeMap<Vec<String>, String>,
}

impl Crate {
    fn read() -> Crate {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = BTreeMap::new();
        sources(&src, &src, &mut files);
        let modules = files
            .keys()
            .filter_map(|rel| module_of(rel).map(|m| (m, rel.clone())))
            .collect();
        Crate { files, modules }
    }

    /// The file that defines the longest prefix of `path`.
    fn resolve(&self, path: &[String]) -> Option<&String> {
        (1..=path.len())
            .rev()
            .find_map(|n| self.modules.get(&path[..n]))
    }

    /// File -> files it imports.
    fn edges(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut edges = BTreeMap::new();
        for (rel, text) in &self.files {
            let code = code_of(text);
            let mut to = BTreeSet::new();
            let mut targets = paths_after(&code, "crate::");
            if let Some(me) = module_of(rel) {
                let parent = &me[..me.len().saturating_sub(1)];
                for p in paths_after(&code, "super::") {
                    targets.push(parent.iter().cloned().chain(p).collect());
                }
            }
            for p in targets {
                if let Some(t) = self.resolve(&p) {
                    if t != rel {
                        to.insert(t.clone());
                    }
                }
            }
            edges.insert(rel.clone(), to);
        }
        edges
    }
}

/// Files on a circle of imports (Tarjan's strongly connected components).
fn circles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.found.push(comp);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.found
}

#[test]
fn only_the_reactor_names_the_reactor() {
    let krate = Crate::read();
    let offenders: Vec<&String> = krate
        .files
        .iter()
        .filter(|(rel, _)| !rel.starts_with("reactor/") && !rel.starts_with("bin/"))
        .filter(|(_, text)| {
            paths_after(&code_of(text), "crate::")
                .iter()
                .any(|p| p.first().is_some_and(|m| m == "reactor"))
        })
        .map(|(rel, _)| rel)
        .collect();
    assert!(
        offenders.is_empty(),
        "these files import crate::reactor: {offenders:?}"
    );
}

#[test]
fn no_file_imports_round_a_circle() {
    let krate = Crate::read();
    let edges = krate.edges();
    assert!(
        edges.values().map(BTreeSet::len).sum::<usize>() > 50,
        "the import graph was not read"
    );
    let found = circles(&edges);
    assert!(found.is_empty(), "import circles: {found:?}");
}

#[test]
fn the_check_sees_a_circle_and_a_reactor_import() {
    // The reader itself: a made-up pair of files that import each other.
    let mut edges = BTreeMap::new();
    let a = code_of("use crate::b::X;\n// crate::c::Y in a comment\n");
    let b = code_of("use crate::{a::{self, Y}, reactor::Reactor};\n");
    let to = |code: &str| -> BTreeSet<String> {
        paths_after(code, "crate::")
            .into_iter()
            .filter_map(|p| p.first().cloned())
            .collect()
    };
    edges.insert("a".to_string(), to(&a));
    edges.insert("b".to_string(), to(&b));
    assert_eq!(edges["a"], BTreeSet::from(["b".to_string()]));
    assert!(edges["b"].contains("reactor"));
    edges.insert("reactor".to_string(), BTreeSet::new());
    assert_eq!(
        circles(&edges),
        vec![vec!["a".to_string(), "b".to_string()]]
    );
}
