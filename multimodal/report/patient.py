"""Render a :class:`~multimodal.explain.result.RiskResult` to self-contained HTML (Jinja2, autoescape) and PDF."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from multimodal.explain.result import RiskResult
from multimodal.io import atomic_path, write_text_atomic
from multimodal.report import figures


def _env() -> Environment:
    return Environment(loader=PackageLoader("multimodal.report", "templates"), autoescape=select_autoescape(["html"]),
                       trim_blocks=True, lstrip_blocks=True)


def render_html(result: RiskResult) -> str:
    r = result.to_dict()
    fig: dict[str, Any] = {"heatmaps": {}}
    if r.get("survival"):
        fig["survival"] = figures.survival_curve(r["survival"])
    if r.get("response"):
        fig["response"] = figures.response_bars(r["response"])
    vals = (r.get("modality_contributions") or {}).get("values")
    if vals:
        fig["contributions"] = figures.contributions(vals)
    for m, ev in (r.get("evidence") or {}).items():
        if ev.get("kind") == "patches":
            fig["heatmaps"][m] = [figures.heatmap(h) for h in ev.get("heatmaps", [])[:4]]
    return _env().get_template("patient.html").render(r=r, fig=fig)


def write_patient_report(result: RiskResult, out_dir: str | Path, *, pdf: bool = True) -> dict[str, Path]:
    """Write ``report.html`` (+ ``report.pdf``, ``risk_result.json``) into ``out_dir`` atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    html = render_html(result)
    paths = {"html": write_text_atomic(out / "report.html", html),
             "json": write_text_atomic(out / "risk_result.json", result.to_json())}
    if pdf:
        from weasyprint import HTML

        with atomic_path(out / "report.pdf") as tmp:
            HTML(string=html, base_url=None).write_pdf(str(tmp))
        paths["pdf"] = out / "report.pdf"
    return paths


__all__ = ["render_html", "write_patient_report"]
