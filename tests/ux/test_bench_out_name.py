"""``python -m bench.explain --out NAME`` takes a name starting with "explain": a path or another
benchmark's results file is refused before anything runs."""

from __future__ import annotations

import pytest

from bench import explain
from bench.common import RESULTS


@pytest.mark.parametrize("name", ["../escape", "explain/../x", "explain.x", "train", ""])
def test_out_must_be_a_plain_name(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = sorted(p.name for p in RESULTS.parent.rglob("*.json"))
    with pytest.raises(SystemExit) as exc:
        explain.main(["--out", name, "--seeds", "0"])
    assert exc.value.code == 2
    assert "--out" in capsys.readouterr().err
    assert sorted(p.name for p in RESULTS.parent.rglob("*.json")) == before


def test_too_small_cohort_is_a_message_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    before = sorted(p.name for p in RESULTS.parent.rglob("*.json"))
    assert explain.main(["--patients", "3", "--seeds", "0", "--demo-size", "0", "--out", "explain_never"]) == 2
    assert "patients" in capsys.readouterr().err
    assert sorted(p.name for p in RESULTS.parent.rglob("*.json")) == before
