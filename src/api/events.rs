//! The events stream's memory: a bounded ring of numbered events and their
//! Server-Sent Events framing. Pure: the API server owns the connections.
//!
//! Ids grow by one per event for the init's whole run. A client resumes
//! with `?since=N` (or `Last-Event-ID: N`): the events after N still in the
//! ring are replayed; when some of them were already dropped, the client
//! is told with a `gap` event, then sees the snapshot.

use serde_json::{json, Value};
use std::collections::VecDeque;

/// Events kept for replay (the contract asks for at least 1024).
pub const RING_CAPACITY: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Snapshot,
    Service,
    Restore,
    System,
    Gap,
}

impl Kind {
    pub fn word(self) -> &'static str {
        match self {
            Kind::Snapshot => "snapshot",
            Kind::Service => "service",
            Kind::Restore => "restore",
            Kind::System => "system",
            Kind::Gap => "gap",
        }
    }
}

/// One event as it was recorded: its framing is made once and shared by
/// every client that receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub id: u64,
    pub kind: Kind,
    /// The service it is about (`service` events), for `?services=`.
    pub service: Option<String>,
    /// The whole SSE frame: `id:`, `event:`, one `data:` line, blank line.
    pub frame: String,
}

/// Which events a client asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// `?services=a,b`: only these services' `service` events (and their
    /// part of the snapshot). Empty: everything.
    pub services: Vec<String>,
}

impl Filter {
    pub fn admits(&self, event: &Event) -> bool {
        match &event.service {
            Some(name) => self.admits_service(name),
            None => true,
        }
    }

    pub fn admits_service(&self, name: &str) -> bool {
        self.services.is_empty() || self.services.iter().any(|s| s == name)
    }
}

/// Where a resuming client starts.
#[derive(Debug, PartialEq, Eq)]
pub enum Resume<'a> {
    /// Every event after the client's id is still here (possibly none).
    Replay(Vec<&'a Event>),
    /// Some events after the client's id were dropped (or the id is from
    /// another run of the init): `oldest` is the first id still kept.
    Gap { oldest: u64 },
}

#[derive(Debug)]
pub struct EventLog {
    ring: VecDeque<Event>,
    capacity: usize,
    /// The id the next event gets; ids start at 1.
    next_id: u64,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog::with_capacity(RING_CAPACITY)
    }
}

impl EventLog {
    pub fn with_capacity(capacity: usize) -> EventLog {
        EventLog {
            ring: VecDeque::with_capacity(capacity.min(1024)),
            capacity: capacity.max(1),
            next_id: 1,
        }
    }

    /// The id of the newest event (0 before the first).
    pub fn last_id(&self) -> u64 {
        self.next_id - 1
    }

    /// Records an event and returns a copy (for the live clients).
    pub fn push(&mut self, kind: Kind, service: Option<&str>, data: &Value) -> Event {
        let id = self.next_id;
        self.next_id += 1;
        if self.ring.len() == self.capacity {
            self.ring.pop_front();
        }
        let event = Event {
            id,
            kind,
            service: service.map(str::to_string),
            frame: frame(id, kind, data),
        };
        self.ring.push_back(event.clone());
        event
    }

    /// The events after `since`, or a gap when some are gone.
    pub fn resume(&self, since: u64) -> Resume<'_> {
        if since > self.last_id() {
            // An id this run never gave: a client of an earlier run.
            return Resume::Gap {
                oldest: self.oldest_id(),
            };
        }
        let oldest = self.oldest_id();
        if since + 1 < oldest {
            return Resume::Gap { oldest };
        }
        Resume::Replay(self.ring.iter().filter(|e| e.id > since).collect())
    }

    fn oldest_id(&self) -> u64 {
        self.ring.front().map_or(self.next_id, |e| e.id)
    }
}

/// One SSE frame. The data is one line of JSON (serde_json never writes a
/// raw newline inside a value).
pub fn frame(id: u64, kind: Kind, data: &Value) -> String {
    format!("id: {id}\nevent: {}\ndata: {data}\n\n", kind.word())
}

/// The comment line sent while nothing happens (keeps proxies and clients
/// from timing out; EventSource ignores it).
pub const HEARTBEAT: &str = ": keep-alive\n\n";

/// The `gap` event's data: the client asked for events after `since`;
/// `oldest` is the first still kept.
pub fn gap_data(since: u64, oldest: u64) -> Value {
    json!({"since": since, "oldest": oldest})
}

/// Parses `?since=N` / `Last-Event-ID: N`: a decimal id.
pub fn parse_id(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(n: u64, capacity: usize) -> EventLog {
        let mut log = EventLog::with_capacity(capacity);
        for i in 0..n {
            let name = format!("s{}", i % 3);
            log.push(Kind::Service, Some(&name), &json!({"name": name, "i": i}));
        }
        log
    }

    #[test]
    fn ids_grow_by_one_from_one() {
        let log = log_with(5, 16);
        let ids: Vec<u64> = match log.resume(0) {
            Resume::Replay(v) => v.iter().map(|e| e.id).collect(),
            Resume::Gap { .. } => panic!("no gap expected"),
        };
        assert_eq!(ids, vec![1, 2, 3, 4, 5]);
        assert_eq!(log.last_id(), 5);
    }

    #[test]
    fn a_frame_is_id_event_one_data_line_and_a_blank_line() {
        let f = frame(7, Kind::Service, &json!({"name": "a", "msg": "x\ny"}));
        assert_eq!(
            f,
            "id: 7\nevent: service\ndata: {\"msg\":\"x\\ny\",\"name\":\"a\"}\n\n"
        );
    }

    #[test]
    fn resume_replays_only_what_follows_the_id() {
        let log = log_with(10, 16);
        match log.resume(7) {
            Resume::Replay(v) => {
                assert_eq!(v.iter().map(|e| e.id).collect::<Vec<_>>(), vec![8, 9, 10])
            }
            Resume::Gap { .. } => panic!("no gap expected"),
        }
        assert_eq!(log.resume(10), Resume::Replay(vec![]));
    }

    #[test]
    fn an_id_older_than_the_ring_is_a_gap() {
        let log = log_with(20, 8); // keeps 13..=20
        assert_eq!(log.resume(3), Resume::Gap { oldest: 13 });
        // The event right before the oldest kept one: nothing was lost.
        match log.resume(12) {
            Resume::Replay(v) => assert_eq!(v.len(), 8),
            Resume::Gap { .. } => panic!("12 is not a gap"),
        }
    }

    #[test]
    fn an_id_from_the_future_is_a_gap() {
        let log = log_with(3, 8);
        assert_eq!(log.resume(99), Resume::Gap { oldest: 1 });
        assert_eq!(EventLog::default().resume(5), Resume::Gap { oldest: 1 });
    }

    #[test]
    fn the_filter_keeps_named_services_and_every_other_kind() {
        let mut log = EventLog::with_capacity(8);
        let a = log.push(Kind::Service, Some("a"), &json!({}));
        let b = log.push(Kind::Service, Some("b"), &json!({}));
        let sys = log.push(Kind::System, None, &json!({}));
        let f = Filter {
            services: vec!["a".into()],
        };
        assert!(f.admits(&a) && !f.admits(&b) && f.admits(&sys));
        assert!(Filter::default().admits(&b));
    }

    #[test]
    fn ids_parse_as_plain_decimals_only() {
        assert_eq!(parse_id("42"), Some(42));
        assert_eq!(parse_id(" 42 "), Some(42));
        for bad in ["", "-1", "4x", "1e3", "99999999999999999999999"] {
            assert_eq!(parse_id(bad), None, "{bad}");
        }
    }
}
