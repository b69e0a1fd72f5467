//! `GET /v1/metrics`: the Prometheus text format (version 0.0.4) of what
//! the init knows about itself and each service.

use std::fmt::Write;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The facts about one service that the metrics show. None: not known
/// (no cgroup, or its controller is missing): the sample is left out
/// rather than shown as a made-up 0.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceFacts {
    pub name: String,
    pub up: bool,
    pub restarts: u64,
    pub oom_kills: u64,
    pub memory_bytes: Option<u64>,
    pub cpu_usec: Option<u64>,
}

/// The init's own facts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct InitFacts {
    pub zombies_reaped: u64,
    pub services: usize,
    pub uptime_secs: f64,
}

/// One family: its name, type, help, and a value per service (if any).
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: fn(&ServiceFacts) -> Option<String>,
}

const SERVICE_FAMILIES: [Family; 5] = [
    Family {
        name: "iris_service_up",
        kind: "gauge",
        help: "1 when the service is running (and ready), else 0.",
        value: |s| Some(u8::from(s.up).to_string()),
    },
    Family {
        name: "iris_service_restarts_total",
        kind: "counter",
        help: "Restarts of the service after a crash.",
        value: |s| Some(s.restarts.to_string()),
    },
    Family {
        name: "iris_service_oom_kills_total",
        kind: "counter",
        help: "Processes of the service killed by the OOM killer (memory.events).",
        value: |s| Some(s.oom_kills.to_string()),
    },
    Family {
        name: "iris_service_memory_bytes",
        kind: "gauge",
        help: "Memory in use by the service's cgroup (memory.current).",
        value: |s| s.memory_bytes.map(|b| b.to_string()),
    },
    Family {
        name: "iris_service_cpu_seconds_total",
        kind: "counter",
        help: "CPU time used by the service's cgroup (cpu.stat usage_usec).",
        value: |s| s.cpu_usec.map(seconds),
    },
];

/// Microseconds as seconds, exactly (no float rounding of big counts).
fn seconds(usec: u64) -> String {
    format!("{}.{:06}", usec / 1_000_000, usec % 1_000_000)
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The whole metrics page. Each family's samples are together, as the
/// format requires; a family with no known sample keeps its HELP/TYPE.
pub fn render(init: &InitFacts, services: &[ServiceFacts]) -> String {
    let mut out = String::with_capacity(256 + services.len() * 300);
    for f in &SERVICE_FAMILIES {
        header(&mut out, f.name, f.kind, f.help);
        for s in services {
            if let Some(v) = (f.value)(s) {
                let _ = writeln!(out, "{}{{service=\"{}\"}} {v}", f.name, escape(&s.name));
            }
        }
    }
    let init_families = [
        (
            "iris_zombies_reaped_total",
            "counter",
            "Orphaned processes the init reaped.",
            init.zombies_reaped.to_string(),
        ),
        (
            "iris_services",
            "gauge",
            "Services defined.",
            init.services.to_string(),
        ),
        (
            "iris_uptime_seconds",
            "gauge",
            "Seconds since the init started.",
            format!("{:.3}", init.uptime_secs),
        ),
    ];
    for (name, kind, help, value) in init_families {
        header(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> ServiceFacts {
        ServiceFacts {
            name: "web".into(),
            up: true,
            restarts: 2,
            oom_kills: 1,
            memory_bytes: Some(4096),
            cpu_usec: Some(1_500_000),
        }
    }

    #[test]
    fn every_family_has_help_type_and_its_samples_together() {
        let idle = ServiceFacts {
            name: "idle".into(),
            ..Default::default()
        };
        let init = InitFacts {
            zombies_reaped: 7,
            services: 2,
            uptime_secs: 12.3456,
        };
        let text = render(&init, &[web(), idle]);
        let expected = "\
# HELP iris_service_up 1 when the service is running (and ready), else 0.
# TYPE iris_service_up gauge
iris_service_up{service=\"web\"} 1
iris_service_up{service=\"idle\"} 0
# HELP iris_service_restarts_total Restarts of the service after a crash.
# TYPE iris_service_restarts_total counter
iris_service_restarts_total{service=\"web\"} 2
iris_service_restarts_total{service=\"idle\"} 0
";
        assert!(text.starts_with(expected), "{text}");
        for line in [
            "iris_service_oom_kills_total{service=\"web\"} 1",
            "iris_service_memory_bytes{service=\"web\"} 4096",
            "iris_service_cpu_seconds_total{service=\"web\"} 1.500000",
            "# TYPE iris_zombies_reaped_total counter\niris_zombies_reaped_total 7",
            "# TYPE iris_services gauge\niris_services 2",
            "# TYPE iris_uptime_seconds gauge\niris_uptime_seconds 12.346",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        // Unknown facts are left out, never shown as 0.
        assert!(!text.contains("iris_service_memory_bytes{service=\"idle\"}"));
        assert!(!text.contains("iris_service_cpu_seconds_total{service=\"idle\"}"));
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("a\nb"), "a\\nb");
        let odd = ServiceFacts {
            name: "x\"y".into(),
            ..web()
        };
        let text = render(&InitFacts::default(), &[odd]);
        assert!(
            text.contains("iris_service_up{service=\"x\\\"y\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn cpu_seconds_are_exact() {
        assert_eq!(seconds(0), "0.000000");
        assert_eq!(seconds(1), "0.000001");
        assert_eq!(seconds(123_456_789_012), "123456.789012");
    }
}
