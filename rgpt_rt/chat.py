"""Multi-turn conversation about one frame and its regions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import PromptError
from .inputs import load_frame, to_masks
from .prompts import count_regions

if TYPE_CHECKING:
    from .runtime import Runtime


class Chat:
    """chat = rt.chat(frame, masks); chat.ask("What is <region>?"); chat.ask("What colour is it?")

    A turn's `<region>` placeholders take the masks passed to `ask`, or else the chat's masks (their count
    must match); a turn without placeholders needs no masks. The prompt holds the whole history in the
    template's multi-turn format.
    """

    def __init__(self, runtime: Runtime, frame: Any, masks: Any = None, *, bgr: bool = False, depth: Any = None):
        self.rt = runtime
        # Owned copies: camera loops reuse their buffers, and later turns must see the pixels of this frame.
        self.frame = np.array(load_frame(frame, bgr=bgr), copy=True)
        self.masks = np.array(to_masks(masks, self.frame.shape[:2], allow_empty=runtime.allow_empty_masks), copy=True)
        # The frame's depth map (SpatialRGPT), owned like the frame; every turn uses it.
        self.depth = None if depth is None else np.array(depth, copy=True) if isinstance(depth, np.ndarray) else depth
        self.history: list[tuple[str, str]] = []
        self._turn_masks: list[np.ndarray] = []

    def ask(self, instruction: str, masks: Any = None, **generation) -> str:
        n = count_regions(instruction, self.rt.cfg.region_token)
        h, w = self.frame.shape[:2]
        if masks is not None:
            turn = np.array(to_masks(masks, (h, w), allow_empty=self.rt.allow_empty_masks), copy=True)
        elif n == 0:
            turn = np.zeros((0, h, w), np.float32)
        else:
            turn = self.masks
        if len(turn) != n:
            raise PromptError(f"this turn has {n} <region> placeholders but {len(turn)} region masks apply to it")
        all_masks = np.concatenate([*self._turn_masks, turn]) if self._turn_masks else turn
        result = self.rt.generate(
            self.frame,
            instruction,
            all_masks,
            history=self.history,
            allow_empty_masks=True,
            depth=self.depth,
            **generation,
        )
        self.history.append((instruction, result.text))
        self._turn_masks.append(turn)
        return result.text

    def reset(self) -> None:
        self.history.clear()
        self._turn_masks.clear()
