//! The `needs` graph: missing needs, cycles, and the order to start in.
//! Pure functions over a name -> needs map.

use std::collections::{BTreeMap, BTreeSet};
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
}

impl Graph for BTreeMap<String, Vec<String>> {
    fn needs_of(&self, name: &str) -> Option<&[String]> {
        self.get(name).map(Vec::as_slice)
    }
}

/// `target` and everything it needs, transitively, needs before dependents.
pub fn start_order(g: &dyn Graph, target: &str) -> Result<Vec<String>, DepError> {
    let mut order = Vec::new();
    let mut done = BTreeSet::new();
    let mut path = Vec::new();
    visit(g, target, None, &mut path, &mut done, &mut order)?;
    Ok(order)
}

fn visit(
    g: &dyn Graph,
    name: &str,
    needed_by: Option<&str>,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
    order: &mut Vec<String>,
) -> Result<(), DepError> {
    if done.contains(name) {
        return Ok(());
    }
    if let Some(pos) = path.iter().position(|p| p == name) {
        let mut cycle: Vec<String> = path.get(pos..).unwrap_or_default().to_vec();
        cycle.push(name.to_string());
        return Err(DepError::Cycle(cycle));
    }
    let Some(needs) = g.needs_of(name) else {
        return Err(DepError::Missing {
            service: needed_by.unwrap_or(name).to_string(),
            need: name.to_string(),
        });
    };
    path.push(name.to_string());
    for n in needs {
        visit(g, n, Some(name), path, done, order)?;
    }
    path.pop();
    done.insert(name.to_string());
    order.push(name.to_string());
    Ok(())
}

/// A cycle through `name` (or reachable from it) among defined services.
/// Missing needs are ignored here: they are allowed at definition time and
/// reported when a start needs them.
pub fn find_cycle(g: &dyn Graph, name: &str) -> Option<Vec<String>> {
    struct Lenient<'a>(&'a dyn Graph);
    impl Graph for Lenient<'_> {
        fn needs_of(&self, name: &str) -> Option<&[String]> {
            Some(self.0.needs_of(name).unwrap_or(&[]))
        }
    }
    match start_order(&Lenient(g), name) {
        Err(DepError::Cycle(c)) => Some(c),
        _ => None,
    }
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
}
