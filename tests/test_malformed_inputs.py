"""Every `nano2` entry point on broken input: it ends with exit 0 (what it could use, the rest counted as drops) or
exit 2 with one `error:` line that names the problem, never a traceback and never an unexpected exception.

The entry points are read from the CLI itself (every command `nano2 --help` reaches), so a new command is covered
as soon as it is mounted. Each gets the same broken inputs in the place of its file arguments: an empty file,
truncated YAML, the wrong type (a directory, a YAML list where a mapping is expected), the wrong encoding, a missing
path, and (slow) a huge file. A command whose required options name files gets the broken input there too; an
`--output` goes to a fresh folder.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import typer

# placeholders for required options that are not inputs
_OPTION_VALUES = {"--prompt": "hello", "--shape": "x"}
_OUTPUT_OPTIONS = ("--output",)


def _commands() -> list[tuple[tuple[str, ...], list, list]]:
    """(command path, its arguments, its required options) for every leaf command of `nano2`."""
    from nano2.app import cli

    cli._mount_sub_apps([])
    out = []

    def walk(cmd, path: tuple[str, ...]) -> None:
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in sorted(subs.items()):
                walk(sub, (*path, name))
            return
        arguments = [p for p in cmd.params if p.param_type_name == "argument"]
        options = [p for p in cmd.params if p.param_type_name == "option" and p.required]
        out.append((path, arguments, options))

    walk(typer.main.get_command(cli.app), ())
    return out


COMMANDS = _commands()


def _broken(kind: str, tmp: Path) -> Path:
    path = tmp / "input.yaml"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_text("name: broken\nphases:\n  - {name: p1, weights: {web: 0.")
    elif kind == "wrong_type_dir":
        path = tmp / "a_directory"
        path.mkdir()
    elif kind == "wrong_type_list":
        path.write_text("- 1\n- two\n- {three: 3}\n")
    elif kind == "wrong_encoding":
        path.write_bytes("name: caf\u00e9\nweights: {web: 1.0}\n".encode("utf-16"))
    elif kind == "missing":
        path = tmp / "does_not_exist.yaml"
    elif kind == "huge":
        path.write_text("x: " + "a" * 50_000_000 + "\n")
    else:
        raise AssertionError(kind)
    return path


def _argv(path: tuple[str, ...], arguments: list, options: list, broken: Path, tmp: Path) -> list[str]:
    argv = list(path)
    for _ in arguments:
        argv.append(str(broken))
    for option in options:
        name = next(o for o in option.opts if o.startswith("--"))
        if name in _OUTPUT_OPTIONS:
            argv += [name, str(tmp / "out")]
        else:
            argv += [name, _OPTION_VALUES.get(name, str(broken))]
    return argv


class _Hung(Exception):
    pass


def _alarm(signum, frame):
    raise _Hung("the command did not finish in 60 s on broken input")


# every command gets these in the quick suite; the rest (and the huge file) run with the slow tests
KINDS = ["empty", "truncated", "wrong_encoding"]
SLOW_KINDS = ["wrong_type_dir", "wrong_type_list", "missing", "huge"]


def _check(cli, tmp_path, command, kind) -> None:
    path, arguments, options = command
    broken = _broken(kind, tmp_path)
    argv = _argv(path, arguments, options, broken, tmp_path)
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(60)
    try:
        result = cli(*argv)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    where = f"nano2 {' '.join(argv)}"
    assert "Traceback" not in result.err + result.out, where
    assert result.code in (0, 2), (where, result.code, result.err[-2000:])
    if result.code == 2:
        lines = [line for line in result.err.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error: ")]
        assert len(errors) == 1 and all(line == errors[0] or line.startswith("usage: ") for line in lines), (
            where,
            result.err,
        )
        assert "run with --debug for the traceback" not in errors[0], (where, errors[0])  # an unexpected exception


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: "-".join(c[0]) or "root")
def test_broken_input(cli, tmp_path, monkeypatch, command, kind):
    monkeypatch.chdir(tmp_path)  # anything a command writes by default lands in the test's folder
    _check(cli, tmp_path, command, kind)


@pytest.mark.slow
@pytest.mark.parametrize("kind", SLOW_KINDS)
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: "-".join(c[0]) or "root")
def test_broken_input_more(cli, tmp_path, monkeypatch, command, kind):
    monkeypatch.chdir(tmp_path)
    _check(cli, tmp_path, command, kind)


def test_every_command_is_covered():
    """The corpus reaches the commands `nano2 --help` lists (a regression guard on the command walk)."""
    names = {c[0][0] for c in COMMANDS}
    assert {"audit", "mix", "curate", "train", "eval", "model", "compress", "synth", "run", "report"} <= names
    assert len(COMMANDS) >= 30
