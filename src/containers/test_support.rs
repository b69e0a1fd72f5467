//! Fixtures shared by the container modules' unit tests.

use std::fs;
use std::path::{Path, PathBuf};

use crate::containers::settings::ContainerSettings;

pub(crate) fn settings(dir: &Path) -> ContainerSettings {
    ContainerSettings {
        runtime: "runc".to_string(),
        store_dir: dir.join("store"),
        run_dir: dir.join("run"),
        insecure_registries: vec!["reg.example:5000".to_string(), "plain.example".to_string()],
        no_pivot: false,
    }
}

pub(crate) fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("iris-ctr-test-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

pub(crate) const D: &str =
    "sha256:7a628ba5139649c653cd214ad75a23a78713777cb3fc356314fccccef737f530";

pub(crate) const PASSWD: &str =
    "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
pub(crate) const GROUP: &str = "root:x:0:\napp:x:1000:\nwheel:x:10:app,other\naudio:x:29:app\n";

/// config.json as umoci 0.4.7 writes it (abridged).
pub(crate) const UMOCI_CONFIG: &str = r#"{
        "ociVersion": "1.0.0",
        "process": {"terminal": true, "user": {"uid": 0, "gid": 0}, "args": ["sh"],
            "env": ["PATH=/bin", "TERM=xterm", "IMAGE_VAR=from-image", "HOME=/root"], "cwd": "/",
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"]},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}], "noNewPrivileges": true},
        "root": {"path": "rootfs"},
        "hostname": "umoci-default",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                   {"destination": "/etc/hosts", "type": "tmpfs", "source": "tmpfs"}],
        "linux": {"resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": ["/proc/kcore"]}
    }"#;

pub(crate) fn make_bundle(tag: &str) -> PathBuf {
    let b = tmpdir(tag);
    fs::write(b.join("config.json"), UMOCI_CONFIG).unwrap();
    fs::create_dir_all(b.join("rootfs/etc")).unwrap();
    fs::write(b.join("rootfs/etc/passwd"), PASSWD).unwrap();
    fs::write(b.join("rootfs/etc/group"), GROUP).unwrap();
    b
}
