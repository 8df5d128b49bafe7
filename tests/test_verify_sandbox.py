"""verify.sandbox: ordinary programs get the right verdict; known-bad programs fail cleanly, the host unharmed.

The benchmarks' canonical solutions passing through it is tests/test_evals_code_programs.py; hostile programs (escapes
and forged verdicts) are tests/test_sandbox_attacks.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from verify.sandbox import SandboxLimits, processes_of_uid, run_program, run_programs, sandbox_capabilities

REPO = Path(__file__).resolve().parent.parent
LIMITS = SandboxLimits(wall_s=5, cpu_s=5, memory_mb=512, file_size_mb=1, output_bytes=4096)


def _process_group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def _assert_nothing_left(result) -> None:
    """No process of the sample survives: not in its process group, not under its uid."""
    assert result.pid is not None
    assert _process_group_members(result.pid) == []
    uid = result.isolation.get("uid")
    if uid is not None and uid != os.getuid():
        assert processes_of_uid(uid) == []


def test_sandbox_verdicts_for_ordinary_programs():
    cases = {
        "assert 1 + 1 == 2\nprint('ok')": ("passed", ""),
        "def f(x):\n    return x\nassert f(1) == 2, 'nope'": (
            "failed",
            "AssertionError: nope (line 3: assert f(1) == 2",
        ),
        "1 / 0": ("error", "ZeroDivisionError: division by zero (line 1"),
        "def f(:\n": ("error", "SyntaxError"),
        "import sys\nsys.exit(0)\nassert False": ("failed", "SystemExit"),
        "input()": ("error", "EOFError"),
    }
    results = run_programs(list(cases), LIMITS)
    for (source, (verdict, reason)), result in zip(cases.items(), results, strict=True):
        assert result.verdict == verdict, (source, result)
        assert result.reason.startswith(reason), (source, result.reason)
        _assert_nothing_left(result)
    assert results[0].stdout == "ok\n"
    assert "ZeroDivisionError" in results[2].stderr  # the traceback is kept for reading


def test_sandbox_infinite_loop_times_out():
    result = run_program("while True:\n    pass\n", LIMITS.model_copy(update={"wall_s": 1.5}))
    assert result.verdict == "timeout" and "wall-clock" in result.reason
    assert result.wall_s < 4
    _assert_nothing_left(result)


def test_sandbox_cpu_limit_stops_a_busy_loop_before_the_wall_clock():
    result = run_program("while True:\n    pass\n", LIMITS.model_copy(update={"wall_s": 30, "cpu_s": 1}))
    assert result.verdict == "timeout" and result.reason == "CPU limit of 1 s"
    assert result.signal_name == "SIGXCPU" and result.wall_s < 20


FORK_BOMB = "import os\nwhile True:\n    os.fork()\n"


def test_sandbox_fork_bomb_is_blocked():
    result = run_program(FORK_BOMB, LIMITS)
    assert result.verdict == "blocked" and result.reason == "process creation (os.fork)"
    _assert_nothing_left(result)


def test_sandbox_fork_bomb_hits_the_kernel_process_limit_when_forks_are_allowed():
    """With the audit hook letting forks through, RLIMIT_NPROC (a fresh uid per sample as root) still caps the bomb."""
    source = (
        "import os, time\n"
        "forks = 0\n"
        "while True:\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        break\n"
        "    if pid == 0:\n"
        "        time.sleep(60)\n"
        "        os._exit(0)\n"
        "    forks += 1\n"
        "print(forks, flush=True)\n"
        "while True:\n"  # then a bomb that keeps trying until the wall clock
        "    try:\n"
        "        os.fork()\n"
        "    except OSError:\n"
        "        pass\n"
    )
    limits = LIMITS.model_copy(update={"wall_s": 2, "allow_fork": True, "nproc": 12})
    result = run_program(source, limits)
    assert result.verdict == "timeout", result
    assert 0 < int(result.stdout.split()[0]) <= 12  # the kernel refused the 13th process
    _assert_nothing_left(result)


def test_sandbox_memory_hog_is_stopped():
    result = run_program("hog = []\nwhile True:\n    hog.append(bytearray(10**7))\n", LIMITS)
    assert result.verdict == "memory", result
    assert run_program("x = ' ' * 10**10\n", LIMITS).verdict == "memory"


@pytest.mark.parametrize(
    "source, event",
    [
        ("import socket\nsocket.socket().connect(('1.1.1.1', 80))", "socket.__new__"),
        ("import socket\nsocket.getaddrinfo('example.com', 80)", "socket.getaddrinfo"),
        ("import urllib.request\nurllib.request.urlopen('http://example.com', timeout=2)", "socket.getaddrinfo"),
        (
            "import socket\ntry:\n    socket.socket().connect(('1.1.1.1', 80))\nexcept BaseException:\n"
            "    pass\nassert True",
            "socket.__new__",
        ),
    ],
    ids=["connect", "dns", "urllib", "swallowed"],
)
def test_sandbox_network_access_is_blocked(source, event):
    result = run_program(source, LIMITS)
    assert result.verdict == "blocked" and result.reason == f"network access ({event})", result


def test_sandbox_writing_outside_the_work_dir_fails_and_the_host_is_untouched(tmp_path):
    """Absolute writes outside /tmp are refused by the hook; the host's files are not even in the sandbox's view."""
    target = tmp_path / "escaped.txt"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    attempts = [
        f"open({str(target)!r}, 'w').write('x')",
        f"import os\nos.open({str(target)!r}, os.O_WRONLY | os.O_CREAT)",
        f"import pathlib\npathlib.Path({str(target)!r}).write_text('x')",
        f"import shutil\nopen('here.txt', 'w').write('x')\nshutil.copy('here.txt', {str(target)!r})",
        f"import os\nos.remove({str(victim)!r})",
        f"import os\nos.rename({str(victim)!r}, 'mine.txt')",
        f"import os\nos.symlink({str(victim)!r}, 'link.txt')\nopen('link.txt', 'w').write('x')",
        "open('/usr/lib/evil.txt', 'w').write('x')",
    ]
    for source, result in zip(attempts, run_programs(attempts, LIMITS), strict=True):
        assert result.verdict in ("blocked", "error"), (source, result)
        assert "outside the sandbox" in result.reason or "Error" in result.reason, (source, result)
    assert not target.exists()
    assert victim.read_text() == "keep me"


def test_sandbox_repository_is_not_in_view():
    attempts = [
        f"print(open({str(REPO / 'pyproject.toml')!r}).read())",
        f"import os\nprint(os.listdir({str(REPO)!r}))",
        f"import sys\nsys.path.insert(0, {str(REPO)!r})\nimport verify.sandbox",
        f"import os\nos.chdir({str(REPO)!r})\nprint(open('pyproject.toml').read())",
    ]
    for source, result in zip(attempts, run_programs(attempts, LIMITS), strict=True):
        assert result.verdict == "error", (source, result)
        assert "FileNotFoundError" in result.reason or "ModuleNotFound" in result.reason, (source, result)
        assert "nano2-recipe" not in result.stdout


def test_sandbox_huge_output_is_capped():
    result = run_program("while True:\n    print('x' * 10000)\n", LIMITS)
    assert result.verdict == "killed" and "size limit" in result.reason and result.signal_name == "SIGXFSZ"
    assert result.stdout_truncated and len(result.stdout) == LIMITS.output_bytes
    _assert_nothing_left(result)


@pytest.mark.parametrize(
    "source, reason",
    [
        ("import subprocess\nsubprocess.run(['ls', '/'])", "process creation (import _posixsubprocess)"),
        ("import multiprocessing as mp\nmp.get_context('spawn').Process(target=print).start()", "process creation"),
        ("import os\nos.execv('/bin/ls', ['ls', '/'])", "process creation (os.exec)"),
        ("import os\nos.posix_spawn('/bin/ls', ['ls'], {})", "process creation (os.posix_spawn)"),
        ("import os\nos.system('ls /')", "process creation (os.system)"),
        ("import ctypes\nctypes.CDLL(None).system(b'ls /')", "native code access (import _ctypes)"),
        ("import os\nos.kill(1, 0)", "signalling another process (os.kill)"),
        ("import resource\nresource.setrlimit(resource.RLIMIT_CPU, (100, 100))", "changing resource limits"),
    ],
    ids=["subprocess", "multiprocessing", "exec", "posix_spawn", "system", "ctypes", "kill", "setrlimit"],
)
def test_sandbox_blocks_escape_hatches(source, reason):
    result = run_program(source, LIMITS)
    assert result.verdict == "blocked" and result.reason.startswith(reason), result


def test_sandbox_environment_is_a_fresh_stripped_private_tmp():
    source = (
        "import json, os, sys, tempfile\n"
        "seen = sorted(os.listdir('.'))\n"
        "open('scratch.txt', 'w').write('x')\n"
        "print(json.dumps({'cwd': os.getcwd(), 'env': dict(os.environ), 'path': sys.path,"
        " 'root': sorted(os.listdir('/')), 'tmp': tempfile.gettempdir(), 'files': seen}))\n"
    )
    first, second = run_programs([source, source], LIMITS)
    assert first.verdict == second.verdict == "passed", first
    seen = json.loads(first.stdout)
    assert seen["cwd"] == seen["env"]["HOME"] == seen["env"]["TMPDIR"] == seen["tmp"] == "/tmp"
    assert set(seen["env"]) <= {"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "LC_CTYPE", "PWD"}
    assert not any(str(REPO) in entry or "site-packages" in entry for entry in seen["path"])
    assert seen["root"] == ["dev", "lib", "lib64", "tmp", "usr"] or "proc" not in seen["root"]
    assert seen["files"] == [] and json.loads(second.stdout)["files"] == []  # a fresh empty tmp every time


def test_sandbox_capabilities_are_reported():
    capabilities = sandbox_capabilities().to_dict()
    assert Path(capabilities["interpreter"]).is_file() and capabilities["tool"].endswith("bwrap")
    assert {"user", "mount", "pid", "net", "ipc"} <= set(capabilities["namespaces"])
    assert capabilities["privilege_drop"] == capabilities["running_as_root"]
    assert not any(str(REPO) in path or path.startswith(("/root", "/home")) for path in capabilities["read_only_binds"])


def test_sandbox_run_programs_keeps_input_order_and_reports_progress():
    seen = []
    results = run_programs([f"print({i})" for i in range(6)], LIMITS, workers=3, on_result=lambda i, r: seen.append(i))
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(6)]
    assert sorted(seen) == list(range(6))
