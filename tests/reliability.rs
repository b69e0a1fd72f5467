//! Reliability scenarios against the real binary: garbage and slow or
//! never-reading clients next to a well-behaved one, a kill storm, an orphan
//! storm, concurrent load. Each asserts what a user would notice (every
//! request answered, the init alive and small, no zombie, nothing lost) and
//! prints its figures (`--nocapture` shows them); none asserts a duration.

mod common;
use common::*;
use serde_json::json;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// xorshift64, for reproducible garbage.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// The init's resident memory, in KiB.
fn rss_kb(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn hostile_clients_never_stall_a_good_one_nor_grow_the_init() {
    let t = TempDir::new("hostile");
    let init = Init::start(t.path());
    // A service with a log worth asking for.
    let (s, v) = init.put(
        "talker",
        r#"{"cmd":"sh","args":["-c","i=0; while [ $i -lt 2000 ]; do echo line $i xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done; exec sleep 1000"]}"#,
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = init.req("POST", "/v1/services/talker/start", None);
    assert_eq!(s, 200, "{v}");
    init.wait_for("talker", "2000 lines", |v| {
        v["log_lines"].as_u64() >= Some(2000)
    });
    let rss_before = rss_kb(init.pid());
    let mut rng = Rng(0x5eed);
    let mut held = Vec::new();
    // Garbage: random bytes, then the connection stays open.
    for _ in 0..100 {
        let mut c = UnixStream::connect(&init.socket).unwrap();
        let n = 1 + (rng.next() % 4000) as usize;
        let _ = c.write_all(&rng.bytes(n));
        held.push(c);
    }
    // Slow: half a request head, never finished.
    for _ in 0..100 {
        let mut c = UnixStream::connect(&init.socket).unwrap();
        let _ = c.write_all(b"GET /v1/services HTTP/1.1\r\nHost: x\r\n");
        held.push(c);
    }
    // Never reading: 150 pipelined requests for a ~170 KB log each.
    let pipelined = "GET /v1/services/talker/logs HTTP/1.1\r\nHost: x\r\n\r\n".repeat(150);
    for _ in 0..4 {
        let mut c = UnixStream::connect(&init.socket).unwrap();
        c.set_nonblocking(true).unwrap();
        // What the socket buffer does not take is the client's problem.
        let _ = c.write(pipelined.as_bytes());
        held.push(c);
    }
    // Meanwhile a good client gets every answer.
    let started = Instant::now();
    let mut good = init.client();
    for i in 0..200 {
        let (s, v) = good.req("GET", "/v1/services/talker", None);
        assert_eq!(s, 200, "request {i}: {v}");
    }
    let took = started.elapsed();
    let rss_after = rss_kb(init.pid());
    println!(
        "hostile: 100 garbage + 100 stalled + 4 never-reading (150 logs each) connections; \
         200 requests of a good client in {took:?}; init RSS {rss_before} -> {rss_after} KiB; \
         {} fds",
        fd_count(init.pid())
    );
    // 4 x 150 answers of ~170 KB would be ~100 MB if buffered.
    assert!(
        rss_after < rss_before + 32 * 1024,
        "the init grew from {rss_before} to {rss_after} KiB"
    );
    drop(held);
    let (s, _) = good.req("GET", "/v1/system", None);
    assert_eq!(s, 200);
}

#[test]
fn a_kill_storm_leaves_every_service_running_and_no_zombie() {
    let t = TempDir::new("killstorm");
    let init = Init::start(t.path());
    // A sleep long and unusual enough to find these processes by.
    let secs = format!("{}", 1_000_000 + std::process::id());
    let mark = format!("sleep {secs}");
    let n = 40;
    for i in 0..n {
        let def = json!({"cmd": "sleep", "args": [secs], "restart": "always"});
        let (s, v) = init.put(&format!("k{i}"), &def.to_string());
        assert_eq!(s, 201, "{v}");
        let (s, v) = init.req("POST", &format!("/v1/services/k{i}/start"), None);
        assert_eq!(s, 200, "{v}");
    }
    let started = Instant::now();
    let mut killed = std::collections::HashSet::new();
    for round in 0..20 {
        for i in 0..n {
            let v = init.service(&format!("k{i}"));
            if let Some(pid) = v["pid"].as_i64().filter(|_| v["status"] == "running") {
                // Each run once: its exit may not be seen yet.
                if killed.insert(pid) {
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                }
            }
        }
        if round % 5 == 4 {
            // Give the backoff (capped at 10 s) no chance to grow far.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let kills = killed.len() as u64;
    let mut restarts = 0;
    for i in 0..n {
        let v = init.wait_status(&format!("k{i}"), "running");
        restarts += v["restarts"].as_u64().unwrap_or(0);
    }
    let (_, sys) = init.req("GET", "/v1/system", None);
    println!(
        "kill storm: {kills} SIGKILLs over {n} services, {restarts} restarts counted, \
         all running again after {:?}; zombies_reaped {}",
        started.elapsed(),
        sys["zombies_reaped"]
    );
    assert_eq!(restarts, kills, "every kill was a counted restart");
    assert!(zombies_of(init.pid()).is_empty());
    assert_eq!(
        pids_with_cmdline(&mark).len(),
        n,
        "exactly one process each"
    );
}

#[test]
fn an_orphan_storm_is_reaped_completely() {
    let t = TempDir::new("orphans");
    let init = Init::start(t.path());
    let count = 3000;
    let (s, v) = init.put(
        "forker",
        &json!({"cmd": "sh", "args": ["-c",
            format!("i=0; while [ $i -lt {count} ]; do (true &); i=$((i+1)); done; echo done; exec sleep 1000")]})
        .to_string(),
    );
    assert_eq!(s, 201, "{v}");
    let started = Instant::now();
    let (s, v) = init.req("POST", "/v1/services/forker/start", None);
    assert_eq!(s, 200, "{v}");
    init.wait_for("forker", "done", |v| v["log_lines"].as_u64() >= Some(1));
    let sys = init.wait_reaped(count, Duration::from_secs(60));
    let reaped = sys["zombies_reaped"].as_u64().unwrap_or(0);
    println!(
        "orphan storm: {reaped} orphans reaped ({count} made) in {:?}",
        started.elapsed()
    );
    assert!(reaped >= count, "{reaped} of {count} reaped");
    assert!(zombies_of(init.pid()).is_empty());
}

#[test]
fn concurrent_load_gets_every_answer() {
    let t = TempDir::new("load");
    let init = Init::start(t.path());
    let socket = init.socket.clone();
    let started = Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|th| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&socket);
                let mut answered = 0;
                for i in 0..150 {
                    let name = format!("l{th}-{}", i % 5);
                    let (s, v) = match i % 4 {
                        0 => c.req(
                            "PUT",
                            &format!("/v1/services/{name}"),
                            Some(r#"{"cmd":"sleep","args":["1000"]}"#),
                        ),
                        1 => c.req("GET", "/v1/services", None),
                        2 => c.req("GET", "/v1/system", None),
                        _ => c.req("DELETE", &format!("/v1/services/{name}"), None),
                    };
                    assert!(matches!(s, 200 | 201 | 404), "{s}: {v}");
                    answered += 1;
                }
                answered
            })
        })
        .collect();
    let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    println!(
        "load: {total} mixed requests (PUT, GET, DELETE) from 8 connections in {:?}",
        started.elapsed()
    );
    assert_eq!(total, 8 * 150);
    let mut c = init.client();
    let (s, _) = c.req("GET", "/v1/services", None);
    assert_eq!(s, 200);
    // Read the whole socket: nothing is left behind for this client.
    c.stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut extra = [0u8; 16];
    assert!(c.stream.read(&mut extra).is_err(), "no stray bytes");
}

#[test]
fn many_big_execs_at_once_are_bounded_together() {
    let t = TempDir::new("execflood");
    let init = Init::start(t.path());
    let socket = init.socket.clone();
    let rss_before = rss_kb(init.pid());
    // 8 commands writing 12 MiB each, then still running a while (their
    // output is held until they exit): 96 MiB at once, over the 64 MiB the
    // init holds for all running commands together.
    let body = r#"{"cmd":["sh","-c","head -c 12582912 /dev/zero | tr '\\0' x; sleep 3"],"timeout_ms":60000}"#;
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&socket);
                let (s, v) = c.req("POST", "/v1/exec", Some(body));
                assert_eq!(s, 200, "{v}");
                (
                    v["stdout"].as_str().map(str::len).unwrap_or(0),
                    v["truncated"] == true,
                )
            })
        })
        .collect();
    let got: Vec<(usize, bool)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let total: usize = got.iter().map(|g| g.0).sum();
    let truncated = got.iter().filter(|g| g.1).count();
    println!(
        "exec flood: 8 x 12 MiB at once; {} MiB answered, {truncated} truncated; \
         init RSS {rss_before} KiB before, {} KiB after",
        total >> 20,
        rss_kb(init.pid())
    );
    assert!(total <= 64 << 20, "{total} bytes held at once");
    assert!(truncated >= 1, "what did not fit is marked truncated");
}
