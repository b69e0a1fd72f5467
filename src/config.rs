//! Settings of the init from flags and `IRIS_*` environment variables (the
//! kernel passes unknown `KEY=value` words of its command line to init as
//! environment variables). A flag wins over the variable.

use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub socket: PathBuf,
    pub services_dir: PathBuf,
    pub state_file: PathBuf,
    pub log_dir: PathBuf,
}

pub const USAGE: &str =
    "usage: iris-init [--socket PATH] [--services-dir DIR] [--state-file PATH] [--log-dir DIR]
  --socket PATH        API socket (IRIS_SOCKET, default /run/services.sock)
  --services-dir DIR   drop-in *.toml files (IRIS_SERVICES_DIR, default /etc/init.d)
  --state-file PATH    state file (IRIS_STATE_FILE, default /var/lib/iris/state.json)
  --log-dir DIR        service logs (IRIS_LOG_DIR, default /var/log/iris)";

#[derive(Debug, PartialEq)]
pub enum ArgsOutcome {
    Run(Config),
    Help,
    Version,
}

impl Config {
    /// `args` without the program name; `env` looks a variable up.
    pub fn parse(
        args: &[String],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ArgsOutcome, String> {
        let from_env = |k: &str, d: &str| {
            PathBuf::from(
                env(k)
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| d.to_string()),
            )
        };
        let mut c = Config {
            socket: from_env("IRIS_SOCKET", "/run/services.sock"),
            services_dir: from_env("IRIS_SERVICES_DIR", "/etc/init.d"),
            state_file: from_env("IRIS_STATE_FILE", "/var/lib/iris/state.json"),
            log_dir: from_env("IRIS_LOG_DIR", "/var/log/iris"),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let (flag, inline) = match a.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
                _ => (a.as_str(), None),
            };
            let slot = match flag {
                "--socket" => &mut c.socket,
                "--services-dir" => &mut c.services_dir,
                "--state-file" => &mut c.state_file,
                "--log-dir" => &mut c.log_dir,
                "-h" | "--help" => return Ok(ArgsOutcome::Help),
                "-V" | "--version" => return Ok(ArgsOutcome::Version),
                // The kernel may pass words of its command line as
                // arguments to init (e.g. "single"); ignore those as PID 1.
                other if std::process::id() == 1 && !other.starts_with("--") => continue,
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            };
            let value = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?,
            };
            if value.is_empty() {
                return Err(format!("{flag} needs a non-empty value"));
            }
            *slot = PathBuf::from(value);
        }
        Ok(ArgsOutcome::Run(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_env_and_flags() {
        let none = |_: &str| None;
        let Ok(ArgsOutcome::Run(c)) = Config::parse(&[], &none) else {
            panic!()
        };
        assert_eq!(c.socket, PathBuf::from("/run/services.sock"));
        assert_eq!(c.state_file, PathBuf::from("/var/lib/iris/state.json"));
        let env = |k: &str| (k == "IRIS_SOCKET").then(|| "/tmp/env.sock".to_string());
        let Ok(ArgsOutcome::Run(c)) = Config::parse(&[], &env) else {
            panic!()
        };
        assert_eq!(c.socket, PathBuf::from("/tmp/env.sock"));
        let Ok(ArgsOutcome::Run(c)) =
            Config::parse(&args(&["--socket", "/tmp/flag.sock", "--log-dir=/l"]), &env)
        else {
            panic!()
        };
        assert_eq!(c.socket, PathBuf::from("/tmp/flag.sock"), "flag wins");
        assert_eq!(c.log_dir, PathBuf::from("/l"));
        assert!(Config::parse(&args(&["--socket"]), &none).is_err());
        assert!(Config::parse(&args(&["--bogus", "x"]), &none).is_err());
        assert_eq!(
            Config::parse(&args(&["--help"]), &none),
            Ok(ArgsOutcome::Help)
        );
    }
}
