//! Restart delay as a pure function of how many quick crashes came before.

use std::time::Duration;

/// The first restart is immediate (a one-off crash costs nothing); after that
/// the delay doubles from 100 ms up to a cap, so a crash loop costs little.
pub fn restart_delay(level: u32) -> Duration {
    const BASE_MS: u64 = 100;
    const CAP_MS: u64 = 10_000;
    if level == 0 {
        return Duration::ZERO;
    }
    let factor = 1u64
        .checked_shl(level.saturating_sub(1))
        .unwrap_or(u64::MAX);
    Duration::from_millis(BASE_MS.saturating_mul(factor).min(CAP_MS))
}

/// A run at least this long counts as stable: the next crash restarts fast again.
pub const STABLE_RUN: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_first_then_doubling_to_cap() {
        let ms: Vec<u128> = (0..10).map(|l| restart_delay(l).as_millis()).collect();
        assert_eq!(
            ms,
            [0, 100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]
        );
        assert_eq!(restart_delay(u32::MAX), Duration::from_millis(10_000));
    }
}
