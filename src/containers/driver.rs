//! Container services driven through the event loop: this module owns the
//! steps between the supervisor's `Spawn` of a container service and its
//! `on_spawned` (pull the image unless it is in the store, unpack it into
//! the service's bundle when that is missing or stale, write `config.json`,
//! clear a stale container of the same name, then the runtime's foreground
//! `run`, whose pid is the supervised pid), and the runtime's part of stop
//! (`kill`, and `delete` once the runtime exited). Every step is a child
//! process of the init (`container` gives the argv), reaped by the one
//! reaper and routed here by pid: the loop never waits. Tool output goes to
//! the service's log; a failed step fails the start with a message naming
//! the image and the tool's own words.

use crate::config::Config;
use crate::containers::bundle::{self, BundleOptions};
use crate::containers::process::ProcessSpec;
use crate::containers::settings::{self, ContainerSettings};
use crate::containers::{error, image, image::ImageRef, runtime, store, tools};
use crate::core::definition::Definition;
use crate::core::supervisor::{ExitStatus, Input, Phase, Pid, Service, StartError, Supervisor};
use crate::io::Io;
use crate::output::logs::Logs;
use crate::proc::cgroup::Cgroups;
use crate::proc::spawn::{self, SpawnSpec};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid as NixPid;
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::path::{Path, PathBuf};

/// In a bundle: the definition it was prepared for (a changed definition
/// gets a fresh bundle).
const FINGERPRINT_FILE: &str = "iris-definition.json";

/// Every container service's progress, and the tool processes in flight.
pub(crate) struct Containers {
    settings: ContainerSettings,
    /// A pure cgroup2 system (the VM): cgroup paths for runc are absolute.
    pure_cgroup2: bool,
    services: HashMap<String, Ctr>,
    tasks: HashMap<Pid, Task>,
    /// Pulls in flight by store key: one per reference, shared by waiters.
    pulls: HashMap<String, Pull>,
    /// Pulls started per canonical reference (the `image_pulls` field).
    pull_counts: HashMap<String, u64>,
    next_id: u64,
}

/// One container service.
#[derive(Default)]
struct Ctr {
    /// The supervisor generation of the `Spawn` being prepared.
    want: Option<u64>,
    /// The preparation step in flight.
    step: Option<Step>,
    /// The runtime's foreground `run`, until it is reaped.
    runtime: Option<Pid>,
    /// A runtime `kill` in flight.
    killing: Option<Pid>,
    /// The `delete` after the runtime's exit, in flight.
    deleting: Option<Pid>,
    /// Why the step that just ended failed, for the next `advance`.
    failure: Option<String>,
    /// A stale container of this name was deleted for the current start.
    cleared: bool,
    /// The service is gone: clean up once nothing is in flight.
    removed: bool,
    /// The manifest digest of the image the bundle holds.
    digest: Option<String>,
    /// Variables the init adds to the definition's `env` (`NOTIFY_SOCKET`).
    extra_env: BTreeMap<String, String>,
}

impl Ctr {
    fn busy(&self) -> bool {
        self.step.is_some()
            || self.runtime.is_some()
            || self.killing.is_some()
            || self.deleting.is_some()
    }
}

#[derive(Debug, PartialEq)]
enum Step {
    Pull(String),
    Unpack(Pid),
    Clear(Pid),
}

enum TaskKind {
    Pull {
        key: String,
    },
    Unpack {
        service: String,
        image: String,
        fingerprint: String,
    },
    /// `delete` of a stale container before a run.
    Clear {
        service: String,
    },
    Kill {
        service: String,
    },
    /// `delete` after the runtime exited.
    Delete {
        service: String,
    },
    /// `rm -rf` of a bundle moved aside.
    Discard,
}

struct Task {
    kind: TaskKind,
    stderr: Option<File>,
}

struct Pull {
    image: ImageRef,
    waiters: Vec<String>,
}

/// What an exec inside a container needs: the runtime's argv, the pid file
/// that will name the command (to kill it on a timeout), and the files to
/// remove afterwards.
pub(crate) struct ContainerExec {
    pub argv: Vec<String>,
    pub pid_file: PathBuf,
    pub cleanup: Vec<PathBuf>,
}

/// Why a command cannot run in a service's container.
#[derive(Debug, PartialEq)]
pub(crate) enum ContainerExecError {
    /// The service (its container) does not run.
    NotRunning(String),
    /// No command to run.
    Empty(String),
    /// The runtime's process file could not be written.
    Prepare(String),
}

impl std::fmt::Display for ContainerExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContainerExecError::NotRunning(name) => write!(
                f,
                "service '{name}' is not running: its container cannot run commands"
            ),
            ContainerExecError::Empty(m) => f.write_str(m),
            ContainerExecError::Prepare(m) => write!(f, "cannot prepare the exec: {m}"),
        }
    }
}

/// What the driver works with besides its own state: the loop's I/O
/// handle, the service logs (tool output and the init's notes go there), a
/// read-only supervisor, the cgroups; and what it tells the supervisor.
pub(crate) struct Ctx<'a> {
    pub io: &'a mut Io,
    pub logs: &'a mut Logs,
    pub sup: &'a Supervisor,
    pub cgroups: Option<&'a Cgroups>,
    /// Answers to the supervisor's `Spawn`s, for the reactor to feed in.
    pub out: Vec<Input>,
}

impl Ctx<'_> {
    /// A line of the init's own in the service's log.
    fn note(&mut self, name: &str, msg: &str) {
        // A deleted service's log is closed: do not open it again.
        if self.sup.get(name).is_some() {
            self.logs.append(self.io, name, &format!("[iris] {msg}"));
        }
    }

    fn copy_stderr(&mut self, name: &str, stderr: &str) {
        let text = stderr.trim_end();
        if !text.is_empty() && self.sup.get(name).is_some() {
            self.logs.append(self.io, name, text);
        }
    }

    fn spawned(&mut self, name: &str, gen: u64, result: Result<Pid, String>) {
        self.out.push(Input::Spawned {
            name: name.to_string(),
            gen,
            result: result.map_err(StartError::Prepare),
        });
    }
}

/// The service's definition while it is being spawned for `gen`.
fn wanted_def(sup: &Supervisor, name: &str, gen: u64) -> Option<Definition> {
    let s = sup.get(name)?;
    (s.gen == gen && s.phase == Phase::Spawning).then(|| s.def.clone())
}

impl Containers {
    /// Image store and bundles beside the state file; runtime state in
    /// `iris/` beside the API socket (a tmpfs such as `/run` in the VM).
    pub(crate) fn new(cfg: &Config) -> Containers {
        let store = match cfg.state_file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let run = match cfg.socket.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.join("iris"),
            _ => PathBuf::from("/run/iris"),
        };
        Containers {
            settings: ContainerSettings::from_env(&store, &run),
            pure_cgroup2: Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
            services: HashMap::new(),
            tasks: HashMap::new(),
            pulls: HashMap::new(),
            pull_counts: HashMap::new(),
            next_id: 0,
        }
    }

    // ---------------------------------------------------------------- start

    /// The supervisor's `Spawn` of a container service: prepares it through
    /// the loop and answers `on_spawned` when the runtime runs (or a step failed).
    /// Starts `name`; `extra_env` joins the definition's `env` (the init's
    /// own variables, such as `NOTIFY_SOCKET`).
    pub(crate) fn start(
        &mut self,
        cx: &mut Ctx,
        name: &str,
        gen: u64,
        extra_env: BTreeMap<String, String>,
    ) {
        let rec = self.services.entry(name.to_string()).or_default();
        rec.extra_env = extra_env;
        rec.want = Some(gen);
        rec.cleared = false;
        rec.removed = false;
        if rec.step.is_none() {
            rec.failure = None;
        }
        self.advance(cx, name);
    }

    /// Takes the next step for `name`, unless one is in flight.
    fn advance(&mut self, cx: &mut Ctx, name: &str) {
        let Some(rec) = self.services.get_mut(name) else {
            return;
        };
        if rec.busy() {
            return;
        }
        let Some(gen) = rec.want else {
            return;
        };
        let Some(def) = wanted_def(cx.sup, name, gen) else {
            // Stopped or deleted while it was being prepared.
            if let Some(rec) = self.services.get_mut(name) {
                rec.want = None;
                rec.failure = None;
            }
            self.finish_removal(cx, name);
            return;
        };
        let failure = self.services.get_mut(name).and_then(|r| r.failure.take());
        let result = match failure {
            Some(msg) => Err(msg),
            // Redefined as a plain service while its container was prepared.
            None if !def.container => Err("the definition changed while the container was being \
             prepared: start the service again"
                .to_string()),
            None => self.next_step(cx, name, &def),
        };
        match result {
            Ok(None) => {}
            Ok(Some(pid)) => {
                if let Some(rec) = self.services.get_mut(name) {
                    rec.want = None;
                }
                cx.spawned(name, gen, Ok(pid));
            }
            Err(msg) => {
                if let Some(rec) = self.services.get_mut(name) {
                    rec.want = None;
                }
                cx.note(name, &msg);
                cx.spawned(name, gen, Err(msg));
            }
        }
    }

    /// Starts the next missing step; Some(pid) once the runtime runs.
    fn next_step(
        &mut self,
        cx: &mut Ctx,
        name: &str,
        def: &Definition,
    ) -> Result<Option<Pid>, String> {
        let reference = def.image.as_deref().unwrap_or("");
        let image = image::parse_image_ref(reference).map_err(|e| e.to_string())?;
        let s = self.settings.clone();
        let Some(digest) = store::image_digest(&s, &image) else {
            self.start_or_join_pull(cx, name, &image)?;
            return Ok(None);
        };
        let bundle = bundle::bundle_dir(&s, name);
        let fingerprint = serde_json::to_string(def).unwrap_or_default();
        if !bundle_is_current(&bundle, &digest, &fingerprint) {
            let pid = self.start_unpack(cx, name, &image, &bundle, fingerprint)?;
            self.set_step(name, Step::Unpack(pid));
            return Ok(None);
        }
        if let Some(rec) = self.services.get_mut(name) {
            rec.digest = Some(digest);
        }
        self.write_config(cx, name, def, &image, &bundle)?;
        for dir in runtime::runtime_dirs(&s) {
            fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let cleared = self.services.get(name).is_some_and(|r| r.cleared);
        if !cleared && runtime::container_state_dir(&s, name).exists() {
            // A container of this name survived (an init restart): it goes
            // first, or the run would fail with "already exists".
            let argv = runtime::delete_argv(&s, name);
            let (pid, stderr) = tools::spawn_tool(cx.io, cx.logs, Some(name), &argv, &[], None)
                .map_err(|e| format!("cannot remove the old container '{name}': {e}"))?;
            self.add_task(
                pid,
                TaskKind::Clear {
                    service: name.to_string(),
                },
                stderr,
            );
            self.set_step(name, Step::Clear(pid));
            return Ok(None);
        }
        let _ = fs::remove_file(runtime::container_pid_file(&s, name));
        let argv = runtime::run_argv(&s, name, &bundle);
        let cgroup_procs = match cx.cgroups {
            Some(cg) => cg.prepare(name).ok(),
            None => None,
        };
        let program = tools::tool_program(&argv)?;
        let (stdout, stderr) = cx
            .logs
            .writer_for(cx.io, name)
            .map_err(|e| format!("cannot open the log of '{name}': {e}"))?;
        let (argv0, args) = argv.split_first().ok_or("empty runtime command")?;
        let env = tools::tool_env(&[]);
        let pid = spawn::spawn(SpawnSpec {
            program: &program,
            argv0,
            args,
            env: &env,
            working_dir: None,
            user: None,
            stdin: None,
            stdout,
            stderr,
            cgroup_procs: cgroup_procs.as_deref(),
            new_session: true,
        })
        .map_err(|e| format!("cannot run the OCI runtime {}: {e}", s.runtime))?;
        if let Some(rec) = self.services.get_mut(name) {
            rec.runtime = Some(pid);
        }
        crate::info!("started container '{name}' ({} pid {pid})", s.runtime);
        Ok(Some(pid))
    }

    fn set_step(&mut self, name: &str, step: Step) {
        if let Some(rec) = self.services.get_mut(name) {
            rec.step = Some(step);
        }
    }

    /// At exit: tools still running (a pull no service waits for any more)
    /// must not outlive the init.
    pub(crate) fn abandon_tasks(&self) {
        for pid in self.tasks.keys() {
            // Each tool runs in its own session: its group is its pid.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    /// `POST .../start?pull=true`: drop the stored image of a container
    /// service, so this start pulls it again (unless a pull is under way).
    pub(crate) fn forget_image(&mut self, sup: &Supervisor, name: &str) -> Result<(), String> {
        let Some(reference) = sup
            .get(name)
            .filter(|s| s.def.container)
            .and_then(|s| s.def.image.clone())
        else {
            return Ok(());
        };
        let image = image::parse_image_ref(&reference).map_err(|e| e.to_string())?;
        let s = self.settings.clone();
        let (layout, _) = store::image_store_path(&s, &image);
        let key = layout
            .file_name()
            .map(|k| k.to_string_lossy().into_owned())
            .unwrap_or_default();
        if self.pulls.contains_key(&key) {
            return Ok(());
        }
        store::remove_image(&s, &image).map_err(|e| e.to_string())
    }

    fn start_or_join_pull(
        &mut self,
        cx: &mut Ctx,
        name: &str,
        image: &ImageRef,
    ) -> Result<(), String> {
        let s = self.settings.clone();
        let (layout, _) = store::image_store_path(&s, image);
        let key = layout
            .file_name()
            .map(|k| k.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(pull) = self.pulls.get_mut(&key) {
            if !pull.waiters.iter().any(|w| w == name) {
                pull.waiters.push(name.to_string());
            }
            self.set_step(name, Step::Pull(key));
            cx.note(
                name,
                &format!("waiting for the pull of image {image} already in progress"),
            );
            return Ok(());
        }
        let failed = |e: String| format!("pulling image {image} failed: {e}");
        store::prepare_pull(&s, image).map_err(|e| failed(e.to_string()))?;
        cx.note(name, &format!("pulling image {image}"));
        let argv = store::pull_argv(&s, image);
        let (pid, stderr) = match tools::spawn_tool(
            cx.io,
            cx.logs,
            Some(name),
            &argv,
            &store::pull_env(&s),
            None,
        ) {
            Ok(p) => p,
            Err(e) => {
                store::abandon_pull(&s, image);
                return Err(failed(e));
            }
        };
        self.add_task(pid, TaskKind::Pull { key: key.clone() }, stderr);
        self.pulls.insert(
            key.clone(),
            Pull {
                image: image.clone(),
                waiters: vec![name.to_string()],
            },
        );
        *self.pull_counts.entry(image.to_string()).or_insert(0) += 1;
        self.set_step(name, Step::Pull(key));
        Ok(())
    }

    fn start_unpack(
        &mut self,
        cx: &mut Ctx,
        name: &str,
        image: &ImageRef,
        bundle: &Path,
        fingerprint: String,
    ) -> Result<Pid, String> {
        let s = self.settings.clone();
        let failed = |e: String| format!("unpacking image {image} failed: {e}");
        self.discard(cx, bundle);
        bundle::prepare_unpack(bundle).map_err(|e| failed(e.to_string()))?;
        cx.note(name, &format!("unpacking image {image}"));
        let argv = bundle::unpack_argv(&s, image, bundle);
        let (pid, stderr) =
            tools::spawn_tool(cx.io, cx.logs, Some(name), &argv, &[], None).map_err(failed)?;
        self.add_task(
            pid,
            TaskKind::Unpack {
                service: name.to_string(),
                image: image.to_string(),
                fingerprint,
            },
            stderr,
        );
        Ok(pid)
    }

    /// Rewrites the bundle's config.json for the definition (every start: the
    /// image's config may name a user that a changed /etc/passwd resolves
    /// differently, and the cgroup may have moved).
    fn write_config(
        &mut self,
        cx: &mut Ctx,
        name: &str,
        def: &Definition,
        image: &ImageRef,
        bundle: &Path,
    ) -> Result<(), String> {
        let s = &self.settings;
        let image_config = store::read_image_config(s, image).map_err(|e| e.to_string())?;
        let mut env = def.env.clone();
        if let Some(rec) = self.services.get(name) {
            env.extend(rec.extra_env.clone());
        }
        let spec = ProcessSpec {
            cmd: def.cmd.clone(),
            args: def.args.clone(),
            env,
            working_dir: def.working_dir.clone(),
            user: def.user.clone(),
        };
        let cgroup_path = cx.cgroups.and_then(|cg| cg.relative(name)).map(|r| {
            if self.pure_cgroup2 {
                format!("/{r}")
            } else {
                r
            }
        });
        let host_files = bundle::default_host_files();
        let reference = image.to_string();
        let opts = BundleOptions {
            service: name,
            image: &reference,
            spec: &spec,
            image_config: &image_config,
            cgroup_path: cgroup_path.as_deref(),
            host_files: &host_files,
        };
        let resolved = bundle::write_bundle_config(bundle, &opts).map_err(|e| e.to_string())?;
        bundle::check_command(bundle, &resolved, &reference).map_err(|e| e.to_string())
    }

    fn add_task(&mut self, pid: Pid, kind: TaskKind, stderr: Option<File>) {
        self.tasks.insert(pid, Task { kind, stderr });
    }

    /// Moves a directory aside and removes it in the background: a big rootfs
    /// takes a while to delete, and the loop must not wait for it.
    fn discard(&mut self, cx: &mut Ctx, dir: &Path) {
        if fs::symlink_metadata(dir).is_err() {
            return;
        }
        let s = self.settings.clone();
        let trash = s.store_dir.join("trash");
        self.next_id = self.next_id.wrapping_add(1);
        let aside = trash.join(format!("{}.{}", std::process::id(), self.next_id));
        let moved = fs::create_dir_all(&trash).is_ok() && fs::rename(dir, &aside).is_ok();
        if !moved {
            let _ = bundle::remove_bundle(dir);
            return;
        }
        let argv: Vec<String> = ["rm", "-rf", "--"]
            .iter()
            .map(|a| a.to_string())
            .chain(std::iter::once(aside.to_string_lossy().into_owned()))
            .collect();
        match tools::spawn_tool(cx.io, cx.logs, None, &argv, &[], None) {
            Ok((pid, _)) => self.add_task(pid, TaskKind::Discard, None),
            Err(_) => {
                let _ = bundle::remove_bundle(&aside);
            }
        }
    }

    // ---------------------------------------------------------------- exits

    /// The main pid of service `name` exited (called by the reaper before the
    /// supervisor hears of it): if it was the runtime, the container is gone
    /// with it, and whatever the runtime left of it is deleted now.
    pub(crate) fn on_main_exit(&mut self, cx: &mut Ctx, name: &str, pid: Pid) {
        let Some(rec) = self.services.get_mut(name) else {
            return;
        };
        if rec.runtime != Some(pid) {
            return;
        }
        rec.runtime = None;
        let _ = fs::remove_file(runtime::container_pid_file(&self.settings, name));
        if !self.start_delete(cx, name) {
            self.container_gone(cx, name);
        }
    }

    /// `delete` when the runtime left state behind (it was killed, or the init
    /// restarted); a runtime that exited normally removed the container itself.
    /// False when there was nothing to delete.
    fn start_delete(&mut self, cx: &mut Ctx, name: &str) -> bool {
        let s = self.settings.clone();
        if !runtime::container_state_dir(&s, name).exists() {
            return false;
        }
        if self
            .services
            .get(name)
            .is_some_and(|r| r.deleting.is_some())
        {
            return true;
        }
        let argv = runtime::delete_argv(&s, name);
        let kind = TaskKind::Delete {
            service: name.to_string(),
        };
        match self.spawn_service_tool(cx, name, &argv, kind) {
            Ok(pid) => {
                if let Some(rec) = self.services.get_mut(name) {
                    rec.deleting = Some(pid);
                }
                true
            }
            Err(e) => {
                crate::warn!("cannot delete the container of '{name}': {e}");
                false
            }
        }
    }

    /// Runs a runtime command for `name` as a tracked task.
    fn spawn_service_tool(
        &mut self,
        cx: &mut Ctx,
        name: &str,
        argv: &[String],
        kind: TaskKind,
    ) -> Result<Pid, String> {
        let (pid, stderr) = tools::spawn_tool(cx.io, cx.logs, Some(name), argv, &[], None)?;
        self.add_task(pid, kind, stderr);
        Ok(pid)
    }

    /// The container is gone: runc removed its own cgroup but, on a v1/v2
    /// hybrid, leaves the service's (empty) one in every v1 hierarchy.
    fn container_gone(&mut self, cx: &mut Ctx, name: &str) {
        if self.pure_cgroup2 || self.settings.runtime_kind() != settings::RuntimeKind::Runc {
            return;
        }
        if let Some(rel) = cx.cgroups.and_then(|cg| cg.relative(name)) {
            crate::proc::cgroup::remove_v1_leftovers(&rel);
        }
    }

    /// A reaped child that is one of this module's tools; false otherwise.
    pub(crate) fn on_exit(&mut self, cx: &mut Ctx, pid: Pid, status: ExitStatus) -> bool {
        let Some(task) = self.tasks.remove(&pid) else {
            return false;
        };
        let stderr = task.stderr.map(tools::read_tail).unwrap_or_default();
        let ok = status.is_clean();
        let why = || {
            let summary = error::tool_error_summary(&stderr);
            if stderr.trim().is_empty() {
                status.describe()
            } else {
                summary
            }
        };
        match task.kind {
            TaskKind::Pull { key } => self.pull_done(cx, &key, ok, &stderr, status),
            TaskKind::Unpack {
                service,
                image,
                fingerprint,
            } => {
                cx.copy_stderr(&service, &stderr);
                let s = self.settings.clone();
                let bundle = bundle::bundle_dir(&s, &service);
                let failure = if ok {
                    fs::write(bundle.join(FINGERPRINT_FILE), fingerprint)
                        .err()
                        .map(|e| format!("unpacking image {image} failed: {e}"))
                } else {
                    Some(format!("unpacking image {image} failed: {}", why()))
                };
                self.end_step(cx, &service, Step::Unpack(pid), failure);
            }
            TaskKind::Clear { service } => {
                cx.copy_stderr(&service, &stderr);
                let failure = (!ok)
                    .then(|| format!("cannot remove the old container '{service}': {}", why()));
                if let Some(rec) = self.services.get_mut(&service) {
                    rec.cleared = ok;
                }
                self.end_step(cx, &service, Step::Clear(pid), failure);
            }
            TaskKind::Kill { service } => {
                let runtime = self.services.get_mut(&service).and_then(|r| {
                    r.killing = None;
                    r.runtime
                });
                if let (false, Some(rt)) = (ok, runtime) {
                    // No container to signal yet (the runtime is still
                    // creating it) or the runtime failed: kill the lot.
                    cx.copy_stderr(&service, &stderr);
                    self.hard_kill(cx, &service, rt);
                }
                self.finish_removal(cx, &service);
            }
            TaskKind::Delete { service } => {
                if let Some(rec) = self.services.get_mut(&service) {
                    rec.deleting = None;
                }
                if !ok {
                    cx.copy_stderr(&service, &stderr);
                    crate::warn!("deleting the container of '{service}' failed: {}", why());
                }
                self.container_gone(cx, &service);
                self.finish_removal(cx, &service);
                self.advance(cx, &service);
            }
            TaskKind::Discard => {}
        }
        true
    }

    fn end_step(&mut self, cx: &mut Ctx, name: &str, step: Step, failure: Option<String>) {
        if let Some(rec) = self.services.get_mut(name) {
            if rec.step.as_ref() == Some(&step) {
                rec.step = None;
            }
            if failure.is_some() {
                rec.failure = failure;
            }
        }
        self.advance(cx, name);
        self.finish_removal(cx, name);
    }

    fn pull_done(&mut self, cx: &mut Ctx, key: &str, ok: bool, stderr: &str, status: ExitStatus) {
        let Some(pull) = self.pulls.remove(key) else {
            return;
        };
        let s = self.settings.clone();
        let result = if ok {
            store::finish_pull(&s, &pull.image)
                .map_err(|e| format!("pulling image {} failed: {e}", pull.image))
        } else {
            store::abandon_pull(&s, &pull.image);
            let cause = if stderr.trim().is_empty() {
                format!(
                    "pulling image {} failed: skopeo {}",
                    pull.image,
                    status.describe()
                )
            } else {
                error::pull_failure_message(&pull.image.to_string(), stderr)
            };
            Err(cause)
        };
        for w in &pull.waiters {
            cx.copy_stderr(w, stderr);
            if let Ok(digest) = &result {
                cx.note(w, &format!("pulled image {} ({digest})", pull.image));
            }
            self.end_step(cx, w, Step::Pull(key.to_string()), result.clone().err());
        }
    }

    // ---------------------------------------------------------------- stop

    /// The supervisor's SIGTERM for a stopping service. True when it was a
    /// container's: SIGTERM goes to the runtime, which forwards it; a pid 1
    /// that cannot get it (no handler: the kernel drops it) is killed at once
    /// instead of after `stop_timeout_secs` of nothing.
    pub(crate) fn on_terminate(&mut self, cx: &mut Ctx, name: &str) -> bool {
        let Some(rt) = self.services.get(name).and_then(|r| r.runtime) else {
            return false;
        };
        let drops = self
            .container_status(name, rt)
            .is_some_and(|(_, st)| runtime::pid1_drops_signal(&st, libc::SIGTERM));
        if drops {
            cx.note(
                name,
                "the container's pid 1 has no SIGTERM handler: sending SIGKILL",
            );
            self.start_kill(cx, name, rt);
        } else {
            let _ = kill(NixPid::from_raw(rt), Signal::SIGTERM);
        }
        true
    }

    /// The supervisor's SIGKILL of the service's tree. True when it was a
    /// container whose runtime runs: the runtime kills the container (SIGKILL
    /// to the runtime itself would orphan it). Once the runtime is gone the
    /// loop's usual process-group and cgroup kill is right.
    pub(crate) fn on_kill(&mut self, cx: &mut Ctx, name: &str) -> bool {
        let Some(rt) = self.services.get(name).and_then(|r| r.runtime) else {
            return false;
        };
        self.start_kill(cx, name, rt);
        true
    }

    fn start_kill(&mut self, cx: &mut Ctx, name: &str, rt: Pid) {
        if self.services.get(name).is_some_and(|r| r.killing.is_some()) {
            return;
        }
        let s = self.settings.clone();
        let argv = runtime::kill_argv(&s, name, "KILL");
        let kind = TaskKind::Kill {
            service: name.to_string(),
        };
        match self.spawn_service_tool(cx, name, &argv, kind) {
            Ok(pid) => {
                if let Some(rec) = self.services.get_mut(name) {
                    rec.killing = Some(pid);
                }
            }
            Err(e) => {
                crate::warn!("cannot run the runtime's kill for '{name}': {e}");
                self.hard_kill(cx, name, rt);
            }
        }
    }

    /// Last resort when the runtime cannot kill its container: the service's
    /// cgroup holds runtime and container alike; without one, the runtime's
    /// group goes (and `delete` after its exit removes what it made).
    fn hard_kill(&mut self, cx: &mut Ctx, name: &str, rt: Pid) {
        match cx.cgroups {
            Some(cg) => cg.kill_all(name),
            None => {
                let _ = killpg(NixPid::from_raw(rt), Signal::SIGKILL);
            }
        }
    }

    /// The container's pid 1 and its `/proc/PID/status`, while the runtime
    /// `rt` is its parent (so the pid file cannot name a recycled pid).
    fn container_status(&self, name: &str, rt: Pid) -> Option<(Pid, String)> {
        let pid = runtime::read_container_pid(&self.settings, name)?;
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let ppid = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .and_then(|p| p.trim().parse::<Pid>().ok());
        (ppid == Some(rt)).then_some((pid, status))
    }

    /// No runtime, kill or delete of the service is left (the loop's check that
    /// a stopped service's tree is gone).
    pub(crate) fn tree_gone(&self, name: &str) -> bool {
        self.services
            .get(name)
            .is_none_or(|r| r.runtime.is_none() && r.killing.is_none() && r.deleting.is_none())
    }

    // ---------------------------------------------------------------- removal

    /// The service was deleted: its bundle goes (the image stays in the store).
    pub(crate) fn on_removed(&mut self, cx: &mut Ctx, name: &str) {
        match self.services.get_mut(name) {
            Some(rec) => {
                rec.removed = true;
                rec.want = None;
                self.finish_removal(cx, name);
            }
            None => {
                let s = self.settings.clone();
                self.discard(cx, &bundle::bundle_dir(&s, name));
            }
        }
    }

    /// Removes from the image store what no defined container service uses
    /// and what no pull in progress owns (`store::collect_garbage`): at
    /// boot, and whenever a service goes away.
    pub(crate) fn collect_garbage(&self, sup: &Supervisor) {
        let in_use: Vec<ImageRef> = sup
            .services()
            .filter(|s| s.def.container)
            .filter_map(|s| s.def.image.as_deref())
            .filter_map(|r| image::parse_image_ref(r).ok())
            .collect();
        let pulling: Vec<ImageRef> = self.pulls.values().map(|p| p.image.clone()).collect();
        let got = store::collect_garbage(&self.settings, &in_use, &pulling);
        if !got.images.is_empty() || got.leftovers > 0 {
            crate::info!(
                "image store: removed {} unused images ({}) and {} leftovers of pulls",
                got.images.len(),
                got.images.join(", "),
                got.leftovers
            );
        }
    }

    fn finish_removal(&mut self, cx: &mut Ctx, name: &str) {
        let done = self
            .services
            .get(name)
            .is_some_and(|r| r.removed && !r.busy());
        if !done || cx.sup.get(name).is_some() {
            return;
        }
        self.services.remove(name);
        let s = self.settings.clone();
        self.discard(cx, &bundle::bundle_dir(&s, name));
        self.container_gone(cx, name);
    }

    // ---------------------------------------------------------------- exec

    /// `POST /v1/services/{name}/exec` on a container service: the runtime's
    /// exec with a process file (the container's user, cwd and env).
    pub(crate) fn exec_command(
        &mut self,
        sup: &Supervisor,
        name: &str,
        cmd: &[String],
    ) -> Result<ContainerExec, ContainerExecError> {
        // Starting too: a readiness check runs inside the container.
        let running = matches!(
            sup.get(name).map(|s| &s.phase),
            Some(Phase::Running { .. } | Phase::Starting { .. })
        );
        let runtime = self.services.get(name).and_then(|r| r.runtime);
        if !running || runtime.is_none() {
            return Err(ContainerExecError::NotRunning(name.to_string()));
        }
        let s = self.settings.clone();
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        let process_file = runtime::exec_process_file(&s, name, id);
        let pid_file = runtime::exec_pid_file(&s, name, id);
        runtime::write_exec_process(&bundle::bundle_dir(&s, name), cmd, &process_file).map_err(
            |e| match e {
                error::ContainerError::EmptyExec => ContainerExecError::Empty(e.to_string()),
                e => ContainerExecError::Prepare(e.to_string()),
            },
        )?;
        let mut argv = runtime::exec_argv(&s, name, &process_file, Some(&pid_file));
        // The exec runs with a clean environment: name the runtime by its path.
        if let (Ok(program), Some(first)) = (tools::tool_program(&argv), argv.first_mut()) {
            *first = program.to_string_lossy().into_owned();
        }
        Ok(ContainerExec {
            argv,
            pid_file: pid_file.clone(),
            cleanup: vec![process_file, pid_file],
        })
    }

    // ---------------------------------------------------------------- API view

    /// `image_digest` (the pulled image's manifest digest), `image_pulls`
    /// (pulls of its reference by this init) and `container_pid` (the
    /// container's pid 1 as the host sees it, while it runs).
    pub(crate) fn extra_fields(
        &self,
        svc: &Service,
        extra: &mut serde_json::Map<String, serde_json::Value>,
    ) {
        let name = svc.name.as_str();
        if !svc.def.container {
            return;
        }
        let s = &self.settings;
        let image = svc
            .def
            .image
            .as_deref()
            .and_then(|r| image::parse_image_ref(r).ok());
        let rec = self.services.get(name);
        let digest = rec
            .and_then(|r| r.digest.clone())
            .or_else(|| image.as_ref().and_then(|i| store::image_digest(s, i)));
        let pulls = image
            .as_ref()
            .and_then(|i| self.pull_counts.get(&i.to_string()))
            .copied()
            .unwrap_or(0);
        let cpid = rec
            .and_then(|r| r.runtime)
            .and_then(|rt| self.container_status(name, rt))
            .map(|(pid, _)| pid);
        extra.insert("image_digest".into(), serde_json::json!(digest));
        extra.insert("image_pulls".into(), serde_json::json!(pulls));
        extra.insert("container_pid".into(), serde_json::json!(cpid));
    }
}

/// The bundle was unpacked from this image for this definition.
fn bundle_is_current(bundle: &Path, digest: &str, fingerprint: &str) -> bool {
    bundle::bundle_image_digest(bundle).as_deref() == Some(digest)
        && bundle.join("config.json").is_file()
        && fs::read_to_string(bundle.join(FINGERPRINT_FILE)).is_ok_and(|f| f == fingerprint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("iris-csvc-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_bundle_is_reused_only_for_the_same_image_and_definition() {
        let b = tmp("current");
        let d = format!("sha256:{}", "a".repeat(64));
        fs::write(
            b.join("umoci.json"),
            format!(r#"{{"from_descriptor_path":{{"descriptor_walk":[{{"digest":"{d}"}}]}}}}"#),
        )
        .unwrap();
        fs::write(b.join("config.json"), "{}").unwrap();
        assert!(!bundle_is_current(&b, &d, "def"), "no fingerprint yet");
        fs::write(b.join(FINGERPRINT_FILE), "def").unwrap();
        assert!(bundle_is_current(&b, &d, "def"));
        assert!(!bundle_is_current(&b, &d, "changed"), "definition changed");
        let other = format!("sha256:{}", "b".repeat(64));
        assert!(!bundle_is_current(&b, &other, "def"), "image changed");
        fs::remove_file(b.join("config.json")).unwrap();
        assert!(!bundle_is_current(&b, &d, "def"), "config.json lost");
        fs::remove_dir_all(&b).unwrap();
    }
}
