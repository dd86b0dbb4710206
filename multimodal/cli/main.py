"""The ``multimodal`` console script: one subcommand per module in :mod:`multimodal.cli`.

Each command module exports ``register(subparsers)`` (adds its parser, with an example in its epilog) and
``run(args) -> int``. Exit codes: 0 ok, 1 failure, 2 bad input or usage. Tracebacks only with ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
from collections.abc import Sequence

from multimodal.errors import InputError, IntegrityError, MultimodalError

INTEGRITY_HINT = ("a file changed after it was written (truncated, edited or replaced); nothing from it was used: "
                  "restore the folder from a trusted copy or re-create it (e.g. re-run the command that wrote it)")

EPILOG = """example (from the repository root; outputs under runs/):
  multimodal synth --out runs/cohort --patients 200 --seed 0
  multimodal validate runs/cohort/manifest.yaml
  multimodal cv configs/demo.yaml --out runs/demo --set data.manifest=runs/cohort/manifest.yaml
  multimodal train configs/demo.yaml --out runs/pipeline --set data.manifest=runs/cohort/manifest.yaml
  multimodal report --pipeline runs/pipeline --manifest runs/cohort/manifest.yaml --patient SYN-0001 --out runs/rep

Run 'multimodal COMMAND --help' for each command's options and examples; docs/quickstart.md for a walk-through.
Exit codes: 0 ok, 1 failure, 2 bad input or usage."""

COMMANDS = ("synth", "validate", "convert", "train", "cv", "predict", "explain", "report", "cohort_report", "env")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multimodal",
        description="Multimodal precision-medicine models: slides + genomics + EHR -> survival and response.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"multimodal.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"multimodal.cli.{name}":
                continue
            raise
        mod.register(sub)
    for cmd in sub.choices.values():
        _plain_help(cmd)
        if "--debug" not in cmd._option_string_actions:  # every command takes --debug (main() reads it from argv)
            cmd.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    return parser


_RST_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|obj|exc|ref|doc):`~?([^`]+)`")


def plain_text(text: str | None) -> str | None:
    """``text`` without reStructuredText markup (roles, double backquotes), as a terminal shows it."""
    if not text:
        return text
    return _RST_ROLE.sub(r"\1", text).replace("``", "'")


def _plain_help(p: argparse.ArgumentParser) -> None:
    """Strip RST markup from a command's description, epilog and option help (they are often module docstrings)."""
    p.description, p.epilog = plain_text(p.description), plain_text(p.epilog)
    for action in p._actions:
        if isinstance(action.help, str):
            action.help = plain_text(action.help)


class _Parser(argparse.ArgumentParser):
    pass


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (so in-process callers that swap it, tests, see warnings)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def _configure_logging(debug: bool) -> None:
    root = logging.getLogger()
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        h = _StderrHandler()
        h.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(h)
    root.setLevel(logging.DEBUG if debug else logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    _configure_logging(debug)
    for noisy in ("numexpr", "weasyprint", "fontTools", "PIL", "h5py", "numcodecs", "matplotlib", "numba", "accelerate"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        rc = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here, not in the interpreter's exit
        return rc
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `multimodal validate ... | head`: the reader left; not a failure of ours
        _silence_stdout()
        return 141  # 128 + SIGPIPE, as a shell reports a command killed by a closed pipe
    except MultimodalError as exc:
        if debug:
            raise
        if isinstance(exc, InputError):
            print(f"multimodal {args.command}: error: {exc}", file=sys.stderr)
        elif isinstance(exc, IntegrityError):
            print(f"multimodal {args.command}: error: {exc}\n  {INTEGRITY_HINT}", file=sys.stderr)
        else:
            print(f"multimodal {args.command}: failed: {exc}\n(run with --debug for a traceback)", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # an unexpected failure: still no bare traceback unless --debug
        if debug:
            raise
        print(f"multimodal {args.command}: failed: {type(exc).__name__}: {exc} (run with --debug for a traceback)",
              file=sys.stderr)
        return 1
    finally:
        _shutdown_distributed()


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise on the closed pipe again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (embedded, captured): nothing to flush later
        pass


def _shutdown_distributed() -> None:
    """Under torchrun, tear the process group down before exit (an exit with live gloo threads can abort)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
