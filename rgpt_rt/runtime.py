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

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

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


def content_key(arr: np.ndarray) -> str:
    """A digest of an array's shape, dtype and bytes: equal frames (or masks) give equal keys."""
    h = hashlib.blake2b(digest_size=16)
    h.update(str((arr.shape, arr.dtype.str)).encode())
    h.update(np.ascontiguousarray(arr).data)
    return h.hexdigest()


@dataclass
class Visual:
    """A frame and its regions after the vision stage: the multimodal table and its layout."""

    table: Any  # backend-native [T + N, D]
    n_image: int
    n_regions: int
    preprocess_ms: float
    vision_ms: float
    row_keys: list = field(default_factory=list)  # content key of each table row (image i, region k)

    def token_keys(self, ids: list[int], vocab: int) -> list:
        """What each token is: its id for text, its table row's content key for image and region tokens."""
        return [i if i < vocab else self.row_keys[i - vocab] for i in ids]


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
        precision: str | None = None,
        decode: str | None = None,
    ) -> Runtime:
        """Load a checkpoint directory (llava or vila layout; torch backend) or an engine directory built by
        `python -m rgpt_rt.build` (onnx or trt backend). backend: "auto" | "torch" | "onnx" | "trt";
        device: "cpu" | "cuda". verify: check each engine file's sha256 against the manifest. precision (torch
        backend): "fp32" | "fp16" | "bf16" | "int8" (weight-only int8 decoder through rgpt_rt.ops.int8_linear).
        decode (torch backend): "fused" (native decode ops; the default on CUDA) | "reference" (the model's own
        forward; the default on the CPU) | "compile" (that forward through torch.compile)."""
        be = open_backend(
            path, backend=backend, device=device, dtype=dtype, verify=verify, precision=precision, decode=decode
        )
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
        key = content_key(img)
        # A frame the backend already holds needs no preprocessing (its refined map and image embeddings are
        # cached); the masks are always new work.
        # A backend may preprocess frames on its own device (the torch backend on CUDA).
        prep = getattr(self.backend, "preprocess_frame", preprocess_frame)
        pixels = None if self.backend.has_frame(key) else prep(img, self.cfg.vision)
        mask_px = preprocess_masks(masks, s)
        t1 = time.perf_counter()
        with self._exclusive():
            if pixels is None and not self.backend.has_frame(key):  # evicted by another thread meanwhile
                pixels = prep(img, self.cfg.vision)
            table, n_image = self.backend.visual_embeds(pixels, mask_px, frame_key=key)
        t2 = time.perf_counter()
        rows = [("image", key, i) for i in range(n_image)] + [("region", content_key(m)) for m in mask_px]
        return Visual(table, n_image, len(masks), (t1 - t0) * 1e3, (t2 - t1) * 1e3, rows)

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
        seq = _Sequence(self.tokenizer, gen, min(gen.max_new_tokens, self.cfg.llm.max_position_embeddings - len(ids)))
        emitted = ""
        with self._exclusive():
            self.backend.reserve(len(ids) + seq.max_new)
            t0 = time.perf_counter()
            logits = self.backend.prefill(ids, visual.table, visual.token_keys(ids, self.cfg.llm.vocab_size))
            t1 = time.perf_counter()
            timings.prefill_ms = (t1 - t0) * 1e3
            first_logits = logits.copy() if keep_first_logits else None
            pos = len(ids)
            while True:
                tok = seq.accept(logits)
                if seq.done:
                    break
                ready = _stable_prefix(seq.text, gen.stop)
                if len(ready) > len(emitted):
                    yield ready[len(emitted) :]
                    emitted = ready
                logits = self.backend.step(tok, pos)
                pos += 1
            timings.decode_ms = (time.perf_counter() - t1) * 1e3
        timings.tokens = len(seq.generated)
        final = seq.text.strip()
        if len(final) > len(emitted):
            yield final[len(emitted) :]
        out.append(GenerationResult(final, seq.generated, seq.finish, timings, first_logits))

    def _run_batch(self, visual: Visual, ids_list: list[list[int]], gen: GenerationConfig) -> list[str]:
        """Several prompts that differ only after a shared prefix (one per region): prefill the prefix once,
        the suffixes as one batch, then decode all rows together, each stopping on its own."""
        vocab = self.cfg.llm.vocab_size
        first_region = vocab + visual.n_image
        p = min(next(i for i, t in enumerate(ids) if t >= first_region) for ids in ids_list)
        ctx = self.cfg.llm.max_position_embeddings
        seqs = [_Sequence(self.tokenizer, gen, min(gen.max_new_tokens, ctx - len(ids))) for ids in ids_list]
        pos = [len(ids) for ids in ids_list]
        with self._exclusive():
            self.backend.reserve(min(ctx, max(pos) + max(s.max_new for s in seqs)), batch=len(ids_list))
            logits = self.backend.prefill_batch(
                ids_list[0][:p], visual.token_keys(ids_list[0][:p], vocab), [ids[p:] for ids in ids_list], visual.table
            )
            while True:
                tokens = []
                for b, seq in enumerate(seqs):
                    tok = seq.accept(logits[b]) if not seq.done else None
                    tokens.append(tok if tok is not None and not seq.done else 0)
                if all(s.done for s in seqs):
                    break
                # Finished rows keep writing one slot of their own (their output is ignored).
                logits = self.backend.step_batch(tokens, pos)
                pos = [q + (0 if s.done else 1) for q, s in zip(pos, seqs)]
        return [s.text.strip() for s in seqs]

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
        batch: bool = True,
        **generation,
    ) -> list[str]:
        """One description per region; the frame is encoded once for all of them. With batch (the default,
        on backends that support it) the shared prompt prefix is prefilled once and all regions decode
        together, each stopping on its own; batch=False describes them one after another."""
        if task not in DESCRIBE_TASKS:
            raise PromptError(f"unknown describe task '{task}'; use one of {', '.join(DESCRIBE_TASKS)}")
        gen = GenerationConfig.from_kwargs(**generation)
        visual = self.encode(frame, masks, bgr=bgr, allow_empty_masks=allow_empty_masks)
        turns = [(task_instruction(task), None)]
        if batch and visual.n_regions > 1 and hasattr(self.backend, "prefill_batch"):
            ids_list = [self._prompt_ids(visual, turns, [k]) for k in range(visual.n_regions)]
            return self._run_batch(visual, ids_list, gen)
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


class _Sequence:
    """One sequence's decoding state: sampling, end-of-sequence, stop strings, the length limit, its text."""

    def __init__(self, tokenizer: PromptTokenizer, gen: GenerationConfig, max_new: int):
        self.tokenizer, self.gen, self.max_new = tokenizer, gen, max_new
        self.sampler = Sampler(gen)
        self.generated: list[int] = []
        self.text, self.finish, self.done = "", "length", max_new <= 0

    def accept(self, logits: np.ndarray) -> int | None:
        """Pick the next token; returns it (None at end-of-sequence) and updates done/finish/text."""
        tok = self.sampler(logits, self.generated)
        if tok in self.tokenizer.stop_ids and not self.gen.ignore_eos:
            self.finish, self.done = "eos", True
            return None
        self.generated.append(tok)
        self.text = self.tokenizer.decode(self.generated).lstrip()
        cut = min((j for j in (self.text.find(s) for s in self.gen.stop) if j >= 0), default=-1)
        if cut >= 0:
            self.text, self.finish, self.done = self.text[:cut], "stop", True
        elif len(self.generated) >= self.max_new:
            self.done = True
        return tok


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
