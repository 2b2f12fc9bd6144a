"""Safe file I/O: atomic writes, the output-path guard, the input-file guards and a bounded ``.npz`` reader.

Writes: a temp file in the same folder, fsync, then ``os.replace``; a crash or error mid-write leaves
the previous file (or none) — never a half-written one. Every write goes through :func:`guard_output`,
which refuses (:class:`~workbench.errors.OutputError`, a ``WorkbenchError`` and an ``OSError``):

- a path that is (or is a link to) a file this process read as an input — a source model, its
  external-data files, an input/calibration ``.npz`` (see :func:`protect`);
- an existing target that is not a regular file (a FIFO, a device, a socket) or is a folder;
- a path outside the chosen output folder (``root=``), and over-long paths or names.

Names taken from a model (``graph.name``, variant names) become file names only through
:func:`safe_name` (no separators, no ``..``, no leading dot, bounded length) and :func:`child_path`
(which checks the result stays inside its folder).

Reads: :func:`check_input_file` / :func:`read_input_bytes` accept regular files only (never a device or
FIFO, which would hang or never end), check the size before reading and remember the file as protected.
:func:`read_npz` checks every member's ``.npy`` header (shape × dtype) against a memory budget and
reads only the rows asked for, so a small zip bomb costs what the caller needs, not what it claims.

The contract and its tests: ``docs/security.md``.
"""
from __future__ import annotations

import json
import math
import os
import re
import secrets
import stat
import sys
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError, OutputError, UsageError, WorkbenchError

#: longest path text accepted (Linux PATH_MAX); longer paths are a usage error, not an OSError later.
MAX_PATH_CHARS = 4096
#: longest single file or folder name (Linux NAME_MAX).
MAX_NAME_BYTES = 255
#: longest name :func:`safe_name` produces (room for suffixes like ``-fp16-mixed.engine.json``).
SAFE_NAME_CHARS = 96


def _why(e: OSError) -> str:
    return e.strerror or str(e)


# ---------------------------------------------------------------------------------------------- paths
def check_path_text(path: str | os.PathLike, what: str = "path", *, error: type = UsageError) -> Path:
    """``path`` as a Path, or ``error`` when it is empty, holds a NUL byte or is over-long."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if not text:
        raise error(f"{what}: empty path")
    if "\0" in text:
        raise error(f"{what}: the path contains a NUL byte")
    if len(text) > MAX_PATH_CHARS:
        raise error(f"{what}: the path is {len(text):,} characters long (limit {MAX_PATH_CHARS})")
    for part in Path(text).parts:
        if len(os.fsencode(part)) > MAX_NAME_BYTES:
            raise error(f"{what}: the name {part[:40]}... is {len(os.fsencode(part))} bytes long "
                        f"(limit {MAX_NAME_BYTES})")
    return Path(text)


_UNSAFE = re.compile(r"[^\w.+@=-]+")


def safe_name(text: Any, default: str = "model") -> str:
    """A file-name-safe version of ``text`` (a graph name, a variant name): path separators, ``..``,
    control and shell characters become ``_``; no leading dot; at most :data:`SAFE_NAME_CHARS`
    characters; ``default`` when nothing is left. ``safe_name("../../x") == "x"``."""
    s = _UNSAFE.sub("_", str(text or ""))
    s = re.sub(r"\.{2,}", "_", s)
    s = s.strip("._ ")
    s = s[:SAFE_NAME_CHARS].rstrip("._ ")
    return s or default


def _inside(child: Path, root: Path) -> bool:
    return child == root or root in child.parents


def child_path(folder: str | os.PathLike, name: str) -> Path:
    """``folder / name`` for a name that must stay a direct child of ``folder`` (checked after resolving
    links); :class:`OutputError` otherwise. Use :func:`safe_name` on names taken from a model first."""
    folder = Path(folder)
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise OutputError(f"refusing to write {name!r} in {folder}: not a plain file name")
    p = folder / name
    root = folder.resolve()
    real = p.resolve()
    if not _inside(real, root):
        raise OutputError(f"refusing to write {p}: it resolves to {real}, outside the output folder {root}")
    return p


# ---------------------------------------------------------------------------------------------- inputs
# Files this process read as inputs: {(st_dev, st_ino): (path, size, mtime_ns)}. A write that would
# replace one of them while it is still the file that was read is refused (guard_output).
_PROTECTED: dict[tuple[int, int], tuple[str, int, int]] = {}
_LOCK = threading.Lock()


def protect(path: str | os.PathLike, what: str = "an input file") -> None:
    """Remember ``path`` (an existing regular file read as input) so that no workbench write replaces it."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return
    if stat.S_ISREG(st.st_mode):
        with _LOCK:
            _PROTECTED[(st.st_dev, st.st_ino)] = (f"{what} {os.fspath(path)}", st.st_size, st.st_mtime_ns)


def protected_as(path: str | os.PathLike) -> str | None:
    """What ``path`` is protected as (e.g. ``"the source model m.onnx"``), or None."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    with _LOCK:
        hit = _PROTECTED.get((st.st_dev, st.st_ino))
    if hit is None:
        return None
    what, size, mtime = hit
    if (st.st_size, st.st_mtime_ns) != (size, mtime):  # changed since it was read: no longer that input
        return None
    return what


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def check_input_file(path: str | os.PathLike, what: str = "input file", *, error: type = DataError,
                     max_bytes: int | None = None, protect_as: str | None = None) -> Path:
    """``path`` if it is an existing regular file (after links) of at most ``max_bytes``; ``error``
    otherwise (missing, a folder, a device, a FIFO, a socket, too big). The file is then protected
    from workbench writes (``protect_as`` names it in refusals)."""
    p = check_path_text(path, what, error=error)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise error(f"{what} not found: {p}") from None
    except OSError as e:
        raise error(f"cannot read {what} {p}: {_why(e)}") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{p} is a folder, not a file", hint=f"give the {what}'s path")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} {p} is {_kind(st.st_mode)}, not a regular file; refusing to read it")
    if max_bytes is not None and st.st_size > max_bytes:
        raise error(f"{what} {p} is {st.st_size / 2**20:,.1f} MiB, over the {max_bytes / 2**20:,.0f} MiB limit")
    protect(p, protect_as or what)
    return p


def read_input_bytes(path: str | os.PathLike, what: str = "input file", *, error: type = DataError,
                     max_bytes: int | None = None, protect_as: str | None = None) -> bytes:
    """The bytes of a regular file, checked as :func:`check_input_file` does. Opened non-blocking and
    re-checked on the open descriptor, so a file swapped for a FIFO or device in between still fails
    fast; never reads more than the size checked."""
    p = check_input_file(path, what, error=error, max_bytes=max_bytes, protect_as=protect_as)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise error(f"cannot read {what} {p}: {_why(e)}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{what} {p} is {_kind(st.st_mode)}, not a regular file; refusing to read it")
        if max_bytes is not None and st.st_size > max_bytes:
            raise error(f"{what} {p} is {st.st_size / 2**20:,.1f} MiB, over the {max_bytes / 2**20:,.0f} MiB limit")
        try:
            return f.read(st.st_size)
        except OSError as e:
            raise error(f"cannot read {what} {p}: {_why(e)}") from None


# ---------------------------------------------------------------------------------------------- outputs
def guard_output(path: str | os.PathLike, *, root: str | os.PathLike | None = None, what: str = "output") -> Path:
    """The one output-path check every workbench writer makes before writing ``path``.

    Raises :class:`OutputError` when ``path`` is over-long, lies outside ``root`` (when given), is an
    existing folder, FIFO, device or socket, or is (or links to) a file this process read as an input
    (source model, its external data, input data). Returns ``path``.
    """
    path = check_path_text(path, what, error=OutputError)
    if root is not None:
        r = Path(root).resolve()
        real = path.resolve()
        if not _inside(real, r):
            raise OutputError(f"refusing to write {path}: it resolves to {real}, outside the output folder {r}")
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):  # a parent that is a file: ensure_dir names it
        st = None
    except OSError as e:
        raise OutputError(f"cannot write {path}: {_why(e)}") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise OutputError(f"cannot write {path}: it is a folder", hint="give a file path")
        if not stat.S_ISREG(st.st_mode):
            raise OutputError(f"refusing to write {what} to {path}: it is {_kind(st.st_mode)}",
                              hint="give a regular file path")
        hit = protected_as(path)
        if hit is not None:
            raise OutputError(f"refusing to overwrite {hit} with {what} ({path})",
                              hint="write to a new file name or another folder")
    return path


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create folder ``path`` (and parents) if needed; :class:`OutputError` when it cannot be."""
    path = check_path_text(path, "output folder", error=OutputError)
    if path.exists() and not path.is_dir():
        raise OutputError(f"cannot use {path} as an output folder: it is a file", hint="give a folder path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output folder {path}: {_why(e)}") from e
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, root: str | os.PathLike | None = None) -> Path:
    """Write ``data`` to ``path`` atomically, after :func:`guard_output` (``root``: the folder it must
    stay in). The file gets the permissions a plain ``open()`` gives (0666 minus the umask)."""
    path = guard_output(path, root=root)
    ensure_dir(path.parent)
    tmp = path.parent / f".{path.name[:200]}.{secrets.token_hex(4)}.tmp"
    try:
        # O_EXCL: never follow or reuse an existing file; mode 0666 & ~umask applied by the kernel
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {_why(e)}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        guard_output(path, root=root)  # re-checked right before the rename
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError) and not isinstance(e, WorkbenchError):
            raise OutputError(f"cannot write {path}: {_why(e)}") from e
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str, *, root: str | os.PathLike | None = None) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), root=root)


_SESSION_TMP: tempfile.TemporaryDirectory | None = None


def session_tempdir() -> Path:
    """One private temp folder for this process (removed at exit): runtime copies of in-memory models."""
    global _SESSION_TMP
    with _LOCK:
        if _SESSION_TMP is None:
            _SESSION_TMP = tempfile.TemporaryDirectory(prefix="workbench-")
        return Path(_SESSION_TMP.name)


# ---------------------------------------------------------------------------------------------- .npz
#: most members an .npz may hold
NPZ_MAX_MEMBERS = 4096


def memory_budget() -> int:
    """Bytes one data file may decode to: ``WORKBENCH_MAX_DATA_BYTES`` when set, else half the RAM."""
    env = os.environ.get("WORKBENCH_MAX_DATA_BYTES")
    if env:
        try:
            v = int(env)
            if v > 0:
                return v
        except ValueError:
            pass
        raise UsageError(f"WORKBENCH_MAX_DATA_BYTES={env!r}: expected a positive number of bytes")
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 4 << 30


def _npy_header(f, where: str):
    import numpy as np

    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:
            shape, fortran, dtype = fmt._read_array_header(f, version)  # 3.0: utf-8 header
    except (ValueError, EOFError, OSError, SyntaxError, TypeError, zipfile.BadZipFile) as e:
        raise DataError(f"{where} is not a valid .npy array: {e}") from None
    if dtype.hasobject:
        raise DataError(f"{where} holds object arrays; refusing to unpickle them",
                        hint="save plain numeric arrays with np.savez")
    return tuple(int(d) for d in shape), bool(fortran), dtype


def read_npz(path: str | os.PathLike, *, rows: int | None = None, full=(), budget: int | None = None,
             what: str = "data file") -> dict[str, Any]:
    """The arrays of an ``.npz`` file, never unpickled, with bounded memory.

    Each member's ``.npy`` header (shape × dtype) is read first; the arrays' total size (only the first
    ``rows`` rows along axis 0 when ``rows`` is given) must fit ``budget`` (default
    :func:`memory_budget`) before anything is allocated, and no more than that is decompressed — a zip
    bomb or a header that lies costs at most what was asked for. :class:`DataError` for anything that
    is not a zip of numeric ``.npy`` arrays.
    """
    import numpy as np

    p = check_input_file(path, what, error=DataError)
    budget = memory_budget() if budget is None else budget
    with open(p, "rb") as f:
        magic = f.read(6)
    if magic == b"\x93NUMPY":
        raise DataError(f"{p} is a .npy array, not an .npz archive",
                        hint="save one array per input with np.savez(path, input_name=array)")
    try:
        zf = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as e:
        raise DataError(f"{p} is not a readable .npz file: it is not a zip archive of arrays ({e})",
                        hint="save one array per input with np.savez(path, input_name=array)") from None
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        if len(infos) > NPZ_MAX_MEMBERS:
            raise DataError(f"{p} holds {len(infos):,} members (limit {NPZ_MAX_MEMBERS})")
        plan, total = [], 0
        try:
            for info in infos:
                key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                where = f"{p} member {key!r}"
                with zf.open(info) as f:
                    shape, fortran, dtype = _npy_header(f, where)
                count = math.prod(shape)
                take = shape
                if rows is not None and key not in full and shape and not fortran and shape[0] > rows:
                    take = (rows,) + shape[1:]
                nbytes = math.prod(take) * dtype.itemsize
                total += nbytes
                if total > budget:
                    raise DataError(
                        f"{where} declares shape {list(shape)} {dtype} ({count * dtype.itemsize / 2**30:,.2f} GiB); "
                        f"the data needs more than the memory budget of {budget / 2**30:,.2f} GiB",
                        hint="use fewer samples (--limit) or raise WORKBENCH_MAX_DATA_BYTES")
                plan.append((info, key, take, fortran, dtype, nbytes))
            out: dict[str, Any] = {}
            for info, key, take, fortran, dtype, nbytes in plan:
                where = f"{p} member {key!r}"
                arr = np.empty(take, dtype=dtype, order="F" if fortran else "C")
                with zf.open(info) as f:
                    _npy_header(f, where)
                    view = memoryview(arr.reshape(-1, order="A")).cast("B") if nbytes else None
                    got = 0
                    while view is not None and got < nbytes:
                        n = f.readinto(view[got:])
                        if not n:
                            raise DataError(f"{where} is truncated: its header declares {list(take)} {dtype} "
                                            f"but the member holds only {got:,} of {nbytes:,} bytes")
                        got += n
                out[key] = arr
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError,
                RuntimeError) as e:
            if isinstance(e, WorkbenchError):
                raise
            raise DataError(f"{p} is not a readable .npz file: {e}") from None
    return out


# ---------------------------------------------------------------------------------------------- JSON


# ------------------------------------------------------------------------------ the JSON policy
# One serialization policy for every record, frame and CLI output (strict JSON: parsers reject the
# NaN/Infinity literals): NaN (and pandas NA) -> null, +-Inf -> the strings "inf" / "-inf", numpy
# scalars -> Python numbers, numpy arrays and tuples -> lists. Readers turn "inf"/"-inf"/null back into
# floats with :func:`json_float`. Tables are written by :func:`workbench.records.frame_to_json`.
def json_number(v: Any) -> Any:
    """One scalar under the JSON policy (bools stay bools, numpy numbers become Python numbers)."""
    if isinstance(v, bool) or type(v).__name__ == "bool_":
        return bool(v)
    return json_safe(v)


def json_float(v: Any) -> float:
    """A float back from the JSON policy: null -> NaN, "inf"/"-inf" -> +-Inf (also reads the older
    ``{"$float": "inf"}`` and ``"nan"`` spellings)."""
    if v is None:
        return math.nan
    if isinstance(v, dict) and set(v) == {"$float"}:
        v = v["$float"]
    if isinstance(v, str):
        return float(v)  # "inf", "-inf", "nan"
    return float(v)


def json_safe(obj: Any) -> Any:
    """``obj`` under the JSON policy: NaN → null, ±Inf → ``"inf"`` / ``"-inf"``, numpy scalars → Python
    numbers, numpy arrays / tuples → lists. Strict parsers reject the NaN/Infinity literals."""
    if isinstance(obj, float):
        if math.isnan(obj):
            return None
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
        return obj
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):  # numpy scalar
        return json_safe(obj.item())
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if _is_pandas_na(obj):
        return None
    return obj


def _is_pandas_na(obj: Any) -> bool:
    """pandas.NA / NaT (checked only when pandas is already imported; never imports it)."""
    pd = sys.modules.get("pandas")
    return pd is not None and (obj is pd.NA or obj is pd.NaT)


def dumps_json(obj: Any, *, indent: int | None = 2) -> str:
    """Strict JSON text (no NaN/Infinity literals); unknown objects become ``str(obj)``."""
    return json.dumps(json_safe(obj), indent=indent, sort_keys=False, default=str, allow_nan=False)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, root: str | os.PathLike | None = None) -> Path:
    return atomic_write_text(path, dumps_json(obj) + "\n", root=root)
