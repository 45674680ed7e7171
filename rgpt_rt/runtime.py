"""Runtime: frames, regions and instructions in; text out.

    rt = Runtime.from_pretrained("path/to/checkpoint")
    rt.describe(frame, mask)                       # detailed description of one region
    rt.describe(frame, box, task="brief")          # short caption
    rt.classify(frame, mask)                       # a COCO-80 name (or one of `vocabulary`), or None
    rt.refer(frame, [m1, m2, m3], "the red car")   # index of the matching region, or None
    rt.ask(frame, "Is <region> left of <region>?", [m1, m2])
    for piece in rt.stream(frame, "Describe <region>.", mask): ...
    rt.describe_many(frame, masks)                 # one description per region
    rt.generate(...)                               # GenerationResult with token ids, finish reason, timings
    chat = rt.chat(frame, masks); chat.ask(...); chat.ask(...)

Generation options (keyword arguments of every call): max_new_tokens, temperature (0 = greedy, the
default), top_k, top_p, repetition_penalty, stop, seed. One Runtime may be shared by threads: calls that
use the model are serialised.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .backends import Backend, open_backend
from .errors import PromptError
from .generation import GenerationConfig, GenerationResult, Sampler, Timings
from .inputs import load_frame, preprocess_frame, preprocess_masks, to_masks
from .prompts import (
    COCO80,
    build_prompt,
    category_instruction,
    count_regions,
    match_category,
    parse_refer,
    refer_instruction,
    task_instruction,
)
from .tokenizer import PromptTokenizer

if TYPE_CHECKING:
    from .chat import Chat

DESCRIBE_TASKS = ("detail", "brief")


@dataclass
class Visual:
    """A frame and its regions after the vision stage: the multimodal table and its layout."""

    table: Any  # backend-native [T + N, D]
    n_image: int
    n_regions: int
    preprocess_ms: float
    vision_ms: float


class Runtime:
    def __init__(self, backend: Backend, tokenizer: PromptTokenizer, allow_empty_masks: bool = False):
        self.backend = backend
        self.tokenizer = tokenizer
        self.cfg = backend.cfg
        self.allow_empty_masks = allow_empty_masks
        self._lock = threading.Lock()
        self._owner: int | None = None

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        backend: str = "auto",
        device: str = "cpu",
        dtype: str | None = None,
        allow_empty_masks: bool = False,
        verify: bool = True,
    ) -> Runtime:
        """Load a checkpoint directory (llava or vila layout; torch backend) or an engine directory built by
        `python -m rgpt_rt.build` (onnx or trt backend). backend: "auto" | "torch" | "onnx" | "trt";
        device: "cpu" | "cuda". verify: check each engine file's sha256 against the manifest."""
        be = open_backend(path, backend=backend, device=device, dtype=dtype, verify=verify)
        return cls(be, PromptTokenizer(path, be.cfg), allow_empty_masks=allow_empty_masks)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    # ---- the vision stage ---------------------------------------------------------------------------------

    def encode(
        self, frame: Any, regions: Any = None, *, bgr: bool = False, allow_empty_masks: bool | None = None
    ) -> Visual:
        """Load, preprocess and encode a frame and its regions once (reusable across prompts)."""
        t0 = time.perf_counter()
        img = load_frame(frame, bgr=bgr)
        allow = self.allow_empty_masks if allow_empty_masks is None else allow_empty_masks
        masks = to_masks(regions, img.shape[:2], allow_empty=allow)
        s = self.cfg.vision.image_size
        pixels = preprocess_frame(img, self.cfg.vision)
        mask_px = preprocess_masks(masks, s)
        t1 = time.perf_counter()
        with self._exclusive():
            table, n_image = self.backend.visual_embeds(pixels, mask_px)
        t2 = time.perf_counter()
        return Visual(table, n_image, len(masks), (t1 - t0) * 1e3, (t2 - t1) * 1e3)

    # ---- the generation stage -----------------------------------------------------------------------------

    @contextmanager
    def _exclusive(self):
        me = threading.get_ident()
        if self._owner == me:
            raise RuntimeError(
                "this Runtime is already generating in this thread (an open stream?); "
                "finish or close that stream before the next call"
            )
        with self._lock:
            self._owner = me
            try:
                yield
            finally:
                self._owner = None

    def _prompt_ids(self, visual: Visual, turns: list[tuple[str, str | None]], region_rows: list[int]) -> list[int]:
        placeholders = sum(count_regions(q, self.cfg.region_token) for q, _ in turns)
        if placeholders != len(region_rows):
            raise PromptError(
                f"the instruction has {placeholders} <region> placeholders but {len(region_rows)} "
                "region masks were given; they must match"
            )
        prompt = build_prompt(turns, self.cfg.conv_template)
        ids = self.tokenizer.encode_prompt(prompt, visual.n_image, region_rows)
        ctx = self.cfg.llm.max_position_embeddings
        if len(ids) >= ctx:
            raise PromptError(
                f"the prompt is {len(ids)} tokens ({visual.n_image} of them image tokens) but the "
                f"model's context is {ctx}; shorten the instruction or the history"
            )
        return ids

    def _run(
        self,
        visual: Visual,
        ids: list[int],
        gen: GenerationConfig,
        keep_first_logits: bool,
        out: list[GenerationResult],
    ) -> Iterator[str]:
        """Yield text pieces as they become final; append the GenerationResult to `out` at the end."""
        timings = Timings(preprocess_ms=visual.preprocess_ms, vision_ms=visual.vision_ms, prompt_tokens=len(ids))
        max_new = min(gen.max_new_tokens, self.cfg.llm.max_position_embeddings - len(ids))
        sampler = Sampler(gen)
        stop_ids = self.tokenizer.stop_ids
        generated: list[int] = []
        emitted, text, finish = "", "", "length"
        with self._exclusive():
            self.backend.reserve(len(ids) + max_new)
            t0 = time.perf_counter()
            logits = self.backend.prefill(ids, visual.table)
            t1 = time.perf_counter()
            timings.prefill_ms = (t1 - t0) * 1e3
            first_logits = logits.copy() if keep_first_logits else None
            pos = len(ids)
            for i in range(max_new):
                tok = sampler(logits, generated)
                if tok in stop_ids:
                    finish = "eos"
                    break
                generated.append(tok)
                text = self.tokenizer.decode(generated).lstrip()
                cut = min((j for j in (text.find(s) for s in gen.stop) if j >= 0), default=-1)
                if cut >= 0:
                    text, finish = text[:cut], "stop"
                    break
                ready = _stable_prefix(text, gen.stop)
                if len(ready) > len(emitted):
                    yield ready[len(emitted) :]
                    emitted = ready
                if i + 1 < max_new:
                    logits = self.backend.step(tok, pos)
                    pos += 1
            timings.decode_ms = (time.perf_counter() - t1) * 1e3
        timings.tokens = len(generated)
        final = text.strip()
        if len(final) > len(emitted):
            yield final[len(emitted) :]
        out.append(GenerationResult(final, generated, finish, timings, first_logits))

    def _generate(self, visual: Visual, turns, region_rows, gen: GenerationConfig, keep_first_logits=False):
        out: list[GenerationResult] = []
        for _ in self._run(visual, self._prompt_ids(visual, turns, region_rows), gen, keep_first_logits, out):
            pass
        return out[0]

    # ---- public API ---------------------------------------------------------------------------------------

    def generate(
        self,
        frame: Any,
        instruction: str,
        masks: Any = None,
        *,
        history: list[tuple[str, str]] = (),
        bgr: bool = False,
        allow_empty_masks: bool | None = None,
        return_first_logits: bool = False,
        **generation,
    ) -> GenerationResult:
        """Answer `instruction` (with `<region>` placeholders for `masks`, in order) about `frame`.

        history: earlier (instruction, answer) turns of the same conversation; their placeholders take the
        first masks, in order, and this turn's the rest.
        """
        gen = GenerationConfig.from_kwargs(**generation)
        visual = self.encode(frame, masks, bgr=bgr, allow_empty_masks=allow_empty_masks)
        turns = [*history, (instruction, None)]
        return self._generate(visual, turns, list(range(visual.n_regions)), gen, return_first_logits)

    def ask(self, frame: Any, instruction: str, masks: Any = None, **kwargs) -> str:
        return self.generate(frame, instruction, masks, **kwargs).text

    def stream(
        self,
        frame: Any,
        instruction: str,
        masks: Any = None,
        *,
        bgr: bool = False,
        allow_empty_masks: bool | None = None,
        **generation,
    ) -> Iterator[str]:
        """Iterator of text pieces; their concatenation equals `ask(...)` with the same arguments."""
        gen = GenerationConfig.from_kwargs(**generation)
        visual = self.encode(frame, masks, bgr=bgr, allow_empty_masks=allow_empty_masks)
        ids = self._prompt_ids(visual, [(instruction, None)], list(range(visual.n_regions)))
        return self._run(visual, ids, gen, False, [])

    def describe(self, frame: Any, mask: Any, task: str = "detail", **kwargs) -> str:
        """One region's description: task "detail" (default) or "brief"."""
        if task not in DESCRIBE_TASKS:
            raise PromptError(f"unknown describe task '{task}'; use one of {', '.join(DESCRIBE_TASKS)}")
        return self.generate(frame, task_instruction(task), mask, **kwargs).text

    def describe_many(
        self,
        frame: Any,
        masks: Any,
        task: str = "detail",
        *,
        bgr: bool = False,
        allow_empty_masks: bool | None = None,
        **generation,
    ) -> list[str]:
        """One description per region; the frame is encoded once for all of them."""
        if task not in DESCRIBE_TASKS:
            raise PromptError(f"unknown describe task '{task}'; use one of {', '.join(DESCRIBE_TASKS)}")
        gen = GenerationConfig.from_kwargs(**generation)
        visual = self.encode(frame, masks, bgr=bgr, allow_empty_masks=allow_empty_masks)
        turns = [(task_instruction(task), None)]
        return [self._generate(visual, turns, [k], gen).text for k in range(visual.n_regions)]

    def classify(self, frame: Any, mask: Any, vocabulary: list[str] | None = None, **kwargs) -> str | None:
        """The category of one region: a COCO-80 name, or one of `vocabulary` when given (which replaces COCO-80).

        Returns the vocabulary entry the model's answer names, or None when it names none of them (the raw
        answer is available from `generate` with the same instruction).
        """
        vocab = list(COCO80) if vocabulary is None else list(vocabulary)
        if not vocab or not all(isinstance(v, str) and v.strip() for v in vocab):
            raise PromptError("vocabulary must be a non-empty list of non-empty category names")
        text = self.generate(frame, category_instruction(vocabulary), mask, **kwargs).text
        return match_category(text, vocab)

    def refer(self, frame: Any, masks: Any, expression: str, **kwargs) -> int | None:
        """Which region (0-based index) fits `expression`; None for 'No corresponding options found.'"""
        img = load_frame(frame, bgr=kwargs.pop("bgr", False))
        allow = kwargs.pop("allow_empty_masks", None)
        stack = to_masks(masks, img.shape[:2], allow_empty=self.allow_empty_masks if allow is None else allow)
        text = self.generate(
            img, refer_instruction(len(stack), expression), stack, allow_empty_masks=True, **kwargs
        ).text
        return parse_refer(text, len(stack))

    def chat(self, frame: Any, masks: Any = None, *, bgr: bool = False) -> Chat:
        from .chat import Chat

        return Chat(self, frame, masks, bgr=bgr)


def _stable_prefix(text: str, stops: tuple[str, ...]) -> str:
    """The part of `text` that later tokens cannot change: no half-decoded character at the end, no suffix
    that could still grow into a stop string, and no trailing whitespace (the final text is stripped)."""
    if text.endswith("\ufffd"):
        text = text.rstrip("\ufffd")
    hold = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                hold = max(hold, k)
                break
    return text[: len(text) - hold].rstrip()
