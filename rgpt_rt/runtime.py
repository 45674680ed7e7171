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
    rt.ask(frame, "How far is <region> from <region>?", [m1, m2], depth=depth_map)   # SpatialRGPT with depth

Every call that takes regions also takes `depth`: an [H, W] depth map of the frame (SpatialRGPT checkpoints,
torch backend; see rgpt_rt/inputs/depth.py for what is accepted). With a depth map, an instruction that has no
`<depth>` placeholder gets one after each region placeholder, as SpatialRGPT's prompts write it
(`<mask> <depth>`); the k-th `<depth>` is the k-th region's depth. `<depth>` without a depth map is a PromptError.

Generation options (keyword arguments of every call): max_new_tokens, temperature (0 = greedy, the
default), top_k, top_p, repetition_penalty, stop, seed. One Runtime may be shared by threads: calls that
use the model are serialised.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import decode_loop
from .backends import Backend, open_backend
from .errors import InputError, MaskError, PromptError
from .generation import GenerationConfig, GenerationResult, Timings
from .inputs import depth_image, load_frame, preprocess_masks, to_masks
from .inputs.regions import _is_box_tuple
from .prompts import (
    COCO80,
    DEPTH,
    TEMPLATES,
    category_instruction,
    check_turns,
    count_depth,
    count_regions,
    match_category,
    parse_refer,
    prompt_parts,
    refer_instruction,
    task_instruction,
    with_depth,
)
from .tokenizer import PromptTokenizer

if TYPE_CHECKING:
    from .chat import Chat

DESCRIBE_TASKS = ("detail", "brief")
MAX_REGIONS = 4096  # regions encoded together (region_pool's limit per call)
DESCRIBE_BATCH = 16  # regions that describe_many decodes together (each row holds its own KV cache)


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
    row_keys: list = field(default_factory=list)  # content key of each table row (image i, region k, depth k)
    n_depth: int = 0  # depth embeds after the regions (N with a depth map, else 0)

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
        conv_template: str | None = None,
    ) -> Runtime:
        """Load a checkpoint directory (llava or vila layout; torch backend) or an engine directory built by
        `python -m rgpt_rt.build` (onnx or trt backend). backend: "auto" | "torch" | "onnx" | "trt";
        device: "cpu" | "cuda". verify: check each engine file's sha256 against the manifest. precision (torch
        backend): "fp32" | "fp16" | "bf16" | "int8" (weight-only int8 decoder through rgpt_rt.ops.int8_linear).
        decode (torch backend): "fused" (native decode ops; the default on CUDA) | "reference" (the model's own
        forward; the default on the CPU) | "compile" (that forward through torch.compile). conv_template:
        "vicuna_v1" | "llama_3", overriding the checkpoint's (or, where its config names none, the one inferred
        from its tokenizer)."""
        be = open_backend(
            path, backend=backend, device=device, dtype=dtype, verify=verify, precision=precision, decode=decode
        )
        if conv_template is not None:  # the caller knows better than the checkpoint's config or our inference
            if conv_template not in TEMPLATES:
                raise ValueError(f"conv_template must be one of {', '.join(TEMPLATES)}, got {conv_template!r}")
            be.cfg = dataclasses.replace(be.cfg, conv_template=conv_template)
        return cls(be, PromptTokenizer(path, be.cfg), allow_empty_masks=allow_empty_masks)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    # ---- the vision stage ---------------------------------------------------------------------------------

    def encode(
        self,
        frame: Any,
        regions: Any = None,
        *,
        bgr: bool = False,
        allow_empty_masks: bool | None = None,
        depth: Any = None,
    ) -> Visual:
        """Load, preprocess and encode a frame and its regions (and, with a depth map, the regions' depth) once,
        reusable across prompts."""
        t0 = time.perf_counter()
        img = load_frame(frame, bgr=bgr)
        allow = self.allow_empty_masks if allow_empty_masks is None else allow_empty_masks
        masks = to_masks(regions, img.shape[:2], allow_empty=allow)
        depth_img = None
        if depth is not None:
            if not self.cfg.enable_depth:
                raise InputError(
                    "a depth map was given but this checkpoint has no depth branch (its config does not enable "
                    "depth, or it has no depth_projector): leave depth out"
                )
            depth_img = depth_image(depth, img.shape[:2])  # InputError for a wrong shape or bad values
        if len(masks) > MAX_REGIONS:
            raise MaskError(
                f"{len(masks)} regions in one call; at most {MAX_REGIONS} are pooled together "
                "(describe_many takes any number: it works through them in batches)"
            )
        s = self.cfg.vision.image_size
        key = content_key(img)
        # A frame the backend already holds needs no preprocessing (its refined map and image embeddings are
        # cached); the masks are always new work.
        prep = self.backend.preprocess_frame  # on the backend's own device (the torch backend on CUDA)
        pixels = None if self.backend.has_frame(key) else prep(img, self.cfg.vision)
        mask_px = preprocess_masks(masks, s, mode=self.cfg.image_aspect_ratio)
        depth_px = None if depth_img is None else prep(depth_img, self.cfg.vision)  # the frame's geometry
        extra = {} if depth_px is None else {"depth": depth_px}
        t1 = time.perf_counter()
        with self._exclusive():
            if pixels is None and not self.backend.has_frame(key):  # evicted by another thread meanwhile
                pixels = prep(img, self.cfg.vision)
            table, n_image = self.backend.visual_embeds(pixels, mask_px, frame_key=key, **extra)
        t2 = time.perf_counter()
        rows = [("image", key, i) for i in range(n_image)] + [("region", content_key(m)) for m in mask_px]
        n_depth = 0
        if depth_img is not None:
            dkey = content_key(depth_img)
            rows += [("depth", dkey, content_key(m)) for m in mask_px]
            n_depth = len(mask_px)
        return Visual(table, n_image, len(masks), (t1 - t0) * 1e3, (t2 - t1) * 1e3, rows, n_depth)

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

    def _depth_turns(self, turns: list[tuple[str, str | None]], depth: bool) -> list[tuple[str, str | None]]:
        """With a depth map, instructions without `<depth>` get one after each region placeholder (SpatialRGPT's
        `<mask> <depth>`); without one, a `<depth>` placeholder is a PromptError."""
        n = sum(count_depth(q) for q, _ in turns)
        if not depth:
            if n:
                raise PromptError(
                    f"the instruction has {n} {DEPTH} placeholder{'s' if n > 1 else ''} but no depth map was given: "
                    "pass depth= (an [H, W] depth map of the frame; CLI: --depth FILE), or remove the placeholders"
                )
            return turns
        if n:
            return turns
        return [(with_depth(q, self.cfg.region_token), a) for q, a in turns]

    def _prompt_ids(self, visual: Visual, turns: list[tuple[str, str | None]], region_rows: list[int]) -> list[int]:
        turns = self._depth_turns(turns, visual.n_depth > 0)
        placeholders = sum(count_regions(q, self.cfg.region_token) for q, _ in turns)
        if placeholders != len(region_rows):
            raise PromptError(
                f"the instruction has {placeholders} <region> placeholders but {len(region_rows)} "
                "region masks were given; they must match"
            )
        depths = sum(count_depth(q) for q, _ in turns)
        if depths > len(region_rows):
            raise PromptError(
                f"the instruction has {depths} {DEPTH} placeholders but only {len(region_rows)} regions: the k-th "
                f"{DEPTH} is the depth of the k-th region"
            )
        prompt = prompt_parts(turns, self.cfg.conv_template)  # earlier answers are never parsed for placeholders
        depth_rows = [visual.n_regions + r for r in region_rows] if visual.n_depth else []
        ids = self.tokenizer.encode_prompt(prompt, visual.n_image, region_rows, depth_rows)
        ctx = self.cfg.llm.max_position_embeddings
        if len(ids) >= ctx:
            raise PromptError(
                f"the prompt is {len(ids)} tokens ({visual.n_image} of them image tokens) but the "
                f"model's context is {ctx}; shorten the instruction or the history"
            )
        return ids

    def _decode(
        self, visual: Visual, ids: list[list[int]], gen: GenerationConfig, results: list, want_logits: bool = False
    ) -> Iterator[tuple[int, str]]:
        """The generation loop (rgpt_rt/decode_loop.py) over B prompts on this frame, holding the model."""
        vocab = self.cfg.llm.vocab_size
        timings = Timings(visual.preprocess_ms, visual.vision_ms, prompt_tokens=len(ids[0]))
        keys = [visual.token_keys(r, vocab) for r in ids]
        with self._exclusive():
            yield from decode_loop.generate(
                self.backend, self.tokenizer, visual.table, ids, keys, gen, timings, results, want_logits
            )

    def _generate(self, visual: Visual, turns, region_rows, gen: GenerationConfig, want_logits=False):
        results: list[GenerationResult] = []
        for _ in self._decode(visual, [self._prompt_ids(visual, turns, region_rows)], gen, results, want_logits):
            pass
        return results[0]

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
        depth: Any = None,
        **generation,
    ) -> GenerationResult:
        """Answer `instruction` (with `<region>` placeholders for `masks`, in order) about `frame`.

        history: earlier (instruction, answer) turns of the same conversation; their placeholders take the
        first masks, in order, and this turn's the rest. depth: an [H, W] depth map of the frame for `<depth>`
        placeholders (SpatialRGPT; see the module docstring).
        """
        gen = GenerationConfig.from_kwargs(**generation)
        turns = [*history, (instruction, None)] if isinstance(history, (list, tuple)) else history
        check_turns(turns)  # before the vision stage: a bad instruction costs nothing
        self._depth_turns(turns, depth is not None)
        visual = self.encode(frame, masks, bgr=bgr, allow_empty_masks=allow_empty_masks, depth=depth)
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
        depth: Any = None,
        **generation,
    ) -> Iterator[str]:
        """Iterator of text pieces; their concatenation equals `ask(...)` with the same arguments."""
        gen = GenerationConfig.from_kwargs(**generation)
        check_turns([(instruction, None)])
        self._depth_turns([(instruction, None)], depth is not None)
        visual = self.encode(frame, masks, bgr=bgr, allow_empty_masks=allow_empty_masks, depth=depth)
        ids = self._prompt_ids(visual, [(instruction, None)], list(range(visual.n_regions)))
        return (piece for _, piece in self._decode(visual, [ids], gen, []))

    def describe(self, frame: Any, mask: Any, task: str = "detail", **kwargs) -> str:
        """One region's description: task "detail" (default) or "brief"."""
        if task not in DESCRIBE_TASKS:
            raise PromptError(f"unknown describe task '{task}'; use one of {', '.join(DESCRIBE_TASKS)}")
        img = load_frame(frame, bgr=kwargs.pop("bgr", False))
        allow = kwargs.pop("allow_empty_masks", None)
        stack = to_masks(mask, img.shape[:2], allow_empty=self.allow_empty_masks if allow is None else allow)
        if len(stack) != 1:
            raise PromptError(
                f"describe() takes one region, got {len(stack)}; use describe_many(frame, masks) for one "
                "description each, or ask() with one <region> per mask"
            )
        return self.generate(img, task_instruction(task), stack, allow_empty_masks=True, **kwargs).text

    def describe_many(
        self,
        frame: Any,
        masks: Any,
        task: str = "detail",
        *,
        bgr: bool = False,
        allow_empty_masks: bool | None = None,
        batch: bool = True,
        batch_size: int = DESCRIBE_BATCH,
        depth: Any = None,
        **generation,
    ) -> list[str]:
        """One description per region; the frame is encoded once for all of them. With batch (the default)
        the shared prompt prefix is prefilled once and up to `batch_size` regions decode together, each stopping
        on its own; batch=False describes them one after another."""
        if task not in DESCRIBE_TASKS:
            raise PromptError(f"unknown describe task '{task}'; use one of {', '.join(DESCRIBE_TASKS)}")
        if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        gen = GenerationConfig.from_kwargs(**generation)
        img = load_frame(frame, bgr=bgr)
        allow = self.allow_empty_masks if allow_empty_masks is None else allow_empty_masks
        turns = [(task_instruction(task), None)]
        texts: list[str] = []
        step = int(batch_size) if batch else 1
        regions = _region_list(masks)  # masks are made per batch: any number of regions fits in memory
        for lo in range(0, len(regions), step):
            stack = to_masks(regions[lo : lo + step], img.shape[:2], allow_empty=True)
            empty = [lo + i for i in range(len(stack)) if not allow and not stack[i].any()]
            if empty:
                raise MaskError(
                    f"region {', '.join(map(str, empty))} (0-based) is empty: its mask has no pixel inside the "
                    "frame. Pass allow_empty_masks=True to describe an empty region anyway (it pools to zeros)"
                )
            visual = self.encode(img, stack, allow_empty_masks=True, depth=depth)  # the frame is cached where possible
            ids = [self._prompt_ids(visual, turns, [k]) for k in range(visual.n_regions)]
            results: list[GenerationResult] = []
            for _ in self._decode(visual, ids, gen, results):
                pass
            texts += [r.text for r in results]
        return texts

    def classify(self, frame: Any, mask: Any, vocabulary: list[str] | None = None, **kwargs) -> str | None:
        """The category of one region: a COCO-80 name, or one of `vocabulary` when given (which replaces COCO-80).

        Returns the vocabulary entry the model's answer names, or None when it names none of them (the raw
        answer is available from `generate` with the same instruction).
        """
        if isinstance(vocabulary, (str, bytes)):
            raise TypeError(f"vocabulary must be a list of category names, not a single string ({vocabulary!r})")
        vocab = list(COCO80) if vocabulary is None else list(vocabulary)
        if not vocab or not all(isinstance(v, str) and v.strip() for v in vocab):
            raise PromptError("vocabulary must be a non-empty list of non-empty category names")
        text = self.generate(frame, category_instruction(vocabulary), mask, **kwargs).text
        return match_category(text, vocab)

    def refer(self, frame: Any, masks: Any, expression: str, **kwargs) -> int | None:
        """Which region (0-based index) fits `expression`; None for 'No corresponding options found.' The
        answer's `Region [k]` is read with the checkpoint's own numbering (cfg.region_index_base)."""
        img = load_frame(frame, bgr=kwargs.pop("bgr", False))
        allow = kwargs.pop("allow_empty_masks", None)
        stack = to_masks(masks, img.shape[:2], allow_empty=self.allow_empty_masks if allow is None else allow)
        text = self.generate(
            img, refer_instruction(len(stack), expression), stack, allow_empty_masks=True, **kwargs
        ).text
        return parse_refer(text, len(stack), self.cfg.region_index_base)

    def score(
        self,
        frame: Any,
        instruction: str,
        masks: Any,
        candidates: list[str],
        *,
        end: bool = True,
        bgr: bool = False,
        allow_empty_masks: bool | None = None,
        depth: Any = None,
    ) -> list[float]:
        """Log-likelihood of each candidate answer to `instruction` (sum over its tokens, as the template writes
        an answer; with `end`, the end-of-answer token too, so "car" does not also score "car seat"). The
        candidates share the prompt's KV and are scored together; the frame is encoded once. Used for
        likelihood-ranked classification (mAP) in rgpt_rt.eval."""
        if isinstance(candidates, (str, bytes)) or not candidates:
            raise TypeError("candidates must be a non-empty list of answer strings")
        if not all(isinstance(c, str) and c for c in candidates):
            raise TypeError("every candidate must be a non-empty string")
        self._depth_turns([(instruction, None)], depth is not None)
        visual = self.encode(frame, masks, bgr=bgr, allow_empty_masks=allow_empty_masks, depth=depth)
        prompt = self._prompt_ids(visual, [(instruction, None)], list(range(visual.n_regions)))
        template = TEMPLATES[self.cfg.conv_template]
        stop = self.tokenizer.tok.token_to_id(template.stop) if end else None
        rows = [
            self.tokenizer.encode_text(template.answer_prefix + c) + ([stop] if stop is not None else [])
            for c in candidates
        ]
        ctx = self.cfg.llm.max_position_embeddings
        if len(prompt) + max(len(r) for r in rows) > ctx:
            raise PromptError(f"the prompt and the longest candidate exceed the model's context {ctx}")
        keys = visual.token_keys(prompt, self.cfg.llm.vocab_size)
        scores: list[float] = []
        with self._exclusive():  # batches of candidates, each reusing the prompt's KV: the cache stays small
            for lo in range(0, len(rows), DESCRIBE_BATCH):
                scores += decode_loop.score(self.backend, visual.table, prompt, keys, rows[lo : lo + DESCRIBE_BATCH])
        return scores

    def chat(self, frame: Any, masks: Any = None, *, bgr: bool = False, depth: Any = None) -> Chat:
        from .chat import Chat

        return Chat(self, frame, masks, bgr=bgr, depth=depth)


def _region_list(masks: Any) -> list:
    """describe_many's regions as a list of single regions (a [N, H, W] array is N masks; a box is one)."""
    if masks is None:
        return []
    if isinstance(masks, np.ndarray) and masks.ndim == 3:
        return list(masks)
    if isinstance(masks, (list, tuple)) and not _is_box_tuple(masks):
        return list(masks)
    return [masks]
