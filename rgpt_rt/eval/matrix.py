r"""python -m rgpt_rt.eval.matrix CHECKPOINT --world WORLD: one model on every backend and precision, one table.

    python -m rgpt_rt.eval.matrix rgpt_rt/assets/nano --world runs/nano/world --split test --out eval_matrix

Runs `python -m rgpt_rt.eval`'s harness for: torch fp32 (the reference), torch int8 (the int8 decoder), and
ONNX engine directories built here (`python -m rgpt_rt.build`) in fp32, fp16, int8 weight-only and int8
SmoothQuant, on the onnx backend. Writes OUT/<config>/results.{json,md} per configuration and OUT/matrix.md,
OUT/matrix.json: the headline metrics side by side, with each accuracy's difference from torch fp32.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..errors import RgptError
from .datasets import select, world_items
from .run import evaluate, write_results

CONFIGS = {  # name -> (backend, torch precision, engine build options or None)
    "torch-fp32": ("torch", "fp32", None),
    "torch-int8": ("torch", "int8", None),
    "onnx-fp32": ("onnx", None, {"precision": "fp32"}),
    "onnx-fp16": ("onnx", None, {"precision": "fp16"}),
    "onnx-int8-weight_only": ("onnx", None, {"precision": "int8", "int8_recipe": "weight_only"}),
    "onnx-int8-smoothquant": ("onnx", None, {"precision": "int8", "int8_recipe": "smoothquant"}),
}
HEADLINE = (  # (task, metric) columns of the table
    ("category", "accuracy"),
    ("category", "mAP"),
    ("brief", "exact_match"),
    ("refer", "accuracy"),
    ("reasoning", "accuracy"),
    ("detail", "CIDEr"),
    ("detail", "METEOR"),
)
ACCURACIES = {("category", "accuracy"), ("brief", "exact_match"), ("refer", "accuracy"), ("reasoning", "accuracy")}


def _cell(v: float | None, ref: float | None, accuracy: bool) -> str:
    if v is None:
        return "n/a"
    s = f"{100 * v:.1f}"
    if accuracy and ref is not None:
        s += f" ({100 * (v - ref):+.1f})"
    return s


def matrix_table(rows: dict[str, dict], seconds: dict[str, float]) -> str:
    """rows: config -> metrics (evaluate()['metrics']); accuracies show their difference from torch-fp32."""
    ref = rows.get("torch-fp32", {})
    head = ["config"] + [f"{t} {m}" for t, m in HEADLINE] + ["seconds"]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for name, metrics in rows.items():
        cells = [name]
        for t, m in HEADLINE:
            v = metrics.get(t, {}).get(m)
            r = ref.get(t, {}).get(m) if name != "torch-fp32" else None
            cells.append(_cell(v, r, (t, m) in ACCURACIES))
        cells.append(f"{seconds[name]:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rgpt_rt.eval.matrix", description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="checkpoint directory (llava or vila layout)")
    ap.add_argument("--world", required=True, help="a synthetic world directory")
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {', '.join(CONFIGS)}")
    ap.add_argument("--out", default="eval_matrix")
    ap.add_argument("--no-meteor", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    names = [c.strip() for c in a.configs.split(",") if c.strip()]
    unknown = [c for c in names if c not in CONFIGS]
    if unknown:
        print(f"error: unknown config(s) {', '.join(unknown)}; known: {', '.join(CONFIGS)}", file=sys.stderr)
        return 2
    out = Path(a.out)
    rows: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    try:
        from build_engine.builder import build

        from ..runtime import Runtime

        ds = select(world_items(a.world, a.split), [], a.limit)
        for name in names:
            backend, precision, options = CONFIGS[name]
            model = Path(a.checkpoint)
            if options is not None:
                model = build(model, out / "engines" / name, log=lambda s: None, **options)
            rt = Runtime.from_pretrained(model, backend=backend, precision=precision)
            t0 = time.perf_counter()
            result = evaluate(rt, ds, progress=not a.quiet, meteor=not a.no_meteor)
            seconds[name] = time.perf_counter() - t0
            rows[name] = result["metrics"]
            header = {
                "model": str(model),
                "backend": rt.backend_name,
                "precision": precision or name,
                "dataset": ds.name,
            }
            write_results(result, out / name, header)
            print(f"{name}: {seconds[name]:.0f} s, {result['errors']} item errors", flush=True)
    except (RgptError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table = matrix_table(rows, seconds)
    (out / "matrix.md").write_text(f"{a.checkpoint} on {ds.name} ({len(ds.items)} items)\n\n" + table)
    (out / "matrix.json").write_text(json.dumps({"rows": rows, "seconds": seconds}, indent=1, default=str))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
