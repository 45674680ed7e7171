"""Generation options, sampling (numpy, backend-independent) and result types."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np


def _int_option(name: str, value, lo: int, what: str | None = None) -> int:
    """An integer option: Python or numpy integers (never bools), at least `lo`, returned as a Python int."""
    what = what or f"an integer >= {lo}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be {what}, got {value!r} ({type(value).__name__})")
    if value < lo:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def _float_option(name: str, value) -> float:
    """A finite real option (Python or numpy ints and floats), returned as a Python float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class GenerationConfig:
    """Greedy by default. temperature > 0 samples (after top-k, then top-p); `seed` makes sampling repeatable."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_k: int = 0  # 0 = no limit
    top_p: float = 1.0
    repetition_penalty: float = 1.0  # > 1 discourages tokens already generated (CTRL-style, as transformers)
    stop: tuple[str, ...] = ()  # stop strings; the text ends before the first one found
    seed: int | None = None
    ignore_eos: bool = False  # keep generating past end-of-sequence (benchmarks that need N tokens)

    def __post_init__(self):
        # Normalise what callers naturally pass (numpy integers and floats, stop=None or one string) to plain
        # Python values, and refuse anything else with an error that names the option.
        set_ = object.__setattr__
        set_(
            self, "max_new_tokens", _int_option("max_new_tokens", self.max_new_tokens, lo=1, what="a positive integer")
        )
        set_(self, "top_k", _int_option("top_k", self.top_k, lo=0, what="an integer >= 0 (0 = off)"))
        set_(self, "temperature", _float_option("temperature", self.temperature))
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        set_(self, "top_p", _float_option("top_p", self.top_p))
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        set_(self, "repetition_penalty", _float_option("repetition_penalty", self.repetition_penalty))
        if not self.repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        stop = self.stop
        if stop is None:
            stop = ()
        elif isinstance(stop, str):
            stop = (stop,)
        elif isinstance(stop, (list, tuple)) and all(isinstance(s, str) for s in stop):
            stop = tuple(stop)
        else:
            raise TypeError(f"stop must be a string or a list of strings, got {stop!r}")
        if any(not s for s in stop):
            raise ValueError("stop strings must be non-empty")
        set_(self, "stop", stop)
        if self.seed is not None:
            set_(self, "seed", _int_option("seed", self.seed, lo=0, what="None or an integer >= 0"))
            if self.seed >= 2**64:  # every generator (numpy's, torch's) takes a 64-bit seed
                raise ValueError(f"seed must be below 2**64, got {self.seed}")
        if not isinstance(self.ignore_eos, (bool, np.bool_)):
            raise TypeError(f"ignore_eos must be True or False, got {self.ignore_eos!r}")
        set_(self, "ignore_eos", bool(self.ignore_eos))

    @staticmethod
    def from_kwargs(**kwargs) -> GenerationConfig:
        known = {f.name for f in fields(GenerationConfig)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"unknown generation option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return GenerationConfig(**kwargs)


class Sampler:
    """logits [V] (float32 numpy) + tokens generated so far -> next token id."""

    def __init__(self, cfg: GenerationConfig):
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed)

    def __call__(self, logits: np.ndarray, generated: list[int]) -> int:
        cfg = self.cfg
        if cfg.temperature == 0 and (cfg.repetition_penalty == 1.0 or not generated):
            return int(np.argmax(logits))  # greedy: float64 would pick the same index (the widening is exact)
        x = np.asarray(logits, dtype=np.float64).copy()
        if cfg.repetition_penalty != 1.0 and generated:
            seen = np.unique(np.asarray(generated))
            vals = x[seen]
            x[seen] = np.where(vals > 0, vals / cfg.repetition_penalty, vals * cfg.repetition_penalty)
        if cfg.temperature == 0:
            return int(np.argmax(x))
        x /= cfg.temperature
        if cfg.top_k and cfg.top_k < x.size:
            kth = np.partition(x, -cfg.top_k)[-cfg.top_k]
            x[x < kth] = -np.inf
        probs = np.exp(x - x.max())
        probs /= probs.sum()
        if cfg.top_p < 1.0:
            order = np.argsort(-probs, kind="stable")
            cum = np.cumsum(probs[order])
            keep = cum - probs[order] < cfg.top_p  # smallest prefix whose mass reaches top_p
            mask = np.zeros_like(probs, dtype=bool)
            mask[order[keep]] = True
            probs = np.where(mask, probs, 0.0)
            probs /= probs.sum()
        return int(self.rng.choice(probs.size, p=probs))


@dataclass
class Timings:
    """Milliseconds per phase, and the number of generated tokens."""

    preprocess_ms: float = 0.0
    vision_ms: float = 0.0
    prefill_ms: float = 0.0
    decode_ms: float = 0.0
    tokens: int = 0
    prompt_tokens: int = 0
    reused_tokens: int = 0  # prompt tokens whose KV was reused from the previous call (not recomputed)

    @property
    def ms_per_token(self) -> float:
        return self.decode_ms / max(self.tokens - 1, 1)


@dataclass
class GenerationResult:
    text: str
    token_ids: list[int]
    finish_reason: str  # "eos" | "length" | "stop"
    timings: Timings = field(default_factory=Timings)
    first_logits: np.ndarray | None = None
