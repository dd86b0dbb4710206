"""Evidence in clinical words: EHR codes with description, unit, latest value and trend, one row per code; genes
with the patient's value; every input's listed rows plus "other" add up to its total."""

from __future__ import annotations

import json

import pytest
from report_helpers import full_patient

from multimodal.cli.main import main

DESCRIPTIONS = {"LAB//LDH": "Lactate dehydrogenase [U/L]", "GENDER//M": "Sex: male"}


def test_ehr_tokens_become_one_row_per_code_in_words():
    from multimodal.explain.clinical_terms import event_rows

    names = ["LAB//LDH = 126.416 @ -200.5d", "LAB//LDH = 130 @ -20.5d", "LAB//LDH [trend] = +12.5/y @ -20.5d",
             "GENDER//M @ static", "DIAGNOSIS//ICD10//I10 @ -300.0d"]
    rows = event_rows(names, [0.1, 0.2, 0.05, -0.01, 0.02], DESCRIPTIONS, "risk", 10)
    assert [r["code"] for r in rows] == ["LAB//LDH", "DIAGNOSIS//ICD10//I10", "GENDER//M"]
    ldh = rows[0]
    assert ldh["attribution"] == pytest.approx(0.35) and ldh["unit"] == "U/L"
    assert ldh["name"] == ("Lactate dehydrogenase: 130 U/L, 20 days before the data cut-off, 2 records, "
                           "trend +12.5 U/L per year")
    assert rows[1]["name"] == "ICD10 I10: 300 days before the data cut-off"  # no description: the code's parts
    assert rows[2]["name"] == "Sex: male" and rows[2]["direction"] == "lowers risk"
    # an attribution that prints as 0.000 is said to have no effect, not to lower the risk
    flat = event_rows(["GENDER//M @ static"], [-1e-6], DESCRIPTIONS, "risk", 10)
    assert flat[0]["direction"] == "no effect"


def test_lab_values_are_placed_against_the_codes_reference_range(tmp_path):
    """codes.parquet's optional reference_low / reference_high (as `multimodal synth` writes them) place the latest
    value: below, within or above, with the range in the code's unit."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from multimodal.explain.clinical_terms import code_ranges, event_rows

    meta = tmp_path / "metadata"
    meta.mkdir()
    pq.write_table(pa.table({"code": ["LAB//LDH", "LAB//CRP", "GENDER//M"],
                             "description": ["Lactate dehydrogenase [U/L]", "C-reactive protein [mg/L]", "Sex: male"],
                             "reference_low": [140.0, None, None], "reference_high": [280.0, 10.0, None]}),
                   meta / "codes.parquet")
    ranges = code_ranges(tmp_path)
    assert ranges == {"LAB//LDH": (140.0, 280.0), "LAB//CRP": (None, 10.0)}
    names = ["LAB//LDH = 126.416 @ -200.5d", "LAB//CRP = 14 @ -3.0d", "GENDER//M @ static"]
    rows = {r["code"]: r for r in event_rows(names, [0.3, 0.2, 0.1], DESCRIPTIONS, "risk", 10, ranges)}
    assert rows["LAB//LDH"]["name"] == ("Lactate dehydrogenase: 126.4 U/L (below the reference range 140–280 U/L), "
                                        "200 days before the data cut-off")
    assert rows["LAB//LDH"]["range_flag"] == "below" and rows["LAB//CRP"]["range_flag"] == "above"
    assert "≤ 10" in rows["LAB//CRP"]["name"] and "range_flag" not in rows["GENDER//M"]
    assert code_ranges(tmp_path / "nowhere") == {}


def test_synthetic_cohorts_write_reference_ranges_for_their_labs(tmp_path):
    import pandas as pd

    from multimodal.cohorts.synthetic import SyntheticConfig, generate_synthetic_cohort
    from multimodal.explain.clinical_terms import code_ranges

    manifest = generate_synthetic_cohort(tmp_path / "syn", SyntheticConfig(patients=12, seed=1, patches_per_slide=20,
                                                                          embed_dim=8, n_genes=40, n_pathways=4))
    codes = pd.read_parquet(manifest.parent / "meds" / "metadata" / "codes.parquet")
    ranges = code_ranges(manifest.parent / "meds")
    labs = [c for c in codes["code"] if c.startswith("LAB//")]
    assert labs and set(labs) <= set(ranges) and ranges["LAB//LDH"] == (140.0, 280.0)


def test_gene_words():
    from multimodal.report.patient import gene_text, plain

    assert plain("TP53:mut") == "TP53 mutation" and plain("GENE1:rna") == "GENE1 expression"
    assert gene_text({"name": "TP53:mut", "carried": True, "cohort_frequency": 0.25, "n_cohort": 40}) == \
        "TP53 mutation: carried (25 % of 40 cohort patients carry one)"
    assert gene_text({"name": "KRAS:mut", "carried": False, "cohort_frequency": 0.1, "n_cohort": 40}).startswith(
        "KRAS mutation: not carried")
    assert gene_text({"name": "GENE1:rna", "percentile": 85.0, "n_cohort": 40}) == \
        "GENE1 expression: 85th percentile of 40 cohort patients"


def test_report_evidence_adds_up_and_names_values(report_cohort, pipeline_dir, tmp_path):
    pid = full_patient(report_cohort)
    out = tmp_path / "rep"
    assert main(["report", "--pipeline", str(pipeline_dir), "--manifest", str(report_cohort), "--patient", pid,
                 "--out", str(out), "--no-pdf"]) == 0
    res = json.loads((out / "risk_result.json").read_text())
    html = (out / "report.html").read_text()
    for m, ev in res["evidence"].items():
        listed = sum(t.get("token_attribution", t["attribution"]) for t in ev.get("top", ev.get("top_patches", [])))
        assert listed + ev["other"] == pytest.approx(ev["total"], abs=1e-9), m
    ehr = res["evidence"]["ehr"]["top"]
    assert len({r["code"] for r in ehr}) == len(ehr)  # one row per code
    assert any(r["unit"] for r in ehr) and any(f" {r['unit']}" in r["name"] for r in ehr if r["unit"])
    genes = [g for t in res["evidence"]["genomics"]["top"] for g in t.get("top_members", [])]
    assert any("percentile" in g for g in genes) and all(0 <= g["percentile"] <= 100 for g in genes
                                                        if "percentile" in g)
    assert "Numbers are contributions to the model" in html and "other (everything not listed" in html


def test_page_one_factors_come_from_the_classical_part_when_the_network_adds_nothing():
    """A model whose fusion network was kept at zero (trunk scale 0) has every attribution 0: page 1 then names the
    pooled stack's largest terms, not zero-valued factors that would each "lower the risk"."""
    from multimodal.report.patient import top_factors

    zero = {"evidence": {"genomics": {"kind": "slots", "top": [{"name": "SYN_HYPOXIA", "attribution": 0.0,
                                                                "direction": "no effect"}]},
                         "pathology": {"kind": "patches", "total": 0.0}},
            "stack_terms": {"head": "survival", "terms": [
                {"feature": "genomics:set:HYPOXIA", "label": "HYPOXIA gene-set score", "contribution": 0.31},
                {"feature": "clinical:age", "label": "age", "contribution": -0.12},
                {"feature": "ehr:LAB//LDH", "label": "LDH", "contribution": 0.0}]}}
    assert top_factors(zero) == [
        "HYPOXIA gene-set score (the model's classical part, pooled features) raised the risk score (+0.310).",
        "Age (the model's classical part, pooled features) lowered the risk score (-0.120)."]
    live = {"evidence": {"genomics": {"kind": "slots", "top": [{"name": "SYN_HYPOXIA", "attribution": 0.02,
                                                                "direction": "raises risk"}]}},
            "stack_terms": zero["stack_terms"]}
    assert len(top_factors(live)) == 1 and top_factors(live)[0].startswith("SYN HYPOXIA")
