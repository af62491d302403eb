"""The colours and line styles of every figure (curves, Fig. 1, Fig. 5, exact vs. approximate, gallery).

Colours are the Okabe-Ito palette, which stays distinguishable with colour-vision
deficiencies, in one order: the first colours are the most distinct from each other.
Line styles vary too (:func:`line_style`), so curves survive black-and-white printing.
"""

from __future__ import annotations

from typing import Iterable

BLUE, VERMILLION, GREEN, PURPLE, ORANGE, BLACK, SKY_BLUE, YELLOW = (
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#000000", "#56B4E9", "#F0E442")
OKABE_ITO = (BLUE, VERMILLION, GREEN, PURPLE, ORANGE, BLACK, SKY_BLUE, YELLOW)
LINESTYLES = ("-", "--", "-.", ":")

# Greys for what is not data: threshold lines and their labels.
GUIDE = "0.4"
GUIDE_TEXT = "0.25"
# Colour maps of the gallery: images in grey, perturbations on a scale symmetric about 0.
IMAGE_CMAP = "gray"
DIVERGING_CMAP = "RdBu_r"


def colour(i: int, exclude: Iterable[str] = ()) -> str:
    """The ``i``-th colour (cyclic), skipping ``exclude`` (e.g. a colour kept for a reference line)."""
    skip = set(exclude)
    colours = [c for c in OKABE_ITO if c not in skip]
    return colours[i % len(colours)]


def line_style(i: int) -> dict:
    """Colour and line style of the ``i``-th curve: the style changes after every two colours."""
    return {"color": colour(i), "linestyle": LINESTYLES[(i // 2) % len(LINESTYLES)]}
