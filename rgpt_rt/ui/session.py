"""The demo's state and logic, without Gradio: one image, numbered regions, a conversation, the task turns.

The app (app.py) keeps one Session per browser tab and calls one method per user action; a bad input raises an
InputError whose message the app shows in its status line. Answers stream: every turn is an iterator of text
pieces that ends with the GenerationResult (its timings feed the app's timing line).
"""

from __future__ import annotations

import json
import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import FrameError, InputError, MaskError, PromptError
from ..generation import GenerationConfig, GenerationResult
from ..inputs import load_frame, rle_decode, to_masks
from ..prompts import (
    category_instruction,
    check_turns,
    match_category,
    parse_refer,
    refer_instruction,
    task_instruction,
)

if TYPE_CHECKING:
    from ..runtime import Runtime

MAX_UI_REGIONS = 16  # regions one image may hold in the demo (each is drawn, numbered and listed)
REF = re.compile(r"<region(\d*)>")  # what the user writes: <region1>, <region2>, ... (a bare <region> is refused)
TASK_TOKENS = {"detail": 128, "brief": 48, "classify": 16, "refer": 16}  # max_new_tokens per task


@dataclass
class Region:
    kind: str  # "box" | "mask" | "rle"
    label: str  # how the region list shows it, e.g. "box 45,52,79,87"
    mask: np.ndarray  # bool [H, W] at the image's size


@dataclass
class Session:
    """One tab's image, regions and conversation. Regions are numbered from 1 in the UI (<region1>)."""

    image: np.ndarray | None = None  # [H, W, 3] uint8 RGB
    source: str = ""  # the scene's name or the uploaded file's name
    regions: list[Region] = field(default_factory=list)
    selected: int | None = None  # 0-based index of the region the task buttons use
    highlight: int | None = None  # 0-based index of the region refer picked (drawn emphasised)
    history: list[tuple[str, str]] = field(default_factory=list)  # the conversation, as the model sees it
    turn_masks: list[np.ndarray] = field(default_factory=list)  # each history turn's masks [n, H, W]
    messages: list[dict] = field(default_factory=list)  # the chat as shown: {"role", "content"}

    # ---- the image ----------------------------------------------------------------------------------------

    def set_image(self, frame: Any, source: str) -> None:
        """A new image (path, bytes or array): regions and the conversation start over."""
        img = load_frame(frame)  # FrameError names what is wrong with a file that is not an image
        self.image, self.source = np.array(img, copy=True), source
        self.regions, self.selected, self.highlight = [], None, None
        self.new_chat()

    def open_upload(self, path: str | Path | None) -> None:
        if path is None:
            raise FrameError("no file was uploaded")
        name = Path(path).name
        try:
            self.set_image(Path(path), name)
        except FrameError as exc:
            raise FrameError(f"{name} is not an image this demo can read ({exc})") from None

    def _need_image(self) -> tuple[int, int]:
        if self.image is None:
            raise FrameError("no image yet: pick a scene or upload an image first")
        return self.image.shape[:2]

    # ---- regions ------------------------------------------------------------------------------------------

    def _add(self, kind: str, label: str, region: Any) -> int:
        h, w = self._need_image()
        if len(self.regions) >= MAX_UI_REGIONS:
            raise MaskError(f"too many regions: the demo holds at most {MAX_UI_REGIONS}; remove or clear some first")
        try:
            mask = to_masks([region], (h, w))[0] > 0.5  # MaskError for an empty region, with the runtime's words
        except MaskError as exc:
            raise MaskError(f"empty region: the {kind} covers no pixel of the image ({exc})") from None
        self.regions.append(Region(kind, label, mask))
        self.selected, self.highlight = len(self.regions) - 1, None
        return self.selected

    def add_box_fraction(self, fx0: float, fy0: float, fx1: float, fy1: float) -> int:
        """A box drawn on the displayed image, its corners as fractions of the width and height (any order)."""
        h, w = self._need_image()
        try:
            xs = sorted(float(v) * w for v in (fx0, fx1))
            ys = sorted(float(v) * h for v in (fy0, fy1))
        except (TypeError, ValueError):
            raise MaskError(f"a box needs four numbers, got {(fx0, fy0, fx1, fy1)!r}") from None
        box = (round(xs[0]), round(ys[0]), round(xs[1]), round(ys[1]))
        if box[2] <= box[0] or box[3] <= box[1]:
            raise MaskError(f"empty region: the box {box} has no area; drag across the object")
        return self._add("box", "box {},{},{},{}".format(*box), box)

    def add_mask(self, mask: np.ndarray) -> int:
        """A painted mask at the image's size (any non-zero pixel is inside)."""
        h, w = self._need_image()
        mask = np.asarray(mask)
        if mask.shape != (h, w):
            raise MaskError(f"the painted mask is {mask.shape[1]}x{mask.shape[0]} but the image is {w}x{h}")
        if not mask.any():
            raise MaskError("empty region: nothing is painted; paint over the object, then add the mask")
        return self._add("mask", f"mask ({int(np.count_nonzero(mask))} px)", mask != 0)

    def add_rle(self, text: str) -> int:
        """A COCO RLE pasted as JSON: {"size": [h, w], "counts": "..." or [runs]}."""
        h, w = self._need_image()
        if not text or not text.strip():
            raise MaskError('paste a COCO RLE first: {"size": [h, w], "counts": ...}')
        try:
            rle = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MaskError(f"the RLE is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
        mask = rle_decode(rle, (h, w))  # MaskError when the size differs from the image or the counts are corrupt
        if not mask.any():
            raise MaskError("empty region: the RLE has no pixel set")
        return self._add("rle", f"rle ({int(mask.sum())} px)", mask)

    def region_at(self, fx: float, fy: float) -> int | None:
        """The region under a click (fractions of the displayed image); the smallest one where regions overlap."""
        h, w = self._need_image()
        x, y = min(int(float(fx) * w), w - 1), min(int(float(fy) * h), h - 1)
        hits = [i for i, r in enumerate(self.regions) if x >= 0 and y >= 0 and r.mask[y, x]]
        return min(hits, key=lambda i: self.regions[i].mask.sum()) if hits else None

    def select(self, index: int | None) -> None:
        if index is not None and not 0 <= index < len(self.regions):
            raise MaskError(f"there is no region{index + 1}")
        self.selected = index

    def remove(self, index: int | None) -> None:
        if index is None or not 0 <= index < len(self.regions):
            raise MaskError("select a region to remove first")
        del self.regions[index]
        self.selected = len(self.regions) - 1 if self.regions else None
        self.highlight = None

    def clear_regions(self) -> None:
        self.regions, self.selected, self.highlight = [], None, None

    def new_chat(self) -> None:
        self.history, self.turn_masks, self.messages = [], [], []

    # ---- questions ----------------------------------------------------------------------------------------

    def parse_message(self, text: str) -> tuple[str, np.ndarray]:
        """The user's message with <regionK> references -> the model's instruction (one <region> per reference,
        in order) and the referenced masks [n, H, W]."""
        h, w = self._need_image()
        if not isinstance(text, str) or not text.strip():
            raise PromptError("the message is empty: write a question, e.g. What is <region1>?")
        refs = REF.findall(text)
        if any(r == "" for r in refs):
            raise PromptError("write <region1>, <region2>... to name a region (a bare <region> names none)")
        idx = [int(r) - 1 for r in refs]
        missing = sorted({i + 1 for i in idx if not 0 <= i < len(self.regions)})
        if missing:
            have = f"region1..region{len(self.regions)}" if self.regions else "none yet"
            raise PromptError(
                f"too many regions for the question: it names {', '.join(f'<region{k}>' for k in missing)} "
                f"but the image has {len(self.regions)} ({have}); draw more regions or fix the numbers"
            )
        masks = np.stack([self.regions[i].mask for i in idx]) if idx else np.zeros((0, h, w), bool)
        return REF.sub("<region>", text), masks

    def task_region(self, task: str) -> int:
        """The one region a describe/brief/classify question is about: the selected one."""
        if not self.regions:
            raise MaskError(f"{task} needs a region: draw a box, paint a mask or paste an RLE first")
        if self.selected is None:
            raise MaskError(f"{task} takes one region: select one in the region list")
        return self.selected


class Demo:
    """The runtime behind the app, shared by every tab (its calls are serialised by the Runtime)."""

    def __init__(self, rt: Runtime, max_new_tokens: int = 128):
        self.rt = rt
        self.max_new_tokens = max_new_tokens

    def info(self) -> str:
        """Backend, precision and device, as the app's header shows them."""
        be = self.rt.backend
        precision = getattr(be, "precision", None) or getattr(getattr(be, "manifest", None), "precision", None)
        return f"backend {self.rt.backend_name} · precision {precision or 'fp32'} · device {getattr(be, 'device', '?')}"

    def stream(
        self, frame: np.ndarray, turns: list[tuple[str, str | None]], masks: np.ndarray, max_new_tokens: int
    ) -> Iterator[str | GenerationResult]:
        """Text pieces as they become final, then the GenerationResult. The prompt holds the whole conversation
        (turns); the runtime reuses the KV of the prefix it already holds, so a follow-up question prefills only
        its own tokens. The model runs in its own thread: a tab that closes mid-answer never keeps it locked.

        This is Runtime.generate's path (encode -> prompt ids -> the decode loop) with its pieces streamed:
        Runtime.stream takes no history and keeps no result, Runtime.chat streams nothing."""
        check_turns(turns)  # before the vision stage: a bad instruction costs nothing
        gen = GenerationConfig(max_new_tokens=max_new_tokens)
        rt, out = self.rt, queue.Queue()

        def work():
            try:
                visual = rt.encode(frame, masks, allow_empty_masks=True)
                ids = rt._prompt_ids(visual, turns, list(range(visual.n_regions)))
                results: list[GenerationResult] = []
                for _, piece in rt._decode(visual, [ids], gen, results):
                    out.put(piece)
                out.put(results[0])
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it in its thread
                out.put(exc)

        threading.Thread(target=work, name="rgpt-ui-answer", daemon=True).start()
        while True:
            item = out.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if isinstance(item, GenerationResult):
                return

    def chat(self, s: Session, message: str) -> Iterator[str | GenerationResult]:
        """A conversation turn: the message's <regionK> references, after the earlier turns."""
        instruction, masks = s.parse_message(message)
        frame = s.image
        all_masks = np.concatenate([*s.turn_masks, masks]) if s.turn_masks else masks
        result = None
        for item in self.stream(frame, [*s.history, (instruction, None)], all_masks, self.max_new_tokens):
            if isinstance(item, GenerationResult):
                result = item
            yield item
        s.history.append((instruction, result.text))
        s.turn_masks.append(masks)

    def task(
        self, s: Session, task: str, vocabulary: str = "", expression: str = ""
    ) -> tuple[str, list[int], Iterator[str | GenerationResult]]:
        """One of the paper's task questions, asked on its own (the prompt the model was trained with, without the
        conversation). Returns the instruction, the regions it is about (0-based) and the answer stream."""
        if task in ("detail", "brief"):
            regions = [s.task_region("describe" if task == "detail" else "brief")]
            instruction = task_instruction(task)
        elif task == "classify":
            regions = [s.task_region("classify")]
            instruction = category_instruction(parse_vocabulary(vocabulary))
        elif task == "refer":
            if not isinstance(expression, str) or not expression.strip():
                raise PromptError('refer needs an expression, e.g. "the blue cross"')
            if not s.regions:
                raise MaskError("refer needs regions to choose from: draw two or more first")
            regions = list(range(len(s.regions)))
            instruction = refer_instruction(len(regions), expression.strip())
        else:
            raise PromptError(f"unknown task '{task}'")
        s._need_image()
        masks = np.stack([s.regions[i].mask for i in regions])
        limit = min(TASK_TOKENS[task], self.max_new_tokens) if task != "detail" else self.max_new_tokens
        return instruction, regions, self.stream(s.image, [(instruction, None)], masks, limit)

    def classify_answer(self, text: str, vocabulary: str) -> str | None:
        return match_category(text, parse_vocabulary(vocabulary))

    def refer_answer(self, text: str, n: int) -> int | None:
        return parse_refer(text, n, self.rt.cfg.region_index_base)


def parse_vocabulary(text: str) -> list[str]:
    """A comma-separated vocabulary -> its names (at least one)."""
    names = [v.strip() for v in (text or "").split(",") if v.strip()]
    if not names:
        raise PromptError("the vocabulary is empty: list the category names, separated by commas")
    return names


def timing_line(result: GenerationResult) -> str:
    t = result.timings
    return (
        f"preprocess {t.preprocess_ms:.0f} ms · vision {t.vision_ms:.0f} ms · prefill {t.prefill_ms:.0f} ms "
        f"({t.prompt_tokens} tokens, {t.reused_tokens} reused) · decode {t.ms_per_token:.1f} ms/token "
        f"({t.tokens} tokens, {result.finish_reason})"
    )


__all__ = ["MAX_UI_REGIONS", "Demo", "InputError", "Region", "Session", "parse_vocabulary", "timing_line"]
