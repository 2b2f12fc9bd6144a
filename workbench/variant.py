"""`Variant`: an ONNX model whose precision lives in the graph, plus the recipe that made it.

Backends build and run variants; they never change precision themselves (TensorRT 11 networks are
strongly typed). The only backend-side precision switch is TF32 (``backend_flags["tf32"]``).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from .model import Model



def __getattr__(name: str):
    # ``PRECISIONS``: the registered precision names, read from the registry (workbench.precision) each time.
    if name == "PRECISIONS":
        from .precision import precision_names

        return precision_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class Variant:
    model: Model
    precision: str = "fp32"
    source_hash: str = ""
    recipe: dict = field(default_factory=dict)  # tool + options that produced it (JSON-able)
    backend_flags: dict = field(default_factory=dict)  # e.g. {"tf32": True}
    name: str = ""

    def __post_init__(self):
        if not self.name:
            self.name = f"{self.model.name}-{self.precision}"
        if not self.source_hash:
            self.source_hash = self.model.parent_hash or self.model.hash

    @classmethod
    def of(cls, model: Model, precision: str = "fp32") -> "Variant":
        """The unchanged model as a variant (fp32, or tf32 which only flips a backend flag)."""
        flags = {"tf32": precision == "tf32"}
        return cls(model=model, precision=precision, recipe={"tool": "none"}, backend_flags=flags,
                   source_hash=model.hash)

    @property
    def hash(self) -> str:
        """Graph content hash combined with the backend flags (tf32 and fp32 share a graph)."""
        h = hashlib.sha256(self.model.hash.encode())
        h.update(json.dumps(self.backend_flags, sort_keys=True).encode())
        return h.hexdigest()

    @property
    def tf32(self) -> bool:
        return bool(self.backend_flags.get("tf32", False))

    def to_json(self) -> dict:
        return {"name": self.name, "precision": self.precision, "hash": self.hash, "model_hash": self.model.hash,
                "source_hash": self.source_hash, "recipe": self.recipe, "backend_flags": self.backend_flags}

    def __repr__(self) -> str:
        return f"<workbench.Variant {self.name!r} precision={self.precision} hash={self.hash[:12]}>"
