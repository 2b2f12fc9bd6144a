"""Native library logs, held back and attached to results and errors (a library facility, not only the CLI's).

ONNX Runtime, TensorRT, TensorRT-RTX and cuDNN write their log lines from C++ straight to file descriptor 2:
in a notebook they land under the cell (hundreds of coloured lines), in a script on the terminal, and
an error arrives buried in them. The workbench's public entry points that build or run engines
(:data:`ENTRY_POINTS`: ``build_variants`` / ``build_engine``, ``make_variant``, ``run_model``,
``measure_latency``, ``profile`` / ``profile_layers``, ``compare_outputs`` / ``compare_engines``,
``layerwise``, ``propose_mixed_precision``, ``run_flow`` and its stages) run inside :func:`native_log`:

* fd 2 goes to a private temp file while the call runs (Python's own ``sys.stderr`` keeps the terminal
  when it *was* fd 2, so progress bars and warnings still show; in Jupyter ``sys.stderr`` is the
  kernel's stream and is left alone);
* the lines (ANSI colours and ORT's time stamps removed) are kept: on success in
  ``BuildRecord.native_log`` (builds) and in :func:`last`; on failure the :class:`~workbench.errors.WorkbenchError`
  gets them as ``error.native_log`` plus a note on its traceback ("N native log lines: see
  .native_log") — the error message itself stays one line;
* every line is also logged at DEBUG on the ``workbench.native`` logger.

``show(True)`` (or ``WORKBENCH_NATIVE_LOG=show``; the CLI's ``--verbose``) lets native lines through
untouched. Calls nest (the outermost owns the redirection; each level sees the lines written while it
ran). fd 2 belongs to the whole process: lines written by other threads while a capture runs are
captured with it.

    try:
        wb.build_engine("model.onnx", "fp16", "tensorrt-rtx")
    except wb.WorkbenchError as e:
        print(e)                 # one line
        print(e.native_log[-5:]) # what the native library said
"""
from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import re
import sys
import tempfile
import threading
from typing import Callable, TypeVar

#: public functions that run inside a capture (tests/test_adversarial_logs.py checks each)
ENTRY_POINTS = ["workbench.builds:build_variants", "workbench.precision:make_variant", "workbench.run:run_model",
                "workbench.measure.latency:measure_latency", "workbench.measure.layers:profile",
                "workbench.measure.layers:profile_layers", "workbench.compare.outputs:compare_outputs",
                "workbench.compare.outputs:compare_engines", "workbench.compare.layerwise:layerwise",
                "workbench.compare.sensitivity:propose_mixed_precision", "workbench.flow:run_flow",
                "workbench.flow:build_stage", "workbench.flow:profile_stage", "workbench.flow:accuracy_stage"]

__all__ = ["NativeLog", "native_log", "captures_native_log", "show", "showing", "last", "MAX_LINES"]

#: at most this many lines are kept per capture (the first and last halves when there are more)
MAX_LINES = 400
#: at most this many bytes of one capture are read back
MAX_BYTES = 4 << 20

_log = logging.getLogger("workbench.native")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_STAMP = re.compile(r"^\s*\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \[[A-Z]\w*:[^\]]*\]\s*")  # ORT's prefix

_LOCK = threading.RLock()
_depth = 0
_tmp = None  # the temp file fd 2 points to while captures run
_saved_fd: int | None = None
_saved_stderr = None
_show: bool | None = None
_last: list[str] = []


def show(on: bool | None = True) -> None:
    """Let native log lines through to fd 2 (``True``), capture them (``False``), or follow
    ``WORKBENCH_NATIVE_LOG`` (``None``, the default: capture unless it is ``show``)."""
    global _show
    _show = on


def showing() -> bool:
    if _show is not None:
        return _show
    return os.environ.get("WORKBENCH_NATIVE_LOG", "").strip().lower() in ("show", "1", "on", "verbose")


def last() -> list[str]:
    """The lines of the most recent outermost capture (empty when nothing was written)."""
    return list(_last)


def _clean(line: str) -> str:
    return _STAMP.sub("", _ANSI.sub("", line)).rstrip()


def _start() -> bool:
    """Point fd 2 at a fresh temp file (outermost capture); False when there is no usable fd 2."""
    global _tmp, _saved_fd, _saved_stderr
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    try:
        _saved_fd = os.dup(2)
        _tmp = tempfile.TemporaryFile()
        os.dup2(_tmp.fileno(), 2)
    except (OSError, ValueError, AttributeError):  # embedded interpreters without fd 2: capture nothing
        _stop()
        return False
    try:
        real = sys.stderr.fileno() == 2
    except (OSError, ValueError, AttributeError):  # a StringIO, Jupyter's stream: leave it alone
        real = False
    if real:  # Python's own writes (progress bars, warnings) keep the terminal
        _saved_stderr = sys.stderr
        sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(_saved_fd), "wb", buffering=0),
                                      encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                                      errors="backslashreplace", line_buffering=True, write_through=True)
    return True


def _stop() -> None:
    global _tmp, _saved_fd, _saved_stderr
    if _saved_stderr is not None:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
            sys.stderr.close()
        sys.stderr = _saved_stderr
        _saved_stderr = None
    if _saved_fd is not None:
        with contextlib.suppress(OSError):
            os.dup2(_saved_fd, 2)
        with contextlib.suppress(OSError):
            os.close(_saved_fd)
        _saved_fd = None
    if _tmp is not None:
        _tmp.close()
        _tmp = None


def _size() -> int:
    if _tmp is None:
        return 0
    try:
        return os.fstat(_tmp.fileno()).st_size
    except (OSError, ValueError):
        return 0


def _read(start: int) -> list[str]:
    if _tmp is None:
        return []
    end = _size()
    if end <= start:
        return []
    n = min(end - start, MAX_BYTES)
    try:
        data = os.pread(_tmp.fileno(), n, end - n if end - start > MAX_BYTES else start)
    except (OSError, ValueError):
        return []
    lines = [_clean(ln) for ln in data.decode("utf-8", "replace").splitlines()]
    return [ln for ln in lines if ln.strip()]


def _bounded(lines: list[str]) -> list[str]:
    if len(lines) <= MAX_LINES:
        return lines
    half = MAX_LINES // 2
    return lines[:half] + [f"[... {len(lines) - 2 * half} native log lines left out ...]"] + lines[-half:]


class NativeLog:
    """One capture (see the module text). After the block: ``lines`` (bounded by :data:`MAX_LINES`),
    ``count`` (all non-empty lines written while it ran); :meth:`so_far` counts during the block."""

    def __init__(self):
        self.lines: list[str] = []
        self.count = 0
        self.active = False
        self._start_at = 0
        self._outer = False

    def __enter__(self) -> "NativeLog":
        global _depth
        if showing():
            return self
        with _LOCK:
            if _depth == 0:
                if not _start():
                    return self
                self._outer = True
            _depth += 1
            self.active = True
            self._start_at = _size()
        return self

    def so_far(self) -> int:
        """Native lines written since the block began (read from the capture file now)."""
        if not self.active:
            return self.count
        with _LOCK:
            return len(_read(self._start_at))

    def __exit__(self, exc_type, exc, tb) -> bool:
        global _depth, _last
        if not self.active:
            return False
        with _LOCK:
            lines = _read(self._start_at)
            _depth -= 1
            if self._outer:
                _stop()
            self.active = False
        self.count = len(lines)
        self.lines = _bounded(lines)
        if self._outer:
            _last = list(self.lines)
        if lines and _log.isEnabledFor(logging.DEBUG):
            for ln in self.lines:
                _log.debug("%s", ln)
        if exc is not None and self.lines:
            attach(exc, self.lines, self.count)
        return False

    def note(self) -> str:
        n = self.count if not self.active else self.so_far()
        return f"{n} native log line{'s' if n != 1 else ''}" if n else ""


def attach(exc: BaseException, lines: list[str], count: int | None = None) -> None:
    """Give ``exc`` the native log lines (``exc.native_log``) and a traceback note, once: an outer
    capture (which saw at least as much) replaces an inner one's lines."""
    from .errors import WorkbenchError

    if not isinstance(exc, WorkbenchError) or not lines:
        return
    prev = getattr(exc, "native_log", None) or []
    if len(lines) < len(prev):
        return
    exc.native_log = list(lines)
    n = count if count is not None else len(lines)
    note = f"[{n} native log line{'s' if n != 1 else ''} captured: see the exception's .native_log]"
    notes = getattr(exc, "__notes__", None)
    if notes is not None:
        notes[:] = [x for x in notes if not (x.startswith("[") and "native log line" in x)]
    if hasattr(exc, "add_note"):
        exc.add_note(note)


def native_log() -> NativeLog:
    """A context manager capturing native log lines written to fd 2 while its block runs."""
    return NativeLog()


F = TypeVar("F", bound=Callable)


def captures_native_log(fn: F) -> F:
    """Decorator: run ``fn`` inside :func:`native_log` (an entry point that builds or runs engines)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with NativeLog():
            return fn(*args, **kwargs)

    wrapper.captures_native_log = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
