//! The command line, declared once with `clap`: parsing, `--help` with an
//! example for every command, the usage line on errors, shell completions
//! and the man page all come from these types.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::clock::parse_rfc3339;

pub const DEFAULT_SOCKET: &str = "/run/services.sock";

const EXIT_STATUS: &str = "\
Exit status: 0 on success, 1 on any error (the server's message goes to
stderr), 2 on a usage error. Without --json, exec and run exit with the
command's own status, and 124 if it timed out.

--socket and --json go before or after the command. Shell completions:
irisctl completions bash|zsh|fish (see irisctl completions --help).

The API itself is described by an OpenAPI 3.1 document the init serves at
GET /v1/openapi.json: irisctl openapi prints it.";

/// The whole command line: global options plus the command.
#[derive(Parser, Debug, Clone, PartialEq, Eq)]
#[command(
    name = "irisctl",
    version,
    about = "Control iris-init over its unix socket",
    after_help = EXIT_STATUS,
    arg_required_else_help = true,
    max_term_width = 100
)]
pub struct Cli {
    /// The init's API socket [default: $IRIS_SOCKET, else /run/services.sock]
    #[arg(long, global = true, value_name = "PATH", value_parser = non_empty_path)]
    pub socket: Option<PathBuf>,

    /// Print the API's JSON answer as it is
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Cmd,
}

/// One command with its arguments.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Cmd {
    /// List services
    #[command(after_help = "Examples:\n  irisctl list\n  irisctl list --json")]
    List,

    /// Show one service
    #[command(after_help = "Example:\n  irisctl status redis")]
    Status {
        /// The service
        name: String,
    },

    /// Start a service and its needs; waits until it is running
    #[command(after_help = "Examples:\n  irisctl start redis\n  irisctl start --no-wait redis")]
    Start {
        /// The service
        name: String,
        /// Answer at once instead of waiting until it is running
        #[arg(long)]
        no_wait: bool,
    },

    /// Stop a service; waits until its processes are gone
    #[command(after_help = "Example:\n  irisctl stop redis")]
    Stop {
        /// The service
        name: String,
    },

    /// Stop, then start a service
    #[command(after_help = "Example:\n  irisctl restart redis")]
    Restart {
        /// The service
        name: String,
    },

    /// Create or replace services from drop-in files (the file stem is the service name)
    #[command(after_help = "Example:\n  irisctl apply /etc/init.d/redis.toml web.toml")]
    Apply {
        /// Drop-in files
        #[arg(required = true, value_name = "FILE.toml")]
        files: Vec<PathBuf>,
    },

    /// Stop a service and remove its definition
    #[command(after_help = "Example:\n  irisctl delete redis")]
    Delete {
        /// The service
        name: String,
    },

    /// Run a one-shot command in a service's context
    #[command(after_help = "Example:\n  irisctl exec redis -- redis-cli ping")]
    Exec {
        /// The service
        name: String,
        /// Kill the command after this many seconds (server default: 60)
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
        /// The command and its arguments, after `--`
        #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
        cmd: Vec<String>,
    },

    /// Run a one-shot command in the sandbox
    #[command(after_help = "Example:\n  irisctl run --env LANG=C --cwd /srv -- ls -l")]
    Run {
        /// Kill the command after this many milliseconds (server default: 60000)
        #[arg(long, value_name = "MS")]
        timeout_ms: Option<u64>,
        /// An environment variable for the command (repeatable)
        #[arg(short, long = "env", value_name = "KEY=VALUE", value_parser = key_value)]
        env: Vec<(String, String)>,
        /// Working directory
        #[arg(long, value_name = "DIR")]
        cwd: Option<String>,
        /// Run as this user (name or uid)
        #[arg(short, long, value_name = "USER")]
        user: Option<String>,
        /// The command and its arguments, after `--`
        #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
        cmd: Vec<String>,
    },

    /// Print services' output; several are prefixed with their names
    #[command(
        after_help = "Examples:\n  irisctl logs redis -n 20\n  irisctl logs -f web db cache"
    )]
    Logs {
        /// The services
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        /// Only the last N lines
        #[arg(short = 'n', long = "tail", value_name = "N")]
        tail: Option<u64>,
        /// Keep printing new output until interrupted
        #[arg(short, long)]
        follow: bool,
    },

    /// Make the state file durable before a snapshot
    #[command(after_help = "Example:\n  irisctl checkpoint")]
    Checkpoint,

    /// Apply the state file (after a VM snapshot is resumed), or show the last report
    #[command(
        after_help = "Examples:\n  irisctl restore --time now --entropy-file seed.bin \
                            --generation 7\n  irisctl restore --last"
    )]
    Restore {
        /// Show the last restore's report instead of restoring
        #[arg(long, conflicts_with_all = ["time", "entropy_file", "generation"])]
        last: bool,
        /// Set the clock first: an RFC 3339 time, or `now` (this machine's clock)
        #[arg(long, value_name = "RFC3339|now", value_parser = time_value)]
        time: Option<String>,
        /// Feed these bytes (32 to 512) to the kernel's random pool first
        #[arg(long, value_name = "PATH")]
        entropy_file: Option<PathBuf>,
        /// The VM generation (default: the previous one plus one)
        #[arg(long, value_name = "N")]
        generation: Option<u64>,
    },

    /// Show the init itself
    #[command(after_help = "Example:\n  irisctl system")]
    System,

    /// Print the Prometheus metrics as served
    #[command(after_help = "Example:\n  irisctl metrics | grep iris_service_up")]
    Metrics,

    /// Print the API's OpenAPI 3.1 document (GET /v1/openapi.json)
    #[command(after_help = "Example:\n  irisctl openapi > iris-openapi.json")]
    Openapi,

    /// Print the events stream, one event per line
    #[command(after_help = "Examples:\n  irisctl events\n  irisctl events --since 120 --json web")]
    Events {
        /// Replay the events after this id first
        #[arg(long, value_name = "ID")]
        since: Option<u64>,
        /// Only these services' events
        #[arg(value_name = "NAME")]
        names: Vec<String>,
    },

    /// A live table of services, fed by the events stream
    #[command(after_help = "Examples:\n  irisctl watch\n  irisctl watch web db | tee changes.log")]
    Watch {
        /// Only these services
        #[arg(value_name = "NAME")]
        names: Vec<String>,
    },

    /// Stop all services, then power off
    #[command(after_help = "Example:\n  irisctl poweroff")]
    Poweroff,

    /// Stop all services, then reboot
    #[command(after_help = "Example:\n  irisctl reboot")]
    Reboot,

    /// Print a shell completion script
    #[command(after_help = "\
Service names are completed from the running init (bash, zsh, fish).
Examples:
  source <(irisctl completions bash)        # or put it in ~/.bashrc
  irisctl completions zsh > ~/.zfunc/_irisctl
  irisctl completions fish > ~/.config/fish/completions/irisctl.fish")]
    Completions {
        /// The shell
        shell: Shell,
    },

    /// Write the man pages (irisctl.1 and one per command)
    #[command(hide = true, after_help = "Example:\n  irisctl man --dir build/man")]
    Man {
        /// Write every page into this directory instead of irisctl.1 to stdout
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },

    /// Print the names of the services, one a line (for completion scripts)
    #[command(
        name = "__complete-services",
        hide = true,
        after_help = "Example:\n  irisctl __complete-services"
    )]
    CompleteServices,
}

/// The shells completions are written for.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

fn non_empty_path(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        Err("needs a non-empty path".into())
    } else {
        Ok(PathBuf::from(s))
    }
}

fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("needs KEY=VALUE, not '{s}'")),
    }
}

fn time_value(s: &str) -> Result<String, String> {
    if s == "now" || parse_rfc3339(s).is_some() {
        Ok(s.to_string())
    } else {
        Err(format!(
            "needs an RFC 3339 time such as 2026-12-05T16:50:40.123Z, or `now`; not '{s}'"
        ))
    }
}

/// `--socket` wins over `IRIS_SOCKET`, which wins over the default. An
/// empty variable counts as unset.
pub fn resolve_socket(flag: Option<PathBuf>, env: Option<OsString>) -> PathBuf {
    flag.or_else(|| env.filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;
    use clap::CommandFactory;

    fn parse(s: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("irisctl").chain(s.iter().copied()))
    }

    pub fn command(s: &[&str]) -> Cmd {
        parse(s).unwrap().command
    }

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn socket_before_and_json_after_the_subcommand() {
        let inv = parse(&["--socket", "/x.sock", "list", "--json"]).unwrap();
        assert_eq!(inv.socket, Some(PathBuf::from("/x.sock")));
        assert!(inv.json);
        assert_eq!(inv.command, Cmd::List);
        let inv = parse(&["--socket=/y.sock", "status", "web"]).unwrap();
        assert_eq!(inv.socket, Some(PathBuf::from("/y.sock")));
        assert!(!inv.json);
        assert!(parse(&["--socket", "", "list"]).is_err());
    }

    #[test]
    fn socket_and_json_also_work_on_the_other_side() {
        // Issue 17 asks for the global options on either side.
        let inv = parse(&["list", "--socket", "/x"]).unwrap();
        assert_eq!(inv.socket, Some(PathBuf::from("/x")));
        let inv = parse(&["--json", "status", "web"]).unwrap();
        assert!(inv.json);
    }

    #[test]
    fn socket_resolution_prefers_flag_then_env_then_default() {
        assert_eq!(
            resolve_socket(Some("/a".into()), Some("/b".into())),
            PathBuf::from("/a")
        );
        assert_eq!(resolve_socket(None, Some("/b".into())), PathBuf::from("/b"));
        assert_eq!(
            resolve_socket(None, Some("".into())),
            PathBuf::from(DEFAULT_SOCKET)
        );
        assert_eq!(resolve_socket(None, None), PathBuf::from(DEFAULT_SOCKET));
    }

    #[test]
    fn start_waits_unless_no_wait() {
        assert_eq!(
            command(&["start", "redis"]),
            Cmd::Start {
                name: "redis".into(),
                no_wait: false
            }
        );
        assert_eq!(
            command(&["start", "--no-wait", "redis"]),
            Cmd::Start {
                name: "redis".into(),
                no_wait: true
            }
        );
    }

    #[test]
    fn name_taking_commands_need_exactly_one_name() {
        assert!(parse(&["status"]).is_err());
        assert!(parse(&["stop", "a", "b"]).is_err());
        assert!(parse(&["list", "extra"]).is_err());
        assert!(parse(&["frobnicate"]).is_err());
        assert!(parse(&[]).is_err());
        assert!(parse(&["start", "web", "--bogus"]).is_err());
        // `--` ends options, so a name that looks like one still works.
        assert_eq!(
            command(&["status", "--", "-odd"]),
            Cmd::Status {
                name: "-odd".into()
            }
        );
    }

    #[test]
    fn exec_takes_the_command_after_dashes_verbatim() {
        assert_eq!(
            command(&[
                "exec",
                "redis",
                "--timeout",
                "5",
                "--",
                "redis-cli",
                "--json",
                "ping"
            ]),
            Cmd::Exec {
                name: "redis".into(),
                timeout: Some(5),
                cmd: argv(&["redis-cli", "--json", "ping"]),
            }
        );
        // Without `--`, the first word after the name starts the command.
        assert_eq!(
            command(&["exec", "redis", "ls", "-l"]),
            Cmd::Exec {
                name: "redis".into(),
                timeout: None,
                cmd: argv(&["ls", "-l"]),
            }
        );
        let inv = parse(&["exec", "redis", "--json", "--", "true"]).unwrap();
        assert!(inv.json);
        assert!(parse(&["exec", "redis"]).is_err());
        assert!(parse(&["exec", "redis", "--"]).is_err());
        assert!(parse(&["exec", "--", "ls"]).is_err());
        assert!(parse(&["exec", "redis", "--timeout", "-1", "--", "ls"]).is_err());
    }

    #[test]
    fn run_collects_env_cwd_user_and_timeout() {
        assert_eq!(
            command(&[
                "run",
                "--timeout-ms",
                "1500",
                "--env",
                "A=1=2",
                "-e",
                "B=",
                "--cwd=/srv/app",
                "--user",
                "nobody",
                "--",
                "id",
                "-u"
            ]),
            Cmd::Run {
                timeout_ms: Some(1500),
                env: vec![("A".into(), "1=2".into()), ("B".into(), "".into())],
                cwd: Some("/srv/app".into()),
                user: Some("nobody".into()),
                cmd: argv(&["id", "-u"]),
            }
        );
        assert!(parse(&["run", "--env", "NOEQUALS", "--", "true"]).is_err());
        assert!(parse(&["run", "--timeout-ms"]).is_err());
        assert!(parse(&["run"]).is_err());
    }

    #[test]
    fn logs_restore_apply_and_help() {
        assert_eq!(
            command(&["logs", "web", "-n", "20", "-f"]),
            Cmd::Logs {
                names: vec!["web".into()],
                tail: Some(20),
                follow: true
            }
        );
        assert_eq!(
            command(&["logs", "-f", "a", "b", "c"]),
            Cmd::Logs {
                names: argv(&["a", "b", "c"]),
                tail: None,
                follow: true
            }
        );
        assert!(parse(&["logs", "web", "-n", "x"]).is_err());
        assert!(parse(&["logs"]).is_err());
        let restore = |last, time: Option<&str>, generation| Cmd::Restore {
            last,
            time: time.map(str::to_string),
            entropy_file: None,
            generation,
        };
        assert_eq!(command(&["restore"]), restore(false, None, None));
        assert_eq!(command(&["restore", "--last"]), restore(true, None, None));
        assert_eq!(
            command(&["restore", "--time", "now", "--generation", "7"]),
            restore(false, Some("now"), Some(7))
        );
        assert!(parse(&["restore", "--time", "yesterday"]).is_err());
        assert!(parse(&["restore", "--last", "--generation", "2"]).is_err());
        assert_eq!(
            command(&["apply", "a.toml", "b/c.toml"]),
            Cmd::Apply {
                files: vec!["a.toml".into(), "b/c.toml".into()]
            }
        );
        assert!(parse(&["apply"]).is_err());
        for help in [
            &["help"][..],
            &["--help"],
            &["stop", "--help"],
            &["help", "stop"],
        ] {
            let kind = parse(help).unwrap_err().kind();
            assert_eq!(kind, ErrorKind::DisplayHelp, "{help:?}");
        }
        assert_eq!(
            parse(&["--version"]).unwrap_err().kind(),
            ErrorKind::DisplayVersion
        );
    }

    #[test]
    fn every_command_has_an_example_in_its_help() {
        let mut cli = Cli::command();
        cli.build();
        // `help` is clap's own.
        for sub in cli.get_subcommands().filter(|s| s.get_name() != "help") {
            let help = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                help.contains("Example") && help.contains(&format!("irisctl {}", sub.get_name())),
                "{} has no example: {help:?}",
                sub.get_name()
            );
        }
    }

    #[test]
    fn typos_get_a_suggestion_and_a_short_usage() {
        let err = parse(&["lst"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidSubcommand);
        let text = err.render().to_string();
        assert!(text.contains("'list'"), "{text}");
        assert!(text.contains("Usage: irisctl"), "{text}");
        assert!(text.contains("--help"), "{text}");
        assert!(!text.contains("Commands:"), "the whole help: {text}");
    }
}
