//! The `needs` graph: missing needs, cycles, and the order to start in.
//! Pure functions over a name -> needs map.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepError {
    /// `service` needs `need`, which is not defined.
    Missing { service: String, need: String },
    /// The names along a cycle, the first repeated at the end.
    Cycle(Vec<String>),
}

impl fmt::Display for DepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DepError::Missing { service, need } => {
                write!(
                    f,
                    "service '{service}' needs '{need}', which is not defined"
                )
            }
            DepError::Cycle(path) => write!(f, "dependency cycle: {}", path.join(" -> ")),
        }
    }
}

/// Anything that can tell the needs of a service by name.
pub trait Graph {
    /// None when the service is not defined.
    fn needs_of(&self, name: &str) -> Option<&[String]>;
    /// Calls `f` with every defined service and its needs.
    fn each<'a>(&'a self, f: &mut dyn FnMut(&'a str, &'a [String]));
    /// Every defined service.
    fn names(&self) -> Vec<&str> {
        let mut v = Vec::new();
        self.each(&mut |n, _| v.push(n));
        v
    }
}

impl Graph for BTreeMap<String, Vec<String>> {
    fn needs_of(&self, name: &str) -> Option<&[String]> {
        self.get(name).map(Vec::as_slice)
    }
    fn each<'a>(&'a self, f: &mut dyn FnMut(&'a str, &'a [String])) {
        for (n, needs) in self {
            f(n, needs);
        }
    }
}

/// A graph as it would be with `name` (re)defined to need `needs`.
pub struct WithNeeds<'a> {
    pub base: &'a dyn Graph,
    pub name: &'a str,
    pub needs: &'a [String],
}

impl Graph for WithNeeds<'_> {
    fn needs_of(&self, name: &str) -> Option<&[String]> {
        if name == self.name {
            return Some(self.needs);
        }
        self.base.needs_of(name)
    }
    fn each<'a>(&'a self, f: &mut dyn FnMut(&'a str, &'a [String])) {
        let own = self.name;
        self.base.each(&mut |n, needs| {
            if n != own {
                f(n, needs);
            }
        });
        f(self.name, self.needs);
    }
}

/// Missing needs count as leaves (allowed at definition time; reported
/// when a start needs them).
struct Lenient<'a>(&'a dyn Graph);

impl Graph for Lenient<'_> {
    fn needs_of(&self, name: &str) -> Option<&[String]> {
        Some(self.0.needs_of(name).unwrap_or(&[]))
    }
    fn each<'a>(&'a self, f: &mut dyn FnMut(&'a str, &'a [String])) {
        self.0.each(f)
    }
}

/// `target` and everything it needs, transitively, needs before dependents.
/// Iterative (no recursion per level) and linear in the size of the graph.
pub fn start_order(g: &dyn Graph, target: &str) -> Result<Vec<String>, DepError> {
    let mut order = Vec::new();
    let mut done: HashSet<&str> = HashSet::new();
    let mut on_path: HashSet<&str> = HashSet::new();
    let root_needs = g.needs_of(target).ok_or_else(|| DepError::Missing {
        service: target.to_string(),
        need: target.to_string(),
    })?;
    // The path from `target` down: each name with the index of its next need.
    let mut path: Vec<(&str, &[String], usize)> = vec![(target, root_needs, 0)];
    on_path.insert(target);
    while let Some((name, needs, next)) = path.last_mut() {
        let name: &str = name;
        let Some(need) = needs.get(*next) else {
            on_path.remove(name);
            done.insert(name);
            order.push(name.to_string());
            path.pop();
            continue;
        };
        *next += 1;
        let need = need.as_str();
        if done.contains(need) {
            continue;
        }
        if on_path.contains(need) {
            let from = path.iter().position(|(n, _, _)| *n == need).unwrap_or(0);
            let mut cycle: Vec<String> = path
                .get(from..)
                .unwrap_or_default()
                .iter()
                .map(|(n, _, _)| n.to_string())
                .collect();
            cycle.push(need.to_string());
            return Err(DepError::Cycle(cycle));
        }
        let Some(their_needs) = g.needs_of(need) else {
            return Err(DepError::Missing {
                service: name.to_string(),
                need: need.to_string(),
            });
        };
        on_path.insert(need);
        path.push((need, their_needs, 0));
    }
    Ok(order)
}

/// A cycle through `name` (or reachable from it) among defined services.
/// Missing needs are ignored here: they are allowed at definition time and
/// reported when a start needs them.
pub fn find_cycle(g: &dyn Graph, name: &str) -> Option<Vec<String>> {
    match start_order(&Lenient(g), name) {
        Err(DepError::Cycle(c)) => Some(c),
        _ => None,
    }
}

/// The longest chain of `needs` in an acyclic graph, dependents first
/// (a service alone is a chain of one). Missing needs are not counted.
/// Linear: every service's chain length is computed once, without recursion.
pub fn longest_chain(g: &dyn Graph) -> Vec<String> {
    longest_from(g, &g.names())
}

/// The longest chain of `needs` that starts at one of `roots`.
fn longest_from(g: &dyn Graph, roots: &[&str]) -> Vec<String> {
    // For each service: the length of the longest chain it starts, and the
    // need that continues that chain.
    let mut height: HashMap<&str, (usize, Option<&str>)> = HashMap::new();
    let mut on_path: HashSet<&str> = HashSet::new();
    for &root in roots {
        if height.contains_key(root) {
            continue;
        }
        let mut path: Vec<(&str, &[String], usize)> =
            vec![(root, g.needs_of(root).unwrap_or(&[]), 0)];
        on_path.insert(root);
        while let Some((name, needs, next)) = path.last_mut() {
            let name: &str = name;
            match needs.get(*next) {
                Some(need) => {
                    *next += 1;
                    let need = need.as_str();
                    // A cycle (refused before this is asked) ends the chain.
                    if height.contains_key(need) || on_path.contains(need) {
                        continue;
                    }
                    if let Some(their_needs) = g.needs_of(need) {
                        on_path.insert(need);
                        path.push((need, their_needs, 0));
                    }
                }
                None => {
                    let best = needs
                        .iter()
                        .filter_map(|n| height.get_key_value(n.as_str()))
                        .max_by_key(|(_, (h, _))| *h)
                        .map(|(n, (h, _))| (*h, *n));
                    let entry = match best {
                        Some((h, n)) => (h.saturating_add(1), Some(n)),
                        None => (1, None),
                    };
                    height.insert(name, entry);
                    on_path.remove(name);
                    path.pop();
                }
            }
        }
    }
    let mut at = roots
        .iter()
        .filter_map(|r| height.get_key_value(r))
        .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then(b.0.cmp(a.0)))
        .map(|(n, _)| *n);
    let mut chain = Vec::new();
    while let Some(n) = at {
        chain.push(n.to_string());
        at = height.get(n).and_then(|(_, next)| *next);
    }
    chain
}

/// Refuses a graph whose longest `needs` chain is longer than `max`.
pub fn check_depth(g: &dyn Graph, max: usize) -> Result<(), String> {
    too_long(longest_chain(g), max)
}

/// As [`check_depth`] for a graph that was within `max` before `name` was
/// (re)defined: only chains through `name` can be too long. When nothing
/// needs `name` (the common case: a new service) only the chains below it
/// are walked, so defining many services one by one stays cheap.
pub fn check_depth_through(g: &dyn Graph, name: &str, max: usize) -> Result<(), String> {
    let mut needed = false;
    g.each(&mut |_, needs| needed |= needs.iter().any(|n| n == name));
    if needed {
        return check_depth(g, max);
    }
    too_long(longest_from(g, &[name]), max)
}

fn too_long(chain: Vec<String>, max: usize) -> Result<(), String> {
    if chain.len() <= max {
        return Ok(());
    }
    let shown: Vec<&str> = chain.iter().take(5).map(String::as_str).collect();
    Err(format!(
        "the chain of needs {} -> ... is {} services long; at most {max} are allowed",
        shown.join(" -> "),
        chain.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(n, ns)| (n.to_string(), ns.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn transitive_order_needs_first() {
        let g = graph(&[
            ("app", &["cache", "db"]),
            ("cache", &["db"]),
            ("db", &[]),
            ("x", &[]),
        ]);
        assert_eq!(start_order(&g, "app").unwrap(), vec!["db", "cache", "app"]);
        assert_eq!(start_order(&g, "db").unwrap(), vec!["db"]);
    }

    #[test]
    fn missing_need_names_both() {
        let g = graph(&[("app", &["db"])]);
        let e = start_order(&g, "app").unwrap_err();
        assert_eq!(
            e.to_string(),
            "service 'app' needs 'db', which is not defined"
        );
    }

    #[test]
    fn cycles_found() {
        let g = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])]);
        assert_eq!(
            start_order(&g, "a").unwrap_err(),
            DepError::Cycle(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
        let g = graph(&[("a", &["a"])]);
        assert!(find_cycle(&g, "a").is_some());
        let g = graph(&[("a", &["missing"])]);
        assert!(find_cycle(&g, "a").is_none());
    }

    /// s0 needs s1 needs ... needs s{n-1}.
    fn chain(n: usize) -> BTreeMap<String, Vec<String>> {
        (0..n)
            .map(|i| {
                let needs = if i + 1 < n {
                    vec![format!("s{}", i + 1)]
                } else {
                    vec![]
                };
                (format!("s{i}"), needs)
            })
            .collect()
    }

    #[test]
    fn deep_chains_need_no_stack() {
        // Deep enough to overflow the stack of a recursive walk.
        let n = 100_000;
        let mut g = chain(n);
        let order = start_order(&g, "s0").unwrap();
        assert_eq!(order.len(), n);
        assert_eq!(order.first().map(String::as_str), Some("s99999"));
        assert_eq!(longest_chain(&g).len(), n);
        assert!(find_cycle(&g, "s0").is_none());
        g.insert(format!("s{}", n - 1), vec!["s0".into()]);
        let cycle = find_cycle(&g, "s0").unwrap();
        assert_eq!(cycle.len(), n + 1);
        assert_eq!(cycle.first(), cycle.last());
    }

    #[test]
    fn depth_limit() {
        assert!(check_depth(&chain(64), 64).is_ok());
        let e = check_depth(&chain(65), 64).unwrap_err();
        assert!(e.contains("65 services") && e.contains("s0 -> s1"), "{e}");
        // Diamonds are counted by their longest branch, once.
        let g = graph(&[
            ("app", &["a", "b"]),
            ("a", &["db"]),
            ("b", &["c"]),
            ("c", &["db"]),
            ("db", &[]),
            ("lone", &["missing"]),
        ]);
        assert_eq!(longest_chain(&g), ["app", "b", "c", "db"]);
        assert!(check_depth_through(&g, "app", 4).is_ok());
        assert!(check_depth_through(&g, "app", 3).is_err());
        // Through a need: the whole chain above counts too.
        assert!(check_depth_through(&g, "c", 3).is_err());
        assert!(check_depth_through(&chain(65), "s64", 64).is_err());
        assert!(check_depth_through(&chain(65), "s0", 64).is_err());
    }
}
