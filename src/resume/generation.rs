//! The VM generation: a counter that grows by one on every restore (or is
//! set by the host), kept in a file services can read.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Where PID 1 keeps it (the contract's path).
pub const PID1_PATH: &str = "/run/iris/generation";

/// PID 1: `/run/iris/generation`. A plain supervisor must not write into
/// the host's `/run`: `iris/generation` next to its socket (where its
/// container runtime state lives too).
pub fn path(pid1: bool, socket: &Path) -> PathBuf {
    if pid1 {
        return PathBuf::from(PID1_PATH);
    }
    socket
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join("iris")
        .join("generation")
}

/// The generation a previous run of the init left (a plain supervisor
/// started again), 0 when there is none.
pub fn read(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Replaces the file atomically (readers see the old number or the new
/// one, never a torn one). No fsync: it lives on a tmpfs, and after a
/// crash the next restore writes it again.
pub fn write(path: &Path, generation: u64) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(format!("{generation}\n").as_bytes())?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// The generation after a restore: the host's, else the previous one plus one.
pub fn next(previous: u64, given: Option<u64>) -> u64 {
    given.unwrap_or_else(|| previous.wrapping_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(path(true, Path::new("/x/y.sock")), Path::new(PID1_PATH));
        assert_eq!(
            path(false, Path::new("/tmp/t/services.sock")),
            Path::new("/tmp/t/iris/generation")
        );
        assert_eq!(
            path(false, Path::new("services.sock")),
            Path::new("./iris/generation")
        );
    }

    #[test]
    fn write_then_read() {
        let dir = std::env::temp_dir().join(format!("iris-gen-{}", std::process::id()));
        let p = dir.join("iris").join("generation");
        assert_eq!(read(&p), 0, "none yet");
        write(&p, 7).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "7\n");
        assert_eq!(read(&p), 7);
        write(&p, u64::MAX).unwrap();
        assert_eq!(read(&p), u64::MAX);
        std::fs::write(&p, "garbage").unwrap();
        assert_eq!(read(&p), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn next_generation() {
        assert_eq!(next(3, None), 4);
        assert_eq!(next(3, Some(1)), 1, "the host's number wins, even lower");
        assert_eq!(next(u64::MAX, None), 0);
    }
}
