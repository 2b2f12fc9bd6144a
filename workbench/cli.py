"""The ``workbench`` command: thin, one subcommand per public call.

Subcommands live in ``workbench/commands/<name>.py``; each module defines ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. They are discovered, so adding a command never
edits this file.

Exit codes: 0 success; 2 bad input or usage (one line on stderr, ``--debug`` for the traceback);
1 an unexpected error (a bug: please report it).
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import traceback
import warnings

from .errors import WorkbenchError

PROG = "workbench"


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, exit 2."""

    def error(self, message: str):  # noqa: D401
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(2)


def _commands():
    from . import commands

    mods = []
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{commands.__name__}.{info.name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            mods.append(mod)
    order = getattr(commands, "ORDER", [])
    mods.sort(key=lambda m: (order.index(m.NAME) if m.NAME in order else len(order), m.NAME))
    return mods


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = _Parser(prog=PROG, description="trt-workbench: inspect, edit, build, profile and compare ONNX models "
                                       "across precisions and backends (ONNX Runtime, TensorRT, TensorRT-RTX).")
    p.add_argument("--version", action="version", version=f"trt-workbench {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for mod in _commands():
        sp = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks for errors")
        mod.add_arguments(sp)
        sp.set_defaults(_run=mod.run)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return 2
    if not debug:
        warnings.simplefilter("ignore")
        from .errors import WorkbenchWarning  # still shown: one line each

        warnings.filterwarnings("default", category=WorkbenchWarning)
        warnings.showwarning = lambda message, category, *a, **k: sys.stderr.write(
            f"{PROG} {args.command}: warning: {message}\n")
    try:
        return int(args._run(args) or 0)
    except WorkbenchError as e:
        if debug:
            traceback.print_exc()
        msg = str(e).replace("\n", " ")
        sys.stderr.write(f"{PROG} {args.command}: error: {msg}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # a bug
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"{PROG} {args.command}: internal error: {type(e).__name__}: {e} "
                         f"(this is a bug; rerun with --debug and report the traceback)\n")
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
