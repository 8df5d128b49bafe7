"""Run model-written programs (eval samples, reasoning SFT answers, code rewards) under kernel isolation; judge them.

The only place generated code runs: the eval score, the SFT data filter and the rewards all call it, so one program
gets one verdict under one set of guards, and no code path runs model output in a bare interpreter.

The boundary is the kernel, through bubblewrap (Debian's `bubblewrap`, the tool Flatpak builds on; chosen over
nsjail because it is packaged in Debian, needs no config language, and runs unprivileged through user namespaces as
well as under root). Each program runs in `bwrap` with:
- new user, mount, pid, network, ipc, uts (and cgroup where possible) namespaces, `--die-with-parent`,
  `--new-session` (no terminal to inject into); no `/proc` is mounted;
- a read-only root holding only the interpreter, its stdlib and the shared libraries they load (no repository,
  no host `/tmp`, `/dev/shm` or `$HOME`); `_ctypes` is masked so native code cannot be loaded; a private size-capped
  tmpfs `/tmp` is the working directory, HOME and TMPDIR; a private minimal `/dev`;
- a seccomp filter (x86-64) that refuses ptrace, process_vm_*, mount, namespace creation (unshare, setns, clone
  with namespace flags), keyctl, bpf, perf_event_open, userfaultfd, io_uring, kernel-module and reboot calls, and
  every `socket()`;
- resource limits set before user code (CPU, address space, processes, file size, descriptors, no core files); as
  root, bwrap itself runs under a fresh unprivileged uid, so RLIMIT_NPROC is enforced and the uid's whole process
  set can be killed; at the deadline the process group is killed, which takes bwrap's pid namespace with it.
Without bwrap the sandbox refuses to run anything (`SandboxUnavailable`); there is no weaker fallback. A Python audit
hook stays inside as defence in depth (process creation, network, ctypes, limit changes, signals, introspection).

Verdicts the program cannot forge: the program text reaches the harness on a descriptor it reads and closes before
any user code runs, together with a per-run secret drawn by the parent. The verdict goes back on a pipe whose first
line must carry that secret; the harness writes it only after the last test statement has run and the checks below
hold, then `os._exit`s. Anything else on the pipe (a forged `passed`, a line without the secret, extra bytes) scores
`failed`, as does no line at all (`sys.exit`, `os._exit`, a crash before the end). The secret lives only in the
harness's frame: the introspection that could reach it (frames via `sys._getframe`, tracebacks or generators,
`gc`, tracing hooks, ctypes, `/proc/self/mem`) is refused by the hook or absent from the mount.
The tests (the trusted part: a benchmark's asserts, a task's checks) run in their own namespace with a pristine copy
of the builtins, and are rewritten so that every value they compare, combine, negate or assert must be of a built-in
static type (recursively through containers): an object whose `__eq__` always returns True, or whose `__sub__`
returns 0, cannot pass. The builtins module and every module the tests import (and their classes) are snapshotted
before the solution runs; a solution that patches them (`unittest.TestCase.assertEqual`, `builtins.isinstance`,
`math.isclose`) scores `failed`.

Verdicts: passed, failed (an AssertionError, an early exit, a forged or missing verdict, patched test helpers),
error (any other exception, a syntax error), timeout (wall clock or CPU limit), memory (MemoryError under
RLIMIT_AS), killed (a signal: output size limit, crash), blocked (the audit hook refused an action).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import platform
import random
import secrets
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
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
TESTS_NAME = "tests.py"
SANDBOX_DIR = "/tmp"  # the private tmpfs inside the sandbox: cwd, HOME and TMPDIR
_SANDBOX_UID_BASE = 2_000_000_000  # < 2**31 (bwrap reads an int); far above system uids; one fresh uid per run
_PAYLOAD_FD, _VERDICT_FD, _SECCOMP_FD = 3, 4, 5


class SandboxUnavailable(Nano2Error):
    """The kernel isolation tool is missing or cannot run here: generated code is refused, never run unguarded."""


class SandboxLimits(BaseModel):
    """Per-sample limits. `allow_fork` lets the program fork (RLIMIT_NPROC and the pid namespace still cap it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    wall_s: float = Field(10.0, gt=0, description="wall-clock seconds before the process tree is killed")
    cpu_s: int = Field(10, ge=1, description="CPU seconds (RLIMIT_CPU)")
    memory_mb: int = Field(1024, ge=128, description="address space in MiB (RLIMIT_AS)")
    nproc: int = Field(16, ge=1, description="processes/threads the program may add (RLIMIT_NPROC)")
    file_size_mb: int = Field(16, ge=1, description="largest file the program may write, stdout/stderr included")
    tmp_size_mb: int = Field(64, ge=1, description="size of the private /tmp (all files together)")
    open_files: int = Field(64, ge=16, description="file descriptors (RLIMIT_NOFILE)")
    output_bytes: int = Field(65536, ge=1024, description="bytes of stdout and of stderr kept in the result")
    allow_fork: bool = Field(False, description="let the program fork (the audit hook refuses it otherwise)")


@dataclass(frozen=True)
class Program:
    """A solution (untrusted) and the tests that judge it (trusted); the preamble (imports) runs before both."""

    solution: str
    tests: str = ""
    preamble: str = ""


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
    cpu_s: float | None = None  # CPU of the interpreter inside the jail (the parent's rusage never sees it)
    isolation: dict[str, Any] = field(default_factory=dict)
    pid: int | None = None  # also the process group id; everything in it was killed before returning

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"


@dataclass(frozen=True)
class SandboxCapabilities:
    """What the sandbox enforces on this host (recorded with results)."""

    interpreter: str
    tool: str
    tool_version: str
    running_as_root: bool
    privilege_drop: bool
    seccomp: bool
    binds: tuple[str, ...]
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "interpreter": self.interpreter,
            "tool": self.tool,
            "tool_version": self.tool_version,
            "namespaces": ["user", "mount", "pid", "net", "ipc", "uts"],
            "running_as_root": self.running_as_root,
            "privilege_drop": self.privilege_drop,
            "seccomp": self.seccomp,
            "read_only_binds": list(self.binds),
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------------------------------------------------------------
# The harness. Sent as source text to `python -I -S -B -c` inside bwrap: it imports only the stdlib and defines
# everything inside itself, so nothing of it is reachable from the solution's globals.
# ---------------------------------------------------------------------------------------------------------------------


def _child_main() -> None:
    """Read the payload, set limits, install the hook, run preamble + solution + rewritten tests, report."""
    import _signal
    import ast
    import builtins
    import contextlib
    import os
    import resource
    import sys

    _signal.signal(_signal.SIGXFSZ, _signal.SIG_DFL)  # Python ignores it; at the file size limit the kernel kills us
    payload_fd, verdict_fd = int(sys.argv[1]), int(sys.argv[2])
    chunks = []
    while True:
        chunk = os.read(payload_fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(payload_fd)
    config = ast.literal_eval(b"".join(chunks).decode("utf-8"))
    del chunks
    sys.argv = [config["program"]]
    report: dict = {"verdict": "error", "reason": "", "uid": os.getuid()}
    exit_now, type_, id_, len_, isinstance_ = os._exit, type, id, len, isinstance
    assertion_error, memory_error, system_exit = AssertionError, MemoryError, SystemExit  # a program may rebind them
    str_, getattr_, dict_, set_ = str, getattr, dict, set

    def seal(secret: bytes, fd: int, write: object, repr_: object, flush: object) -> object:
        """The one writer of the verdict; the secret lives only in its closure (no frame's locals show it)."""

        def finish(report: dict) -> None:
            with contextlib.suppress(BaseException):
                flush()
            usage = getrusage(rusage_self)
            report["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 4)
            write(fd, secret + b" " + repr_(report).encode("utf-8", "replace") + b"\n")
            exit_now(0)

        return finish

    getrusage, rusage_self = resource.getrusage, resource.RUSAGE_SELF

    def flush_both() -> None:
        sys.stdout.flush()
        sys.stderr.flush()

    finish = seal(config.pop("secret").encode("ascii"), verdict_fd, os.write, repr, flush_both)
    del verdict_fd

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

    # -- the trusted tests: compiled now, before any untrusted code runs, with strict comparisons -------------------
    heap_flag = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class made at run time, whose methods can be anything...
    immutable_flag = 1 << 8  # ...unless Py_TPFLAGS_IMMUTABLETYPE (C types such as re.Match; never a `class`)

    trusted_heap_types: set = set_()  # stdlib classes of the watched modules (Counter, Fraction), filled below
    containers = ((dict, dict.items), (list, list.__iter__), (tuple, tuple.__iter__), (set, set.__iter__))
    containers += ((frozenset, frozenset.__iter__),)
    issubclass_ = issubclass

    harmless = {"__module__", "__qualname__", "__doc__", "__slots__", "__init__", "__new__", "__repr__", "__str__"}
    harmless |= {"__dict__", "__weakref__", "__annotations__", "__match_args__", "__getnewargs__", "__orig_bases__"}
    harmless |= {"__parameters__", "__init_subclass__", "__class_getitem__", "__format__", "__reduce__"}
    harmless |= {"__reduce_ex__", "__getstate__", "__setstate__", "__copy__", "__deepcopy__"}

    def honest_class(kind: type) -> bool:
        """No class in its MRO that Python code made (and we do not watch) defines a comparison, arithmetic, truth
        or container method: an object like that could answer any test (`__eq__` returning True)."""
        for klass in kind.__mro__:
            flags = klass.__flags__
            if not flags & heap_flag or flags & immutable_flag or id_(klass) in trusted_heap_types:
                continue
            for name in dict_(klass.__dict__):
                if name[:2] == "__" and name[-2:] == "__" and name not in harmless:
                    return False
        return True

    def plain(value: object, depth: int = 0, seen: set | None = None) -> bool:
        """Honest classes all the way down through containers (see `honest_class`)."""
        kind = type_(value)
        if depth > 50 or not honest_class(kind):
            return False
        for base, iterate in containers:
            if issubclass_(kind, base):
                seen = seen if seen is not None else set_()
                if id_(value) in seen:
                    return True
                seen.add(id_(value))
                for item in iterate(value):
                    if base is dict:
                        if not (plain(item[0], depth + 1, seen) and plain(item[1], depth + 1, seen)):
                            return False
                    elif not plain(item, depth + 1, seen):
                        return False
                break
        return True

    def strict(value: object) -> object:
        if not plain(value):
            raise assertion_error(f"a test saw a value of type {type_(value).__name__!s}, not a built-in value")
        return value

    operators = {
        "Eq": lambda a, b: a == b,
        "NotEq": lambda a, b: a != b,
        "Lt": lambda a, b: a < b,
        "LtE": lambda a, b: a <= b,
        "Gt": lambda a, b: a > b,
        "GtE": lambda a, b: a >= b,
        "In": lambda a, b: a in b,
        "NotIn": lambda a, b: a not in b,
        "Is": lambda a, b: a is b,
        "IsNot": lambda a, b: a is not b,
    }

    def compare(names: tuple, *values: object) -> bool:
        for index, name in enumerate(names):
            left, right = values[index], values[index + 1]
            if name not in ("Is", "IsNot"):
                strict(left)
                strict(right)
            if not operators[name](left, right):
                return False
        return True

    class Strict(ast.NodeTransformer):
        def visit_Compare(self, node: ast.Compare) -> ast.AST:
            self.generic_visit(node)
            names = ast.Tuple([ast.Constant(type_(op).__name__) for op in node.ops], ast.Load())
            call = ast.Call(ast.Name("__nano2_compare__", ast.Load()), [names, node.left, *node.comparators], [])
            return ast.copy_location(call, node)

        def _wrap(self, expr: ast.expr) -> ast.expr:
            return ast.copy_location(ast.Call(ast.Name("__nano2_strict__", ast.Load()), [expr], []), expr)

        def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
            self.generic_visit(node)
            node.left, node.right = self._wrap(node.left), self._wrap(node.right)
            return node

        def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
            self.generic_visit(node)
            node.operand = self._wrap(node.operand)
            return node

        def visit_Assert(self, node: ast.Assert) -> ast.AST:
            self.generic_visit(node)
            node.test = self._wrap(node.test)
            return node

    # stdlib modules whose classes a solution may return (Counter): imported early, so their classes are watched
    value_modules = {"collections", "fractions", "decimal", "datetime", "array", "heapq", "re", "string", "math"}
    value_modules |= {"itertools", "functools", "operator", "statistics", "typing", "numbers", "cmath", "bisect"}

    def imported(tree: ast.AST) -> list[str]:
        names = []
        for node in ast.walk(tree):
            if isinstance_(node, ast.Import):
                names += [alias.name for alias in node.names]
            elif isinstance_(node, ast.ImportFrom) and node.module and not node.level:
                names.append(node.module)
        return names

    report["stage"] = "compile"
    try:
        preamble_code = compile(config["preamble"], "preamble.py", "exec")
        solution_code = compile(config["solution"], config["program"], "exec")
        tests_tree = ast.parse(config["tests"], config["tests_name"])
        tests_code = compile(ast.fix_missing_locations(Strict().visit(tests_tree)), config["tests_name"], "exec")
    except BaseException as exc:
        report.update(verdict="error", reason=f"{type_(exc).__name__}: {exc}")
        finish(report)
    # the modules the tests rely on, imported before the solution can patch them, then watched
    watched = {"builtins": builtins}
    try:
        solution_imports = [n for n in imported(ast.parse(config["solution"])) if n.split(".")[0] in value_modules]
    except BaseException:
        solution_imports = []
    for name in imported(tests_tree) + imported(ast.parse(config["preamble"])) + solution_imports:
        try:
            __import__(name)
            for prefix in [".".join(name.split(".")[: i + 1]) for i in range(name.count(".") + 1)]:
                watched[prefix] = sys.modules[prefix]
        except BaseException:
            pass
    if "unittest" in watched:
        import unittest.case

        watched["unittest.case"] = unittest.case

    def snapshot() -> dict:
        state = {}
        for name, module in watched.items():
            state[name] = (id_(sys.modules.get(name)), {k: id_(v) for k, v in dict_(module.__dict__).items()})
            for key, value in dict_(module.__dict__).items():
                if isinstance_(value, type_) and getattr_(value, "__module__", None) == name:
                    state[f"{name}.{key}"] = (id_(value), {k: id_(v) for k, v in dict_(value.__dict__).items()})
        return state

    def changed(before: dict) -> str | None:
        after = snapshot()
        for name, value in before.items():
            if after.get(name) != value:
                return name
        return None

    pristine_builtins = dict_(builtins.__dict__)
    before = snapshot()
    for module in watched.values():
        for value in dict_(module.__dict__).values():
            if isinstance_(value, type_) and getattr_(value, "__module__", None) == module.__name__:
                trusted_heap_types.add(id_(value))

    # -- the audit hook: defence in depth; never switched off once user code has run --------------------------------
    class SandboxViolation(BaseException):
        """Raised by the audit hook; a BaseException so that `except Exception` in user code cannot hide it."""

    violations: list = []
    forked = [False]
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    process_events = frozenset({"os.exec", "os.posix_spawn", "os.spawn", "os.system", "subprocess.Popen"})
    fork_events = frozenset({"os.fork", "os.forkpty"})
    network_events = frozenset(
        {
            "socket.__new__",
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
    )
    introspection_events = frozenset(
        {
            "sys._getframe",
            "sys._current_frames",
            "sys._current_exceptions",
            "sys.settrace",
            "sys.setprofile",
            "sys.addaudithook",
            "gc.get_objects",
            "gc.get_referrers",
            "gc.get_referents",
            "code.__new__",
        }
    )
    frame_attributes = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame", "__code__"})
    allow_fork, own_pid, str_startswith = config["allow_fork"], os.getpid(), str.startswith
    # Stdlib code that reads a frame without handing it out: (file, function) -> the caller it must serve, if any.
    stdlib = os.path.dirname(os.__file__) + "/"
    frame_readers = {
        ("typing.py", "_caller"): None,
        ("collections/__init__.py", "namedtuple"): None,
        ("enum.py", "EnumType.__call__"): None,
        ("enum.py", "EnumType._create_"): None,
        ("logging/__init__.py", "<lambda>"): "Logger.findCaller",
        ("traceback.py", "walk_tb"): "StackSummary._extract_from_extended_frame_gen",
        ("traceback.py", "_walk_tb_with_full_positions"): "StackSummary._extract_from_extended_frame_gen",
        ("unittest/result.py", "TestResult._is_relevant_tb_level"): None,
    }
    getframe = sys._getframe
    import_codes = (
        sys.modules["_frozen_importlib"]._call_with_frames_removed.__code__,
        sys.modules["_frozen_importlib_external"]._compile_bytecode.__code__,
    )
    busy = [False]
    import_reasons = {
        "_posixsubprocess": "process creation",  # fork_exec raises no audit event of its own
        "_ctypes": "native code access",
        "gc": "introspection of the harness",
    }
    own_codes: set = set_()  # the harness's own frame readers (its traceback formatter)

    def stdlib_reader() -> bool:
        """Whether the code asking for a frame is a known stdlib reader (code made to look like one is refused)."""
        if busy[0]:
            return True
        busy[0] = True
        try:
            caller = getframe(2)  # 0 this function, 1 the hook, 2 the Python code behind the audited call
            code = caller.f_code
            if code in own_codes:
                return True
            name = code.co_filename
            if not str_startswith(name, stdlib):
                return False
            wanted = frame_readers.get((name[len_(stdlib) :], code.co_qualname), False)
            if wanted is False:
                return False
            return wanted is None or (caller.f_back is not None and caller.f_back.f_code.co_qualname == wanted)
        finally:
            busy[0] = False

    def stdlib_caller() -> bool:
        """Stdlib code reading a function's __code__ (logging, inspect.signature), except dis, which hands it out."""
        if busy[0]:
            return True
        busy[0] = True
        try:
            name = getframe(2).f_code.co_filename
            return str_startswith(name, stdlib) and name != stdlib + "dis.py"
        finally:
            busy[0] = False

    def from_import_system() -> bool:
        if busy[0]:
            return True
        busy[0] = True
        try:
            return getframe(2).f_code in import_codes
        finally:
            busy[0] = False

    def block(reason: str) -> None:
        violations.append(reason)
        raise SandboxViolation(reason)

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, flags = args[0], args[2] if len_(args) > 2 else None
            writing = type_(flags) is int and flags & write_flags and type_(path) is str
            if writing and path != "/dev/null" and str_startswith(path, "/") and not str_startswith(path, "/tmp/"):
                block(f"write outside the sandbox: {path}")
        elif event in process_events or (event in fork_events and not allow_fork):
            block(f"process creation ({event})")
        elif event in network_events:
            block(f"network access ({event})")
        elif str_startswith(event, "ctypes."):
            block(f"native code access ({event})")
        elif event in ("resource.setrlimit", "resource.prlimit"):
            block(f"changing resource limits ({event})")
        elif event in ("os.kill", "os.killpg", "signal.pthread_kill"):
            if event != "os.kill" or args[0] != own_pid:
                block(f"signalling another process ({event})")
        elif event in ("os.chroot", "os.setns", "os.unshare"):
            block(f"namespace change ({event})")
        elif event == "sys._getframe":
            if not stdlib_reader():
                block("introspection of the harness (sys._getframe)")
        elif event in introspection_events:
            block(f"introspection of the harness ({event})")
        elif event in ("object.__getattr__", "object.__setattr__") and len_(args) > 1 and args[1] in frame_attributes:
            if event == "object.__setattr__" or not (stdlib_reader() if args[1] != "__code__" else stdlib_caller()):
                block(f"introspection of the harness ({args[1]})")
        elif event == "compile" and len_(args) > 1 and type_(args[1]) is str and str_startswith(args[1], stdlib):
            if not from_import_system():
                block(f"code posing as the stdlib ({args[1]})")
        elif event in ("marshal.loads", "marshal.load") and not from_import_system():
            block(f"code posing as the stdlib ({event})")
        elif event == "import" and args and args[0] in import_reasons:
            block(f"{import_reasons[args[0]]} (import {args[0]})")

    def after_fork_in_child() -> None:
        forked[0] = True

    os.register_at_fork(after_in_child=after_fork_in_child)
    reserve = bytearray(4 << 20)  # freed on MemoryError so the report can still be written

    sources = {
        config["program"]: config["solution"].splitlines(),
        config["tests_name"]: config["tests"].splitlines(),
        "preamble.py": config["preamble"].splitlines(),
    }

    def describe(exc: BaseException, show: bool = False) -> str:
        """`Type: message (line N: text)` at the program's deepest line; with `show`, a traceback on stderr."""
        try:
            message = str_(exc)[:300]
        except BaseException:
            message = "<unprintable>"
        entries = []
        try:
            tb = exc.__traceback__
            while tb is not None:
                name = tb.tb_frame.f_code.co_filename  # allowed: this function is the harness's own
                if name in sources:
                    lines = sources[name]
                    text = lines[tb.tb_lineno - 1].strip()[:200] if 0 < tb.tb_lineno <= len_(lines) else ""
                    entries.append((name, tb.tb_lineno, text))
                tb = tb.tb_next
        except BaseException:
            entries = entries or []
        head = f"{type_(exc).__name__}: {message}" if message else type_(exc).__name__
        if show:
            trace = "".join(f'  File "{n}", line {no}\n    {text}\n' for n, no, text in entries)
            with contextlib.suppress(BaseException):
                sys.stderr.write(f"Traceback (most recent call last):\n{trace}{head}\n")
        if not entries:
            return head
        name, number, text = entries[-1]
        where = "line" if name == config["program"] else f"{name} line"
        return f"{head} ({where} {number}: {text})"

    own_codes.add(describe.__code__)

    namespace: dict = {"__name__": "solution", "__file__": config["program"], "__builtins__": builtins}
    sys.addaudithook(hook)
    stage = "preamble"
    try:
        exec(preamble_code, namespace)
        stage = "solution"
        exec(solution_code, namespace)
        stage = "tests"
        tests_namespace = dict_(namespace)
        tests_namespace.update(
            __builtins__=dict_(pristine_builtins), __nano2_compare__=compare, __nano2_strict__=strict
        )
        exec(tests_code, tests_namespace)
        stage = "end"
        patched = changed(before)
        if patched is not None:
            report.update(verdict="failed", reason=f"the program changed {patched}, which the tests rely on")
        else:
            report.update(verdict="passed", reason="")
    except SandboxViolation as exc:
        report.update(verdict="blocked", reason=str_(exc.args[0]) if exc.args else "blocked")
    except assertion_error as exc:
        report.update(verdict="failed", reason=describe(exc, show=True))
    except memory_error:
        del reserve
        namespace.clear()
        report.update(verdict="memory", reason=f"MemoryError (address space limit {limits['memory_bytes']} bytes)")
    except system_exit as exc:
        report.update(verdict="failed", reason=f"SystemExit({describe(exc)}) in the {stage} before the tests finished")
    except BaseException as exc:
        report.update(verdict="error", reason=describe(exc, show=True))
    if violations:  # a violation the program caught still decides the verdict
        report.update(verdict="blocked", reason=violations[0])
    if forked[0]:  # a forked copy of the program must not write the report
        exit_now(0)
    report["stage"] = stage
    finish(report)


_CHILD_SOURCE = textwrap.dedent(inspect.getsource(_child_main)) + "\n_child_main()\n"


# ---------------------------------------------------------------------------------------------------------------------
# Seccomp: a classic-BPF filter for bwrap --seccomp (x86-64 only; elsewhere the namespaces and the hook remain)
# ---------------------------------------------------------------------------------------------------------------------

_DENIED_SYSCALLS_X86_64 = {
    "ptrace": 101,
    "socket": 41,
    "socketpair": 53,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "mount": 165,
    "umount2": 166,
    "pivot_root": 155,
    "chroot": 161,
    "unshare": 272,
    "setns": 308,
    "keyctl": 250,
    "add_key": 248,
    "request_key": 249,
    "bpf": 321,
    "perf_event_open": 298,
    "userfaultfd": 323,
    "kexec_load": 246,
    "kexec_file_load": 320,
    "init_module": 175,
    "finit_module": 313,
    "delete_module": 176,
    "reboot": 169,
    "swapon": 167,
    "swapoff": 168,
    "acct": 163,
    "open_by_handle_at": 304,
    "name_to_handle_at": 303,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
}
_CLONE_X86_64, _CLONE3_X86_64 = 56, 435
_CLONE_NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET


def seccomp_filter() -> bytes | None:
    """The BPF program (struct sock_filter[]) bwrap installs; None where the architecture is not x86-64."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    ld_abs, jeq, jset, jge, ret = 0x20, 0x15, 0x45, 0x35, 0x06
    allow, kill, eperm, enosys = 0x7FFF0000, 0x80000000, 0x00050000 | 1, 0x00050000 | 38
    arch_x86_64 = 0xC000003E
    denied = sorted(_DENIED_SYSCALLS_X86_64.values())
    # layout: arch check, x32 check, the denied list, clone3, clone (+ its flags), allow, deny, enosys
    body: list[tuple[int, int, int, int]] = [(ld_abs, 0, 0, 4), (jeq, 1, 0, arch_x86_64), (ret, 0, 0, kill)]
    body.append((ld_abs, 0, 0, 0))
    n = len(denied)
    start = len(body)
    # indices of the tail, relative to this layout
    clone3_at = start + n + 1  # after the x32 check and the list
    clone_at = clone3_at + 1
    allow_at = clone_at + 3
    deny_at, enosys_at = allow_at + 1, allow_at + 2
    body.append((jge, deny_at - start - 1, 0, 0x40000000))  # the x32 ABI: refused outright
    for index, number in enumerate(denied):
        here = start + 1 + index
        body.append((jeq, deny_at - here - 1, 0, number))
    body.append((jeq, enosys_at - clone3_at - 1, 0, _CLONE3_X86_64))  # glibc falls back to clone(2)
    body.append((jeq, 0, allow_at - clone_at - 1, _CLONE_X86_64))
    body.append((ld_abs, 0, 0, 16))  # the low 32 bits of clone's flags
    body.append((jset, deny_at - (clone_at + 2) - 1, 0, _CLONE_NAMESPACE_FLAGS))
    body += [(ret, 0, 0, allow), (ret, 0, 0, eperm), (ret, 0, 0, enosys)]
    return b"".join(struct.pack("=HBBI", code, jt, jf, k) for code, jt, jf, k in body)


# ---------------------------------------------------------------------------------------------------------------------
# The parent side
# ---------------------------------------------------------------------------------------------------------------------


def _interpreter_candidates() -> list[str]:
    """Interpreters of our Python version, the system's first (world-readable, outside any home directory)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    names = [f"/usr/bin/{version}", f"/usr/local/bin/{version}", getattr(sys, "_base_executable", None)]
    out = []
    for name in names:
        if name and os.path.isfile(name) and os.access(name, os.X_OK):
            real = os.path.realpath(name)
            if real not in out:
                out.append(real)
    return out


def _describe_interpreter(path: str) -> dict[str, Any] | None:
    """Version, sys.path and extension directory of an interpreter started as the sandbox starts it."""
    probe = (
        "import json, sys, sysconfig; print(json.dumps({'version': list(sys.version_info[:2]), 'path': sys.path,"
        " 'dynload': sysconfig.get_path('platstdlib') + '/lib-dynload'}))"
    )
    try:
        out = subprocess.run([path, "-I", "-S", "-c", probe], capture_output=True, text=True, timeout=30, check=True)
        return json.loads(out.stdout)
    except (OSError, subprocess.SubprocessError, json.JSONDecodeError):
        return None


def _readable_by_others(path: str) -> bool:
    """Whether a user with no relation to the owner can reach and read `path` (world x on every ancestor)."""
    current = Path(path)
    if not current.exists():
        return True
    mode = current.stat().st_mode
    if current.is_dir() and (mode & 0o005) != 0o005:
        return False
    if current.is_file() and not mode & 0o004:
        return False
    return all(parent.stat().st_mode & 0o001 for parent in current.parents)


def _library_dirs(files: Sequence[str]) -> list[str]:
    """Directories of the shared libraries `files` load (from ldd), plus the dynamic loader's."""
    dirs: list[str] = []
    try:
        out = subprocess.run(["ldd", *files], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    for line in out.splitlines():
        parts = line.split()
        path = (
            parts[2] if "=>" in parts and len(parts) > 2 else (parts[0] if parts and parts[0].startswith("/") else "")
        )
        if path.startswith("/") and os.path.exists(path):
            for candidate in (os.path.dirname(path), os.path.dirname(os.path.realpath(path))):
                if candidate not in dirs:
                    dirs.append(candidate)
    return dirs


@dataclass(frozen=True)
class _Layout:
    interpreter: str
    binds: tuple[str, ...]  # real paths bound read-only at the same place
    symlinks: tuple[tuple[str, str], ...]  # (target, link) for paths that are links on the host (/lib -> usr/lib)
    masked: tuple[str, ...]  # files hidden behind /dev/null (ctypes)


def _layout(interpreter: str, described: dict[str, Any]) -> _Layout:
    stdlib = [os.path.realpath(p) for p in described["path"] if os.path.isdir(p)]
    dynload = described["dynload"]
    extensions = sorted(str(p) for p in Path(dynload).glob("*.so")) if os.path.isdir(dynload) else []
    masked = tuple(p for p in extensions if Path(p).name.startswith(("_ctypes", "_testcapi", "_xxtestfuzz")))
    wanted = [interpreter, *stdlib, *_library_dirs([interpreter, *extensions])]
    binds: list[str] = []
    for path in sorted({os.path.realpath(p) for p in wanted}, key=len):
        if not any(path == b or path.startswith(b.rstrip("/") + "/") for b in binds):
            binds.append(path)
    symlinks = []
    for top in ("/lib", "/lib64", "/lib32", "/bin"):
        if os.path.islink(top):
            symlinks.append((os.readlink(top), top))
    for path in wanted:  # a library directory reached through a link (/lib/x86_64-linux-gnu)
        parent = os.path.dirname(path)
        if os.path.islink(parent) and all(link != parent for _, link in symlinks):
            symlinks.append((os.readlink(parent), parent))
    return _Layout(interpreter, tuple(binds), tuple(symlinks), masked)


@lru_cache(maxsize=1)
def _bwrap() -> tuple[str, str]:
    tool = shutil.which("bwrap")
    if tool is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed: generated code is not run without kernel isolation. "
            "Install it with `make sandbox` (root) or `apt-get install bubblewrap`."
        )
    version = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    return tool, version


@lru_cache(maxsize=1)
def _host() -> tuple[_Layout, bool, tuple[str, ...]]:
    """The interpreter, its read-only layout, whether to drop to a fresh uid, and notes."""
    root = os.geteuid() == 0
    candidates = _interpreter_candidates()
    for candidate in candidates:
        described = _describe_interpreter(candidate)
        if not described or tuple(described["version"]) != sys.version_info[:2]:
            continue
        if root and not (_readable_by_others(candidate) and all(_readable_by_others(p) for p in described["path"])):
            continue  # as root bwrap runs under a fresh uid, which must be able to read the interpreter
        return _layout(candidate, described), root, ()
    raise SandboxUnavailable(
        f"no Python {sys.version_info.major}.{sys.version_info.minor} interpreter usable in the sandbox among "
        f"{candidates} (as root it must be readable by other users)"
    )


def _fresh_uid() -> int:
    return _SANDBOX_UID_BASE + random.SystemRandom().randrange(100_000_000)


def _user_process_count() -> int:
    """Processes of our own uid: RLIMIT_NPROC counts them all, so an unprivileged run adds the program's share."""
    return len(processes_of_uid(os.getuid()))


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


def _drain(fd: int, limit: int = 1 << 20) -> bytes:
    """Whatever is in the verdict pipe once every writer is gone (non-blocking: a stray writer cannot hang us)."""
    os.set_blocking(fd, False)
    chunks, total = [], 0
    while total < limit:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _unlinked_file(data: bytes) -> Any:
    handle = tempfile.TemporaryFile()  # noqa: SIM115 - returned open; the caller's `with` closes it
    handle.write(data)
    handle.flush()
    handle.seek(0)
    return handle


def _bwrap_command(layout: _Layout, limits: SandboxLimits, seccomp_fd: int | None, argv: Sequence[str]) -> list[str]:
    tool, _ = _bwrap()
    command = [tool, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    for path in layout.binds:
        command += ["--ro-bind", path, path]
    for target, link in layout.symlinks:
        command += ["--symlink", target, link]
    for path in layout.masked:
        command += ["--ro-bind", "/dev/null", path]
    command += ["--dev", "/dev", "--size", str(limits.tmp_size_mb << 20), "--tmpfs", SANDBOX_DIR]
    command += ["--chdir", SANDBOX_DIR, "--hostname", "sandbox"]
    command += ["--remount-ro", "/"]  # the root bwrap builds is a tmpfs: read-only once the binds are in
    if seccomp_fd is not None:
        command += ["--seccomp", str(seccomp_fd)]
    return [*command, "--", *argv]


def _run(program: Program, limits: SandboxLimits, layout: _Layout, drop_uid: bool) -> SandboxResult:
    base = Path(tempfile.mkdtemp(prefix="nano2-sandbox-"))
    uid = _fresh_uid() if drop_uid else None
    secret = secrets.token_hex(32)
    # RLIMIT_NPROC counts every process of the uid: bwrap's monitor and the harness (and, unprivileged, all of ours)
    nproc_base = 2 if uid is not None else _user_process_count() + 2
    config = {
        "program": PROGRAM_NAME,
        "tests_name": TESTS_NAME,
        "solution": program.solution,
        "tests": program.tests,
        "preamble": program.preamble,
        "secret": secret,
        "allow_fork": limits.allow_fork,
        "limits": {
            "cpu_s": limits.cpu_s,
            "memory_bytes": limits.memory_mb << 20,
            "nproc": nproc_base + limits.nproc,
            "file_size_bytes": limits.file_size_mb << 20,
            "open_files": limits.open_files,
        },
    }
    env = {"PATH": "/usr/bin:/bin", "HOME": SANDBOX_DIR, "TMPDIR": SANDBOX_DIR, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    filter_bytes = seccomp_filter()
    started = time.perf_counter()
    verdict_read, verdict_write = os.pipe()
    try:
        with (
            _unlinked_file(repr(config).encode("utf-8")) as payload,
            _unlinked_file(filter_bytes or b"") as seccomp,
            (base / "stdout").open("wb") as stdout,
            (base / "stderr").open("wb") as stderr,
        ):
            argv = [layout.interpreter, "-I", "-S", "-B", "-X", "utf8", "-c", _CHILD_SOURCE]
            argv += [str(payload.fileno()), str(verdict_write)]
            command = _bwrap_command(layout, limits, seccomp.fileno() if filter_bytes else None, argv)
            process = subprocess.Popen(
                command,
                cwd="/",
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                pass_fds=(payload.fileno(), verdict_write, seccomp.fileno()),
                start_new_session=True,
                close_fds=True,
                **({"user": uid, "group": uid, "extra_groups": []} if uid is not None else {}),
            )
            os.close(verdict_write)
            verdict_write = -1
            timed_out = False
            try:
                process.wait(timeout=limits.wall_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_everything(process.pid, uid)
                process.wait()
        elapsed = time.perf_counter() - started
        channel = _drain(verdict_read)
        out_text, out_cut = _read_capped(base / "stdout", limits.output_bytes)
        err_text, err_cut = _read_capped(base / "stderr", limits.output_bytes)
        report, forged = _parse_channel(channel, secret)
        verdict, reason, signal_name = _classify(process.returncode, timed_out, report, forged, limits)
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
            cpu_s=report.get("cpu_s") if isinstance(report.get("cpu_s"), float) else None,
            isolation={"tool": "bwrap", "uid": uid if uid is not None else os.getuid(), "seccomp": bool(filter_bytes)},
            pid=process.pid,
        )
    finally:
        os.close(verdict_read)
        if verdict_write >= 0:
            os.close(verdict_write)
        shutil.rmtree(base, ignore_errors=True)


def _parse_channel(channel: bytes, secret: str) -> tuple[dict[str, Any], bool]:
    """The harness's report when the channel holds exactly its one line with the secret; else ({}, forged?)."""
    import ast

    prefix = secret.encode("ascii") + b" "
    if not channel:
        return {}, False
    if not channel.startswith(prefix) or channel.count(b"\n") != 1 or not channel.endswith(b"\n"):
        return {}, True
    try:
        parsed = ast.literal_eval(channel[len(prefix) :].decode("utf-8", errors="replace"))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return {}, True
    return (parsed, False) if isinstance(parsed, dict) else ({}, True)


def _classify(
    returncode: int, timed_out: bool, report: dict[str, Any], forged: bool, limits: SandboxLimits
) -> tuple[Verdict, str, str | None]:
    """The verdict from the harness's authenticated report, else from how the process ended."""
    signal_name = None
    # bwrap exits with 128 + N when the program dies of signal N (negative: bwrap itself was killed)
    number = -returncode if returncode is not None and returncode < 0 else None
    if returncode is not None and 128 < returncode < 128 + 65:
        number = returncode - 128
    if number is not None:
        try:
            signal_name = signal.Signals(number).name
        except ValueError:
            signal_name = f"signal {number}"
    if timed_out:
        return "timeout", f"wall-clock limit of {limits.wall_s:g} s", signal_name
    if forged:
        return "failed", "the verdict channel carried something other than the harness's report", signal_name
    if report.get("verdict") in VERDICTS:
        if report["verdict"] == "passed" and returncode != 0:
            return "failed", f"the harness reported but the sandbox exited with {returncode}", signal_name
        return report["verdict"], str(report.get("reason", "")), signal_name
    if signal_name == "SIGXCPU":
        return "timeout", f"CPU limit of {limits.cpu_s} s", signal_name
    if signal_name == "SIGXFSZ":
        return "killed", f"output or file size limit of {limits.file_size_mb} MiB exceeded", signal_name
    if signal_name is not None:
        return "killed", f"killed by {signal_name}", signal_name
    return "failed", f"exited with code {returncode} before the tests finished (no report from the harness)", None


@lru_cache(maxsize=1)
def sandbox_capabilities() -> SandboxCapabilities:
    """Probe once: bwrap present, an interpreter it can run, and a trivial program passing; else SandboxUnavailable."""
    tool, version = _bwrap()
    layout, drop_uid, notes = _host()
    probe = _run(Program("pass\n"), SandboxLimits(wall_s=30), layout, drop_uid)
    if probe.verdict != "passed":
        raise SandboxUnavailable(
            f"bwrap cannot run a trivial program here ({probe.verdict}: {probe.reason}): {probe.stderr[-500:]}"
        )
    filter_bytes = seccomp_filter()
    extra = () if filter_bytes else (f"no seccomp filter for {platform.machine()}",)
    return SandboxCapabilities(
        interpreter=layout.interpreter,
        tool=tool,
        tool_version=version,
        running_as_root=os.geteuid() == 0,
        privilege_drop=drop_uid,
        seccomp=filter_bytes is not None,
        binds=layout.binds,
        notes=(*notes, *extra),
    )


def run_program(program: str | Program, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run one program in the sandbox: a plain source (it passes by running to its end) or solution + tests."""
    limits = limits or SandboxLimits()
    capabilities = sandbox_capabilities()
    del capabilities
    layout, drop_uid, _ = _host()
    return _run(program if isinstance(program, Program) else Program(program), limits, layout, drop_uid)


def run_programs(
    programs: Sequence[str | Program],
    limits: SandboxLimits | None = None,
    workers: int = 2,
    on_result: Callable[[int, SandboxResult], None] | None = None,
) -> list[SandboxResult]:
    """Run many programs with a small pool (each is its own sandbox); results come back in input order.

    `on_result(index, result)` is called as each finishes (progress bars, streaming JSONL).
    """
    if workers < 1:
        raise Nano2Error(f"workers must be >= 1, got {workers}")
    sandbox_capabilities()  # probe once before the threads start
    results: list[SandboxResult | None] = [None] * len(programs)
    lock = threading.Lock()

    def work(index: int) -> None:
        result = run_program(programs[index], limits)
        results[index] = result
        if on_result is not None:
            with lock:
                on_result(index, result)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(work, index) for index in range(len(programs))]:
            future.result()
    return [result for result in results if result is not None]
