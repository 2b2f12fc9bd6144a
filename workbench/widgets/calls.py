"""Call specs: one description of a public call gives both the call the widget makes and the code it shows.

    from workbench.widgets.calls import Call, Ref, Snippet
    snip = Snippet([Call("wb.load", ("model.onnx",), target="m"),
                    Call("wb.inspect", (Ref("m"),), target="ins")], show="ins")
    print(snip.text())          # import workbench as wb / m = wb.load('model.onnx') / ins = wb.inspect(m) / ins
    ns = snip.run()             # runs the same calls; ns["ins"] is the Inspection

A widget builds the :class:`Snippet` of what a button does, shows :meth:`Snippet.text`, and runs
:meth:`Snippet.run` (usually only its last call, with the earlier names such as ``m`` or ``fr`` bound to
the live objects it already holds). So the shown code is the call made, never a separate template:
pasted into a fresh notebook cell it runs (tests/test_dashboard.py executes every snippet the dashboard
shows in a fresh namespace). ``hidden`` keyword arguments (a cancel event, a progress flag) are passed
to the call but not shown: they only make sense inside the widget.
"""
from __future__ import annotations

import html
import os
import traceback
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Mapping

from ..errors import UsageError, WorkbenchError

HEADER = "import workbench as wb"


class Ref(str):
    """Code shown as-is and evaluated in the snippet's namespace: a name bound earlier (``m``, ``fr``,
    ``h``) or an expression over such names (``fr.layers[fr.layers.variant == 'x']``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


def _literal(v: Any) -> str:
    if isinstance(v, Ref):
        return str(v)
    if isinstance(v, PurePath):
        return repr(str(v))
    if isinstance(v, (list, tuple)):
        inner = ", ".join(_literal(x) for x in v)
        return f"[{inner}]" if isinstance(v, list) else f"({inner}{',' if len(v) == 1 else ''})"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(x)}" for k, x in v.items()) + "}"
    if v is None or isinstance(v, (bool, int, float, str)):
        return repr(v)
    raise UsageError(f"a shown call can only hold literals and names, not {type(v).__name__}",
                     hint="pass a path or a plain value")


def _resolve(v: Any, ns: Mapping[str, Any]) -> Any:
    if isinstance(v, Ref):
        if str(v).isidentifier():
            if str(v) not in ns:
                raise UsageError(f"the snippet uses {v!s} before defining it")
            return ns[str(v)]
        return eval(str(v), dict(ns))  # noqa: S307 - an expression the widget generated itself
    if isinstance(v, PurePath):
        return os.fspath(v)
    if isinstance(v, list):
        return [_resolve(x, ns) for x in v]
    if isinstance(v, tuple):
        return tuple(_resolve(x, ns) for x in v)
    if isinstance(v, dict):
        return {k: _resolve(x, ns) for k, x in v.items()}
    return v


@dataclass
class Call:
    """``target = func(*args, **kwargs)``; ``func`` is a dotted name starting at a bound name
    (``wb.build_stage``, ``fr.save``, ``h.apply``). ``hidden``: keyword arguments passed but not shown."""

    func: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    target: str | None = None
    hidden: dict = field(default_factory=dict, repr=False)

    def text(self) -> str:
        parts = [_literal(a) for a in self.args] + [f"{k}={_literal(v)}" for k, v in self.kwargs.items()]
        call = f"{self.func}({', '.join(parts)})"
        return f"{self.target} = {call}" if self.target else call

    def run(self, ns: dict) -> Any:
        head, *rest = self.func.split(".")
        if head not in ns:
            raise UsageError(f"the snippet calls {self.func} before defining {head}")
        fn = ns[head]
        for part in rest:
            fn = getattr(fn, part)
        out = fn(*_resolve(self.args, ns), **_resolve(self.kwargs, ns), **self.hidden)
        if self.target:
            ns[self.target] = out
        return out


@dataclass
class Snippet:
    """Lines of code: :class:`Call` s (runnable) and plain ``str`` lines (code replayed by the library
    itself, e.g. an edit history's ``m = wb.edit.set_batch(m, batch=1)``), then an optional ``show``
    expression (the value a notebook cell displays)."""

    lines: list = field(default_factory=list)
    show: str | None = None

    def text(self) -> str:
        body = [HEADER]
        for ln in self.lines:
            body.append(ln.text() if isinstance(ln, Call) else str(ln))
        if self.show:
            body.append(self.show)
        return "\n".join(body)

    @property
    def calls(self) -> list[Call]:
        return [ln for ln in self.lines if isinstance(ln, Call)]

    def last(self) -> Call:
        calls = self.calls
        if not calls:
            raise UsageError("the snippet holds no call")
        return calls[-1]

    def run_last(self, ns: dict) -> Any:
        """Run only the last call, with the earlier names already bound in ``ns`` (what a widget does:
        ``m`` / ``fr`` / ``h`` are the live objects it holds)."""
        import workbench

        ns.setdefault("wb", workbench)
        return self.last().run(ns)

    def run_tail(self, ns: dict, count: int = 1) -> Any:
        """Run the last ``count`` calls in order; returns the last result."""
        import workbench

        ns.setdefault("wb", workbench)
        out = None
        for c in self.calls[-count:]:
            out = c.run(ns)
        return out

    def run(self, ns: dict | None = None) -> dict:
        """Execute the whole text in ``ns`` (a fresh namespace by default); returns the namespace."""
        ns = {} if ns is None else ns
        exec(compile(self.text(), "<workbench snippet>", "exec"), ns)  # noqa: S102 - our own generated code
        return ns

    def __add__(self, other: "Snippet") -> "Snippet":
        return Snippet(list(self.lines) + list(other.lines), other.show)


def error_html(what: str, e: BaseException) -> str:
    """One error line: a ``WorkbenchError`` shows its message and, on its own line, its hint; anything
    else is a bug and shows its traceback."""
    if isinstance(e, WorkbenchError):
        body = html.escape(getattr(e, "message", None) or str(e))
        hint = getattr(e, "hint", None)
        if hint:
            body += f"<br><span style='color:#444'>hint: {html.escape(hint)}</span>"
    else:
        tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        body = (f"{html.escape(type(e).__name__)}: {html.escape(str(e))} (a bug: please report it)"
                f"<details><summary>traceback</summary><pre>{html.escape(tb)}</pre></details>")
    return f"<div class='wb-error' style='color:#a00'>✖ <b>{html.escape(what)}</b>: {body}</div>"
