//! JSON views of what the API returns: the service object and friends.

use crate::core::supervisor::{Phase, Service, Source};
use serde_json::{json, Value};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The service object: the seed's fields, the definition, and the state.
pub fn service_json(s: &Service, now: Instant, extra: &serde_json::Map<String, Value>) -> Value {
    let d = &s.def;
    let pid = match &s.phase {
        Phase::Starting { pid } | Phase::Running { pid, .. } => Some(*pid),
        Phase::Stopping { pid, .. } => *pid,
        _ => None,
    };
    let started_at = match s.phase {
        Phase::Starting { .. } | Phase::Running { .. } | Phase::Stopping { .. } => {
            s.started_at.map(|t| rfc3339(wall_time_of(t, now)))
        }
        _ => None,
    };
    let mut v = json!({
        "name": s.name,
        "cmd": d.cmd,
        "args": d.args,
        "env": d.env,
        "working_dir": d.working_dir,
        "user": d.user,
        "health_port": d.health_port,
        "needs": d.needs,
        "container": d.container,
        "image": d.image.clone().unwrap_or_default(),
        // A oneshot takes no `restart`: null keeps GET-then-PUT working.
        "restart": if d.is_oneshot() { Value::Null } else { json!(d.restart) },
        "stop_timeout_secs": d.stop_timeout_secs,
        "health_timeout_secs": d.health_timeout_secs,
        "autostart": d.autostart,
        "type": d.service_type,
        "health": d.health,
        "liveness": d.liveness,
        "on_restore": d.on_restore,
        "status": s.status_word(),
        "pid": pid,
        "exit_code": s.exit_code,
        "restarts": s.restarts,
        "started_at": started_at,
        "error": s.error,
        "source": match s.source { Source::File => "file", Source::Api => "api" },
        "wanted": s.wanted,
        "health_result": s.health_result,
        "liveness_result": s.liveness_result,
        "liveness_failures": s.liveness_failures,
        "status_text": s.status_text,
    });
    if let Some(obj) = v.as_object_mut() {
        if let Some(limits) = &d.limits {
            obj.insert("limits".into(), json!(limits));
        }
        for (k, val) in extra {
            obj.insert(k.clone(), val.clone());
        }
    }
    v
}

/// The wall-clock time at which monotonic instant `t` happened.
pub fn wall_time_of(t: Instant, now: Instant) -> SystemTime {
    SystemTime::now()
        .checked_sub(now.saturating_duration_since(t))
        .unwrap_or(UNIX_EPOCH)
}

/// `2026-11-29T00:40:21Z` (UTC, whole seconds).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_999_999)),
            "2026-11-30T00:53:19Z"
        );
    }
}
