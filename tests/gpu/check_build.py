"""Step `check` of the GPU scripts, right after the build: print rgpt_rt.build_info() and stop the run at once
(non-zero exit, the reason on the last line) unless the installed rgpt_rt has its CUDA module, the module sees
a GPU, torch sees it too, and the module's compiled SM code runs there (the device probe).

    python tests/gpu/check_build.py [--json FILE]

Exit status: 0 ready; 3 no CUDA module; 4 the module sees no GPU; 5 torch sees no GPU; 6 the probe failed.
Run it from outside the checkout, so that the installed package is imported.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import rgpt_rt

    info = rgpt_rt.build_info()
    print("rgpt_rt", rgpt_rt.__file__)
    print("build_info", json.dumps(info))
    out: dict = {"build_info": info, "package": rgpt_rt.__file__}
    try:
        import torch

        out["torch"] = torch.__version__
        out["torch_cuda"] = torch.version.cuda
        out["torch_sees_gpu"] = torch.cuda.is_available()
        if out["torch_sees_gpu"]:
            out["gpu"] = torch.cuda.get_device_name()
            major, minor = torch.cuda.get_device_capability()
            out["gpu_sm"] = 10 * major + minor
    except ImportError as exc:
        out["torch"] = None
        out["torch_sees_gpu"] = False
        out["torch_error"] = str(exc)
    print("torch", json.dumps({k: out.get(k) for k in ("torch", "torch_cuda", "torch_sees_gpu", "gpu", "gpu_sm")}))

    def done(code: int, message: str) -> int:
        out["ready"] = code == 0
        out["message"] = message
        if args.json:
            with open(args.json, "w") as f:
                json.dump(out, f, indent=1)
        print(message)
        return code

    if not info["cuda"]:
        return done(3, "the CUDA module rgpt_rt._C_cuda was not built (build_info()['cuda'] is False)")
    if info.get("cuda_devices", 0) < 1:
        return done(4, "rgpt_rt._C_cuda was built but sees no GPU (build_info()['cuda_devices'] == 0)")
    if not out["torch_sees_gpu"]:
        return done(5, f"torch {out['torch']} sees no GPU (torch.cuda.is_available() is False)")
    if out["gpu_sm"] not in info["cuda_archs"]:
        print(f"warning: the GPU is sm_{out['gpu_sm']}, the build has SM code for {info['cuda_archs']} only")
    try:
        ok = rgpt_rt._cuda().probe(4096) == [3 * i + 1 for i in range(4096)]
    except RuntimeError as exc:
        return done(6, f"the device probe failed: {exc}")
    if not ok:
        return done(6, "the device probe returned wrong values")
    return done(0, f"ready: rgpt_rt._C_cuda runs on {out['gpu']} (sm_{out['gpu_sm']})")


if __name__ == "__main__":
    sys.exit(main())
