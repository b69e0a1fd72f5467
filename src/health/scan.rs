//! Readiness of TCP ports on loopback, found cheaply. It owns the kernel
//! queries that list listening sockets (a sock_diag netlink dump, with
//! `/proc/net/tcp{,6}` as the fallback) and the non-blocking connect that
//! confirms a port really accepts.
//!
//! One dump lists every listening socket in the network namespace, so the
//! cost of a scan does not grow with the number of services waiting for
//! their `health_port`, unlike a connect per service per tick.

use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// Kernel ABI values (linux/sock_diag.h, linux/inet_diag.h, net/tcp_states.h)
// that libc does not export.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const TCP_LISTEN: u32 = 10;
const NLMSG_HDR_LEN: usize = 16;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, sockid(48).
const INET_DIAG_REQ_V2_LEN: usize = 56;
/// `struct inet_diag_msg` up to and including the local address
/// (family, state, timer, retrans, sport, dport, src[16]).
const INET_DIAG_MSG_MIN_LEN: usize = 24;

/// Start size of the receive buffer. The kernel sizes a dump batch after the
/// largest buffer a reader has offered, so one 32 KiB read holds ~400 sockets.
const INITIAL_BUF: usize = 32 * 1024;
/// A truncated datagram doubles the buffer up to this size.
const MAX_BUF: usize = 1 << 20;

/// Lists listening TCP ports through one reusable sock_diag netlink socket.
pub struct ListenScanner {
    fd: OwnedFd,
    buf: Vec<u8>,
    seq: u32,
}

impl ListenScanner {
    /// Opens the netlink socket and makes one trial scan, so that an error
    /// here means "use [`scan_procfs`]". The socket itself opens on any
    /// kernel; what may be missing is TCP socket diagnostics (`inet_diag` and
    /// `tcp_diag` are modules in Debian's cloud kernel), and only a dump
    /// shows that (ENOENT).
    pub fn new() -> io::Result<Self> {
        let mut scanner = Self::with_buffer(INITIAL_BUF)?;
        scanner.scan(&mut HashSet::new())?;
        Ok(scanner)
    }

    fn with_buffer(size: usize) -> io::Result<Self> {
        // SAFETY: plain socket(2) call with constant arguments; the result is
        // checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(ListenScanner {
            fd,
            buf: vec![0; size],
            seq: 0,
        })
    }

    /// Fills `out` (cleared first) with the ports of TCP sockets in LISTEN
    /// state whose local address is reachable from loopback: 0.0.0.0,
    /// 127.0.0.0/8, ::, ::1 and ::ffff:127.x.x.x (and ::ffff:0.0.0.0).
    /// One dump per address family; never blocks.
    pub fn scan(&mut self, out: &mut HashSet<u16>) -> io::Result<()> {
        out.clear();
        for family in [libc::AF_INET, libc::AF_INET6] {
            self.dump_family(family, out)?;
        }
        Ok(())
    }

    fn dump_family(&mut self, family: libc::c_int, out: &mut HashSet<u16>) -> io::Result<()> {
        // A batch larger than the buffer is cut off, so the dump is restarted
        // with a bigger buffer; ports seen before the cut are kept, which is
        // harmless (they were listening).
        loop {
            self.seq = self.seq.wrapping_add(1);
            self.send_request(family)?;
            let end = self.receive_dump(out).inspect_err(|_| {
                // Finish the kernel's dump now: while one runs, a new
                // request on this socket would be refused with EBUSY.
                self.drain();
            })?;
            match end {
                DumpEnd::Done => return Ok(()),
                DumpEnd::Truncated if self.buf.len() < MAX_BUF => {
                    let bigger = self.buf.len().saturating_mul(2).min(MAX_BUF);
                    self.buf.resize(bigger, 0);
                }
                DumpEnd::Truncated => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "sock_diag dump message larger than 1 MiB",
                    ))
                }
            }
        }
    }

    fn send_request(&self, family: libc::c_int) -> io::Result<()> {
        let msg = build_request(family, self.seq);
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        loop {
            // SAFETY: `msg` and `kernel` outlive the call and the lengths
            // passed are their sizes.
            let n = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    msg.as_ptr().cast(),
                    msg.len(),
                    libc::MSG_DONTWAIT,
                    std::ptr::addr_of!(kernel).cast(),
                    std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            if n >= 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// One datagram into `self.buf`, without waiting. MSG_TRUNC makes recv
    /// return the datagram's real length, so a cut-off batch is noticed
    /// instead of silently losing sockets.
    fn recv(&mut self) -> isize {
        // SAFETY: the pointer and length describe `self.buf`, which
        // outlives the call.
        unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                self.buf.as_mut_ptr().cast(),
                self.buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            )
        }
    }

    fn receive_dump(&mut self, out: &mut HashSet<u16>) -> io::Result<DumpEnd> {
        loop {
            let n = self.recv();
            let Ok(n) = usize::try_from(n) else {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // WouldBlock here means the kernel ended the dump without
                // NLMSG_DONE; leftovers are skipped by sequence number later.
                return Err(err);
            };
            if n > self.buf.len() {
                // Drain what is left of this dump so the retry starts clean.
                self.drain();
                return Ok(DumpEnd::Truncated);
            }
            let datagram = self.buf.get(..n).unwrap_or_default();
            match parse_datagram(datagram, self.seq, out)? {
                Progress::Done => return Ok(DumpEnd::Done),
                Progress::More => {}
            }
        }
    }

    /// Reads and drops everything queued on the socket.
    fn drain(&mut self) {
        loop {
            let n = self.recv();
            if n <= 0 {
                let interrupted =
                    n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted;
                if !interrupted {
                    return;
                }
            }
        }
    }
}

enum DumpEnd {
    Done,
    Truncated,
}

enum Progress {
    Done,
    More,
}

/// `nlmsghdr` + `inet_diag_req_v2` asking for every TCP socket in LISTEN.
fn build_request(family: libc::c_int, seq: u32) -> Vec<u8> {
    let total = NLMSG_HDR_LEN + INET_DIAG_REQ_V2_LEN;
    let mut msg = Vec::with_capacity(total);
    msg.extend_from_slice(&(total as u32).to_ne_bytes()); // nlmsg_len
    msg.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes()); // nlmsg_type
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    msg.extend_from_slice(&flags.to_ne_bytes()); // nlmsg_flags
    msg.extend_from_slice(&seq.to_ne_bytes()); // nlmsg_seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel fills it
    msg.push(family as u8); // sdiag_family
    msg.push(libc::IPPROTO_TCP as u8); // sdiag_protocol
    msg.push(0); // idiag_ext: no extra attributes wanted
    msg.push(0); // pad
    msg.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes()); // idiag_states
    msg.resize(total, 0); // id: all-zero sockid matches every socket
    msg
}

fn read_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn bad_message(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed sock_diag reply: {what}"),
    )
}

/// Walks the netlink messages of one datagram, adding loopback-reachable
/// listening ports to `out`. Messages of an older request (another sequence
/// number, e.g. the rest of a dump abandoned after an error) are skipped.
fn parse_datagram(mut data: &[u8], seq: u32, out: &mut HashSet<u16>) -> io::Result<Progress> {
    while !data.is_empty() {
        let len = read_u32(data, 0).ok_or_else(|| bad_message("short header"))? as usize;
        let msg_type = read_u16(data, 4).ok_or_else(|| bad_message("short header"))?;
        let msg_seq = read_u32(data, 8).ok_or_else(|| bad_message("short header"))?;
        if len < NLMSG_HDR_LEN {
            return Err(bad_message("message length below header size"));
        }
        let msg = data
            .get(..len)
            .ok_or_else(|| bad_message("message longer than datagram"))?;
        let payload = msg.get(NLMSG_HDR_LEN..).unwrap_or_default();
        if msg_seq == seq {
            match i32::from(msg_type) {
                libc::NLMSG_DONE => {
                    // A dump can end with an error code in NLMSG_DONE.
                    return match read_u32(payload, 0).map(|e| e as i32) {
                        Some(e) if e < 0 => Err(io::Error::from_raw_os_error(-e)),
                        _ => Ok(Progress::Done),
                    };
                }
                libc::NLMSG_ERROR => {
                    let e = read_u32(payload, 0).ok_or_else(|| bad_message("short error"))? as i32;
                    if e != 0 {
                        // ENOENT here: no TCP diag support in this kernel.
                        return Err(io::Error::from_raw_os_error(e.saturating_neg()));
                    }
                    // 0 is an acknowledgement; a dump has none, but it is harmless.
                }
                t if t == i32::from(SOCK_DIAG_BY_FAMILY) => {
                    if let Some(port) = loopback_listen_port(payload) {
                        out.insert(port);
                    }
                }
                _ => {} // NLMSG_NOOP and anything new: nothing to learn.
            }
        }
        // Messages are 4-byte aligned (NLMSG_ALIGN); the last may lack padding.
        let step = len.checked_add(3).map(|l| l & !3).unwrap_or(len);
        data = data.get(step..).unwrap_or_default();
    }
    Ok(Progress::More)
}

/// The local port of one `inet_diag_msg`, if it listens where a connection
/// from loopback can reach it.
fn loopback_listen_port(msg: &[u8]) -> Option<u16> {
    let family = i32::from(*msg.first()?);
    let state = u32::from(*msg.get(1)?);
    if state != TCP_LISTEN || msg.len() < INET_DIAG_MSG_MIN_LEN {
        return None;
    }
    // idiag_sport is big-endian.
    let port = u16::from_be_bytes(msg.get(4..6)?.try_into().ok()?);
    let addr = msg.get(8..24)?;
    let reachable = match family {
        libc::AF_INET => v4_reachable(addr.get(..4)?.try_into().ok()?),
        libc::AF_INET6 => v6_reachable(addr.try_into().ok()?),
        _ => false,
    };
    reachable.then_some(port)
}

fn v4_reachable(a: [u8; 4]) -> bool {
    a == [0, 0, 0, 0] || a[0] == 127
}

fn v6_reachable(a: [u8; 16]) -> bool {
    let ip = std::net::Ipv6Addr::from(a);
    if ip.is_unspecified() || ip.is_loopback() {
        return true;
    }
    // An IPv4-mapped address ::ffff:a.b.c.d on a dual-stack socket.
    match ip.to_ipv4_mapped() {
        Some(v4) => v4_reachable(v4.octets()),
        None => false,
    }
}

/// Fallback when netlink is unavailable: the same answer as
/// [`ListenScanner::scan`], read from `/proc/net/tcp` and `/proc/net/tcp6`.
/// A missing `tcp6` (IPv6 disabled) counts as no IPv6 listeners.
pub fn scan_procfs(out: &mut HashSet<u16>) -> io::Result<()> {
    out.clear();
    let v4 = std::fs::read_to_string("/proc/net/tcp")?;
    parse_proc_net_tcp(&v4, out);
    match std::fs::read_to_string("/proc/net/tcp6") {
        Ok(v6) => parse_proc_net_tcp(&v6, out),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(())
}

/// Lines look like `0: 0100007F:1F90 00000000:0000 0A ...`: the address is
/// the in-memory (network order) bytes printed as native-endian 32-bit hex
/// words, the port is plain hex, state 0A is LISTEN.
fn parse_proc_net_tcp(text: &str, out: &mut HashSet<u16>) {
    for line in text.lines().skip(1) {
        let mut fields = line.split_ascii_whitespace();
        let (Some(_slot), Some(local), Some(_remote), Some(state)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if state != "0A" {
            continue;
        }
        let Some((addr_hex, port_hex)) = local.split_once(':') else {
            continue;
        };
        let Ok(port) = u16::from_str_radix(port_hex, 16) else {
            continue;
        };
        let Some(addr) = decode_proc_addr(addr_hex) else {
            continue;
        };
        let reachable = match addr.len() {
            4 => addr.as_slice().try_into().is_ok_and(v4_reachable),
            16 => addr.as_slice().try_into().is_ok_and(v6_reachable),
            _ => false,
        };
        if reachable {
            out.insert(port);
        }
    }
}

fn decode_proc_addr(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(8) || !hex.is_ascii() {
        return None;
    }
    let mut bytes = Vec::with_capacity(hex.len() / 2);
    for i in (0..hex.len()).step_by(8) {
        let word = u32::from_str_radix(hex.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    Some(bytes)
}

/// Starts a non-blocking connect to 127.0.0.1:`port`, or to `[::1]` when
/// `ipv6` (a service listening on `::1` only). Register the stream for
/// WRITABLE and call [`connect_outcome`] when it fires. The kernel may also
/// refuse at once: that is an error of kind `ConnectionRefused` here.
pub fn start_connect_on(port: u16, ipv6: bool) -> io::Result<mio::net::TcpStream> {
    let addr = if ipv6 {
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port))
    } else {
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    };
    mio::net::TcpStream::connect(addr)
}

/// After WRITABLE on a stream from [`start_connect`]: `Ok(true)` connected,
/// `Ok(false)` refused or not connected yet, `Err` anything else. This is the
/// check mio documents for a non-blocking connect (`take_error`, then
/// `peer_addr`).
pub fn connect_outcome(stream: &mio::net::TcpStream) -> io::Result<bool> {
    if let Some(err) = stream.take_error()? {
        return refused_or(err);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(err) => refused_or(err),
    }
}

fn refused_or(err: io::Error) -> io::Result<bool> {
    if err.kind() == io::ErrorKind::ConnectionRefused {
        Ok(false)
    } else {
        Err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::time::{Duration, Instant};

    fn scan_netlink() -> HashSet<u16> {
        let mut s = ListenScanner::new().expect("netlink socket");
        let mut out = HashSet::new();
        s.scan(&mut out).expect("scan");
        out
    }

    fn scan_proc() -> HashSet<u16> {
        let mut out = HashSet::new();
        scan_procfs(&mut out).expect("procfs scan");
        out
    }

    fn has_ipv6_loopback() -> bool {
        TcpListener::bind("[::1]:0").is_ok()
    }

    #[test]
    fn listeners_on_loopback_and_any_are_found() {
        let lo = TcpListener::bind("127.0.0.1:0").unwrap();
        let any = TcpListener::bind("0.0.0.0:0").unwrap();
        let lo2 = TcpListener::bind("127.0.0.2:0").unwrap();
        let mut want = vec![
            lo.local_addr().unwrap().port(),
            any.local_addr().unwrap().port(),
            lo2.local_addr().unwrap().port(),
        ];
        let v6 = if has_ipv6_loopback() {
            let l = TcpListener::bind("[::1]:0").unwrap();
            want.push(l.local_addr().unwrap().port());
            let any6 = TcpListener::bind("[::]:0").unwrap();
            want.push(any6.local_addr().unwrap().port());
            vec![l, any6]
        } else {
            // No IPv6 on this machine: the v6 cases cannot be made here.
            vec![]
        };
        let netlink = scan_netlink();
        let procfs = scan_proc();
        for port in &want {
            assert!(netlink.contains(port), "netlink misses {port}: {netlink:?}");
            assert!(procfs.contains(port), "procfs misses {port}: {procfs:?}");
        }
        drop(v6);
    }

    #[test]
    fn a_closed_listener_disappears() {
        let mut scanner = ListenScanner::new().unwrap();
        let mut out = HashSet::new();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        scanner.scan(&mut out).unwrap();
        assert!(out.contains(&port));
        drop(l);
        // Closing a listener is synchronous, but another test may bind the
        // same port right after; retry briefly instead of failing on that.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            scanner.scan(&mut out).unwrap();
            if !out.contains(&port) {
                break;
            }
            assert!(Instant::now() < deadline, "port {port} still listed");
            std::thread::sleep(Duration::from_millis(10));
        }
        // A connected (non-listening) socket is never reported.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let client_port = client.local_addr().unwrap().port();
        scanner.scan(&mut out).unwrap();
        assert!(!out.contains(&client_port));
    }

    /// A listener on an address that loopback cannot reach is never
    /// reported. The addresses are made for the test: the check runs (the
    /// ignored helper below) in a new network namespace with a veth pair
    /// holding 10.77.0.1 and fd00:77::1. Needs root (unshare, ip): without
    /// it the test fails, it does not skip.
    #[test]
    fn a_listener_on_another_address_is_not_reported() {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new("unshare")
            .arg("--net")
            .arg(&exe)
            .args([
                "--ignored",
                "--exact",
                "health::scan::tests::other_address_inner",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("IRIS_SCAN_NETNS_INNER", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "status {:?}\nstdout: {stdout}\nstderr: {stderr}",
            out.status
        );
        assert!(
            stderr.contains("inner: 10.77.0.1 and fd00:77::1 not reported"),
            "{stderr}"
        );
    }

    fn ip(args: &str) {
        let out = std::process::Command::new("ip")
            .args(args.split_whitespace())
            .output()
            .expect("ip (iproute2) is installed");
        assert!(
            out.status.success(),
            "ip {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The namespace side of the test above; ignored in a normal run, and it
    /// fails when run any other way (it would change the host's network).
    #[test]
    #[ignore = "run by a_listener_on_another_address_is_not_reported"]
    fn other_address_inner() {
        assert!(
            std::env::var_os("IRIS_SCAN_NETNS_INNER").is_some(),
            "run by a_listener_on_another_address_is_not_reported only"
        );
        ip("link set lo up");
        ip("link add iris-t0 type veth peer name iris-t1");
        ip("addr add 10.77.0.1/24 dev iris-t0");
        ip("-6 addr add fd00:77::1/64 dev iris-t0 nodad");
        ip("link set iris-t0 up");
        ip("link set iris-t1 up");
        let others: Vec<TcpListener> = ["10.77.0.1:0", "[fd00:77::1]:0"]
            .iter()
            .map(|a| TcpListener::bind(a).unwrap_or_else(|e| panic!("bind {a}: {e}")))
            .collect();
        // The same scans see loopback listeners here: the scans work.
        let lo = TcpListener::bind("127.0.0.1:0").unwrap();
        let lo_port = lo.local_addr().unwrap().port();
        let netlink = scan_netlink();
        let procfs = scan_proc();
        assert!(netlink.contains(&lo_port), "{netlink:?}");
        assert!(procfs.contains(&lo_port), "{procfs:?}");
        for l in &others {
            let a = l.local_addr().unwrap();
            assert!(!netlink.contains(&a.port()), "{a} reported: {netlink:?}");
            assert!(!procfs.contains(&a.port()), "{a} reported by procfs");
        }
        eprintln!("inner: 10.77.0.1 and fd00:77::1 not reported");
    }

    #[test]
    fn a_dump_larger_than_the_buffer_is_read_whole() {
        let held: Vec<TcpListener> = (0..50)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        // 200 bytes hold two sockets at most: the batches get cut and the
        // scanner must grow its buffer and redo the dump.
        let mut scanner = ListenScanner::with_buffer(200).unwrap();
        let mut out = HashSet::new();
        scanner.scan(&mut out).unwrap();
        for l in &held {
            assert!(out.contains(&l.local_addr().unwrap().port()));
        }
        assert!(scanner.buf.len() > 200);
        // The socket is left clean: the next scan gives the same answer.
        let mut again = HashSet::new();
        scanner.scan(&mut again).unwrap();
        assert!(again.is_superset(
            &held
                .iter()
                .map(|l| l.local_addr().unwrap().port())
                .collect()
        ));
    }

    #[test]
    fn procfs_agrees_with_netlink() {
        let _held: Vec<TcpListener> = (0..5)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        // Other tests open and close listeners concurrently; retry until two
        // back-to-back scans see the same set.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let a = scan_netlink();
            let b = scan_proc();
            if a == b {
                assert!(a.len() >= 5);
                break;
            }
            assert!(Instant::now() < deadline, "netlink {a:?} vs procfs {b:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn proc_lines_are_decoded() {
        // Captured shapes: 127.0.0.1:8080, 0.0.0.0:22, 10.0.0.5:9000 (not
        // loopback), a connected socket, then ::1:6379, :: :80 and
        // ::ffff:127.0.0.1:5432 in tcp6 format. Words are native-endian.
        let w = |bytes: [u8; 4]| format!("{:08X}", u32::from_ne_bytes(bytes));
        let v4 = |b: [u8; 4], port: u16, st: &str| {
            format!("  1: {}:{port:04X} 00000000:0000 {st} 0 0 0", w(b))
        };
        let v6 = |b: [u8; 16], port: u16| {
            let hex: String = b.chunks(4).map(|c| w(c.try_into().unwrap())).collect();
            format!("  1: {hex}:{port:04X} 0000:0000 0A 0 0 0")
        };
        let text = [
            "  sl  local_address rem_address   st".to_string(),
            v4([127, 0, 0, 1], 8080, "0A"),
            v4([0, 0, 0, 0], 22, "0A"),
            v4([10, 0, 0, 5], 9000, "0A"),
            v4([127, 0, 0, 1], 40000, "01"),
            v6(std::net::Ipv6Addr::LOCALHOST.octets(), 6379),
            v6([0; 16], 80),
            v6(Ipv4Addr::LOCALHOST.to_ipv6_mapped().octets(), 5432),
            v6(
                "fe80::1".parse::<std::net::Ipv6Addr>().unwrap().octets(),
                7000,
            ),
            "garbage".to_string(),
        ]
        .join("\n");
        let mut out = HashSet::new();
        parse_proc_net_tcp(&text, &mut out);
        assert_eq!(out, HashSet::from([8080, 22, 6379, 80, 5432]));
    }

    fn nl_msg(msg_type: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let len = (NLMSG_HDR_LEN + payload.len()) as u32;
        let mut m = Vec::new();
        m.extend_from_slice(&len.to_ne_bytes());
        m.extend_from_slice(&msg_type.to_ne_bytes());
        m.extend_from_slice(&2u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(payload);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    fn diag_msg(family: u8, port: u16, addr: &[u8]) -> Vec<u8> {
        let mut p = vec![family, TCP_LISTEN as u8, 0, 0];
        p.extend_from_slice(&port.to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        let mut a = addr.to_vec();
        a.resize(16, 0);
        p.extend_from_slice(&a);
        p.resize(72, 0);
        p
    }

    #[test]
    fn netlink_messages_are_parsed_with_bounds_checks() {
        let ipv4 = libc::AF_INET as u8;
        let mut dgram = nl_msg(
            SOCK_DIAG_BY_FAMILY,
            7,
            &diag_msg(ipv4, 8080, &[127, 0, 0, 1]),
        );
        dgram.extend(nl_msg(
            SOCK_DIAG_BY_FAMILY,
            7,
            &diag_msg(ipv4, 9090, &[10, 1, 2, 3]),
        ));
        // A message from an older request is ignored.
        dgram.extend(nl_msg(
            SOCK_DIAG_BY_FAMILY,
            6,
            &diag_msg(ipv4, 1111, &[0; 4]),
        ));
        let mut out = HashSet::new();
        assert!(matches!(
            parse_datagram(&dgram, 7, &mut out),
            Ok(Progress::More)
        ));
        assert_eq!(out, HashSet::from([8080]));

        let done = nl_msg(libc::NLMSG_DONE as u16, 7, &0i32.to_ne_bytes());
        assert!(matches!(
            parse_datagram(&done, 7, &mut out),
            Ok(Progress::Done)
        ));
        let stale_done = nl_msg(libc::NLMSG_DONE as u16, 6, &0i32.to_ne_bytes());
        assert!(matches!(
            parse_datagram(&stale_done, 7, &mut out),
            Ok(Progress::More)
        ));

        let err = nl_msg(libc::NLMSG_ERROR as u16, 7, &(-libc::ENOENT).to_ne_bytes());
        let e = parse_datagram(&err, 7, &mut out).err().unwrap();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));

        // Truncated and lying lengths are errors, never a panic.
        let good = nl_msg(SOCK_DIAG_BY_FAMILY, 7, &diag_msg(ipv4, 1, &[127, 0, 0, 1]));
        for cut in 1..good.len() {
            assert!(
                parse_datagram(&good[..cut], 7, &mut out).is_err(),
                "a datagram cut at {cut} of {} bytes",
                good.len()
            );
        }
        let mut lying = good.clone();
        lying[..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(parse_datagram(&lying, 7, &mut out).is_err());
        lying[..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(parse_datagram(&lying, 7, &mut out).is_err());
        // A short diag payload is skipped.
        let short = nl_msg(
            SOCK_DIAG_BY_FAMILY,
            7,
            &[ipv4, TCP_LISTEN as u8, 0, 0, 0, 80],
        );
        out.clear();
        assert!(parse_datagram(&short, 7, &mut out).is_ok());
        assert!(out.is_empty());
    }

    #[test]
    fn address_filter() {
        assert!(v4_reachable([127, 0, 0, 1]));
        assert!(v4_reachable([127, 9, 8, 7]));
        assert!(v4_reachable([0, 0, 0, 0]));
        assert!(!v4_reachable([10, 0, 0, 1]));
        assert!(!v4_reachable([128, 0, 0, 1]));
        let v6 = |s: &str| v6_reachable(s.parse::<std::net::Ipv6Addr>().unwrap().octets());
        assert!(v6("::"));
        assert!(v6("::1"));
        assert!(v6("::ffff:127.0.0.1"));
        assert!(v6("::ffff:127.3.0.1"));
        assert!(!v6("::ffff:10.0.0.1"));
        assert!(!v6("fe80::1"));
        assert!(!v6("2001:db8::1"));
    }

    /// Waits for WRITABLE on a started connect and returns its outcome.
    fn wait_outcome(port: u16) -> io::Result<bool> {
        use mio::{Events, Interest, Poll, Token};
        let mut stream = match start_connect_on(port, false) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Ok(false),
            Err(e) => return Err(e),
        };
        let mut poll = Poll::new()?;
        poll.registry()
            .register(&mut stream, Token(1), Interest::WRITABLE)?;
        let mut events = Events::with_capacity(4);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            poll.poll(&mut events, Some(Duration::from_millis(100)))?;
            if events.iter().any(|e| e.token() == Token(1)) {
                return connect_outcome(&stream);
            }
        }
        panic!("no WRITABLE within 10 s for port {port}");
    }

    #[test]
    fn connect_to_an_open_and_a_closed_port() {
        let open = TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(wait_outcome(open.local_addr().unwrap().port()).unwrap());

        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        assert!(!wait_outcome(closed_port).unwrap());
    }

    /// Cost figures for choosing the scan interval; run with
    /// `cargo test --release -- --ignored --nocapture scan_cost`.
    #[test]
    #[ignore]
    fn scan_cost() {
        let mut scanner = ListenScanner::new().unwrap();
        let mut out = HashSet::new();
        let stats = |runs: usize, f: &mut dyn FnMut()| {
            let mut times: Vec<Duration> = (0..runs)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed()
                })
                .collect();
            times.sort();
            (times[runs / 2], times[runs * 99 / 100])
        };
        let (idle, idle99) = stats(2000, &mut || scanner.scan(&mut out).unwrap());
        let before = out.len();
        let held: Vec<TcpListener> = (0..100)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let (nl, nl99) = stats(2000, &mut || scanner.scan(&mut out).unwrap());
        assert!(out.len() >= held.len());
        let (pf, pf99) = stats(2000, &mut || scan_procfs(&mut out).unwrap());
        // For comparison, confirming every port by connecting (and accepting,
        // so no backlog fills up); few runs, as each leaves TIME_WAIT sockets.
        let (cn, cn99) = stats(40, &mut || {
            for l in &held {
                let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
                drop(l.accept().unwrap());
                drop(c);
            }
        });
        println!("netlink scan, {before} listeners: median {idle:?}, p99 {idle99:?}");
        println!("listeners opened: {} (listed {})", held.len(), out.len());
        println!("netlink scan:        median {nl:?}, p99 {nl99:?}");
        println!("procfs scan:         median {pf:?}, p99 {pf99:?}");
        println!("100 connects+accepts: median {cn:?}, p99 {cn99:?}");
    }
}
