"""python -m rgpt_rt.build CHECKPOINT --out DIR [--precision fp32|fp16|int8] [--backend onnx|trt] [--force]"""

from __future__ import annotations

import argparse
import sys

from .builder import BACKENDS, PRECISIONS, build


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m rgpt_rt.build", description="Compile a checkpoint into an engine directory"
    )
    ap.add_argument("checkpoint", help="checkpoint directory (llava or vila layout)")
    ap.add_argument("--out", required=True, help="engine directory to write")
    ap.add_argument("--precision", default="fp32", choices=PRECISIONS)
    ap.add_argument("--backend", default="onnx", choices=BACKENDS, help="onnx graphs only, or also TensorRT engines")
    ap.add_argument("--int8-recipe", default="smoothquant", choices=["smoothquant", "weight_only"])
    ap.add_argument("--calib-prompts", type=int, default=8)
    ap.add_argument("--force", action="store_true", help="rebuild even when the inputs are unchanged")
    args = ap.parse_args(argv)
    from rgpt_rt.errors import RgptError

    try:
        build(
            args.checkpoint,
            args.out,
            precision=args.precision,
            backend=args.backend,
            int8_recipe=args.int8_recipe,
            force=args.force,
            calib_prompts=args.calib_prompts,
            log=lambda s: print(s, flush=True),
        )
    except (RgptError, ValueError, FileNotFoundError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
