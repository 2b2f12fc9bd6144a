"""Input data: shape maps, synthetic inputs, ``.npz`` datasets, batching, calibration readers.

Shape map syntax (shared by every CLI command)::

    --shapes NAME:DIMS[/DIMS/DIMS][,NAME:...]      DIMS = 1x3x224x224

One DIMS is a fixed shape (min = opt = max); three are min/opt/max for TensorRT optimization
profiles. Runs use the ``opt`` shape.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper

from .errors import DataError, ShapeSpecError
from .model import Model

Shape = tuple[int, ...]


# ---------------------------------------------------------------------------------------------- shapes
@dataclass(frozen=True)
class ShapeRange:
    """min/opt/max shapes of one input (equal for a fixed shape)."""

    min: Shape
    opt: Shape
    max: Shape

    @property
    def fixed(self) -> bool:
        return self.min == self.opt == self.max

    def to_spec(self) -> str:
        f = lambda s: "x".join(str(d) for d in s)  # noqa: E731
        return f(self.opt) if self.fixed else "/".join(f(s) for s in (self.min, self.opt, self.max))

    def to_json(self) -> dict:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


class ShapeMap(dict):
    """``{input_name: ShapeRange}`` parsed from the ``--shapes`` syntax."""

    @classmethod
    def parse(cls, spec: str | Mapping | None) -> "ShapeMap":
        if spec is None or spec == "":
            return cls()
        if isinstance(spec, ShapeMap):
            return spec
        if not isinstance(spec, (str, Mapping)):
            raise ShapeSpecError(f"shapes must be a 'NAME:DIMS,...' string or a mapping, not {type(spec).__name__}")
        if isinstance(spec, Mapping):
            try:
                return cls._parse_mapping(spec)
            except (TypeError, ValueError, OverflowError) as e:
                raise ShapeSpecError(f"bad shapes {str(dict(spec))[:200]}: {e}") from None
        out = cls()
        for item in _split_items(spec):
            if ":" not in item:
                raise ShapeSpecError(
                    f"bad --shapes entry {item!r}: expected NAME:DIMS like input:1x3x224x224",
                    hint="three shapes NAME:MIN/OPT/MAX give a TensorRT range",
                )
            name, dims = item.rsplit(":", 1)
            name = name.strip()
            if not name:
                raise ShapeSpecError(f"bad --shapes entry {item!r}: empty input name")
            if name in out:
                raise ShapeSpecError(f"--shapes names {name!r} twice")
            out[name] = _parse_range(name, dims)
        return out

    @classmethod
    def _parse_mapping(cls, spec: Mapping) -> "ShapeMap":
        out = cls()
        for name, v in spec.items():
            if isinstance(v, ShapeRange):
                out[name] = v
            elif isinstance(v, str):
                out[name] = _parse_range(name, v)
            else:
                seq = list(v)
                if seq and isinstance(seq[0], (list, tuple)):
                    if len(seq) != 3:
                        raise ShapeSpecError(f"shape for {name!r}: give one shape or three (min/opt/max)")
                    out[name] = _make_range(name, *[tuple(int(d) for d in s) for s in seq])
                else:
                    s = tuple(int(d) for d in seq)
                    out[name] = _make_range(name, s, s, s)
        return out

    def to_spec(self) -> str:
        return ",".join(f"{k}:{v.to_spec()}" for k, v in self.items())

    def to_json(self) -> dict:
        return {k: v.to_json() for k, v in self.items()}


def _split_items(spec: str) -> list[str]:
    return [s.strip() for s in spec.split(",") if s.strip()]


def _parse_dims(name: str, text: str) -> Shape:
    text = text.strip()
    if text in ("", "scalar"):
        return ()
    parts = text.lower().split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise ShapeSpecError(f"bad dims {text!r} for {name!r}: use integers joined by 'x', e.g. 1x3x224x224") from None
    if any(d < 0 for d in dims):
        raise ShapeSpecError(f"bad dims {text!r} for {name!r}: dimensions must be >= 0")
    return dims


def _parse_range(name: str, text: str) -> ShapeRange:
    parts = text.split("/")
    if len(parts) == 1:
        s = _parse_dims(name, parts[0])
        return _make_range(name, s, s, s)
    if len(parts) == 3:
        return _make_range(name, *(_parse_dims(name, p) for p in parts))
    raise ShapeSpecError(f"shape for {name!r}: give one DIMS or three MIN/OPT/MAX, got {text!r}")


#: largest dimension a shape may name (TensorRT dims are int32; larger is never a real tensor)
MAX_DIM = 2**31 - 1


def _make_range(name: str, mn: Shape, opt: Shape, mx: Shape) -> ShapeRange:
    if any(not 0 <= d <= MAX_DIM for s in (mn, opt, mx) for d in s):
        raise ShapeSpecError(f"shape for {name!r}: every dimension must be in 0..{MAX_DIM}")
    if not (len(mn) == len(opt) == len(mx)):
        raise ShapeSpecError(f"min/opt/max shapes for {name!r} have different ranks")
    for i, (a, b, c) in enumerate(zip(mn, opt, mx)):
        if not a <= b <= c:
            raise ShapeSpecError(f"--shapes range for {name!r} dim {i} is min {a} / opt {b} / max {c}: "
                                 "need min <= opt <= max")
    return ShapeRange(mn, opt, mx)


# ---------------------------------------------------------------------------------------------- IO specs
def np_dtype(elem_type: int) -> np.dtype:
    """numpy dtype for an ONNX element type (bfloat16/float8 via ml_dtypes)."""
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception as e:  # pragma: no cover - exotic types
        raise DataError(f"ONNX element type {onnx.TensorProto.DataType.Name(elem_type)} has no numpy dtype") from e


@dataclass(frozen=True)
class TensorSpec:
    """Name, element type and shape (ints for fixed dims, strings for symbolic, None for unknown)."""

    name: str
    elem_type: int
    shape: tuple[int | str | None, ...] | None

    @property
    def dtype_name(self) -> str:
        return onnx.TensorProto.DataType.Name(self.elem_type).lower()

    @property
    def np_dtype(self) -> np.dtype:
        return np_dtype(self.elem_type)

    @property
    def dynamic(self) -> bool:
        return self.shape is None or any(not isinstance(d, int) for d in self.shape)

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype_name,
                "shape": None if self.shape is None else list(self.shape)}


def _spec_of(vi: onnx.ValueInfoProto) -> TensorSpec:
    t = vi.type.tensor_type
    shape = None
    if t.HasField("shape"):
        dims: list[int | str | None] = []
        for d in t.shape.dim:
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(int(d.dim_value))
            elif d.HasField("dim_param") and d.dim_param:
                dims.append(d.dim_param)
            else:
                dims.append(None)
        shape = tuple(dims)
    return TensorSpec(vi.name, t.elem_type, shape)


def input_specs(model: Model) -> list[TensorSpec]:
    inits = {i.name for i in model.graph.initializer}
    return [_spec_of(v) for v in model.graph.input if v.name not in inits]


def output_specs(model: Model) -> list[TensorSpec]:
    return [_spec_of(v) for v in model.graph.output]


def resolve_shapes(model: Model, shapes: ShapeMap | str | Mapping | None = None, *, which: str = "opt",
                   default_dim: int = 1, batch: int | None = None,
                   batch_axis: Mapping[str, int | None] | str | None = None) -> dict[str, Shape]:
    """Concrete input shapes: fixed dims from the model, dynamic dims from the shape map.

    Dynamic dims missing from the map take ``batch`` on the input's batch axis (the shape doctor's, see
    :func:`workbench.shapes.batch_axes`; ``batch_axis`` overrides it) and otherwise ``default_dim`` with a
    warning, as Polygraphy does. Names in the map that are not inputs are an error listing the real names.
    """
    from .shapes import unknown_names_message

    sm = ShapeMap.parse(shapes)
    specs = input_specs(model)
    names = [s.name for s in specs]
    unknown = [k for k in sm if k not in names]
    if unknown:
        raise ShapeSpecError(unknown_names_message("--shapes", unknown, names))
    axes = model_batch_axes(model, batch_axis) if batch is not None else {}
    out: dict[str, Shape] = {}
    defaulted = []
    for s in specs:
        if s.name in sm:
            shp = getattr(sm[s.name], which)
            if s.shape is not None:
                if len(shp) != len(s.shape):
                    raise ShapeSpecError(
                        f"--shapes gives {s.name!r} rank {len(shp)}, the model expects rank {len(s.shape)} {list(s.shape)}")
                for i, (want, got) in enumerate(zip(s.shape, shp)):
                    if isinstance(want, int) and want != got:
                        raise ShapeSpecError(
                            f"--shapes gives {s.name!r} dim {i} = {got}, but the model fixes it to {want}")
            out[s.name] = tuple(shp)
            continue
        if s.shape is None:
            raise ShapeSpecError(f"input {s.name!r} has no shape in the model; give it with --shapes {s.name}:DIMS")
        dims = []
        for i, d in enumerate(s.shape):
            if isinstance(d, int):
                dims.append(d)
            elif batch is not None and i == axes.get(s.name):
                dims.append(batch)
            else:
                dims.append(default_dim)
                defaulted.append(f"{s.name}[{i}]={d}")
        out[s.name] = tuple(dims)
    if defaulted:
        warnings.warn(f"dynamic dims without --shapes set to {default_dim}: {', '.join(defaulted)}", stacklevel=2)
    return out


def synthetic_inputs(model: Model, shapes: ShapeMap | str | Mapping | None = None, *, seed: int = 0,
                     batch: int | None = None, batch_axis: Mapping[str, int | None] | str | None = None
                     ) -> dict[str, np.ndarray]:
    """Deterministic random inputs from the model's input metadata (same seed → same arrays), within the
    value ranges the shape doctor reads from the graph (:func:`workbench.shapes.diagnose`):

    * indices into a Gather table (ids, token types): uniform in ``0..rows-1``;
    * 0/1 masks: all ones (no padding);
    * values the graph compares with constants (``sr == 16000``): the first such constant;
    * other floats: standard normal; other integers: uniform in [0, 10); bool: fair coin.

    ``batch`` sets each input's batch axis (``batch_axis`` overrides the doctor's choice); scalars and inputs
    without a batch axis keep their own shape.
    """
    from .fsutil import memory_budget
    from .shapes import diagnose

    rng = np.random.default_rng(seed)
    facts = diagnose(model, batch_axis=batch_axis).inputs
    concrete = resolve_shapes(model, shapes, batch=batch, batch_axis=batch_axis)
    feeds = {}
    need = 0
    for s in input_specs(model):  # checked before allocating: a dim of 2**31 must not take the machine down
        need += math.prod(int(d) for d in concrete[s.name]) * 8  # float64 draws before the cast
        if need > memory_budget():
            raise DataError(f"synthetic input {s.name!r} of shape {list(concrete[s.name])} (with the inputs before it) "
                            f"needs {need / 2**30:,.1f} GiB, over the memory budget of {memory_budget() / 2**30:,.1f} GiB",
                            hint="give smaller --shapes / --batch")
    for s in input_specs(model):
        shp = concrete[s.name]
        dt = s.np_dtype
        f = facts.get(s.name)
        kind = f.value_kind if f is not None else None
        try:
            if kind == "mask":
                arr = np.ones(shp, dtype=dt)
            elif kind == "index" and (np.issubdtype(dt, np.integer) or np.issubdtype(dt, np.floating)):
                arr = rng.integers(f.low, f.high + 1, size=shp).astype(dt)
            elif kind == "choice":
                arr = np.full(shp, f.choices[0]).astype(dt)
            elif np.issubdtype(dt, np.bool_):
                arr = rng.integers(0, 2, size=shp).astype(bool)
            elif np.issubdtype(dt, np.integer):
                arr = rng.integers(0, 10, size=shp).astype(dt)
            else:
                arr = rng.standard_normal(size=shp).astype(np.float32).astype(dt)
        except MemoryError:
            gib = float(np.prod(shp, dtype=np.float64)) * 8 / 2**30
            raise DataError(f"synthetic input {s.name!r} of shape {list(shp)} needs ~{gib:.1f} GiB: not enough memory",
                            hint="give smaller --shapes / --batch") from None
        feeds[s.name] = arr
    return feeds


# ---------------------------------------------------------------------------------------------- datasets
def model_batch_axes(model: Model, batch_axis: Mapping[str, int | None] | str | None = None) -> dict[str, int | None]:
    """``{input: batch axis or None}``: the shape doctor's choice (axis 0 for most inputs, 1 for a recurrent
    state ``[2, batch, 128]``, None for scalars) with ``batch_axis`` overrides (``"state:1,sr:none"``)."""
    from .shapes import batch_axes

    return batch_axes(model, batch_axis)


def static_batch(model: Model, batch_axis=None) -> int | None:
    """The batch size the model fixes (a fixed dim on some input's batch axis), else None."""
    axes = model_batch_axes(model, batch_axis)
    sizes = {s.shape[axes[s.name]] for s in input_specs(model)
             if s.shape and axes.get(s.name) is not None and isinstance(s.shape[axes[s.name]], int)}
    return sizes.pop() if len(sizes) == 1 else (min(sizes) if sizes else None)


def samples_in(feeds: Mapping[str, np.ndarray], axes: Mapping[str, int | None] | None = None) -> int:
    """Samples in one feed dict: the size of the first batched input along its batch axis (1 if none)."""
    for name, a in feeds.items():
        ax = 0 if axes is None else axes.get(name, 0)
        if ax is not None and np.ndim(a) > ax:
            return int(np.shape(a)[ax])
    return 1


def _take(a: np.ndarray, axis: int, start: int, stop: int) -> np.ndarray:
    return a[(slice(None),) * axis + (slice(start, stop),)]


class _Arrays:
    """In-memory arrays behind an :class:`NpzDataset` made from a mapping (slices are views)."""

    def __init__(self, arrays: Mapping[str, np.ndarray]):
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        self.keys = list(self.arrays)

    def meta(self, key: str):
        a = self.arrays[key]
        return a.shape, a.dtype

    def read(self, key: str, axis: int | None = None, start: int = 0, stop: int | None = None, cursor=None):
        a = self.arrays[key]
        return a if axis is None else _take(a, axis, start, a.shape[axis] if stop is None else stop)

    def contiguous(self, key: str, axis: int) -> bool:
        return True

    def cursor(self):
        import contextlib

        return contextlib.nullcontext()

    def close(self) -> None:
        pass


class _File:
    """An ``.npz`` behind an :class:`NpzDataset`: one :class:`~workbench.fsutil.NpzReader` (opened once,
    read one slice at a time)."""

    def __init__(self, path: Path):
        from .fsutil import NpzReader

        self.reader = NpzReader(path)
        self.keys = self.reader.keys

    def meta(self, key: str):
        m = self.reader.members[key]
        return m.shape, m.dtype

    def read(self, key: str, axis: int | None = None, start: int = 0, stop: int | None = None, cursor=None):
        return self.reader.read(key, axis, start, stop, cursor=cursor)

    def contiguous(self, key: str, axis: int) -> bool:
        """A batch along ``axis`` is one run of bytes (or the member is stored: read at offsets)."""
        m = self.reader.members[key]
        if m.file_offset is not None:
            return True
        lead = m.shape[axis + 1:] if m.fortran else m.shape[:axis]
        return math.prod(lead) <= 1

    def cursor(self):
        return self.reader.cursor()

    def close(self) -> None:
        self.reader.close()


class NpzDataset:
    """A ``.npz`` dataset: one array per model input, samples concatenated along each input's batch axis.

    The batch axis of each input comes from the shape doctor (:func:`workbench.shapes.batch_axes`: axis 0 for
    most inputs, axis 1 for a recurrent state ``[2, batch, 128]``); ``batch_axis`` overrides it
    (``"state:1"``, ``{"state": 1}``, ``"sr:none"``). Inputs without a batch axis (scalars such as a sample
    rate, per-model constants) are passed unchanged to every batch. Stateful models are fed their state
    from the file like any other input.

    **Streaming.** A file is opened once (:class:`~workbench.fsutil.NpzReader`: checked on the open
    descriptor, never unpickled) and only the arrays' headers are read up front: every check below runs
    on shape × dtype. Samples are read one batch at a time by :meth:`batches` / :meth:`batch_list`, so a
    dataset larger than memory streams through ``compare``, ``report`` and calibration; what is held at
    once is one batch (plus inputs without a batch axis, and label arrays: one id per sample).
    ``inputs[name]`` reads a whole array on access (prefer the batches).

    Optional label arrays live under keys the user names (``label_keys``; batched along axis 0). Files are
    read with ``allow_pickle=False``: object arrays are refused, never unpickled.

    Checks (each a :class:`DataError` naming the key): missing input names, unknown extra keys, dtype
    kind mismatch (float64 is accepted for float inputs and cast), rank and fixed-dim mismatch,
    different sample counts.
    """

    def __init__(self, source: str | os.PathLike | Mapping[str, np.ndarray], model: Model, *,
                 label_keys: Sequence[str] = (), allow_extra: bool = False,
                 batch_axis: Mapping[str, int | None] | str | None = None, rows: int | None = None,
                 _src=None):
        # rows: accepted for compatibility (run/profile read one batch); reading is lazy, so every
        # command reads only the batches it uses
        self.model = model
        self.path = None if isinstance(source, Mapping) else Path(source)
        self.batch_axis_override = batch_axis
        if _src is not None:
            self._src = _src
        elif isinstance(source, Mapping):
            self._src = _Arrays(source)
        else:
            self._src = _File(Path(source))
        keys = self._src.keys
        specs = {s.name: s for s in input_specs(model)}
        where = str(self.path) if self.path else "the data"
        self._where = where
        missing = [n for n in specs if n not in keys]
        if missing:
            raise DataError(f"{where} has no array for model input(s) {missing}; it has keys {sorted(keys)}",
                            hint="keys must be the model's input names")
        for k in label_keys:
            if k not in keys:
                raise DataError(f"label key {k!r} not found in {where}; keys are {sorted(keys)}")
        extra = [k for k in keys if k not in specs and k not in label_keys]
        if extra and not allow_extra:
            raise DataError(f"{where} has key(s) {extra} that are not model inputs {sorted(specs)}",
                            hint="name label keys with --labels, or remove them")
        self.axes = model_batch_axes(model, batch_axis)
        self._dtype: dict[str, np.dtype] = {}
        counts = {}
        for name, spec in specs.items():
            shape, dtype = self._src.meta(name)
            ax = self.axes.get(name)
            self._dtype[name] = _check_meta(where, name, tuple(shape), np.dtype(dtype), spec, ax)
            if ax is not None and len(shape) <= ax:
                raise DataError(f"{where}: array {name!r} has shape {tuple(shape)}: it has no batch axis {ax}",
                                hint=f"set its batch axis with --batch-axis {name}:AXIS (or {name}:none)")
            if ax is not None:
                counts[name] = shape[self.axes[name]]
        self._specs = specs
        self.labels: dict[str, np.ndarray] = {}
        self._label_counts(label_keys, counts)
        if len(set(counts.values())) > 1:
            axes = {n: self.axes[n] for n in counts if n in self.axes}
            raise DataError(f"{where}: arrays have different sample counts along their batch axes: {counts} "
                            f"(batch axes {axes})",
                            hint="set an input's batch axis with --batch-axis NAME:AXIS (or NAME:none)")
        self.num_samples = next(iter(counts.values())) if counts else 1
        if self.num_samples == 0:
            raise DataError(f"{where} holds no samples")
        # held for every batch: inputs without a batch axis, and (compressed files only) inputs whose
        # batches are not one run of bytes (batch axis after a dim > 1): read whole once, within the budget
        from .fsutil import memory_budget

        self._held: dict[str, np.ndarray] = {}
        held = 0
        for name in specs:
            ax = self.axes.get(name)
            if ax is None or not self._src.contiguous(name, ax):
                shape, dtype = self._src.meta(name)
                held += math.prod(shape) * np.dtype(dtype).itemsize
                if held > memory_budget():
                    raise DataError(f"{where}: input {name!r} ({list(shape)} {dtype}) must be held whole "
                                    f"(no batch axis, or compressed with its batch axis {ax} after other dims) and "
                                    f"is over the memory budget of {memory_budget() / 2**30:,.2f} GiB",
                                    hint="save the data with np.savez (uncompressed) or raise WORKBENCH_MAX_DATA_BYTES")
                self._held[name] = self._cast(name, self._src.read(name))

    def _label_counts(self, label_keys, counts: dict) -> None:
        for k in label_keys:
            self.labels[k] = np.asarray(self._src.read(k))
            v = self.labels[k]
            counts[k] = v.shape[0] if v.ndim else 1

    def add_labels(self, key: str) -> np.ndarray:
        """Read label array ``key`` from the same file (:class:`DataError` if it is not there or its
        count differs from the samples')."""
        if key not in self.labels:
            if key not in self._src.keys:
                raise DataError(f"label key {key!r} not found in {self._where}; keys are {sorted(self._src.keys)}")
            counts: dict = {}
            self._label_counts([key], counts)
            if counts[key] != self.num_samples:
                del self.labels[key]
                raise DataError(f"{self._where}: label array {key!r} holds {counts[key]} entries for "
                                f"{self.num_samples} samples")
        return self.labels[key]

    def for_model(self, model: Model, batch_axis=None) -> "NpzDataset":
        """The same data (the same open file) checked against another model (e.g. a variant)."""
        return NpzDataset(self.path if self.path else {}, model, allow_extra=True,
                          batch_axis=batch_axis if batch_axis is not None else self.batch_axis_override,
                          _src=self._src)

    def close(self) -> None:
        """Close the file (a dataset made from arrays holds nothing)."""
        self._src.close()

    def __enter__(self) -> "NpzDataset":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self.num_samples

    @property
    def source_keys(self) -> list[str]:
        return list(self._src.keys)

    @property
    def reader(self):
        """The :class:`~workbench.fsutil.NpzReader` of a file-backed dataset (None for arrays)."""
        return getattr(self._src, "reader", None)

    def _cast(self, name: str, a: np.ndarray) -> np.ndarray:
        want = self._dtype[name]
        return a if a.dtype == want else a.astype(want)

    @property
    def inputs(self) -> Mapping[str, np.ndarray]:
        """``{input: whole array}``, each read (and cast) when accessed: a whole-dataset view for small data;
        :meth:`batches` reads one batch at a time."""
        return _WholeArrays(self)

    def _whole(self, name: str) -> np.ndarray:
        if name in self._held:
            return self._held[name]
        return self._cast(name, self._src.read(name))

    def _batch(self, start: int, stop: int, cursor=None) -> dict[str, np.ndarray]:
        out = {}
        for name in self._specs:
            ax = self.axes.get(name)
            if name in self._held:
                a = self._held[name]
                out[name] = a if ax is None else _take(a, ax, start, stop)
            else:
                out[name] = self._cast(name, self._src.read(name, ax, start, stop, cursor=cursor))
        return out

    def check_finite(self, rows: int | None = None, *, limit: int | None = None) -> None:
        """:class:`DataError` if a float input holds NaN/Inf: read ``rows`` samples at a time (default: as
        many as fit 16 MiB; ``resolve_data`` passes its batch size, so this pass holds one batch too); only
        the first ``limit`` samples when given."""
        floats = [n for n in self._specs if np.issubdtype(self._dtype[n], np.floating)]
        if not floats:
            return
        row = sum(math.prod(self._src.meta(n)[0]) // max(self.num_samples, 1) * self._dtype[n].itemsize
                  for n in floats) or 1
        step = rows or max(1, (16 << 20) // row)
        total = self.num_samples if limit is None else min(limit, self.num_samples)
        with self._src.cursor() as c:
            for start in range(0, total, step):
                b = self._batch(start, min(start + step, total), c)
                for n in floats:
                    a = b[n]
                    if not np.isfinite(a).all():
                        bad = int((~np.isfinite(a)).sum())
                        if n in self._held:
                            bad = int((~np.isfinite(self._held[n])).sum())
                        where = f"{self.path}: " if self.path else ""
                        raise DataError(f"{where}input {n!r} has {bad} NaN/Inf value(s)"
                                        + ("" if n in self._held or start == 0 and step >= total
                                           else f" in samples {start}..{min(start + step, total) - 1}"),
                                        hint="clean the data: NaN/Inf inputs make every metric and calibration "
                                             "range meaningless")

    def _static(self) -> int | None:
        sizes = set()
        for n, s in self._specs.items():
            ax = self.axes.get(n)
            if ax is not None and s.shape and isinstance(s.shape[ax], int):
                sizes.add(s.shape[ax])
        return min(sizes) if sizes else None

    def batch_size_for(self, requested: int | None) -> int:
        b = self._static()
        if b is not None:
            if requested not in (None, b):
                raise DataError(f"the model fixes the batch size to {b}; cannot use batch {requested}")
            return b
        return requested or 1

    def batch_list(self, batch_size: int | None = None, *, limit: int | None = None,
                   drop_last: bool = False) -> "Batches":
        """The batches as a :class:`Batches` sequence: re-iterable, indexable, each batch read when used."""
        b = self.batch_size_for(batch_size)
        n = self.num_samples if limit is None else min(limit, self.num_samples)
        if drop_last or self._static() is not None:  # no partial last batch
            n = n // b * b
        return Batches(self, b, n)

    def batches(self, batch_size: int | None = None, *, limit: int | None = None,
                drop_last: bool = False) -> Iterator[dict[str, np.ndarray]]:
        """Feeds dicts of ``batch_size`` samples (the model's static batch if it has one), sliced along each
        input's batch axis and read from the file one batch at a time; inputs without one are passed unchanged."""
        return iter(self.batch_list(batch_size, limit=limit, drop_last=drop_last))

    def label_batches(self, key: str, batch_size: int | None = None, *, limit: int | None = None) -> Iterator[np.ndarray]:
        b = self.batch_size_for(batch_size)
        n = self.num_samples if limit is None else min(limit, self.num_samples)
        for start in range(0, n, b):
            yield self.labels[key][start:min(start + b, n)]


class _WholeArrays(Mapping):
    def __init__(self, ds: NpzDataset):
        self._ds = ds

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._ds._specs:
            raise KeyError(name)
        return self._ds._whole(name)

    def __iter__(self):
        return iter(self._ds._specs)

    def __len__(self) -> int:
        return len(self._ds._specs)


class Batches(Sequence):
    """Feed batches of an :class:`NpzDataset`, read on demand: iterating reads one batch at a time (in
    order, each compressed byte decompressed once), ``batches[i]`` reads batch ``i``, ``batches[:k]`` is
    another :class:`Batches`. Batch ``i`` holds samples ``starts[i] .. min(starts[i] + size, stop)``
    (nothing per batch is stored: a million batches cost nothing until read). ``num_samples``: samples
    over all batches (known without reading)."""

    def __init__(self, dataset: NpzDataset, size: int, stop: int, starts: range | None = None):
        self.dataset = dataset
        self.size = int(size)
        self.stop = int(stop)
        self.starts = range(0, self.stop, self.size) if starts is None else starts

    def bound(self, i: int) -> tuple[int, int]:
        start = self.starts[i]
        return start, min(start + self.size, self.stop)

    @property
    def bounds(self) -> Iterator[tuple[int, int]]:
        return (self.bound(i) for i in range(len(self.starts)))

    @property
    def num_samples(self) -> int:
        if not self.starts:
            return 0
        last = self.bound(len(self.starts) - 1)
        return (len(self.starts) - 1) * self.size + last[1] - last[0] if self.starts.step == self.size else \
            sum(b - a for a, b in self.bounds)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Batches(self.dataset, self.size, self.stop, self.starts[i])
        start, stop = self.bound(i)
        return self.dataset._batch(start, stop)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        with self.dataset._src.cursor() as c:
            for start, stop in self.bounds:
                yield self.dataset._batch(start, stop, c)

    def head(self, samples: int, *, whole: bool = False) -> "Batches":
        """The first ``samples`` samples (the last batch cut short, or left out when ``whole``)."""
        if not self.starts:
            return self
        first = self.starts[0]
        stop = min(self.stop, first + samples)
        if whole:
            stop = first + min(samples, self.stop - first) // self.size * self.size
        starts = range(first, min(self.starts[-1] + 1, stop), self.size)
        return Batches(self.dataset, self.size, stop, starts)

    def with_dataset(self, dataset: NpzDataset) -> "Batches":
        """The same batches read from ``dataset`` (the same data checked against another model). If that
        dataset holds another number of samples (it reads the arrays on another batch axis), sample positions
        of this one mean nothing there: batches that cover their whole dataset become the whole new dataset
        in batches of the same size; a part of a dataset is refused (:class:`DataError`), never cut silently."""
        n = self.dataset.num_samples
        if dataset.num_samples == n:
            return Batches(dataset, self.size, self.stop, self.starts)
        full = n // self.size * self.size
        if self.starts == range(0, self.stop, self.size) and self.stop in (n, full):
            return dataset.batch_list(self.size, drop_last=self.stop != n)
        raise DataError(f"these batches hold samples {self.starts[0] if self.starts else 0}..{self.stop} of "
                        f"{n}, but read for this model the data holds {dataset.num_samples} samples (another "
                        "batch axis)", hint="pass the whole NpzDataset or the .npz path instead of a part of "
                                             "its batches")

    def __repr__(self) -> str:
        return f"Batches({len(self)} batches, {self.num_samples} samples of {self.dataset.path or 'arrays'})"


def _check_meta(where: str, name: str, shape: tuple, dtype: np.dtype, spec: TensorSpec,
                batch_axis: int | None) -> np.dtype:
    """The dtype array ``name`` (``shape`` × ``dtype``) is cast to for ``spec``; :class:`DataError` if it
    cannot feed that input (checked from the header, before any data is read)."""
    want = spec.np_dtype
    if dtype.hasobject or dtype.kind in "USV":
        raise DataError(f"{where}: array {name!r} has dtype {dtype}, the model expects {want}")
    if dtype != want:
        ok = (np.issubdtype(want, np.floating) and np.issubdtype(dtype, np.floating)) or (
            np.issubdtype(want, np.signedinteger) and np.issubdtype(dtype, np.signedinteger)
            and np.can_cast(dtype, want, "safe"))
        if not ok:
            raise DataError(f"{where}: array {name!r} has dtype {dtype}, the model expects {want}")
    if spec.shape is not None:
        if len(shape) != len(spec.shape):
            raise DataError(f"{where}: array {name!r} has shape {shape} (rank {len(shape)}); "
                            f"the model expects rank {len(spec.shape)} {list(spec.shape)}"
                            + (" (a scalar: store it as a 0-d array, np.array(value))" if not spec.shape else ""))
        for i, d in enumerate(spec.shape):
            if i == batch_axis:
                continue  # batch axis: samples are concatenated along it
            if isinstance(d, int) and shape[i] != d:
                hint = (f" (its batch axis is {batch_axis}: set another with --batch-axis {name}:AXIS)"
                        if batch_axis is not None else "")
                raise DataError(f"{where}: array {name!r} has shape {shape}; "
                                f"dim {i} must be {d} (model shape {list(spec.shape)}){hint}")
    return want


def _check_array(where: str, name: str, a: np.ndarray, spec: TensorSpec, batch_axis: int | None) -> np.ndarray:
    want = _check_meta(where, name, a.shape, a.dtype, spec, batch_axis)
    return a if a.dtype == want else a.astype(want)


def first_batch_rows(model: Model, batch: int | None = None, batch_axis=None) -> int:
    """Samples in the first batch: ``batch``, else the model's fixed batch (as ``NpzDataset`` picks it), else 1."""
    if batch:
        return int(batch)
    axes = model_batch_axes(model, batch_axis)
    sizes = {s.shape[axes[s.name]] for s in input_specs(model)
             if axes.get(s.name) is not None and s.shape and isinstance(s.shape[axes[s.name]], int)}
    return min(sizes) if sizes else 1


def as_feed_batches(model: Model, data: "str | os.PathLike | NpzDataset | Iterable[Mapping[str, np.ndarray]] | None",
                    *, batch_size: int | None = None, limit: int | None = None,
                    shapes=None, seed: int = 0, batch_axis=None) -> Iterator[dict[str, np.ndarray]]:
    """Normalize any data source into feeds: a .npz path, an NpzDataset, an iterable of feed dicts,
    or None (one synthetic batch). ``limit``: at most this many samples (not batches) from any source; the
    batch that crosses it is cut along each input's batch axis (left out when the model fixes its batch)."""
    if data is None:
        yield synthetic_inputs(model, shapes, seed=seed, batch=batch_size, batch_axis=batch_axis)
        return
    if isinstance(data, (str, os.PathLike)):
        data = NpzDataset(data, model, allow_extra=True, batch_axis=batch_axis)
    if isinstance(data, NpzDataset):
        yield from data.batches(batch_size, limit=limit)
        return
    specs = {s.name: s for s in input_specs(model)}
    axes: dict = {}
    total = 0
    for i, feeds in enumerate(data):
        if limit is not None and total >= limit:
            break
        if not isinstance(feeds, Mapping):  # a list/array item: `n not in feeds` would compare arrays
            raise DataError(f"data item {i} is a {type(feeds).__name__}, expected a dict of input arrays")
        missing = [n for n in specs if n not in feeds]
        if missing:
            raise DataError(f"data item {i} lacks input(s) {missing}")
        axes = axes if i else model_batch_axes(model, batch_axis)
        out = {n: _check_array(f"data item {i}", n, np.asarray(feeds[n]), specs[n], axes.get(n)) for n in specs}
        if limit is not None:
            n = samples_in(out, axes)
            if total + n > limit:
                if static_batch(model, batch_axis) is not None:
                    break
                n = limit - total
                out = {k: a if axes.get(k) is None or a.ndim <= axes[k] else _take(a, axes[k], 0, n)
                       for k, a in out.items()}
            total += n
        yield out


# ------------------------------------------------------------------------------ data for runs and comparisons
# (moved here from compare/outputs.py, compare/layerwise.py, measure/latency.py and flow.py: measure/,
# compare/ and flow all prepare data through these, so the flow moves down the layers without coming back)
#: samples per run for models whose batch axis is dynamic, unless a batch size is given
DEFAULT_BATCH = 32


def default_batch(model: Model, requested: int | None) -> int | None:
    """Samples per run: None when the model fixes its batch (datasets use that; batch axes per input from
    the shape doctor, so a state ``[2, batch, 128]`` is dynamic), else ``requested`` or :data:`DEFAULT_BATCH`."""
    if static_batch(model) is not None:
        return None
    return requested or DEFAULT_BATCH


def feeds_batch(feeds: Mapping[str, np.ndarray], model: Model | None = None) -> int:
    """Samples in a feed dict: along each input's batch axis when ``model`` is given (:func:`samples_in`
    with :func:`model_batch_axes`), else axis 0 of the first input with rank >= 1 (1 for scalars only)."""
    if model is not None:
        return samples_in(feeds, model_batch_axes(model))
    for a in feeds.values():
        a = np.asarray(a)
        if a.ndim >= 1:
            return int(a.shape[0])
    return 1


def head_batches(batches: Sequence[Mapping[str, np.ndarray]], samples: int) -> list:
    """The first batches holding at least ``samples`` samples (at least one batch)."""
    out, n = [], 0
    for b in batches:
        out.append(b)
        n += feeds_batch(b)
        if n >= samples:
            break
    return out


def cast_feeds(feeds: Mapping[str, np.ndarray], model: Model) -> dict[str, np.ndarray]:
    """Feeds cast to ``model``'s input dtypes (e.g. a variant converted without keeping fp32 I/O)."""
    out = {}
    for s in input_specs(model):
        if s.name not in feeds:
            raise DataError(f"feeds lack input {s.name!r} of {model.name}; they have {sorted(feeds)}")
        a = np.asarray(feeds[s.name])
        out[s.name] = a if a.dtype == s.np_dtype else a.astype(s.np_dtype)
    return out


def resolve_data(model: Model, data, labels, *, shapes=None, batch_size: int | None = None,
                 limit: int | None = None) -> tuple[Sequence, np.ndarray | None]:
    """``(batches, labels)``: ``batches`` a re-iterable sequence of feed dicts; ``labels`` an int array or None.

    ``data``: an ``.npz`` path, a :class:`NpzDataset`, an iterable of feed dicts, or None (one synthetic
    batch). ``labels`` is a key of the ``.npz`` / :class:`NpzDataset` (``DataError`` if missing) or an array.
    Batches hold :func:`default_batch` samples. From an ``.npz`` / :class:`NpzDataset` they are a
    :class:`Batches` sequence read one batch at a time (the NaN/Inf check streams too); other sources
    are materialized as a list.
    """
    if isinstance(data, (str, os.PathLike)):
        keys = [labels] if isinstance(labels, str) else []
        data = NpzDataset(data, model, label_keys=keys, allow_extra=True)
    label_arr = None
    if isinstance(labels, str):
        if not isinstance(data, NpzDataset):
            raise DataError(f"labels={labels!r} names a key, which needs .npz data (got {type(data).__name__})",
                            hint="pass the label array itself for other data sources")
        if labels not in data.labels and labels not in data.source_keys:
            raise DataError(f"label key {labels!r} not found in {data.path or 'the dataset'}; "
                            f"label keys are {sorted(data.labels)}")
        label_arr = data.add_labels(labels)
    elif labels is not None:
        label_arr = np.asarray(labels)
    if isinstance(data, NpzDataset):
        batches: Sequence = data.batch_list(default_batch(model, batch_size), limit=limit)
        data.check_finite(rows=batches.size, limit=batches.num_samples)
        n = batches.num_samples
    else:
        batches = list(as_feed_batches(model, data, batch_size=default_batch(model, batch_size), limit=limit,
                                       shapes=shapes))
        n = sum(feeds_batch(b, model) for b in batches)
    if not batches:
        raise DataError("the data gave no batches (fewer samples than the model's fixed batch size?)")
    if label_arr is not None:
        if label_arr.ndim == 0 or label_arr.shape[0] < n:
            raise DataError(f"labels hold {label_arr.shape[0] if label_arr.ndim else 0} entries for {n} samples")
        if not np.issubdtype(label_arr.dtype, np.integer):
            raise DataError(f"labels must be integer class ids, got dtype {label_arr.dtype}")
        if label_arr.ndim > 1 and int(np.prod(label_arr.shape[1:])) != 1:
            raise DataError(f"labels must be one class id per sample, got shape {label_arr.shape}",
                            hint="convert one-hot labels with argmax")
        label_arr = label_arr[:n].reshape(n)
    return batches, label_arr
