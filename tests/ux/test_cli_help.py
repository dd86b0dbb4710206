"""`multimodal COMMAND --help` shows an example for every command; examples parse and name files that exist."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from multimodal.cli.main import build_parser, main

REPO = Path(__file__).resolve().parents[2]


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


COMMANDS = sorted(_subparsers())


def _example_lines(text: str, command: str | None = None) -> list[str]:
    text = re.sub(r"\\\n\s*", "", text)  # join shell continuation lines
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("multimodal ")]
    return [ln for ln in lines if command is None or ln.split()[1] == command]


def test_every_command_is_registered():
    assert set(COMMANDS) >= {"synth", "validate", "train", "cv", "predict", "explain", "report", "cohort-report", "env"}


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_an_example(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "example" in out.lower(), f"`multimodal {command} --help` has no example"
    assert _example_lines(out, command), f"`multimodal {command} --help`: no example line 'multimodal {command} ...'"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_is_explained(command):
    sp = _subparsers()[command]
    bare = [a.option_strings or [a.dest] for a in sp._actions if not a.help]
    assert not bare, f"`multimodal {command}`: arguments without help text: {bare}"


def _examples() -> list[str]:
    texts = [build_parser().epilog or ""] + [sp.epilog or "" for sp in _subparsers().values()]
    return [ln for t in texts for ln in _example_lines(t)]


@pytest.mark.parametrize("line", _examples())
def test_examples_parse_and_name_existing_repo_files(line):
    argv = shlex.split(line.split("   (")[0])[1:]
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse rejected the example
        pytest.fail(f"example does not parse (exit {exc.code}): {line}")
    for ref in re.findall(r"(?:configs|docs)/[\w./-]+", line):
        assert (REPO / ref).exists(), f"example names {ref}, which is not in the repository: {line}"


def test_top_level_help_lists_commands_and_an_example(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for c in COMMANDS:
        assert c in out
    assert len(_example_lines(out)) >= 3 and "Exit codes" in out


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_a_closed_output_pipe_is_not_reported_as_a_failure():
    """`multimodal env | head -0`: the reader leaves before the output; exit 141 (SIGPIPE), no error message."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "multimodal", "env"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the child has imported anything, so its first write meets a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "failed" not in err and "Traceback" not in err and "BrokenPipe" not in err, err
