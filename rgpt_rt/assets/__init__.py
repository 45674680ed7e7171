"""Files shipped with the package.

SAMPLE_IMAGE: a 320x240 RGB drawing (PNG) of a red car on a road, a tree and the sun.
SAMPLE_BOX: the red car in it, (x0, y0, x1, y1) in pixels.
"""

from __future__ import annotations

from pathlib import Path

SAMPLE_IMAGE: Path = Path(__file__).with_name("sample.png")
SAMPLE_BOX: tuple[int, int, int, int] = (128, 128, 232, 198)

__all__ = ["SAMPLE_BOX", "SAMPLE_IMAGE"]
