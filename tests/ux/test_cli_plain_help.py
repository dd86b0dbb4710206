"""Every command's help is plain text (no reStructuredText markup) and every command takes ``--debug``."""

from __future__ import annotations

import argparse

import pytest

from multimodal.cli.main import build_parser, main, plain_text


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


COMMANDS = sorted(_subparsers())


def test_plain_text():
    assert plain_text("``multimodal cv``: see :class:`~multimodal.study.Study` and :func:`run`") == \
        "'multimodal cv': see multimodal.study.Study and run"


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_no_rst_markup(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    for mark in ("``", ":class:", ":func:", ":mod:", ":meth:", ":attr:"):
        assert mark not in out, f"`multimodal {command} --help` shows {mark!r}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_takes_debug(command):
    sp = _subparsers()[command]
    assert "--debug" in sp._option_string_actions, f"`multimodal {command}` rejects --debug"


def test_synth_and_validate_accept_debug(tmp_path, capsys):
    # a usage error would be exit 2 from argparse before any work; here the command itself runs
    assert main(["validate", str(tmp_path / "absent.yaml"), "--debug"]) == 2
    err = capsys.readouterr()
    assert "unrecognized arguments" not in err.err and "absent.yaml" in err.out + err.err
    out = tmp_path / "c"
    assert main(["synth", "--out", str(out), "--patients", "12", "--patches-per-slide", "8", "--embed-dim", "4",
                 "--n-genes", "20", "--n-pathways", "4", "--debug"]) == 0
    assert (out / "manifest.yaml").is_file()
