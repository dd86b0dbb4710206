"""``summary.md`` of a cv study: the rendering of ``summary.json`` (compute lives in :mod:`multimodal.study`)."""

from __future__ import annotations

from typing import Any

from multimodal.study_intervals import _summary_keys


def _fmt(v: Any) -> str:
    return "  n/a" if v is None else f"{float(v):.3f}"


def _ci_text(ci: list[float | None] | None) -> str:
    return "n/a" if not ci or ci[0] is None else f"{ci[0]:.3f}–{ci[1]:.3f}"


def method_ci(m: dict[str, Any], key: str) -> list[float | None] | None:
    """A method's 95 % CI of ``key``: ``<key>_bootstrap`` where there is one (the same as the plain key, except in
    summaries written while the plain key held a t-interval over folds), else the plain key."""
    ci95 = m.get("ci95") or {}
    boot = ci95.get(f"{key}_bootstrap")
    return boot if boot is not None else ci95.get(key)


def _cell(m: dict[str, Any], key: str) -> str:
    """The mean over folds with its 95 % CI in brackets."""
    text = _fmt(m["mean"].get(key)).strip()
    ci = method_ci(m, key)
    if ci and ci[0] is not None:
        text += f" ({_ci_text(ci)})"
    return text


def _signed(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.3f}"


def comparison_text(comparison: dict[str, Any] | None) -> str:
    """One line: our model minus the best baseline (and minus every other baseline) with the paired CIs; "" without
    a comparison."""
    if not comparison:
        return ""

    def one(d: dict[str, Any]) -> str:
        ci = d.get("ci95") or [None, None]
        ci_s = "n/a" if ci[0] is None else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"
        return f"{_signed(d.get('diff'))} (95% CI {ci_s})"

    best, key = comparison["best_baseline"], comparison["metric"]
    others = [f"{n} {one(d)}" for n, d in comparison.get("vs", {}).items() if n != best]
    line = (f"Paired difference in {key}, {comparison['method']} − {best} (best baseline by mean {key}): "
            f"{one(comparison)}")
    if others:
        line += "; vs " + ", ".join(others)
    return line + " (bootstrap over patients within folds, the same resamples for both methods)."


def summary_markdown(summary: dict[str, Any]) -> str:
    keys = _summary_keys(summary.get("task"))
    main = keys[0]
    lines = [f"# {summary.get('cohort')}: {summary.get('task')} ({summary.get('n_folds')} folds)", "",
             "Mean over folds (95% CI: bootstrap over patients within folds).", "",
             "| method | " + " | ".join(keys) + f" | 95% CI ({main}, bootstrap) |",
             "|---|" + "---|" * (len(keys) + 1)]
    for name, m in summary["methods"].items():
        cells = [_fmt(m["mean"].get(main)).strip(), *(_cell(m, k) for k in keys[1:])]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {_ci_text(method_ci(m, main))} |")
    if summary.get("oracle"):
        lines.append(f"| oracle (true risk) | {_fmt(summary['oracle']['c_index']).strip()} |" + " |" * len(keys))
    for part in ("comparison", "comparison_response"):  # task both: the response's comparison too
        comparison = comparison_text(summary.get(part))
        if comparison:
            lines += ["", comparison]
    lines += ["", "Protocol: " + "; ".join(f"{k}: {v}" for k, v in summary.get("protocol", {}).items())]
    return "\n".join(lines) + "\n"
