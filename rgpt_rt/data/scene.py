"""Scenes of the synthetic world: coloured shapes with exact instance masks, drawn with numpy only.

Geometry follows rgpt_rt.inputs.regions: pixel (r, c) covers [c, c+1) x [r, r+1) and belongs to a shape when
its centre (c + 0.5, r + 0.5) lies inside. Objects are drawn in order (later ones on top); an object's
instance mask is its visible part: its full shape minus every shape drawn after it, so a hidden part is never
in the occluded object's mask. Every object keeps at least MIN_VISIBLE of its full shape visible.

Sizes are named by the shape's extent (its larger bounding-box side): small, medium and large come from
disjoint ranges, so "larger" between two regions is decided by geometry, not by the label alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..inputs.regions import Polygon, polygon_mask

SHAPES = (
    "circle",
    "ellipse",
    "ring",
    "semicircle",
    "square",
    "rectangle",
    "triangle",
    "diamond",
    "pentagon",
    "hexagon",
    "star",
    "cross",
)

COLORS = {  # name -> RGB; all far from the muted backgrounds below
    "red": (220, 38, 38),
    "orange": (247, 140, 20),
    "yellow": (245, 222, 35),
    "green": (34, 160, 60),
    "blue": (35, 75, 225),
    "purple": (135, 55, 200),
    "pink": (250, 120, 190),
    "brown": (120, 70, 30),
    "white": (250, 250, 250),
    "black": (20, 20, 20),
}

SIZES = ("small", "medium", "large")
# Half-extent ranges at a 128-pixel image (scaled with the image); the gaps keep the classes apart.
HALF_EXTENT = {"small": (7.0, 9.0), "medium": (11.5, 14.0), "large": (17.0, 20.0)}
PATTERNS = ("plain", "striped", "dotted")

BACKGROUNDS = {  # name -> RGB base tone (muted, so no named colour is mistaken for the background)
    "gray": (150, 150, 150),
    "beige": (205, 195, 165),
    "slate": (100, 115, 130),
    "lavender": (185, 178, 205),
}
TEXTURES = ("plain", "gradient", "checkered", "noisy")

# Colour+shape pairs never drawn in the train split; the test split draws them often (held-out compositions).
HELD_OUT = (("red", "star"), ("blue", "triangle"), ("green", "circle"), ("yellow", "hexagon"), ("purple", "square"))

MIN_VISIBLE = 0.6  # fraction of an object's full shape that stays visible
MIN_PIXELS = 24  # and at least this many pixels


@dataclass
class Obj:
    shape: str
    color: str
    size: str
    pattern: str
    cx: float
    cy: float
    half: float  # half-extent in pixels
    held_out: bool = False
    full: np.ndarray = field(default=None, repr=False)  # bool [H, W], the whole shape (amodal)
    mask: np.ndarray = field(default=None, repr=False)  # bool [H, W], the visible part (the instance mask)

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """Visible part's box (x0, y0, x1, y1), x1/y1 exclusive."""
        return _box(self.mask)

    @property
    def full_bbox(self) -> tuple[int, int, int, int]:
        return _box(self.full)

    @property
    def centroid(self) -> tuple[float, float]:
        ys, xs = np.nonzero(self.mask)
        return float(xs.mean()) + 0.5, float(ys.mean()) + 0.5

    @property
    def extent(self) -> int:
        """The full shape's larger bounding-box side in pixels (what its size names)."""
        x0, y0, x1, y1 = self.full_bbox
        return max(x1 - x0, y1 - y0)


@dataclass
class Scene:
    width: int
    height: int
    background: str
    texture: str
    objects: list[Obj]
    image: np.ndarray = field(default=None, repr=False)  # uint8 [H, W, 3]


def _box(m: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(m)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _regular(cx: float, cy: float, r: float, n: int, phase: float) -> list[tuple[float, float]]:
    return [
        (cx + r * math.cos(phase + 2 * math.pi * k / n), cy + r * math.sin(phase + 2 * math.pi * k / n))
        for k in range(n)
    ]


def shape_mask(shape: str, cx: float, cy: float, e: float, h: int, w: int) -> np.ndarray:
    """The full shape centred at (cx, cy) with half-extent e (its larger box side is about 2e): bool [h, w]."""
    x = np.arange(w)[None, :] + 0.5 - cx
    y = np.arange(h)[:, None] + 0.5 - cy
    if shape == "circle":
        return x * x + y * y <= e * e
    if shape == "ellipse":
        return (x / e) ** 2 + (y / (0.55 * e)) ** 2 <= 1.0
    if shape == "ring":
        d2 = x * x + y * y
        return (d2 <= e * e) & (d2 >= (0.55 * e) ** 2)
    if shape == "semicircle":  # the upper half of a circle, centred on its box
        yy = y - 0.5 * e
        return (x * x + yy * yy <= e * e) & (yy <= 0)
    if shape == "square":
        return (np.abs(x) <= 0.85 * e) & (np.abs(y) <= 0.85 * e)
    if shape == "rectangle":
        return (np.abs(x) <= e) & (np.abs(y) <= 0.55 * e)
    if shape == "diamond":
        return np.abs(x) + np.abs(y) <= e
    if shape == "cross":
        t = 0.34 * e
        return ((np.abs(x) <= e) & (np.abs(y) <= t)) | ((np.abs(x) <= t) & (np.abs(y) <= e))
    if shape == "triangle":
        pts = [(cx, cy - e), (cx + e, cy + 0.8 * e), (cx - e, cy + 0.8 * e)]
    elif shape == "pentagon":
        pts = _regular(cx, cy + 0.1 * e, e, 5, -math.pi / 2)
    elif shape == "hexagon":
        pts = _regular(cx, cy, e, 6, 0.0)
    elif shape == "star":
        outer = _regular(cx, cy + 0.1 * e, e, 5, -math.pi / 2)
        inner = _regular(cx, cy + 0.1 * e, 0.45 * e, 5, -math.pi / 2 + math.pi / 5)
        pts = [p for pair in zip(outer, inner) for p in pair]
    else:
        raise ValueError(f"unknown shape '{shape}'; known: {', '.join(SHAPES)}")
    return polygon_mask(Polygon(pts), h, w)


def _shade(rgb: tuple[int, int, int]) -> np.ndarray:
    """The pattern's second tone: the colour mixed toward black (light colours) or white (dark ones)."""
    c = np.asarray(rgb, dtype=np.float64)
    luma = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
    target = 0.0 if luma > 110 else 255.0
    return np.round(0.55 * c + 0.45 * target).astype(np.uint8)


def pattern_mask(pattern: str, h: int, w: int, period: int) -> np.ndarray:
    """Where the pattern's second tone goes: bool [h, w] (all False for plain)."""
    r = np.arange(h)[:, None]
    c = np.arange(w)[None, :]
    if pattern == "plain":
        return np.zeros((h, w), dtype=bool)
    if pattern == "striped":  # diagonal stripes
        return ((r + c) // period) % 2 == 1
    if pattern == "dotted":
        q = period
        return ((r % q - q // 2) ** 2 + (c % q - q // 2) ** 2) <= (q // 4) ** 2 + 1
    raise ValueError(f"unknown pattern '{pattern}'; known: {', '.join(PATTERNS)}")


def render_background(rng: np.random.Generator, name: str, texture: str, h: int, w: int) -> np.ndarray:
    base = np.asarray(BACKGROUNDS[name], dtype=np.float64)
    img = np.broadcast_to(base, (h, w, 3)).copy()
    if texture == "gradient":
        vertical = rng.random() < 0.5
        img += np.linspace(-22.0, 22.0, h)[:, None, None] if vertical else np.linspace(-22.0, 22.0, w)[None, :, None]
    elif texture == "checkered":
        q = max(4, h // 8)
        check = ((np.arange(h)[:, None] // q + np.arange(w)[None, :] // q) % 2).astype(np.float64)
        img += (check * 18.0 - 9.0)[..., None]
    elif texture == "noisy":
        img += rng.normal(0.0, 7.0, size=(h, w, 1))
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _pick_attrs(rng: np.random.Generator, split: str) -> tuple[str, str, bool]:
    colors, held = list(COLORS), set(HELD_OUT)
    if split == "test" and rng.random() < 0.25:
        color, shape = HELD_OUT[int(rng.integers(len(HELD_OUT)))]
        return color, shape, True
    while True:
        color, shape = colors[int(rng.integers(len(colors)))], SHAPES[int(rng.integers(len(SHAPES)))]
        if (color, shape) not in held or split == "test":
            return color, shape, (color, shape) in held


def sample_scene(rng: np.random.Generator, split: str, size: int = 128, max_objects: int = 6) -> Scene:
    """One scene: 1..max_objects objects, placed so each keeps MIN_VISIBLE of itself visible."""
    h = w = size
    scale = size / 128.0
    bg = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
    texture = TEXTURES[int(rng.integers(len(TEXTURES)))]
    image = render_background(rng, bg, texture, h, w)
    want = int(rng.integers(1, max_objects + 1))
    placed: list[Obj] = []
    for _ in range(want):
        color, shape, held = _pick_attrs(rng, split)
        size_name = SIZES[int(rng.integers(len(SIZES)))]
        lo, hi = HALF_EXTENT[size_name]
        e = float(rng.uniform(lo, hi)) * scale
        pattern = PATTERNS[int(rng.integers(len(PATTERNS)))] if rng.random() < 0.4 else "plain"
        overlap = placed and rng.random() < 0.35  # aim at an existing object so occlusion is common
        for _attempt in range(40):
            if overlap:
                other = placed[int(rng.integers(len(placed)))]
                ang = rng.uniform(0, 2 * math.pi)
                dist = (other.half + e) * rng.uniform(0.7, 1.1)
                cx, cy = other.cx + dist * math.cos(ang), other.cy + dist * math.sin(ang)
            else:
                cx, cy = rng.uniform(e + 1, w - e - 1), rng.uniform(e + 1, h - e - 1)
            if not (e + 1 <= cx <= w - e - 1 and e + 1 <= cy <= h - e - 1):
                continue
            full = shape_mask(shape, cx, cy, e, h, w)
            # The new object goes on top: every earlier object must keep enough of itself.
            if all(_visible_ok(o.mask & ~full, o.full) for o in placed) and full.sum() >= MIN_PIXELS:
                for o in placed:
                    o.mask = o.mask & ~full
                placed.append(Obj(shape, color, size_name, pattern, cx, cy, e, held, full, full.copy()))
                break
    for o in placed:  # paint in draw order
        rgb = np.asarray(COLORS[o.color], dtype=np.uint8)
        image[o.full] = rgb
        if o.pattern != "plain":
            second = o.full & pattern_mask(o.pattern, h, w, max(3, int(round(4 * scale))))
            image[second] = _shade(COLORS[o.color])
    return Scene(w, h, bg, texture, placed, image)


def _visible_ok(visible: np.ndarray, full: np.ndarray) -> bool:
    n = int(visible.sum())
    return n >= MIN_PIXELS and n >= MIN_VISIBLE * int(full.sum())
