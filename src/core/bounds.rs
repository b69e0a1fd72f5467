//! Every bound the init puts on its inputs, in one place (the README's
//! limits table lists them), and deadline arithmetic that cannot overflow.

use std::time::{Duration, Instant};

/// Most services the init holds (API and drop-in together).
pub const MAX_SERVICES: usize = 1024;
/// Most services in one chain of `needs` (a service alone is a chain of 1).
pub const MAX_NEEDS_DEPTH: usize = 64;
/// Largest `stop_timeout_secs`: one hour.
pub const MAX_STOP_TIMEOUT_SECS: f64 = 3600.0;
/// Largest `health_timeout_secs` (and `health.timeout_secs`): one day.
pub const MAX_HEALTH_TIMEOUT_SECS: f64 = 86_400.0;
/// Longest pause between liveness checks (`liveness.interval_secs`): a day.
pub const MAX_LIVENESS_INTERVAL_SECS: f64 = 86_400.0;
/// Largest exec timeout (`timeout_secs`, `timeout_ms`): one day.
pub const MAX_EXEC_TIMEOUT: Duration = Duration::from_secs(86_400);
/// Largest drop-in file read.
pub const MAX_DROPIN_BYTES: u64 = 1 << 20;

/// `d` after `now`; a far-future point when that sum cannot be represented,
/// so a huge timeout means "practically never" and never a panic.
pub fn deadline(now: Instant, d: Duration) -> Instant {
    const YEAR: u64 = 365 * 86_400;
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * YEAR)))
        .or_else(|| now.checked_add(Duration::from_secs(YEAR)))
        .unwrap_or(now)
}

/// Seconds as a duration, clamped to `0..=max_secs` (NaN is 0), for values
/// that were validated but may come from an older state file.
pub fn clamped_secs(secs: f64, max_secs: f64) -> Duration {
    let s = if secs.is_nan() {
        0.0
    } else {
        secs.clamp(0.0, max_secs)
    };
    Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO)
}

/// The shortest timeout that is not "at once": a positive value below it
/// would round down to a zero duration.
pub const MIN_TIMEOUT_SECS: f64 = 0.001;

/// Checks a timeout in seconds: finite, from `min` to `max` (both
/// included). The message names the field and the range.
pub fn check_secs(field: &str, value: f64, min: f64, max: f64) -> Result<(), String> {
    if value.is_finite() && value >= min && value <= max {
        return Ok(());
    }
    Err(format!(
        "`{field}` must be a number from {min} to {max} (seconds), got {value}"
    ))
}

/// An exec timeout in milliseconds (`/v1/exec`'s `timeout_ms`).
pub fn exec_timeout_ms(field: &str, ms: u64) -> Result<Duration, String> {
    let max = MAX_EXEC_TIMEOUT.as_millis();
    if ms == 0 || u128::from(ms) > max {
        return Err(format!(
            "`{field}` must be from 1 to {max} (milliseconds), got {ms}"
        ));
    }
    Ok(Duration::from_millis(ms))
}

/// An exec timeout in seconds (a service exec's `timeout_secs`).
pub fn exec_timeout_secs(field: &str, secs: f64) -> Result<Duration, String> {
    let max = MAX_EXEC_TIMEOUT.as_secs_f64();
    check_secs(field, secs, MIN_TIMEOUT_SECS, max)?;
    Ok(clamped_secs(secs, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_never_overflows() {
        let now = Instant::now();
        assert_eq!(
            deadline(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        // `now + Duration::MAX` panics; this is a point far in the future.
        let far = deadline(now, Duration::MAX);
        assert!(far > now + Duration::from_secs(50 * 365 * 86_400));
        let huge = Duration::try_from_secs_f64(1e19).unwrap();
        assert!(deadline(now, huge) > now);
    }

    #[test]
    fn clamping() {
        assert_eq!(clamped_secs(1e19, 3600.0), Duration::from_secs(3600));
        assert_eq!(clamped_secs(f64::NAN, 10.0), Duration::ZERO);
        assert_eq!(clamped_secs(-3.0, 10.0), Duration::ZERO);
        assert_eq!(clamped_secs(1.5, 10.0), Duration::from_millis(1500));
    }

    #[test]
    fn timeouts_at_the_limits() {
        assert!(check_secs("t", 3600.0, 0.0, 3600.0).is_ok());
        assert!(check_secs("t", 0.0, 0.0, 3600.0).is_ok());
        for bad in [3600.001, 1e19, f64::INFINITY, f64::NAN, -1.0] {
            let e = check_secs("stop_timeout_secs", bad, 0.0, 3600.0).unwrap_err();
            assert!(
                e.contains("`stop_timeout_secs`") && e.contains("3600"),
                "{e}"
            );
        }
        assert!(check_secs("t", 0.0, MIN_TIMEOUT_SECS, 1.0).is_err());
        // Found by the fuzzer: positive, yet a zero duration.
        assert!(check_secs("t", 9.006e-51, MIN_TIMEOUT_SECS, 1.0).is_err());
        assert!(exec_timeout_secs("timeout_secs", 9.006e-51).is_err());
        assert_eq!(
            exec_timeout_secs("timeout_secs", MIN_TIMEOUT_SECS),
            Ok(Duration::from_millis(1))
        );
        assert_eq!(
            exec_timeout_ms("timeout_ms", 86_400_000),
            Ok(Duration::from_secs(86_400))
        );
        for bad in [0, 86_400_001, u64::MAX] {
            let e = exec_timeout_ms("timeout_ms", bad).unwrap_err();
            assert!(e.contains("`timeout_ms`"), "{e}");
        }
        assert_eq!(
            exec_timeout_secs("timeout_secs", 86_400.0),
            Ok(Duration::from_secs(86_400))
        );
        assert!(exec_timeout_secs("timeout_secs", 1e19)
            .unwrap_err()
            .contains("`timeout_secs`"));
    }
}
