"""Run a model over evaluation items, frame by frame, and compute the metrics.

`evaluate` takes any object with the Runtime's methods (classify, score, refer, ask, describe_many), so the
metrics are tested with small fake runtimes as well as with real checkpoints.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RgptError
from ..inputs import load_frame, rle_decode
from ..prompts import category_instruction
from . import metrics as M
from .datasets import Dataset, Item

MAX_NEW_TOKENS = {
    "category": 16,
    "brief": 24,
    "detail": 64,
    "refer": 12,
    "reasoning": 24,
    "refcocog_caption": 32,
    "vg_caption": 32,
}
CAPTION_TASKS = ("brief", "detail", "refcocog_caption", "vg_caption")


class _Progress:
    """tqdm when it is installed, else a plain line every few percent on stderr."""

    def __init__(self, total: int, desc: str, enabled: bool = True):
        self.total, self.n, self.desc, self.enabled, self.bar = total, 0, desc, enabled, None
        self.t0, self.last = time.perf_counter(), -1
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc=desc, unit="img", file=sys.stderr)
            except ImportError:
                pass

    def update(self) -> None:
        self.n += 1
        if self.bar is not None:
            self.bar.update(1)
        elif self.enabled:
            pct = 100 * self.n // max(self.total, 1)
            if pct // 5 != self.last // 5 or self.n == self.total:
                self.last = pct
                dt = time.perf_counter() - self.t0
                print(f"{self.desc}: {self.n}/{self.total} images ({pct}%), {dt:.0f} s", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _region(r: Any) -> Any:
    if callable(r):
        return r()
    if isinstance(r, dict):
        return rle_decode(r)
    return r


def evaluate(
    rt: Any,
    ds: Dataset,
    *,
    max_new_tokens: int | None = None,
    batch_size: int = 16,
    use_score: bool = True,
    progress: bool = True,
    tokenizer: str = "auto",
    meteor: bool = True,
) -> dict:
    """Predictions for every item and the metrics of each task. Errors of single items are recorded and
    count as wrong answers; they do not stop the run."""
    by_image: dict[Path, list[Item]] = defaultdict(list)
    for it in ds.items:
        by_image[it.image].append(it)
    vocab = ds.vocabulary
    names = ds.categories
    instr = category_instruction(vocab) if names else ""
    can_score = use_score and hasattr(rt, "score") and bool(names)
    preds: dict[str, Any] = {}
    scores: dict[str, list[float]] = {}
    errors: list[str] = []

    def gen(task: str) -> dict:
        return {"max_new_tokens": max_new_tokens or MAX_NEW_TOKENS[task]}

    bar = _Progress(len(by_image), f"eval {ds.name}", progress)
    t0 = time.perf_counter()
    for path, items in by_image.items():
        try:
            frame = load_frame(path)
        except RgptError as exc:
            errors += [f"{it.key}: {exc}" for it in items]
            bar.update()
            continue
        for task in CAPTION_TASKS:  # one describe_many per task and frame: the regions decode together
            group = [it for it in items if it.task == task]
            if not group:
                continue
            describe = "detail" if task == "detail" else "brief"
            try:
                texts = rt.describe_many(
                    frame, [_region(it.regions[0]) for it in group], task=describe, batch_size=batch_size, **gen(task)
                )
                preds.update({it.key: t for it, t in zip(group, texts)})
            except RgptError as exc:
                errors += [f"{it.key}: {exc}" for it in group]
        for it in items:
            if it.task in CAPTION_TASKS:
                continue
            try:
                regions = [_region(r) for r in it.regions]
                if it.task == "category":
                    preds[it.key] = rt.classify(frame, regions[0], vocabulary=vocab, **gen("category"))
                    if can_score:
                        scores[it.key] = [float(s) for s in rt.score(frame, instr, regions[0], names)]
                elif it.task == "refer":
                    preds[it.key] = rt.refer(frame, regions, it.question, **gen("refer"))
                elif it.task == "reasoning":
                    preds[it.key] = rt.ask(frame, it.question, regions, **gen("reasoning"))
            except RgptError as exc:
                errors.append(f"{it.key}: {exc}")
        bar.update()
    bar.close()
    seconds = time.perf_counter() - t0
    result = {
        "dataset": ds.name,
        "images": len(by_image),
        "seconds": round(seconds, 2),
        "errors": len(errors),
        "first_errors": errors[:10],
        "metrics": compute_metrics(ds, preds, scores if can_score else None, tokenizer, meteor),
    }
    if not can_score and names:
        result["metrics"].setdefault("category", {})["mAP_note"] = (
            "not computed: the runtime has no score() method" if use_score else "not computed (--no-map)"
        )
    result["predictions"] = {k: v for k, v in preds.items()}
    return result


def compute_metrics(
    ds: Dataset,
    preds: dict[str, Any],
    scores: dict[str, list[float]] | None,
    tokenizer: str = "auto",
    meteor: bool = True,
) -> dict:
    out: dict[str, dict] = {}
    by_task: dict[str, list[Item]] = defaultdict(list)
    for it in ds.items:
        by_task[it.task].append(it)
    for task, items in by_task.items():
        m: dict[str, Any] = {"n": len(items)}
        if task == "category":
            hits = [preds.get(it.key) == it.answer for it in items]
            m["accuracy"] = M.accuracy(hits)
            m["chance"] = 1.0 / len(ds.categories) if ds.categories else None
            if scores is not None:
                have = [it for it in items if it.key in scores]
                if have:
                    s = M.softmax_rows(np.array([scores[it.key] for it in have]))
                    labels = np.array([ds.categories.index(it.answer) for it in have])
                    m["mAP"], _ = M.mean_average_precision(s, labels)
                    m["accuracy_by_likelihood"] = M.accuracy(list(s.argmax(1) == labels))
        elif task == "refer":
            m["accuracy"] = M.accuracy([preds.get(it.key, "missing") == it.answer for it in items])
            m["no_match_share"] = M.accuracy([it.answer is None for it in items])
        elif task == "reasoning":
            yn = [it for it in items if it.kind == "yes_no"]
            op = [it for it in items if it.kind != "yes_no"]
            m["n_yes_no"], m["n_open"] = len(yn), len(op)
            m["yes_no_accuracy"] = M.accuracy([M.yes_no(preds.get(it.key) or "") == M.yes_no(it.answer) for it in yn])
            m["open_exact_match"] = M.accuracy([M.exact_match(preds.get(it.key), it.answer) for it in op])
            m["accuracy"] = M.accuracy(
                [M.yes_no(preds.get(it.key) or "") == M.yes_no(it.answer) for it in yn]
                + [M.exact_match(preds.get(it.key), it.answer) for it in op]
            )
        else:  # captions
            refs = {it.key: it.references for it in items}
            got = {it.key: preds.get(it.key) or "" for it in items}
            m.update(M.caption_scores(refs, got, tokenizer, meteor))
            if task == "brief":
                m["exact_match"] = M.accuracy([M.exact_match(preds.get(it.key), it.answer) for it in items])
        held = [it for it in items if it.held_out]
        if held and task in ("category", "refer", "brief"):
            if task == "brief":
                m["held_out_exact_match"] = M.accuracy([M.exact_match(preds.get(it.key), it.answer) for it in held])
            else:
                m["held_out_accuracy"] = M.accuracy([preds.get(it.key, "missing") == it.answer for it in held])
            m["held_out_n"] = len(held)
        out[task] = m
    return out


REPORTED = (
    "accuracy",
    "accuracy_by_likelihood",
    "mAP",
    "yes_no_accuracy",
    "open_exact_match",
    "exact_match",
    "BLEU-4",
    "METEOR",
    "ROUGE-L",
    "CIDEr",
    "held_out_accuracy",
    "held_out_exact_match",
)
PERCENT = {
    "accuracy",
    "accuracy_by_likelihood",
    "mAP",
    "yes_no_accuracy",
    "open_exact_match",
    "exact_match",
    "held_out_accuracy",
    "held_out_exact_match",
    "BLEU-4",
    "METEOR",
    "ROUGE-L",
}


def markdown_table(result: dict, header: dict[str, str] | None = None) -> str:
    """One row per task and metric; accuracies, mAP, BLEU/METEOR/ROUGE in percent, CIDEr x100 as papers do."""
    lines = []
    if header:
        lines.append(" · ".join(f"{k}: {v}" for k, v in header.items()))
        lines.append("")
    lines += ["| task | metric | value | n |", "|---|---|---:|---:|"]
    for task, m in result["metrics"].items():
        for key in REPORTED:
            if key not in m:
                continue
            v = m[key]
            n = {"yes_no_accuracy": m.get("n_yes_no"), "open_exact_match": m.get("n_open")}.get(key, m["n"])
            n = m.get("held_out_n", n) if key.startswith("held_out") else n
            shown = "n/a" if v is None else f"{100 * v:.1f}"
            lines.append(f"| {task} | {key} | {shown} | {n} |")
        for note in (
            m.get("notes", []) + ([m["mAP_note"]] if "mAP_note" in m else []) + ([m["error"]] if "error" in m else [])
        ):
            lines.append(f"| {task} | note | {note} | |")
    lines.append("")
    lines.append(f"{result['images']} images, {result['seconds']} s, {result['errors']} item errors")
    return "\n".join(lines) + "\n"


def write_results(result: dict, out_dir: str | Path, header: dict[str, str]) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / "results.json", out / "results.md"
    js.write_text(json.dumps({**header, **result}, indent=1, default=str), encoding="utf-8")
    md.write_text(markdown_table(result, header), encoding="utf-8")
    return js, md
