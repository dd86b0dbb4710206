"""Collecting input problems: every problem and warning of a load, grouped and summarised (see
:class:`ProblemLog`), each naming file, patient and field."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from multimodal.errors import InputError, Problem

#: Problems of one kind listed one by one before the rest are summarised in one line.
MAX_PER_GROUP = 25

# ---- problem collection -----------------------------------------------------------------------------------------
#: Ids named in the one warning about a modality's patients that the patient table lacks.
EXTRA_EXAMPLES = 5


@dataclass
class ExtraPatients:
    """Patients (or MEDS subjects) a modality source names but the patient table lacks, collected while the modality
    resolves; they are ignored and reported in ONE warning per modality (:meth:`ProblemLog.report_extra`)."""

    ids: dict[str, None] = field(default_factory=dict)
    files: dict[str, None] = field(default_factory=dict)
    what: str = "patient(s)"
    #: advice for this source, added to the warning's hint
    advice: str | None = None

    def add(self, pid: Any, file: Any) -> None:
        self.ids.setdefault(str(pid))
        if file is not None:
            self.files.setdefault(str(file))


@dataclass
class ProblemLog:
    """Collects problems and warnings instead of stopping at the first one.

    Problems of one ``group`` (e.g. "negative time") are listed one by one up to ``max_per_group``; the rest are
    counted and summarised by :meth:`finish`, so a cohort of 100k bad rows gives a readable report.
    """

    max_per_group: int = MAX_PER_GROUP
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    _listed: dict[tuple[bool, str], int] = field(default_factory=dict)
    _suppressed: dict[tuple[bool, str], list[Problem]] = field(default_factory=dict)
    #: where the modality being resolved collects the patients the patient table lacks
    extra: ExtraPatients = field(default_factory=ExtraPatients)

    def report_extra(self, modality: str, *, manifest: Any = None) -> None:
        """One warning for the patients collected in :attr:`extra` (their count and a few ids), then start over."""
        ex, self.extra = self.extra, ExtraPatients()
        if not ex.ids:
            return
        ids = sorted(ex.ids)
        files = list(ex.files) or ([str(manifest)] if manifest is not None else [])
        shown = ", ".join(files[:3]) + (f" (and {len(files) - 3} more files)" if len(files) > 3 else "")
        examples = ", ".join(repr(i) for i in ids[:EXTRA_EXAMPLES]) + (" ..." if len(ids) > EXTRA_EXAMPLES else "")
        self.warn(f"{len(ids)} {ex.what} in modality {modality!r} are not in the patient table and are ignored: "
                  f"{examples}", file=shown or None, patient=ids[0] if len(ids) == 1 else None,
                  field=f"modalities.{modality}",
                  hint="add them to the patient table to use their data (patients to score need a row, outcomes may "
                       "be left empty)" + (f"; {ex.advice}" if ex.advice else ""))

    def _add(self, is_warning: bool, prob: Problem, group: str | None) -> None:
        target = self.warnings if is_warning else self.problems
        if group is None:
            target.append(prob)
            return
        key = (is_warning, group)
        n = self._listed.get(key, 0)
        if n < self.max_per_group:
            self._listed[key] = n + 1
            target.append(prob)
        else:
            self._suppressed.setdefault(key, []).append(prob)

    def error(self, message: str, *, file: Any = None, patient: Any = None, field: str | None = None,
              hint: str | None = None, group: str | None = None) -> None:
        self._add(False, _problem(message, file, patient, field, hint), group)

    def warn(self, message: str, *, file: Any = None, patient: Any = None, field: str | None = None,
             hint: str | None = None, group: str | None = None) -> None:
        self._add(True, _problem(message, file, patient, field, hint), group)

    def absorb(self, exc: InputError, *, as_warning: bool = False) -> None:
        for p in exc.problems:
            self._add(as_warning, p, None)

    def finish(self) -> None:
        """Append one summary line per group whose problems were not all listed."""
        for (is_warning, group), rest in self._suppressed.items():
            first = rest[0]
            who = sorted({p.patient for p in rest if p.patient is not None})
            examples = f"; patients {who[:10]}{' ...' if len(who) > 10 else ''}" if who else ""
            msg = f"... and {len(rest)} more like this ({group}){examples}"
            (self.warnings if is_warning else self.problems).append(
                Problem(msg, file=first.file, field=first.field, hint=first.hint)
            )
        self._suppressed.clear()


def _problem(message: str, file: Any, patient: Any, field: str | None, hint: str | None) -> Problem:
    return Problem(message, file=None if file is None else str(file),
                   patient=None if patient is None else str(patient), field=field, hint=hint)


def did_you_mean(name: str, options: Iterable[str], cutoff: float = 0.6) -> str | None:
    opts = [str(o) for o in options]
    close = difflib.get_close_matches(str(name), opts, n=1, cutoff=cutoff)
    if close:
        return f"did you mean {close[0]!r}?"
    shown = ", ".join(opts[:15]) + (" ..." if len(opts) > 15 else "")
    return f"available: {shown}" if opts else None
