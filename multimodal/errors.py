"""Error types shared by the whole package.

Every error a user can cause by giving bad input is an :class:`InputError`: it names the file, the patient and the
field at fault and says what to do. The CLI turns it into a short message and exit code 2 (no traceback unless
``--debug``); any other :class:`MultimodalError` exits with 1.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


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
            where.append(f"file {self.file}")
        if self.patient is not None:
            where.append(f"patient {self.patient!r}")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        text = f"{', '.join(where)}: {self.message}" if where else self.message
        if self.hint:
            text += f" ({self.hint})"
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
