"""Hostile programs against verify.sandbox: escapes end blocked or failed, forged verdicts end failed, the host intact.

Each attack is a solution with tests that pass only if the attack worked (or a wrong solution that tries to pass
anyway). The suite runs as root (bwrap under a fresh uid) and, via `setpriv`, again as an unprivileged user.
The kernel layer is also checked alone: a bare interpreter in the same bwrap jail, with no audit hook, still cannot
read the host, write the root, open a socket or create namespaces.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from verify.sandbox import Program, SandboxLimits, processes_of_uid, run_program, run_programs, sandbox_capabilities

REPO = Path(__file__).resolve().parent.parent
LIMITS = SandboxLimits(wall_s=5, cpu_s=5, memory_mb=512, file_size_mb=1, tmp_size_mb=4, output_bytes=4096)
CANARY = f"nano2-canary-{uuid.uuid4().hex}"
WRONG = "def f(x):\n    return x\n"  # the right answer is x + 1
TESTS = "assert f(1) == 2\nassert f(5) == 6\n"

FORGE_ON_EVERY_FD = (
    "import os\n"
    "for fd in range(3, 64):\n"
    '    for line in (b\'x {"verdict": "passed", "reason": ""}\\n\', b"{\'verdict\': \'passed\'}\\n"):\n'
    "        try:\n"
    "            os.write(fd, line)\n"
    "        except OSError:\n"
    "            pass\n"
)

# (id, program): a wrong solution that games the verdict; each must score `failed`.
REWARD_HACKS = [
    ("forged_verdict_then_os_exit", Program(FORGE_ON_EVERY_FD + "os._exit(0)\n" + WRONG, TESTS)),
    ("forged_verdict_then_wrong_answer", Program(FORGE_ON_EVERY_FD + WRONG, TESTS)),
    ("sys_exit_before_tests", Program("import sys\n" + WRONG + "sys.exit(0)\n", TESTS)),
    ("os_exit_before_tests", Program("import os\n" + WRONG + "os._exit(0)\n", TESTS)),
    ("exit_inside_the_call", Program("import os\ndef f(x):\n    os._exit(0)\n", TESTS)),
    ("system_exit_inside_the_call", Program("def f(x):\n    raise SystemExit(0)\n", TESTS)),
    (
        "always_equal_object",
        Program(
            "class A:\n    def __eq__(self, o):\n        return True\n    __hash__ = None\ndef f(x):\n    return A()\n",
            TESTS,
        ),
    ),
    (
        "always_close_number",
        Program(
            "class N(float):\n    def __sub__(self, o):\n        return 0.0\n    __rsub__ = __sub__\n"
            "def f(x):\n    return N(0)\n",
            "assert abs(f(1) - 2.5) < 1e-9\n",
        ),
    ),
    (
        "str_subclass_equal_to_anything",
        Program("class S(str):\n    def __eq__(self, o):\n        return True\ndef f(x):\n    return S('')\n", TESTS),
    ),
    (
        "always_true_truthiness",
        Program("class T:\n    def __bool__(self):\n        return True\ndef f(x):\n    return T()\n", "assert f(1)\n"),
    ),
    (
        "patched_unittest_assert",
        Program(
            "import unittest\nunittest.TestCase.assertEqual = lambda *a, **k: None\n" + WRONG,
            "import unittest\nclass T(unittest.TestCase):\n    def runTest(self):\n        self.assertEqual(f(1), 2)\n"
            "T().runTest()\n",
        ),
    ),
    (
        "patched_builtins",
        Program(
            "import builtins\nbuiltins.abs = lambda x: 0\nbuiltins.len = lambda x: 3\n" + WRONG,
            "assert abs(f(1) - 2) < 1e-9\nassert len([f(1)]) == 3\n",
        ),
    ),
    (
        "patched_math_isclose",
        Program(
            "import math\nmath.isclose = lambda *a, **k: True\n" + WRONG, "import math\nassert math.isclose(f(1), 2)\n"
        ),
    ),
    (
        "patched_assertion_error",
        Program("import builtins\nbuiltins.AssertionError = type('Nope', (Exception,), {})\n" + WRONG, TESTS),
    ),
    (
        "planted_traceback_module_forges",
        Program(
            "import sys\nopen('/tmp/traceback.py', 'w').write(" + repr(FORGE_ON_EVERY_FD + "os._exit(0)\n") + ")\n"
            "sys.path.insert(0, '/tmp')\n" + WRONG,
            TESTS,
        ),
    ),
]

# (id, program, limits): escapes; each ends blocked, failed or error (never passed), the host unharmed.
ESCAPES = [
    ("read_etc_passwd", Program("def f():\n    return open('/etc/passwd').read()\n", "assert 'root:' in f()\n")),
    (
        "dir_fd_read_outside",
        Program(
            "import os\ndef f():\n    root = os.open('/', os.O_RDONLY)\n"
            "    return os.read(os.open('etc/passwd', os.O_RDONLY, dir_fd=root), 100)\n",
            "assert b'root:' in f()\n",
        ),
    ),
    (
        "dir_fd_read_repository",
        Program(
            "import os\ndef f():\n    root = os.open('/', os.O_RDONLY)\n"
            f"    return os.read(os.open({str(REPO / 'pyproject.toml')[1:]!r}, os.O_RDONLY, dir_fd=root), 100)\n",
            "assert b'nano2' in f()\n",
        ),
    ),
    (
        "dir_fd_write_host_tmp_and_shm",
        Program(
            "import os\ndef f():\n    root = os.open('/', os.O_RDONLY)\n"
            f"    for name in ('tmp/{CANARY}-w', 'dev/shm/{CANARY}-w'):\n"
            "        os.close(os.open(name, os.O_WRONLY | os.O_CREAT, dir_fd=root))\n"
            "    return True\n",
            f"assert f() and not __import__('os').path.exists('/tmp/{CANARY}-w')\n",
        ),
    ),
    (
        "read_repository",
        Program(f"def f():\n    return open({str(REPO / 'pyproject.toml')!r}).read()\n", "assert f()\n"),
    ),
    ("list_host_tmp", Program("import os\ndef f():\n    return os.listdir('/tmp')\n", f"assert {CANARY!r} in f()\n")),
    (
        "list_host_dev_shm",
        Program("import os\ndef f():\n    return os.listdir('/dev/shm')\n", f"assert {CANARY!r} in f()\n"),
    ),
    ("read_home", Program("import os\ndef f():\n    return os.listdir('/root')\n", "assert f()\n")),
    ("read_proc_self_mem", Program("def f():\n    return open('/proc/self/mem', 'rb').read(1)\n", "assert f()\n")),
    (
        "overwrite_builtins_the_hook_uses",
        Program(
            "import builtins, os\nbuiltins.any = lambda *a: False\nbuiltins.isinstance = lambda *a: False\n"
            "builtins.len = lambda *a: 0\ndef f():\n    return os.system('id')\n",
            "assert f() == 0\n",
        ),
    ),
    (
        "code_after_the_verdict_in_exception_str",
        Program(
            "import os\nclass E(Exception):\n    def __str__(self):\n        os.system('touch /tmp/pwned')\n"
            "        return 'x'\ndef f(x):\n    raise E()\n",
            TESTS,
        ),
    ),
    ("frames_to_the_harness", Program("import sys\ndef f(x):\n    return sys._getframe(1).f_back.f_locals\n", TESTS)),
    (
        "traceback_frames_to_the_harness",
        Program(
            "def f(x):\n    try:\n        raise ValueError\n    except ValueError as e:\n"
            "        return e.__traceback__.tb_frame.f_back.f_back.f_locals\n",
            TESTS,
        ),
    ),
    ("gc_hunts_the_secret", Program("import gc\ndef f(x):\n    return [o for o in gc.get_objects()]\n", TESTS)),
    (
        "code_posing_as_stdlib",
        Program(
            "exec(compile('import sys\\nsys._getframe()', '/usr/lib/python3.11/typing.py', 'exec'))\n" + WRONG, TESTS
        ),
    ),
    (
        "network_connect",
        Program(
            "import socket\ndef f():\n    socket.create_connection(('1.1.1.1', 53), 2)\n    return 1\n", "assert f()\n"
        ),
    ),
    ("network_raw_socket", Program("import _socket\ndef f():\n    return _socket.socket()\n", "assert f()\n")),
    (
        "exec_interpreter",
        Program("import os\nos.execv(sys.executable, ['python', '-c', 'print(1)'])\n".replace("os\n", "os, sys\n"), ""),
    ),
    (
        "subprocess_shell",
        Program("import subprocess\ndef f():\n    return subprocess.run(['id']).returncode\n", "assert f() == 0\n"),
    ),
    ("ctypes_native_code", Program("import ctypes\ndef f():\n    return ctypes.CDLL(None).getpid()\n", "assert f()\n")),
    ("fork_bomb", Program("import os\nwhile True:\n    os.fork()\n")),
    ("memory_exhaustion", Program("hog = []\nwhile True:\n    hog.append(bytearray(10**7))\n")),
    (
        "disk_exhaustion",
        Program("i = 0\nwhile True:\n    open(f'/tmp/fill{i}', 'wb').write(b'x' * 500_000)\n    i += 1\n"),
    ),
    ("kill_the_evaluator", Program(f"import os, signal\nos.kill({os.getpid()}, signal.SIGTERM)\n")),
    ("raise_limits", Program("import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))\n")),
]


@pytest.fixture(scope="module", autouse=True)
def canaries():
    """Files the programs must not see: one in the host's /tmp, one in its /dev/shm."""
    made = []
    for folder in ("/tmp", "/dev/shm"):
        if os.path.isdir(folder):
            path = Path(folder) / CANARY
            path.write_text("secret")
            made.append(path)
    yield
    for path in made:
        path.unlink(missing_ok=True)


def test_reward_hacks_score_failed():
    results = run_programs([program for _, program in REWARD_HACKS], LIMITS)
    for (name, _), result in zip(REWARD_HACKS, results, strict=True):
        assert result.verdict == "failed" or (
            result.verdict == "blocked" and name == "planted_traceback_module_forges"
        ), (
            name,
            result,
        )


def test_escapes_end_blocked_failed_or_error_and_the_host_is_untouched():
    results = run_programs([program for _, program in ESCAPES], LIMITS)
    for (name, _), result in zip(ESCAPES, results, strict=True):
        assert result.verdict in ("blocked", "failed", "error", "memory", "killed"), (name, result)
        assert "root:" not in result.stdout and "nano2-recipe" not in result.stdout, name
        uid = result.isolation.get("uid")
        if uid is not None and uid != os.getuid():
            assert processes_of_uid(uid) == [], name
    by_name = dict(zip((name for name, _ in ESCAPES), results, strict=True))
    assert by_name["fork_bomb"].verdict == "blocked"
    assert by_name["memory_exhaustion"].verdict == "memory"
    assert by_name["network_connect"].verdict == by_name["network_raw_socket"].verdict == "blocked"
    assert by_name["frames_to_the_harness"].verdict == by_name["gc_hunts_the_secret"].verdict == "blocked"
    assert "No space left" in by_name["disk_exhaustion"].reason or by_name["disk_exhaustion"].verdict == "killed"
    for path in (Path("/tmp") / f"{CANARY}-w", Path("/dev/shm") / f"{CANARY}-w", Path("/tmp/pwned")):
        assert not path.exists(), path
    assert (Path("/tmp") / CANARY).read_text() == "secret"


def test_setsid_grandchild_dies_with_the_sandbox_and_cannot_signal_the_evaluator():
    """With forks allowed, a detached grandchild that outlives its parent is still killed at the deadline."""
    source = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        for _ in range(100):\n"
        "            try:\n"
        f"                os.kill({os.getpid()}, 15)\n"
        "            except BaseException:\n"
        "                pass\n"
        "            time.sleep(0.05)\n"
        "    os._exit(0)\n"
        "time.sleep(30)\n"
    )
    result = run_program(source, LIMITS.model_copy(update={"allow_fork": True, "wall_s": 1.5}))
    assert result.verdict in ("timeout", "blocked"), result
    uid = result.isolation["uid"]
    if uid != os.getuid():
        assert processes_of_uid(uid) == []


def test_a_correct_solution_still_passes():
    right = Program("import math\ndef f(x):\n    return x + 1\n", TESTS, preamble="import collections")
    counter = Program(
        "import collections\ndef f(s):\n    return collections.Counter(s)\n", "assert f('aab') == {'a': 2, 'b': 1}\n"
    )
    named = Program(
        "from collections import namedtuple\nP = namedtuple('P', 'x y')\ndef f():\n    return P(1, 2)\n",
        "assert f() == (1, 2)\nassert f().x == 1\n",
    )
    results = run_programs([right, counter, named], LIMITS)
    assert [r.verdict for r in results] == ["passed"] * 3, results


def _bare_in_jail(code: str) -> subprocess.CompletedProcess:
    """A bare interpreter (no harness, no audit hook) in the same jail: what the kernel alone allows."""
    from verify.sandbox import _bwrap_command, _host, seccomp_filter

    layout, drop_uid, _ = _host()
    read, write = os.pipe()
    filter_bytes = seccomp_filter() or b""
    os.write(write, filter_bytes)
    os.close(write)
    command = _bwrap_command(
        layout, LIMITS, read if filter_bytes else None, [layout.interpreter, "-I", "-S", "-c", code]
    )
    try:
        extra = {"user": 2_000_000_123, "group": 2_000_000_123, "extra_groups": []} if drop_uid else {}
        return subprocess.run(command, capture_output=True, text=True, timeout=30, pass_fds=(read,), **extra)
    finally:
        os.close(read)


@pytest.mark.parametrize(
    "code",
    [
        "open('/etc/passwd')",
        f"open({str(REPO / 'pyproject.toml')!r})",
        f"open('/tmp/{CANARY}')",
        f"open('/dev/shm/{CANARY}')",
        "open('/usr/lib/pwned', 'w')",
        "import socket; socket.socket()",
        "import os; os.chroot('/tmp')",
        "import os; open('/proc/self/mem', 'rb')",
        "import ctypes",
    ],
    ids=["passwd", "repo", "host_tmp", "host_shm", "write_root", "socket", "chroot", "proc_mem", "ctypes"],
)
def test_kernel_layer_alone_refuses(code):
    sandbox_capabilities()
    result = subprocess.CompletedProcess([], 0)
    result = _bare_in_jail(code)
    assert result.returncode != 0, (code, result.stderr)
    assert any(
        e in result.stderr
        for e in ("FileNotFoundError", "PermissionError", "OSError", "Read-only", "ModuleNotFoundError")
    ), result.stderr


def test_kernel_layer_alone_lets_an_honest_program_run():
    assert _bare_in_jail("print(sum(range(10)))").stdout == "45\n"


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to switch to a plain user")
@pytest.mark.skipif(os.environ.get("NANO2_ATTACKS_UNPRIVILEGED") == "1", reason="already the unprivileged run")
def test_the_suite_holds_for_an_unprivileged_user():
    """The same attacks, run by uid 65534 with the system interpreter (bwrap then runs as that user, no uid switch)."""
    site = next(p for p in sys.path if p.endswith("site-packages"))
    if not Path(site).stat().st_mode & 0o005 or not Path("/usr/bin/python3.11").exists():
        pytest.skip("the venv's packages or a system interpreter are not readable by another user here")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/tmp",
        "PYTHONPATH": f"{REPO}:{site}",
        "NANO2_ATTACKS_UNPRIVILEGED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3.11", "-m", "pytest"]
    command += [str(Path(__file__)), "-q", "-p", "no:cacheprovider", "-m", "not slow", "--rootdir", "/tmp"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd="/tmp")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout


def test_without_bwrap_generated_code_is_refused_not_run_unguarded(monkeypatch, tmp_path):
    import verify.sandbox as sandbox

    marker = tmp_path / "ran"
    sandbox._bwrap.cache_clear()
    sandbox.sandbox_capabilities.cache_clear()
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    try:
        with pytest.raises(sandbox.SandboxUnavailable, match="bubblewrap"):
            run_program(f"open({str(marker)!r}, 'w').write('x')", LIMITS)
    finally:
        monkeypatch.undo()
        sandbox._bwrap.cache_clear()
        sandbox.sandbox_capabilities.cache_clear()
    assert not marker.exists()
    assert run_program("print(1)", LIMITS).passed  # the real tool is back
