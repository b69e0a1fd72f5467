//! A service's resource limits (the definition's `limits`): parsing, value
//! ranges, and the values they put in the service's cgroup2 files.

use super::json_number;
use serde::{Deserialize, Deserializer, Serialize};

/// `cpu.max` period, in microseconds (the kernel's default).
pub const CPU_PERIOD_USEC: u64 = 100_000;
/// The kernel's smallest `cpu.max` quota (1 ms).
const CPU_MIN_QUOTA_USEC: u64 = 1_000;
/// `pids.max` above this is refused by the kernel (PID_MAX_LIMIT).
const PIDS_LIMIT: u64 = 4 * 1024 * 1024;

/// What the init may ask the kernel to enforce for one service. Every field
/// is optional; an absent one means "no limit".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "`limits`: an object of memory_max, memory_high, cpu_max, cpu_weight, pids_max"
)]
pub struct Limits {
    /// Bytes (`memory.max`): the OOM killer acts above it.
    #[serde(
        default,
        deserialize_with = "memory_max",
        skip_serializing_if = "Option::is_none"
    )]
    pub memory_max: Option<u64>,
    /// Bytes (`memory.high`): reclaim and throttling above it.
    #[serde(
        default,
        deserialize_with = "memory_high",
        skip_serializing_if = "Option::is_none"
    )]
    pub memory_high: Option<u64>,
    /// Cores (`cpu.max`): 0.5 is half of one core.
    #[serde(
        default,
        deserialize_with = "cpu_max",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu_max: Option<f64>,
    /// Relative share under contention (`cpu.weight`, 1-10000, default 100).
    #[serde(
        default,
        deserialize_with = "cpu_weight",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu_weight: Option<u64>,
    /// Processes and threads (`pids.max`): fork fails with EAGAIN at it.
    #[serde(
        default,
        deserialize_with = "pids_max",
        skip_serializing_if = "Option::is_none"
    )]
    pub pids_max: Option<u64>,
}

/// One value to write into a service cgroup's interface file, and the
/// controller that file belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupWrite {
    pub controller: &'static str,
    pub file: &'static str,
    pub value: String,
    /// A limit asks for it: the controller must be there. Otherwise the
    /// write only resets a value a previous definition may have left.
    pub required: bool,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// Checks the ranges; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        for (field, v) in [
            ("memory_max", self.memory_max),
            ("memory_high", self.memory_high),
        ] {
            if v == Some(0) {
                return Err(format!("`limits.{field}` must be more than 0 bytes"));
            }
        }
        if let Some(c) = self.cpu_max {
            // The range as the document says it, then what the kernel takes.
            if !(0.01..=4096.0).contains(&c) || cpu_quota(c) < CPU_MIN_QUOTA_USEC {
                return Err(format!(
                    "`limits.cpu_max` must be a number of cores from 0.01 to 4096, got {c}"
                ));
            }
        }
        if let Some(w) = self.cpu_weight {
            if !(1..=10_000).contains(&w) {
                return Err(format!("`limits.cpu_weight` must be in 1-10000, got {w}"));
            }
        }
        if let Some(p) = self.pids_max {
            if !(1..=PIDS_LIMIT).contains(&p) {
                return Err(format!(
                    "`limits.pids_max` must be in 1-{PIDS_LIMIT}, got {p}"
                ));
            }
        }
        Ok(())
    }

    /// The controllers these limits need, in the order they are checked.
    pub fn controllers(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for w in self.cgroup_writes() {
            if w.required && !out.contains(&w.controller) {
                out.push(w.controller);
            }
        }
        out
    }

    /// Every limit file of a service cgroup with its value: the limit, or
    /// the kernel's default when there is none (a cgroup outlives a
    /// definition replaced by one without limits). `memory.oom.group` is 1
    /// with any memory limit, so an OOM kill takes the whole service.
    pub fn cgroup_writes(&self) -> Vec<CgroupWrite> {
        let bytes = |v: Option<u64>| v.map_or_else(|| "max".to_string(), |n| n.to_string());
        let memory = self.memory_max.is_some() || self.memory_high.is_some();
        let w = |controller, file, value, required| CgroupWrite {
            controller,
            file,
            value,
            required,
        };
        vec![
            w("memory", "memory.high", bytes(self.memory_high), memory),
            w("memory", "memory.max", bytes(self.memory_max), memory),
            w(
                "memory",
                "memory.oom.group",
                u8::from(memory).to_string(),
                memory,
            ),
            w(
                "cpu",
                "cpu.max",
                match self.cpu_max {
                    Some(c) => format!("{} {CPU_PERIOD_USEC}", cpu_quota(c)),
                    None => format!("max {CPU_PERIOD_USEC}"),
                },
                self.cpu_max.is_some(),
            ),
            w(
                "cpu",
                "cpu.weight",
                self.cpu_weight.unwrap_or(100).to_string(),
                self.cpu_weight.is_some(),
            ),
            w(
                "pids",
                "pids.max",
                bytes(self.pids_max),
                self.pids_max.is_some(),
            ),
        ]
    }
}

/// Microseconds of CPU time per period for `cores`.
fn cpu_quota(cores: f64) -> u64 {
    // Validated finite and bounded before any real use; `as` saturates.
    (cores * CPU_PERIOD_USEC as f64).round() as u64
}

/// A byte size: digits, optionally followed by K, M or G (powers of 1024),
/// nothing around them (the API document's pattern).
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text;
    let (digits, mult) = match t.char_indices().last()? {
        (i, 'K') => (t.get(..i)?, 1u64 << 10),
        (i, 'M') => (t.get(..i)?, 1 << 20),
        (i, 'G') => (t.get(..i)?, 1 << 30),
        _ => (t, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(mult)
}

/// A JSON or TOML scalar, before its field's rules are applied.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Int(i64),
    Big(u64),
    Float(f64),
    Text(String),
}

fn scalar<'de, D: Deserializer<'de>>(
    d: D,
    field: &str,
    want: &str,
) -> Result<Option<Scalar>, D::Error> {
    Option::<Scalar>::deserialize(d)
        .map_err(|_| serde::de::Error::custom(format!("`limits.{field}` must be {want}")))
}

/// What a byte-size field takes.
const BYTES: &str =
    "a byte count: an integer, or a string such as \"512M\" (K, M, G: powers of 1024)";
/// What a count field takes.
const COUNT: &str = "a positive integer";

/// An unsigned integer field: an integer (or a float with no fraction), or
/// a string `text` reads; `want` says what it takes when it is neither.
fn unsigned<'de, D: Deserializer<'de>>(
    d: D,
    field: &str,
    want: &str,
    text: fn(&str) -> Option<u64>,
) -> Result<Option<u64>, D::Error> {
    let bad = |got: String| {
        serde::de::Error::custom(format!("`limits.{field}` must be {want}, got {got}"))
    };
    match scalar(d, field, want)? {
        None => Ok(None),
        Some(Scalar::Int(n)) => u64::try_from(n).map(Some).map_err(|_| bad(n.to_string())),
        Some(Scalar::Big(n)) => Ok(Some(n)),
        // `1048576.0` is the integer JSON Schema says it is.
        Some(Scalar::Float(f)) => json_number::integral_u64(f)
            .map(Some)
            .ok_or_else(|| bad(f.to_string())),
        Some(Scalar::Text(s)) => text(&s).map(Some).ok_or_else(|| bad(format!("{s:?}"))),
    }
}

/// A count is never a string.
fn no_text(_: &str) -> Option<u64> {
    None
}

fn memory_max<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    unsigned(d, "memory_max", BYTES, parse_size)
}

fn memory_high<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    unsigned(d, "memory_high", BYTES, parse_size)
}

fn cpu_weight<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    unsigned(d, "cpu_weight", COUNT, no_text)
}

fn pids_max<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    unsigned(d, "pids_max", COUNT, no_text)
}

fn cpu_max<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    const WANT: &str = "a number of cores such as 0.5";
    let bad = |got: String| {
        serde::de::Error::custom(format!("`limits.cpu_max` must be {WANT}, got {got}"))
    };
    match scalar(d, "cpu_max", WANT)? {
        None => Ok(None),
        // Cores are small numbers: the conversions are exact.
        Some(Scalar::Int(n)) => Ok(Some(n as f64)),
        Some(Scalar::Big(n)) => Ok(Some(n as f64)),
        Some(Scalar::Float(f)) => Ok(Some(f)),
        Some(Scalar::Text(s)) => Err(bad(format!("{s:?}"))),
    }
}

/// The definition's `limits`: `{}` and `null` mean none. An object only:
/// serde would read the struct from a list too (`[null, null]`).
pub fn limits_or_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Limits>, D::Error> {
    use serde::de::Error;
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v @ serde_json::Value::Object(_)) => Limits::deserialize(v)
            .map(|l| Some(l).filter(|l| !l.is_empty()))
            .map_err(D::Error::custom),
        Some(other) => Err(D::Error::custom(format!(
            "`limits` must be an object (a table in TOML), got {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Limits, String> {
        let l: Limits = serde_json::from_str(json).map_err(|e| e.to_string())?;
        l.validate()?;
        Ok(l)
    }

    #[test]
    fn sizes_are_integers_or_suffixed_strings_in_powers_of_1024() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("1K"), Some(1024));
        assert_eq!(parse_size("32M"), Some(32 << 20));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        for bad in [
            "",
            "M",
            "-1M",
            "1.5G",
            "12X",
            "1 G",
            "0x10",
            "1MB",
            "99999999999999G",
            " 1M",
            "1M\n",
        ] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
        // Found by the schema test: integral floats are integers, and the
        // string form is exactly the document's pattern (no blanks around).
        let l = parse(r#"{"memory_max":1024.0,"pids_max":64.0,"cpu_weight":5.0}"#).unwrap();
        assert_eq!(
            (l.memory_max, l.pids_max, l.cpu_weight),
            (Some(1024), Some(64), Some(5))
        );
        let l = parse(r#"{"memory_max":"32M","memory_high":1048576}"#).unwrap();
        assert_eq!(
            (l.memory_max, l.memory_high),
            (Some(32 << 20), Some(1 << 20))
        );
    }

    #[test]
    fn bad_values_name_the_field() {
        let cases = [
            (r#"{"memory_max":"lots"}"#, "limits.memory_max"),
            (r#"{"memory_max":-1}"#, "limits.memory_max"),
            (r#"{"memory_max":1.5}"#, "limits.memory_max"),
            (r#"{"memory_max":0}"#, "limits.memory_max"),
            (r#"{"memory_high":true}"#, "limits.memory_high"),
            (r#"{"memory_high":[1]}"#, "limits.memory_high"),
            (r#"{"cpu_max":"half"}"#, "limits.cpu_max"),
            (r#"{"cpu_max":0}"#, "limits.cpu_max"),
            (r#"{"cpu_max":-0.5}"#, "limits.cpu_max"),
            (r#"{"cpu_max":0.001}"#, "limits.cpu_max"),
            (r#"{"cpu_max":0.009999999999999998}"#, "limits.cpu_max"),
            (r#"{"cpu_max":100000}"#, "limits.cpu_max"),
            (r#"{"cpu_weight":0}"#, "limits.cpu_weight"),
            (r#"{"cpu_weight":10001}"#, "limits.cpu_weight"),
            (r#"{"cpu_weight":1.5}"#, "limits.cpu_weight"),
            (r#"{"pids_max":0}"#, "limits.pids_max"),
            (r#"{"pids_max":"10"}"#, "limits.pids_max"),
            (r#"{"pids_max":99999999}"#, "limits.pids_max"),
            (r#"{"memory_maximum":1}"#, "memory_maximum"),
        ];
        for (json, field) in cases {
            let e = parse(json).unwrap_err();
            assert!(e.contains(field), "{json}: {e}");
        }
    }

    #[test]
    fn messages_say_what_the_field_takes() {
        let cases = [
            (
                r#"{"memory_high":"lots"}"#,
                r#"`limits.memory_high` must be a byte count: an integer, or a string such as "512M" (K, M, G: powers of 1024), got "lots""#,
            ),
            (
                r#"{"memory_max":-1}"#,
                r#"`limits.memory_max` must be a byte count: an integer, or a string such as "512M" (K, M, G: powers of 1024), got -1"#,
            ),
            (
                r#"{"pids_max":"10"}"#,
                r#"`limits.pids_max` must be a positive integer, got "10""#,
            ),
            (
                r#"{"cpu_weight":1.5}"#,
                "`limits.cpu_weight` must be a positive integer, got 1.5",
            ),
            (
                r#"{"cpu_weight":true}"#,
                "`limits.cpu_weight` must be a positive integer",
            ),
        ];
        for (json, want) in cases {
            let e = parse(json).unwrap_err();
            assert!(e.starts_with(want), "{json}: {e}");
        }
    }

    #[test]
    fn cgroup_values_are_what_the_kernel_takes() {
        let l =
            parse(r#"{"memory_max":"32M","cpu_max":0.5,"cpu_weight":200,"pids_max":64}"#).unwrap();
        let got: Vec<(&str, String, bool)> = l
            .cgroup_writes()
            .into_iter()
            .map(|w| (w.file, w.value, w.required))
            .collect();
        assert_eq!(
            got,
            vec![
                ("memory.high", "max".to_string(), true),
                ("memory.max", "33554432".to_string(), true),
                ("memory.oom.group", "1".to_string(), true),
                ("cpu.max", "50000 100000".to_string(), true),
                ("cpu.weight", "200".to_string(), true),
                ("pids.max", "64".to_string(), true),
            ]
        );
        assert_eq!(l.controllers(), vec!["memory", "cpu", "pids"]);
        // An integer number of cores is fine; 0.2 is a fifth of the period.
        assert_eq!(parse(r#"{"cpu_max":2}"#).unwrap().cpu_max, Some(2.0));
        let fifth = parse(r#"{"cpu_max":0.2}"#).unwrap().cgroup_writes();
        assert!(fifth
            .iter()
            .any(|w| w.file == "cpu.max" && w.value == "20000 100000"));
    }

    #[test]
    fn no_limits_reset_to_the_kernel_defaults_and_need_nothing() {
        let l = Limits::default();
        assert!(l.controllers().is_empty());
        let got: Vec<(&str, String)> = l
            .cgroup_writes()
            .into_iter()
            .map(|w| (w.file, w.value))
            .collect();
        assert_eq!(
            got,
            vec![
                ("memory.high", "max".to_string()),
                ("memory.max", "max".to_string()),
                ("memory.oom.group", "0".to_string()),
                ("cpu.max", "max 100000".to_string()),
                ("cpu.weight", "100".to_string()),
                ("pids.max", "max".to_string()),
            ]
        );
        // memory_high alone is a memory limit too: the group dies as one.
        let high = parse(r#"{"memory_high":"1G"}"#).unwrap();
        assert_eq!(high.controllers(), vec!["memory"]);
        assert!(high
            .cgroup_writes()
            .iter()
            .any(|w| w.file == "memory.oom.group" && w.value == "1"));
    }

    #[test]
    fn toml_tables_parse_the_same() {
        let l: Limits =
            toml::from_str("memory_max = \"64M\"\ncpu_max = 1\npids_max = 32\n").unwrap();
        assert_eq!(l.memory_max, Some(64 << 20));
        assert_eq!(l.cpu_max, Some(1.0));
        assert_eq!(l.pids_max, Some(32));
        let e = toml::from_str::<Limits>("memory_max = \"64Q\"\n").unwrap_err();
        assert!(e.to_string().contains("limits.memory_max"), "{e}");
    }

    #[test]
    fn serializes_as_plain_numbers() {
        let l = parse(r#"{"memory_max":"1K","cpu_max":0.5}"#).unwrap();
        assert_eq!(
            serde_json::to_value(&l).unwrap(),
            serde_json::json!({"memory_max": 1024, "cpu_max": 0.5})
        );
    }
}
