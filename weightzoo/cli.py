"""The ``weightzoo`` command line: a thin layer over the Python APIs.

Sub-commands live in :mod:`weightzoo.commands` (one module per group). Commands that train import
:mod:`generators` only when they run, so ``weightzoo info`` and ``import zoo`` stay light.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Iterator, NoReturn, Sequence

from weightzoo.commands.fit import run_fit
from zoo.errors import user_error

#: What Ctrl-C leaves, unless a command says otherwise (``set_defaults(interrupted=...)``).
RESUMES = "rerun the same command to resume"
FIT_INTERRUPTED = "the run folder has no test_metrics.json; rerun the same command to start the run again"


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (no usage block), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from weightzoo.commands import REGISTRARS
    from zoo import __version__

    parser = OneLineParser(prog="weightzoo", description="Model zoos for weight-space learning.")
    parser.add_argument("--version", action="version", version=f"weightzoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in REGISTRARS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv[:1] == ["fit"]:  # every flag after 'fit' belongs to LightningCLI, parsed there
        args = argparse.Namespace(command="fit", func=lambda a: run_fit(argv[1:]), interrupted=FIT_INTERRUPTED)
    else:
        args = parser.parse_args(argv)
    try:
        with unwrapped_output():
            code = int(args.func(args) or 0)
            sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's final flush
        return code
    except BrokenPipeError:  # the reader stopped early ('weightzoo info X --json | head'): stop quietly
        _silence_stdout()
        return 141  # as a process killed by SIGPIPE
    except OSError as exc:  # the file system refused (no such directory, permission, disk full): one line
        if exc.errno is None:
            raise
        print(f"weightzoo {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a ZooError may arrive wrapped by a library (datasets, Ray): find it
        cause = user_error(exc)
        if cause is None:
            raise
        print(f"weightzoo {args.command}: error: {cause}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"weightzoo {args.command}: interrupted; {getattr(args, 'interrupted', RESUMES)}", file=sys.stderr)
        return 130


@contextlib.contextmanager
def unwrapped_output(width: int = 1000) -> Iterator[None]:
    """While a command runs with its output going to a file or pipe, rich consoles are ``width`` columns
    wide instead of rich's default 80, so tables and lines reach the file unwrapped (rich reads the
    ``COLUMNS`` variable when a console is created; a variable the user set is kept)."""
    if sys.stdout.isatty() or "COLUMNS" in os.environ:
        yield
        return
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        os.environ.pop("COLUMNS", None)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor (tests)
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
