//! The steps of a restore that come before any service is touched, in the
//! contract's order: the clock, the kernel's randomness, the generation.
//! Each failure is kept as a sentence for the report's `errors`.

use super::request::{RestoreRequest, WallTime};
use super::{clock, entropy, generation};
use std::io;
use std::path::PathBuf;

/// The system calls the steps make, so the order and the decisions can be
/// tested without changing the machine.
pub trait System {
    fn now(&self) -> WallTime;
    fn set_clock(&mut self, t: WallTime) -> io::Result<()>;
    fn read_rtc(&mut self) -> Result<Option<WallTime>, String>;
    fn add_entropy(&mut self, bytes: &[u8], credit_bits: u32) -> io::Result<()>;
    fn reseed(&mut self) -> io::Result<()>;
    fn hardware_random(&mut self) -> Vec<u8>;
    fn write_generation(&mut self, generation: u64) -> io::Result<()>;
}

/// The real machine.
pub struct Host {
    pub generation_file: PathBuf,
}

impl System for Host {
    fn now(&self) -> WallTime {
        clock::now()
    }
    fn set_clock(&mut self, t: WallTime) -> io::Result<()> {
        clock::set(t)
    }
    fn read_rtc(&mut self) -> Result<Option<WallTime>, String> {
        clock::read_rtc(clock::RTC_DEVICE)
    }
    fn add_entropy(&mut self, bytes: &[u8], credit_bits: u32) -> io::Result<()> {
        entropy::add(bytes, credit_bits)
    }
    fn reseed(&mut self) -> io::Result<()> {
        entropy::reseed()
    }
    fn hardware_random(&mut self) -> Vec<u8> {
        entropy::hardware(8)
    }
    fn write_generation(&mut self, g: u64) -> io::Result<()> {
        generation::write(&self.generation_file, g)
    }
}

/// What the steps did, for the restore report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resumed {
    pub generation: u64,
    /// New clock minus old, in milliseconds (0 when not set).
    pub clock_step_ms: i64,
    pub reseeded: bool,
    pub errors: Vec<String>,
}

/// Runs the three steps. `pid1`: only PID 1 takes the time from the RTC.
pub fn run(sys: &mut dyn System, req: &RestoreRequest, pid1: bool, previous: u64) -> Resumed {
    let mut out = Resumed::default();
    out.clock_step_ms = step_clock(sys, req.time, pid1, &mut out.errors);
    out.reseeded = mix_entropy(sys, req.entropy.as_deref(), previous, &mut out.errors);
    out.generation = generation::next(previous, req.generation);
    if let Err(e) = sys.write_generation(out.generation) {
        out.errors
            .push(format!("cannot write the generation file: {e}"));
    }
    for e in &out.errors {
        crate::warn!("restore: {e}");
    }
    out
}

fn step_clock(
    sys: &mut dyn System,
    time: Option<WallTime>,
    pid1: bool,
    errors: &mut Vec<String>,
) -> i64 {
    let (target, source) = match time {
        Some(t) => (t, "the host's time"),
        None if pid1 => match sys.read_rtc() {
            Ok(Some(rtc)) => match clock::from_rtc(rtc, sys.now()) {
                Some(t) => (t, "the RTC"),
                None => return 0,
            },
            Ok(None) => return 0,
            Err(e) => {
                errors.push(format!("cannot read the RTC: {e}"));
                return 0;
            }
        },
        None => return 0,
    };
    let before = sys.now();
    if let Err(e) = sys.set_clock(target) {
        errors.push(format!("cannot set the clock from {source}: {e}"));
        return 0;
    }
    let step = (target.as_nanos() - before.as_nanos()) / 1_000_000;
    let step = i64::try_from(step).unwrap_or(if step < 0 { i64::MIN } else { i64::MAX });
    if step != 0 {
        crate::info!("restore: clock stepped by {step} ms from {source}");
    }
    step
}

/// Host bytes get full credit. Without them the init mixes what it has
/// that differs between clones (the CPU's generator, the clocks) with no
/// credit, and two refusals are then no failure, just `reseeded: false`:
/// a supervisor not allowed to (EPERM), since nobody asked it for
/// anything, and a generator the kernel has not seeded yet (ENODATA): the
/// kernel seeds it from the whole pool, these bytes included, once it has
/// enough entropy, so there is nothing to reseed.
fn mix_entropy(
    sys: &mut dyn System,
    host: Option<&[u8]>,
    previous: u64,
    errors: &mut Vec<String>,
) -> bool {
    let asked = host.is_some();
    let mut note = |what: &str, e: io::Error| {
        let benign = matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENODATA));
        if asked || !benign {
            errors.push(format!("{what}: {e}"));
        } else {
            crate::info!("restore: {what}: {e}");
        }
    };
    let added = match host {
        Some(bytes) => sys.add_entropy(bytes, (bytes.len() * 8) as u32),
        None => {
            let mut local = sys.hardware_random();
            local.extend_from_slice(&sys.now().as_nanos().to_ne_bytes());
            local.extend_from_slice(&monotonic_nanos().to_ne_bytes());
            local.extend_from_slice(&previous.to_ne_bytes());
            sys.add_entropy(&local, 0)
        }
    };
    if let Err(e) = added {
        note("cannot add entropy to the kernel (RNDADDENTROPY)", e);
    }
    match sys.reseed() {
        Ok(()) => true,
        Err(e) => {
            note("cannot reseed the kernel's generator (RNDRESEEDCRNG)", e);
            false
        }
    }
}

fn monotonic_nanos() -> u128 {
    use std::sync::OnceLock;
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pretend machine that records what was asked of it.
    #[derive(Default)]
    struct Fake {
        now: i128,
        rtc: Option<Result<Option<WallTime>, String>>,
        deny: Option<i32>,
        calls: Vec<String>,
        added: Vec<(Vec<u8>, u32)>,
        hw: Vec<u8>,
    }

    impl Fake {
        fn result(&self) -> io::Result<()> {
            match self.deny {
                Some(e) => Err(io::Error::from_raw_os_error(e)),
                None => Ok(()),
            }
        }
    }

    impl System for Fake {
        fn now(&self) -> WallTime {
            WallTime::from_nanos(self.now)
        }
        fn set_clock(&mut self, t: WallTime) -> io::Result<()> {
            self.calls.push(format!("clock {}", t.secs));
            self.result()?;
            self.now = t.as_nanos();
            Ok(())
        }
        fn read_rtc(&mut self) -> Result<Option<WallTime>, String> {
            self.calls.push("rtc".into());
            self.rtc.clone().unwrap_or(Ok(None))
        }
        fn add_entropy(&mut self, bytes: &[u8], credit: u32) -> io::Result<()> {
            self.calls.push("add".into());
            self.added.push((bytes.to_vec(), credit));
            self.result()
        }
        fn reseed(&mut self) -> io::Result<()> {
            self.calls.push("reseed".into());
            self.result()
        }
        fn hardware_random(&mut self) -> Vec<u8> {
            self.hw.clone()
        }
        fn write_generation(&mut self, g: u64) -> io::Result<()> {
            self.calls.push(format!("generation {g}"));
            Ok(())
        }
    }

    const S: i128 = 1_000_000_000;

    #[test]
    fn host_time_and_entropy_in_order() {
        let mut f = Fake {
            now: 1000 * S,
            ..Fake::default()
        };
        let req = RestoreRequest {
            time: Some(WallTime {
                secs: 1031,
                nanos: 500_000_000,
            }),
            entropy: Some(vec![7; 32]),
            generation: None,
        };
        let r = run(&mut f, &req, false, 4);
        assert_eq!(
            r,
            Resumed {
                generation: 5,
                clock_step_ms: 31_500,
                reseeded: true,
                errors: vec![]
            }
        );
        assert_eq!(f.calls, ["clock 1031", "add", "reseed", "generation 5"]);
        assert_eq!(f.added, [(vec![7; 32], 256)], "full credit");
    }

    #[test]
    fn a_clock_set_back_is_a_negative_step() {
        let mut f = Fake {
            now: 1000 * S,
            ..Fake::default()
        };
        let req = RestoreRequest {
            time: Some(WallTime {
                secs: 990,
                nanos: 0,
            }),
            generation: Some(9),
            ..RestoreRequest::default()
        };
        let r = run(&mut f, &req, true, 4);
        assert_eq!((r.clock_step_ms, r.generation), (-10_000, 9));
        assert!(!f.calls.contains(&"rtc".to_string()), "host time wins");
    }

    #[test]
    fn plain_supervisor_leaves_the_clock_alone() {
        let mut f = Fake {
            now: 1000 * S,
            rtc: Some(Ok(Some(WallTime {
                secs: 5000,
                nanos: 0,
            }))),
            ..Fake::default()
        };
        let r = run(&mut f, &RestoreRequest::default(), false, 0);
        assert_eq!(r.clock_step_ms, 0);
        assert_eq!(f.calls, ["add", "reseed", "generation 1"]);
    }

    #[test]
    fn pid1_takes_the_rtc_only_when_off_by_more_than_a_second() {
        let rtc = |secs| Some(Ok(Some(WallTime { secs, nanos: 0 })));
        let mut f = Fake {
            now: 1000 * S,
            rtc: rtc(1031),
            ..Fake::default()
        };
        let r = run(&mut f, &RestoreRequest::default(), true, 0);
        assert_eq!(r.clock_step_ms, 31_500, "middle of the RTC's second");
        assert_eq!(f.calls[..2], ["rtc", "clock 1031"]);

        let mut f = Fake {
            now: 1000 * S + S / 2,
            rtc: rtc(1000),
            ..Fake::default()
        };
        let r = run(&mut f, &RestoreRequest::default(), true, 0);
        assert_eq!(r.clock_step_ms, 0);
        assert!(!f.calls.iter().any(|c| c.starts_with("clock")));

        let mut f = Fake {
            rtc: Some(Ok(None)),
            ..Fake::default()
        };
        assert!(
            run(&mut f, &RestoreRequest::default(), true, 0)
                .errors
                .is_empty(),
            "no RTC"
        );
        let mut f = Fake {
            rtc: Some(Err("RTC_RD_TIME: EIO".into())),
            ..Fake::default()
        };
        let r = run(&mut f, &RestoreRequest::default(), true, 0);
        assert_eq!(r.errors, ["cannot read the RTC: RTC_RD_TIME: EIO"]);
    }

    #[test]
    fn local_mix_without_host_entropy() {
        let mut f = Fake {
            hw: vec![1; 64],
            ..Fake::default()
        };
        let r = run(&mut f, &RestoreRequest::default(), true, 0);
        assert!(r.reseeded);
        let (bytes, credit) = &f.added[0];
        assert_eq!(*credit, 0, "no credit for what the host did not vouch for");
        assert_eq!(&bytes[..64], &[1; 64][..]);
        assert!(bytes.len() > 64, "the clocks are mixed in too");
        let mut f = Fake::default();
        assert!(
            run(&mut f, &RestoreRequest::default(), true, 0).reseeded,
            "no hardware RNG is fine"
        );
    }

    #[test]
    fn failures_are_reported_never_silent() {
        let mut f = Fake {
            deny: Some(libc::EPERM),
            ..Fake::default()
        };
        let req = RestoreRequest {
            time: Some(WallTime { secs: 5, nanos: 0 }),
            entropy: Some(vec![0; 32]),
            generation: None,
        };
        let r = run(&mut f, &req, false, 1);
        assert_eq!(r.clock_step_ms, 0);
        assert!(!r.reseeded);
        assert_eq!(r.generation, 2, "the generation moves on regardless");
        assert_eq!(r.errors.len(), 3, "{:?}", r.errors);
        assert!(r.errors[0].contains("clock"), "{:?}", r.errors);
        assert!(r.errors[1].contains("RNDADDENTROPY"));
        assert!(r.errors[2].contains("RNDRESEEDCRNG"));

        // Nothing asked of an unprivileged supervisor: no errors, not reseeded.
        let r = run(&mut f, &RestoreRequest::default(), false, 1);
        assert!(r.errors.is_empty() && !r.reseeded, "{r:?}");
        // Nor of a kernel whose generator was never seeded.
        f.deny = Some(libc::ENODATA);
        let r = run(&mut f, &RestoreRequest::default(), true, 1);
        assert!(r.errors.is_empty() && !r.reseeded, "{r:?}");
        // With host entropy it is a failure.
        let req = RestoreRequest {
            entropy: Some(vec![0; 32]),
            ..RestoreRequest::default()
        };
        assert_eq!(run(&mut f, &req, true, 1).errors.len(), 2);
        // Other failures are reported even without.
        f.deny = Some(libc::EIO);
        let r = run(&mut f, &RestoreRequest::default(), false, 1);
        assert_eq!(r.errors.len(), 2, "{:?}", r.errors);
    }
}
