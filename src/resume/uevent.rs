//! The kernel's uevent socket, for one event: the VM generation ID changed
//! (`change@...` with `NEW_VMGENID=1`, sent by Linux's vmgenid driver when
//! the hypervisor resumed the VM from a snapshot).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The multicast group of kernel uevents (udev's own messages are on 2).
const KERNEL_GROUP: u32 = 1;

/// A non-blocking, close-on-exec socket subscribed to kernel uevents.
pub fn open() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::NETLINK_KOBJECT_UEVENT,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: a zeroed sockaddr_nl is valid; the fields are set below.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = KERNEL_GROUP;
    // SAFETY: `addr` is a valid sockaddr_nl of the size passed.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::addr_of!(addr).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Reads every pending message; true if one of them, sent by the kernel,
/// announced a new VM generation. Other uevents (devices coming and going)
/// are dropped. An overflowed socket (ENOBUFS) is read on: a lost
/// generation event cannot be told from others, and the next one comes.
pub fn drain(fd: &OwnedFd) -> io::Result<bool> {
    let mut buf = [0u8; 8192];
    let mut found = false;
    loop {
        // SAFETY: a zeroed sockaddr_nl is valid for recvfrom to fill.
        let mut from: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `buf` and `from` are writable and their sizes are passed.
        let n = unsafe {
            libc::recvfrom(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                std::ptr::addr_of_mut!(from).cast(),
                &mut len,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) => return Ok(found),
                Some(libc::EINTR | libc::ENOBUFS) => continue,
                _ => return Err(e),
            }
        }
        // Only the kernel (port 0) speaks for the hardware.
        let msg = buf.get(..n as usize).unwrap_or_default();
        if from.nl_pid == 0 && is_new_vmgenid(msg) {
            found = true;
        }
    }
}

/// `change@DEVPATH\0KEY=VALUE\0...` with `NEW_VMGENID=1` among the keys.
pub fn is_new_vmgenid(msg: &[u8]) -> bool {
    let mut parts = msg.split(|&b| b == 0);
    let head_ok = parts.next().is_some_and(|h| h.starts_with(b"change@"));
    head_ok && parts.any(|kv| kv == b"NEW_VMGENID=1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_vmgenid_event() {
        let real = b"change@/devices/platform/VMGENCTR:00\0ACTION=change\0DEVPATH=/devices/platform/VMGENCTR:00\0SUBSYSTEM=platform\0NEW_VMGENID=1\0DRIVER=vmgenid\0SEQNUM=1234\0";
        assert!(is_new_vmgenid(real));
        assert!(!is_new_vmgenid(
            b"add@/devices/platform/VMGENCTR:00\0ACTION=add\0NEW_VMGENID=1\0"
        ));
        assert!(!is_new_vmgenid(
            b"change@/devices/virtual/mem/null\0ACTION=change\0SEQNUM=7\0"
        ));
        assert!(!is_new_vmgenid(b"change@/x\0NEW_VMGENID=10\0"));
        assert!(!is_new_vmgenid(b"libudev\0\xfe\xed\xca\xfe"));
        assert!(!is_new_vmgenid(b""));
    }

    #[test]
    fn kernel_uevents_arrive_and_others_are_dropped() {
        // A write to a device's `uevent` file makes the kernel send that
        // event (nothing here acts on a `change` of /dev/null). The kernel
        // prefixes variables added this way with SYNTH_ARG_, so a real
        // NEW_VMGENID=1 cannot be made here: this checks the socket and
        // that an ordinary event is not taken for one.
        let fd = open().unwrap();
        drain(&fd).unwrap(); // whatever was pending
        std::fs::write("/sys/devices/virtual/mem/null/uevent", "change").unwrap();
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, 10_000) };
        assert_eq!(ready, 1, "the kernel sent the event");
        assert!(
            !drain(&fd).unwrap(),
            "a change of /dev/null is no new generation"
        );
        // SAFETY: as above; nothing is left to read.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 0, "drained");
    }
}
