"""Error types shared by the whole package.

Every error a user can cause by giving bad input is an :class:`InputError`: it names the file, the patient and the
field at fault and says what to do. The CLI turns it into a short message and exit code 2 (no traceback unless
``--debug``); any other :class:`MultimodalError` exits with 1.
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: The most characters of a user's value an error message quotes (a value from a tiny hostile input can be huge).
MAX_QUOTE = 200
#: The most characters of one part (message, hint, field, patient) of a rendered problem: a last line of defence.
MAX_PART = 1000

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict, _REPR.maxset = 3, 8, 8, 8, 8
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = MAX_QUOTE


def short(value: Any, limit: int = MAX_QUOTE) -> str:
    """``repr(value)`` in bounded time and at most ``limit`` characters: use it wherever a message quotes a value the
    user gave (nested containers are cut at a few items and levels instead of being expanded)."""
    try:
        text = _REPR.repr(value)
    except Exception:  # a repr that fails (e.g. an int past Python's digit limit) must not hide the real error
        text = f"<{type(value).__name__}>"
    return clip(text, limit)


def clip(text: str, limit: int = MAX_PART) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


class MultimodalError(Exception):
    """Base class of the package's own errors (exit code 1 in the CLI)."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One problem found in the user's input, located as precisely as we can."""

    message: str
    file: str | None = None
    patient: str | None = None
    field: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = []
        if self.file is not None:
            where.append(f"file {clip(self.file)}")
        if self.patient is not None:
            where.append(f"patient {short(self.patient)}")
        if self.field is not None:
            where.append(f"field {short(self.field)}")
        message = clip(self.message)
        text = f"{', '.join(where)}: {message}" if where else message
        if self.hint:
            text += f" ({clip(self.hint)})"
        return text


class InputError(MultimodalError, ValueError):
    """Bad input or usage: a data file, a config, a manifest or a CLI argument (exit code 2).

    Holds one or more :class:`Problem` so that a validator can report everything it found at once.
    """

    exit_code = 2

    def __init__(
        self,
        message: str | None = None,
        *,
        file: str | object | None = None,
        patient: str | None = None,
        field: str | None = None,
        hint: str | None = None,
        problems: Iterable[Problem] | None = None,
    ) -> None:
        probs = list(problems or [])
        if message is not None:
            probs.insert(
                0,
                Problem(
                    message,
                    file=None if file is None else str(file),
                    patient=None if patient is None else str(patient),
                    field=field,
                    hint=hint,
                ),
            )
        if not probs:
            probs = [Problem("invalid input")]
        self.problems: list[Problem] = probs
        super().__init__(self._render())

    def _render(self) -> str:
        if len(self.problems) == 1:
            return str(self.problems[0])
        lines = [f"{len(self.problems)} problems found:"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)

    @property
    def file(self) -> str | None:
        return self.problems[0].file

    @property
    def patient(self) -> str | None:
        return self.problems[0].patient

    @property
    def field(self) -> str | None:
        return self.problems[0].field


class ConfigError(InputError):
    """A configuration file or a ``--set`` override is wrong."""


class IntegrityError(MultimodalError):
    """A checkpoint, pipeline or output file does not match its recorded checksum (tampered or truncated)."""

    exit_code = 2
