"""Every ```python and ```bash block of README.md and docs/*.md runs, in order, in a fresh folder per document.

Rules:

* ``<!-- no-test -->`` on the line before a fence marks an illustrative block (needs GPUs, big data, ``make``);
  keep those few.
* ``<!-- file: PATH -->`` before any block (e.g. ```yaml) writes its text to PATH, so later commands can use it.
* python blocks of one document share one namespace (like a notebook) and run in-process.
* bash blocks are split into commands. ``multimodal ...`` / ``.venv/bin/multimodal ...`` and ``python -m MODULE ...``
  run in-process (imports are paid once); anything else (pipes, redirections, heredocs, other programs) runs in
  ``bash`` with ``multimodal`` / ``python`` on ``PATH`` pointing at this interpreter. Every command must exit 0.
* Tiny settings: experiment configs get 1 epoch, a 16-wide model, 1 fold, one baseline, no ablations and 5
  bootstrap resamples; synthetic cohorts are shrunk to <= 60 patients with small bags; reports skip the PDF. Docs
  therefore show realistic commands while the test stays fast. ``../shared/data`` is replaced by the real shared
  data folder; blocks (bash: commands) that need it are skipped when it is absent, and a document marked
  ``<!-- needs-shared-data -->`` is skipped whole. Absolute ``/tmp/...`` paths are moved into the
  test's folder.
* ``KNOWN_ISSUES`` lists blocks of documents owned elsewhere that fail today: they must keep failing (strict xfail),
  so a fix is noticed and the entry removed.
* The folder holds ``configs/`` (the repository's) so commands run "from the repository root" work.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHARED = "../shared/data"
#: (document, text in the block) -> why it fails today. Reported to the document's owner.
KNOWN_ISSUES: dict[tuple[str, str], str] = {}

TINY_SOURCE = '''
"""Tiny settings for the documentation examples (installed in-process, or by the `multimodal` wrapper)."""
import dataclasses
import sys


def tiny_config(cfg):
    from multimodal.config import apply_overrides

    ov = ["training.epochs=1", "training.batch_size=8", "training.progress=false", "model.d_model=16",
          "model.depth=1", "model.num_latents=4", "evaluation.max_folds=1", "evaluation.bootstrap=5",
          "evaluation.ablations=false"]
    if cfg.adapters.pathology is not None:
        ov.append("adapters.pathology.max_patches=32")
    if cfg.evaluation.baselines:
        ov.append(f"evaluation.baselines=[{cfg.evaluation.baselines[0]}]")
    return apply_overrides(cfg, ov)


def install(setter=setattr):
    import multimodal.api as api
    import multimodal.cohorts.synthetic as syn
    import multimodal.experiment as exp

    orig_load, orig_gen = exp.load_experiment, syn.generate_synthetic_cohort
    orig_report, orig_cohort_report = api.report_patient, api.cohort_report

    def load_experiment(path, overrides=()):
        return tiny_config(orig_load(path, overrides))

    def generate_synthetic_cohort(out_dir, config=None, **kw):
        c = config or syn.SyntheticConfig()
        c = dataclasses.replace(c, patients=min(c.patients, 60), patches_per_slide=min(c.patches_per_slide, 48),
                                embed_dim=min(c.embed_dim, 16), n_genes=min(c.n_genes, 120),
                                n_pathways=min(c.n_pathways, 8))
        return orig_gen(out_dir, c, **kw)

    def report_patient(*a, **kw):
        kw["pdf"] = False
        return orig_report(*a, **kw)

    def cohort_report(*a, **kw):
        kw["pdf"] = False
        return orig_cohort_report(*a, **kw)

    repl = {orig_load: load_experiment, orig_gen: generate_synthetic_cohort, orig_report: report_patient,
            orig_cohort_report: cohort_report}
    for name, mod in list(sys.modules.items()):
        if mod is None or not name.startswith("multimodal"):
            continue
        for attr, val in list(vars(mod).items()):
            if callable(val) and not isinstance(val, type):
                try:
                    new = repl.get(val)
                except TypeError:
                    continue
                if new is not None:
                    setter(mod, attr, new)
'''


@pytest.fixture(autouse=True)
def _one_torch_thread(_torch_threads):
    """One intra-op thread: on a busy shared machine OpenMP threads spin-wait for each other and a tiny model trains
    10-100x slower with 2 threads than with 1."""
    import torch

    torch.set_num_threads(1)
    yield


@dataclasses.dataclass
class Block:
    lang: str
    code: str
    line: int
    no_test: bool = False
    file: str | None = None


def collect_blocks(text: str) -> list[Block]:
    """Fenced blocks with the directives (HTML comments) written on the lines just before them."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1).lower()
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        directives, k = [], start - 1
        while k >= 0 and (not lines[k].strip() or lines[k].strip().startswith("<!--")):
            if lines[k].strip():
                directives.append(lines[k].strip())
            k -= 1
        file = next((re.sub(r"^<!--\s*file:\s*|\s*-->$", "", d) for d in directives if "file:" in d), None)
        blocks.append(Block(lang, "\n".join(lines[start + 1 : j]) + "\n", start + 1,
                            any("no-test" in d for d in directives), file))
        i = j + 1
    return blocks


def split_commands(code: str) -> list[str]:
    """Shell commands of a bash block: continuation lines joined, heredoc bodies kept with their command."""
    out: list[str] = []
    lines = code.splitlines()
    i = 0
    while i < len(lines):
        cmd = lines[i]
        while cmd.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            cmd = cmd.rstrip()[:-1] + " " + lines[i].strip()
        here = re.search(r"<<-?\s*'?\"?(\w+)'?\"?", cmd)
        if here:
            end = here.group(1)
            while i + 1 < len(lines):
                i += 1
                cmd += "\n" + lines[i]
                if lines[i].strip() == end:
                    break
        i += 1
        if cmd.strip() and not cmd.strip().startswith("#"):
            out.append(cmd)
    return out


def _argv(cmd: str) -> list[str] | None:
    """The argv of a simple command, or None when the shell is needed (operators, heredocs, env assignments)."""
    if "\n" in cmd or "$" in cmd or "`" in cmd:
        return None
    lex = shlex.shlex(cmd, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    lex.commenters = "#"
    tokens = list(lex)
    if not tokens or any(t and set(t) <= set("();<>|&") for t in tokens) or re.match(r"^\w+=", tokens[0]):
        return None
    return tokens


class DocRunner:
    def __init__(self, workdir: Path, shared: Path | None, monkeypatch: pytest.MonkeyPatch) -> None:
        self.dir = workdir
        self.shared = shared
        self.ns: dict[str, object] = {"__name__": "__doc_example__"}
        (workdir / "configs").symlink_to(REPO / "configs")
        (workdir / "_tiny_docs.py").write_text(TINY_SOURCE)
        bin_dir = workdir / ".venv" / "bin"
        bin_dir.mkdir(parents=True)
        (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        (bin_dir / "multimodal").write_text(
            f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(workdir)!r})\nimport _tiny_docs\n"
            "_tiny_docs.install()\nfrom multimodal.cli.main import main\nsys.exit(main())\n")
        for exe in ("python", "multimodal"):
            (bin_dir / exe).chmod(0o755)
        self.env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                    "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
        spec = importlib.util.spec_from_file_location("_tiny_docs", workdir / "_tiny_docs.py")
        tiny = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(tiny)
        tiny.install(monkeypatch.setattr)
        monkeypatch.chdir(workdir)

    def text(self, code: str) -> str | None:
        """``code`` with /tmp/ moved into the test folder and ../shared/data resolved; None if that is absent."""
        code = re.sub(r"(?<![\w./])/tmp/", f"{self.dir}/tmp/", code)
        if SHARED in code:
            if self.shared is None:
                return None
            code = code.replace(SHARED, str(self.shared))
        return code

    def run_block(self, b: Block, where: str) -> str:
        if b.lang in ("bash", "sh", "shell") and not b.file:  # shared data: decided per command
            skipped = [cmd for cmd in split_commands(b.code) if self.run_command(cmd, where) == "skipped"]
            return f"{where}: ok" + (f" (skipped, needs {SHARED}: {skipped})" if skipped else "")
        code = self.text(b.code)
        if code is None:
            return f"{where}: skipped (needs {SHARED})"
        if b.file:
            path = self.dir / b.file
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(code)
            return f"{where}: wrote {b.file}"
        if b.lang == "python":
            exec(compile(code, where, "exec"), self.ns)  # noqa: S102 - documentation examples we own
        return f"{where}: ok"

    def run_command(self, cmd: str, where: str) -> str:
        text = self.text(cmd)
        if text is None:
            return "skipped"
        cmd = text
        argv = _argv(cmd)
        if argv and argv[0] == "make":
            pytest.fail(f"{where}: `{cmd}` — mark blocks that call make with <!-- no-test -->")
        if argv and argv[0] in ("multimodal", ".venv/bin/multimodal"):
            from multimodal.cli.main import main

            rc = main(argv[1:])
        elif argv and argv[0] in ("python", "python3", ".venv/bin/python") and argv[1:2] == ["-m"]:
            rc = self.run_module(argv[2], argv[3:])
        else:
            r = subprocess.run(["bash", "-euo", "pipefail", "-c", cmd], cwd=self.dir, env=self.env,
                               capture_output=True, text=True, timeout=300)
            sys.stdout.write(r.stdout)
            rc = r.returncode
            assert rc == 0, f"{where}: `{cmd}` exited {rc}\n{r.stderr[-3000:]}"
        assert rc == 0, f"{where}: `{cmd}` exited {rc}"
        return "ok"

    @staticmethod
    def run_module(module: str, args: list[str]) -> int:
        if module in ("multimodal", "multimodal.cli.main"):
            from multimodal.cli.main import main

            return main(args)
        mod = importlib.import_module(module)
        try:
            return int(mod.main(args) or 0)
        except SystemExit as exc:
            return int(exc.code or 0)


def _shared_data() -> Path | None:
    """MULTIMODAL_SHARED_DATA when set (a missing folder means "absent"), else ../shared/data beside the repo."""
    env = os.environ.get("MULTIMODAL_SHARED_DATA")
    cand = Path(env) if env else REPO.parent / "shared" / "data"
    return cand.resolve() if cand.is_dir() else None


@pytest.mark.parametrize("doc", DOCS, ids=[p.name for p in DOCS])
def test_doc_examples_run(doc, tmp_path, monkeypatch):
    blocks = [b for b in collect_blocks(doc.read_text()) if b.lang in ("python", "bash", "sh", "shell") or b.file]
    runnable = [b for b in blocks if not b.no_test]
    if not runnable:
        pytest.skip(f"{doc.name} has no runnable example")
    shared = _shared_data()
    if shared is None and "<!-- needs-shared-data -->" in doc.read_text():
        pytest.skip(f"{doc.name} needs {SHARED} (absent)")
    runner = DocRunner(tmp_path, shared, monkeypatch)
    log = []
    for b in runnable:
        where = f"{doc.name}:{b.line}"
        known = next((why for (name, text), why in KNOWN_ISSUES.items() if name == doc.name and text in b.code), None)
        if known is None:
            t0 = time.perf_counter()
            log.append(runner.run_block(b, where))
            print(f"[doc-example] {where}: {time.perf_counter() - t0:.1f} s")
            continue
        try:
            runner.run_block(b, where)
        except Exception:  # the known failure: carry on with the rest of the document
            log.append(f"{where}: known issue ({known})")
        else:
            pytest.fail(f"{where}: listed in KNOWN_ISSUES ({known}) but passes now: remove the entry")
    assert all(": ok" in x or ": wrote" in x or "skipped" in x or "known issue" in x for x in log), log


def test_no_test_blocks_stay_few():
    """Illustrative (untested) blocks are the exception: at most a third of a document's code blocks."""
    for doc in DOCS:
        blocks = [b for b in collect_blocks(doc.read_text()) if b.lang in ("python", "bash", "sh", "shell")]
        skipped = [b.line for b in blocks if b.no_test]
        assert len(skipped) <= max(2, len(blocks) // 3), f"{doc.name}: too many no-test blocks at lines {skipped}"


def test_harness_parses_directives_and_commands():
    text = ("x\n<!-- no-test -->\n```bash\nmake demo\n```\n\n<!-- file: a/b.yaml -->\n```yaml\nk: 1\n```\n"
            "```bash\nmultimodal cv c.yaml \\\n  --out r  # comment\ncat > f <<'EOF'\nx: 1\nEOF\necho hi | wc\n```\n")
    b = collect_blocks(text)
    assert [(x.lang, x.no_test, x.file) for x in b] == [("bash", True, None), ("yaml", False, "a/b.yaml"),
                                                        ("bash", False, None)]
    cmds = split_commands(b[2].code)
    assert cmds[0] == "multimodal cv c.yaml  --out r  # comment"
    assert _argv(cmds[0]) == ["multimodal", "cv", "c.yaml", "--out", "r"]
    assert cmds[1].endswith("EOF") and _argv(cmds[1]) is None
    assert _argv(cmds[2]) is None
