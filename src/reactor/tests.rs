//! The reactor's routing, driven through its own loop with a real socket
//! but without any service process.

use super::event_loop::Reactor;
use crate::config::Config;
use crate::proc::cgroup::Cgroups;
use mio::Events;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

fn reactor(tag: &str) -> (Reactor, Scratch) {
    let dir = std::env::temp_dir().join(format!("iris-reactor-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("init.d")).unwrap();
    let cfg = Config {
        socket: dir.join("s.sock"),
        services_dir: dir.join("init.d"),
        state_file: dir.join("state.json"),
        log_dir: dir.join("logs"),
    };
    let r = Reactor::new(cfg, false).unwrap();
    let cgroups = r.cgroups.clone();
    (r, Scratch { dir, cgroups })
}

/// A test's directory and cgroup subtree, removed however the test ends:
/// a failed assertion too (a mutation-testing run fails many), so no
/// empty subtree is left on the host.
struct Scratch {
    dir: PathBuf,
    cgroups: Option<Cgroups>,
}

impl Scratch {
    fn join(&self, path: &str) -> PathBuf {
        self.dir.join(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(cg) = &self.cgroups {
            cg.cleanup(std::time::Duration::ZERO);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Leaves nothing behind: the test's cgroup subtree and files.
fn finish(r: Reactor, dir: Scratch) {
    drop(r);
    drop(dir);
}

/// Turns the loop until the client has an answer (each turn blocks only
/// until the next event, and the request is one).
fn answer_of(r: &mut Reactor, client: &mut UnixStream) -> String {
    let mut events = Events::with_capacity(16);
    client.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    for _ in 0..10 {
        r.turn(&mut events);
        let mut buf = [0u8; 4096];
        while let Ok(n) = client.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        if !got.is_empty() {
            break;
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn request(client: &mut UnixStream, method: &str, path: &str, body: &str) {
    let raw = format!(
        "{method} {path} HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    client.write_all(raw.as_bytes()).unwrap();
}

#[test]
fn a_start_that_cannot_spawn_is_answered_after_the_state_file_is_written() {
    let (mut r, dir) = reactor("start");
    let mut client = UnixStream::connect(dir.join("s.sock")).unwrap();
    request(
        &mut client,
        "PUT",
        "/v1/services/ghost",
        r#"{"cmd":"/nonexistent/ghost"}"#,
    );
    assert!(answer_of(&mut r, &mut client).starts_with("HTTP/1.1 201"));
    let _ = std::fs::remove_file(dir.join("state.json"));
    request(&mut client, "POST", "/v1/services/ghost/start", "");
    let answer = answer_of(&mut r, &mut client);
    // The waiting start was settled by the spawn's failure within the same
    // iteration: routed to its connection, written after the state file.
    assert!(answer.starts_with("HTTP/1.1 409"), "{answer}");
    assert!(answer.contains("service_failed"), "{answer}");
    assert!(answer.contains("/nonexistent/ghost"), "{answer}");
    let state = std::fs::read_to_string(dir.join("state.json")).unwrap();
    assert!(state.contains("ghost"), "{state}");
    assert_eq!(r.sup.get("ghost").unwrap().status_word(), "failed");
    finish(r, dir);
}

#[test]
fn a_follower_that_goes_away_is_forgotten_by_the_logs() {
    let (mut r, dir) = reactor("follow");
    let mut client = UnixStream::connect(dir.join("s.sock")).unwrap();
    request(
        &mut client,
        "PUT",
        "/v1/services/quiet",
        r#"{"cmd":"true"}"#,
    );
    assert!(answer_of(&mut r, &mut client).starts_with("HTTP/1.1 201"));
    r.logs.append(&mut r.io, "quiet", "before");
    request(
        &mut client,
        "GET",
        "/v1/services/quiet/logs?follow=true",
        "",
    );
    let head = answer_of(&mut r, &mut client);
    assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
    assert!(head.contains("before"), "{head}");
    r.logs.append(&mut r.io, "quiet", "while following");
    assert_eq!(r.logs.take_output().len(), 1, "the follower gets the line");
    drop(client);
    let mut events = Events::with_capacity(16);
    r.turn(&mut events);
    assert_eq!(r.api.connections(), 0);
    r.logs.append(&mut r.io, "quiet", "after");
    assert!(
        r.logs.take_output().is_empty(),
        "nothing is kept for a client that is gone"
    );
    finish(r, dir);
}

#[test]
fn a_restore_with_nothing_to_do_is_answered_at_once() {
    let (mut r, dir) = reactor("restore");
    let mut client = UnixStream::connect(dir.join("s.sock")).unwrap();
    request(&mut client, "POST", "/v1/restore", "");
    let answer = answer_of(&mut r, &mut client);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(answer.contains("\"trigger\":\"api\""), "{answer}");
    finish(r, dir);
}

#[test]
fn an_events_client_hears_changes_and_is_forgotten_when_it_goes() {
    let (mut r, dir) = reactor("events");
    let mut client = UnixStream::connect(dir.join("s.sock")).unwrap();
    request(&mut client, "GET", "/v1/events", "");
    let head = answer_of(&mut r, &mut client);
    assert!(head.contains("Content-Type: text/event-stream"), "{head}");
    assert!(head.contains("event: snapshot"), "{head}");
    assert_eq!(r.events.listeners(), 1);
    let mut other = UnixStream::connect(dir.join("s.sock")).unwrap();
    request(&mut other, "PUT", "/v1/services/quiet", r#"{"cmd":"true"}"#);
    assert!(answer_of(&mut r, &mut other).starts_with("HTTP/1.1 201"));
    // Written in the same iteration as the PUT's answer.
    let mut got = vec![0u8; 4096];
    let n = client.read(&mut got).unwrap();
    let event = String::from_utf8_lossy(&got[..n]).into_owned();
    assert!(event.contains("event: service"), "{event}");
    assert!(event.contains("\"reason\":\"defined\""), "{event}");
    drop(client);
    let mut events = Events::with_capacity(16);
    r.turn(&mut events);
    assert_eq!(r.events.listeners(), 0, "forgotten");
    assert!(r.events.is_idle(), "so its heartbeat timer is stale");
    finish(r, dir);
}
