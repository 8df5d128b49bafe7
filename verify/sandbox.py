"""Run model-written programs (eval samples, reasoning SFT answers) in a subprocess with limits; classify the outcome.

The only place generated code runs: the eval score and the SFT data filter both call it, so one program gets one
verdict under one set of guards, and no code path runs model output in a bare interpreter.

Threat model, honestly: this guards the host and the evaluation run against *accidental* damage by model-written
code (infinite loops, fork bombs, memory hogs, stray file writes, network calls, reading the repository). It is not a
security boundary against a determined attacker. The in-process guard is a Python audit hook living in the same
interpreter as the untrusted code: code that digs out the hook's state (e.g. via `gc`) can switch it off, calls the
hook does not see get past it (`os.stat` is not audited, so the existence of files leaks; C extensions open files
without events), and reads of world-readable files are then stopped by nothing but that hook. The kernel-level layers
(limits, network namespace, unprivileged uid) hold regardless. For hostile code use a VM or gVisor/nsjail.

Layers, each on where the host allows it (`sandbox_capabilities()` reports what is on here):
- a fresh temporary working directory per sample (cwd, HOME and TMPDIR), removed afterwards; stripped environment;
  `python -I -S -B` (no site-packages, no user site, no bytecode writes), so sys.path is the stdlib only and the
  repository is never on it;
- resource limits set in the child before user code: RLIMIT_CPU, RLIMIT_AS (memory), RLIMIT_NPROC, RLIMIT_FSIZE
  (also caps stdout/stderr, which go to files), RLIMIT_NOFILE, no core files;
- a wall-clock timeout; the child leads its own session, and the whole process group is killed at the end (and,
  when the child runs under its own uid, every process of that uid);
- a network namespace with no interfaces (`unshare(CLONE_NEWNET)` as root, with a user namespace otherwise);
- as root: a drop to a fresh unprivileged uid (file permissions apply, and RLIMIT_NPROC is enforced; the kernel
  ignores RLIMIT_NPROC for root), when the interpreter's stdlib is readable by other users;
- an audit hook (`sys.addaudithook`, cannot be removed) that blocks: opening files outside the work dir except
  read-only access to the stdlib; listing directories outside them; writes, renames, deletes outside the work dir;
  fork/exec/spawn/system/Popen and importing `_posixsubprocess` (so `subprocess`/`multiprocessing` are refused);
  socket connect/bind/send and DNS; killing other processes; ctypes; raising resource limits. A blocked action
  raises an exception that derives from BaseException (so `except Exception` cannot swallow it) and the verdict is
  `blocked` with the reason.

Verdicts: passed, failed (an AssertionError), error (any other exception, a syntax error, an early exit), timeout
(wall clock or CPU limit), memory (MemoryError under RLIMIT_AS), killed (a signal: output size limit, crash), blocked.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nano2.errors import Nano2Error

Verdict = Literal["passed", "failed", "error", "timeout", "memory", "killed", "blocked"]
VERDICTS: tuple[Verdict, ...] = ("passed", "failed", "error", "timeout", "memory", "killed", "blocked")
PROGRAM_NAME = "solution.py"
_SANDBOX_UID_BASE = 2_100_000_000  # far above system and subuid ranges; one fresh uid per sample


class SandboxLimits(BaseModel):
    """Per-sample limits. `allow_fork` lets the program fork (only where RLIMIT_NPROC is enforced by the kernel)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    wall_s: float = Field(10.0, gt=0, description="wall-clock seconds before the process group is killed")
    cpu_s: int = Field(10, ge=1, description="CPU seconds (RLIMIT_CPU)")
    memory_mb: int = Field(1024, ge=128, description="address space in MiB (RLIMIT_AS)")
    nproc: int = Field(16, ge=1, description="processes/threads of the sandbox user (RLIMIT_NPROC)")
    file_size_mb: int = Field(16, ge=1, description="largest file the program may write, stdout/stderr included")
    open_files: int = Field(64, ge=16, description="file descriptors (RLIMIT_NOFILE)")
    output_bytes: int = Field(65536, ge=1024, description="bytes of stdout and of stderr kept in the result")
    allow_fork: bool = Field(False, description="let the program fork (needs a kernel-enforced RLIMIT_NPROC)")


@dataclass(frozen=True)
class SandboxResult:
    verdict: Verdict
    reason: str
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    exit_code: int | None = None
    signal_name: str | None = None
    wall_s: float = 0.0
    isolation: dict[str, Any] = field(default_factory=dict)
    pid: int | None = None  # also the process group id; everything in it was killed before returning

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"


@dataclass(frozen=True)
class SandboxCapabilities:
    """What the sandbox can enforce on this host (record it with results; see the module docstring)."""

    interpreter: str
    network_mode: str  # "tool" (unshare(1) wrapper), "net" / "user+net" (the child unshares), "none"
    privilege_drop: bool
    nproc_enforced: bool
    running_as_root: bool
    notes: tuple[str, ...] = ()

    @property
    def network_namespace(self) -> bool:
        return self.network_mode != "none"

    def to_dict(self) -> dict[str, Any]:
        return {
            "interpreter": self.interpreter,
            "network_mode": self.network_mode,
            "privilege_drop": self.privilege_drop,
            "nproc_enforced": self.nproc_enforced,
            "running_as_root": self.running_as_root,
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------------------------------------------------------------
# The child side. This function is sent as source text to `python -I -S -c`, so it imports only the stdlib, defines
# everything it needs inside itself, and never touches the repository.
# ---------------------------------------------------------------------------------------------------------------------


def _child_main() -> None:
    """Isolate (network namespace, limits, uid), install the audit hook, run solution.py, report on the result fd."""
    # Only builtin modules here (json, traceback or signal would import re/enum and double the start-up time).
    import _signal
    import os
    import resource
    import sys

    _signal.signal(_signal.SIGXFSZ, _signal.SIG_DFL)  # Python ignores it; at the file size limit the kernel kills us

    config = eval(sys.argv[1], {"__builtins__": {}})  # a dict literal written by the parent
    sys.argv = [config["program"]]
    result_fd = config["result_fd"]
    report: dict = {"verdict": "error", "reason": "", "network_isolated": False, "uid": os.getuid()}

    def unshare(flags: int) -> None:
        if hasattr(os, "unshare"):
            os.unshare(flags)
            return
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(flags) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))

    if config["netns"] in ("net", "user+net"):  # otherwise "tool": the unshare(1) wrapper already did it
        uid, gid = os.getuid(), os.getgid()
        try:
            if config["netns"] == "net":
                unshare(0x40000000)  # CLONE_NEWNET
            else:
                unshare(0x10000000 | 0x40000000)  # CLONE_NEWUSER | CLONE_NEWNET, then map our own ids
                for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
                    with open(f"/proc/self/{name}", "w") as handle:
                        handle.write(text)
        except OSError as exc:
            report["network_error"] = str(exc)
        for name in ("ctypes", "_ctypes", "ctypes._endian"):  # a later `import ctypes` must go through the hook
            sys.modules.pop(name, None)
    try:
        report["network_isolated"] = os.readlink("/proc/self/ns/net") != config["parent_netns"]
    except OSError as exc:
        report["network_error"] = f"cannot read /proc/self/ns/net: {exc}"

    limits = config["limits"]

    def lower(kind: int, soft: int, hard: int | None = None) -> None:
        hard = soft if hard is None else hard
        _, current_hard = resource.getrlimit(kind)
        if current_hard != resource.RLIM_INFINITY:
            hard = min(hard, current_hard)
        resource.setrlimit(kind, (min(soft, hard), hard))

    lower(resource.RLIMIT_CPU, limits["cpu_s"], limits["cpu_s"] + 1)
    lower(resource.RLIMIT_AS, limits["memory_bytes"])
    lower(resource.RLIMIT_NPROC, limits["nproc"])
    lower(resource.RLIMIT_FSIZE, limits["file_size_bytes"])
    lower(resource.RLIMIT_NOFILE, limits["open_files"])
    lower(resource.RLIMIT_CORE, 0)

    if config["uid"] is not None:
        os.setgroups([])
        os.setresgid(config["uid"], config["uid"], config["uid"])
        os.setresuid(config["uid"], config["uid"], config["uid"])
    report["uid"] = os.getuid()

    workdir = os.path.realpath(os.getcwd())
    with open(config["program"], encoding="utf-8") as handle:
        source = handle.read()

    class SandboxViolation(BaseException):
        """Raised by the audit hook; a BaseException so that `except Exception` in user code cannot hide it."""

    read_roots = [workdir] + [os.path.realpath(entry) for entry in sys.path if entry]
    write_roots = [workdir]
    devices = {"/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"}
    violations: list[str] = []
    state = {"active": False, "forked": False}
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    realpath, fspath, fsdecode = os.path.realpath, os.fspath, os.fsdecode
    process_events = {"os.exec", "os.posix_spawn", "os.spawn", "os.system", "subprocess.Popen", "os.startfile"}
    fork_events = {"os.fork", "os.forkpty"}
    network_events = {
        "socket.connect",
        "socket.bind",
        "socket.sendto",
        "socket.sendmsg",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyname_ex",
        "socket.gethostbyaddr",
        "socket.getnameinfo",
    }
    native_events = {"ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.call_function"}
    path_write_events = {
        "os.remove",
        "os.rmdir",
        "os.mkdir",
        "os.chmod",
        "os.chown",
        "os.utime",
        "os.truncate",
        "os.chflags",
        "os.lchflags",
        "os.setxattr",
        "os.removexattr",
        "shutil.rmtree",
        "shutil.chown",
    }
    copy_events = {"os.link", "shutil.copyfile", "shutil.copytree", "shutil.copymode", "shutil.copystat"}

    def resolve(path: object) -> str | None:
        if path is None or isinstance(path, int):  # an already-open descriptor was checked when it was opened
            return None
        try:
            return realpath(fsdecode(fspath(path)))  # type: ignore[arg-type]
        except (TypeError, ValueError, OSError):
            return "<unresolvable path>"

    def inside(path: str, roots: list[str]) -> bool:
        return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)

    def block(reason: str) -> None:
        violations.append(reason)
        raise SandboxViolation(reason)

    def check_read(path: object) -> None:
        resolved = resolve(path)
        if resolved is None or resolved in devices or inside(resolved, read_roots):
            return
        block(f"read outside the sandbox: {resolved}")

    def check_write(path: object) -> None:
        resolved = resolve(path)
        if resolved is None or resolved == "/dev/null" or inside(resolved, write_roots):
            return
        block(f"write outside the sandbox: {resolved}")

    def hook(event: str, args: tuple) -> None:
        if not state["active"]:
            return
        if event == "open":
            path, mode, flags = (*args, None, None, None)[:3]
            writing = bool(flags & write_flags) if isinstance(flags, int) else any(c in str(mode or "") for c in "wax+")
            (check_write if writing else check_read)(path)
        elif event in ("os.listdir", "os.scandir"):
            check_read(args[0] if args and args[0] is not None else ".")
        elif event in path_write_events:
            check_write(args[0])
        elif event == "os.rename":
            check_write(args[0])
            check_write(args[1])
        elif event == "os.symlink":
            check_write(args[1])
        elif event in copy_events or event == "shutil.move":
            (check_write if event == "shutil.move" else check_read)(args[0])
            check_write(args[1])
        elif (event in fork_events and not config["allow_fork"]) or event in process_events:
            block(f"process creation ({event})")
        elif event in network_events:
            block(f"network access ({event})")
        elif event in native_events:
            block(f"native code access ({event})")
        elif event in ("resource.setrlimit", "resource.prlimit"):
            block(f"changing resource limits ({event})")
        elif event in ("os.kill", "os.killpg", "signal.pthread_kill"):
            if event != "os.kill" or args[0] != os.getpid():
                block(f"signalling another process ({event})")
        elif event in ("os.chroot", "os.setns", "os.unshare"):
            block(f"namespace change ({event})")
        elif event == "import" and args and args[0] == "_posixsubprocess":
            # its fork_exec() raises no audit event of its own (multiprocessing calls it directly), and an exec'd
            # program runs without this hook; `import subprocess` needs it, so subprocess is refused at import
            block("process creation (import _posixsubprocess)")

    def in_child_after_fork() -> None:
        state["forked"] = True

    os.register_at_fork(after_in_child=in_child_after_fork)
    reserve = bytearray(4 << 20)  # freed on MemoryError so the report can still be written
    sys.addaudithook(hook)

    def last_program_line(exc: BaseException) -> str:
        line, tb = None, exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == config["program"]:
                line = tb.tb_lineno
            tb = tb.tb_next
        if line is None:
            return ""
        lines = source.splitlines()
        text = lines[line - 1].strip()[:200] if 0 < line <= len(lines) else ""
        return f" (line {line}: {text})"

    def describe(exc: BaseException) -> str:
        try:
            message = str(exc)[:300]
        except BaseException:  # a user exception whose __str__ fails
            message = "<unprintable>"
        return f"{type(exc).__name__}: {message}" if message else type(exc).__name__

    def print_traceback(exc: BaseException) -> None:
        try:
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        except BaseException:
            pass

    namespace: dict = {"__name__": "solution", "__file__": config["program"], "__builtins__": __builtins__}
    try:
        code = compile(source, config["program"], "exec")
        state["active"] = True
        exec(code, namespace)
        state["active"] = False
        report.update(verdict="passed", reason="")
    except SandboxViolation as exc:
        state["active"] = False
        report.update(verdict="blocked", reason=str(exc))
    except AssertionError as exc:
        state["active"] = False
        report.update(verdict="failed", reason=describe(exc) + last_program_line(exc))
        print_traceback(exc)
    except MemoryError:
        state["active"] = False
        del reserve
        namespace.clear()
        report.update(verdict="memory", reason=f"MemoryError (address space limit {limits['memory_bytes']} bytes)")
    except SystemExit as exc:
        state["active"] = False
        report.update(verdict="error", reason=f"SystemExit({describe(exc)}) before the program finished")
    except BaseException as exc:
        state["active"] = False
        report.update(verdict="error", reason=describe(exc) + last_program_line(exc))
        print_traceback(exc)
    if violations:  # a violation the program caught still decides the verdict
        report.update(verdict="blocked", reason=violations[0])
    if state["forked"]:  # a forked copy of the program must not write the parent's report
        os._exit(0)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    os.write(result_fd, repr(report).encode("utf-8"))
    os._exit(0)


_CHILD_SOURCE = textwrap.dedent(inspect.getsource(_child_main)) + "\n_child_main()\n"


# ---------------------------------------------------------------------------------------------------------------------
# The parent side
# ---------------------------------------------------------------------------------------------------------------------


def _interpreter_candidates() -> list[str]:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    names = [
        getattr(sys, "_base_executable", None) or sys.executable,
        f"/usr/bin/{version}",
        f"/usr/local/bin/{version}",
    ]
    out = []
    for name in names:
        if name and os.path.isfile(name) and os.access(name, os.X_OK):
            real = os.path.realpath(name)
            if real not in out:
                out.append(real)
    return out


def _describe_interpreter(path: str) -> dict[str, Any] | None:
    """Version and sys.path of an interpreter started the way the sandbox starts it; None if it fails."""
    probe = "import json, sys; print(json.dumps({'version': list(sys.version_info[:2]), 'path': sys.path}))"
    try:
        out = subprocess.run([path, "-I", "-S", "-c", probe], capture_output=True, text=True, timeout=30, check=True)
        return json.loads(out.stdout)
    except (OSError, subprocess.SubprocessError, json.JSONDecodeError):
        return None


def _readable_by_others(path: str) -> bool:
    """Whether a user with no relation to the owner can reach and read `path` (world x on every ancestor)."""
    current = Path(path)
    if not current.exists():
        return True  # a missing sys.path entry (pythonXY.zip) is never opened
    mode = current.stat().st_mode
    if current.is_dir() and (mode & 0o005) != 0o005:
        return False
    if current.is_file() and not mode & 0o004:
        return False
    return all(parent.stat().st_mode & 0o001 for parent in current.parents)


@lru_cache(maxsize=1)
def sandbox_capabilities() -> SandboxCapabilities:
    """Probe once what this host lets the sandbox enforce: interpreter, network namespace, privilege drop."""
    root = os.geteuid() == 0
    notes: list[str] = []
    candidates = _interpreter_candidates()
    same_version = []
    for candidate in candidates:
        described = _describe_interpreter(candidate)
        if described and tuple(described["version"]) == sys.version_info[:2]:
            same_version.append((candidate, described))
    if not same_version:
        raise Nano2Error(f"no usable Python interpreter for the sandbox among {candidates}")
    interpreter, privilege_drop = same_version[0][0], False
    if root:
        for candidate, described in same_version:
            if _readable_by_others(candidate) and all(_readable_by_others(p) for p in described["path"]):
                interpreter, privilege_drop = candidate, True
                break
        if not privilege_drop:
            notes.append(
                "running as root and no interpreter's stdlib is readable by other users: the child stays root, so "
                "the kernel does not enforce RLIMIT_NPROC and file permissions do not apply; fork is blocked by the "
                "audit hook only"
            )
        elif interpreter != same_version[0][0]:
            notes.append(f"{same_version[0][0]}'s stdlib is not readable by other users; using {interpreter}")
    # Network namespace: as root the unshare(1) tool is cheapest (no ctypes import in the child); otherwise the
    # child unshares itself (a user namespace lets an unprivileged user do it where the kernel allows).
    modes = (["tool"] if root and shutil.which("unshare") else []) + ["net" if root else "user+net"]
    network_mode, failures = "none", []
    for mode in modes:
        probe = _run("pass\n", SandboxLimits(wall_s=30), interpreter=interpreter, netns=mode, drop_uid=privilege_drop)
        if probe.verdict == "passed" and probe.isolation.get("network_isolated"):
            network_mode = mode
            break
        failures.append(f"{mode}: {probe.isolation.get('network_error') or probe.reason or probe.stderr[-200:]}")
    probe = _run(
        "pass\n", SandboxLimits(wall_s=30), interpreter=interpreter, netns=network_mode, drop_uid=privilege_drop
    )
    if probe.verdict != "passed":
        raise Nano2Error(
            f"the sandbox cannot run a trivial program here: {probe.verdict}: {probe.reason} {probe.stderr[-500:]}"
        )
    if network_mode == "none":
        notes.append(f"no network namespace ({'; '.join(failures)}): network access is blocked by the audit hook only")
    return SandboxCapabilities(
        interpreter=interpreter,
        network_mode=network_mode,
        privilege_drop=privilege_drop,
        nproc_enforced=privilege_drop or not root,
        running_as_root=root,
        notes=tuple(notes),
    )


@lru_cache(maxsize=1)
def _unshare_tool() -> str:
    tool = shutil.which("unshare")
    if tool is None:
        raise Nano2Error("the unshare tool (util-linux) is not on PATH")
    return tool


def _fresh_uid() -> int:
    return _SANDBOX_UID_BASE + random.SystemRandom().randrange(100_000_000)


def processes_of_uid(uid: int) -> list[int]:
    """Live (non-zombie) processes running as `uid` (the owner of /proc/PID is the process's effective uid)."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat(follow_symlinks=False).st_uid != uid:
                continue
            with open(f"/proc/{entry.name}/stat", encoding="utf-8") as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X"):
            pids.append(int(entry.name))
    return pids


def _kill_everything(pgid: int, uid: int | None) -> None:
    """Kill the process group, and every process of the sandbox uid (which also catches setsid() escapees)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    if uid is None:
        return
    for _ in range(200):
        pids = processes_of_uid(uid)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def _read_capped(path: Path, limit: int) -> tuple[str, bool]:
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    return data[:limit].decode("utf-8", errors="replace"), len(data) > limit


def _remove_tree(path: Path) -> None:
    def make_writable_and_retry(function, target, _exc_info):
        try:
            os.chmod(os.path.dirname(target), 0o700)
            os.chmod(target, 0o700)
            function(target)
        except OSError:
            pass

    shutil.rmtree(path, onerror=make_writable_and_retry)


def _run(source: str, limits: SandboxLimits, *, interpreter: str, netns: str, drop_uid: bool) -> SandboxResult:
    base = Path(tempfile.mkdtemp(prefix="nano2-sandbox-"))
    uid = _fresh_uid() if drop_uid else None
    started = time.perf_counter()
    try:
        os.chmod(base, 0o711)  # the sandbox uid may pass through, not list or read
        workdir, iodir = base / "work", base / "io"
        workdir.mkdir(mode=0o700)
        iodir.mkdir(mode=0o700)
        (workdir / PROGRAM_NAME).write_text(source, encoding="utf-8")
        if uid is not None:
            os.chown(workdir, uid, uid)
            os.chown(workdir / PROGRAM_NAME, uid, uid)
        config = {
            "program": PROGRAM_NAME,
            "netns": netns,
            "parent_netns": os.readlink("/proc/self/ns/net"),
            "uid": uid,
            "allow_fork": limits.allow_fork,
            "limits": {
                "cpu_s": limits.cpu_s,
                "memory_bytes": limits.memory_mb << 20,
                "nproc": limits.nproc,
                "file_size_bytes": limits.file_size_mb << 20,
                "open_files": limits.open_files,
            },
        }
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(workdir),
            "TMPDIR": str(workdir),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
        }
        with (
            (iodir / "stdout").open("wb") as stdout,
            (iodir / "stderr").open("wb") as stderr,
            (iodir / "result").open("wb+") as result,
        ):
            config["result_fd"] = result.fileno()
            command = [interpreter, "-I", "-S", "-B", "-X", "utf8", "-c", _CHILD_SOURCE, repr(config)]
            if netns == "tool":
                command = [_unshare_tool(), "--net", "--", *command]
            process = subprocess.Popen(
                command,
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                pass_fds=(result.fileno(),),
                start_new_session=True,
                close_fds=True,
            )
            timed_out = False
            try:
                process.wait(timeout=limits.wall_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_everything(process.pid, uid)
                process.wait()
            elapsed = time.perf_counter() - started
            result.seek(0)
            raw_report = result.read(1 << 20)
        out_text, out_cut = _read_capped(iodir / "stdout", limits.output_bytes)
        err_text, err_cut = _read_capped(iodir / "stderr", limits.output_bytes)
        report: dict[str, Any] = {}
        if raw_report:
            try:
                parsed = ast.literal_eval(raw_report.decode("utf-8", errors="replace"))
                report = parsed if isinstance(parsed, dict) else {}
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                report = {}
        verdict, reason, signal_name = _classify(process.returncode, timed_out, report, limits)
        isolation = {
            "network_isolated": bool(report.get("network_isolated")),
            "uid": report.get("uid"),
            **({"network_error": report["network_error"]} if "network_error" in report else {}),
        }
        return SandboxResult(
            verdict=verdict,
            reason=reason,
            stdout=out_text,
            stderr=err_text,
            stdout_truncated=out_cut,
            stderr_truncated=err_cut,
            exit_code=process.returncode,
            signal_name=signal_name,
            wall_s=round(elapsed, 4),
            isolation=isolation,
            pid=process.pid,
        )
    finally:
        _remove_tree(base)


def _classify(
    returncode: int, timed_out: bool, report: dict[str, Any], limits: SandboxLimits
) -> tuple[Verdict, str, str | None]:
    """The verdict from the child's own report when it wrote one, else from how the process ended."""
    signal_name = None
    if returncode is not None and returncode < 0:
        try:
            signal_name = signal.Signals(-returncode).name
        except ValueError:
            signal_name = f"signal {-returncode}"
    if timed_out:
        return "timeout", f"wall-clock limit of {limits.wall_s:g} s", signal_name
    if report.get("verdict") in VERDICTS:
        return report["verdict"], str(report.get("reason", "")), signal_name
    if signal_name == "SIGXCPU":
        return "timeout", f"CPU limit of {limits.cpu_s} s", signal_name
    if signal_name == "SIGXFSZ":
        return "killed", f"output or file size limit of {limits.file_size_mb} MiB exceeded", signal_name
    if signal_name is not None:
        return "killed", f"killed by {signal_name}", signal_name
    return "error", f"exited with code {returncode} before reporting a result", None


def run_program(source: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run one Python program (solution plus its tests) in the sandbox and return the verdict."""
    limits = limits or SandboxLimits()
    capabilities = sandbox_capabilities()
    if limits.allow_fork and not capabilities.nproc_enforced:
        raise Nano2Error(
            "allow_fork needs a kernel-enforced RLIMIT_NPROC, which this host cannot give the sandbox: "
            + "; ".join(capabilities.notes)
        )
    return _run(
        source,
        limits,
        interpreter=capabilities.interpreter,
        netns=capabilities.network_mode,
        drop_uid=capabilities.privilege_drop,
    )


def run_programs(
    sources: Sequence[str],
    limits: SandboxLimits | None = None,
    workers: int = 2,
    on_result: Callable[[int, SandboxResult], None] | None = None,
) -> list[SandboxResult]:
    """Run many programs with a small pool (each is its own subprocess); results come back in input order.

    `on_result(index, result)` is called as each finishes (progress bars, streaming JSONL).
    """
    if workers < 1:
        raise Nano2Error(f"workers must be >= 1, got {workers}")
    sandbox_capabilities()  # probe once before the threads start
    results: list[SandboxResult | None] = [None] * len(sources)

    def work(index: int) -> None:
        result = run_program(sources[index], limits)
        results[index] = result
        if on_result is not None:
            on_result(index, result)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(work, index) for index in range(len(sources))]:
            future.result()
    return [result for result in results if result is not None]
