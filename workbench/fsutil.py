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
import struct
import sys
import tempfile
import threading
import zipfile
import zlib
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


def _protect_stat(st: os.stat_result, path: str | os.PathLike, what: str) -> None:
    if stat.S_ISREG(st.st_mode):
        with _LOCK:
            _PROTECTED[(st.st_dev, st.st_ino)] = (f"{what} {os.fspath(path)}", st.st_size, st.st_mtime_ns)


def _after_input_check(path: Path, st: os.stat_result) -> None:
    """Called between the check of an opened input and its first read (a no-op; tests swap the file
    here to show the read still sees the file that was checked)."""


def open_input(path: str | os.PathLike, what: str = "input file", *, error: type = DataError,
               max_bytes: int | None = None, protect_as: str | None = None):
    """``(file, stat)``: ``path`` opened once, read-only, then checked *on the open file* (``fstat``):
    a regular file (never a device, FIFO, socket or folder) of at most ``max_bytes``. Every read goes
    through the returned file, so a path swapped (a symlink redirected, a file replaced) after the open
    cannot change what is read: the check and the read see the same file. Opened non-blocking, so a
    FIFO fails at once instead of hanging. The file is then protected from workbench writes."""
    p = check_path_text(path, what, error=error)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{what} not found: {p}") from None
    except IsADirectoryError:
        raise error(f"{p} is a folder, not a file", hint=f"give the {what}'s path") from None
    except OSError as e:
        raise error(f"cannot read {what} {p}: {_why(e)}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise error(f"{p} is a folder, not a file", hint=f"give the {what}'s path")
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{what} {p} is {_kind(st.st_mode)}, not a regular file; refusing to read it")
        if max_bytes is not None and st.st_size > max_bytes:
            raise error(f"{what} {p} is {st.st_size / 2**20:,.1f} MiB, over the {max_bytes / 2**20:,.0f} MiB limit")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    _protect_stat(st, p, protect_as or what)
    _after_input_check(p, st)
    return f, st


def check_input_file(path: str | os.PathLike, what: str = "input file", *, error: type = DataError,
                     max_bytes: int | None = None, protect_as: str | None = None) -> Path:
    """``path`` if it is an existing regular file (after links) of at most ``max_bytes``; ``error``
    otherwise (missing, a folder, a device, a FIFO, a socket, too big). The file is then protected
    from workbench writes (``protect_as`` names it in refusals). For files another library reads by
    path (external data, Netron); the workbench's own reads use :func:`open_input`."""
    f, _ = open_input(path, what, error=error, max_bytes=max_bytes, protect_as=protect_as)
    f.close()
    return check_path_text(path, what, error=error)


def read_input_bytes(path: str | os.PathLike, what: str = "input file", *, error: type = DataError,
                     max_bytes: int | None = None, protect_as: str | None = None) -> bytes:
    """The bytes of a regular file, checked as :func:`open_input` does, on the same open file they are
    read from; never reads more than the size checked."""
    f, st = open_input(path, what, error=error, max_bytes=max_bytes, protect_as=protect_as)
    with f:
        try:
            return f.read(st.st_size)
        except OSError as e:
            raise error(f"cannot read {what} {path}: {_why(e)}") from None


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
    except (ValueError, EOFError, OSError, SyntaxError, TypeError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"{where} is not a valid .npy array: {e}") from None
    if dtype.hasobject:
        raise DataError(f"{where} holds object arrays; refusing to unpickle them",
                        hint="save plain numeric arrays with np.savez")
    return tuple(int(d) for d in shape), bool(fortran), dtype


_ZIP_LOCAL = struct.Struct("<4s2B4HL2L2H")  # a zip local file header (30 bytes)


class NpzMember:
    """One array of an :class:`NpzReader`: its ``.npy`` header (``shape``, ``dtype``, ``fortran``) and
    where its data lies. Slices are read on demand (:meth:`NpzReader.read`); nothing is held."""

    def __init__(self, key: str, info: zipfile.ZipInfo, shape: tuple, fortran: bool, dtype, data_start: int,
                 file_offset: int | None):
        self.key, self.info, self.shape, self.fortran, self.dtype = key, info, shape, fortran, dtype
        self.data_start = data_start  # offset of the array data in the member's (uncompressed) bytes
        self.file_offset = file_offset  # offset of the array data in the .npz file (stored members), else None
        self.nbytes = math.prod(shape) * dtype.itemsize

    def __repr__(self) -> str:
        return f"NpzMember({self.key!r}, {list(self.shape)} {self.dtype})"


class NpzReader:
    """An ``.npz`` file opened once and read lazily, one slice at a time, never unpickled.

    The file is opened through :func:`open_input` (one descriptor, checked with ``fstat`` before
    anything is read, so swapping the path afterwards — a symlink redirected, a file replaced — cannot
    change what is read); a file rewritten *in place* after the open (same inode, new size or mtime) is
    refused at the next read instead of mixing old offsets with new bytes. The zip directory and each member's ``.npy`` header (shape × dtype) are read at
    open; a header that claims more bytes than its member holds is refused there. Array data is read
    only by :meth:`read`: a slice along one axis (a batch of samples), at most ``budget`` bytes per read.
    Stored members (``np.savez``) are read with ``pread`` at their offset; compressed members
    (``np.savez_compressed``) are decompressed as a stream up to the slice (a per-iteration
    :meth:`cursor` keeps the stream where the last slice ended, so reading batches in order
    decompresses each byte once).

    ``peak_read_bytes`` / ``peak_read_rows`` record the largest single read (what one batch costs),
    ``peak_rows[key]`` the most rows of one array read at once.
    """

    def __init__(self, path: str | os.PathLike, *, what: str = "data file", budget: int | None = None):
        self.path = check_path_text(path, what, error=DataError)
        self.what = what
        self.budget = memory_budget() if budget is None else budget
        self.peak_read_bytes = 0
        self.peak_read_rows = 0
        self.peak_rows: dict[str, int] = {}
        self.reads = 0
        self._lock = threading.Lock()
        self._file, self.stat = open_input(self.path, what, error=DataError)
        try:
            self._open_zip()
        except BaseException:
            self.close()
            raise

    # -------------------------------------------------------------- open
    def _open_zip(self) -> None:
        p = self.path
        fd = self._file.fileno()
        magic = os.pread(fd, 6, 0)
        if magic == b"\x93NUMPY":
            raise DataError(f"{p} is a .npy array, not an .npz archive",
                            hint="save one array per input with np.savez(path, input_name=array)")
        try:
            self._zf = zipfile.ZipFile(self._file)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as e:
            raise DataError(f"{p} is not a readable .npz file: it is not a zip archive of arrays ({e})",
                            hint="save one array per input with np.savez(path, input_name=array)") from None
        infos = [i for i in self._zf.infolist() if not i.is_dir()]
        if len(infos) > NPZ_MAX_MEMBERS:
            raise DataError(f"{p} holds {len(infos):,} members (limit {NPZ_MAX_MEMBERS})")
        self.members: dict[str, NpzMember] = {}
        try:
            for info in infos:
                key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                where = f"{p} member {key!r}"
                with self._zf.open(info) as f:
                    shape, fortran, dtype = _npy_header(f, where)
                    start = f.tell()
                m = NpzMember(key, info, shape, fortran, dtype, start, None)
                if start + m.nbytes > info.file_size:
                    raise DataError(f"{where} is truncated: its header declares {list(shape)} {dtype} "
                                    f"({m.nbytes:,} bytes) but the member holds only "
                                    f"{max(info.file_size - start, 0):,} bytes of data")
                if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 1:
                    m.file_offset = self._stored_offset(info, where) + start
                self.members[key] = m
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError,
                RuntimeError, struct.error, zlib.error) as e:
            if isinstance(e, WorkbenchError):
                raise
            raise DataError(f"{p} is not a readable .npz file: {e}") from None

    def _check_unchanged(self) -> None:
        """:class:`DataError` when the open file was rewritten in place since it was checked (a writer that
        truncates and rewrites the same file, e.g. ``np.savez`` over it): offsets read at open no longer hold."""
        if self._file is None:
            raise DataError(f"{self.path} was closed")
        st = os.fstat(self._file.fileno())
        if (st.st_size, st.st_mtime_ns) != (self.stat.st_size, self.stat.st_mtime_ns):
            raise DataError(f"{self.path} changed while it was being read (rewritten in place since it was opened)",
                            hint="load the data again")

    def _stored_offset(self, info: zipfile.ZipInfo, where: str) -> int:
        head = os.pread(self._file.fileno(), _ZIP_LOCAL.size, info.header_offset)
        fields = _ZIP_LOCAL.unpack(head)
        if fields[0] != b"PK\x03\x04":
            raise DataError(f"{where}: bad zip local header")
        data = info.header_offset + _ZIP_LOCAL.size + fields[-2] + fields[-1]
        if data + info.file_size > self.stat.st_size:
            raise DataError(f"{where} is truncated: the member runs past the end of the file")
        return data

    def close(self) -> None:
        zf = getattr(self, "_zf", None)
        if zf is not None:
            zf.close()
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "NpzReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    def __getstate__(self):
        raise TypeError("an NpzReader holds an open file; pass the path instead")

    @property
    def keys(self) -> list[str]:
        return list(self.members)

    # -------------------------------------------------------------- read
    def cursor(self) -> "NpzCursor":
        """A reading position per compressed member (for one pass over the batches; close it after)."""
        return NpzCursor(self)

    def read(self, key: str, axis: int | None = None, start: int = 0, stop: int | None = None,
             cursor: "NpzCursor | None" = None):
        """Array ``key`` sliced ``[start:stop]`` along ``axis`` (the whole array when ``axis`` is None),
        read from the file now; :class:`DataError` if the slice is over the budget or the data is cut short."""
        import numpy as np

        m = self.members[key]
        self._check_unchanged()
        shape = m.shape
        if axis is None or not shape:
            axis, start, stop = (0, 0, shape[0]) if shape else (None, 0, 0)
        n = shape[axis] if axis is not None else 1
        stop = n if stop is None else min(stop, n)
        start = min(max(start, 0), stop)
        out_shape = shape if axis is None else shape[:axis] + (stop - start,) + shape[axis + 1:]
        nbytes = math.prod(out_shape) * m.dtype.itemsize
        where = f"{self.path} member {key!r}"
        if nbytes > self.budget:
            raise DataError(f"{where}: a slice of shape {list(out_shape)} {m.dtype} is "
                            f"{nbytes / 2**30:,.2f} GiB, over the memory budget of {self.budget / 2**30:,.2f} GiB",
                            hint="use a smaller batch, or raise WORKBENCH_MAX_DATA_BYTES")
        # an F-order array of shape s is a C-order array of shape reversed(s): slice that one
        cshape = tuple(reversed(shape)) if m.fortran else shape
        cout = tuple(reversed(out_shape)) if m.fortran else out_shape
        cax = None if axis is None else (len(shape) - 1 - axis if m.fortran else axis)
        arr = np.empty(cout, dtype=m.dtype)
        buf = memoryview(arr.reshape(-1)).cast("B") if nbytes else None
        if buf is not None:
            if cax is None:
                chunks = [(0, nbytes)]
            else:
                outer = math.prod(cshape[:cax])
                inner = math.prod(cshape[cax + 1:]) * m.dtype.itemsize
                if outer == 1 or start == 0 and stop == cshape[cax]:
                    chunks = [(start * inner if outer == 1 else 0, nbytes)]
                else:
                    rows = cshape[cax]
                    chunks = [((o * rows + start) * inner, (stop - start) * inner) for o in range(outer)]
            try:
                self._read_chunks(m, chunks, buf, cursor, where)
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError, zlib.error) as e:
                if isinstance(e, WorkbenchError):
                    raise
                raise DataError(f"{where} cannot be read: {e}") from None
        with self._lock:
            self.reads += 1
            self.peak_read_bytes = max(self.peak_read_bytes, nbytes)
            rows = stop - start if axis is not None else 1
            self.peak_read_rows = max(self.peak_read_rows, rows)
            self.peak_rows[key] = max(self.peak_rows.get(key, 0), rows)
        return arr.T if m.fortran else arr

    def _read_chunks(self, m: NpzMember, chunks, buf: memoryview, cursor, where: str) -> None:
        pos = 0
        if m.file_offset is not None:  # stored: read at the offset, on the descriptor checked at open
            fd = self._file.fileno()
            for off, size in chunks:
                got = 0
                while got < size:
                    n = _pread_into(fd, buf[pos + got:pos + size], m.file_offset + off + got)
                    if not n:
                        raise DataError(f"{where} is truncated: the file ended while reading it")
                    got += n
                pos += size
            return
        own = cursor is None
        cursor = cursor or NpzCursor(self)
        try:
            for off, size in chunks:
                f = cursor.stream(m, m.data_start + off)
                got = 0
                while got < size:
                    n = f.readinto(buf[pos + got:pos + size])
                    if not n:
                        raise DataError(f"{where} is truncated: its data ends before what its header declares")
                    got += n
                cursor.advance(m, size)
                pos += size
        finally:
            if own:
                cursor.close()


def _pread_into(fd: int, view: memoryview, offset: int) -> int:
    if hasattr(os, "preadv"):
        return os.preadv(fd, [view], offset)
    data = os.pread(fd, min(len(view), 1 << 24), offset)  # pragma: no cover - platforms without preadv
    view[:len(data)] = data
    return len(data)


class NpzCursor:
    """Open decompression streams of an :class:`NpzReader`'s compressed members, each left where the last
    read ended, so reading slices in order decompresses every byte once (one cursor per pass)."""

    def __init__(self, reader: NpzReader):
        self.reader = reader
        self._streams: dict[str, list] = {}  # key -> [stream, position]

    def stream(self, m: NpzMember, offset: int):
        entry = self._streams.get(m.key)
        if entry is None or entry[1] > offset:
            if entry is not None:
                entry[0].close()
            entry = self._streams[m.key] = [self.reader._zf.open(m.info), 0]
        f, pos = entry
        while pos < offset:  # skip forward in bounded chunks
            skipped = len(f.read(min(offset - pos, 1 << 20)))
            if not skipped:
                raise DataError(f"{self.reader.path} member {m.key!r} is truncated")
            pos += skipped
        entry[1] = pos
        return f

    def advance(self, m: NpzMember, n: int) -> None:
        self._streams[m.key][1] += n

    def close(self) -> None:
        for f, _ in self._streams.values():
            f.close()
        self._streams.clear()

    def __enter__(self) -> "NpzCursor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_npz(path: str | os.PathLike, *, rows: int | None = None, full=(), budget: int | None = None,
             what: str = "data file") -> dict[str, Any]:
    """The arrays of an ``.npz`` file, never unpickled, with bounded memory (read through one
    :class:`NpzReader`: one open file, headers checked before anything is allocated).

    All arrays together (only the first ``rows`` rows along axis 0 when ``rows`` is given, except keys in
    ``full``) must fit ``budget`` (default :func:`memory_budget`); no more than that is decompressed — a
    zip bomb or a header that lies costs at most what was asked for. :class:`DataError` for anything that
    is not a zip of numeric ``.npy`` arrays. Datasets larger than memory: use :class:`NpzReader` slices.
    """
    budget = memory_budget() if budget is None else budget
    with NpzReader(path, what=what, budget=budget) as r:
        plan, total = [], 0
        for key, m in r.members.items():
            take = m.shape[0] if m.shape else None
            if rows is not None and key not in full and m.shape and m.shape[0] > rows:
                take = rows
            nbytes = (math.prod(m.shape[1:]) * take if m.shape else 1) * m.dtype.itemsize
            total += nbytes
            if total > budget:
                raise DataError(
                    f"{r.path} member {key!r} declares shape {list(m.shape)} {m.dtype} "
                    f"({m.nbytes / 2**30:,.2f} GiB); the data needs more than the memory budget of "
                    f"{budget / 2**30:,.2f} GiB", hint="use fewer samples (--limit) or raise WORKBENCH_MAX_DATA_BYTES")
            plan.append((key, take))
        with r.cursor() as c:
            return {key: r.read(key, 0 if take is not None else None, 0, take, cursor=c) for key, take in plan}


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
