"""Explanations through the model's own forward, and the per-patient / cohort reports."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TRAIN_OVERRIDES

from multimodal.cli.main import main


@pytest.fixture(scope="module")
def trained(small_cohort, demo_config, tmp_path_factory):
    """A small pipeline trained on the synthetic cohort (all four modalities)."""
    from multimodal.cohorts.cohort import Cohort
    from multimodal.pipeline import Pipeline

    out = tmp_path_factory.mktemp("pipe") / "p"
    args = ["train", str(demo_config), "--out", str(out), "--set", f"data.manifest={small_cohort}"]
    # model.stack=none: these tests check the attribution machinery, which explains the fusion trunk's part of the
    # output; with the demo's stack the one-SE rule may rightly keep the trunk at zero on 40 patients, and then every
    # attribution is 0 (the stack's part is reported exactly as terms: tests/training/test_stack.py)
    for o in [*TRAIN_OVERRIDES, "training.epochs=3", "model.stack=none"]:
        args += ["--set", o]
    assert main(args) == 0
    return Pipeline.from_pretrained(out), Cohort.from_manifest(small_cohort), out


def _full_patient(cohort) -> str:
    return next(p for p in cohort.patient_ids if all(cohort.has(m, p) for m in cohort.modalities))


def _batch(pipe, cohort, pid):
    from multimodal.data import PatientDataset, collate_patients

    pipe.bind(cohort)
    return collate_patients([PatientDataset(cohort, pipe.adapters, [pid])[0]])


def test_wrapper_output_equals_model(trained):
    from multimodal.explain import BatchForward

    pipe, cohort, _ = trained
    b = _batch(pipe, cohort, _full_patient(cohort))
    pipe.model.eval()
    fwd = BatchForward(pipe.model, b)
    with torch.no_grad():
        # the same computation; the wrapper's token-override path may reassociate floating-point sums (ulp-level)
        torch.testing.assert_close(fwd(*fwd.inputs()), pipe.model(b).risk, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(fwd.plain(), pipe.model(b).risk, rtol=1e-5, atol=1e-7)


def test_integrated_gradients_completeness_within_one_percent(trained):
    from multimodal.explain import integrated_gradients

    pipe, cohort, _ = trained
    pid = _full_patient(cohort)
    r = integrated_gradients(pipe.model, _batch(pipe, cohort, pid), n_steps=256)
    assert set(r.tokens) == set(pipe.adapters)  # every modality gets per-token attributions
    total = sum(t.scores.sum() for t in r.tokens.values())
    assert abs(total - (r.f_x - r.f_baseline)) <= 0.01 * abs(r.f_x - r.f_baseline) + 1e-6
    assert r.completeness_error < 0.01


def test_shapley_sums_and_missing_modality_is_zero(trained):
    from multimodal.explain import modality_shapley

    pipe, cohort, _ = trained
    pid = _full_patient(cohort)
    s = modality_shapley(pipe.model, _batch(pipe, cohort, pid))
    assert sum(s["values"].values()) == pytest.approx(s["f_all"] - s["f_none"], abs=1e-5)
    lacking = next((p for p in cohort.patient_ids if not cohort.has("pathology", p)), None)
    if lacking is not None:
        s2 = modality_shapley(pipe.model, _batch(pipe, cohort, lacking))
        assert s2["values"]["pathology"] == pytest.approx(0.0, abs=1e-7)


def test_patient_report_contents(trained, small_cohort, tmp_path):
    pipe, cohort, pdir = trained
    pid = _full_patient(cohort)
    out = tmp_path / "rep"
    assert main(["report", "--pipeline", str(pdir), "--manifest", str(small_cohort), "--patient", pid,
                 "--out", str(out)]) == 0
    html = (out / "report.html").read_text()
    for needle in ('id="key-findings"', 'id="survival-curve"', 'id="contributions"', "RESEARCH USE ONLY",
                   "Data cut-off", "not causal", "data:image/png;base64,"):
        assert needle in html
    assert "http://" not in html and "https://" not in html and "<script" not in html
    # no patient's identifier, not even inside slide ids (tests/report/test_no_identifier_leaks.py checks every file)
    for other in cohort.patient_ids:
        assert other not in html
    res = json.loads((out / "risk_result.json").read_text())
    assert res["schema_version"] == 2 and res["patient"]["pseudonym"].startswith("PT-")
    assert "Read against the mean of" in html  # slot evidence is read against the reference patients
    top_genes = res["evidence"]["genomics"]["top_genes"]  # the synthetic gene sets overlap: gene-level scoring
    from multimodal.report.patient import gene_text

    assert "Genes counted once across every gene set" in html and f"{gene_text(top_genes[0])} (" in html
    assert (out / "report.pdf").read_bytes()[:5] == b"%PDF-"
    # the same output folder is not overwritten without --overwrite
    assert main(["report", "--pipeline", str(pdir), "--manifest", str(small_cohort), "--patient", pid,
                 "--out", str(out)]) == 2


def test_attribution_reference_is_aligned_and_centers_report_evidence(trained):
    """The stored reference (mean attribution per slot token and member over inner-validation patients) is what
    reports subtract: tokens and members line up (a token's value is the sum of its members' on both sides), the
    reference patients' centered attributions average to zero, and a pipeline without a reference (written by an
    earlier version) reports plain attributions."""
    from dataclasses import replace

    from multimodal.errors import IntegrityError
    from multimodal.explain import integrated_gradients
    from multimodal.explain.genes import set_scores
    from multimodal.explain.reference import attribution_reference, centered
    from multimodal.explain.risk import explain_patient

    pipe, cohort, _ = trained
    stored = pipe.metadata["attribution_reference"]
    slot_mods = {m for m, s in pipe.model.specs.items() if s["kind"] == "slots"}
    assert set(stored) == slot_mods == {"genomics"}
    g = stored["genomics"]
    assert g["target"] == "risk" and 1 <= g["n_patients"] <= pipe.metadata["n_val"]
    for name, v in g["tokens"].items():
        assert sum(g["members"][name]) == pytest.approx(v, abs=1e-5)

    ids = [p for p in cohort.patient_ids if cohort.has("genomics", p)][:6]
    ref = attribution_reference(pipe, cohort, ids, n_steps=4)["genomics"]
    assert ref["n_patients"] == len(ids)
    cent = [centered(integrated_gradients(pipe.model, _batch(pipe, cohort, p), n_steps=4).tokens["genomics"], ref)
            for p in ids]
    assert np.abs(np.mean([c.scores for c in cent], axis=0)).max() < 1e-6
    assert np.abs(np.mean([c.member_scores for c in cent], axis=0)).max() < 1e-6
    raw = integrated_gradients(pipe.model, _batch(pipe, cohort, ids[0]), n_steps=4).tokens["genomics"]
    assert not np.allclose(raw.scores, cent[0].scores)  # the reference is not zero: centering changes something

    pid = _full_patient(cohort)
    res = explain_patient(pipe, cohort, pid, mc_samples=2, n_steps=8)
    ev = res.evidence["genomics"]
    assert ev["relative_to"].startswith(f"the mean of {g['n_patients']} reference patients")
    # the synthetic gene sets overlap, so pathways are scored at gene level (multimodal.explain.genes): centering
    # subtracts the gene-level score of the reference members
    gs = _batch(pipe, cohort, pid).streams["genomics"]
    names, members = list(gs.names[0]), gs.meta["per_patient"][0]["members"]
    ref_set = dict(zip(names, set_scores(np.array([g["members"][n] for n in names]), members), strict=True))
    assert ev["scoring"].startswith("gene level") and ev["top_genes"]
    for t in ev["top"]:
        assert t["attribution"] == pytest.approx(t["attribution_vs_baseline"] - ref_set[t["name"]], abs=1e-9)
        assert "token_attribution" in t
        assert t["direction"] == ("no effect" if abs(t["attribution"]) < 5e-4 else
                                  "raises risk" if t["attribution"] > 0 else "lowers risk")
    assert "relative_to" not in res.evidence["ehr"] and "relative_to" not in res.evidence["clinical"]  # events
    old = replace(pipe, metadata={k: v for k, v in pipe.metadata.items() if k != "attribution_reference"})
    ev_old = explain_patient(old, cohort, pid, mc_samples=2, n_steps=8).evidence["genomics"]
    assert "relative_to" not in ev_old and all("attribution_vs_baseline" not in t for t in ev_old["top"])
    bad = {**pipe.metadata, "attribution_reference": {"genomics": {**g, "tokens": {"SYN_HYPOXIA": "0.1"}}}}
    with pytest.raises(IntegrityError, match="attribution_reference"):
        explain_patient(replace(pipe, metadata=bad), cohort, pid, mc_samples=2, n_steps=8)


def test_loading_refuses_a_tampered_reference_or_metadata_naming_the_file(trained, tmp_path):
    from multimodal.api import load_pipeline
    from multimodal.errors import IntegrityError
    from multimodal.pipeline import Pipeline, write_pipeline_json

    for value, needle in (({"genomics": {"target": "risk", "n_patients": 3, "tokens": {"X": [1]}}},
                           "attribution_reference"), (None, "'metadata' must be a JSON object")):
        d = tmp_path / f"p{needle[:5]}"
        shutil.copytree(trained[2], d)
        meta = json.loads((d / "pipeline.json").read_text())
        if value is None:
            meta["metadata"] = ["not", "an", "object"]
        else:
            meta["metadata"]["attribution_reference"] = value
        # resealed, so that the metadata check itself (not pipeline.json's own checksum) is what refuses it
        write_pipeline_json(d, meta)
        # the reference is checked by its owner (explain.reference) when every command loads (api.load_pipeline);
        # the metadata's shape by the pipeline itself
        load = load_pipeline if value is not None else Pipeline.from_pretrained
        with pytest.raises(IntegrityError, match=needle) as err:
            load(d)
        assert str(d / "pipeline.json") in str(err.value)


def test_response_only_model_explains_and_words_the_response(small_cohort, demo_config, tmp_path):
    from multimodal.cohorts.cohort import Cohort
    from multimodal.explain.risk import explain_patient
    from multimodal.pipeline import Pipeline

    out = tmp_path / "p"
    args = ["train", str(demo_config), "--out", str(out), "--set", f"data.manifest={small_cohort}", "--set",
            "task=response"]
    for o in [*TRAIN_OVERRIDES, "training.epochs=2", "model.ensemble=1", "evaluation.baselines=[logistic_clinical]"]:
        args += ["--set", o]
    assert main(args) == 0
    pipe, cohort = Pipeline.from_pretrained(out), Cohort.from_manifest(small_cohort)
    assert pipe.metadata["attribution_reference"]["genomics"]["target"] == "response"
    res = explain_patient(pipe, cohort, _full_patient(cohort), mc_samples=2, n_steps=8)
    assert res.model["target"] == "response" and res.evidence["genomics"]["relative_to"]
    directions = {t["direction"] for ev in res.evidence.values() if "top" in ev for t in ev["top"]}
    assert directions and directions <= {"raises response probability", "lowers response probability", "no effect"}


def test_unknown_patient_is_a_clear_error(trained, small_cohort, tmp_path, capsys):
    _, _, pdir = trained
    rc = main(["report", "--pipeline", str(pdir), "--manifest", str(small_cohort), "--patient", "../../etc/passwd",
               "--out", str(tmp_path / "r")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "../../etc/passwd" in err and "unknown patient" in err
    assert not (tmp_path / "r").exists()


def test_hostile_strings_are_escaped_and_stay_inside_out_dir(tmp_path):
    """Patient ids and data values with markup and path parts render as text; files stay in the output folder."""
    from multimodal.cohorts.cohort import Cohort
    from multimodal.cohorts.sources import ClinicalSource
    from multimodal.explain.risk import explain_patient
    from multimodal.pipeline import ModelConfig, Pipeline
    from multimodal.registry import create_adapter
    from multimodal.report.patient import write_patient_report
    from multimodal.training import TrainingConfig

    evil = ['<script>alert(1)</script>', '../../etc/passwd', 'a"b\'c', "P4", "P5", "P6", "P7", "P8", "P9", "P10"]
    rng = np.random.default_rng(0)
    pats = pd.DataFrame({"time": rng.uniform(1, 100, 10), "event": [True, False] * 5}, index=evil)
    clin = pd.DataFrame({"grade": ['<img src=x onerror=alert(1)>', "2", "3"] * 3 + ["2"],
                         "age": rng.normal(60, 5, 10)}, index=evil)
    cohort = Cohort("x<b>y</b>", pats, {"clinical": ClinicalSource(clin, categorical=("grade",), numeric=("age",))})
    ad = create_adapter("clinical", min_category_count=1)
    pipe, _ = Pipeline.fit(cohort, evil[:8], val_ids=evil[8:], adapters={"clinical": ad},
                           model_config=ModelConfig(d_model=16, num_latents=2, depth=1, num_heads=2),
                           training=TrainingConfig(epochs=1, batch_size=4, progress=False))
    out = tmp_path / "out"
    res = explain_patient(pipe, cohort, evil[0], mc_samples=2, n_steps=8)
    write_patient_report(res, out, pdf=False)
    html = (out / "report.html").read_text()
    assert "<script>" not in html and "<img src=x" not in html and "<b>y</b>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html or "grade=&lt;" in html
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["report.html", "risk_result.json"]
    for pid in evil:  # no raw patient id in the report
        if len(pid) > 3:
            assert pid not in html


def test_cohort_report(small_cohort, demo_config, tmp_path):
    run = tmp_path / "run"
    args = ["cv", str(demo_config), "--out", str(run), "--set", f"data.manifest={small_cohort}"]
    for o in [*TRAIN_OVERRIDES, "evaluation.folds=2", "evaluation.ablations=false", "evaluation.baselines=[coxph_clinical]"]:
        args += ["--set", o]
    assert main(args) == 0
    out = tmp_path / "cr"
    assert main(["cohort-report", str(run), "--out", str(out)]) == 0
    html = (out / "cohort_report.html").read_text()
    for needle in ('id="km"', "log-rank", 'id="folds"', "coxph_clinical", "at risk"):
        assert needle in html
    assert (out / "cohort_report.pdf").read_bytes()[:5] == b"%PDF-"


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian package 'chromium' not installed (.ci/run installs it)")
def test_report_in_headless_chromium(trained, small_cohort, tmp_path):
    pw = pytest.importorskip("playwright.sync_api")
    _, cohort, pdir = trained
    out = tmp_path / "rep"
    assert main(["report", "--pipeline", str(pdir), "--manifest", str(small_cohort), "--patient",
                 _full_patient(cohort), "--out", str(out)]) == 0
    console_errors, requests = [], []
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1100, "height": 1400})
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        page.on("request", lambda r: requests.append(r.url))
        page.goto((out / "report.html").as_uri())
        page.wait_for_load_state("load")
        for sel in ("#key-findings", "#survival-curve img", "#contributions img"):
            assert page.locator(sel).first.is_visible(), sel
        imgs_ok = page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        shot = tmp_path / "shot.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert console_errors == []
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    assert imgs_ok
    from PIL import Image

    im = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert im.std() > 10  # not blank


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils (pdftoppm) not installed")
def test_pdf_pages_are_not_blank(trained, small_cohort, tmp_path):
    import subprocess

    from PIL import Image

    _, cohort, pdir = trained
    out = tmp_path / "rep"
    assert main(["report", "--pipeline", str(pdir), "--manifest", str(small_cohort), "--patient",
                 _full_patient(cohort), "--out", str(out)]) == 0
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(out / "report.pdf"), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page*.png"))
    assert pages
    for pg in pages:
        assert np.asarray(Image.open(pg).convert("L"), dtype=float).std() > 5


def test_performance_limitations_flag_chance_level_validation():
    from multimodal.explain.risk import performance_limitations

    assert performance_limitations(None) == []
    good = {"c_index 95% CI": [0.61, 0.70], "auroc 95% CI": [0.55, 0.68]}
    assert performance_limitations(good) == []
    bad = performance_limitations({"c_index 95% CI": [0.62, 0.71], "auroc 95% CI": [0.47, 0.66]})
    assert len(bad) == 1 and "treatment-response" in bad[0] and "0.47–0.66" in bad[0]
    both = performance_limitations({"c_index 95% CI": [0.50, 0.58], "auroc 95% CI": [0.40, 0.52]})
    assert len(both) == 2 and "survival risk" in both[0]


def test_report_states_when_validation_did_not_beat_chance(trained, small_cohort, tmp_path):
    """A pipeline whose attached cv summary has a response AUROC CI reaching 0.5 says so in its report."""
    from multimodal.api import attach_validation

    _, cohort, pdir = trained
    pcopy = tmp_path / "pipe"
    shutil.copytree(pdir, pcopy)
    summary = {"n_folds": 5, "protocol": "test", "methods": {"multimodal": {
        "mean": {"c_index": 0.66, "auroc": 0.52}, "ci95": {"c_index": [0.60, 0.72], "auroc": [0.44, 0.61]}}}}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text(json.dumps(summary))
    attach_validation(pcopy, tmp_path / "run" / "summary.json")
    pid = _full_patient(cohort)
    out = tmp_path / "rep"
    assert main(["report", "--pipeline", str(pcopy), "--manifest", str(small_cohort), "--patient", pid,
                 "--out", str(out), "--no-pdf"]) == 0
    html = (out / "report.html").read_text()
    assert "treatment-response probabilities were not distinguishable from chance" in html
    assert "survival risk estimates were not distinguishable" not in html
