"""python -m rgpt_rt.bench: latency of the runtime, printed as a table and written as JSON (usage: run.py).

models.py opens what is measured, measure.py measures it, hf.py times transformers at the same shapes."""

from .measure import decoder_weight_bytes
from .run import main

__all__ = ["decoder_weight_bytes", "main"]
