//! Drop-in service files: `DIR/NAME.toml` defines service NAME. Other files
//! are ignored (a Debian /etc/init.d full of shell scripts is fine).

use crate::containers::image::check_image_field;
use crate::core::bounds;
use crate::core::definition::{validate_name, Definition};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
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
        let def = read_dropin(&path).and_then(|text| {
            let def =
                Definition::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            check_image_field(def.image.as_deref())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(def)
        });
        out.push((name, def));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The text of one drop-in: a regular file (a symlink to one is fine) of
/// at most `MAX_DROPIN_BYTES`. Opened non-blocking and checked with fstat
/// before any read, so a FIFO or a device named `x.toml` cannot hang the
/// start or feed it without end.
fn read_dropin(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.file_type().is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    let too_big = || {
        format!(
            "{shown} is larger than the limit of {} bytes for a drop-in file",
            bounds::MAX_DROPIN_BYTES
        )
    };
    if meta.len() > bounds::MAX_DROPIN_BYTES {
        return Err(too_big());
    }
    // The size can change under us: never read past the limit.
    let mut bytes = Vec::new();
    file.take(bounds::MAX_DROPIN_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if bytes.len() as u64 > bounds::MAX_DROPIN_BYTES {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|_| format!("{shown} is not UTF-8 text"))
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
        std::fs::write(
            d.join("img.toml"),
            "cmd = \"\"\ncontainer = true\nimage = \"Foo\"\n",
        )
        .unwrap();
        let got = load_dir(&d);
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["bad", "img", "typo", "web"]);
        assert!(got[0].1.as_ref().unwrap_err().contains("bad.toml"));
        assert!(got[1].1.as_ref().unwrap_err().contains("`image`"));
        assert!(got[2].1.as_ref().unwrap_err().contains("helth_port"));
        assert_eq!(got[3].1.as_ref().unwrap().args, ["100"]);
        assert!(load_dir(&d.join("nope")).is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn fifos_devices_and_big_files_are_refused_without_blocking() {
        let d = std::env::temp_dir().join(format!("iris-dropin-odd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        // Opening a FIFO with no writer for reading blocks forever, unless
        // it is opened non-blocking.
        nix::unistd::mkfifo(&d.join("fifo.toml"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        std::os::unix::fs::symlink("/dev/zero", d.join("zero.toml")).unwrap();
        std::fs::create_dir(d.join("dir.toml")).unwrap();
        let max = bounds::MAX_DROPIN_BYTES as usize;
        let pad = |n: usize| format!("cmd = \"x\"\n{}", "#".repeat(n - 11) + "\n");
        std::fs::write(d.join("at-limit.toml"), pad(max)).unwrap();
        std::fs::write(d.join("too-big.toml"), pad(max + 1)).unwrap();
        std::os::unix::fs::symlink(d.join("at-limit.toml"), d.join("link.toml")).unwrap();
        std::fs::write(d.join("ok.toml"), "cmd = \"x\"\n").unwrap();
        let got: std::collections::BTreeMap<String, Result<Definition, String>> =
            load_dir(&d).into_iter().collect();
        let err = |n: &str| got[n].as_ref().unwrap_err().clone();
        assert!(
            err("fifo").contains("not a regular file"),
            "{}",
            err("fifo")
        );
        assert!(
            err("zero").contains("not a regular file"),
            "{}",
            err("zero")
        );
        assert!(err("dir").contains("not a regular file"), "{}", err("dir"));
        assert!(err("too-big").contains("larger than the limit of 1048576 bytes"));
        assert_eq!(pad(max).len(), max);
        assert!(got["at-limit"].is_ok() && got["link"].is_ok() && got["ok"].is_ok());
        let _ = std::fs::remove_dir_all(&d);
    }
}
