"""Metrics as the papers report them.

- accuracy: the fraction of exact hits
- mAP: COCO-style average precision per category (101 recall thresholds, interpolated precision), averaged
  over the categories that have at least one positive; scores are each region's probabilities over the
  category names (softmax of the summed log-likelihood of each name after the prompt)
- captions: BLEU-4, METEOR, ROUGE-L and CIDEr(-D) from pycocoevalcap after its PTB tokenizer (Java). When Java
  cannot run, a pure-Python tokenizer (`simple_tokenize`) stands in for the PTB one and METEOR (a Java program)
  is reported as None with the reason
- yes/no accuracy (the answer's first word) and exact match (after `normalize_answer`)
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess

import numpy as np

from ..data.language import normalize_answer

RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
# Tokens that pycocoevalcap's PTB tokenizer drops after tokenising.
PUNCTUATION = {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"}


def accuracy(hits: list[bool]) -> float | None:
    return float(np.mean(hits)) if len(hits) else None


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float | None:
    """COCO-style AP of one category: scores [N], positives bool [N]; None when there is no positive."""
    scores, positives = np.asarray(scores, dtype=np.float64), np.asarray(positives, dtype=bool)
    npos = int(positives.sum())
    if npos == 0:
        return None
    order = np.argsort(-scores, kind="mergesort")
    tp = np.cumsum(positives[order])
    precision = tp / np.arange(1, len(tp) + 1)
    recall = tp / npos
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, RECALL_THRESHOLDS, side="left")
    sampled = np.where(idx < len(envelope), envelope[np.minimum(idx, len(envelope) - 1)], 0.0)
    return float(sampled.mean())


def mean_average_precision(scores: np.ndarray, labels: np.ndarray) -> tuple[float | None, dict[int, float]]:
    """scores [N, C] (any monotone scores per category), labels [N] in 0..C-1 -> (mAP, AP per category)."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    per = {}
    for c in range(scores.shape[1]):
        ap = average_precision(scores[:, c], labels == c)
        if ap is not None:
            per[c] = ap
    return (float(np.mean(list(per.values()))) if per else None), per


def softmax_rows(loglik: np.ndarray) -> np.ndarray:
    x = np.asarray(loglik, dtype=np.float64)
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


def yes_no(text: str) -> str | None:
    words = normalize_answer(text).split()
    return words[0] if words and words[0] in ("yes", "no") else None


def exact_match(pred: str | None, truth: str) -> bool:
    return pred is not None and normalize_answer(pred) == normalize_answer(truth)


def simple_tokenize(text: str) -> list[str]:
    """The fallback tokenizer: lower case, punctuation split off and dropped (as the PTB tokenizer ends up)."""
    toks = re.findall(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]", text.lower())
    return [t for t in toks if t not in PUNCTUATION and re.search(r"[a-z0-9]", t)]


def _ptb(gts: dict, res: dict) -> tuple[dict, dict]:
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    with contextlib.redirect_stdout(io.StringIO()):
        return tok.tokenize(gts), tok.tokenize(res)


def caption_scores(
    refs: dict[str, list[str]], preds: dict[str, str], tokenizer: str = "auto", meteor: bool = True
) -> dict:
    """BLEU-4, METEOR, ROUGE-L, CIDEr over keys shared by refs and preds (pycocoevalcap's scale: CIDEr 0..10).

    tokenizer: "auto" (PTB through Java, else the pure-Python one), "ptb" or "simple". meteor=False skips METEOR
    (its Java program loads paraphrase tables for about 10 s).
    Returns the metrics plus `tokenizer` (the one used) and `notes` (why anything fell back or is None).
    """
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge
    except ImportError:
        return {"error": "pycocoevalcap is not installed: pip install 'rgpt_rt[eval]' (or pip install pycocoevalcap)"}
    keys = [k for k in refs if k in preds]
    if not keys:
        return {"error": "no captions to score"}
    gts = {k: [{"caption": r} for r in refs[k]] for k in keys}
    res = {k: [{"caption": preds[k] or ""}] for k in keys}
    notes: list[str] = []
    used = "simple"
    if tokenizer in ("auto", "ptb"):
        try:
            if shutil.which("java") is None:
                raise FileNotFoundError("no java on PATH")
            g, r = _ptb(gts, res)
            used = "ptb"
        except (OSError, subprocess.SubprocessError) as exc:
            if tokenizer == "ptb":
                raise
            notes.append(f"PTB tokenizer could not run ({type(exc).__name__}: {exc}); used simple_tokenize")
    if used == "simple":
        g = {k: [" ".join(simple_tokenize(c["caption"])) for c in v] for k, v in gts.items()}
        r = {k: [" ".join(simple_tokenize(c["caption"])) for c in v] for k, v in res.items()}
    # An empty candidate breaks BLEU's and METEOR's bookkeeping; score it as a non-word.
    r = {k: [v[0] if v[0].strip() else "<empty>"] for k, v in r.items()}
    with contextlib.redirect_stdout(io.StringIO()):
        bleu, _ = Bleu(4).compute_score(g, r)
        rouge, _ = Rouge().compute_score(g, r)
        cider, _ = Cider().compute_score(g, r)
    out = {"BLEU-4": float(bleu[3]), "ROUGE-L": float(rouge), "CIDEr": float(cider), "METEOR": None}
    if not meteor:
        notes.append("METEOR not computed (skipped on request)")
    elif shutil.which("java") is None:
        notes.append("METEOR could not run (no java on PATH); it needs Java 8+")
    else:
        try:
            from pycocoevalcap.meteor.meteor import Meteor

            scorer = Meteor()
            try:
                out["METEOR"] = float(scorer.compute_score(g, r)[0])
            finally:  # a failed read leaves its lock held, on which its __del__ would wait forever
                if scorer.lock.locked():
                    scorer.lock.release()
                scorer.meteor_p.kill()
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            notes.append(f"METEOR could not run ({type(exc).__name__}: {exc}); it needs Java 8+ on PATH")
    out.update({"tokenizer": used, "n": len(keys), "notes": notes})
    return out
