"""The ``workbench`` command: thin, one subcommand per public call.

Subcommands live in ``workbench/commands/<name>.py``; each module defines ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. They are discovered, so adding a command never
edits this file.

Exit codes: 0 success; 2 bad input or usage (one line on stderr, ``--debug`` for the traceback);
1 an unexpected error (a bug: please report it).

Native libraries (ONNX Runtime, TensorRT-RTX, cuDNN) write their logs straight to file descriptor 2.
While a command runs, fd 2 goes to a private temp file and Python's ``sys.stderr`` to the real
terminal (``workbench.logs``, the same capture the library's entry points use), so progress bars and
the one error line still show while the native lines are held back; an error line says how many
were hidden. ``--verbose`` (or ``--debug``) lets them through and shows
the workbench's own log at INFO. Every path argument that names an input (MODEL, --data, --calib) is
protected before the command runs: no output of the command may replace it (docs/security.md).
"""
from __future__ import annotations

import argparse
import errno
import importlib
import pkgutil
import sys
import traceback
import warnings

from .errors import WorkbenchError

PROG = "workbench"


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, exit 2."""

    def error(self, message: str):
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
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors (implies --verbose)")
    p.add_argument("--verbose", action="store_true", help="show native library logs (ONNX Runtime, TensorRT) and info logs")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for mod in _commands():
        sp = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks for errors")
        sp.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show native library logs and info logs")
        mod.add_arguments(sp)
        sp.set_defaults(_run=mod.run)
    return p


#: argument names that hold input files: protected from every write of the command
INPUT_ARGS = {"model": "the source model", "models": "a source model", "data": "the input data",
              "calib": "the calibration data"}


def _protect_inputs(args) -> None:
    from .fsutil import protect

    for attr, what in INPUT_ARGS.items():
        v = getattr(args, attr, None)
        for item in (v if isinstance(v, (list, tuple)) else [v]):
            if isinstance(item, str) and item and len(item) < 4096 and "\0" not in item:
                protect(item, what)


def _user_error(e: BaseException) -> str | None:
    """The message of an exception that is the input's fault though not a WorkbenchError, else None."""
    if isinstance(e, MemoryError):
        return "not enough memory for this input (a shape, batch or data file is too large for this machine)"
    if isinstance(e, RecursionError):
        return "the model nests subgraphs too deeply to process"
    if isinstance(e, OSError) and e.errno in (errno.ENAMETOOLONG, errno.EACCES, errno.EPERM, errno.ENOSPC,
                                              errno.EROFS, errno.ENOENT, errno.ENOTDIR, errno.EISDIR,
                                              errno.EDQUOT, errno.ELOOP):
        where = f" {e.filename}" if e.filename else ""
        return f"cannot access{where}: {e.strerror or e}"
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    verbose = debug or getattr(args, "verbose", False)
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return 2
    if not debug:
        warnings.simplefilter("ignore")
    # WorkbenchWarnings: with --verbose one line each as they come; otherwise collected, and a successful
    # run shows the first as its one stderr line (an error line stays the only line)
    from .errors import WorkbenchWarning

    seen: list[str] = []
    saved_showwarning = warnings.showwarning

    def _show(message, category, *a, **k):
        text = str(message).replace("\n", " ")
        if verbose:
            sys.stderr.write(f"{PROG} {args.command}: warning: {text}\n")
        elif text not in seen:
            seen.append(text)

    if not debug:
        warnings.filterwarnings("default", category=WorkbenchWarning)
        warnings.showwarning = _show
    if verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    _protect_inputs(args)
    from . import logs

    saved_show = logs._show
    logs.show(True if verbose else None)  # --verbose: native lines straight through
    try:
        with logs.native_log() as nl:
            try:
                rc = int(args._run(args) or 0)
            except WorkbenchError as e:
                if debug:
                    traceback.print_exc()
                msg = str(e).replace("\n", " ")
                sys.stderr.write(f"{PROG} {args.command}: error: {msg}{_note(nl)}\n")
                return 2
            except KeyboardInterrupt:
                sys.stderr.write(f"{PROG}: interrupted\n")
                return 130
            except BrokenPipeError:
                return 0
            except Exception as e:  # a bug, unless the input caused it (memory, recursion, OS limits)
                if debug:
                    traceback.print_exc()
                msg = _user_error(e)
                if msg is not None:
                    sys.stderr.write(f"{PROG} {args.command}: error: {msg}{_note(nl)}\n")
                    return 2
                text = str(e).replace("\n", " ")[:500]
                sys.stderr.write(f"{PROG} {args.command}: internal error: {type(e).__name__}: {text} "
                                 f"(this is a bug; rerun with --debug and report the traceback){_note(nl)}\n")
                return 1
        if seen and rc == 0:
            more = f" (+{len(seen) - 1} more; --verbose shows them)" if len(seen) > 1 else ""
            sys.stderr.write(f"{PROG} {args.command}: warning: {seen[0]}{more}\n")
        return rc
    finally:
        warnings.showwarning = saved_showwarning
        logs.show(saved_show)


def _note(nl) -> str:
    """`` [N native log lines hidden; --verbose shows them]`` while the capture still runs."""
    n = nl.so_far() if nl is not None else 0
    return f" [{n} native log line{'s' if n != 1 else ''} hidden; --verbose shows them]" if n else ""


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
