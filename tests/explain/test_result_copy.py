"""``RiskResult.to_dict`` is a deep copy equal to ``dataclasses.asdict`` (written out for speed)."""

from __future__ import annotations

from dataclasses import asdict

from multimodal.explain.result import RiskResult


def test_to_dict_equals_asdict_and_is_a_copy():
    heat = {"slide_id": "slide 1 of 1", "x": list(range(1000)), "y": list(range(1000)), "value": [0.5] * 1000}
    r = RiskResult(patient={"pseudonym": "PT-1"}, model={"name": "m", "arms": ("a", "b")}, inputs_used=["genomics"],
                   inputs_missing=[], risk_score=0.3,
                   evidence={"pathology": {"kind": "patches", "heatmaps": [heat], "top_patches": [{"x": 1}]}},
                   survival={"times": [0.0, 1.0], "survival": [1.0, 0.9], "band": [(0.8, 1.0), (0.7, 0.95)]})
    d = r.to_dict()
    assert d == asdict(r)
    d["evidence"]["pathology"]["heatmaps"][0]["value"][0] = -1.0
    d["patient"]["pseudonym"] = "changed"
    d["survival"]["band"][0] = None
    assert r.evidence["pathology"]["heatmaps"][0]["value"][0] == 0.5 and r.patient["pseudonym"] == "PT-1"
    assert r.survival["band"][0] == (0.8, 1.0)
