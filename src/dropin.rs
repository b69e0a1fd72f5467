//! Drop-in service files: `DIR/NAME.toml` defines service NAME. Other files
//! are ignored (a Debian /etc/init.d full of shell scripts is fine).

use crate::core::definition::{validate_name, Definition};
use std::path::Path;

/// Every `*.toml` in `dir`, sorted by name, with its definition or the
/// reason it is unusable. A missing directory is an empty list.
pub fn load_dir(dir: &Path) -> Vec<(String, Result<Definition, String>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let Some(name) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if let Err(e) = validate_name(&name) {
            crate::warn!("ignoring drop-in {}: {e}", path.display());
            continue;
        }
        let def = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|text| {
                Definition::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))
            });
        out.push((name, def));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_toml_only_and_reports_broken() {
        let d = std::env::temp_dir().join(format!("iris-dropin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("web.toml"), "cmd = \"sleep\"\nargs = [\"100\"]\n").unwrap();
        std::fs::write(d.join("bad.toml"), "cmd = \"x\"\nnot valid toml [[\n").unwrap();
        std::fs::write(d.join("typo.toml"), "cmd = \"x\"\nhelth_port = 3\n").unwrap();
        std::fs::write(d.join("rc.local"), "#!/bin/sh\n").unwrap();
        let got = load_dir(&d);
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["bad", "typo", "web"]);
        assert!(got[0].1.as_ref().unwrap_err().contains("bad.toml"));
        assert!(got[1].1.as_ref().unwrap_err().contains("helth_port"));
        assert_eq!(got[2].1.as_ref().unwrap().args, ["100"]);
        assert!(load_dir(&d.join("nope")).is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }
}
