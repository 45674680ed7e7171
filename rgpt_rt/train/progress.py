"""What a run reports: a progress bar (tqdm if installed), metrics as JSON Lines, a loss-curve PNG."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


class Progress:
    """Rank 0's view of the run: one metrics line per logged step; bar or plain lines with loss, tok/s, ETA."""

    def __init__(self, output: Path, start: int, total: int, enabled: bool, log_every: int = 1):
        self.metrics = output / "metrics.jsonl"
        self.start, self.total, self.enabled, self.log_every = start, total, enabled, log_every
        self.history: list[tuple[int, float]] = []
        self.t0 = time.perf_counter()
        self.bar = None
        if not enabled:
            return
        if self.metrics.is_file():  # a resume: keep what the resumed-from checkpoint had seen, drop the rest
            kept = [ln for ln in self.metrics.read_text().splitlines() if ln and json.loads(ln)["step"] <= start]
            self.metrics.write_text("".join(ln + "\n" for ln in kept))
            self.history = [(json.loads(ln)["step"], json.loads(ln)["loss"]) for ln in kept]
        try:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, file=sys.stderr)
        except ImportError:
            self.bar = None

    def log(self, rec: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.history.append((rec["step"], rec["loss"]))
        with open(self.metrics, "a") as f:
            f.write(json.dumps(rec, sort_keys=True) + "\n")
        post = f"loss {rec['loss']:.4f} | {rec['tokens_per_s']:.0f} tok/s"
        if self.bar is not None:
            self.bar.set_postfix_str(post, refresh=False)
            self.bar.update(rec["step"] - self.bar.n)
        elif rec["step"] % self.log_every == 0 or rec["step"] == self.total:
            done = rec["step"] - self.start
            eta = (time.perf_counter() - self.t0) / max(done, 1) * (self.total - rec["step"])
            print(f"step {rec['step']}/{self.total} | {post} | eta {eta:.0f}s", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def plot(self, path: Path) -> bool:
        """Write the loss curve as a PNG; False (nothing written) when matplotlib is not installed."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return False
        if not self.history:
            return False
        steps, losses = zip(*self.history)
        fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
        ax.plot(steps, losses, lw=1.2)
        ax.set_xlabel("step")
        ax.set_ylabel("answer-token loss")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return True
