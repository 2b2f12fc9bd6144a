"""Shared pieces of the precision recipes: the recipe interface, keep-list validation, graph checks.

A recipe turns a :class:`~workbench.model.Model` into a :class:`~workbench.variant.Variant` whose
precision lives in the ONNX graph (casts, Q/DQ). Recipes never touch the source model: they work on
``model.proto_with_data()`` (a deep copy) and return ``model.derive(...)``.
"""
from __future__ import annotations

import difflib
import importlib.metadata
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import onnx

from ..errors import UnsupportedError, UsageError, WorkbenchError
from ..model import Model
from ..variant import Variant


class Recipe:
    """One precision recipe, and the one registry entry holding every fact about that precision.

    Subclasses set ``precision``, ``tool`` and ``summary`` and implement ``apply``. The facts below are
    read by every list, check and table of the workbench (CLI choices, backend support, calibration
    checks, plot colours, roofline, per-layer dtype names); set them on the class or pass them to
    :func:`register_precision`.
    """

    precision: str = ""
    tool: str = ""
    summary: str = ""
    #: "none" (graph unchanged), "cast" (float casts, op types can be kept in fp32), "qdq" (Q/DQ nodes)
    kind: str = "none"
    #: the recipe needs calibration data (int8/fp8 Q/DQ scales)
    needs_calibration: bool = False
    #: the colour of this precision in every figure
    color: str = "#7F7F7F"
    #: the matrix roof a variant is measured against (``measure.roofline.measure_matmul_tflops`` dtype)
    roofline_dtype: str = "float32"
    #: other spellings of this precision in engine / profiler output (TensorRT "Half", "Float8E4M3")
    aliases: tuple = ()
    #: lowest CUDA compute capability with tensor-core support for this precision (None: any)
    min_compute_capability: float | None = None
    #: below ``min_compute_capability`` the precision still builds but runs as fp32 (TF32) instead of failing
    runs_as_fp32_below_min: bool = False
    #: backend name -> why that backend cannot build/run this precision
    unsupported_on: Mapping[str, str] = {}
    #: backend name -> "supported, but ..." note
    notes_on: Mapping[str, str] = {}

    def default_keep(self) -> list[str]:
        """Op types kept in high precision by default (empty when the recipe keeps none)."""
        return []

    def describe(self) -> dict[str, Any]:
        return {"precision": self.precision, "tool": self.tool, "what": self.summary,
                "default_keep_op_types": self.default_keep()}

    def apply(self, model: Model, req: "Request") -> Variant:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<workbench recipe {self.precision} via {self.tool}>"


# ----------------------------------------------------------------------------------------- registry
#: precision name -> its recipe (the registry; ``workbench.precision`` registers the built-in six).
REGISTRY: dict[str, Recipe] = {}

#: the facts :func:`register_precision` accepts as keywords
FACTS = ("kind", "needs_calibration", "color", "roofline_dtype", "aliases", "min_compute_capability",
         "runs_as_fp32_below_min", "unsupported_on", "notes_on", "summary")


def register_precision(recipe: Recipe, **facts: Any) -> Recipe:
    """Add (or replace) the precision ``recipe.precision``; ``facts`` override the recipe's class facts.

    Everything that lists or checks precisions reads this registry: ``make_variant``, ``build_variants``,
    the CLI, backends' ``supports``, plots' colours, the roofline and per-layer dtype names."""
    unknown = sorted(set(facts) - set(FACTS))
    if unknown:
        raise UsageError(f"unknown precision fact(s) {unknown}; known: {', '.join(FACTS)}")
    name = str(recipe.precision or "").strip().lower()
    if not name or "," in name or name != recipe.precision:
        raise UsageError(f"a precision needs a lower-case name without commas, got {recipe.precision!r}")
    for k, v in facts.items():
        setattr(recipe, k, dict(v) if k in ("unsupported_on", "notes_on") else v)
    if recipe.kind not in ("none", "cast", "qdq"):
        raise UsageError(f"precision {name}: kind must be none, cast or qdq, not {recipe.kind!r}")
    REGISTRY[name] = recipe
    return recipe


def unregister_precision(name: str) -> None:
    """Remove a registered precision (tests and examples that register their own)."""
    REGISTRY.pop(name, None)


def precision_names() -> tuple[str, ...]:
    """Registered precisions in registration order (fp32, tf32, fp16, bf16, int8, fp8, then any added)."""
    return tuple(REGISTRY)


def get_recipe(precision: str, *, missing_ok: bool = False) -> Recipe | None:
    """The registry entry of ``precision``; unknown: ``UsageError`` (or None with ``missing_ok``)."""
    r = REGISTRY.get(str(precision).strip().lower()) if isinstance(precision, str) else None
    if r is None and not missing_ok:
        raise UsageError(f"unknown precision {precision!r}; choose from {', '.join(REGISTRY)}")
    return r


def parse_precisions(value: str | Iterable[str]) -> list[str]:
    """The one precision-list parser: ``"fp32, FP16"`` or ``["fp32", "fp16"]`` -> ``["fp32", "fp16"]``
    (lower-cased, blanks dropped, duplicates removed in order); unknown names or an empty list raise
    ``UsageError`` naming the registered choices."""
    if isinstance(value, str):
        raw = value.split(",")
    else:
        try:
            raw = list(value)
        except TypeError:
            raise UsageError(f"precisions must be a comma-separated string or a list, got {value!r}") from None
    items = [str(p).strip().lower() for p in raw]
    items = [p for p in items if p]
    bad = [p for p in items if p not in REGISTRY]
    if bad or not items:
        raise UsageError(f"unknown precision(s) {bad or value!r}; choose from {', '.join(REGISTRY)}")
    return list(dict.fromkeys(items))


def keeps_graph(precision: str) -> bool:
    """True when ``precision``'s recipe leaves the graph as it is (fp32, tf32: ``kind == "none"``), so there is
    nothing lowered to compare layer by layer or to mix."""
    r = get_recipe(precision, missing_ok=True)
    return r is not None and r.kind == "none"


def calibrated(precisions: Iterable[str]) -> list[str]:
    """The ones among ``precisions`` (names) whose recipe needs calibration data."""
    return [p for p in precisions if isinstance(p, str) and (r := get_recipe(p, missing_ok=True)) is not None
            and r.needs_calibration]


@dataclass
class Request:
    """The validated arguments of one ``make_variant`` call."""

    calib: Any = None
    keep_nodes: tuple[str, ...] = ()
    keep_op_types: tuple[str, ...] = ()
    keep_io_types: bool = True
    calibration_method: str = "minmax"
    num_calib: int | None = None
    tool: str = "auto"
    progress: bool = True
    opts: dict = field(default_factory=dict)

    @property
    def mixed(self) -> bool:
        return bool(self.keep_nodes or self.keep_op_types)


def version_of(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def variant_name(model: Model, precision: str, mixed: bool) -> str:
    return f"{model.name}-{precision}" + ("-mixed" if mixed else "")


def name_unnamed_nodes(proto: onnx.ModelProto) -> list[str]:
    """Give every unnamed node in the main graph a unique name ``<op_type>_<index>`` (in place).

    The fp16 converter derives Cast tensor names from node names; two unnamed blocked nodes would
    produce the same tensor name and break the graph. Returns the names given.
    """
    used = {n.name for n in proto.graph.node if n.name}
    given = []
    for i, n in enumerate(proto.graph.node):
        if n.name:
            continue
        name = f"{n.op_type}_{i}"
        while name in used:
            name += "_"
        n.name = name
        used.add(name)
        given.append(name)
    return given


def drop_initializer_inputs(proto: onnx.ModelProto) -> int:
    """Remove initializers from ``graph.input`` (IR < 4 style, in place); returns how many.

    Tools that optimize the graph (ONNX Runtime's quantizer) may drop or merge such initializers and
    leave the input behind as a required feed. IR >= 4 allows initializers without inputs.
    """
    inits = {i.name for i in proto.graph.initializer}
    keep = [i for i in proto.graph.input if i.name not in inits]
    dropped = len(proto.graph.input) - len(keep)
    if dropped:
        del proto.graph.input[:]
        proto.graph.input.extend(keep)
        proto.ir_version = max(proto.ir_version, 4)
    return dropped


def short(e: BaseException, limit: int = 300) -> str:
    """``Type: last line of the message``, at most ``limit`` characters."""
    lines = str(e).strip().splitlines()
    text = f"{type(e).__name__}: {lines[-1] if lines else ''}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def upgrade_opset(proto: onnx.ModelProto, target: int) -> tuple[onnx.ModelProto, dict | None]:
    """Convert to opset ``target`` when below it. Per-channel Q/DQ needs the ``axis`` attribute of opset 13,
    float8 Q/DQ opset 19, bfloat16 Conv/pooling opset 22. Returns (model, record or None)."""
    current = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    if current >= target:
        return proto, None
    from onnx import version_converter
    try:
        out = version_converter.convert_version(proto, target)
    except Exception as e:
        raise UnsupportedError(f"the model uses opset {current}; this recipe needs opset >= {target}, and "
                               f"onnx.version_converter failed: {short(e)}",
                               hint=f"convert the model to opset {target} or newer first") from None
    return out, {"from": current, "to": target}


def check_keep_nodes(proto: onnx.ModelProto, keep_nodes: Sequence[str]) -> None:
    """Unknown node names in ``keep_nodes`` → UsageError listing close matches."""
    names = [n.name for n in proto.graph.node if n.name]
    known = set(names)
    for k in keep_nodes:
        if k not in known:
            close = difflib.get_close_matches(k, names, n=5, cutoff=0.5)
            hint = f"close matches: {close}" if close else f"the graph has {len(names)} named nodes, e.g. {names[:5]}"
            raise UsageError(f"keep_nodes names {k!r}, which is not a node of the model", hint=hint)


def check_keep_op_types(keep_op_types: Iterable[str], proto: onnx.ModelProto | None = None) -> list[str]:
    """Op type names, checked: a name that is neither in the model nor an ONNX op (a typo such as
    ``conv``) → UsageError with close matches, instead of silently keeping nothing."""
    out = []
    for t in keep_op_types:
        if not isinstance(t, str) or not t:
            raise UsageError(f"keep_op_types must be ONNX op type names like 'Softmax', got {t!r}")
        out.append(t)
    if proto is not None:
        present = sorted({n.op_type for n in proto.graph.node})
        for t in out:
            if t not in present and not onnx.defs.has(t):
                close = difflib.get_close_matches(t, present, n=5, cutoff=0.5) or difflib.get_close_matches(
                    t, sorted({x.name for x in onnx.defs.get_all_schemas()}), n=5, cutoff=0.6)
                raise UsageError(f"keep_op_types names {t!r}, which is not an ONNX op type nor an op of the model",
                                 hint=f"close matches: {close}" if close else f"the model's op types: {present}")
    return out


def full_check(proto: onnx.ModelProto, what: str) -> None:
    """onnx.checker with full_check (strict shape/type inference); WorkbenchError on failure."""
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:
        raise WorkbenchError(f"the {what} graph fails onnx.checker (full check): {short(e)}",
                             hint="this is a recipe bug; please report it with the model") from None


def ort_session_check(proto: onnx.ModelProto, what: str) -> None:
    """Create an ONNX Runtime CPU session (graph load + type checks + kernel lookup)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    try:
        ort.InferenceSession(proto.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise WorkbenchError(f"ONNX Runtime cannot load the {what} graph: {short(e)}",
                             hint="this is a recipe bug; please report it with the model") from None


def base_recipe(tool: str, req: Request, **extra) -> dict:
    """The JSON-able recipe record common to every precision."""
    rec = {"tool": tool, "tool_version": version_of(tool) if tool not in ("none",) else "",
           "keep_nodes": list(req.keep_nodes), "keep_op_types": list(req.keep_op_types),
           "keep_io_types": bool(req.keep_io_types), "options": {k: _jsonable(v) for k, v in req.opts.items()}}
    rec.update(extra)
    return rec


def _jsonable(v):
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple, set)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return repr(v)
