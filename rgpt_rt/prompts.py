"""Conversation templates, task instructions and the tokenisation contract (DESIGN.md section 1).

Contract: build the prompt string from the template; split it at the image token and the region
placeholders; encode each text chunk with add_special_tokens=False; put BOS once at the start; splice the
image embeddings at the image token and region embedding k at the k-th placeholder. Spliced positions are
ids >= vocab_size that address the multimodal table [image embeds (T), region embeds (N)]:
image token i -> vocab_size + i, region k -> vocab_size + T + k, and (SpatialRGPT, with a depth map) the k-th
`<depth>` -> vocab_size + T + N + k: the depth embedding of region k.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import PromptError

REGION = "<region>"
IMAGE = "<image>"
DEPTH = "<depth>"  # SpatialRGPT: the k-th one is region k's depth embedding (a depth map must be given)


@dataclass(frozen=True)
class Template:
    name: str
    head: str  # everything before the image token of the first user turn
    assistant: str  # closes a user turn and opens the assistant's
    answer_prefix: str  # before an earlier answer in the history
    answer_end: str  # after an earlier answer (the end-of-turn token)
    user: str  # opens a later user turn
    stop: str  # the token that ends an answer


VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the user's questions."
)
LLAMA3_SYSTEM = (
    "You are a helpful language and vision assistant. You are able to understand the visual content "
    "that the user provides, and assist the user with a variety of tasks using natural language."
)

TEMPLATES = {
    "vicuna_v1": Template(
        "vicuna_v1",
        head=VICUNA_SYSTEM + " USER: ",
        assistant=" ASSISTANT:",
        answer_prefix=" ",
        answer_end="</s>",
        user="USER: ",
        stop="</s>",
    ),
    "llama_3": Template(
        "llama_3",
        head=f"<|start_header_id|>system<|end_header_id|>\n\n{LLAMA3_SYSTEM}<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n",
        assistant="<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
        answer_prefix="",
        answer_end="<|eot_id|>",
        user="<|start_header_id|>user<|end_header_id|>\n\n",
        stop="<|eot_id|>",
    ),
}

# Task-guided instructions (the paper's wording where it has one).
TASKS = {
    "detail": "Describe in detail the object located at <region> in the image.",
    "brief": "Provide a short description of <region>.",
    "category": "What category name best describes the region represented by <region>? "
    "Answer the question using {vocabulary} category names.",
    "refer": 'From the provided masks denoted by {regions}, which one fits "{expression}"? '
    "Answer the question using the template Region [x].",
    "caption": "In the context of the entire image, {caption}, describe the close-up region in detail.",
    "caption_class": "In the context of the entire image, {caption}, describe the {class_name} in the close-up "
    "region in detail.",
}

COCO80 = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)


def task_instruction(task: str, **fields) -> str:
    if task not in TASKS:
        raise PromptError(f"unknown task '{task}'; known tasks: {', '.join(sorted(TASKS))}")
    try:
        return TASKS[task].format(**fields)
    except KeyError as exc:
        raise PromptError(f"task '{task}' needs the field {exc.args[0]!r}") from None


def category_instruction(vocabulary: list[str] | None) -> str:
    vocab = "COCO-80" if vocabulary is None else ", ".join(vocabulary)
    return task_instruction("category", vocabulary=vocab)


def refer_instruction(n: int, expression: str) -> str:
    if not isinstance(expression, str):
        raise PromptError(f"the refer expression must be a string, got {type(expression).__name__}")
    if n < 1:
        raise PromptError("refer needs at least one region mask")
    marks = [REGION] * n
    regions = marks[0] if n == 1 else ", ".join(marks[:-1]) + " and " + marks[-1]
    return task_instruction("refer", regions=regions, expression=expression)


def check_instruction(text: object, what: str = "instruction") -> str:
    if not isinstance(text, str):
        raise PromptError(f"the {what} must be a string, got {type(text).__name__}: {text!r:.60}")
    return text


def count_regions(text: str, region_token: str = REGION) -> int:
    check_instruction(text)
    tokens = {REGION, region_token}
    return len(re.findall("|".join(re.escape(t) for t in tokens), text))


def count_depth(text: str) -> int:
    check_instruction(text)
    return text.count(DEPTH)


def with_depth(text: str, region_token: str = REGION) -> str:
    """SpatialRGPT's prompts with depth: every region placeholder followed by ` <depth>` (`<mask> <depth>`)."""
    tokens = sorted({REGION, region_token}, key=len, reverse=True)
    return re.sub("(" + "|".join(re.escape(t) for t in tokens) + ")", r"\1 " + DEPTH, text)


def check_turns(turns: list[tuple[str, str | None]]) -> None:
    """Every turn is an (instruction, answer) pair of strings; the last turn's answer is None (to be generated)."""
    if not isinstance(turns, (list, tuple)):
        raise PromptError(f"history must be a list of (instruction, answer) pairs, got {type(turns).__name__}")
    for i, turn in enumerate(turns):
        last = i == len(turns) - 1
        if not isinstance(turn, (tuple, list)) or len(turn) != 2:
            raise PromptError(f"history turn {i} must be an (instruction, answer) pair, got {turn!r:.80}")
        check_instruction(turn[0], "instruction" if last else f"instruction of history turn {i}")
        if not (turn[1] is None and last):
            check_instruction(turn[1], f"answer of history turn {i}")


def prompt_parts(turns: list[tuple[str, str | None]], template: str) -> list[tuple[str, bool]]:
    """The prompt as (text, markup) pieces: markup pieces (the template, the instructions) may hold the image
    token and `<region>` placeholders; earlier answers are plain text, never parsed for placeholders (a model
    may well have written "<region>")."""
    if template not in TEMPLATES:
        raise PromptError(f"unknown conversation template '{template}'; known: {', '.join(TEMPLATES)}")
    t = TEMPLATES[template]
    check_turns(turns)
    parts = [(t.head + IMAGE + "\n", True)]
    for i, (instruction, answer) in enumerate(turns):
        parts.append(((t.user if i else "") + instruction + t.assistant, True))
        if answer is not None:
            parts += [(t.answer_prefix, True), (answer, False), (t.answer_end, True)]
    return parts


def build_prompt(turns: list[tuple[str, str | None]], template: str) -> str:
    """turns = [(instruction, answer or None), ...]; the last turn's answer is None (to be generated)."""
    return "".join(text for text, _ in prompt_parts(turns, template))


def split_prompt(prompt: str, region_token: str = REGION) -> list[str]:
    """Split at the image token and region placeholders, keeping them as separate items."""
    names = sorted({IMAGE, REGION, region_token, DEPTH}, key=len, reverse=True)
    return [p for p in re.split("(" + "|".join(re.escape(n) for n in names) + ")", prompt) if p]


def parse_refer(text: str, n: int, base: int = 1) -> int | None:
    """'Region [k]' -> the 0-based index k - base (when it names one of the n regions); 'No corresponding options
    found.' or anything else -> None. base: how the checkpoint numbers regions in its answers (RegionGPT's
    prompts: 1; SpatialRGPT's: 0), ModelConfig.region_index_base."""
    m = re.search(r"Region\s*\[\s*(\d+)\s*\]", text)
    if m and 0 <= int(m.group(1)) - base < n:
        return int(m.group(1)) - base
    return None


def match_category(text: str, vocabulary: list[str]) -> str | None:
    """The vocabulary entry the answer names: an exact match first, else the longest entry it contains."""
    norm = re.sub(r"[^a-z0-9 ]+", " ", text.lower()).split()
    answer = " ".join(norm)
    by_norm = {" ".join(re.sub(r"[^a-z0-9 ]+", " ", v.lower()).split()): v for v in vocabulary}
    if answer in by_norm:
        return by_norm[answer]
    padded = f" {answer} "
    hits = [k for k in by_norm if k and f" {k} " in padded]
    return by_norm[max(hits, key=len)] if hits else None
