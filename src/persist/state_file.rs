//! The state file: what must survive a restart of the init (API-defined
//! services, every service's wanted state, what was running). Written
//! atomically; a torn or foreign file is set aside, never trusted, never fatal.

use crate::core::definition::Definition;
use crate::core::json_object;
use crate::core::supervisor::{Source, Wanted};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateFile {
    pub version: u32,
    #[serde(deserialize_with = "map_of_objects")]
    pub services: BTreeMap<String, SavedService>,
}

/// Each saved service is an object (serde would read one from an array).
fn map_of_objects<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, SavedService>, D::Error> {
    #[derive(Deserialize)]
    struct Obj(#[serde(deserialize_with = "json_object::object_only")] SavedService);
    let m: BTreeMap<String, Obj> = BTreeMap::deserialize(d)?;
    Ok(m.into_iter().map(|(k, Obj(v))| (k, v)).collect())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedService {
    pub source: Source,
    /// The definition, for services defined over the API (drop-ins are
    /// read from their files again).
    #[serde(default, deserialize_with = "json_object::optional_object")]
    pub definition: Option<Definition>,
    pub wanted: Wanted,
    /// Whether it was running when the file was written.
    pub running: bool,
}

#[derive(Debug)]
pub enum Loaded {
    /// No file: a first boot.
    Missing,
    Ok(StateFile),
    /// Unreadable, torn, garbage or another version: kept aside.
    Corrupt {
        error: String,
        kept_as: Option<PathBuf>,
    },
}

pub fn encode(state: &StateFile) -> Vec<u8> {
    let mut v = serde_json::to_vec_pretty(state).unwrap_or_default();
    v.push(b'\n');
    v
}

/// Replaces `path` with `bytes` so that a crash at any moment leaves either
/// the old or the new file: temporary file in the same directory, fsync,
/// rename over, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state.json".into());
    let tmp = dir.join(format!(".{file_name}.tmp"));
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

pub fn load(path: &Path) -> Loaded {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Loaded::Missing,
        Err(e) => return corrupt(path, format!("cannot read {}: {e}", path.display())),
    };
    match parse(&bytes) {
        Ok(s) => Loaded::Ok(s),
        Err(e) => corrupt(path, e),
    }
}

pub fn parse(bytes: &[u8]) -> Result<StateFile, String> {
    // Check the version first, so a newer schema gets a clear message
    // rather than an unknown-field error.
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    match v.get("version").and_then(|v| v.as_u64()) {
        Some(n) if n == u64::from(VERSION) => {}
        Some(n) => {
            return Err(format!(
                "unsupported version {n} (this init reads {VERSION})"
            ))
        }
        None => return Err("no `version` field".into()),
    }
    let s: StateFile =
        json_object::object_only(v).map_err(|e| format!("invalid state file: {e}"))?;
    for (name, saved) in &s.services {
        crate::core::definition::validate_name(name).map_err(|e| e.to_string())?;
        if let Some(d) = &saved.definition {
            d.validate()
                .map_err(|e| format!("invalid definition of '{name}': {e}"))?;
        }
    }
    Ok(s)
}

fn corrupt(path: &Path, error: String) -> Loaded {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let kept = PathBuf::from(format!("{}.corrupt-{stamp}", path.display()));
    let kept_as = fs::rename(path, &kept).ok().map(|_| kept);
    Loaded::Corrupt { error, kept_as }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StateFile {
        let mut services = BTreeMap::new();
        services.insert(
            "web".to_string(),
            SavedService {
                source: Source::Api,
                definition: Some(
                    Definition::from_json(br#"{"cmd":"sleep","args":["9"]}"#).unwrap(),
                ),
                wanted: Wanted::Up,
                running: true,
            },
        );
        StateFile {
            version: VERSION,
            services,
        }
    }

    #[test]
    fn round_trip_and_replace() {
        let dir = tempdir();
        let p = dir.join("state.json");
        assert!(matches!(load(&p), Loaded::Missing));
        write_atomic(&p, &encode(&sample())).unwrap();
        let Loaded::Ok(s) = load(&p) else {
            panic!("not ok")
        };
        assert_eq!(s, sample());
        write_atomic(
            &p,
            &encode(&StateFile {
                version: VERSION,
                services: BTreeMap::new(),
            }),
        )
        .unwrap();
        let Loaded::Ok(s) = load(&p) else {
            panic!("not ok")
        };
        assert!(s.services.is_empty());
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn corrupt_files_are_kept_aside() {
        let dir = tempdir();
        let good = encode(&sample());
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("garbage", b"\x00\x01garbage".to_vec()),
            ("empty", vec![]),
            ("truncated", good.get(..good.len() / 2).unwrap().to_vec()),
            ("future", br#"{"version": 99, "services": {}}"#.to_vec()),
            ("bad name", br#"{"version":1,"services":{"../x":{"source":"api","wanted":"up","running":true}}}"#.to_vec()),
            ("array service", br#"{"version":1,"services":{"x":["api",null,"up",true]}}"#.to_vec()),
            ("array definition", br#"{"version":1,"services":{"x":{"source":"api","definition":["sleep"],"wanted":"up","running":true}}}"#.to_vec()),
        ];
        for (what, bytes) in cases {
            let p = dir.join(format!("{}.json", what.replace(' ', "_")));
            fs::write(&p, &bytes).unwrap();
            match load(&p) {
                Loaded::Corrupt { error, kept_as } => {
                    let kept = kept_as.expect(what);
                    assert_eq!(fs::read(&kept).unwrap(), bytes, "{what}: kept intact");
                    assert!(!p.exists(), "{what}: moved away");
                    assert!(!error.is_empty());
                    if what == "future" {
                        assert!(error.contains("version 99"), "{error}");
                    }
                }
                other => panic!("{what}: {other:?}"),
            }
        }
        let _ = fs::remove_dir_all(dir);
    }

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "iris-state-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }
}
