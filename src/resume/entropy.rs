//! Fresh randomness after a resume: bytes into the kernel's input pool
//! (`RNDADDENTROPY`) and an immediate reseed of its generator
//! (`RNDRESEEDCRNG`), so clones of one snapshot diverge at once. Also the
//! CPU's hardware generator (RDSEED, else RDRAND) for when the host sends
//! nothing.

use std::os::fd::AsRawFd;

/// The device the ioctls go to (either random device takes them).
pub const RANDOM_DEVICE: &str = "/dev/urandom";

// <linux/random.h>: RNDADDENTROPY = _IOW('R', 0x03, int[2]),
// RNDRESEEDCRNG = _IO('R', 0x07).
nix::ioctl_write_ptr_bad!(
    rnd_add_entropy,
    nix::request_code_write!(b'R', 0x03, 2 * std::mem::size_of::<libc::c_int>()),
    u8
);
nix::ioctl_none!(rnd_reseed_crng, b'R', 0x07);

/// `struct rand_pool_info` followed by its bytes: entropy_count (bits of
/// credit), buf_size (bytes), then the buffer.
pub fn pool_info(bytes: &[u8], credit_bits: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + bytes.len() + 3);
    v.extend_from_slice(&(credit_bits as libc::c_int).to_ne_bytes());
    v.extend_from_slice(&(bytes.len() as libc::c_int).to_ne_bytes());
    v.extend_from_slice(bytes);
    // The kernel's struct ends in a __u32 array: keep the size a multiple.
    v.resize(v.len().next_multiple_of(4), 0);
    v
}

/// Mixes `bytes` into the input pool, crediting `credit_bits` of entropy
/// (needs CAP_SYS_ADMIN).
pub fn add(bytes: &[u8], credit_bits: u32) -> std::io::Result<()> {
    let f = std::fs::File::open(RANDOM_DEVICE)?;
    let info = pool_info(bytes, credit_bits);
    // SAFETY: the fd is open for the call; `info` is a complete
    // rand_pool_info whose buf_size matches the bytes that follow it.
    unsafe { rnd_add_entropy(f.as_raw_fd(), info.as_ptr()) }.map_err(std::io::Error::from)?;
    Ok(())
}

/// Makes the kernel reseed its generator from the input pool now
/// (needs CAP_SYS_ADMIN; ENODATA before the generator was ever seeded).
pub fn reseed() -> std::io::Result<()> {
    let f = std::fs::File::open(RANDOM_DEVICE)?;
    // SAFETY: the fd is open for the call; the ioctl takes no argument.
    unsafe { rnd_reseed_crng(f.as_raw_fd()) }.map_err(std::io::Error::from)?;
    Ok(())
}

/// Up to `words` 64-bit values from the CPU's generator: RDSEED where the
/// CPU has it, else RDRAND. Empty on a CPU without either (not an error).
pub fn hardware(words: usize) -> Vec<u8> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("rdseed") {
            // SAFETY: the CPU has RDSEED (checked just above).
            return unsafe { x86::rdseed(words) };
        }
        if std::arch::is_x86_feature_detected!("rdrand") {
            // SAFETY: the CPU has RDRAND (checked just above).
            return unsafe { x86::rdrand(words) };
        }
    }
    let _ = words;
    Vec::new()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{_rdrand64_step, _rdseed64_step};

    /// RDSEED may run dry for a moment: a few retries per word, then RDRAND.
    #[target_feature(enable = "rdseed,rdrand")]
    pub unsafe fn rdseed(words: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(words * 8);
        for _ in 0..words {
            let mut v = 0u64;
            let got = (0..16).any(|_| _rdseed64_step(&mut v) == 1)
                || (0..16).any(|_| _rdrand64_step(&mut v) == 1);
            if got {
                out.extend_from_slice(&v.to_ne_bytes());
            }
        }
        out
    }

    #[target_feature(enable = "rdrand")]
    pub unsafe fn rdrand(words: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(words * 8);
        for _ in 0..words {
            let mut v = 0u64;
            if (0..16).any(|_| _rdrand64_step(&mut v) == 1) {
                out.extend_from_slice(&v.to_ne_bytes());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_info_layout() {
        let v = pool_info(&[1, 2, 3, 4, 5], 40);
        assert_eq!(&v[0..4], &40i32.to_ne_bytes());
        assert_eq!(&v[4..8], &5i32.to_ne_bytes());
        assert_eq!(&v[8..13], &[1, 2, 3, 4, 5]);
        assert_eq!(v.len(), 16, "padded to whole u32s");
    }

    #[test]
    fn ioctl_numbers_match_linux_random_h() {
        assert_eq!(
            nix::request_code_write!(b'R', 0x03, 2 * std::mem::size_of::<libc::c_int>()) as u64,
            0x4008_5203
        );
        assert_eq!(nix::request_code_none!(b'R', 0x07), 0x5207);
    }

    #[test]
    fn the_kernel_takes_credited_entropy_and_reseeds() {
        // As root both ioctls must succeed: a wrong struct layout or request
        // number would get EINVAL or ENOTTY here.
        add(&[0x5a; 64], 64 * 8).unwrap();
        add(b"no credit", 0).unwrap();
        reseed().unwrap();
        let err = add_raw_mismatch().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{err}");
    }

    /// A rand_pool_info with a negative credit, which the kernel refuses.
    fn add_raw_mismatch() -> std::io::Result<()> {
        let f = std::fs::File::open(RANDOM_DEVICE)?;
        let mut info = pool_info(&[0; 8], 0);
        info[0..4].copy_from_slice(&(-1 as libc::c_int).to_ne_bytes());
        // SAFETY: a complete rand_pool_info; the kernel refuses it before use.
        unsafe { rnd_add_entropy(f.as_raw_fd(), info.as_ptr()) }.map_err(std::io::Error::from)?;
        Ok(())
    }

    #[test]
    fn hardware_words_where_the_cpu_has_them() {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
        let has = cpuinfo
            .lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "rdrand" || f == "rdseed"));
        let a = hardware(4);
        if !has {
            assert!(a.is_empty(), "no hardware generator: nothing, and no error");
            return;
        }
        assert_eq!(a.len(), 32);
        assert_ne!(a, hardware(4), "two draws of 256 bits differ");
    }
}
