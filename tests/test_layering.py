"""The layering rule of docs/architecture.md, checked on the imports of every module of the package (module level
and inside functions alike): a module imports only from its own layer or the layers below it. A new module must be
placed in a layer here (and in the doc) before it can be imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: import root -> source folder (pyproject's package-dir: adapters/ and cohorts/ are multimodal.adapters / .cohorts)
ROOTS = {"multimodal": REPO / "multimodal", "multimodal.adapters": REPO / "adapters",
         "multimodal.cohorts": REPO / "cohorts"}

#: Bottom to top; a module belongs to the layer of its longest matching prefix. Keep in step with docs/architecture.md.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("multimodal", "multimodal.errors", "multimodal.types", "multimodal.config", "multimodal.io",
              "multimodal.registry")),
    ("data", ("multimodal.cohorts",)),
    ("adapters", ("multimodal.adapters",)),
    ("model", ("multimodal.model", "multimodal.model_config", "multimodal.data")),
    ("training", ("multimodal.training", "multimodal.tracking", "multimodal.wide_init", "multimodal.pooled",
                  "multimodal.baselines", "multimodal.mil_baseline", "multimodal.stack", "multimodal.stack_candidates",
                  "multimodal.metrics", "multimodal.calibration", "multimodal.survival_grid",
                  "multimodal.training_record", "multimodal.pipeline", "multimodal.pipeline_files",
                  "multimodal.prediction_table")),
    ("study", ("multimodal.study", "multimodal.study_frame", "multimodal.study_intervals", "multimodal.study_summary",
               "multimodal.run_folder", "multimodal.experiment", "multimodal.provenance")),
    ("explain", ("multimodal.explain",)),
    ("report", ("multimodal.report", "multimodal.model_card")),
    ("interfaces", ("multimodal.api", "multimodal.cli", "multimodal.demo", "multimodal.estimator",
                    "multimodal.cohort_explain", "multimodal.__main__", "multimodal.cohorts.studies")),
]


def _layer(module: str) -> int | None:
    best: tuple[int, int] | None = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > best[1]):
                best = (i, len(p))
    return None if best is None else best[0]


def _modules() -> list[tuple[str, Path]]:
    out = []
    for pkg, root in ROOTS.items():
        for f in sorted(root.rglob("*.py")):
            parts = [p for p in f.relative_to(root).with_suffix("").parts if p != "__init__"]
            out.append((".".join([pkg, *parts]), f))
    return out


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module or module.name) of every absolute import of the package in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("multimodal"):
                # "from multimodal.report import key_findings" names a module: judge the most specific known one
                found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("multimodal")]
    return found


MODULES = _modules()


def test_every_module_has_a_layer() -> None:
    assert [m for m, _ in MODULES if _layer(m) is None] == []


@pytest.mark.parametrize("module,path", MODULES, ids=[m for m, _ in MODULES])
def test_no_module_imports_from_a_layer_above_its_own(module: str, path: Path) -> None:
    own = _layer(module)
    assert own is not None
    upward = [f"{path.relative_to(REPO)}:{line} imports {name} ({LAYERS[_layer(name)][0]} layer, above "
              f"{LAYERS[own][0]})" for line, name in _imports(path) if (_layer(name) or 0) > own]
    assert upward == []
