"""The one exception family of trt-workbench.

Every error a user can cause (bad model file, bad data, bad shapes, missing backend) is a
:class:`WorkbenchError`. Messages say what went wrong *and what to do*. The CLI turns these into one
line on stderr and exit code 2; any other exception is a bug (exit 1).
"""
from __future__ import annotations


class WorkbenchError(Exception):
    """Base class: an error the user can fix. ``hint`` is appended to the message when given.
    ``native_log``: lines native libraries wrote to fd 2 while the failing call ran (``workbench.logs``)."""

    native_log: "list[str] | tuple" = ()

    def __init__(self, message: str, *, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)


class WorkbenchWarning(UserWarning):
    """Something the user should know that does not stop the work (e.g. calibrating on few samples). The CLI
    prints these as one ``warning:`` line each, even without ``--debug``."""


class UsageError(WorkbenchError):
    """Wrong arguments: unknown precision, bad iteration count, conflicting flags."""


class ModelLoadError(WorkbenchError):
    """The model file cannot be read or parsed as ONNX."""


class ExternalDataError(ModelLoadError):
    """External tensor data is missing or points outside the model's folder."""


class ShapeSpecError(UsageError):
    """A ``--shapes`` map is malformed or does not fit the model."""


class DataError(WorkbenchError):
    """Input / calibration / label data does not match the model."""


class BackendUnavailable(WorkbenchError):
    """A backend (or its device) is not installed or not usable here; the message names what to install."""


class UnsupportedError(WorkbenchError):
    """A valid request this backend/device/recipe combination cannot do (e.g. FP8 on a CPU)."""


class BuildError(WorkbenchError):
    """A backend failed to build a variant (parser errors, builder failure, cancelled build)."""


class RunError(WorkbenchError):
    """Running an engine failed."""


class EditError(WorkbenchError):
    """A graph edit is invalid or breaks the model."""


class CacheError(WorkbenchError):
    """An engine cache entry is unusable."""


class OutputError(WorkbenchError, OSError):
    """An output path cannot be written: a folder that cannot be created or written, a file where a
    folder is needed (or the reverse), the source model itself. Also an ``OSError``, for callers that
    catch those."""


def str_list(value, what: str) -> tuple[str, ...]:
    """``value`` as a tuple of strings (a list/tuple/set of names); :class:`UsageError` for a single
    string, a number or anything else (API arguments such as ``keep_nodes``)."""
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise UsageError(f"{what} takes a list of names, not {type(value).__name__} {str(value)[:60]!r}")
    items = tuple(value)
    bad = [v for v in items if not isinstance(v, str)]
    if bad:
        raise UsageError(f"{what} takes a list of names (strings), got {bad[:3]!r}")
    return items
