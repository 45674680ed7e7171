"""The training format (JSON Lines), its validation, the lazy per-rank reader and the sample encoder.

One sample per line:
    {"id": "optional", "image": "path (absolute, or relative to --image-root / the file's directory)",
     "regions": [REGION, ...],
     "conversations": [{"from": "human", "value": "What is <region>?"}, {"from": "gpt", "value": "a cat"}, ...]}
REGION is a dict with one or more of
    "segmentation": a COCO RLE dict {"size": [h, w], "counts": ...} or COCO polygons [[x0, y0, x1, y1, ...], ...]
    "rle": a COCO RLE dict;  "polygon": COCO polygons;  "box": [x0, y0, x1, y1];  "bbox": COCO [x, y, w, h]
Human turns carry one `<region>` per region, in order over the whole conversation; an `<image>` in a human
turn is dropped (the template places the image once, as at inference). Turns alternate human/gpt.

The file is indexed once (byte offset of every valid line; a bad line is named with its line number and
problem, counted and skipped) and read lazily: a rank parses only the lines of its own share.
"""

from __future__ import annotations

import json
import random
import re
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, RgptError
from ..inputs import Box, Polygon, load_frame, preprocess_frame, preprocess_masks, rle_decode, to_masks
from ..inputs.regions import box_mask, polygon_mask
from ..prompts import IMAGE, count_regions, prompt_parts

IGNORE = -100  # label of a token that is not trained on


class DataError(RgptError, ValueError):
    """A training sample is malformed; the message names the file, the line and the problem."""


@dataclass
class Sample:
    image: Path
    regions: list[dict[str, Any]]
    turns: list[tuple[str, str]]  # (instruction, answer)
    where: str  # "file:line" or "coco:image_id", for messages


@dataclass
class Encoded:
    pixels: np.ndarray  # float32 [3, S, S]
    masks: np.ndarray  # float32 [N, S, S]
    ids: list[int]  # text ids < V; image token i -> V + i; region k -> V + T + k
    labels: list[int]  # next-token targets aligned with ids (IGNORE outside answers)
    where: str


# ---- validation ------------------------------------------------------------------------------------------


def _is_rle(x: Any) -> bool:
    return isinstance(x, dict) and "size" in x and "counts" in x


def _check_polygons(p: Any, what: str) -> None:
    if not isinstance(p, list) or not p:
        raise DataError(f"{what} must be a non-empty list of polygons [[x0, y0, x1, y1, ...], ...]")
    for poly in p:
        if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
            raise DataError(f"{what}: each polygon needs an even number (>= 6) of coordinates")
        if not all(isinstance(v, (int, float)) for v in poly):
            raise DataError(f"{what}: polygon coordinates must be numbers")


def _check_box(b: Any, what: str, xywh: bool) -> None:
    if not isinstance(b, list) or len(b) != 4 or not all(isinstance(v, (int, float)) for v in b):
        raise DataError(f"{what} must be 4 numbers")
    x0, y0, a, c = b
    if (a <= 0 or c <= 0) if xywh else (a <= x0 or c <= y0):
        raise DataError(f"{what} {b} is empty or inverted")


def check_region(r: Any, what: str) -> dict[str, Any]:
    """A REGION in any accepted spelling -> {"rle"?, "polygon"?, "box"? (x0, y0, x1, y1)}."""
    if _is_rle(r):
        r = {"rle": r}
    elif isinstance(r, list) and len(r) == 4:
        r = {"box": r}
    if not isinstance(r, dict):
        raise DataError(f"{what} must be an object with segmentation, rle, polygon, box or bbox")
    out: dict[str, Any] = {}
    seg = r.get("segmentation")
    if seg is not None:
        if _is_rle(seg):
            out["rle"] = seg
        else:
            _check_polygons(seg, f"{what}.segmentation")
            out["polygon"] = seg
    if "rle" in r:
        if not _is_rle(r["rle"]):
            raise DataError(f"{what}.rle must be a COCO RLE dict with size and counts")
        out["rle"] = r["rle"]
    if "polygon" in r:
        _check_polygons(r["polygon"], f"{what}.polygon")
        out["polygon"] = r["polygon"]
    if "box" in r:
        _check_box(r["box"], f"{what}.box", xywh=False)
        out["box"] = [float(v) for v in r["box"]]
    elif "bbox" in r:
        _check_box(r["bbox"], f"{what}.bbox", xywh=True)
        x, y, w, h = (float(v) for v in r["bbox"])
        out["box"] = [x, y, x + w, y + h]
    if not out:
        raise DataError(f"{what} has none of segmentation, rle, polygon, box, bbox")
    return out


def check_sample(d: Any, where: str, root: Path) -> Sample:
    """Validate one parsed line (structure only; the image is read later). Raises DataError naming the problem."""
    if not isinstance(d, dict):
        raise DataError(f"{where}: a sample must be a JSON object")
    image = d.get("image")
    if not isinstance(image, str) or not image:
        raise DataError(f"{where}: 'image' must be a non-empty path string")
    regions = d.get("regions", [])
    if not isinstance(regions, list):
        raise DataError(f"{where}: 'regions' must be a list")
    regs = [check_region(r, f"{where}: regions[{i}]") for i, r in enumerate(regions)]
    conv = d.get("conversations")
    if not isinstance(conv, list) or not conv or len(conv) % 2:
        raise DataError(f"{where}: 'conversations' must be a non-empty list of human/gpt pairs")
    turns = []
    for i in range(0, len(conv), 2):
        h, g = conv[i], conv[i + 1]
        for j, turn, role in ((i, h, "human"), (i + 1, g, "gpt")):
            if not isinstance(turn, dict) or turn.get("from") != role or not isinstance(turn.get("value"), str):
                raise DataError(f"{where}: conversations[{j}] must be {{'from': '{role}', 'value': str}}")
        q = re.sub(re.escape(IMAGE) + r"\n?", "", h["value"]).strip()
        a = g["value"].strip()
        if not q or not a:
            raise DataError(f"{where}: conversations[{i}] has an empty question or answer")
        turns.append((q, a))
    n = sum(count_regions(q) for q, _ in turns)
    if n != len(regs):
        raise DataError(
            f"{where}: the human turns have {n} <region> placeholders but the sample has {len(regs)} regions"
        )
    path = Path(image)
    return Sample(path if path.is_absolute() else root / path, regs, turns, where)


# ---- JSON Lines source -----------------------------------------------------------------------------------


class JsonlSource:
    """Byte offsets of the valid lines of one file; `get(i)` parses line i when it is needed."""

    def __init__(self, path: str | Path, image_root: str | Path | None = None, max_reported: int = 20):
        self.path = Path(path)
        self.root = Path(image_root) if image_root else self.path.parent
        self.offsets = array("q")  # 8 bytes a sample: a million-line file indexes in 16 MB
        self.lines = array("q")
        self.bad: list[str] = []  # the first `max_reported` problems
        self.num_bad = 0
        if not self.path.is_file():
            raise DataError(f"training data file not found: {self.path}")
        with open(self.path, "rb") as f:
            offset, line_no = 0, 0
            for raw in f:
                line_no += 1
                start, offset = offset, offset + len(raw)
                if not raw.strip():
                    continue
                try:
                    check_sample(_parse(raw, f"{self.path}:{line_no}"), f"{self.path}:{line_no}", self.root)
                except DataError as exc:
                    self.num_bad += 1
                    if len(self.bad) < max_reported:
                        self.bad.append(str(exc))
                    continue
                self.offsets.append(start)
                self.lines.append(line_no)

    def __len__(self) -> int:
        return len(self.offsets)

    def get(self, i: int, rng: random.Random) -> Sample:
        with open(self.path, "rb") as f:
            f.seek(self.offsets[i])
            raw = f.readline()
        where = f"{self.path}:{self.lines[i]}"
        return check_sample(_parse(raw, where), where, self.root)


def _parse(raw: bytes, where: str) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{where}: not valid JSON ({exc})") from None


# ---- regions: the form each is given in ------------------------------------------------------------------


def _polygon_raster(polys: list[list[float]], h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    for p in polys:
        m |= polygon_mask(Polygon(p), h, w)
    return m


def region_mask(region: dict[str, Any], form: str, h: int, w: int) -> np.ndarray:
    """The region as the user would give it: `form` if the sample has it (or it can be derived), else the
    most exact form it has. mask: the RLE (or the polygons rasterised); polygon: the polygons (a box is a
    4-point polygon); box: the given box, or the extent of the mask/polygons."""
    if form == "box" and "box" not in region:
        full = region_mask(region, "mask", h, w)
        ys, xs = np.nonzero(full)
        if len(ys) == 0:
            return full
        return box_mask(Box(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), h, w)
    if form == "box" or ("rle" not in region and "polygon" not in region):
        return box_mask(Box(*region["box"]), h, w)
    if form == "polygon" and "polygon" in region:
        return _polygon_raster(region["polygon"], h, w)
    if "rle" in region:
        m = rle_decode(region["rle"])
        if m.shape != (h, w):
            raise InputError(f"RLE size {m.shape[1]}x{m.shape[0]} (WxH) differs from the image's {w}x{h}")
        return m
    return _polygon_raster(region["polygon"], h, w)


def pick_form(forms: dict[str, float], rng: random.Random) -> str:
    names = sorted(forms)
    return rng.choices(names, weights=[forms[n] for n in names])[0]


# ---- the encoder: sample -> pixels, masks, ids, labels ---------------------------------------------------


class Encoder:
    """Builds a sample's tensors with the same template, tokenizer and preprocessing as the runtime.

    Turn i's prompt is tokenized exactly as `Runtime` tokenizes that instruction with turns 0..i-1 as its
    history; its answer's tokens are those that follow the prompt when the answered conversation is tokenized
    the same way (template answer prefix + answer + end-of-turn token), so the labels are the answer as the
    tokenizer spells it in context (a SentencePiece tokenizer gives "▁a" after "ASSISTANT:", not "▁", "▁a").
    Only answer tokens carry labels.
    """

    def __init__(self, tokenizer, cfg, region_forms: dict[str, float], max_seq_len: int):
        self.tok = tokenizer
        self.cfg = cfg
        self.forms = region_forms
        self.max_seq_len = max_seq_len

    def token_ids(self, turns: list[tuple[str, str]], n_image: int) -> tuple[list[int], list[int]]:
        """-> (ids, labels): labels[j] is the target of position j (the next token), IGNORE outside answers."""
        template = self.cfg.conv_template
        ids: list[int] = []
        labels: list[int] = []
        k = 0
        for i, (q, _) in enumerate(turns):
            k += count_regions(q, self.cfg.region_token)
            rows = list(range(k))
            prompt = self.tok.encode_prompt(prompt_parts([*turns[:i], (q, None)], template), n_image, rows)
            full = self.tok.encode_prompt(prompt_parts(turns[: i + 1], template), n_image, rows)
            if full[: len(prompt)] != prompt or prompt[: len(ids)] != ids:
                raise DataError(f"turn {i}: the tokenizer merges the answer with the text before it")
            labels += [IGNORE] * (len(prompt) - len(ids)) + full[len(prompt) :]
            ids = full
        return ids, labels[1:] + [IGNORE]  # position j predicts token j + 1

    def __call__(self, sample: Sample, rng: random.Random) -> Encoded:
        frame = load_frame(sample.image)
        h, w = frame.shape[:2]
        masks = [region_mask(r, pick_form(self.forms, rng), h, w) for r in sample.regions]
        masks = to_masks(np.stack(masks) if masks else None, (h, w))  # raises MaskError on an empty region
        s = self.cfg.vision.image_size
        pixels = preprocess_frame(frame, self.cfg.vision)
        mask_px = preprocess_masks(masks, s)
        try:
            ids, labels = self.token_ids(sample.turns, self.cfg.num_image_tokens)
        except DataError as exc:
            raise DataError(f"{sample.where}: {exc}") from None
        ids, labels = ids[: self.max_seq_len], labels[: self.max_seq_len]
        if all(x == IGNORE for x in labels):
            raise DataError(f"{sample.where}: no answer token is left within max_seq_len={self.max_seq_len}")
        return Encoded(pixels, mask_px, ids, labels, sample.where)
