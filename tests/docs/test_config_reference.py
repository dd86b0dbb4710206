"""docs/config-reference.md is generated from the config classes and must not drift from them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_config_reference", REPO / "docs" / "gen_config_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_reference_matches_the_config_classes():
    gen = _generator()
    committed = (REPO / "docs" / "config-reference.md").read_text()
    assert committed == gen.render(), (
        "docs/config-reference.md is stale: run `.venv/bin/python docs/gen_config_reference.py` and commit the result"
    )
    assert gen.main(["--check"]) == 0


def test_every_field_is_listed_with_help():
    from multimodal.config import config_fields
    from multimodal.experiment import ExperimentConfig

    text = _generator().render()
    rows = {line.split("|")[1].strip().strip("`"): line for line in text.splitlines() if line.startswith("| `")}
    names = [name for name, *_ in config_fields(ExperimentConfig)]
    assert set(names) == set(rows)
    undocumented = [n for n in names if rows[n].rstrip().endswith("|  |")]
    assert not undocumented, f"config fields without help (add it to the class docstring's Attributes): {undocumented}"


def test_fallback_help_names_only_existing_fields():
    from multimodal.config import config_fields
    from multimodal.experiment import ExperimentConfig

    names = {name for name, *_ in config_fields(ExperimentConfig)}
    stale = sorted(set(_generator().FALLBACK_HELP) - names)
    assert not stale, f"FALLBACK_HELP in docs/gen_config_reference.py names fields that no longer exist: {stale}"


def test_docstring_parser_reads_google_attributes():
    gen = _generator()

    class Demo:
        """A config.

        Attributes:
            alpha: first line
                continued.
            beta / gamma: shared help.

        Raises:
            nothing: not a field.
        """

    assert gen.docstring_fields(Demo) == {"alpha": "first line continued.", "beta": "shared help.",
                                          "gamma": "shared help."}
