"""Prompts for int8 calibration and quality checks: the shipped sample image with seeded random regions and
the task instructions, turned into decoder inputs (ids, multimodal table, positions) by the reference path."""

from __future__ import annotations

import numpy as np
import torch

from rgpt_rt.inputs import load_frame, preprocess_frame, preprocess_masks, to_masks
from rgpt_rt.prompts import TASKS, build_prompt, category_instruction, refer_instruction
from rgpt_rt.tokenizer import PromptTokenizer


def _sample_image() -> np.ndarray:
    from rgpt_rt.cli import SAMPLE_IMAGE

    return load_frame(SAMPLE_IMAGE)


def decoder_inputs(model, tokenizer: PromptTokenizer, count: int, seed: int) -> list[tuple[list[int], np.ndarray]]:
    """`count` prompts -> [(ids, mm_table [M, D] float32)]."""
    frame = _sample_image()
    h, w = frame.shape[:2]
    rng = np.random.default_rng(seed)
    instructions = [
        TASKS["detail"],
        TASKS["brief"],
        category_instruction(None),
        refer_instruction(2, "the red car"),
        "Is <region> to the left of <region>? Answer briefly.",
    ]
    cfg = model.cfg
    pixels = torch.from_numpy(preprocess_frame(frame, cfg.vision, mode=cfg.image_aspect_ratio))
    out = []
    for i in range(count):
        instr = instructions[i % len(instructions)]
        n = instr.count("<region>")
        boxes = []
        for _ in range(n):
            x0, y0 = rng.integers(0, w - 16), rng.integers(0, h - 16)
            boxes.append((int(x0), int(y0), int(rng.integers(x0 + 8, w)), int(rng.integers(y0 + 8, h))))
        masks = preprocess_masks(to_masks(boxes, (h, w)), cfg.vision.image_size, mode=cfg.image_aspect_ratio)
        with torch.no_grad():
            image, regions = model.visual_embeds(pixels, torch.from_numpy(masks))
        table = torch.cat([image, regions]).float().numpy()
        ids = tokenizer.encode_prompt(build_prompt([(instr, None)], cfg.conv_template), image.shape[0], list(range(n)))
        out.append((ids, table))
    return out
