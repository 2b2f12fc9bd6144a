"""Moved: the graph model lives in :mod:`workbench.graph` (library, not widgets). Kept as an alias so older
imports keep working."""
from ..graph import *  # noqa: F401,F403
from ..graph import CHUNK, CHUNK_MAX, DEFAULT_BUDGET, DIFF_COLORS, GraphPayload, as_model, scope_parts  # noqa: F401
