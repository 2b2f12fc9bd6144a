"""Validated edit history: versions, undo/redo, diffs, JSON, and replay as a Python script.

    import workbench as wb
    from workbench.edit import History
    h = History("model.onnx")
    h.apply("fold_constants")
    h.apply("remove_node", node="dropout_1")       # rejected with the reason if it breaks the model
    h.undo(); h.redo()
    h.versions                                     # DataFrame: index, op, params, valid, nodes, hash, ...
    h.diff(0, -1)                                  # DataFrame of what changed
    print(h.to_script())                           # "show code": a runnable script replaying the edits
    h.save("model.edited.onnx")                    # atomic; never the source file

Every edit is validated (:func:`workbench.edit.validate.validate`); the loaded model (version 0) is
checked on demand (:meth:`History.check`) and when an edit fails, to say whether it was valid before. A failing edit raises
:class:`~workbench.errors.EditError` and the current version stays; with ``force=True`` it is kept and
marked invalid. Version 0 is the loaded model object itself, so undoing to the start gives the
original model, byte for byte.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..errors import EditError, UsageError, WorkbenchError
from ..model import Model, ModelSource, load
from . import ops
from .diff import diff_models
from .validate import Validation, validate

if TYPE_CHECKING:
    import pandas as pd

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Version:
    """One model in the history: the operation and JSON parameters that made it from the previous one."""

    index: int
    op: str  # "load" for version 0
    params: dict[str, Any]
    model: Model
    validation: Validation | None
    forced: bool = False

    @property
    def valid(self) -> bool | None:
        """True / False once validated; None when not checked (version 0 until :meth:`History.check`)."""
        return None if self.validation is None else self.validation.ok

    @property
    def code(self) -> str:
        """The public call that made this version (``m = wb.load(...)`` for version 0)."""
        if self.op == "load":
            src = self.model.source
            return f"m = wb.load({str(src)!r})" if src else "m = wb.load(MODEL)"
        return "m = " + ops.render_call(self.op, self.params)

    def to_json(self) -> dict:
        return {"index": self.index, "op": self.op, "params": self.params, "valid": self.valid,
                "forced": self.forced, "reasons": list(self.validation.reasons) if self.validation is not None else [],
                "hash": self.model.hash, "nodes": len(self.model.graph.node)}


class History:
    """Versions of a model under edit, with undo/redo. ``validate=False`` skips validation entirely."""

    def __init__(self, model: ModelSource, *, validate: bool = True, ort: bool = True):
        self._validate = validate
        self._ort = ort
        m = load(model)
        self._versions: list[Version] = [Version(0, "load", {}, m, None)]  # checked on demand: check(0)
        self._pos = 0

    # ------------------------------------------------------------------ state
    def _check(self, m: Model) -> Validation | None:
        return validate(m, ort=self._ort) if self._validate else None

    def check(self, index: int | None = None) -> Validation:
        """Validate version ``index`` (default: current) if it was not yet, and return the result."""
        v = self[self._pos if index is None else index]
        if v.validation is None:
            v = replace(v, validation=validate(v.model, ort=self._ort))
            self._versions[v.index] = v
        return v.validation

    @property
    def source(self) -> Model:
        """The model the history started from (version 0)."""
        return self._versions[0].model

    @property
    def current(self) -> Version:
        return self._versions[self._pos]

    @property
    def model(self) -> Model:
        """The current version's model."""
        return self.current.model

    def __getitem__(self, i: int) -> Version:
        try:
            return self._versions[i]
        except IndexError:
            raise UsageError(f"no version {i}; versions are 0..{len(self._versions) - 1}") from None

    def __len__(self) -> int:
        return len(self._versions)

    @property
    def can_undo(self) -> bool:
        return self._pos > 0

    @property
    def can_redo(self) -> bool:
        return self._pos < len(self._versions) - 1

    # ------------------------------------------------------------------ edits
    def apply(self, op: str | Callable[..., Model], /, *, force: bool = False, **params: Any) -> Version:
        """Run a registered operation on the current model; validate; make the result current.

        ``op`` is an operation name (``"fold_constants"``) or its function (``wb.edit.fold_constants``).
        Versions after the current one (undone edits) are discarded. Raises :class:`EditError` with
        the reason when the result fails validation, unless ``force=True``: then it is kept, marked invalid.
        """
        name = op if isinstance(op, str) else getattr(op, "__name__", "")
        spec = ops.get_op(name)
        if not isinstance(op, str) and op is not spec.fn:
            raise UsageError(f"{op!r} is not a registered edit operation; use one of {', '.join(ops.REGISTRY)}")
        clean = ops.normalize_params(name, params)
        try:
            new = spec.fn(self.model, **clean)
        except WorkbenchError:
            raise
        except Exception as e:  # GraphSurgeon / onnx internals on an unexpected graph
            raise EditError(f"{name} failed: {type(e).__name__}: {' '.join(str(e).split())[:300]}") from e
        check = self._check(new)
        if check is not None and not check.ok and not force:
            before = self.check()
            hint = ("fix the parameters, or apply(..., force=True) to keep it marked invalid" if before.ok else
                    f"the model was already invalid before this edit ({before.reason}); use force=True, "
                    f"or History(..., ort=False) for custom ops ONNX Runtime does not know")
            raise EditError(f"{name} was rejected, the model stays at version {self.current.index}: {check.reason}",
                            hint=hint)
        del self._versions[self._pos + 1:]
        v = Version(len(self._versions), name, clean, new, check, forced=bool(force and check is not None and not check.ok))
        self._versions.append(v)
        self._pos = v.index
        return v

    def undo(self) -> Version:
        """Step back one version (the undone ones stay available to :meth:`redo` until the next apply)."""
        if not self.can_undo:
            raise EditError("nothing to undo: already at the loaded model (version 0)")
        self._pos -= 1
        return self.current

    def redo(self) -> Version:
        if not self.can_redo:
            raise EditError("nothing to redo")
        self._pos += 1
        return self.current

    def goto(self, index: int) -> Version:
        """Make version ``index`` current (like several undos or redos)."""
        self[index]
        self._pos = index if index >= 0 else len(self._versions) + index
        return self.current

    # ------------------------------------------------------------------ views
    @property
    def versions(self) -> pd.DataFrame:
        """One row per version: index, op, params (JSON), valid, forced, node_count, hash, current,
        reasons."""
        rows = []
        for v in self._versions:
            rows.append({"index": v.index, "op": v.op, "params": json.dumps(v.params, sort_keys=True),
                         "valid": v.valid, "forced": v.forced, "node_count": len(v.model.graph.node),
                         "hash": v.model.short_hash, "current": v.index == self._pos,
                         "reasons": "; ".join(v.validation.reasons) if v.validation is not None else ""})
        import pandas as pd  # loaded on first use (`import workbench` does without it)

        return pd.DataFrame(rows, columns=["index", "op", "params", "valid", "forced", "node_count", "hash", "current", "reasons"])

    def diff(self, a: int | None = None, b: int | None = None) -> pd.DataFrame:
        """What changed from version ``a`` to ``b`` (default: the previous version to the current one)."""
        b = self._pos if b is None else b
        a = (self[b].index - 1 if self[b].index > 0 else 0) if a is None else a
        return diff_models(self[a].model, self[b].model)

    def show_diff(self, view, a: int | None = None, b: int | None = None):
        """Show the diff of two versions in a graph view's diff mode: ``view.diff(model_a, model_b)``."""
        b = self._pos if b is None else b
        a = (self[b].index - 1 if self[b].index > 0 else 0) if a is None else a
        return view.diff(self[a].model, self[b].model)

    def _branch(self) -> list[Version]:
        return self._versions[1:self._pos + 1]

    def to_script(self, source: str | os.PathLike | None = None) -> str:
        """A runnable Python script that loads the source model and replays the edits up to the current one.

        ``source`` overrides the path loaded (default: the file the history started from). The script
        prints the final content hash, which equals ``History.model.hash``.
        """
        src = source if source is not None else self.source.source
        lines = [
            '"""Replay of a trt-workbench edit history (generated by History.to_script)."""',
            "import workbench as wb",
            "import workbench.edit  # noqa: F401  (makes wb.edit available)",
            "",
            f"m = wb.load({str(src)!r})" if src is not None else "m = wb.load(MODEL)  # set MODEL: the source was not a file",
            f"if m.hash != {self.source.hash!r}:",
            "    raise SystemExit('the source model differs from the one the edits were recorded on')",
        ]
        for v in self._branch():
            if v.forced:
                lines.append(f"# forced although invalid: {v.validation.reason if v.validation is not None else ''}")
            lines.append(v.code)
        lines += [
            "",
            f"print(m.hash)  # expected: {self.model.hash}",
            "# m.save('edited.onnx')",
            "",
        ]
        return "\n".join(lines)

    def to_json(self) -> dict:
        """The history as JSON: source path and hash, current index, and every version's op/params/validity."""
        src = self.source.source
        return {"schema_version": SCHEMA_VERSION, "kind": "edit_history",
                "source": str(src) if src else None, "source_hash": self.source.hash,
                "current": self._pos, "versions": [v.to_json() for v in self._versions]}

    def save(self, path: str | os.PathLike, *, external_data: bool | None = None) -> Path:
        """Write the current model to ``path`` atomically. Refuses the source file and its external data."""
        path = Path(path)
        src = self.source.source
        if src is not None and path.resolve() == src.resolve():
            raise EditError(f"refusing to overwrite the source model {src}", hint="save the edited model under a new name")
        self.source.check_output_path(path, what="the edited model")
        self.source.check_output_path(path.parent / (path.name + ".data"), what="the edited model's external data")
        return self.model.save(path, external_data=external_data)

    def __repr__(self) -> str:
        return f"<workbench.edit.History {self.source.name!r} versions={len(self)} current={self._pos}>"
