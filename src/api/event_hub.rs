//! The events stream's clients: who listens with which filter, what each
//! one is sent on connecting (gap, snapshot, replay), which of them a live
//! event goes to, and when each is owed a heartbeat. It owns the ring; the
//! API server owns the sockets, so this stays pure.

use super::events::{frame, gap_data, EventLog, Filter, Kind, Resume, RING_CAPACITY};
use mio::Token;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A comment line after this long without a write: well inside the
/// contract's 15 s, whatever the timer's slack (proxies commonly time out
/// at 30 or 60 s).
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

/// How big the ring is and how often quiet streams get a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub ring: usize,
    pub heartbeat: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ring: RING_CAPACITY,
            heartbeat: HEARTBEAT_EVERY,
        }
    }
}

impl Settings {
    /// `IRIS_EVENTS_RING` (events kept for replay) and
    /// `IRIS_EVENTS_HEARTBEAT_MS`: knobs for tests and odd proxies. A value
    /// that does not parse (or is 0) keeps the default, with a warning.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Settings {
        let mut s = Settings::default();
        let number = |key: &str| -> Option<u64> {
            let raw = env(key).filter(|v| !v.trim().is_empty())?;
            match raw.trim().parse::<u64>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    crate::warn!("ignoring {key}={raw:?}: not a positive integer");
                    None
                }
            }
        };
        if let Some(n) = number("IRIS_EVENTS_RING") {
            s.ring = usize::try_from(n).unwrap_or(RING_CAPACITY);
        }
        if let Some(ms) = number("IRIS_EVENTS_HEARTBEAT_MS") {
            s.heartbeat = Duration::from_millis(ms);
        }
        s
    }
}

#[derive(Debug)]
struct Listener {
    filter: Filter,
    /// When it is owed a heartbeat if nothing else was sent meanwhile.
    quiet_until: Instant,
}

/// One recorded event and the clients it goes to.
#[derive(Debug, PartialEq, Eq)]
pub struct Delivery {
    pub frame: String,
    pub to: Vec<Token>,
}

#[derive(Debug)]
pub struct EventHub {
    log: EventLog,
    listeners: BTreeMap<Token, Listener>,
    heartbeat: Duration,
    /// The heartbeat timer is armed for this instant.
    timer_at: Option<Instant>,
}

impl Default for EventHub {
    fn default() -> Self {
        EventHub::new(Settings::default())
    }
}

impl EventHub {
    pub fn new(settings: Settings) -> EventHub {
        EventHub {
            log: EventLog::with_capacity(settings.ring),
            listeners: BTreeMap::new(),
            heartbeat: settings.heartbeat,
            timer_at: None,
        }
    }

    pub fn listeners(&self) -> usize {
        self.listeners.len()
    }

    pub fn last_id(&self) -> u64 {
        self.log.last_id()
    }

    /// Records an event (kept for replay even with nobody listening) and
    /// says which listeners take it.
    pub fn publish(
        &mut self,
        kind: Kind,
        service: Option<&str>,
        data: &Value,
        now: Instant,
    ) -> Delivery {
        let event = self.log.push(kind, service, data);
        let mut to = Vec::new();
        for (token, l) in &mut self.listeners {
            if l.filter.admits(&event) {
                l.quiet_until = now + self.heartbeat;
                to.push(*token);
            }
        }
        Delivery {
            frame: event.frame,
            to,
        }
    }

    /// A new client: what it is sent first. With no `since`: the snapshot
    /// (its id is the newest event's, which it already includes). Resuming
    /// after `since`: the snapshot, numbered `since`, then every kept event
    /// after it, so the ids it sees go on by one from where it left off.
    /// When some of those events are gone: a `gap`, then the snapshot.
    /// `services` are the service objects; the filter picks among them.
    pub fn subscribe(
        &mut self,
        token: Token,
        filter: Filter,
        since: Option<u64>,
        services: Vec<Value>,
        now: Instant,
    ) -> String {
        let services: Vec<Value> = services
            .into_iter()
            .filter(|s| {
                s.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| filter.admits_service(n))
            })
            .collect();
        let snapshot = json!({ "services": services });
        let last = self.log.last_id();
        let mut out = String::new();
        match since.map(|n| (n, self.log.resume(n))) {
            None => out.push_str(&frame(last, Kind::Snapshot, &snapshot)),
            Some((n, Resume::Gap { oldest })) => {
                out.push_str(&frame(last, Kind::Gap, &gap_data(n, oldest)));
                out.push_str(&frame(last, Kind::Snapshot, &snapshot));
            }
            Some((n, Resume::Replay(events))) => {
                out.push_str(&frame(n, Kind::Snapshot, &snapshot));
                for e in events.into_iter().filter(|e| filter.admits(e)) {
                    out.push_str(&e.frame);
                }
            }
        }
        self.listeners.insert(
            token,
            Listener {
                filter,
                quiet_until: now + self.heartbeat,
            },
        );
        out
    }

    /// The client went away.
    pub fn forget(&mut self, token: Token) {
        self.listeners.remove(&token);
    }

    /// Every listener, forgotten (the init is going away).
    pub fn take_all(&mut self) -> Vec<Token> {
        std::mem::take(&mut self.listeners).into_keys().collect()
    }

    /// When the heartbeat timer must be armed, if it is not yet: only
    /// while someone listens (an idle init without clients never wakes).
    pub fn arm(&mut self) -> Option<Instant> {
        if self.timer_at.is_some() {
            return None;
        }
        let at = self.listeners.values().map(|l| l.quiet_until).min()?;
        self.timer_at = Some(at);
        Some(at)
    }

    /// The heartbeat timer fired (or was dropped as stale).
    pub fn timer_gone(&mut self) {
        self.timer_at = None;
    }

    /// Nobody listens: a heartbeat timer has nothing to do.
    pub fn is_idle(&self) -> bool {
        self.listeners.is_empty()
    }

    /// The listeners that were sent nothing for a whole interval: each is
    /// owed `HEARTBEAT` now.
    pub fn heartbeats_due(&mut self, now: Instant) -> Vec<Token> {
        let mut due = Vec::new();
        for (token, l) in &mut self.listeners {
            if l.quiet_until <= now {
                l.quiet_until = now + self.heartbeat;
                due.push(*token);
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str) -> Value {
        json!({"name": name, "status": "running"})
    }

    /// (id, event type, data) of each frame in `text`.
    fn frames(text: &str) -> Vec<(u64, String, Value)> {
        text.split("\n\n")
            .filter(|f| !f.is_empty())
            .map(|f| {
                let mut id = 0;
                let mut kind = String::new();
                let mut data = Value::Null;
                for line in f.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = v.parse().unwrap();
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        kind = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = serde_json::from_str(v).unwrap();
                    }
                }
                (id, kind, data)
            })
            .collect()
    }

    fn hub_with(n: usize, ring: usize) -> (EventHub, Instant) {
        let t0 = Instant::now();
        let mut hub = EventHub::new(Settings {
            ring,
            heartbeat: Duration::from_secs(15),
        });
        for i in 0..n {
            let name = if i % 2 == 0 { "a" } else { "b" };
            hub.publish(
                Kind::Service,
                Some(name),
                &json!({"name": name, "i": i}),
                t0,
            );
        }
        (hub, t0)
    }

    #[test]
    fn a_new_client_gets_the_snapshot_numbered_with_the_newest_id() {
        let (mut hub, t0) = hub_with(3, 16);
        let first = hub.subscribe(Token(1), Filter::default(), None, vec![svc("a")], t0);
        let f = frames(&first);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].0, f[0].1.as_str()), (3, "snapshot"));
        assert_eq!(f[0].2, json!({"services": [svc("a")]}));
        // Live events then go on from there.
        let d = hub.publish(Kind::System, None, &json!({"state": "x"}), t0);
        assert_eq!(d.to, [Token(1)]);
        assert!(d.frame.starts_with("id: 4\nevent: system\n"));
    }

    #[test]
    fn resuming_replays_what_was_missed_after_a_snapshot_numbered_since() {
        let (mut hub, t0) = hub_with(6, 16);
        let text = hub.subscribe(Token(1), Filter::default(), Some(3), vec![], t0);
        let ids: Vec<(u64, String)> = frames(&text).into_iter().map(|f| (f.0, f.1)).collect();
        assert_eq!(
            ids,
            [
                (3, "snapshot".to_string()),
                (4, "service".into()),
                (5, "service".into()),
                (6, "service".into())
            ]
        );
        let none_missed = hub.subscribe(Token(2), Filter::default(), Some(6), vec![], t0);
        assert_eq!(frames(&none_missed).len(), 1, "{none_missed}");
    }

    #[test]
    fn an_id_older_than_the_ring_gets_a_gap_then_the_snapshot_and_no_replay() {
        let (mut hub, t0) = hub_with(10, 4); // keeps 7..=10
        let text = hub.subscribe(Token(1), Filter::default(), Some(2), vec![svc("a")], t0);
        let f = frames(&text);
        assert_eq!(f.len(), 2, "{text}");
        assert_eq!((f[0].0, f[0].1.as_str()), (10, "gap"));
        assert_eq!(f[0].2, json!({"since": 2, "oldest": 7}));
        assert_eq!((f[1].0, f[1].1.as_str()), (10, "snapshot"));
    }

    #[test]
    fn the_filter_applies_to_the_snapshot_the_replay_and_live_events() {
        let (mut hub, t0) = hub_with(4, 16); // 1 a, 2 b, 3 a, 4 b
        let only_b = Filter {
            services: vec!["b".into()],
        };
        let text = hub.subscribe(Token(1), only_b, Some(0), vec![svc("a"), svc("b")], t0);
        let f = frames(&text);
        assert_eq!(f[0].2, json!({"services": [svc("b")]}));
        assert_eq!(f.iter().skip(1).map(|f| f.0).collect::<Vec<_>>(), [2, 4]);
        hub.subscribe(Token(2), Filter::default(), None, vec![], t0);
        let to_a = hub.publish(Kind::Service, Some("a"), &json!({}), t0);
        assert_eq!(to_a.to, [Token(2)]);
        let to_sys = hub.publish(Kind::Restore, None, &json!({}), t0);
        assert_eq!(to_sys.to, [Token(1), Token(2)]);
        hub.forget(Token(2));
        let after = hub.publish(Kind::Service, Some("a"), &json!({}), t0);
        assert!(after.to.is_empty());
        assert_eq!(
            after.frame.lines().next(),
            Some("id: 7"),
            "kept all the same"
        );
    }

    #[test]
    fn heartbeats_go_to_quiet_listeners_and_the_timer_runs_only_while_someone_listens() {
        let t0 = Instant::now();
        let secs = |n| t0 + Duration::from_secs(n);
        let mut hub = EventHub::new(Settings {
            ring: 8,
            heartbeat: Duration::from_secs(15),
        });
        assert_eq!(hub.arm(), None, "no listener, no timer");
        let only = |n: &str| Filter {
            services: vec![n.to_string()],
        };
        hub.subscribe(Token(1), only("x"), None, vec![], t0);
        hub.subscribe(Token(2), only("y"), None, vec![], secs(5));
        assert_eq!(hub.arm(), Some(secs(15)));
        assert_eq!(hub.arm(), None, "armed once");
        // Token 1 hears an event at 10 s; token 2 (filtered out) does not.
        hub.publish(Kind::Service, Some("x"), &json!({}), secs(10));
        hub.timer_gone();
        assert!(hub.heartbeats_due(secs(15)).is_empty());
        assert_eq!(hub.arm(), Some(secs(20)));
        hub.timer_gone();
        assert_eq!(hub.heartbeats_due(secs(20)), [Token(2)]);
        assert_eq!(hub.arm(), Some(secs(25)), "token 1's turn next");
        hub.timer_gone();
        assert_eq!(hub.heartbeats_due(secs(25)), [Token(1)]);
        hub.forget(Token(1));
        hub.forget(Token(2));
        assert!(hub.is_idle());
        assert_eq!(hub.arm(), None);
    }

    #[test]
    fn settings_come_from_the_environment_or_default() {
        let env = |k: &str| match k {
            "IRIS_EVENTS_RING" => Some("16".to_string()),
            "IRIS_EVENTS_HEARTBEAT_MS" => Some("250".to_string()),
            _ => None,
        };
        assert_eq!(
            Settings::from_env(&env),
            Settings {
                ring: 16,
                heartbeat: Duration::from_millis(250)
            }
        );
        let bad = |_: &str| Some("soon".to_string());
        assert_eq!(Settings::from_env(&bad), Settings::default());
        assert_eq!(Settings::from_env(&|_| None), Settings::default());
    }
}
