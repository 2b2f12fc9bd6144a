"""The shape doctor: what a model's inputs really are, read from the graph, before anything runs.

    import workbench as wb
    wb.shapes.check("model.onnx")                       # tidy DataFrame, one row per finding
    wb.shapes.check("model.onnx", shapes="x:1x3x48x96")  # also checks a --shapes map against the model
    rep = wb.shapes.diagnose(m)                          # the facts behind the table (batch axes, value ranges)

Findings (``check`` column):

* ``unnamed_dim``: a dynamic dim with no name (``-1``, empty) or a placeholder name (``?``). Builders that
  match dims by name cannot relate it to other dims.
* ``shared_dim_name``: one name used for dims that are really independent (same name at different axes or
  roles, e.g. paddle2onnx's ``"?"`` for both height and width). TensorRT treats equal names as equal dims, so
  a profile with H != W fails; TensorRT-family builds rename them uniquely in the variant
  (:func:`for_tensorrt`), never in the source.
* ``batch_axis``: each input's batch axis (0, another axis like a recurrent state ``[2, batch, 128]``, or none
  for scalars and per-model constants), with how it was decided.
* ``value_range``: inputs whose legal values the graph bounds: indices into a Gather table (ids < vocab,
  token types < type-table size), 0/1 masks (``Where`` conditions, ``1 - mask``, multiplied after a cast),
  values compared with constants (``sr == 16000``). Synthetic inputs respect these ranges.
* ``unknown_shape_name``: a ``--shapes`` name that is not an input (with the real names and the closest match).
* ``no_range``: a dynamic dim the ``--shapes`` map gives no range for, with a suggested ``--shapes`` entry.
* ``profile``: a ``--shapes`` range that does not fit the model (rank, fixed dim, min <= opt <= max, dims that
  must be equal), naming the input and dim.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np
import onnx

from .errors import ShapeSpecError
from .model import Model, ModelSource, iter_graphs, load

FRAME_COLUMNS = ["input", "axis", "dim", "check", "severity", "finding", "suggestion"]

#: dim names exporters write when they have no real name (paddle2onnx: "?"; some tools: "-1", "None").
_PLACEHOLDER = re.compile(r"^(\?|-1|none|null|dynamic|unk|unknown|)$", re.IGNORECASE)
#: ops that pass an input's values through unchanged (a subset, reshaped or retyped), from any input position
_PASS_THROUGH = {"Cast", "CastLike", "Identity", "Flatten", "Transpose", "Concat"}
#: ... and ops that do so from their first (data) input only
_PASS_DATA = {"Unsqueeze", "Squeeze", "Reshape", "Expand", "Slice", "Tile", "Split", "Gather"}
_MAX_TRACE = 64  # nodes followed per input: enough for real exports, bounded on huge graphs


def _is_placeholder(name: str | None) -> bool:
    return name is None or bool(_PLACEHOLDER.match(name.strip()))


def closest(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or ``""``."""
    m = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    return f" (did you mean {m[0]!r}?)" if m else ""


def unknown_names_message(what: str, unknown: Iterable[str], known: Iterable[str]) -> str:
    """One line: ``--shapes names 'inptu' (did you mean 'input'?): not model inputs; the model's inputs are [...]``."""
    known = list(known)
    parts = [f"{u!r}{closest(u, known)}" for u in unknown]
    return f"{what} names {', '.join(parts)}: not model inputs; the model's inputs are {known}"


# ---------------------------------------------------------------------------------------------- facts
@dataclass
class InputFacts:
    """What the doctor knows about one input."""

    name: str
    dtype: str
    shape: tuple | None  # ints for fixed dims, names for symbolic, None for unnamed dynamic
    batch_axis: int | None
    batch_reason: str
    value_kind: str | None = None  # "index" | "mask" | "choice"
    low: int | None = None  # legal values low..high (inclusive)
    high: int | None = None
    choices: tuple = ()  # values the graph compares the input with
    value_reason: str = ""

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": None if self.shape is None else list(self.shape),
                "batch_axis": self.batch_axis, "batch_reason": self.batch_reason, "value_kind": self.value_kind,
                "low": self.low, "high": self.high, "choices": list(self.choices), "value_reason": self.value_reason}


@dataclass
class ShapeReport:
    """The doctor's result: per-input facts, the finding rows, and the dim renames TensorRT builds apply."""

    model: str
    inputs: dict[str, InputFacts]
    rows: list[dict] = field(default_factory=list)
    renames: dict[str, dict[int, str]] = field(default_factory=dict)
    #: a complete ``--shapes`` value (the given ranges + suggestions for dynamic inputs without one; consistent
    #: for dims that share a name), or "" when every dynamic input has a range
    suggested_shapes: str = ""

    @property
    def batch_axes(self) -> dict[str, int | None]:
        return {n: f.batch_axis for n, f in self.inputs.items()}

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows, columns=FRAME_COLUMNS)

    def to_json(self) -> dict:
        return {"model": self.model, "inputs": [f.to_json() for f in self.inputs.values()],
                "findings": [dict(r) for r in self.rows],
                "renames": {k: {str(a): n for a, n in v.items()} for k, v in self.renames.items()},
                "suggested_shapes": self.suggested_shapes}

    @property
    def errors(self) -> list[dict]:
        return [r for r in self.rows if r["severity"] == "error"]

    def text(self) -> str:
        lines = []
        for r in self.rows:
            where = r["input"] + (f"[{r['axis']}]" if r["axis"] is not None else "")
            line = f"{r['severity']:<7} {r['check']:<18} {where:<24} {r['finding']}"
            if r["suggestion"]:
                line += f"  -> {r['suggestion']}"
            lines.append(line)
        if self.suggested_shapes:
            lines.append(f"suggested: --shapes {self.suggested_shapes}")
        return "\n".join(lines)


def _dims(vi: onnx.ValueInfoProto) -> tuple | None:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    out: list = []
    for d in t.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            out.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            out.append(d.dim_param)
        else:
            out.append(None)
    return tuple(out)


def _graph_inputs(model: Model) -> list[onnx.ValueInfoProto]:
    inits = {i.name for i in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in inits]


def _dynamic(d) -> bool:
    return not isinstance(d, int)


def _parse_axes(batch_axis: Mapping[str, int | None] | str | None) -> dict[str, int | None]:
    """``"state:1,sr:none"`` or a mapping → ``{name: axis or None}``."""
    if batch_axis is None or batch_axis == "":
        return {}
    if isinstance(batch_axis, Mapping):
        items = list(batch_axis.items())
    else:
        items = []
        for part in (p.strip() for p in str(batch_axis).split(",") if p.strip()):
            if ":" not in part:
                raise ShapeSpecError(f"bad --batch-axis entry {part!r}: expected NAME:AXIS like state:1 (or NAME:none)")
            name, ax = part.rsplit(":", 1)
            items.append((name.strip(), ax.strip()))
    out: dict[str, int | None] = {}
    for name, ax in items:
        if ax is None or (isinstance(ax, str) and ax.lower() in ("none", "-", "")):
            out[name] = None
            continue
        try:
            out[name] = int(ax)
        except (TypeError, ValueError):
            raise ShapeSpecError(f"bad --batch-axis axis {ax!r} for {name!r}: give an integer axis or 'none'") from None
    return out


def _infer_batch_axes(specs: list[tuple[str, tuple | None]], users: dict) -> dict[str, tuple[int | None, str]]:
    """Batch axis per input: a shared symbolic name (``batch``) wins; then RNN initial states (axis 1);
    then the first dynamic axis; fully static inputs use axis 0 unless its size differs from the others'."""
    # the batch symbol: the name most inputs carry at their first dynamic axis (ignoring placeholders)
    votes: dict[str, int] = {}
    for _, shape in specs:
        if not shape:
            continue
        first = next((d for d in shape if _dynamic(d)), None)
        if isinstance(first, str) and not _is_placeholder(first):
            votes[first] = votes.get(first, 0) + 1
    named = [n for n in votes if re.search(r"batch|^n$|^b$|^bs$|^N$", n, re.IGNORECASE)]
    symbol = max(named or votes, key=lambda n: (votes[n], n in named), default=None) if votes else None
    out: dict[str, tuple[int | None, str]] = {}
    static_b = None
    any_dynamic = any(shape and any(_dynamic(d) for d in shape) for _, shape in specs)
    for name, shape in specs:
        if shape is None:
            out[name] = (0, "assumed axis 0 (the model gives no shape)")
        elif len(shape) == 0:
            out[name] = (None, "scalar: passed unchanged to every batch")
        elif symbol is not None and symbol in shape:
            ax = shape.index(symbol)
            out[name] = (ax, f"dim named {symbol!r}")
        elif any_dynamic and not any(_dynamic(d) for d in shape):
            out[name] = (None, "fixed shape next to inputs with a dynamic batch: passed unchanged to every batch")
        elif (rnn := _rnn_state(name, users)) is not None and len(shape) == 3:
            out[name] = (1, f"initial state of {rnn} ([directions, batch, hidden])")
        elif any(_dynamic(d) for d in shape):
            ax = next(i for i, d in enumerate(shape) if _dynamic(d))
            out[name] = (ax, "first dynamic axis" if ax == 0 else f"first dynamic axis (dims before it are fixed: "
                         f"{list(shape[:ax])})")
        else:
            rnn = _rnn_state(name, users)
            out[name] = (1, f"static shape; initial state of {rnn}") if rnn and len(shape) == 3 else (0, "static shape")
            if static_b is None and not rnn:
                static_b = shape[0]
    # fully static inputs whose axis 0 differs from the model's static batch (e.g. state [2, 1, 128] next to
    # input [1, 576]): take the first axis with the batch size
    for name, shape in specs:
        if (shape and not any(_dynamic(d) for d in shape) and static_b is not None and out[name][0] == 0
                and shape[0] != static_b):
            ax = next((i for i, d in enumerate(shape) if d == static_b), None)
            out[name] = (ax, f"static shape; batch size {static_b} found at axis {ax}" if ax is not None
                         else f"static shape with no axis of the batch size {static_b}: no batch axis")
    return out


def _rnn_state(name: str, users: dict) -> str | None:
    for node, pos in users.get(name, ()):
        if node.op_type in ("LSTM", "GRU", "RNN") and pos in (5, 6):
            layout = next((a.i for a in node.attribute if a.name == "layout"), 0)
            if layout == 0:
                return f"{node.op_type} {node.name or ''}".strip()
    return None


# ---------------------------------------------------------------------------------------------- graph tracing
class _Graph:
    """Consumers, constants and known shapes of every graph and subgraph (subgraphs read outer names)."""

    def __init__(self, model: Model):
        self.users: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
        self.const_dims: dict[str, tuple[int, ...]] = {}
        self.const_vals: dict[str, np.ndarray] = {}
        self.shapes: dict[str, tuple] = {}
        self.producer: dict[str, onnx.NodeProto] = {}
        for g in iter_graphs(model.graph):
            for t in g.initializer:
                self.const_dims[t.name] = tuple(int(d) for d in t.dims)
                self._small_value(t.name, t)
            for vi in list(g.value_info) + list(g.output):
                s = _dims(vi)
                if s is not None:
                    self.shapes[vi.name] = s
            for n in g.node:
                for o in n.output:
                    self.producer[o] = n
                for i, name in enumerate(n.input):
                    if name:
                        self.users.setdefault(name, []).append((n, i))
                if n.op_type == "Constant" and n.output:
                    for a in n.attribute:
                        if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                            self.const_dims[n.output[0]] = tuple(int(d) for d in a.t.dims)
                            self._small_value(n.output[0], a.t)
                        elif a.name in ("value_int", "value_float"):
                            self.const_dims[n.output[0]] = ()
                            self.const_vals[n.output[0]] = np.array(a.i if a.name == "value_int" else a.f)

    def _small_value(self, name: str, t: onnx.TensorProto) -> None:
        limit = 4096 if t.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32) else 16  # int: one-hot iotas
        if int(np.prod(t.dims, dtype=np.int64)) <= limit and not (
                t.HasField("data_location") and t.data_location == onnx.TensorProto.EXTERNAL):
            try:
                self.const_vals[name] = onnx.numpy_helper.to_array(t)
            except Exception:  # exotic types: the value is not needed for any rule
                pass


def _const_origin(name: str, g: _Graph, depth: int = 6) -> np.ndarray | None:
    """The constant value behind ``name``, looking back through shape-only ops (Expand, Reshape, Cast, ...)."""
    for _ in range(depth):
        if name in g.const_vals:
            return g.const_vals[name]
        node = g.producer.get(name)
        if node is None or node.op_type not in ("Expand", "Reshape", "Unsqueeze", "Squeeze", "Cast", "Identity",
                                                "Flatten", "Tile"):
            return None
        name = node.input[0]
    return None


def _trace_values(name: str, dtype: int, g: _Graph) -> tuple[str | None, int | None, int | None, tuple, str]:
    """Follow ``name`` through value-preserving ops to the uses that bound its values.

    Returns ``(kind, low, high, choices, reason)``.
    """
    is_int = dtype in (onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.INT16,
                       onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.UINT16,
                       onnx.TensorProto.UINT32, onnx.TensorProto.UINT64)
    is_bool = dtype == onnx.TensorProto.BOOL
    tables: list[tuple[int, str]] = []
    mask: list[str] = []
    choices: list = []
    frontier = [(name, False)]  # (tensor, passed through a Cast to float)
    seen: set[str] = set()
    steps = 0
    while frontier and steps < _MAX_TRACE:
        t, as_float = frontier.pop()
        if t in seen:
            continue
        seen.add(t)
        for node, pos in g.users.get(t, ()):
            steps += 1
            op = node.op_type
            nm = node.name or op
            if op in ("Gather", "GatherElements") and pos == 1:
                data = node.input[0]
                shp = g.const_dims.get(data) or g.shapes.get(data)
                axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
                if shp and -len(shp) <= axis < len(shp) and isinstance(shp[axis], int):
                    what = "table" if data in g.const_dims else "tensor"
                    tables.append((int(shp[axis]), f"indexes {nm} ({what} {data!r} has {shp[axis]} rows)"))
                continue
            if op == "Where" and pos == 0:
                mask.append(f"condition of {nm}")
                continue
            if op == "Not":
                mask.append(f"negated by {nm}")
                continue
            if op == "Sub" and pos == 1:
                c = g.const_vals.get(node.input[0])
                if c is not None and c.size == 1 and float(c.reshape(-1)[0]) == 1.0:
                    mask.append(f"1 - x in {nm}")
                continue
            if op == "Mul" and as_float and (is_int or is_bool):
                mask.append(f"multiplies a tensor after a cast in {nm}")
                continue
            if op == "Equal":
                other = node.input[1 - pos] if len(node.input) == 2 else ""
                c = _const_origin(other, g)
                if c is not None and c.size > 2 and np.issubdtype(c.dtype, np.integer) and np.array_equal(
                        np.unique(c), np.arange(c.size if c.ndim <= 1 else np.unique(c).size)):
                    k = int(np.unique(c).size)
                    tables.append((k, f"one-hot against 0..{k - 1} in {nm}"))
                elif c is not None and c.size == 1:
                    v = c.reshape(-1)[0].item()
                    if v in (0, 1) and (is_int or is_bool):
                        mask.append(f"compared with {v} in {nm}")
                    elif is_int:
                        choices.append((v, f"compared with {v} in {nm}"))
                continue
            if op in _PASS_THROUGH or (op in _PASS_DATA and pos == 0):
                to_float = as_float
                if op == "Cast":
                    to = next((a.i for a in node.attribute if a.name == "to"), 0)
                    to_float = to in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
                                      onnx.TensorProto.BFLOAT16)
                frontier.extend((o, to_float) for o in node.output if o)
    if tables:
        n, why = min(tables)
        low, high = 0, n - 1
        if mask and high >= 1:
            return "mask", 0, 1, (), f"{mask[0]}; also {why}"
        return "index", low, high, (), why + (f" (+{len(tables) - 1} more)" if len(tables) > 1 else "")
    if mask and (is_int or is_bool or dtype in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)):
        return "mask", 0, 1, (), mask[0]
    if choices:
        vals = tuple(dict.fromkeys(v for v, _ in choices))
        return "choice", None, None, vals, "; ".join(dict.fromkeys(w for _, w in choices))
    return None, None, None, (), ""


# ---------------------------------------------------------------------------------------------- diagnose
def _role(facts: InputFacts, axis: int) -> str:
    return "batch" if facts.batch_axis == axis else f"axis {axis}"


def _compute_renames(inputs: dict[str, InputFacts]) -> tuple[dict[str, dict[int, str]], list[dict]]:
    """Dims that share a name but not an axis/role get unique names. Dims of one role (the batch axis of every
    input, or the same axis index) stay one dim; the batch role (else the largest role) keeps the name, every
    other role gets ``<name>_<role>`` (``dim_axis3`` for a placeholder like ``?``)."""
    groups: dict[str, list[tuple[str, int]]] = {}
    for f in inputs.values():
        for ax, d in enumerate(f.shape or ()):
            if isinstance(d, str):
                groups.setdefault(d, []).append((f.name, ax))
    used = set(groups)
    renames: dict[str, dict[int, str]] = {}
    rows = []
    for dim, members in groups.items():
        by_role: dict[str, list[tuple[str, int]]] = {}
        for inp, ax in members:
            key = "batch" if inputs[inp].batch_axis == ax else f"axis{ax}"
            by_role.setdefault(key, []).append((inp, ax))
        if len(by_role) < 2:
            continue  # one role: a real shared dim (the same size everywhere)
        keep = max(by_role, key=lambda k: (k == "batch", len(by_role[k])))
        changed = []
        for key, mem in by_role.items():
            if key == keep:
                continue
            new = f"{dim_base(dim)}_{key}"
            while new in used:
                new += "_"
            used.add(new)
            for inp, ax in mem:
                renames.setdefault(inp, {})[ax] = new
                changed.append(f"{inp}[{ax}] -> {new!r}")
        where = ", ".join(f"{i}[{a}]" for i, a in members)
        rows.append(dict(input=members[0][0], axis=members[0][1], dim=dim, check="shared_dim_name",
                         severity="warning",
                         finding=f"dim name {dim!r} is used for independent dims {where} (different axes/roles); "
                                 "TensorRT would force them to be equal (e.g. H = W)",
                         suggestion="TensorRT builds rename them in the variant: " + ", ".join(changed)))
    return renames, rows


def dim_base(dim: str) -> str:
    return "dim" if _is_placeholder(dim) else re.sub(r"[^A-Za-z0-9_]+", "_", dim)


def _suggest(f: InputFacts, memo: dict | None = None, renames: Mapping | None = None
             ) -> tuple[str, list[tuple[int, int, int]]]:
    """A suggested MIN/OPT/MAX entry for an input with dynamic dims. ``memo`` (dim name -> range) keeps dims that
    TensorRT treats as one (same name after ``renames``) equal across inputs."""
    shape = f.shape or ()
    image = len(shape) == 4 and isinstance(shape[1], int) and shape[1] in (1, 3, 4)
    memo = {} if memo is None else memo
    per_dim = []
    for ax, d in enumerate(shape):
        key = (renames or {}).get(f.name, {}).get(ax, d) if isinstance(d, str) else None
        if isinstance(d, int):
            per_dim.append((d, d, d))
        elif key is not None and key in memo:
            per_dim.append(memo[key])
        elif ax == f.batch_axis:
            per_dim.append((1, 8, 32))
        elif image and ax in (2, 3):
            per_dim.append((32, 224, 640))
        elif f.value_kind in ("index", "mask") or re.search(r"seq|len|token|time", str(d), re.IGNORECASE):
            per_dim.append((1, 128, 512))
        else:
            per_dim.append((1, 64, 256))
        if key is not None:
            memo.setdefault(key, per_dim[-1])
    spec = "/".join("x".join(str(p[i]) for p in per_dim) for i in range(3))
    return f"{f.name}:{spec}", per_dim


def diagnose(model: ModelSource, shapes=None, *, batch_axis: Mapping[str, int | None] | str | None = None
             ) -> ShapeReport:
    """The doctor's facts and findings for ``model`` (``shapes``: an optional ``--shapes`` map to check;
    ``batch_axis``: overrides like ``"state:1"`` or ``{"state": 1}``)."""
    m = load(model)
    key = repr(sorted(_parse_axes(batch_axis).items()))
    cache = m.__dict__.setdefault("_wb_shape_facts", {})  # a Model's proto is immutable by convention
    if key not in cache:
        cache[key] = _facts(m, batch_axis)
    inputs, renames, base_rows = cache[key]
    return _with_shapes(m, inputs, renames, list(base_rows), shapes)


def _facts(m: Model, batch_axis) -> tuple[dict[str, InputFacts], dict[str, dict[int, str]], list[dict]]:
    g = _Graph(m)
    vis = _graph_inputs(m)
    specs = [(v.name, _dims(v)) for v in vis]
    axes = _infer_batch_axes(specs, g.users)
    override = _parse_axes(batch_axis)
    names = [n for n, _ in specs]
    unknown = [k for k in override if k not in names]
    if unknown:
        raise ShapeSpecError(unknown_names_message("--batch-axis", unknown, names))
    inputs: dict[str, InputFacts] = {}
    for v, (name, shape) in zip(vis, specs):
        ax, why = axes[name]
        if name in override:
            ax = override[name]
            rank = len(shape) if shape is not None else None
            if ax is not None and rank is not None and not -rank <= ax < rank:
                raise ShapeSpecError(f"--batch-axis {name}:{ax} is out of range: {name!r} has rank {rank} "
                                     f"{list(shape)}")
            if ax is not None and ax < 0:
                ax += rank
            why = "given (--batch-axis)"
        et = v.type.tensor_type.elem_type
        kind, lo, hi, choices, vwhy = _trace_values(name, et, g)
        inputs[name] = InputFacts(name, onnx.TensorProto.DataType.Name(et).lower(), shape, ax, why, kind, lo, hi,
                                  choices, vwhy)
    rows: list[dict] = []

    def row(inp, axis, dim, check, severity, finding, suggestion=""):
        rows.append(dict(input=inp, axis=axis, dim=None if dim is None else str(dim), check=check, severity=severity,
                         finding=finding, suggestion=suggestion))

    for f in inputs.values():
        if f.shape is None:
            row(f.name, None, None, "unnamed_dim", "warning", "the model gives this input no shape at all",
                f"give it with --shapes {f.name}:DIMS")
            continue
        for ax, d in enumerate(f.shape):
            if d is None:
                row(f.name, ax, "?", "unnamed_dim", "warning",
                    "dynamic dim without a name: builders cannot relate it to other dims",
                    "give its size with --shapes; TensorRT builds treat it as independent")
            elif isinstance(d, str) and _is_placeholder(d):
                row(f.name, ax, d, "unnamed_dim", "warning", f"dynamic dim with the placeholder name {d!r}",
                    "give its size with --shapes")
    renames, share_rows = _compute_renames(inputs)
    rows.extend(share_rows)
    for f in inputs.values():
        dim = None if f.batch_axis is None or not f.shape else f.shape[f.batch_axis]
        msg = (f"batch axis {f.batch_axis}" if f.batch_axis is not None else "no batch axis") + f": {f.batch_reason}"
        guessed = f.batch_reason.startswith(("first dynamic axis (", "static shape;", "static shape with", "assumed"))
        sev = "warning" if guessed or (f.batch_axis is None and f.rank) else "info"
        sugg = "" if sev == "info" else f"override with --batch-axis {f.name}:AXIS (or {f.name}:none)"
        row(f.name, f.batch_axis, dim, "batch_axis", sev, msg, sugg)
        if f.value_kind == "index":
            row(f.name, None, None, "value_range", "info", f"values {f.low}..{f.high}: {f.value_reason}",
                f"synthetic values are drawn from {f.low}..{f.high}")
        elif f.value_kind == "mask":
            row(f.name, None, None, "value_range", "info", f"0/1 mask: {f.value_reason}",
                "synthetic masks are all ones (no padding)")
        elif f.value_kind == "choice":
            row(f.name, None, None, "value_range", "info", f"values {list(f.choices)}: {f.value_reason}",
                f"synthetic value {f.choices[0]}")
    return inputs, renames, rows


def _with_shapes(m: Model, inputs: dict[str, InputFacts], renames, rows: list[dict], shapes) -> ShapeReport:
    from .data import ShapeMap

    def row(inp, axis, dim, check, severity, finding, suggestion=""):
        rows.append(dict(input=inp, axis=axis, dim=None if dim is None else str(dim), check=check, severity=severity,
                         finding=finding, suggestion=suggestion))

    sm = ShapeMap.parse(shapes)
    memo: dict = {}
    for f in inputs.values():  # the given ranges fix shared names first
        if f.name in sm and f.shape is not None and len(sm[f.name].opt) == len(f.shape):
            for ax, d in enumerate(f.shape):
                if isinstance(d, str):
                    rng = sm[f.name]
                    memo.setdefault(renames.get(f.name, {}).get(ax, d), (rng.min[ax], rng.opt[ax], rng.max[ax]))
    suggested: list[str] = []
    unknown = [k for k in sm if k not in inputs]
    if unknown:
        row(", ".join(unknown), None, None, "unknown_shape_name", "error",
            unknown_names_message("--shapes", unknown, list(inputs)), "fix the name; nothing is ignored")
    for f in inputs.values():
        if f.shape is None or not any(_dynamic(d) for d in f.shape):
            continue
        if f.name in sm:
            try:
                _check_range(f, sm[f.name])
            except ShapeSpecError as e:
                row(f.name, None, None, "profile", "error", e.message)
            continue
        spec, _ = _suggest(f, memo, renames)
        suggested.append(spec)
        dyn = [ax for ax, d in enumerate(f.shape) if _dynamic(d)]
        row(f.name, dyn[0] if len(dyn) == 1 else None, None, "no_range", "warning",
            f"dynamic dim(s) {dyn} have no range; runs use 1 and TensorRT builds need MIN/OPT/MAX",
            f"--shapes {spec}")
    try:
        _check_shared(inputs, renames, sm)
    except ShapeSpecError as e:
        row("", None, None, "profile", "error", e.message)
    order = {n: i for i, n in enumerate(inputs)}
    rows.sort(key=lambda r: order.get(r["input"], len(order)))  # stable: per input, in check order
    given = {n: f"{n}:{sm[n].to_spec()}" for n in inputs if n in sm}
    full = [given.get(n) or next((x for x in suggested if x.startswith(f"{n}:")), None) for n in inputs]
    return ShapeReport(m.name, inputs, rows, renames, ",".join(x for x in full if x) if suggested else "")


def check(model: ModelSource, shapes=None, *, batch_axis: Mapping[str, int | None] | str | None = None):
    """The shape doctor's table: a tidy DataFrame, one row per finding (columns ``input, axis, dim, check,
    severity, finding, suggestion``). See the module docstring for the checks."""
    return diagnose(model, shapes, batch_axis=batch_axis).to_frame()


def batch_axes(model: ModelSource, batch_axis: Mapping[str, int | None] | str | None = None) -> dict[str, int | None]:
    """``{input: batch axis or None}`` (the doctor's choice, with ``batch_axis`` overrides)."""
    return diagnose(model, batch_axis=batch_axis).batch_axes


# ---------------------------------------------------------------------------------------------- profiles
def _dim_label(f: InputFacts, ax: int) -> str:
    d = f.shape[ax] if f.shape is not None and ax < len(f.shape) else None
    return f"dim {ax}" + (f" ({d!r})" if isinstance(d, str) else "")


def _check_range(f: InputFacts, rng) -> None:
    """min/opt/max of one input against the model: rank, fixed dims, min <= opt <= max, per dim."""
    if f.shape is None:
        return
    for which, s in (("min", rng.min), ("opt", rng.opt), ("max", rng.max)):
        if len(s) != len(f.shape):
            raise ShapeSpecError(f"--shapes gives {f.name!r} rank {len(s)} ({which} {'x'.join(map(str, s)) or 'scalar'}),"
                                 f" the model's {f.name!r} has rank {len(f.shape)} {list(f.shape)}")
    for ax, want in enumerate(f.shape):
        lo, opt, hi = rng.min[ax], rng.opt[ax], rng.max[ax]
        if isinstance(want, int) and (lo, opt, hi) != (want, want, want):
            bad = next(v for v in (lo, opt, hi) if v != want)
            raise ShapeSpecError(f"--shapes gives {f.name!r} {_dim_label(f, ax)} = {bad}, but the model fixes it to {want}")
        if not lo <= opt <= hi:
            raise ShapeSpecError(f"--shapes range for {f.name!r} {_dim_label(f, ax)} is min {lo} / opt {opt} / max {hi}: "
                                 "need min <= opt <= max")
        if lo < 1 and ax == f.batch_axis:
            raise ShapeSpecError(f"--shapes range for {f.name!r} {_dim_label(f, ax)} (batch axis) starts at {lo}: "
                                 "need >= 1")


def _check_shared(inputs: dict[str, InputFacts], renames: dict[str, dict[int, str]], sm) -> None:
    """Dims that keep one name after renaming must get equal ranges (TensorRT makes them one dim)."""
    seen: dict[str, tuple[str, int, tuple]] = {}
    for f in inputs.values():
        if f.name not in sm or f.shape is None:
            continue
        rng = sm[f.name]
        if len(rng.opt) != len(f.shape):
            continue
        for ax, d in enumerate(f.shape):
            if not isinstance(d, str):
                continue
            name = renames.get(f.name, {}).get(ax, d)
            val = (rng.min[ax], rng.opt[ax], rng.max[ax])
            if name in seen and seen[name][2] != val:
                o_in, o_ax, o_val = seen[name]
                fmt = "/".join
                raise ShapeSpecError(
                    f"--shapes gives {f.name!r} dim {ax} = {fmt(map(str, val))} but {o_in!r} dim {o_ax} = "
                    f"{fmt(map(str, o_val))}; the model names both {d!r} (one dim), so they must be equal")
            seen.setdefault(name, (f.name, ax, val))


def validate_profile(model: ModelSource, shapes, *, batch_axis=None) -> ShapeReport:
    """Check a ``--shapes`` map against the model before any build; raises :class:`ShapeSpecError` with one line
    naming the input and dim (unknown names, rank, fixed dims, min <= opt <= max, dims that must be equal)."""
    from .data import ShapeMap

    rep = diagnose(model, batch_axis=batch_axis)
    sm = ShapeMap.parse(shapes)
    unknown = [k for k in sm if k not in rep.inputs]
    if unknown:
        raise ShapeSpecError(unknown_names_message("--shapes", unknown, list(rep.inputs)))
    for name, rng in sm.items():
        _check_range(rep.inputs[name], rng)
    _check_shared(rep.inputs, rep.renames, sm)
    return rep


def rename_dims(model: Model, renames: Mapping[str, Mapping[int, str]]) -> Model:
    """A copy of ``model`` whose input dims are renamed (``{input: {axis: new name}}``); the source is untouched.
    External data stays where it is (the copy keeps the source's folder)."""
    import copy

    proto = copy.deepcopy(model.proto)
    for vi in proto.graph.input:
        for ax, new in renames.get(vi.name, {}).items():
            d = vi.type.tensor_type.shape.dim[int(ax)]
            d.Clear()
            d.dim_param = new
    return Model(proto, base_dir=model.base_dir, name=model.name, parent_hash=model.hash)


def for_tensorrt(variant, shapes=None):
    """The variant a TensorRT-family backend parses: the profile is validated (one line naming input and dim),
    and dims that share a name but not an axis/role are renamed uniquely. Returns ``(variant, renames)``: the
    same variant when nothing needs renaming, else a new one whose recipe records ``renamed_dims``."""
    from dataclasses import replace

    rep = validate_profile(variant.model, shapes)
    if not rep.renames:
        return variant, {}
    renames = {k: {str(a): n for a, n in v.items()} for k, v in rep.renames.items()}
    model = rename_dims(variant.model, rep.renames)
    new = replace(variant, model=model, recipe={**variant.recipe, "renamed_dims": renames})
    return new, renames


def resolve_control_flow(variant, shapes=None, freeze: Mapping | None = None):
    """The variant a TensorRT-family backend parses, with If nodes resolved before the build where that is
    exact or asked for (TensorRT-RTX stops with a native ``graphScope ... kUNDEFINED`` assertion on them):

    * dims the profile fixes (min = opt = max) are written into the inputs, the graph is folded, and every If
      whose condition became a constant is replaced by the branch it takes (exact under the profile);
    * ``freeze`` {input: value} replaces inputs by constants (the engine then answers for that value only);
    * an If still depending on a scalar input that the doctor finds compared with one constant (silero's
      ``sr == 16000``) gets that input frozen to it, with a :class:`WorkbenchWarning` naming the value, why,
      and how to choose another (``--freeze sr=8000``).

    Returns ``(variant, report)``; ``report`` is empty when the graph has no control flow and nothing is frozen,
    else it is recorded in the variant's ``recipe["control_flow"]`` (frozen, fixed_dims, inlined, remaining with
    the inputs each condition depends on). A folding failure leaves the variant as it was and is reported."""
    import warnings
    from dataclasses import replace

    from .data import ShapeMap
    from .edit.controlflow import CONTROL_FLOW, fold_control_flow
    from .errors import EditError, WorkbenchWarning

    model = variant.model
    freeze = dict(freeze or {})
    if not freeze and not any(n.op_type in CONTROL_FLOW for n in model.proto.graph.node):
        return variant, {}
    sm = ShapeMap.parse(shapes)
    fixed = {name: {ax: d for ax, d in enumerate(r.min) if r.min[ax] == r.opt[ax] == r.max[ax]}
             for name, r in sm.items()}
    auto: dict[str, str] = {}
    try:
        folded, rep = fold_control_flow(model, freeze=freeze, fixed_dims=fixed)
        scalars = {i.name for i in _graph_inputs(model) if _dims(i) == ()}
        wanted = sorted({d for r in rep["remaining"] for d in r["depends_on"] if d in scalars and d not in freeze})
        if wanted:
            facts = diagnose(model).inputs
            for name in wanted:
                f = facts.get(name)
                if f is not None and f.value_kind == "choice" and len(f.choices) == 1:
                    freeze[name] = f.choices[0]
                    auto[name] = f.value_reason
            if auto:
                folded, rep = fold_control_flow(model, freeze=freeze, fixed_dims=fixed)
    except EditError as e:
        report = {"error": str(e), "remaining": [{"node": n.name, "op_type": n.op_type, "depends_on": []}
                                                 for n in model.proto.graph.node if n.op_type in CONTROL_FLOW]}
        return replace(variant, recipe={**variant.recipe, "control_flow": report}), report
    if auto:
        rep["frozen_automatically"] = {k: f"{v}: the only value the graph tests it against" for k, v in auto.items()}
        warnings.warn("; ".join(f"froze input {k!r} = {freeze[k]} for the TensorRT build ({v}), so the control flow "
                                f"is resolved before the build; the engine answers for {k}={freeze[k]} only "
                                f"(another value: --freeze {k}=VALUE)" for k, v in auto.items()),
                      WorkbenchWarning, stacklevel=3)
    if folded is model:
        return replace(variant, recipe={**variant.recipe, "control_flow": rep}), rep
    recipe = {**variant.recipe, "control_flow": rep}
    if rep["frozen"]:
        recipe["frozen_inputs"] = dict(rep["frozen"])
    return replace(variant, model=folded, recipe=recipe), rep


__all__ = ["resolve_control_flow", "check", "diagnose", "batch_axes", "validate_profile", "for_tensorrt", "rename_dims", "ShapeReport",
           "InputFacts", "FRAME_COLUMNS", "unknown_names_message"]
