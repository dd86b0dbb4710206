"""Render a :class:`~multimodal.explain.result.RiskResult` to self-contained HTML (Jinja2, autoescape) and PDF."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from multimodal.explain.clinical_terms import NO_EFFECT
from multimodal.explain.key_findings import validation_rows
from multimodal.explain.result import RiskResult
from multimodal.io import atomic_path, write_text_atomic
from multimodal.report import figures


def _env() -> Environment:
    return Environment(loader=PackageLoader("multimodal.report", "templates"), autoescape=select_autoescape(["html"]),
                       trim_blocks=True, lstrip_blocks=True)


#: What the attribution numbers mean, printed above the evidence.
ATTRIBUTION_MEANING = (
    "Numbers are contributions to the model's risk score (higher = worse; on a log-hazard-like scale, not "
    "percentages): + raised this patient's score, − lowered it; the listed rows plus 'other' add up to the input's "
    "total."
)

_SUFFIXES = {"rna": "expression", "mut": "mutation", "cnv": "copy number", "meth": "methylation", "prot": "protein"}


def plain(name: str) -> str:
    """A token name in words: ``GENE1:rna`` -> ``GENE1 expression``, ``TP53:mut`` -> ``TP53 mutation``,
    ``set score:rna`` -> ``gene-set score (expression)``."""
    base, sep, kind = str(name).rpartition(":")
    if not sep or kind not in _SUFFIXES:
        return str(name).replace("_", " ") if str(name).isupper() and "_" in str(name) else str(name)
    if base == "set score":
        return f"gene-set score ({_SUFFIXES[kind]})"
    return f"{base} {_SUFFIXES[kind]}"


def gene_text(g: dict[str, Any]) -> str:
    """A gene in words with the patient's value: "TP53 mutation: carried (12 % of the cohort)", "GENE1 expression:
    85th percentile of 60 patients"."""
    text = plain(g["name"])
    if "carried" in g:
        return (f"{text}: {'carried' if g['carried'] else 'not carried'} ("
                f"{100 * g['cohort_frequency']:.0f} % of {g['n_cohort']} cohort patients carry one)")
    if "percentile" in g:
        return f"{text}: {g['percentile']:.0f}th percentile of {g['n_cohort']} cohort patients"
    return text


def gene_short(g: dict[str, Any]) -> str:
    """A member gene in few words: "GENE1 expression 85th pct", "TP53 mutation carried"."""
    text = plain(g["name"])
    if "carried" in g:
        return f"{text} {'carried' if g['carried'] else 'not carried'}"
    if "percentile" in g:
        return f"{text} {g['percentile']:.0f}th pct"
    return text


#: Rows per input in the evidence tables of the report (risk_result.json keeps every listed factor).
ROWS_SHOWN = 6


def shown_rows(ev: dict[str, Any]) -> tuple[list[dict[str, Any]], float | None]:
    """The first :data:`ROWS_SHOWN` factors of an input and what the rest of the input's total is ("other")."""
    rows = list(ev.get("top", []))[:ROWS_SHOWN]
    if ev.get("total") is None:
        return rows, None
    listed = sum(float(t.get("token_attribution", t["attribution"])) for t in rows)
    return rows, float(ev["total"]) - listed


def top_factors(r: dict[str, Any], n: int = 3) -> list[str]:
    """The ``n`` strongest factors across inputs, in words (slides count as one factor: their total)."""
    cands: list[tuple[float, str]] = []
    for m, ev in (r.get("evidence") or {}).items():
        if ev.get("kind") == "patches":
            tot = ev.get("total")
            if tot is not None:
                cands.append((abs(tot), f"Tissue pattern on the slides ({m}) {'raised' if tot > 0 else 'lowered'} "
                                        f"the risk (all patches together {tot:+.3f})."))
            continue
        for t in ev.get("top", []):
            v = t.get("token_attribution", t["attribution"])
            what = "compared with the reference patients" if ev.get("relative_to") else ""
            cands.append((abs(v), f"{plain(t['name'])} ({m}) {t['direction'].replace('raises', 'raised').replace('lowers', 'lowered')}"
                                  f"{' ' + what if what else ''} ({v:+.3f})."))
    cands = [c for c in cands if c[0] >= NO_EFFECT]
    if not cands:  # the fusion network adds nothing (kept at zero): the prediction is the classical part's
        cands = _stack_factors(r.get("stack_terms"))
    return [c[1][0].upper() + c[1][1:] for c in sorted(cands, key=lambda c: -c[0])[:n]]


def _stack_factors(st: dict[str, Any] | None) -> list[tuple[float, str]]:
    """The classical part's largest terms in words (used when every attribution of the fusion network is 0)."""
    if not st:
        return []
    resp = st.get("head") == "response"
    what = "the log-odds of response" if resp else "the risk score"
    out = []
    for t in st.get("terms") or []:
        c = float(t.get("contribution") or 0.0)
        if abs(c) >= NO_EFFECT:
            out.append((abs(c), f"{t.get('label') or t.get('feature')} (the model's classical part, pooled features) "
                                f"{'raised' if c > 0 else 'lowered'} {what} ({c:+.3f})."))
    return out


def _fmt_years(t: float | None, unit: str) -> str:
    from multimodal.explain.key_findings import years_text

    return "n/a" if t is None else years_text(float(t), unit)


def render_html(result: RiskResult) -> str:
    r = result.to_dict()
    fig: dict[str, Any] = {"heatmaps": {}}
    if r.get("survival"):
        fig["survival"] = figures.survival_curve(r["survival"], r.get("risks_at_horizons"))
    if r.get("response"):
        fig["response"] = figures.response_bars(r["response"])
    vals = (r.get("modality_contributions") or {}).get("values")
    if vals:
        fig["contributions"] = figures.contributions(vals)
    for m, ev in (r.get("evidence") or {}).items():
        if ev.get("kind") == "patches":
            fig["heatmaps"][m] = [figures.heatmap(h, [p for p in ev.get("top_patches", [])[:5]
                                                      if p.get("slide_id") == h.get("slide_id")])
                                  for h in ev.get("heatmaps", [])[:4]]
    unit = (r.get("model") or {}).get("time_unit", "")
    return _env().get_template("patient.html").render(
        r=r, fig=fig, factors=top_factors(r), gene_text=gene_text, gene_short=gene_short, shown_rows=shown_rows, validation_rows=validation_rows(r.get("validation")), plain=plain, attribution_meaning=ATTRIBUTION_MEANING,
        fmt_years=lambda t: _fmt_years(t, unit))


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
