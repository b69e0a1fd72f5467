//! Container services: everything the supervisor needs to pull an OCI image,
//! unpack it into a per-service bundle and drive an OCI runtime, as plans.
//!
//! This module owns the image store layout (`STORE/images/<key>/`, one OCI
//! layout per image reference; `STORE/pulling/`, `STORE/old/`, `STORE/tmp/`
//! for pulls in progress; `STORE/bundles/<service>/`), image
//! reference parsing, the rewrite of a bundle's `config.json` for a
//! supervised service, and the argv of every external tool (`skopeo`,
//! `umoci`, `crun`/`runc`). It never spawns or waits: the event loop runs
//! each argv as an ordinary non-blocking child (output to the service's log,
//! reaped by the one reaper). The file operations it does itself are small
//! and local (reading `index.json`, writing `config.json`, renames).
//!
//! One file per job: `image` (references), `store` (pulls and stored
//! images), `process` (args, env, user against the image), `bundle` (the
//! rootfs and `config.json`), `runtime` (the runtime's command lines),
//! `settings`, `error`, and `driver` (the steps, through the event loop).
//!
//! Lifecycle the supervisor drives for a container service:
//! 1. `is_pulled`? else `prepare_pull`, spawn `pull_argv` (env `pull_env`),
//!    then `finish_pull` on exit 0, or `abandon_pull` plus
//!    `pull_failure_message` on failure. One pull per reference at a time
//!    (a second service on the same image waits for the first pull).
//! 2. When the bundle is missing, from another image (`bundle_image_digest`
//!    differs from `image_digest`) or the definition changed:
//!    `prepare_unpack`, spawn `unpack_argv`. Otherwise the rootfs is reused,
//!    so what the container wrote survives a restart (like `docker restart`).
//! 3. `read_image_config` + `write_bundle_config` on every start.
//! 4. Create `runtime_dirs`, spawn `delete_argv` (clears a stale container
//!    of the same name, e.g. after an init restart), then `run_argv`: the
//!    runtime stays in the foreground as the container's parent, forwards
//!    SIGTERM to it, exits with its status (137 when it was SIGKILLed) and
//!    removes the container, so its pid is the supervised pid.
//! 5. Stop: SIGTERM to the runtime's pid (forwarded). A container's pid 1
//!    without a TERM handler never sees it (`pid1_drops_signal`): then, or
//!    after `stop_timeout_secs`, spawn `kill_argv(.., "KILL")`. Never
//!    SIGKILL the runtime itself while the container lives: that orphans
//!    the container. Once the runtime has exited, `delete_argv`.
//! 6. Exec: `write_exec_process` + `exec_argv`; on a timeout SIGKILL the
//!    pid in `exec_pid_file`.

pub mod bundle;
pub(crate) mod driver;
pub(crate) mod error;
pub(crate) mod image;
pub(crate) mod process;
pub mod runtime;
pub mod settings;
pub(crate) mod store;
#[cfg(test)]
mod test_support;
pub(crate) mod tools;
