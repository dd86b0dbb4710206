"""EHR evidence in clinical words: token names (``"LAB//LDH = 126.4 @ -200.5d"``) parsed, grouped to one row per
code, with the code's description and unit from the MEDS ``metadata/codes.parquet`` (its ``description`` column,
units in brackets as in LOINC display names), the latest value, how long before the data cut-off, and the trend."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["NO_EFFECT", "code_descriptions", "code_ranges", "direction", "event_rows", "parse_event", "range_flag"]

_NAME = re.compile(
    r"^(?P<code>.+?)(?P<unk> \[UNK\])?"
    r"(?: \[trend\] = (?P<trend>[-+0-9.eE]+)/y| = (?P<value>[-+0-9.eEinfa]+))?"
    r" @ (?:(?P<static>static)|(?P<time>-?[0-9.]+)(?P<unit>[a-z]))$")
_UNIT_WORDS = {"d": "days", "h": "hours", "w": "weeks", "y": "years"}
_UNIT_IN_DESC = re.compile(r"\s*\[(?P<unit>[^\]]+)\]\s*$")


def _codes_table(meds_root: Path | None, columns: list[str]) -> Any:
    """``columns`` of ``<meds_root>/metadata/codes.parquet`` as a DataFrame, None when absent or unreadable (the
    code metadata is optional: reports then use the codes themselves)."""
    if meds_root is None:
        return None
    path = Path(meds_root) / "metadata" / "codes.parquet"
    if not path.is_file():
        return None
    import pandas as pd

    try:
        return pd.read_parquet(path, columns=columns)
    except (OSError, ValueError, KeyError):
        return None


def code_descriptions(meds_root: Path | None) -> dict[str, str]:
    """``code -> description`` from ``<meds_root>/metadata/codes.parquet`` ({} when absent or unreadable)."""
    t = _codes_table(meds_root, ["code", "description"])
    if t is None:
        return {}
    return {str(c): str(d) for c, d in zip(t["code"], t["description"], strict=True) if d is not None and d == d}


def code_ranges(meds_root: Path | None) -> dict[str, tuple[float | None, float | None]]:
    """``code -> (reference_low, reference_high)`` from the optional columns of ``<meds_root>/metadata/codes.parquet``
    (docs/data-formats.md; {} when absent or unreadable; a missing bound is None)."""
    t = _codes_table(meds_root, ["code", "reference_low", "reference_high"])
    if t is None:
        return {}

    def bound(v: Any) -> float | None:
        try:
            f = float(v)
        except (TypeError, ValueError):
            return None
        return f if math.isfinite(f) else None

    out = {}
    for c, lo, hi in zip(t["code"], t["reference_low"], t["reference_high"], strict=True):
        lo, hi = bound(lo), bound(hi)
        if lo is not None or hi is not None:
            out[str(c)] = (lo, hi)
    return out


def range_flag(value: float, low: float | None, high: float | None) -> str:
    """``"below"``, ``"above"`` or ``"within"`` the reference range."""
    if low is not None and value < low:
        return "below"
    if high is not None and value > high:
        return "above"
    return "within"


def _range_text(low: float | None, high: float | None, unit: str | None) -> str:
    u = f" {unit}" if unit else ""
    if low is not None and high is not None:
        return f"{low:.4g}–{high:.4g}{u}"
    return f"≥ {low:.4g}{u}" if low is not None else f"≤ {high:.4g}{u}"


#: Below this |attribution| a factor is said to have no effect (reports print three decimals: it would read 0.000).
NO_EFFECT = 5e-4


def direction(score: float, what: str) -> str:
    """"raises <what>" / "lowers <what>", or "no effect" for an attribution that rounds to 0.000 (e.g. every
    attribution of a model whose fusion network was kept at zero, its prediction being the pooled stack's)."""
    if abs(score) < NO_EFFECT:
        return "no effect"
    return f"raises {what}" if score > 0 else f"lowers {what}"


def parse_event(name: str) -> dict[str, Any]:
    """The parts of an EHR token name; a name that does not parse is kept whole as its code."""
    m = _NAME.match(str(name))
    if m is None:
        return {"code": str(name)}
    out: dict[str, Any] = {"code": m["code"], "static": bool(m["static"])}
    if m["value"] is not None:
        out["value"] = float(m["value"])
    if m["trend"] is not None:
        out["trend_per_year"] = float(m["trend"])
    if m["time"] is not None:
        out["time"], out["time_unit"] = float(m["time"]), _UNIT_WORDS.get(m["unit"], m["unit"])
    return out


def _label(code: str, descriptions: dict[str, str]) -> tuple[str, str | None]:
    """(words, unit) of a code: its description without the bracketed unit, else the code's last parts."""
    desc = descriptions.get(code)
    if desc:
        u = _UNIT_IN_DESC.search(desc)
        return (_UNIT_IN_DESC.sub("", desc), u["unit"] if u else None)
    parts = code.split("//")
    return (" ".join(parts[1:]) if len(parts) > 1 else code), None


def event_rows(names: Sequence[str], scores: Sequence[float], descriptions: dict[str, str], what: str,
               top_k: int, ranges: dict[str, tuple[float | None, float | None]] | None = None) -> list[dict[str, Any]]:
    """One row per code (its tokens' attributions summed), the ``top_k`` largest by |attribution|, each in words;
    a value is placed against the code's reference range where ``ranges`` (:func:`code_ranges`) has one."""
    groups: dict[str, dict[str, Any]] = {}
    for name, s in zip(names, scores, strict=True):
        ev = parse_event(name)
        g = groups.setdefault(ev["code"], {"attribution": 0.0, "n": 0, "latest": None, "trend": None})
        g["attribution"] += float(s)
        if "trend_per_year" in ev:
            g["trend"] = ev["trend_per_year"]
            continue
        g["n"] += 1
        if g["latest"] is None or ev.get("time", 0.0) > g["latest"].get("time", float("-inf")):
            g["latest"] = ev
    rows = []
    for code, g in sorted(groups.items(), key=lambda kv: -abs(kv[1]["attribution"]))[:top_k]:
        words, unit = _label(code, descriptions)
        latest = g["latest"] or {}
        parts, placed = [], {}
        if "value" in latest:
            parts.append(f"{latest['value']:.4g}{' ' + unit if unit else ''}")
            low, high = (ranges or {}).get(code, (None, None))
            if low is not None or high is not None:
                flag = range_flag(latest["value"], low, high)
                parts[-1] += f" ({flag} the reference range {_range_text(low, high, unit)})"
                placed = {"reference_low": low, "reference_high": high, "range_flag": flag}
        if "time" in latest and not latest.get("static"):
            parts.append(f"{abs(latest['time']):.0f} {latest['time_unit']} before the data cut-off")
        if g["n"] > 1:
            parts.append(f"{g['n']} records")
        if g["trend"] is not None:
            parts.append(f"trend {g['trend']:+.3g}{' ' + unit if unit else ''} per year")
        rows.append({"name": f"{words}: {', '.join(parts)}" if parts else words, "code": code,
                     "attribution": g["attribution"], "unit": unit, **placed,
                     "direction": direction(g["attribution"], what)})
    return rows
