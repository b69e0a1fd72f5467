#!/usr/bin/env python3
"""The memory-snapshot test (`make vm-test`, after vm-test.sh).

Boots the init in the microVM (base image plus rootfs/snapshot/: a command
agent on a second serial port, `snap-restart` with `on_restore = "restart"`,
`snap-signal` with `on_restore = "SIGUSR1"`, which records each SIGUSR1),
saves the running VM to a file through QMP (`stop`, then `migrate` to
`exec:cat > FILE`), ends that qemu, and resumes the same file twice in new
qemus (`-incoming "exec:cat FILE"`, then `cont`), a few seconds later each
time. After each resume the host calls `POST /v1/restore` with its own time
and different entropy (and, the second time, an explicit generation after a
restore with an empty body, which takes the time from the RTC), and checks
from the host: the guest clock within a second of the host's, a new pid for
the restarted service, the signal seen by the other, the report complete,
the generation in the report, in `GET /v1/system` and in
/run/iris/generation, and the first bytes of /dev/urandom after the restore
different between the two resumes.

The host reaches the guest through a second 16550 serial port (ttyS1) on a
unix socket: the cloud kernel has the 8250 driver built in, while
virtio-console, virtio-net and vsock are modules the image does not carry,
and it works under TCG and KVM alike. The agent runs the host's command
lines (irisctl on the API socket, cat, adjtimex) and frames their output.

Prints `ok`/`FAIL` lines and ends with `N passed, N failed`; exits non-zero
on any failure. Consoles in build/vm/test-snapshot-*.log.
Environment: IRIS_VM_TIMEOUT (seconds per boot, default 180).
"""

import base64
import datetime
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.normpath(os.path.join(HERE, "..", "build", "vm"))
TIMEOUT = int(os.environ.get("IRIS_VM_TIMEOUT", "180"))
PAUSE = 3  # seconds between saving and each resume

passes = 0
failures = 0


def ok(msg):
    global passes
    passes += 1
    print(f"vm-snapshot-test: ok   {msg}", flush=True)


def fail(msg):
    global failures
    failures += 1
    print(f"vm-snapshot-test: FAIL {msg}", flush=True)


def check(cond, msg, detail=""):
    if cond:
        ok(msg)
    else:
        fail(f"{msg}{': ' + detail if detail else ''}")
    return cond


def note(msg):
    print(f"vm-snapshot-test: note {msg}", flush=True)


class Stop(Exception):
    """A step that later steps cannot do without."""


def build_image():
    """base.cpio.gz with the snapshot overlay appended (the kernel unpacks
    concatenated archives in order)."""
    base = os.path.join(OUT, "base.cpio.gz")
    if not os.path.exists(base):
        raise Stop(f"no {base}; run rootfs/build.sh")
    src = os.path.join(HERE, "snapshot")
    names = subprocess.run(
        ["find", ".", "-mindepth", "1"], cwd=src, check=True, capture_output=True, text=True
    ).stdout.split()
    listing = "\n".join(sorted(names)) + "\n"
    cpio = subprocess.run(
        ["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"],
        cwd=src, input=listing.encode(), check=True, capture_output=True,
    ).stdout
    gz = subprocess.run(["gzip", "-6", "-n"], input=cpio, check=True, capture_output=True).stdout
    image = os.path.join(OUT, "snapshot-initramfs.cpio.gz")
    with open(image, "wb") as f, open(base, "rb") as b:
        shutil.copyfileobj(b, f)
        f.write(gz)
    return image


class VM:
    """One qemu: console to a log, QMP and the agent on unix sockets."""

    def __init__(self, name, image, work, incoming=None):
        self.log = os.path.join(OUT, f"test-snapshot-{name}.log")
        self.qmp_path = os.path.join(work, f"{name}.qmp")
        self.agent_path = os.path.join(work, f"{name}.agent")
        args = [
            "bash", os.path.join(HERE, "run-vm.sh"), "--test", "--timeout", str(TIMEOUT),
            "--initrd", image,
            "--qemu", "-qmp", "--qemu", f"unix:{self.qmp_path},server=on,wait=off",
            # A serial -device turns off qemu's default console serial: ask
            # for it again (ttyS0), then add the agent's port (ttyS1).
            "--qemu", "-serial", "--qemu", "mon:stdio",
            "--qemu", "-chardev",
            "--qemu", f"socket,id=agent,path={self.agent_path},server=on,wait=off",
            "--qemu", "-device", "--qemu", "isa-serial,chardev=agent,iobase=0x2f8,irq=3",
        ]
        if incoming:
            args += ["--qemu", "-incoming", "--qemu", f"exec:cat {incoming}"]
        self.logf = open(self.log, "wb")
        self.proc = subprocess.Popen(args, stdout=self.logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self.qmp = None
        self.qmp_buf = b""
        self.agent = None
        self.agent_buf = b""
        self.seq = 0

    def console(self):
        with open(self.log, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_console(self, text, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c = self.console()
            if text in c:
                return True
            if self.proc.poll() is not None or "Kernel panic" in c:
                return False
            time.sleep(0.2)
        return False

    # --- QMP ---------------------------------------------------------------
    def _connect(self, path, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                return s
            except OSError:
                s.close()
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise Stop(f"cannot connect to {os.path.basename(path)}")
                time.sleep(0.1)

    def _qmp_line(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.qmp_buf:
            self.qmp.settimeout(max(0.1, deadline - time.monotonic()))
            chunk = self.qmp.recv(65536)
            if not chunk:
                raise Stop("QMP connection closed")
            self.qmp_buf += chunk
        line, self.qmp_buf = self.qmp_buf.split(b"\n", 1)
        return json.loads(line)

    def qmp_cmd(self, cmd, args=None, timeout=60):
        if self.qmp is None:
            self.qmp = self._connect(self.qmp_path)
            self._qmp_line(timeout)  # the greeting
            self.qmp_cmd("qmp_capabilities")
        msg = {"execute": cmd}
        if args:
            msg["arguments"] = args
        self.qmp.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._qmp_line(timeout)
            if "return" in r:
                return r["return"]
            if "error" in r:
                raise Stop(f"QMP {cmd}: {r['error']}")
            # asynchronous events (STOP, RESUME, MIGRATION...) are skipped

    def wait_status(self, want, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.qmp_cmd("query-status")["status"]
            if st in want:
                return st
            time.sleep(0.1)
        raise Stop(f"qemu never reached {want}")

    def save(self, path):
        self.qmp_cmd("stop")
        self.qmp_cmd("migrate", {"uri": f"exec:cat > {path}"})
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            st = self.qmp_cmd("query-migrate").get("status")
            if st == "completed":
                return
            if st in ("failed", "cancelled"):
                raise Stop(f"migration {st}")
            time.sleep(0.1)
        raise Stop("migration did not complete")

    def quit(self):
        try:
            if self.proc.poll() is None:
                self.qmp_cmd("quit")
        except (Stop, OSError):
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for s in (self.qmp, self.agent):
            if s:
                s.close()
        self.logf.close()

    # --- the agent ---------------------------------------------------------
    def run(self, command, timeout=60):
        """Runs COMMAND in the guest: (exit status, output)."""
        if self.agent is None:
            self.agent = self._connect(self.agent_path)
        self.seq += 1
        tag = f"{os.getpid()}-{self.seq}"
        self.agent.sendall(f"RUN {tag} {command}\n".encode())
        deadline = time.monotonic() + timeout
        end = f"END {tag} ".encode()
        while True:
            i = self.agent_buf.find(end)
            if i >= 0 and b"\n" in self.agent_buf[i:]:
                j = self.agent_buf.index(b"\n", i)
                rc = int(self.agent_buf[i + len(end):j])
                output = self.agent_buf[:i].decode(errors="replace")
                self.agent_buf = self.agent_buf[j + 1:]
                # Lines the agent printed for earlier commands or at its
                # start (`AGENT ready`) are not this command's output.
                output = "\n".join(
                    l for l in output.splitlines() if not l.startswith("AGENT ")
                )
                return rc, output
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise Stop(f"no answer from the guest to: {command}")
            self.agent.settimeout(left)
            try:
                chunk = self.agent.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise Stop("the agent's serial socket closed")
            self.agent_buf += chunk

    def json(self, command):
        rc, out = self.run(command)
        if rc != 0:
            raise Stop(f"`{command}` exited {rc}: {out.strip()}")
        try:
            return json.loads(out)
        except ValueError:
            raise Stop(f"`{command}` printed no JSON: {out.strip()[:300]}")

    def wait_agent(self, timeout=TIMEOUT):
        """The agent answers once the service runs (sends a probe each second)."""
        if self.agent is None:
            self.agent = self._connect(self.agent_path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                rc, out = self.run("echo alive", timeout=2)
                if rc == 0 and "alive" in out:
                    return
            except Stop:
                if self.proc.poll() is not None:
                    raise
        raise Stop("the guest agent never answered")

    def wait_guest(self, command, timeout=30):
        """Runs COMMAND until it exits 0; its output."""
        deadline = time.monotonic() + timeout
        while True:
            rc, out = self.run(command)
            if rc == 0:
                return out
            if time.monotonic() > deadline:
                raise Stop(f"`{command}` never succeeded: {out.strip()}")
            time.sleep(0.2)

    def clock_offset(self):
        """Guest clock minus host clock, bounded by the round trip: (low, high)."""
        t0 = time.time()
        rc, out = self.run("adjtimex")
        t1 = time.time()
        fields = dict(
            l.split(":", 1) for l in out.splitlines() if l.strip().startswith("time.tv_")
        )
        fields = {k.strip(): int(v) for k, v in fields.items()}
        guest = fields["time.tv_sec"] + fields["time.tv_usec"] / 1e6
        return guest - t1, guest - t0

    def rtc_and_clock(self):
        """The RTC (whole seconds) and the system clock, read together."""
        rc, out = self.run("cat /sys/class/rtc/rtc0/since_epoch; adjtimex")
        lines = out.splitlines()
        if rc != 0 or not lines:
            raise Stop(f"cannot read the RTC: {out.strip()}")
        fields = {k.strip(): int(v) for k, v in (
            l.split(":", 1) for l in lines[1:] if l.strip().startswith("time.tv_"))}
        return int(lines[0]), fields["time.tv_sec"] + fields["time.tv_usec"] / 1e6

    def service(self, name):
        return self.json(f"irisctl status {name} --json")


def rfc3339_now():
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def restore(vm, body_flags):
    """POST /v1/restore through irisctl in the guest, with the host's time
    taken as late as possible."""
    parts = []
    if "entropy" in body_flags:
        b64 = base64.b64encode(body_flags["entropy"]).decode()
        parts.append(f"echo {b64} | base64 -d >/tmp/entropy &&")
    cmd = "irisctl restore --json"
    if "entropy" in body_flags:
        cmd += " --entropy-file /tmp/entropy"
    if "generation" in body_flags:
        cmd += f" --generation {body_flags['generation']}"
    if body_flags.get("time"):
        cmd += f" --time {rfc3339_now()}"
    return vm.json(" ".join(parts + [cmd]))


REPORT_KEYS = {
    "trigger", "timestamp", "started_services", "stopped_services", "failed_services",
    "state_file_error", "generation", "clock_step_ms", "reseeded",
    "restarted_services", "signalled_services", "errors",
}


def check_report(what, r, generation, pause):
    missing = REPORT_KEYS - set(r)
    check(not missing, f"{what}: the report has every field", f"missing {sorted(missing)}")
    check(r.get("trigger") == "api", f"{what}: trigger api", str(r.get("trigger")))
    check(r.get("errors") == [], f"{what}: no errors", str(r.get("errors")))
    check(r.get("reseeded") is True, f"{what}: the kernel's generator was reseeded")
    check(r.get("generation") == generation, f"{what}: generation {generation}",
          str(r.get("generation")))
    check(r.get("restarted_services") == ["snap-restart"],
          f"{what}: restarted_services is [snap-restart]", str(r.get("restarted_services")))
    check(r.get("signalled_services") == ["snap-signal"],
          f"{what}: signalled_services is [snap-signal]", str(r.get("signalled_services")))
    check(r.get("failed_services") == [], f"{what}: nothing failed", str(r.get("failed_services")))
    if pause is not None:
        step = r.get("clock_step_ms")
        check(isinstance(step, int) and step >= (pause - 1) * 1000,
              f"{what}: clock_step_ms {step} covers the {pause} s pause at least")


def check_clock(vm, what, within=1.0):
    low, high = vm.clock_offset()
    check(-within <= low and high <= within,
          f"{what}: guest clock within {within:g} s of the host's",
          f"guest minus host between {low:+.3f} and {high:+.3f} s")


def before_snapshot(vm):
    if not vm.wait_console("boot complete"):
        raise Stop("the guest never completed its boot")
    vm.wait_agent()
    vm.wait_guest("test -e /run/snap-trap-ready")
    pids = {}
    for name in ("snap-restart", "snap-signal"):
        s = vm.service(name)
        if s.get("status") != "running":
            raise Stop(f"{name} is {s.get('status')} before the snapshot: {s.get('error')}")
        pids[name] = s["pid"]
    check(vm.service("snap-restart").get("on_restore") == "restart",
          "the service object shows on_restore")
    system = vm.json("irisctl system --json")
    check(system.get("generation") == 0, "generation 0 after boot",
          str(system.get("generation")))
    return pids


def after_restore(vm, what, pids, generation, signals):
    """The policies applied, the generation everywhere, urandom's first bytes."""
    s = vm.service("snap-restart")
    check(s.get("status") == "running" and s.get("pid") not in (None, pids["snap-restart"]),
          f"{what}: snap-restart runs with a new pid",
          f"{s.get('status')}, pid {s.get('pid')} (was {pids['snap-restart']})")
    s = vm.service("snap-signal")
    check(s.get("pid") == pids["snap-signal"], f"{what}: snap-signal kept its pid")
    try:
        out = vm.wait_guest(f"test $(wc -l </run/snap-signals) -ge {signals}", timeout=20)
        _, out = vm.run("cat /run/snap-signals")
        lines = out.split("\n") if out else []
        check(len(lines) == signals and all(l == f"SIGUSR1 {pids['snap-signal']}" for l in lines),
              f"{what}: snap-signal saw SIGUSR1 {signals} time(s)", repr(out))
    except Stop as e:
        fail(f"{what}: snap-signal never saw SIGUSR1 ({e})")
    system = vm.json("irisctl system --json")
    check(system.get("generation") == generation, f"{what}: GET /v1/system shows generation {generation}",
          str(system.get("generation")))
    rc, out = vm.run("cat /run/iris/generation")
    check(rc == 0 and out.strip() == str(generation),
          f"{what}: /run/iris/generation holds {generation}", out.strip())
    rc, out = vm.run("head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'")
    return out.strip() if rc == 0 else None


def resume(image, work, saved, name, pids, plan):
    vm = VM(name, image, work, incoming=saved)
    try:
        vm.wait_status({"paused", "postmigrate", "prelaunch", "running"})
        vm.qmp_cmd("cont")
        vm.wait_status({"running"})
        low, _ = vm.clock_offset()
        note(f"{name}: before the restore the guest clock was {-low:.1f} s behind the host's")
        return plan(vm)
    except Stop as e:
        fail(f"{name}: {e}")
        return None
    finally:
        vm.quit()


def main():
    if shutil.which("qemu-system-x86_64") is None:
        fail("qemu-system-x86_64 missing; run rootfs/setup.sh")
        return
    work = tempfile.mkdtemp(prefix="iris-snap-")
    try:
        run_test(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_test(work):
    image = build_image()
    saved = os.path.join(work, "vm.state")
    print(f"vm-snapshot-test: boot; console in {OUT}/test-snapshot-boot.log", flush=True)
    vm = VM("boot", image, work)
    try:
        pids = before_snapshot(vm)
        vm.save(saved)
        ok(f"saved the running VM ({os.path.getsize(saved) // 1024} KiB) with QMP stop + migrate")
    finally:
        vm.quit()

    def first(vm):
        entropy = secrets.token_bytes(64)
        r = restore(vm, {"time": True, "entropy": entropy})
        check_clock(vm, "resume 1")
        check_report("resume 1", r, 1, PAUSE)
        return after_restore(vm, "resume 1", pids, 1, 1)

    def second(vm):
        # First with an empty body: as PID 1 the init takes the time from
        # the RTC (half a second at most off), then with the host's.
        r = restore(vm, {})
        check(r.get("errors") == [] and r.get("clock_step_ms", 0) >= (PAUSE - 1) * 1000,
              f"resume 2, empty body: the clock set from the RTC "
              f"(step {r.get('clock_step_ms')} ms, errors {r.get('errors')})")
        # The init's part: the clock now agrees with the RTC (which counts
        # whole seconds; the init takes the middle of the one it shows).
        # How right the RTC itself is, is qemu's part: noted only.
        rtc, guest = vm.rtc_and_clock()
        check(-0.6 <= guest - rtc <= 1.6,
              "resume 2, empty body: the guest clock agrees with the RTC",
              f"clock minus RTC {guest - rtc:+.3f} s")
        note(f"resume 2: after the migration the RTC was {rtc - time.time():+.1f} s "
             "from the host's time (whole seconds)")
        r = restore(vm, {"time": True, "entropy": secrets.token_bytes(48), "generation": 42})
        check_clock(vm, "resume 2")
        check_report("resume 2", r, 42, None)
        return after_restore(vm, "resume 2", pids, 42, 2)

    time.sleep(PAUSE)
    print(f"vm-snapshot-test: resume 1; console in {OUT}/test-snapshot-resume1.log", flush=True)
    bytes1 = resume(image, work, saved, "resume1", pids, first)
    time.sleep(PAUSE)
    print(f"vm-snapshot-test: resume 2; console in {OUT}/test-snapshot-resume2.log", flush=True)
    bytes2 = resume(image, work, saved, "resume2", pids, second)
    check(bytes1 and bytes2 and bytes1 != bytes2,
          "the first bytes of /dev/urandom after the restore differ between the resumes",
          f"{bytes1} / {bytes2}")


if __name__ == "__main__":
    try:
        main()
    except Stop as e:
        fail(str(e))
    except Exception as e:  # a bug in the test itself still ends with counts
        fail(f"{type(e).__name__}: {e}")
    print()
    print(f"vm-snapshot-test: {passes} passed, {failures} failed")
    sys.exit(1 if failures else 0)
