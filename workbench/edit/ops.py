"""Graph edits with ONNX GraphSurgeon: pure functions ``op(model, **params) -> Model``.

Each operation imports a deep copy of the model (``gs.import_onnx(model.proto_with_data())``), edits
the GraphSurgeon graph, exports it and returns ``model.derive(proto)``: the input model is never
changed. Operations are registered in :data:`REGISTRY` with a parameter schema, which the history
(JSON), the edit panel (forms) and code generation (:func:`render_call`) read.

    import workbench as wb
    import workbench.edit
    m = wb.load("model.onnx")
    m2 = wb.edit.fold_constants(m)
    m3 = wb.edit.remove_node(m2, "dropout_1")          # bypass: consumers read its input

Operations do not validate their result; :class:`workbench.edit.History` does (checker, shape
inference, an ONNX Runtime session) and rejects breaking edits. Nodes are named by ``node.name``;
an unnamed node can be named by one of its output tensors.
"""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import onnx

from ..errors import EditError, UsageError
from ..model import PROTOBUF_LIMIT, Model

__all__ = [
    "REGISTRY", "OpSpec", "Param", "register_edit", "render_call", "normalize_params", "get_op", "parse_dims",
    "remove_node", "replace_op", "set_attrs", "insert_node", "insert_qdq", "rename",
    "set_input", "set_batch", "extract", "add_outputs", "fold_constants", "cleanup", "toposort",
    "simplify", "replace_pattern",
]

_REQUIRED = object()


@dataclass(frozen=True)
class Param:
    """One parameter of an operation.

    ``kind`` tells the panel which form field to show and how to parse it: ``node``, ``tensor``,
    ``tensors`` (list of names), ``str``, ``int``, ``float``, ``bool``, ``choice``, ``shape`` (list of
    ints / dim names / None), ``json`` (dict or list), ``number_or_list``, ``int_or_str``.
    """

    name: str
    kind: str
    default: Any = _REQUIRED
    help: str = ""
    choices: tuple = ()

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


@dataclass(frozen=True)
class OpSpec:
    """A registered operation: its function, parameters and whether it is meant to keep outputs equal."""

    name: str
    fn: Callable[..., Model]
    params: tuple[Param, ...]
    summary: str
    preserves_outputs: bool

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)


#: name -> OpSpec, in registration order (the panel lists them in this order).
REGISTRY: dict[str, OpSpec] = {}


def register_edit(*params: Param, preserves_outputs: bool = False):
    """Decorator: register ``fn(model, **params) -> Model`` as an edit operation named ``fn.__name__``, with
    its parameter schema (the panel's form, ``History.apply`` validation, generated code). The first line
    of the docstring is its summary. See docs/extending.md."""
    def deco(fn):
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else fn.__name__
        REGISTRY[fn.__name__] = OpSpec(fn.__name__, fn, tuple(params), summary, preserves_outputs)
        return fn
    return deco


_register = register_edit  # the built-in operations below use the short name


# ---------------------------------------------------------------------------------------------- params / code
def _jsonable(value: Any) -> Any:
    """JSON-compatible copy (tuples → lists, numpy scalars → Python); rejects NaN/inf and objects."""
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"parameter value {value!r} is not finite")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    raise UsageError(f"parameter value of type {type(value).__name__} cannot be recorded; use numbers, strings, lists or dicts")


def normalize_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Check ``params`` against the schema of operation ``name``; return a JSON-compatible copy."""
    spec = get_op(name)
    known = {p.name for p in spec.params}
    unknown = sorted(set(params) - known)
    if unknown:
        raise UsageError(f"{name}() has no parameter(s) {unknown}; parameters are {sorted(known)}")
    missing = [p.name for p in spec.params if p.required and p.name not in params]
    if missing:
        raise UsageError(f"{name}() needs parameter(s) {missing}")
    return {k: _jsonable(params[k]) for k in [p.name for p in spec.params] if k in params}


def get_op(name: str) -> OpSpec:
    """The registered operation ``name`` (a clear error listing the others when unknown)."""
    try:
        return REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, REGISTRY, n=3)
        hint = f"did you mean {close}?" if close else f"operations: {', '.join(REGISTRY)}"
        raise UsageError(f"unknown edit operation {name!r}", hint=hint) from None


def render_call(name: str, params: dict[str, Any], var: str = "m") -> str:
    """The exact public call for an operation, e.g. ``wb.edit.remove_node(m, node='n1')``."""
    args = [var] + [f"{k}={v!r}" for k, v in normalize_params(name, params).items()]
    return f"wb.edit.{name}({', '.join(args)})"


# ---------------------------------------------------------------------------------------------- gs helpers
def _gs():
    import onnx_graphsurgeon as gs

    return gs


def _import(model: Model, *, infer: bool = False):
    proto = model.proto_with_data()
    # Sort first (iteratively, outer-scope reads of If/Loop/Scan bodies included): GraphSurgeon imports
    # nodes in order, and a subgraph reading a tensor whose producer comes later gets a second, unconnected
    # tensor of the same name.
    _sort_proto(proto)
    if infer:
        try:
            proto = onnx.shape_inference.infer_shapes(proto, data_prop=True)
        except Exception as e:
            raise EditError(f"shape inference failed before the edit: {' '.join(str(e).split())[:300]}") from None
    return _gs().import_onnx(proto)


def _export(model: Model, graph) -> Model:
    """Export ``graph`` and derive a new Model from ``model``, keeping model-level metadata.

    ``value_info`` is kept only for tensors the source already described: shapes inferred for an
    edit (``_import(infer=True)``) are not written into the result.
    """
    try:
        proto = _gs().export_onnx(graph)
    except Exception as e:
        raise EditError(f"GraphSurgeon could not export the edited graph: {' '.join(str(e).split())[:300]}") from None
    _sort_proto(proto)  # GraphSurgeon's own toposort is recursive and ignores outer-scope reads
    described = {v.name for v in model.proto.graph.value_info}
    kept = [v for v in proto.graph.value_info if v.name in described]
    del proto.graph.value_info[:]
    proto.graph.value_info.extend(kept)
    src = model.proto
    for fld in ("producer_name", "producer_version", "domain", "doc_string"):
        if not getattr(proto, fld) and getattr(src, fld):
            setattr(proto, fld, getattr(src, fld))
    if src.model_version and not proto.model_version:
        proto.model_version = src.model_version
    if not proto.metadata_props:
        proto.metadata_props.extend(src.metadata_props)
    if proto.ir_version < 4:
        # IR < 4 requires every initializer to be listed as a graph input; GraphSurgeon drops them.
        listed = {i.name for i in proto.graph.input}
        for init in proto.graph.initializer:
            if init.name not in listed:
                proto.graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    _check_size(proto)
    return model.derive(proto)


def _check_size(proto: onnx.ModelProto) -> None:
    size = proto.ByteSize()
    if size >= PROTOBUF_LIMIT:
        raise EditError(
            f"the edited model is {size / 2**30:.2f} GiB: over the 2 GB protobuf limit, it cannot be held as one message",
            hint="edit the model in parts, or avoid folding large constants (fold_constants(size_threshold=...))",
        )


def _sort_proto(proto: onnx.ModelProto) -> None:
    from .topo import toposort_model
    toposort_model(proto)


def _find_node(graph, ref: str):
    for n in graph.nodes:
        if n.name == ref:
            return n
    for n in graph.nodes:  # unnamed nodes: accept one of their output tensor names
        if any(t.name == ref for t in n.outputs):
            return n
    close = difflib.get_close_matches(ref, [n.name for n in graph.nodes if n.name], n=3)
    raise EditError(f"no node named {ref!r}" + (f"; did you mean {close}?" if close else ""),
                    hint="name a node by node.name, or an unnamed node by one of its output tensors")


def _tensor(graph, name: str, tensors=None):
    tensors = tensors if tensors is not None else graph.tensors()
    if name not in tensors:
        close = difflib.get_close_matches(name, list(tensors), n=3)
        raise EditError(f"no tensor named {name!r}" + (f"; did you mean {close}?" if close else ""))
    return tensors[name]


def _unique(tensors, base: str) -> str:
    name, i = base, 1
    while name in tensors:
        name, i = f"{base}_{i}", i + 1
    return name


def _dtype(value: str | int) -> int:
    """ONNX element type from a name like 'float16' / 'FLOAT16' or an int."""
    if isinstance(value, int):
        return value
    key = str(value).upper().replace("FP", "FLOAT").replace("FLOAT32", "FLOAT").replace("FLOAT64", "DOUBLE")
    key = {"BF16": "BFLOAT16", "F16": "FLOAT16"}.get(key, key)
    try:
        return onnx.TensorProto.DataType.Value(key)
    except ValueError:
        raise EditError(f"unknown ONNX dtype {value!r}", hint="e.g. float, float16, bfloat16, int8, int64, bool") from None


def _np_dtype(elem: int) -> np.dtype:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem))
    except Exception:
        raise EditError(f"dtype {onnx.TensorProto.DataType.Name(elem)} has no numpy equivalent here",
                        hint="bfloat16/float8 need the ml_dtypes package") from None


def _is_graph_output(graph, t) -> bool:
    return any(o is t for o in graph.outputs)


def _is_graph_input(graph, t) -> bool:
    return any(i is t for i in graph.inputs)


def _replace_uses(t_old, t_new) -> None:
    """Point every consumer of ``t_old`` at ``t_new``."""
    for consumer in list(t_old.outputs):
        for i, inp in enumerate(consumer.inputs):
            if inp is t_old:
                consumer.inputs[i] = t_new


def _clear_inferred_shapes(graph) -> None:
    """Forget shapes of intermediate tensors and outputs (they are re-inferred after a shape change)."""
    gs = _gs()
    inputs = {id(t) for t in graph.inputs}
    for t in graph.tensors().values():
        if isinstance(t, gs.Variable) and id(t) not in inputs:
            t.shape = None


def _reinfer_outputs(model: Model) -> Model:
    """Re-infer output shapes and the ``value_info`` the model already lists, after its inputs changed."""
    proto = model.proto  # derived models hold their data in memory
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except Exception:
        return model  # validation reports the real problem
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    found = {v.name: v for v in list(inferred.graph.output) + list(inferred.graph.value_info)}
    for v in list(out.graph.output) + list(out.graph.value_info):
        if v.name in found and found[v.name].type.tensor_type.HasField("shape"):
            v.type.CopyFrom(found[v.name].type)
    return Model(out, name=model.name, parent_hash=model.parent_hash)


# ---------------------------------------------------------------------------------------------- operations
@_register(
    Param("node", "node", help="node name (or an output tensor of an unnamed node)"),
    Param("mode", "choice", "bypass", "bypass: consumers read the node's input; delete: drop it and its now-unused producers",
          choices=("bypass", "delete")),
)
def remove_node(model: Model, node: str, mode: str = "bypass") -> Model:
    """Remove a node: bypass it (one data input, one used output) or delete it with its dangling producers.

    Bypass keeps the graph connected: consumers of the output read the input instead; when the
    output is a graph output, the input tensor takes over its name so the interface is unchanged.
    Delete leaves the node's consumers without an input: valid only when nothing uses its outputs
    (validation rejects it otherwise). Its producers that become unused are removed by cleanup, and
    graph outputs it produced are dropped from the outputs.
    """
    if mode not in ("bypass", "delete"):
        raise UsageError(f"mode must be 'bypass' or 'delete', not {mode!r}")
    gs = _gs()
    graph = _import(model)
    n = _find_node(graph, node)
    if mode == "delete":
        for t in n.outputs:
            if _is_graph_output(graph, t):
                graph.outputs = [o for o in graph.outputs if o is not t]
        n.outputs.clear()
        n.inputs.clear()
        graph.cleanup()
        return _export(model, graph)
    data_in = [t for t in n.inputs if isinstance(t, gs.Variable)] or [t for t in n.inputs if t.name][:1]
    used_out = [t for t in n.outputs if t.outputs or _is_graph_output(graph, t)]
    if len(data_in) != 1 or len(used_out) > 1:
        raise EditError(
            f"cannot bypass {n.op} node {n.name or node!r}: it has {len(data_in)} data inputs and {len(used_out)} used outputs",
            hint="bypass needs exactly one data input and one used output; use mode='delete' or replace_op",
        )
    src = data_in[0]
    if not used_out:
        n.outputs.clear()
        n.inputs.clear()
        graph.cleanup()
        return _export(model, graph)
    out = used_out[0]
    if _is_graph_output(graph, out):
        if isinstance(src, gs.Constant) or _is_graph_input(graph, src) or _is_graph_output(graph, src):
            raise EditError(f"cannot bypass {n.name or node!r}: its input {src.name!r} is a graph input, output or constant "
                            f"and its output {out.name!r} is a graph output")
        keep = out.name
        out.name = _unique(graph.tensors(), keep + "__bypassed")
        src.name = keep
        if src.dtype is None:  # the output's declared type carries over to the tensor that replaces it
            src.dtype, src.shape = out.dtype, out.shape
        graph.outputs = [src if o is out else o for o in graph.outputs]
    _replace_uses(out, src)
    n.outputs.clear()
    n.inputs.clear()
    graph.cleanup()
    return _export(model, graph)


@_register(
    Param("node", "node", help="node name"),
    Param("op_type", "str", help="new operator type, e.g. Relu"),
    Param("attrs", "json", None, help='attributes of the new op as a dict, e.g. {"alpha": 0.1}'),
    Param("keep_attrs", "bool", False, help="keep the old attributes (then attrs updates them)"),
    Param("domain", "str", None, help="operator domain (default: unchanged)"),
)
def replace_op(model: Model, node: str, op_type: str, attrs: dict | None = None, keep_attrs: bool = False,
               domain: str | None = None) -> Model:
    """Replace a node's operator type (same inputs and outputs), with new attributes."""
    graph = _import(model)
    n = _find_node(graph, node)
    n.op = op_type
    if not keep_attrs:
        n.attrs.clear()
    n.attrs.update(_attr_values(op_type, attrs or {}))
    if domain is not None:
        n.domain = domain or None
    return _export(model, graph)


def _attr_values(op_type: str, attrs: dict) -> dict:
    out = dict(attrs)
    if op_type == "Cast" and "to" in out:
        out["to"] = _dtype(out["to"])
    return out


@_register(
    Param("node", "node", help="node name"),
    Param("attrs", "json", None, help='attributes to set, e.g. {"axis": 1}'),
    Param("remove", "tensors", None, help="attribute names to delete"),
)
def set_attrs(model: Model, node: str, attrs: dict | None = None, remove: list[str] | None = None) -> Model:
    """Set or delete attributes of a node. Floats need a decimal point (1.0): 1 is stored as an int."""
    graph = _import(model)
    n = _find_node(graph, node)
    for k in remove or []:
        if k not in n.attrs:
            raise EditError(f"node {node!r} has no attribute {k!r}; it has {sorted(n.attrs)}")
        del n.attrs[k]
    n.attrs.update(_attr_values(n.op, attrs or {}))
    return _export(model, graph)


def _insert_after(graph, t, make_nodes: Callable[[Any], tuple[list, Any]]):
    """Insert nodes after tensor ``t``: its consumers (and its graph-output role) move to the new tensor."""
    consumers = list(t.outputs)
    nodes, new_out = make_nodes(t)
    for c in consumers:
        for i, inp in enumerate(c.inputs):
            if inp is t:
                c.inputs[i] = new_out
    if _is_graph_output(graph, t):
        if _is_graph_input(graph, t):
            raise EditError(f"tensor {t.name!r} is both a graph input and output: insert elsewhere")
        keep = t.name
        t.name = _unique(graph.tensors(), keep + "_pre")
        new_out.name = keep
        graph.outputs = [new_out if o is t else o for o in graph.outputs]
    graph.nodes.extend(nodes)  # _export sorts the nodes


@_register(
    Param("tensor", "tensor", help="the tensor to insert after; its consumers read the new node's output"),
    Param("op_type", "choice", "Identity", help="unary operator", choices=("Identity", "Cast", "Relu", "Sigmoid", "Tanh", "Abs", "Neg")),
    Param("attrs", "json", None, help='attributes, e.g. {"to": "float16"} for Cast'),
    Param("name", "str", None, help="node name (default: <tensor>_<op>)"),
)
def insert_node(model: Model, tensor: str, op_type: str = "Identity", attrs: dict | None = None,
                name: str | None = None) -> Model:
    """Insert a one-input one-output node (Identity, Cast, ...) on a tensor, before all its consumers."""
    gs = _gs()
    graph = _import(model, infer=True)
    tensors = graph.tensors()
    t = _tensor(graph, tensor, tensors)
    a = _attr_values(op_type, attrs or {})
    if op_type == "Cast" and "to" not in a:
        raise EditError("Cast needs attrs={'to': dtype}, e.g. {'to': 'float16'}")
    node_names = {n.name for n in graph.nodes}
    node_name = name or _unique(node_names, f"{tensor}_{op_type.lower()}")
    if node_name in node_names:
        raise EditError(f"a node named {node_name!r} already exists")

    def make(src):
        dtype = _np_dtype(a["to"]) if op_type == "Cast" else getattr(src, "dtype", None)
        out = gs.Variable(_unique(tensors, f"{tensor}_{op_type.lower()}_out"), dtype=dtype, shape=getattr(src, "shape", None))
        return [gs.Node(op_type, name=node_name, attrs=a, inputs=[src], outputs=[out])], out

    _insert_after(graph, t, make)
    return _export(model, graph)


@_register(
    Param("tensor", "tensor", help="float tensor to quantize-dequantize"),
    Param("scale", "number_or_list", help="scale (one float, or a list for per-channel with axis)"),
    Param("zero_point", "number_or_list", 0, help="zero point (0 for symmetric; TensorRT wants 0)"),
    Param("dtype", "choice", "int8", help="quantized type", choices=("int8", "uint8", "float8e4m3fn")),
    Param("axis", "int", None, help="channel axis for per-channel scales (opset >= 13)"),
)
def insert_qdq(model: Model, tensor: str, scale: float | list[float], zero_point: int | list[int] = 0,
               dtype: str = "int8", axis: int | None = None) -> Model:
    """Insert a QuantizeLinear→DequantizeLinear pair on a tensor (explicit quantization, as TensorRT reads it)."""
    gs = _gs()
    if model.opset < 10 or (axis is not None and model.opset < 13) or (dtype.startswith("float8") and model.opset < 19):
        raise EditError(f"Q/DQ{' per-axis' if axis is not None else ''} with {dtype} needs a higher opset than {model.opset}",
                        hint="int8: opset >= 10 (per-axis >= 13); float8: opset >= 19")
    graph = _import(model, infer=True)
    tensors = graph.tensors()
    t = _tensor(graph, tensor, tensors)
    src_dtype = np.dtype(t.dtype) if getattr(t, "dtype", None) is not None else np.dtype(np.float32)
    if src_dtype.kind != "f":
        raise EditError(f"tensor {tensor!r} is {src_dtype}, not floating point: nothing to quantize")
    scale_arr = np.asarray(scale, dtype=src_dtype if model.opset >= 19 else np.float32)
    if np.any(scale_arr <= 0):
        raise EditError("scale must be positive")
    q_np = _np_dtype(_dtype(dtype))
    zp_arr = np.asarray(zero_point).astype(q_np)
    if scale_arr.ndim > 1 or (scale_arr.ndim == 1 and axis is None):
        raise EditError("a list of scales needs axis= (per-channel); a single scale is per-tensor")
    base = _unique(tensors, f"{tensor}_q")
    sc = gs.Constant(base + "_scale", scale_arr)
    zp = gs.Constant(base + "_zero_point", zp_arr)
    qattrs = {"axis": axis} if axis is not None else {}

    def make(src):
        q_out = gs.Variable(base + "_quantized", dtype=q_np, shape=getattr(src, "shape", None))
        dq_out = gs.Variable(_unique(tensors, f"{tensor}_dq"), dtype=src_dtype, shape=getattr(src, "shape", None))
        q = gs.Node("QuantizeLinear", name=base + "_QuantizeLinear", attrs=dict(qattrs), inputs=[src, sc, zp], outputs=[q_out])
        dq = gs.Node("DequantizeLinear", name=base + "_DequantizeLinear", attrs=dict(qattrs), inputs=[q_out, sc, zp], outputs=[dq_out])
        return [q, dq], dq_out

    _insert_after(graph, t, make)
    return _export(model, graph)


@_register(
    Param("tensors", "json", None, help='{"old": "new"} tensor renames'),
    Param("nodes", "json", None, help='{"old": "new"} node renames'),
)
def rename(model: Model, tensors: dict[str, str] | None = None, nodes: dict[str, str] | None = None) -> Model:
    """Rename tensors and nodes. Renaming a graph input or output changes the model's interface."""
    if not tensors and not nodes:
        raise UsageError("rename needs tensors={'old': 'new'} and/or nodes={'old': 'new'}")
    graph = _import(model)
    all_t = graph.tensors()
    for old, new in (tensors or {}).items():
        t = _tensor(graph, old, all_t)
        if not new:
            raise EditError(f"new name for tensor {old!r} is empty")
        if new in all_t and new != old:
            raise EditError(f"cannot rename tensor {old!r} to {new!r}: that name is taken")
        t.name = new
        all_t = graph.tensors()
    names = {n.name for n in graph.nodes}
    for old, new in (nodes or {}).items():
        n = _find_node(graph, old)
        if not new:
            raise EditError(f"new name for node {old!r} is empty")
        if new in names and new != old:
            raise EditError(f"cannot rename node {old!r} to {new!r}: that name is taken")
        names.discard(n.name)
        n.name = new
        names.add(new)
    return _export(model, graph)


_DIM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_dims(text: str) -> list:
    """``1x3x224x224`` / ``Nx3x224x224`` / ``batch,3,?,?`` → ``[1, 3, 224, 224]`` / ``['N', 3, 224, 224]`` / ...

    Ints are fixed dims, names are dynamic dims, ``?`` is unknown. Use ``,`` as the separator when a
    dim name contains an ``x``.
    """
    parts = text.split(",") if "," in text else text.split("x")
    out: list = []
    for d in (p.strip() for p in parts):
        if d.isdigit():
            out.append(int(d))
        elif d == "?":
            out.append(None)
        elif _DIM_NAME.match(d):
            out.append(d)
        else:
            raise UsageError(f"bad dimension {d!r} in {text!r}: use an int, a dim name, or ?")
    return out


def _dims(shape: list) -> list:
    out = []
    for d in shape:
        if d is None or isinstance(d, str):
            out.append(d)
        elif isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0:
            out.append(int(d))
        else:
            raise EditError(f"bad dimension {d!r}: use a non-negative int, a name (dynamic) or None")
    return out


@_register(
    Param("name", "tensor", help="graph input name"),
    Param("shape", "shape", None, help="new shape: ints, names for dynamic dims, None for unknown"),
    Param("dtype", "str", None, help="new element type, e.g. float16"),
)
def set_input(model: Model, name: str, shape: list | None = None, dtype: str | None = None) -> Model:
    """Change a graph input's shape and/or dtype; output shapes are re-inferred."""
    if shape is None and dtype is None:
        raise UsageError("set_input needs shape= and/or dtype=")
    graph = _import(model)
    t = next((i for i in graph.inputs if i.name == name), None)
    if t is None:
        raise EditError(f"{name!r} is not a graph input; inputs are {[i.name for i in graph.inputs]}")
    if shape is not None:
        t.shape = _dims(shape)
    if dtype is not None:
        t.dtype = _np_dtype(_dtype(dtype))
    _clear_inferred_shapes(graph)
    return _reinfer_outputs(_export(model, graph))


@_register(
    Param("batch", "int_or_str", "N", help="an int fixes dim 0 of every input, a name makes it dynamic"),
    Param("inputs", "tensors", None, help="inputs to change (default: all)"),
)
def set_batch(model: Model, batch: int | str = "N", inputs: list[str] | None = None) -> Model:
    """Make the batch dimension (dim 0) of the inputs dynamic (a name) or fixed (an int)."""
    if not isinstance(batch, (int, str)) or isinstance(batch, bool) or (isinstance(batch, int) and batch < 1) or batch == "":
        raise UsageError(f"batch must be a positive int or a dim name, not {batch!r}")
    graph = _import(model)
    names = [i.name for i in graph.inputs]
    for n in inputs or []:
        if n not in names:
            raise EditError(f"{n!r} is not a graph input; inputs are {names}")
    changed = 0
    for t in graph.inputs:
        if inputs and t.name not in inputs:
            continue
        if t.shape is None or len(t.shape) == 0:
            continue
        t.shape = [batch] + list(t.shape[1:])
        changed += 1
    if not changed:
        raise EditError("no input with a known rank >= 1 to change")
    _clear_inferred_shapes(graph)
    return _reinfer_outputs(_export(model, graph))


@_register(
    Param("inputs", "tensors", help="tensors that become the graph inputs"),
    Param("outputs", "tensors", help="tensors that become the graph outputs"),
)
def extract(model: Model, inputs: list[str], outputs: list[str]) -> Model:
    """Extract the subgraph between the given tensors (they become its inputs and outputs)."""
    gs = _gs()
    if not inputs or not outputs:
        raise UsageError("extract needs at least one input and one output tensor")
    graph = _import(model, infer=True)
    tensors = graph.tensors()
    ins = [_tensor(graph, n, tensors) for n in inputs]
    outs = [_tensor(graph, n, tensors) for n in outputs]
    for t in ins + outs:
        if isinstance(t, gs.Constant):
            raise EditError(f"{t.name!r} is a constant; inputs and outputs of a subgraph must be activations")
        if t.dtype is None:
            raise EditError(f"tensor {t.name!r} has no known dtype (shape inference could not type it)")
    for t in ins:
        t.inputs.clear()  # cut the producer, or the upstream nodes survive cleanup
    graph.inputs = ins
    graph.outputs = outs
    graph.cleanup(remove_unused_graph_inputs=True)
    inset = {id(t) for t in ins}
    missing = sorted({t.name for n in graph.nodes for t in n.inputs
                      if isinstance(t, gs.Variable) and not t.inputs and id(t) not in inset and t.name})
    if missing:
        raise EditError(f"the subgraph also depends on {missing}, which are not among the inputs",
                        hint="add them to inputs")
    return _export(model, graph)


@_register(Param("tensors", "tensors", help="intermediate tensors to add as graph outputs"))
def add_outputs(model: Model, tensors: list[str]) -> Model:
    """Add intermediate tensors as graph outputs (for debugging / layerwise comparison)."""
    gs = _gs()
    if not tensors:
        raise UsageError("add_outputs needs at least one tensor name")
    graph = _import(model, infer=True)
    all_t = graph.tensors()
    for name in tensors:
        t = _tensor(graph, name, all_t)
        if isinstance(t, gs.Constant):
            raise EditError(f"{name!r} is a constant, not an activation")
        if _is_graph_output(graph, t):
            raise EditError(f"{name!r} is already a graph output")
        if t.dtype is None:
            raise EditError(f"tensor {name!r} has no known dtype (shape inference could not type it)")
        graph.outputs.append(t)
    return _export(model, graph)


@_register(
    Param("size_threshold", "int", None, help="do not fold constants larger than this many bytes"),
    preserves_outputs=True,
)
def fold_constants(model: Model, size_threshold: int | None = None) -> Model:
    """Fold constant subgraphs (toposort, GraphSurgeon fold_constants with ONNX Runtime, cleanup)."""
    try:
        import onnxruntime  # noqa: F401  - GraphSurgeon evaluates constant subgraphs with it
    except ImportError:  # pragma: no cover
        raise EditError("fold_constants needs onnxruntime (pip install onnxruntime)") from None
    graph = _import(model)  # sorted on import (subgraph outer-scope reads included)
    try:
        graph.fold_constants(size_threshold=size_threshold)
    except Exception as e:
        raise EditError(f"constant folding failed: {' '.join(str(e).split())[:300]}") from None
    graph.cleanup()
    return _export(model, graph)


@_register(
    Param("remove_unused_graph_inputs", "bool", False, help="also drop graph inputs nothing reads (changes the interface)"),
    preserves_outputs=True,
)
def cleanup(model: Model, remove_unused_graph_inputs: bool = False) -> Model:
    """Remove nodes and tensors that do not contribute to any graph output."""
    graph = _import(model)
    graph.cleanup(remove_unused_graph_inputs=remove_unused_graph_inputs)
    return _export(model, graph)


@_register(preserves_outputs=True)
def toposort(model: Model) -> Model:
    """Sort the nodes topologically (ONNX requires producers before consumers).

    Iterative and O(n log n) (no recursion limit); stable (a sorted graph keeps its order); a node
    holding subgraphs (If/Loop/Scan) comes after the producers of every outer-scope name its subgraphs
    read; subgraphs are sorted too. A cycle raises :class:`~workbench.edit.topo.GraphCycleError`."""
    from .topo import toposort_model
    proto = model.proto_with_data()
    toposort_model(proto)
    _check_size(proto)
    return model.derive(proto)


@_register(
    Param("tool", "choice", "onnxslim", help="simplifier", choices=("onnxslim", "onnxsim")),
    preserves_outputs=True,
)
def simplify(model: Model, tool: str = "onnxslim") -> Model:
    """Simplify the graph with onnxslim or onnxsim (optional packages)."""
    proto = model.proto_with_data()
    if tool == "onnxslim":
        try:
            import onnxslim
        except ImportError:
            raise EditError("simplify(tool='onnxslim') needs onnxslim (pip install onnxslim)") from None
        try:
            out = onnxslim.slim(proto)
        except Exception as e:
            raise EditError(f"onnxslim failed: {' '.join(str(e).split())[:300]}") from None
    elif tool == "onnxsim":
        try:
            from onnxsim import simplify as _onnxsim
        except ImportError:
            raise EditError("simplify(tool='onnxsim') needs onnxsim (pip install onnxsim)") from None
        try:
            out, ok = _onnxsim(proto)
        except Exception as e:
            raise EditError(f"onnxsim failed: {' '.join(str(e).split())[:300]}") from None
        if not ok:
            raise EditError("onnxsim could not verify the simplified model")
    else:
        raise UsageError(f"tool must be 'onnxslim' or 'onnxsim', not {tool!r}")
    if out is None:
        raise EditError(f"{tool} returned no model")
    return model.derive(out)


# ---------------------------------------------------------------------------------------------- patterns
def _const_value(t) -> np.ndarray | None:
    gs = _gs()
    if isinstance(t, gs.Constant):
        return np.asarray(t.values)
    if len(t.inputs) == 1 and t.inputs[0].op == "Constant" and "value" in t.inputs[0].attrs:
        v = t.inputs[0].attrs["value"]
        return np.asarray(v.values if hasattr(v, "values") else v)
    return None


def _only_consumer(graph, t):
    if len(t.outputs) != 1 or _is_graph_output(graph, t):
        return None
    return t.outputs[0]


def _split_const(node):
    """(variable input, constant value) of a two-input node with exactly one constant input."""
    if len(node.inputs) != 2:
        return None, None
    a, b = node.inputs
    va, vb = _const_value(a), _const_value(b)
    if va is None and vb is not None:
        return a, vb
    if vb is None and va is not None:
        return b, va
    return None, None


def _fuse_min_max(graph, opset: int) -> int:
    gs = _gs()
    count = 0
    for first in list(graph.nodes):
        if first.op not in ("Min", "Max") or not first.outputs:
            continue
        x, c1 = _split_const(first)
        if x is None or c1.size != 1:
            continue
        second = _only_consumer(graph, first.outputs[0])
        if second is None or second.op != ("Max" if first.op == "Min" else "Min"):
            continue
        y, c2 = _split_const(second)
        if y is not first.outputs[0] or c2.size != 1:
            continue
        lo, hi = (c1, c2) if first.op == "Max" else (c2, c1)
        if float(lo.reshape(())) > float(hi.reshape(())):
            continue  # Min/Max then give a constant; Clip would not
        xshape = getattr(x, "shape", None)
        if max(c1.ndim, c2.ndim) > 0 and (xshape is None or len(xshape) < max(c1.ndim, c2.ndim)):
            continue  # the constant's rank would broadcast the result to a higher rank
        out = second.outputs[0]
        name = second.name or first.name
        if opset >= 11:
            dt = lo.dtype
            lo_c = gs.Constant(f"{out.name}_clip_min", np.asarray(lo.reshape(()), dtype=dt))
            hi_c = gs.Constant(f"{out.name}_clip_max", np.asarray(hi.reshape(()), dtype=dt))
            clip = gs.Node("Clip", name=name, inputs=[x, lo_c, hi_c], outputs=[out])
        else:
            clip = gs.Node("Clip", name=name, attrs={"min": float(lo.reshape(())), "max": float(hi.reshape(()))},
                           inputs=[x], outputs=[out])
        second.outputs.clear()
        first.inputs.clear()
        second.inputs.clear()
        graph.nodes.append(clip)
        count += 1
    return count


def _reduce_axes(node) -> list[int] | None:
    if node.attrs.get("keepdims", 1) != 1:
        return None
    if "axes" in node.attrs:
        return [int(a) for a in node.attrs["axes"]]
    if len(node.inputs) > 1:
        v = _const_value(node.inputs[1])
        return None if v is None else [int(a) for a in v.reshape(-1)]
    return None


def _fuse_layernorm(graph) -> int:
    gs = _gs()
    count = 0

    def single(t, op):
        c = _only_consumer(graph, t)
        return c if c is not None and c.op == op else None

    for mean1 in list(graph.nodes):
        if mean1.op != "ReduceMean" or not mean1.outputs or not mean1.inputs:
            continue
        x = mean1.inputs[0]
        rank = len(x.shape) if getattr(x, "shape", None) is not None else None
        axes = _reduce_axes(mean1)
        if axes is None or rank is None:
            continue
        axes = sorted(a % rank for a in axes)
        if axes != list(range(rank - len(axes), rank)):
            continue  # LayerNormalization normalizes the trailing axes only
        sub = single(mean1.outputs[0], "Sub")
        if sub is None or sub.inputs[0] is not x or sub.inputs[1] is not mean1.outputs[0]:
            continue
        d = sub.outputs[0]
        if _is_graph_output(graph, d) or len(d.outputs) != 2:
            continue
        pow_ = next((c for c in d.outputs if c.op == "Pow"), None)
        div = next((c for c in d.outputs if c.op == "Div"), None)
        if pow_ is None or div is None or pow_.inputs[0] is not d or div.inputs[0] is not d:
            continue
        exp = _const_value(pow_.inputs[1])
        if exp is None or exp.size != 1 or float(exp.reshape(())) != 2.0:
            continue
        mean2 = single(pow_.outputs[0], "ReduceMean")
        if mean2 is None or _reduce_axes(mean2) is None or sorted(a % rank for a in _reduce_axes(mean2)) != axes:
            continue
        add_eps = single(mean2.outputs[0], "Add")
        if add_eps is None:
            continue
        v, eps = _split_const(add_eps)
        if v is not mean2.outputs[0] or eps.size != 1:
            continue
        sqrt = single(add_eps.outputs[0], "Sqrt")
        if sqrt is None or single(sqrt.outputs[0], "Div") is not div or div.inputs[1] is not sqrt.outputs[0]:
            continue
        mul = single(div.outputs[0], "Mul")
        if mul is None:
            continue
        v, gamma = _split_const(mul)
        if v is not div.outputs[0]:
            continue
        add = single(mul.outputs[0], "Add")
        if add is None:
            continue
        v, beta = _split_const(add)
        if v is not mul.outputs[0]:
            continue
        norm_shape = tuple(x.shape[a] for a in axes)
        if not all(isinstance(s, int) for s in norm_shape):
            continue
        try:
            g = np.broadcast_to(gamma, norm_shape).astype(gamma.dtype).copy()
            b = np.broadcast_to(beta, norm_shape).astype(beta.dtype).copy()
        except ValueError:
            continue
        if gamma.ndim > len(norm_shape) or beta.ndim > len(norm_shape):
            continue
        out = add.outputs[0]
        name = mean1.name or f"{out.name}_LayerNormalization"
        ln = gs.Node("LayerNormalization", name=name,
                     attrs={"axis": axes[0] - rank, "epsilon": float(eps.reshape(()))},
                     inputs=[x, gs.Constant(f"{name}_scale", g), gs.Constant(f"{name}_bias", b)], outputs=[out])
        add.outputs.clear()
        mean1.inputs.clear()
        sub.inputs.clear()
        graph.nodes.append(ln)
        count += 1
    return count


PATTERNS = ("min_max_to_clip", "layernorm")


@_register(
    Param("pattern", "choice", help="min_max_to_clip: Min+Max with scalar constants → Clip; "
          "layernorm: ReduceMean,Sub,Pow,ReduceMean,Add,Sqrt,Div,Mul,Add → LayerNormalization (opset >= 17)",
          choices=PATTERNS),
    preserves_outputs=True,
)
def replace_pattern(model: Model, pattern: str) -> Model:
    """Replace every match of a known subgraph pattern by one fused op (Min+Max → Clip, LayerNorm)."""
    if pattern not in PATTERNS:
        raise UsageError(f"unknown pattern {pattern!r}; patterns: {', '.join(PATTERNS)}")
    if pattern == "layernorm" and model.opset < 17:
        raise EditError(f"LayerNormalization needs opset >= 17; this model has opset {model.opset}",
                        hint="convert the model to a newer opset first (onnx.version_converter)")
    graph = _import(model, infer=True)
    count = _fuse_min_max(graph, model.opset) if pattern == "min_max_to_clip" else _fuse_layernorm(graph)
    if not count:
        raise EditError(f"pattern {pattern!r} not found in the model")
    graph.cleanup()
    return _export(model, graph)  # sorts
