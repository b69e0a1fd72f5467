//! The sd_notify protocol: one datagram socket per service, named in the
//! service's `NOTIFY_SOCKET`, and the parser of what the service sends.
//!
//! Read: `READY=1` (ready), `STATUS=...` (shown as `status_text`),
//! `MAINPID=` (read and ignored: the init supervises the process it started
//! and its tree, and a daemon that forks away from it is not supported).
//! Everything else (`STOPPING=1`, `RELOADING=1`, `WATCHDOG=1`, `ERRNO=`,
//! `EXTEND_TIMEOUT_USEC=`, file descriptors) is ignored; descriptors sent
//! along are closed by the kernel since no control buffer is offered.

use mio::net::UnixDatagram;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Longest `STATUS=` text kept, in bytes.
const MAX_STATUS: usize = 1024;
/// The largest datagram read whole; longer ones are cut (and their tail
/// ignored), which only matters for a `STATUS=` line past this size.
const MAX_DATAGRAM: usize = 8192;
/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SUN_PATH: usize = 107;

/// One assignment the init acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    Ready,
    Status(String),
    MainPid(i32),
}

/// The assignments of one datagram, in order. Unknown ones are skipped.
pub fn parse(datagram: &[u8]) -> Vec<Notice> {
    let text = String::from_utf8_lossy(datagram);
    text.split('\n')
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            match key {
                "READY" if value == "1" => Some(Notice::Ready),
                "STATUS" => Some(Notice::Status(cut(value, MAX_STATUS))),
                "MAINPID" => value.trim().parse().ok().map(Notice::MainPid),
                _ => None,
            }
        })
        .collect()
}

fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default().to_string()
}

/// A service's notify socket. Bound under a directory when the path fits
/// in `sun_path`, else in the abstract namespace (`@...`).
pub struct NotifySocket {
    sock: UnixDatagram,
    env: String,
    path: Option<PathBuf>,
}

impl NotifySocket {
    /// Binds `dir/NAME` (mode 0600, owned by `uid` so a service running as
    /// that user may send to it; the directory is created 0755). A stale
    /// socket file of an earlier run is replaced. When the path is too long
    /// for a unix socket, binds `@iris-notify/<init pid>/NAME` instead.
    pub fn bind(dir: &Path, name: &str, uid: Option<u32>) -> io::Result<NotifySocket> {
        let path = dir.join(name);
        if path.as_os_str().len() > MAX_SUN_PATH {
            return Self::bind_abstract(name);
        }
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let sock = UnixDatagram::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        if let Some(uid) = uid {
            std::os::unix::fs::chown(&path, Some(uid), None)?;
        }
        Ok(NotifySocket {
            sock,
            env: path.to_string_lossy().into_owned(),
            path: Some(path),
        })
    }

    /// Binds `@iris-notify/<init pid>/NAME` in the abstract namespace (seen
    /// by every process of the network namespace, container services too).
    pub fn bind_abstract(name: &str) -> io::Result<NotifySocket> {
        use std::os::linux::net::SocketAddrExt;
        let id = format!("iris-notify/{}/{name}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(id.as_bytes())?;
        let std_sock = std::os::unix::net::UnixDatagram::bind_addr(&addr)?;
        std_sock.set_nonblocking(true)?;
        Ok(NotifySocket {
            sock: UnixDatagram::from_std(std_sock),
            env: format!("@{id}"),
            path: None,
        })
    }

    /// The value for the service's `NOTIFY_SOCKET`.
    pub fn env_value(&self) -> &str {
        &self.env
    }

    /// For registration with the poll (READABLE).
    pub fn source(&mut self) -> &mut UnixDatagram {
        &mut self.sock
    }

    /// Reads every datagram waiting (never blocks) and returns their
    /// notices in order.
    pub fn read_all(&mut self) -> Vec<Notice> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            match self.sock.recv(&mut buf) {
                Ok(n) => out.extend(parse(buf.get(..n).unwrap_or_default())),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return out, // WouldBlock, or nothing more to read
            }
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Interest, Poll, Token};
    use std::os::linux::net::SocketAddrExt;
    use std::time::Duration;

    #[test]
    fn messages_are_parsed() {
        assert_eq!(parse(b"READY=1"), vec![Notice::Ready]);
        assert_eq!(
            parse(b"STATUS=Migrating 3 of 7\nREADY=1\nMAINPID=42\n"),
            vec![
                Notice::Status("Migrating 3 of 7".into()),
                Notice::Ready,
                Notice::MainPid(42)
            ]
        );
        assert!(parse(b"READY=0\nSTOPPING=1\nWATCHDOG=1\ngarbage\n").is_empty());
        let long = format!("STATUS={}", "é".repeat(600));
        let Notice::Status(s) = &parse(long.as_bytes())[0] else {
            panic!()
        };
        assert!(s.len() <= MAX_STATUS && s.chars().all(|c| c == 'é'));
    }

    fn wait_notices(ns: &mut NotifySocket, want: usize) -> Vec<Notice> {
        let mut poll = Poll::new().unwrap();
        poll.registry()
            .register(ns.source(), Token(1), Interest::READABLE)
            .unwrap();
        let mut events = Events::with_capacity(4);
        let mut got = Vec::new();
        while got.len() < want {
            poll.poll(&mut events, Some(Duration::from_secs(10)))
                .unwrap();
            assert!(!events.is_empty(), "no datagram within 10 s");
            got.extend(ns.read_all());
        }
        got
    }

    #[test]
    fn a_sender_reaches_the_socket_named_in_the_env_value() {
        let dir = std::env::temp_dir().join(format!("iris-notify-test-{}", std::process::id()));
        let mut ns = NotifySocket::bind(&dir, "web", None).unwrap();
        assert_eq!(ns.env_value(), dir.join("web").to_str().unwrap());
        let mode = std::fs::metadata(dir.join("web"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let tx = std::os::unix::net::UnixDatagram::unbound().unwrap();
        tx.send_to(b"STATUS=starting", ns.env_value()).unwrap();
        tx.send_to(b"READY=1\nSTATUS=serving", ns.env_value())
            .unwrap();
        assert_eq!(
            wait_notices(&mut ns, 3),
            vec![
                Notice::Status("starting".into()),
                Notice::Ready,
                Notice::Status("serving".into())
            ]
        );
        // A second bind (the service started again) replaces the file.
        drop(ns);
        assert!(!dir.join("web").exists(), "removed when dropped");
        let ns = NotifySocket::bind(&dir, "web", None).unwrap();
        let again = NotifySocket::bind(&dir, "web", None).unwrap();
        drop(ns);
        drop(again);
        let _ = std::fs::remove_dir(&dir);
    }

    #[test]
    fn too_long_a_path_falls_back_to_the_abstract_namespace() {
        let dir = PathBuf::from("/tmp").join("d".repeat(100));
        let mut ns = NotifySocket::bind(&dir, "svc", None).unwrap();
        assert!(!dir.exists(), "nothing created on disk");
        let env = ns.env_value().to_string();
        assert!(env.starts_with("@iris-notify/"), "{env}");
        let tx = std::os::unix::net::UnixDatagram::unbound().unwrap();
        let addr =
            std::os::unix::net::SocketAddr::from_abstract_name(&env.as_bytes()[1..]).unwrap();
        tx.send_to_addr(b"READY=1", &addr).unwrap();
        assert_eq!(wait_notices(&mut ns, 1), vec![Notice::Ready]);
    }
}
