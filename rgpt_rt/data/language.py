"""The world's language: brief and detailed descriptions, referring expressions, reasoning questions.

Every sentence is decided by the scene's geometry, with these definitions (pixel boxes, x1/y1 exclusive):
- position: the visible part's centroid in thirds of the image: left / center / right, top / middle / bottom
- relation: A is "to the left of" B when A's visible box ends at or before B's begins (A.x1 <= B.x0); "to the
  right of", "above" (A.y1 <= B.y0) and "below" likewise; overlapping extents have no relation on that axis
- larger / smaller: the size class, whose ranges of extent are disjoint (rgpt_rt.data.scene.HALF_EXTENT)

Referring expressions follow one grammar, which `parse_expression` reads back and `matching_objects`
evaluates on a scene; the generator keeps only expressions that match exactly one object:
    the [size] [color] [pattern] shape [on the left | on the right | at the top | at the bottom]
        [to the left of | to the right of | above | below  the [size] [color] [pattern] shape]
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .scene import COLORS, PATTERNS, SHAPES, SIZES, Obj, Scene

RELATIONS = ("to the left of", "to the right of", "above", "below")
POSITIONS = ("on the left", "on the right", "at the top", "at the bottom")
NO_MATCH = "No corresponding options found."
NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


# ---- geometry -> words ----------------------------------------------------------------------------------


def thirds(o: Obj, w: int, h: int) -> tuple[str, str]:
    x, y = o.centroid
    horiz = "left" if x < w / 3 else "right" if x > 2 * w / 3 else "center"
    vert = "top" if y < h / 3 else "bottom" if y > 2 * h / 3 else "middle"
    return horiz, vert


def position_phrase(o: Obj, w: int, h: int) -> str:
    horiz, vert = thirds(o, w, h)
    if vert == "middle" and horiz == "center":
        return "in the center of the image"
    if vert == "middle":
        return f"on the {horiz} of the image"
    if horiz == "center":
        return f"at the {vert} of the image"
    return f"in the {vert} {horiz} of the image"


def related(a: Obj, b: Obj, relation: str) -> bool:
    """Whether `a <relation> b` holds (strictly separated boxes on that axis)."""
    ax0, ay0, ax1, ay1 = a.bbox
    bx0, by0, bx1, by1 = b.bbox
    if relation == "to the left of":
        return ax1 <= bx0
    if relation == "to the right of":
        return bx1 <= ax0
    if relation == "above":
        return ay1 <= by0
    if relation == "below":
        return by1 <= ay0
    raise ValueError(f"unknown relation '{relation}'")


def at_position(o: Obj, position: str, w: int, h: int) -> bool:
    horiz, vert = thirds(o, w, h)
    return {"on the left": horiz == "left", "on the right": horiz == "right", "at the top": vert == "top"}.get(
        position, vert == "bottom"
    )


def noun_phrase(o: Obj, size: bool = True, color: bool = True, pattern: bool = True) -> str:
    words = [o.size if size else "", o.color if color else "", o.pattern if pattern and o.pattern != "plain" else ""]
    return " ".join([w for w in words if w] + [o.shape])


def brief(o: Obj) -> str:
    """`a large red circle` (with the pattern when it has one: `a small blue striped star`)."""
    return f"a {noun_phrase(o)}"


def detail(scene: Scene, i: int) -> str:
    """A sentence with the attributes, the position and a relation to the nearest other object."""
    o = scene.objects[i]
    text = f"A {noun_phrase(o)} {position_phrase(o, scene.width, scene.height)}"
    covering = [p for p in scene.objects[i + 1 :] if (p.full & o.full).any()]
    if covering:
        text += f", partly covered by a {noun_phrase(covering[0])}"
    others = sorted(
        (p for p in scene.objects if p is not o), key=lambda p: (np.subtract(p.centroid, o.centroid) ** 2).sum()
    )
    for p in others:
        rel = next((r for r in RELATIONS if related(o, p, r)), None)
        if rel:
            text += f", {rel} a {noun_phrase(p)}"
            break
    else:  # no object lies clearly to one side: name the nearest one
        text += f", next to a {noun_phrase(others[0])}" if others else ", the only object in the image"
    return text + "."


def global_caption(scene: Scene) -> list[str]:
    """Two COCO-style captions of the whole image."""
    n = len(scene.objects)
    noun = "shape" if n == 1 else "shapes"
    texture = "" if scene.texture == "plain" else f" {scene.texture}"
    items = [brief(o) for o in scene.objects]
    listed = items[0] if n == 1 else ", ".join(items[:-1]) + " and " + items[-1]
    return [
        f"{NUMBERS[n].capitalize()} {noun} on a{texture} {scene.background} background: {listed}.",
        f"A{texture} {scene.background} background with {NUMBERS[n]} {noun}.",
    ]


def region_phrase(scene: Scene, o: Obj) -> str:
    """A Visual Genome-style region phrase: `large red circle in the top left of the image`."""
    return f"{noun_phrase(o)} {position_phrase(o, scene.width, scene.height)}"


# ---- referring expressions: grammar, checker, generator ------------------------------------------------


@dataclass(frozen=True)
class Description:
    shape: str
    size: str | None = None
    color: str | None = None
    pattern: str | None = None

    def fits(self, o: Obj) -> bool:
        return (
            o.shape == self.shape
            and self.size in (None, o.size)
            and self.color in (None, o.color)
            and self.pattern in (None, o.pattern)
        )

    def text(self) -> str:
        return "the " + " ".join(w for w in (self.size, self.color, self.pattern, self.shape) if w)


@dataclass(frozen=True)
class Expression:
    head: Description
    position: str | None = None
    relation: str | None = None
    anchor: Description | None = None

    def text(self) -> str:
        parts = [self.head.text()]
        if self.position:
            parts.append(self.position)
        if self.relation:
            parts += [self.relation, self.anchor.text()]
        return " ".join(parts)


def _description(words: list[str], expr: str) -> Description:
    if len(words) < 2 or words[0] != "the" or words[-1] not in SHAPES:
        raise ValueError(f"not a referring expression of this world: {expr!r}")
    fields: dict[str, str] = {}
    for w in words[1:-1]:
        key = "size" if w in SIZES else "color" if w in COLORS else "pattern" if w in PATTERNS else None
        if key is None or key in fields:
            raise ValueError(f"unexpected word {w!r} in {expr!r}")
        fields[key] = w
    return Description(words[-1], **fields)


def parse_expression(expr: str) -> Expression:
    """Read an expression of the grammar above back into its parts (ValueError if it is not one)."""
    text = expr.strip().rstrip(".").lower()
    relation = next((r for r in RELATIONS if f" {r} " in text), None)
    head_text, anchor = text, None
    if relation:
        head_text, anchor_text = text.split(f" {relation} ", 1)
        anchor = _description(anchor_text.split(), expr)
    position = next((p for p in POSITIONS if head_text.endswith(" " + p)), None)
    if position:
        head_text = head_text[: -len(position) - 1]
    return Expression(_description(head_text.split(), expr), position, relation, anchor)


def matching_objects(expr: str | Expression, scene: Scene) -> list[int]:
    """Indices of the scene's objects that the expression describes."""
    e = parse_expression(expr) if isinstance(expr, str) else expr
    out = []
    for i, o in enumerate(scene.objects):
        if not e.head.fits(o):
            continue
        if e.position and not at_position(o, e.position, scene.width, scene.height):
            continue
        if e.relation and not any(p is not o and e.anchor.fits(p) and related(o, p, e.relation) for p in scene.objects):
            continue
        out.append(i)
    return out


def referring_expressions(scene: Scene, i: int, limit: int = 3) -> list[str]:
    """Up to `limit` expressions that describe object i and no other object, simplest first."""
    o = scene.objects[i]
    heads = [
        Description(o.shape),
        Description(o.shape, color=o.color),
        Description(o.shape, size=o.size, color=o.color),
        Description(o.shape, size=o.size, color=o.color, pattern=o.pattern),
    ]
    cands: list[Expression] = [Expression(d) for d in heads]
    cands += [Expression(heads[1], p) for p in POSITIONS if at_position(o, p, scene.width, scene.height)]
    for p in scene.objects:
        if p is o:
            continue
        anchor = Description(p.shape, color=p.color)
        if sum(anchor.fits(q) for q in scene.objects) != 1:
            continue
        cands += [Expression(heads[1], None, r, anchor) for r in RELATIONS if related(o, p, r)]
    unique = [e for e in cands if matching_objects(e, scene) == [i]]
    # The simplest expression of each kind first (attributes, position, relation), then the rest in order.
    firsts = [
        next((e for e in unique if kind(e)), None)
        for kind in (
            lambda e: not e.position and not e.relation,
            lambda e: bool(e.position),
            lambda e: bool(e.relation),
        )
    ]
    out: list[str] = []
    for e in [f for f in firsts if f is not None] + unique:
        if e.text() not in out:
            out.append(e.text())
    return out[:limit]


# ---- reasoning questions --------------------------------------------------------------------------------

YES_NO = {
    "left": "Is <region> to the left of <region>?",
    "right": "Is <region> to the right of <region>?",
    "above": "Is <region> above <region>?",
    "below": "Is <region> below <region>?",
    "larger": "Is <region> larger than <region>?",
    "smaller": "Is <region> smaller than <region>?",
    "same_color": "Do <region> and <region> have the same color?",
    "same_shape": "Are <region> and <region> the same shape?",
}
OPEN = {
    "further_left": "Which is further left, <region> or <region>?",
    "higher": "Which is higher, <region> or <region>?",
    "bigger": "Which is larger, <region> or <region>?",
    "color_of_larger": "What color is the larger of <region> and <region>?",
}
_REL = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below"}


def yes_no_answer(kind: str, a: Obj, b: Obj) -> str | None:
    """'Yes' / 'No' for the question about (a, b), or None when geometry does not decide it."""
    if kind in _REL:
        if related(a, b, _REL[kind]):
            return "Yes"
        reverse = {"left": "right", "right": "left", "above": "below", "below": "above"}[kind]
        return "No" if related(a, b, _REL[reverse]) else None
    if kind in ("larger", "smaller"):
        sa, sb = SIZES.index(a.size), SIZES.index(b.size)
        if sa == sb:
            return None
        return "Yes" if (sa > sb) == (kind == "larger") else "No"
    if kind == "same_color":
        return "Yes" if a.color == b.color else "No"
    if kind == "same_shape":
        return "Yes" if a.shape == b.shape else "No"
    raise ValueError(f"unknown yes/no question '{kind}'")


def open_answer(kind: str, a: Obj, b: Obj) -> str | None:
    """The open answer (a brief description or a colour), or None when geometry does not decide it."""
    if kind == "further_left":
        win = a if related(a, b, "to the left of") else b if related(b, a, "to the left of") else None
    elif kind == "higher":
        win = a if related(a, b, "above") else b if related(b, a, "above") else None
    elif kind in ("bigger", "color_of_larger"):
        sa, sb = SIZES.index(a.size), SIZES.index(b.size)
        win = a if sa > sb else b if sb > sa else None
    else:
        raise ValueError(f"unknown open question '{kind}'")
    if win is None or (kind != "color_of_larger" and brief(a) == brief(b)):
        return None
    return win.color if kind == "color_of_larger" else brief(win)


def normalize_answer(text: str) -> str:
    """Lower case, punctuation dropped, spaces collapsed (the exact-match comparison of reasoning answers)."""
    return " ".join(re.sub(r"[^a-z0-9 ]+", " ", text.lower()).split())
