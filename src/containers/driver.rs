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

use crate::api::error::ApiError;
use crate::config::Config;
use crate::containers::bundle::{self, BundleOptions};
use crate::containers::process::ProcessSpec;
use crate::containers::settings::{self, ContainerSettings};
use crate::containers::{error, image, image::ImageRef, runtime, store};
use crate::core::definition::Definition;
use crate::core::supervisor::{ExitStatus, Phase, Pid};
use crate::proc::spawn::{self, SpawnSpec};
use crate::reactor::Init;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid as NixPid;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Most bytes of a tool's stderr kept for its error message and the log.
const STDERR_TAIL: u64 = 64 * 1024;
/// In a bundle: the definition it was prepared for (a changed definition
/// gets a fresh bundle).
const FINGERPRINT_FILE: &str = "iris-definition.json";
/// Variables of the init's environment the tools get (registry
/// credentials, proxies, certificates); nothing else leaks into them.
const TOOL_ENV: &[&str] = &[
    "HOME",
    "XDG_RUNTIME_DIR",
    "REGISTRY_AUTH_FILE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// Every container service's progress, and the tool processes in flight.
pub struct Containers {
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
pub struct ContainerExec {
    pub argv: Vec<String>,
    pub pid_file: PathBuf,
    pub cleanup: Vec<PathBuf>,
}

impl Containers {
    /// Image store and bundles beside the state file; runtime state in
    /// `iris/` beside the API socket (a tmpfs such as `/run` in the VM).
    pub fn new(cfg: &Config) -> Containers {
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

    pub fn settings(&self) -> &ContainerSettings {
        &self.settings
    }
}

fn now() -> Instant {
    Instant::now()
}

/// A line of the init's own in the service's log.
fn note(init: &mut Init, name: &str, msg: &str) {
    // A deleted service's log is closed: do not open it again.
    if init.sup.get(name).is_some() {
        crate::output::logs::append(init, name, &format!("[iris] {msg}"));
    }
}

/// The service's definition while it is being spawned for `gen`.
fn wanted_def(init: &Init, name: &str, gen: u64) -> Option<Definition> {
    let s = init.sup.get(name)?;
    (s.gen == gen && s.phase == Phase::Spawning).then(|| s.def.clone())
}

// ---------------------------------------------------------------- start

/// The supervisor's `Spawn` of a container service: prepares it through
/// the loop and answers `on_spawned` when the runtime runs (or a step failed).
pub fn start(init: &mut Init, name: &str, gen: u64) {
    let rec = init
        .containers
        .services
        .entry(name.to_string())
        .or_default();
    rec.want = Some(gen);
    rec.cleared = false;
    rec.removed = false;
    if rec.step.is_none() {
        rec.failure = None;
    }
    advance(init, name);
}

/// Takes the next step for `name`, unless one is in flight.
fn advance(init: &mut Init, name: &str) {
    let Some(rec) = init.containers.services.get_mut(name) else {
        return;
    };
    if rec.busy() {
        return;
    }
    let Some(gen) = rec.want else {
        return;
    };
    let Some(def) = wanted_def(init, name, gen) else {
        // Stopped or deleted while it was being prepared.
        if let Some(rec) = init.containers.services.get_mut(name) {
            rec.want = None;
            rec.failure = None;
        }
        finish_removal(init, name);
        return;
    };
    let failure = init
        .containers
        .services
        .get_mut(name)
        .and_then(|r| r.failure.take());
    let result = match failure {
        Some(msg) => Err(msg),
        // Redefined as a plain service while its container was prepared.
        None if !def.container => Err("the definition changed while the container was being \
             prepared: start the service again"
            .to_string()),
        None => next_step(init, name, &def),
    };
    match result {
        Ok(None) => {}
        Ok(Some(pid)) => {
            if let Some(rec) = init.containers.services.get_mut(name) {
                rec.want = None;
            }
            init.sup.on_spawned(name, gen, Ok(pid), now());
        }
        Err(msg) => {
            if let Some(rec) = init.containers.services.get_mut(name) {
                rec.want = None;
            }
            note(init, name, &msg);
            init.sup.on_spawned(name, gen, Err(msg), now());
        }
    }
}

/// Starts the next missing step; Some(pid) once the runtime runs.
fn next_step(init: &mut Init, name: &str, def: &Definition) -> Result<Option<Pid>, String> {
    let reference = def.image.as_deref().unwrap_or("");
    let image = image::parse_image_ref(reference).map_err(|e| e.to_string())?;
    let s = init.containers.settings.clone();
    let Some(digest) = store::image_digest(&s, &image) else {
        start_or_join_pull(init, name, &image)?;
        return Ok(None);
    };
    let bundle = bundle::bundle_dir(&s, name);
    let fingerprint = serde_json::to_string(def).unwrap_or_default();
    if !bundle_is_current(&bundle, &digest, &fingerprint) {
        let pid = start_unpack(init, name, &image, &bundle, fingerprint)?;
        set_step(init, name, Step::Unpack(pid));
        return Ok(None);
    }
    if let Some(rec) = init.containers.services.get_mut(name) {
        rec.digest = Some(digest);
    }
    write_config(init, name, def, &image, &bundle)?;
    for dir in runtime::runtime_dirs(&s) {
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let cleared = init
        .containers
        .services
        .get(name)
        .is_some_and(|r| r.cleared);
    if !cleared && runtime::container_state_dir(&s, name).exists() {
        // A container of this name survived (an init restart): it goes
        // first, or the run would fail with "already exists".
        let argv = runtime::delete_argv(&s, name);
        let (pid, stderr) = spawn_tool(init, Some(name), &argv, &[], None)
            .map_err(|e| format!("cannot remove the old container '{name}': {e}"))?;
        add_task(
            init,
            pid,
            TaskKind::Clear {
                service: name.to_string(),
            },
            stderr,
        );
        set_step(init, name, Step::Clear(pid));
        return Ok(None);
    }
    let _ = fs::remove_file(runtime::container_pid_file(&s, name));
    let argv = runtime::run_argv(&s, name, &bundle);
    let cgroup_procs = match &init.cgroups {
        Some(cg) => cg.prepare(name).ok(),
        None => None,
    };
    let program = tool_program(&argv)?;
    let (stdout, stderr) = crate::output::logs::writer_for(init, name)
        .map_err(|e| format!("cannot open the log of '{name}': {e}"))?;
    let (argv0, args) = argv.split_first().ok_or("empty runtime command")?;
    let env = tool_env(&[]);
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
    if let Some(rec) = init.containers.services.get_mut(name) {
        rec.runtime = Some(pid);
    }
    crate::info!("started container '{name}' ({} pid {pid})", s.runtime);
    Ok(Some(pid))
}

fn set_step(init: &mut Init, name: &str, step: Step) {
    if let Some(rec) = init.containers.services.get_mut(name) {
        rec.step = Some(step);
    }
}

/// The bundle was unpacked from this image for this definition.
fn bundle_is_current(bundle: &Path, digest: &str, fingerprint: &str) -> bool {
    bundle::bundle_image_digest(bundle).as_deref() == Some(digest)
        && bundle.join("config.json").is_file()
        && fs::read_to_string(bundle.join(FINGERPRINT_FILE)).is_ok_and(|f| f == fingerprint)
}

/// At exit: tools still running (a pull no service waits for any more)
/// must not outlive the init.
pub fn abandon_tasks(init: &mut Init) {
    for pid in init.containers.tasks.keys() {
        // Each tool runs in its own session: its group is its pid.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// `POST .../start?pull=true`: drop the stored image of a container
/// service, so this start pulls it again (unless a pull is under way).
pub fn forget_image(init: &mut Init, name: &str) -> Result<(), String> {
    let Some(reference) = init
        .sup
        .get(name)
        .filter(|s| s.def.container)
        .and_then(|s| s.def.image.clone())
    else {
        return Ok(());
    };
    let image = image::parse_image_ref(&reference).map_err(|e| e.to_string())?;
    let s = init.containers.settings.clone();
    let (layout, _) = store::image_store_path(&s, &image);
    let key = layout
        .file_name()
        .map(|k| k.to_string_lossy().into_owned())
        .unwrap_or_default();
    if init.containers.pulls.contains_key(&key) {
        return Ok(());
    }
    store::remove_image(&s, &image).map_err(|e| e.to_string())
}

fn start_or_join_pull(init: &mut Init, name: &str, image: &ImageRef) -> Result<(), String> {
    let s = init.containers.settings.clone();
    let (layout, _) = store::image_store_path(&s, image);
    let key = layout
        .file_name()
        .map(|k| k.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(pull) = init.containers.pulls.get_mut(&key) {
        if !pull.waiters.iter().any(|w| w == name) {
            pull.waiters.push(name.to_string());
        }
        set_step(init, name, Step::Pull(key));
        note(
            init,
            name,
            &format!("waiting for the pull of image {image} already in progress"),
        );
        return Ok(());
    }
    let failed = |e: String| format!("pulling image {image} failed: {e}");
    store::prepare_pull(&s, image).map_err(|e| failed(e.to_string()))?;
    note(init, name, &format!("pulling image {image}"));
    let argv = store::pull_argv(&s, image);
    let (pid, stderr) = match spawn_tool(init, Some(name), &argv, &store::pull_env(&s), None) {
        Ok(p) => p,
        Err(e) => {
            store::abandon_pull(&s, image);
            return Err(failed(e));
        }
    };
    add_task(init, pid, TaskKind::Pull { key: key.clone() }, stderr);
    init.containers.pulls.insert(
        key.clone(),
        Pull {
            image: image.clone(),
            waiters: vec![name.to_string()],
        },
    );
    *init
        .containers
        .pull_counts
        .entry(image.to_string())
        .or_insert(0) += 1;
    set_step(init, name, Step::Pull(key));
    Ok(())
}

fn start_unpack(
    init: &mut Init,
    name: &str,
    image: &ImageRef,
    bundle: &Path,
    fingerprint: String,
) -> Result<Pid, String> {
    let s = init.containers.settings.clone();
    let failed = |e: String| format!("unpacking image {image} failed: {e}");
    discard(init, bundle);
    bundle::prepare_unpack(bundle).map_err(|e| failed(e.to_string()))?;
    note(init, name, &format!("unpacking image {image}"));
    let argv = bundle::unpack_argv(&s, image, bundle);
    let (pid, stderr) = spawn_tool(init, Some(name), &argv, &[], None).map_err(failed)?;
    add_task(
        init,
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
    init: &mut Init,
    name: &str,
    def: &Definition,
    image: &ImageRef,
    bundle: &Path,
) -> Result<(), String> {
    let s = &init.containers.settings;
    let image_config = store::read_image_config(s, image).map_err(|e| e.to_string())?;
    let spec = ProcessSpec {
        cmd: def.cmd.clone(),
        args: def.args.clone(),
        env: def.env.clone(),
        working_dir: def.working_dir.clone(),
        user: def.user.clone(),
    };
    let cgroup_path = init
        .cgroups
        .as_ref()
        .and_then(|cg| cg.relative(name))
        .map(|r| {
            if init.containers.pure_cgroup2 {
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

// ---------------------------------------------------------------- tools

fn tool_env(extra: &[(String, String)]) -> Vec<(String, String)> {
    let mut env = vec![("PATH".to_string(), spawn::init_path())];
    for k in TOOL_ENV {
        if let Ok(v) = std::env::var(k) {
            env.push((k.to_string(), v));
        }
    }
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push(("HOME".to_string(), "/root".to_string()));
    }
    env.extend(extra.iter().cloned());
    env
}

/// The tool's executable, looked up on the init's `PATH`.
fn tool_program(argv: &[String]) -> Result<PathBuf, String> {
    let cmd = argv.first().ok_or("empty command")?;
    spawn::find_on_init_path(cmd).map_err(|e| e.to_string())
}

/// Starts a tool in its own session, outside every service cgroup (a
/// `cgroup.kill` of the service must not hit its own `delete`). stdout
/// goes to the service's log; stderr to a memory file read at its exit
/// (for the error message, then copied to the log).
fn spawn_tool(
    init: &mut Init,
    log: Option<&str>,
    argv: &[String],
    extra_env: &[(String, String)],
    cgroup_procs: Option<&Path>,
) -> Result<(Pid, Option<File>), String> {
    let program = tool_program(argv)?;
    let (argv0, args) = argv.split_first().ok_or("empty command")?;
    let stdout: OwnedFd = match log {
        Some(name) => crate::output::logs::writer_for(init, name)
            .map(|(out, _)| out)
            .map_err(|e| format!("cannot open the log of '{name}': {e}"))?,
        None => File::options()
            .write(true)
            .open("/dev/null")
            .map(OwnedFd::from)
            .map_err(|e| format!("cannot open /dev/null: {e}"))?,
    };
    let capture = nix::sys::memfd::memfd_create(
        c"iris-tool-stderr",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )
    .map(File::from)
    .map_err(|e| format!("cannot create a memory file: {e}"))?;
    let stderr = capture
        .try_clone()
        .map(OwnedFd::from)
        .map_err(|e| format!("cannot duplicate a descriptor: {e}"))?;
    let env = tool_env(extra_env);
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
        cgroup_procs,
        new_session: true,
    })
    .map_err(|e| e.to_string())?;
    crate::debug!("container tool pid {pid}: {}", argv.join(" "));
    Ok((pid, Some(capture)))
}

fn add_task(init: &mut Init, pid: Pid, kind: TaskKind, stderr: Option<File>) {
    init.containers.tasks.insert(pid, Task { kind, stderr });
}

/// The end of what a tool wrote to its stderr.
fn read_tail(mut f: File) -> String {
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if f.seek(SeekFrom::Start(len.saturating_sub(STDERR_TAIL)))
        .is_err()
    {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = f.take(STDERR_TAIL).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Moves a directory aside and removes it in the background: a big rootfs
/// takes a while to delete, and the loop must not wait for it.
fn discard(init: &mut Init, dir: &Path) {
    if fs::symlink_metadata(dir).is_err() {
        return;
    }
    let s = init.containers.settings.clone();
    let trash = s.store_dir.join("trash");
    init.containers.next_id = init.containers.next_id.wrapping_add(1);
    let aside = trash.join(format!(
        "{}.{}",
        std::process::id(),
        init.containers.next_id
    ));
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
    match spawn_tool(init, None, &argv, &[], None) {
        Ok((pid, _)) => add_task(init, pid, TaskKind::Discard, None),
        Err(_) => {
            let _ = bundle::remove_bundle(&aside);
        }
    }
}

// ---------------------------------------------------------------- exits

/// The main pid of service `name` exited (called by the reaper before the
/// supervisor hears of it): if it was the runtime, the container is gone
/// with it, and whatever the runtime left of it is deleted now.
pub fn on_main_exit(init: &mut Init, name: &str, pid: Pid) {
    let Some(rec) = init.containers.services.get_mut(name) else {
        return;
    };
    if rec.runtime != Some(pid) {
        return;
    }
    rec.runtime = None;
    let _ = fs::remove_file(runtime::container_pid_file(&init.containers.settings, name));
    if !start_delete(init, name) {
        container_gone(init, name);
    }
}

/// `delete` when the runtime left state behind (it was killed, or the init
/// restarted); a runtime that exited normally removed the container itself.
/// False when there was nothing to delete.
fn start_delete(init: &mut Init, name: &str) -> bool {
    let s = init.containers.settings.clone();
    if !runtime::container_state_dir(&s, name).exists() {
        return false;
    }
    if init
        .containers
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
    match spawn_service_tool(init, name, &argv, kind) {
        Ok(pid) => {
            if let Some(rec) = init.containers.services.get_mut(name) {
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
    init: &mut Init,
    name: &str,
    argv: &[String],
    kind: TaskKind,
) -> Result<Pid, String> {
    let (pid, stderr) = spawn_tool(init, Some(name), argv, &[], None)?;
    add_task(init, pid, kind, stderr);
    Ok(pid)
}

/// The container is gone: runc removed its own cgroup but, on a v1/v2
/// hybrid, leaves the service's (empty) one in every v1 hierarchy.
fn container_gone(init: &mut Init, name: &str) {
    if init.containers.pure_cgroup2
        || init.containers.settings.runtime_kind() != settings::RuntimeKind::Runc
    {
        return;
    }
    if let Some(rel) = init.cgroups.as_ref().and_then(|cg| cg.relative(name)) {
        crate::proc::cgroup::remove_v1_leftovers(&rel);
    }
}

/// A reaped child that is one of this module's tools; false otherwise.
pub fn on_exit(init: &mut Init, pid: Pid, status: ExitStatus) -> bool {
    let Some(task) = init.containers.tasks.remove(&pid) else {
        return false;
    };
    let stderr = task.stderr.map(read_tail).unwrap_or_default();
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
        TaskKind::Pull { key } => pull_done(init, &key, ok, &stderr, status),
        TaskKind::Unpack {
            service,
            image,
            fingerprint,
        } => {
            copy_stderr(init, &service, &stderr);
            let s = init.containers.settings.clone();
            let bundle = bundle::bundle_dir(&s, &service);
            let failure = if ok {
                fs::write(bundle.join(FINGERPRINT_FILE), fingerprint)
                    .err()
                    .map(|e| format!("unpacking image {image} failed: {e}"))
            } else {
                Some(format!("unpacking image {image} failed: {}", why()))
            };
            end_step(init, &service, Step::Unpack(pid), failure);
        }
        TaskKind::Clear { service } => {
            copy_stderr(init, &service, &stderr);
            let failure =
                (!ok).then(|| format!("cannot remove the old container '{service}': {}", why()));
            if let Some(rec) = init.containers.services.get_mut(&service) {
                rec.cleared = ok;
            }
            end_step(init, &service, Step::Clear(pid), failure);
        }
        TaskKind::Kill { service } => {
            let runtime = init.containers.services.get_mut(&service).and_then(|r| {
                r.killing = None;
                r.runtime
            });
            if let (false, Some(rt)) = (ok, runtime) {
                // No container to signal yet (the runtime is still
                // creating it) or the runtime failed: kill the lot.
                copy_stderr(init, &service, &stderr);
                hard_kill(init, &service, rt);
            }
            finish_removal(init, &service);
        }
        TaskKind::Delete { service } => {
            if let Some(rec) = init.containers.services.get_mut(&service) {
                rec.deleting = None;
            }
            if !ok {
                copy_stderr(init, &service, &stderr);
                crate::warn!("deleting the container of '{service}' failed: {}", why());
            }
            container_gone(init, &service);
            finish_removal(init, &service);
            advance(init, &service);
        }
        TaskKind::Discard => {}
    }
    true
}

fn copy_stderr(init: &mut Init, name: &str, stderr: &str) {
    let text = stderr.trim_end();
    if !text.is_empty() && init.sup.get(name).is_some() {
        crate::output::logs::append(init, name, text);
    }
}

fn end_step(init: &mut Init, name: &str, step: Step, failure: Option<String>) {
    if let Some(rec) = init.containers.services.get_mut(name) {
        if rec.step.as_ref() == Some(&step) {
            rec.step = None;
        }
        if failure.is_some() {
            rec.failure = failure;
        }
    }
    advance(init, name);
    finish_removal(init, name);
}

fn pull_done(init: &mut Init, key: &str, ok: bool, stderr: &str, status: ExitStatus) {
    let Some(pull) = init.containers.pulls.remove(key) else {
        return;
    };
    let s = init.containers.settings.clone();
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
        copy_stderr(init, w, stderr);
        if let Ok(digest) = &result {
            note(init, w, &format!("pulled image {} ({digest})", pull.image));
        }
        end_step(init, w, Step::Pull(key.to_string()), result.clone().err());
    }
}

// ---------------------------------------------------------------- stop

/// The supervisor's SIGTERM for a stopping service. True when it was a
/// container's: SIGTERM goes to the runtime, which forwards it; a pid 1
/// that cannot get it (no handler: the kernel drops it) is killed at once
/// instead of after `stop_timeout_secs` of nothing.
pub fn on_terminate(init: &mut Init, name: &str) -> bool {
    let Some(rt) = init.containers.services.get(name).and_then(|r| r.runtime) else {
        return false;
    };
    let drops = container_status(init, name, rt)
        .is_some_and(|(_, st)| runtime::pid1_drops_signal(&st, libc::SIGTERM));
    if drops {
        note(
            init,
            name,
            "the container's pid 1 has no SIGTERM handler: sending SIGKILL",
        );
        start_kill(init, name, rt);
    } else {
        let _ = kill(NixPid::from_raw(rt), Signal::SIGTERM);
    }
    true
}

/// The supervisor's SIGKILL of the service's tree. True when it was a
/// container whose runtime runs: the runtime kills the container (SIGKILL
/// to the runtime itself would orphan it). Once the runtime is gone the
/// loop's usual process-group and cgroup kill is right.
pub fn on_kill(init: &mut Init, name: &str) -> bool {
    let Some(rt) = init.containers.services.get(name).and_then(|r| r.runtime) else {
        return false;
    };
    start_kill(init, name, rt);
    true
}

fn start_kill(init: &mut Init, name: &str, rt: Pid) {
    if init
        .containers
        .services
        .get(name)
        .is_some_and(|r| r.killing.is_some())
    {
        return;
    }
    let s = init.containers.settings.clone();
    let argv = runtime::kill_argv(&s, name, "KILL");
    let kind = TaskKind::Kill {
        service: name.to_string(),
    };
    match spawn_service_tool(init, name, &argv, kind) {
        Ok(pid) => {
            if let Some(rec) = init.containers.services.get_mut(name) {
                rec.killing = Some(pid);
            }
        }
        Err(e) => {
            crate::warn!("cannot run the runtime's kill for '{name}': {e}");
            hard_kill(init, name, rt);
        }
    }
}

/// Last resort when the runtime cannot kill its container: the service's
/// cgroup holds runtime and container alike; without one, the runtime's
/// group goes (and `delete` after its exit removes what it made).
fn hard_kill(init: &mut Init, name: &str, rt: Pid) {
    match &init.cgroups {
        Some(cg) => cg.kill_all(name),
        None => {
            let _ = killpg(NixPid::from_raw(rt), Signal::SIGKILL);
        }
    }
}

/// The container's pid 1 and its `/proc/PID/status`, while the runtime
/// `rt` is its parent (so the pid file cannot name a recycled pid).
fn container_status(init: &Init, name: &str, rt: Pid) -> Option<(Pid, String)> {
    let pid = runtime::read_container_pid(&init.containers.settings, name)?;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let ppid = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|p| p.trim().parse::<Pid>().ok());
    (ppid == Some(rt)).then_some((pid, status))
}

/// No runtime, kill or delete of the service is left (the loop's check that
/// a stopped service's tree is gone).
pub fn tree_gone(init: &Init, name: &str) -> bool {
    init.containers
        .services
        .get(name)
        .is_none_or(|r| r.runtime.is_none() && r.killing.is_none() && r.deleting.is_none())
}

// ---------------------------------------------------------------- removal

/// The service was deleted: its bundle goes (the image stays in the store).
pub fn on_removed(init: &mut Init, name: &str) {
    match init.containers.services.get_mut(name) {
        Some(rec) => {
            rec.removed = true;
            rec.want = None;
            finish_removal(init, name);
        }
        None => {
            let s = init.containers.settings.clone();
            discard(init, &bundle::bundle_dir(&s, name));
        }
    }
}

fn finish_removal(init: &mut Init, name: &str) {
    let done = init
        .containers
        .services
        .get(name)
        .is_some_and(|r| r.removed && !r.busy());
    if !done || init.sup.get(name).is_some() {
        return;
    }
    init.containers.services.remove(name);
    let s = init.containers.settings.clone();
    discard(init, &bundle::bundle_dir(&s, name));
    container_gone(init, name);
}

// ---------------------------------------------------------------- exec

/// `POST /v1/services/{name}/exec` on a container service: the runtime's
/// exec with a process file (the container's user, cwd and env).
pub fn exec_command(
    init: &mut Init,
    name: &str,
    cmd: &[String],
) -> Result<ContainerExec, ApiError> {
    let running = matches!(
        init.sup.get(name).map(|s| &s.phase),
        Some(Phase::Running { .. })
    );
    let runtime = init.containers.services.get(name).and_then(|r| r.runtime);
    if !running || runtime.is_none() {
        return Err(ApiError::Conflict(format!(
            "service '{name}' is not running: its container cannot run commands"
        )));
    }
    let s = init.containers.settings.clone();
    init.containers.next_id = init.containers.next_id.wrapping_add(1);
    let id = init.containers.next_id;
    let process_file = runtime::exec_process_file(&s, name, id);
    let pid_file = runtime::exec_pid_file(&s, name, id);
    runtime::write_exec_process(&bundle::bundle_dir(&s, name), cmd, &process_file).map_err(
        |e| match e {
            error::ContainerError::EmptyExec => ApiError::InvalidDefinition(e.to_string()),
            e => ApiError::Internal(format!("cannot prepare the exec: {e}")),
        },
    )?;
    let mut argv = runtime::exec_argv(&s, name, &process_file, Some(&pid_file));
    // The exec runs with a clean environment: name the runtime by its path.
    if let (Ok(program), Some(first)) = (tool_program(&argv), argv.first_mut()) {
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
pub fn extra_fields(
    init: &Init,
    name: &str,
    extra: &mut serde_json::Map<String, serde_json::Value>,
) {
    let Some(svc) = init.sup.get(name) else {
        return;
    };
    if !svc.def.container {
        return;
    }
    let s = &init.containers.settings;
    let image = svc
        .def
        .image
        .as_deref()
        .and_then(|r| image::parse_image_ref(r).ok());
    let rec = init.containers.services.get(name);
    let digest = rec
        .and_then(|r| r.digest.clone())
        .or_else(|| image.as_ref().and_then(|i| store::image_digest(s, i)));
    let pulls = image
        .as_ref()
        .and_then(|i| init.containers.pull_counts.get(&i.to_string()))
        .copied()
        .unwrap_or(0);
    let cpid = rec
        .and_then(|r| r.runtime)
        .and_then(|rt| container_status(init, name, rt))
        .map(|(pid, _)| pid);
    extra.insert("image_digest".into(), serde_json::json!(digest));
    extra.insert("image_pulls".into(), serde_json::json!(pulls));
    extra.insert("container_pid".into(), serde_json::json!(cpid));
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

    #[test]
    fn a_tools_stderr_tail_is_kept() {
        let mut f =
            nix::sys::memfd::memfd_create(c"t", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC)
                .map(File::from)
                .unwrap();
        let long = "x".repeat(STDERR_TAIL as usize);
        std::io::Write::write_all(&mut f, long.as_bytes()).unwrap();
        std::io::Write::write_all(&mut f, b"\nlevel=fatal msg=\"boom\"\n").unwrap();
        let tail = read_tail(f);
        assert_eq!(tail.len() as u64, STDERR_TAIL);
        assert_eq!(error::tool_error_summary(&tail), "boom");
    }

    #[test]
    fn tools_get_path_and_home_and_nothing_else_unasked() {
        let env = tool_env(&[("TMPDIR".into(), "/store/tmp".into())]);
        let keys: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys.first(), Some(&"PATH"));
        assert!(keys.contains(&"HOME"));
        assert!(keys.contains(&"TMPDIR"));
        assert!(keys
            .iter()
            .all(|k| *k == "PATH" || *k == "TMPDIR" || TOOL_ENV.contains(k)));
    }
}
