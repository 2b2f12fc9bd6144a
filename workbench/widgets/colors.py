"""Moved to :mod:`workbench.colors` (library); kept as an alias for older imports."""
from ..colors import *  # noqa: F401,F403
from ..colors import COLORMAPS, bin_colors, gradient_color, legend  # noqa: F401
