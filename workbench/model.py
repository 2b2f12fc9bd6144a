"""`Model`: an ONNX model with a read-only source, safe external data, and a stable content hash.

``workbench.load(path | bytes | onnx.ModelProto)`` is the entry point. The proto is held *without*
its external data loaded: tensors stored outside the ``.onnx`` file keep pointing at their files
(relative to ``base_dir``), so a model over 2 GB is inspected and hashed without a full in-memory copy.
Code that needs the weights in memory (edits, quantization) calls :meth:`Model.proto_with_data`.

The source file is never written: :meth:`Model.save` refuses the source path and writes atomically.
"""
from __future__ import annotations

import copy
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Union

import onnx
from google.protobuf.message import DecodeError

from .errors import ExternalDataError, ModelLoadError, OutputError, WorkbenchError
from .fsutil import (atomic_write_bytes, check_input_file, child_path, ensure_dir, open_input, safe_name,
                     session_tempdir)

try:  # CPython's built-in SHA-256 avoids loading OpenSSL through hashlib (~3 MB for `workbench inspect`)
    from _sha2 import sha256 as _sha256  # Python >= 3.12
except ImportError:
    try:
        from _sha256 import sha256 as _sha256  # Python 3.10/3.11
    except ImportError:  # pragma: no cover - other interpreters
        from hashlib import sha256 as _sha256

ModelSource = Union[str, os.PathLike, bytes, bytearray, memoryview, onnx.ModelProto, "Model"]

#: Protobuf's hard limit for one serialized message.
PROTOBUF_LIMIT = 2**31 - 1


def iter_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """The graph and every subgraph (If/Loop/Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from iter_graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from iter_graphs(g)


def iter_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every TensorProto that can hold data: initializers, sparse initializers, Constant/attribute tensors."""
    for g in iter_graphs(graph):
        yield from g.initializer
        for sp in g.sparse_initializer:
            yield sp.values
            yield sp.indices
        for node in g.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    yield attr.t
                elif attr.type == onnx.AttributeProto.TENSORS:
                    yield from attr.tensors


def _uses_external_data(t: onnx.TensorProto) -> bool:
    return t.HasField("data_location") and t.data_location == onnx.TensorProto.EXTERNAL


def _external_info(t: onnx.TensorProto) -> dict[str, str]:
    return {e.key: e.value for e in t.external_data}


def graph_cycle(graph: onnx.GraphProto, outer: frozenset[str] = frozenset()) -> list[str] | None:
    """Names of nodes on a dependency cycle of ``graph`` (or of one of its subgraphs), else None.

    Nodes may be listed in any order; a node is ready when every input it names is a graph input,
    an initializer, an outer-scope value or the output of a ready node. Names no node produces at all
    are left to the checker/runtime (they are "undefined", not cyclic). Linear in the graph size.
    """
    known = set(outer) | {i.name for i in graph.input} | {t.name for t in graph.initializer}
    known |= {sp.values.name for sp in graph.sparse_initializer} | {""}
    producer = {o: i for i, n in enumerate(graph.node) for o in n.output if o}
    waiting = [0] * len(graph.node)
    consumers: dict[str, list[int]] = {}
    for i, n in enumerate(graph.node):
        for name in set(n.input):
            if name not in known and name in producer:
                waiting[i] += 1
                consumers.setdefault(name, []).append(i)
    ready = [i for i, w in enumerate(waiting) if w == 0]
    done = 0
    while ready:
        i = ready.pop()
        done += 1
        for o in graph.node[i].output:
            for j in consumers.pop(o, ()):
                waiting[j] -= 1
                if waiting[j] == 0:
                    ready.append(j)
    if done < len(graph.node):
        return [graph.node[i].name or f"#{i} {graph.node[i].op_type}" for i, w in enumerate(waiting) if w][:5]
    scope = frozenset(known | set(producer))
    for n in graph.node:
        for attr in n.attribute:
            subs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for g in subs:
                found = graph_cycle(g, scope)
                if found:
                    return found
    return None


_PACKED = {getattr(onnx.TensorProto, n) for n in ("INT4", "UINT4", "FLOAT4E2M1") if hasattr(onnx.TensorProto, n)}


def tensor_problem(t: onnx.TensorProto) -> str | None:
    """Why a tensor's stored data cannot be its declared shape and type (None when it can)."""
    if any(d < 0 for d in t.dims):
        return f"has a negative dimension {list(t.dims)}"
    if _uses_external_data(t) or t.data_type in _PACKED or t.data_type == onnx.TensorProto.STRING:
        return None
    count = 1
    for d in t.dims:
        count *= d
    if t.HasField("raw_data") or t.raw_data:
        try:
            itemsize = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
        except Exception:  # noqa: BLE001 - an unknown element type
            return f"has an unknown element type {t.data_type}"
        if len(t.raw_data) != count * itemsize:
            return f"holds {len(t.raw_data)} bytes but its shape {list(t.dims)} needs {count * itemsize}"
        return None
    stored = max(len(t.float_data), len(t.int32_data), len(t.int64_data), len(t.double_data), len(t.uint64_data))
    if stored and t.data_type in (onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128):
        stored //= 2
    if stored and stored != count:
        return f"holds {stored} values but its shape {list(t.dims)} needs {count}"
    return None


@dataclass(frozen=True)
class ExternalFile:
    location: str  # as written in the model
    path: Path  # resolved, inside base_dir


def check_external_data(proto: onnx.ModelProto, base_dir: Path | None) -> list[ExternalFile]:
    """Validate every external-data reference; return the files they use.

    Refused: absolute locations, locations with ``..``, symlinks (or any path) resolving outside
    ``base_dir``, and missing files. Raises :class:`ExternalDataError` naming the tensor.
    """
    files: dict[str, ExternalFile] = {}
    for t in iter_tensors(proto.graph):
        if not _uses_external_data(t):
            continue
        info = _external_info(t)
        loc = info.get("location", "")
        name = t.name or "<unnamed>"
        if not loc:
            raise ExternalDataError(f"tensor {name!r} is marked as external data but has no location")
        if base_dir is None:
            raise ExternalDataError(
                f"tensor {name!r} uses external data {loc!r}, but the model was given as bytes/proto",
                hint="load it from its file path so the data file next to it can be found",
            )
        p = Path(loc)
        if p.is_absolute() or loc.startswith(("/", "\\")) or (len(loc) > 1 and loc[1] == ":"):
            raise ExternalDataError(
                f"tensor {name!r}: external data location {loc!r} is an absolute path",
                hint="external data must lie in the model's folder; refusing to read it",
            )
        if ".." in Path(loc.replace("\\", "/")).parts:
            raise ExternalDataError(
                f"tensor {name!r}: external data location {loc!r} escapes the model's folder ('..')",
                hint="external data must lie in the model's folder; refusing to read it",
            )
        base_real = base_dir.resolve()
        full = (base_dir / loc)
        real = full.resolve()
        if real != base_real and base_real not in real.parents:
            raise ExternalDataError(
                f"tensor {name!r}: external data {loc!r} resolves to {real}, outside the model's folder {base_real}",
                hint="a symlink points out of the folder; copy the data next to the model",
            )
        if not real.exists():
            raise ExternalDataError(
                f"tensor {name!r}: external data file {loc!r} not found next to the model in {base_dir}",
                hint="copy the data file(s) next to the .onnx file",
            )
        check_input_file(real, f"external data of tensor {name!r}", error=ExternalDataError,
                         protect_as="the source model's external data")
        offset, length = _nonneg_int(info, "offset", name, loc), _nonneg_int(info, "length", name, loc)
        size = real.stat().st_size
        if offset is not None and offset > size:
            raise ExternalDataError(f"tensor {name!r}: external data offset {offset} lies past the end of "
                                    f"{loc!r} ({size} bytes)")
        if length is not None and (offset or 0) + length > size:
            raise ExternalDataError(
                f"tensor {name!r}: external data {loc!r} is truncated "
                f"(needs bytes {offset or 0}..{(offset or 0) + length}, file has {size})"
            )
        files.setdefault(loc, ExternalFile(loc, real))
    return list(files.values())


def _nonneg_int(info: dict[str, str], key: str, name: str, loc: str) -> int | None:
    text = info.get(key)
    if text is None or text == "":
        return None
    try:
        v = int(text)
    except ValueError:
        raise ExternalDataError(f"tensor {name!r}: external data {key} {text[:40]!r} (file {loc!r}) is not an integer") from None
    if v < 0:
        raise ExternalDataError(f"tensor {name!r}: external data {key} {v} (file {loc!r}) is negative")
    return v


def _parse_bytes(data: bytes, what: str) -> onnx.ModelProto:
    if len(data) == 0:
        raise ModelLoadError(f"{what} is empty", hint="expected an ONNX model (.onnx)")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(bytes(data))
    except DecodeError as e:
        raise ModelLoadError(
            f"{what} is not a valid ONNX protobuf ({e})",
            hint="the file may be truncated, or not an ONNX model",
        ) from None
    except Exception as e:  # protobuf raises RuntimeWarning/ValueError variants by backend
        raise ModelLoadError(f"{what} could not be parsed as ONNX: {e}") from None
    _check_parsed(proto, what)
    return proto


_ELEM_TYPES = set(onnx.TensorProto.DataType.values())


def _check_parsed(proto: onnx.ModelProto, what: str) -> None:
    # A random byte string (e.g. a text file) can parse as a protobuf with only unknown fields.
    if proto.ir_version <= 0 or not proto.HasField("graph") or len(proto.opset_import) == 0:
        raise ModelLoadError(
            f"{what} does not look like an ONNX model (no ir_version, graph or opset_import)",
            hint="is it a text file, or a different model format?",
        )
    for v in list(proto.graph.input) + list(proto.graph.output):
        if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type not in _ELEM_TYPES:
            raise ModelLoadError(f"{what}: graph input/output {v.name!r} has an unknown element type "
                                 f"{v.type.tensor_type.elem_type}", hint="the file is corrupt or not valid ONNX")


class Model:
    """An ONNX model. Immutable by convention: edits return new models (see ``workbench.edit``).

    Attributes:
        proto: the ``onnx.ModelProto`` (external data *not* loaded into memory).
        source: the file it was loaded from, or None; never written by the workbench.
        base_dir: folder that external data locations are relative to, or None.
        name: a short display name.
    """

    def __init__(
        self,
        proto: onnx.ModelProto,
        *,
        source: Path | None = None,
        base_dir: Path | None = None,
        name: str | None = None,
        parent_hash: str | None = None,
    ):
        self.proto = proto
        self.source = Path(source) if source is not None else None
        self.base_dir = Path(base_dir) if base_dir is not None else None
        # a file-name-safe name: it becomes output file names (variants, runtime copies, records)
        self.name = safe_name(name or (self.source.stem if self.source else proto.graph.name), "model")
        self.parent_hash = parent_hash
        self._hash: str | None = None
        self._structure_ok = False  # check_structure passed (immutable by convention, like the hash)
        self.external_files = check_external_data(proto, self.base_dir)

    # ------------------------------------------------------------------ identity
    @property
    def hash(self) -> str:
        """Stable content hash (sha256 hex): deterministic proto bytes + external data bytes.

        The same model loaded twice, from a path or from its bytes, has the same hash when its data is
        embedded; a model whose weights live in external files also hashes those files (streamed).
        """
        if self._hash is None:
            h = _sha256()
            h.update(self.proto.SerializeToString(deterministic=True))
            for ef in sorted(self.external_files, key=lambda f: f.location):
                h.update(b"\0external\0" + ef.location.encode())
                with open(ef.path, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 22), b""):
                        h.update(chunk)
            self._hash = h.hexdigest()
        return self._hash

    @property
    def short_hash(self) -> str:
        return self.hash[:12]

    @property
    def has_external_data(self) -> bool:
        return bool(self.external_files)

    def __repr__(self) -> str:
        src = f", source={str(self.source)!r}" if self.source else ""
        return f"<workbench.Model {self.name!r} nodes={len(self.proto.graph.node)} hash={self.short_hash}{src}>"

    # ------------------------------------------------------------------ graph facts
    @property
    def graph(self) -> onnx.GraphProto:
        return self.proto.graph

    @property
    def opset(self) -> int:
        for o in self.proto.opset_import:
            if o.domain in ("", "ai.onnx"):
                return int(o.version)
        return 0

    @property
    def input_names(self) -> list[str]:
        inits = {i.name for i in self.graph.initializer}
        return [i.name for i in self.graph.input if i.name not in inits]

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.graph.output]

    def require_inputs(self, what: str) -> None:
        """:class:`ModelLoadError` when the model has no graph inputs (nothing to feed ``what``)."""
        if not self.input_names:
            raise ModelLoadError(f"model {self.name!r} has no inputs: {what} needs at least one input to feed",
                                 hint="`workbench run` / `inspect` show a model without inputs")

    def check_structure(self) -> None:
        """:class:`ModelLoadError` when the graph cannot be ordered (a dependency cycle) or an
        initializer's data does not match its declared shape: recipes and runtimes need both.
        Inspecting and viewing such a model still work.

        A model that passed is not checked again (every recipe on it calls this; the shape-inference
        pass is ~10 % of the fp16 recipe's CPU on a large graph)."""
        if getattr(self, "_structure_ok", False):
            return
        for g in iter_graphs(self.graph):
            for t in g.initializer:
                why = tensor_problem(t)
                if why:
                    raise ModelLoadError(f"model {self.name!r}: initializer {t.name!r} {why}",
                                         hint="the file is corrupt or was written by a broken exporter")
        try:  # what onnx itself cannot shape-infer (C++ length errors on absurd dims), no recipe can process
            onnx.shape_inference.infer_shapes(self.proto, check_type=False, strict_mode=False)
        except Exception as e:  # noqa: BLE001 - onnx raises ValueError/RuntimeError/InferenceError variants
            raise ModelLoadError(f"model {self.name!r} cannot be processed by onnx shape inference: "
                                 f"{type(e).__name__}: {str(e).strip()[:300]}",
                                 hint="the file is corrupt or not valid ONNX") from None
        cycle = graph_cycle(self.graph)
        if cycle:
            raise ModelLoadError(f"model {self.name!r} has a dependency cycle (nodes {', '.join(cycle)} wait on each other)",
                                 hint="an ONNX graph must be acyclic; fix the edges that loop back")
        self._structure_ok = True

    # ------------------------------------------------------------------ data access
    def proto_with_data(self) -> onnx.ModelProto:
        """A deep copy with all external data loaded into memory (for edits and quantization).

        Raises a clear error when the result would not fit in one protobuf (> 2 GB).
        """
        p = copy.deepcopy(self.proto)
        if self.external_files:
            total = sum(ef.path.stat().st_size for ef in self.external_files)
            if total + p.ByteSize() >= PROTOBUF_LIMIT:
                raise WorkbenchError(
                    f"model {self.name!r} is over 2 GB with its external data; this operation needs it in memory",
                    hint="run it on the file path instead (ONNX Runtime and TensorRT read external data themselves)",
                )
            onnx.external_data_helper.load_external_data_for_model(p, str(self.base_dir))
        return p

    def to_bytes(self) -> bytes:
        """Serialized model with all data embedded (< 2 GB models only)."""
        return self.proto_with_data().SerializeToString()

    def derive(self, proto: onnx.ModelProto, *, name: str | None = None) -> "Model":
        """A new in-memory model made from this one (edits, precision variants). Data must be embedded."""
        return Model(proto, name=name or self.name, parent_hash=self.hash)

    def path_for_runtime(self, workdir: str | os.PathLike | None = None) -> Path:
        """A file path a runtime can open: the source when unchanged, else a copy written under ``workdir``.

        Runtimes load external data themselves, so this is how >2 GB models reach them.
        """
        if self.source is not None and self.source.is_file():
            return self.source
        d = ensure_dir(workdir) if workdir else session_tempdir()  # the session folder is removed at exit
        out = child_path(d, f"{self.name}-{self.short_hash}.onnx")
        if not out.exists():
            self.save(out)
        return out

    def check_output_path(self, path: str | os.PathLike, *, what: str = "an output") -> Path:
        """Raise :class:`OutputError` when ``path`` is this model's source file or one of its external
        data files (writing there would destroy the user's model); else return ``path``."""
        path = Path(path)
        if not path.exists():
            return path
        target = path.resolve()
        if self.source is not None and target == self.source.resolve():
            raise OutputError(f"refusing to overwrite the source model {self.source} with {what}",
                              hint="write to a new file name")
        if target in {ef.path.resolve() for ef in self.external_files}:
            raise OutputError(f"refusing to overwrite {path} with {what}: it holds the source model's external data",
                              hint="write to a new file name or another folder")
        return path

    def save(self, path: str | os.PathLike, *, external_data: bool | None = None) -> Path:
        """Write the model to ``path`` atomically (temp file + rename). Never the source file.

        ``external_data`` defaults to True when the model would exceed 2 GB; data then goes to
        ``<name>.onnx.data`` next to it.
        """
        path = Path(path)
        data_name = path.name + ".data"
        self.check_output_path(path, what="the model")
        self.check_output_path(path.parent / data_name, what="the model's external data")
        if path.is_dir():
            raise OutputError(f"cannot save the model to {path}: it is a folder", hint="give a file path")
        ensure_dir(path.parent)
        p = self.proto_with_data() if not self.external_files else None
        big = p is None or p.ByteSize() >= PROTOBUF_LIMIT
        if external_data is None:
            external_data = big
        if not external_data:
            if p is None:
                p = self.proto_with_data()
            atomic_write_bytes(path, p.SerializeToString())
            return path
        # External data: write into a temp folder on the same filesystem, then move both files.
        try:
            with tempfile.TemporaryDirectory(dir=path.parent, prefix=".wb-save-") as tmp:
                tmp_model = Path(tmp) / path.name
                src = copy.deepcopy(self.proto)
                if self.external_files:
                    onnx.external_data_helper.load_external_data_for_model(src, str(self.base_dir))
                onnx.save_model(src, str(tmp_model), save_as_external_data=True, all_tensors_to_one_file=True,
                                location=data_name, size_threshold=1024)
                if (Path(tmp) / data_name).exists():  # absent when no tensor reached the size threshold
                    self.check_output_path(path.parent / data_name, what="the model's external data")
                    os.replace(Path(tmp) / data_name, path.parent / data_name)
                self.check_output_path(path, what="the model")
                os.replace(tmp_model, path)
        except OSError as e:
            raise OutputError(f"cannot save the model to {path}: {e.strerror or e}") from e
        return path


def load(source: ModelSource, *, name: str | None = None) -> Model:
    """Load an ONNX model from a path, raw bytes, an ``onnx.ModelProto`` or a ``Model``.

    The file is opened read-only. External data is referenced, validated (no absolute paths, no
    ``..``, no symlinks out of the model's folder, files present) and not read into memory.
    """
    if isinstance(source, Model):
        return source
    if isinstance(source, onnx.ModelProto):
        _check_parsed(source, "the given ModelProto")
        return Model(copy.deepcopy(source), name=name)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return Model(_parse_bytes(bytes(source), "the given bytes"), name=name)
    if isinstance(source, (str, os.PathLike)):
        # opened once and checked on the open file: the bytes parsed are those of the file checked
        f, st = open_input(source, "model file", error=ModelLoadError, protect_as="the source model")
        path = Path(os.fsdecode(os.fspath(source)))
        with f:
            if st.st_size >= PROTOBUF_LIMIT:
                raise ModelLoadError(
                    f"{path} is {st.st_size / 2**30:.1f} GiB: an .onnx file itself cannot exceed 2 GB",
                    hint="store the weights as external data (onnx.save_model(..., save_as_external_data=True))",
                )
            try:
                data = f.read(st.st_size)
            except OSError as e:
                raise ModelLoadError(f"cannot read model file {path}: {e.strerror or e}") from None
        proto = _parse_bytes(data, str(path))
        return Model(proto, source=path, base_dir=path.parent, name=name)
    raise ModelLoadError(f"cannot load a model from {type(source).__name__}; give a path, bytes or onnx.ModelProto")
