//! The system clock after a resume: reading and setting `CLOCK_REALTIME`,
//! and reading the RTC (`/dev/rtc0`, `RTC_RD_TIME`, UTC).

use super::request::{days_from_civil, WallTime};
use std::os::fd::AsRawFd;

/// `CLOCK_REALTIME` now.
pub fn now() -> WallTime {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_REALTIME always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    WallTime {
        secs: ts.tv_sec,
        nanos: ts.tv_nsec as u32,
    }
}

/// Steps `CLOCK_REALTIME` to `t` (needs CAP_SYS_TIME).
pub fn set(t: WallTime) -> std::io::Result<()> {
    let ts = libc::timespec {
        tv_sec: t.secs,
        tv_nsec: i64::from(t.nanos),
    };
    // SAFETY: `ts` is a valid timespec that outlives the call.
    if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `struct rtc_time` of `<linux/rtc.h>`: broken-down time, as `struct tm`.
#[repr(C)]
#[derive(Default, Debug, Clone, Copy)]
pub struct RtcTime {
    pub tm_sec: libc::c_int,
    pub tm_min: libc::c_int,
    pub tm_hour: libc::c_int,
    pub tm_mday: libc::c_int,
    pub tm_mon: libc::c_int,
    pub tm_year: libc::c_int,
    pub tm_wday: libc::c_int,
    pub tm_yday: libc::c_int,
    pub tm_isdst: libc::c_int,
}

nix::ioctl_read!(rtc_rd_time, b'p', 0x09, RtcTime);

pub const RTC_DEVICE: &str = "/dev/rtc0";

/// The RTC's time (whole seconds, UTC as qemu and cloud VMs keep it).
/// `Ok(None)` when there is no RTC.
pub fn read_rtc(path: &str) -> Result<Option<WallTime>, String> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open {path}: {e}")),
    };
    let mut tm = RtcTime::default();
    // SAFETY: the fd is open for the call's duration and `tm` has the layout
    // of struct rtc_time that the ioctl writes.
    unsafe { rtc_rd_time(f.as_raw_fd(), &mut tm) }
        .map_err(|e| format!("RTC_RD_TIME on {path}: {e}"))?;
    rtc_to_wall(&tm)
        .map(Some)
        .ok_or_else(|| format!("{path} holds an invalid time: {tm:?}"))
}

/// Broken-down UTC to seconds since the epoch.
pub fn rtc_to_wall(tm: &RtcTime) -> Option<WallTime> {
    let fields_ok = (0..=11).contains(&tm.tm_mon)
        && (1..=31).contains(&tm.tm_mday)
        && (0..=23).contains(&tm.tm_hour)
        && (0..=59).contains(&tm.tm_min)
        && (0..=60).contains(&tm.tm_sec)
        && tm.tm_year >= 70;
    if !fields_ok {
        return None;
    }
    let days = days_from_civil(
        i64::from(tm.tm_year) + 1900,
        i64::from(tm.tm_mon) + 1,
        i64::from(tm.tm_mday),
    );
    let secs = days * 86_400
        + i64::from(tm.tm_hour) * 3600
        + i64::from(tm.tm_min) * 60
        + i64::from(tm.tm_sec);
    Some(WallTime { secs, nanos: 0 })
}

/// The time to take from an RTC reading, if the clock is off by more than
/// a second. The RTC counts whole seconds, so the true time lies somewhere
/// in the second it shows: the middle of it is off by at most half a second.
pub fn from_rtc(rtc: WallTime, system: WallTime) -> Option<WallTime> {
    let estimate = WallTime {
        secs: rtc.secs,
        nanos: 500_000_000,
    };
    let diff = estimate.as_nanos() - system.as_nanos();
    (diff.abs() > 1_000_000_000).then_some(estimate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tm(y: i32, mon: i32, d: i32, h: i32, min: i32, s: i32) -> RtcTime {
        RtcTime {
            tm_year: y - 1900,
            tm_mon: mon - 1,
            tm_mday: d,
            tm_hour: h,
            tm_min: min,
            tm_sec: s,
            ..RtcTime::default()
        }
    }

    #[test]
    fn rtc_broken_down_time() {
        assert_eq!(
            rtc_to_wall(&tm(2026, 11, 30, 0, 53, 19)).map(|t| t.secs),
            Some(1_795_999_999)
        );
        assert_eq!(
            rtc_to_wall(&tm(1970, 1, 1, 0, 0, 0)).map(|t| t.secs),
            Some(0)
        );
        assert_eq!(rtc_to_wall(&tm(2026, 13, 1, 0, 0, 0)), None);
        assert_eq!(rtc_to_wall(&tm(1969, 12, 31, 0, 0, 0)), None);
        assert_eq!(
            std::mem::size_of::<RtcTime>(),
            36,
            "struct rtc_time is 9 ints"
        );
    }

    #[test]
    fn rtc_step_only_beyond_a_second() {
        let at = |secs, nanos| WallTime { secs, nanos };
        assert_eq!(from_rtc(at(100, 0), at(100, 900_000_000)), None);
        assert_eq!(from_rtc(at(100, 0), at(99, 600_000_000)), None);
        assert_eq!(from_rtc(at(100, 0), at(101, 400_000_000)), None);
        assert_eq!(from_rtc(at(131, 0), at(100, 0)), Some(at(131, 500_000_000)));
        assert_eq!(
            from_rtc(at(100, 0), at(131, 0)),
            Some(at(100, 500_000_000)),
            "a clock ahead is set back too"
        );
    }

    #[test]
    fn no_rtc_is_not_an_error() {
        assert_eq!(read_rtc("/nonexistent/rtc0"), Ok(None));
        assert!(
            read_rtc("/dev/null").is_err(),
            "not an RTC: the ioctl fails"
        );
    }

    #[test]
    fn setting_the_clock_to_now_keeps_it_right() {
        // Root may set the clock: set it to what it is (a step of well under
        // a millisecond), the one change this test may make to the machine.
        let before = now();
        set(now()).unwrap();
        let after = now();
        assert!(after >= before);
        assert!(after.as_nanos() - before.as_nanos() < 1_000_000_000);
    }
}
