//! The events stream's routing: the supervisor's changes, restore reports
//! and the init's own milestones become events in the hub, and what the
//! hub says goes to its clients' connections; the heartbeat timer.

use super::event_loop::Reactor;
use crate::api::events::{self, Filter, Kind, HEARTBEAT};
use crate::api::handlers;
use crate::api::pending::Answer;
use crate::core::supervisor::{Change, Reason};
use crate::io::TimerKey;
use crate::pid1::HaltMode;
use mio::Token;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

impl Reactor {
    /// Records an event and queues it for the clients it goes to (written
    /// with the answers, after the state file).
    pub(super) fn publish(&mut self, kind: Kind, service: Option<&str>, data: &Value) {
        let delivery = self.events.publish(kind, service, data, Instant::now());
        for to in delivery.to {
            self.api
                .stream_later(&mut self.io, to, delivery.frame.as_bytes());
        }
    }

    /// The supervisor's `Changed`: a `service` event. A failure's error
    /// carries the last lines of output the reactor added when it settled.
    pub(super) fn service_changed(&mut self, mut change: Change) {
        if change.reason == Reason::Failed {
            if let Some(svc) = self.sup.get(&change.name) {
                if svc.status_word() == "failed" {
                    change.error.clone_from(&svc.error);
                }
            }
        }
        let data = events::service_data(&change);
        self.publish(Kind::Service, Some(&change.name), &data);
    }

    /// A `system` event: the init's own state.
    pub(super) fn publish_system(&mut self, state: &str, extra: Value) {
        let mut data = json!({ "state": state });
        if let (Some(obj), Value::Object(more)) = (data.as_object_mut(), extra) {
            obj.extend(more);
        }
        self.publish(Kind::System, None, &data);
    }

    pub(super) fn publish_shutdown(&mut self, mode: HaltMode, why: &str) {
        let mode = match mode {
            HaltMode::PowerOff => "poweroff",
            HaltMode::Reboot => "reboot",
        };
        self.publish_system("shutting_down", json!({"mode": mode, "by": why}));
    }

    /// The monotonic clock jumped: the VM was paused or restored.
    pub(super) fn publish_resumed(&mut self, lost: Duration) {
        let ms = u64::try_from(lost.as_millis()).unwrap_or(u64::MAX);
        self.publish_system("resumed", json!({ "paused_ms": ms }));
    }

    /// Every service is stopped and the init is about to go: the last
    /// event, then each stream ends properly (a final empty chunk).
    pub(super) fn end_event_streams(&mut self) {
        let mode = match self.halt {
            Some(HaltMode::Reboot) => "reboot",
            _ => "poweroff",
        };
        self.publish_system("halting", json!({ "mode": mode }));
        for token in self.events.take_all() {
            self.api.end_stream(&mut self.io, token);
        }
    }

    /// `GET /v1/events`: the client's first events, and it listens from now.
    pub(super) fn subscribe(&mut self, token: Token, since: Option<u64>, filter: Filter) -> Answer {
        let services = handlers::service_list(&self.view());
        let body = self
            .events
            .subscribe(token, filter, since, services, Instant::now());
        self.arm_heartbeat();
        Answer::Events {
            body: body.into_bytes(),
        }
    }

    fn arm_heartbeat(&mut self) {
        if let Some(at) = self.events.arm() {
            self.io.schedule(at, TimerKey::Heartbeat);
        }
    }

    /// The heartbeat timer: a comment to every client that heard nothing
    /// for a whole interval.
    pub(super) fn heartbeat(&mut self, now: Instant) {
        self.events.timer_gone();
        for to in self.events.heartbeats_due(now) {
            self.api
                .stream_later(&mut self.io, to, HEARTBEAT.as_bytes());
        }
        self.arm_heartbeat();
    }
}
