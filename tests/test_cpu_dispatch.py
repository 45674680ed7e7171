"""The portable CPU bodies (what aarch64 runs) against the AVX2 ones this machine picks: the same ops in a
subprocess with RGPT_CPU_BASELINE=1 must agree (preprocess_frame bit for bit, the sums to rounding)."""

import os
import subprocess
import sys

import numpy as np

SCRIPT = r"""
import sys
import numpy as np
from rgpt_rt.ops import int8_linear, preprocess_frame, quantize_weight, region_pool
rng = np.random.default_rng(0)
q, s = quantize_weight(rng.standard_normal((37, 203)))
outs = {}
for m in (1, 3, 8, 11):
    outs[f"int8_{m}"] = int8_linear(rng.standard_normal((m, 203)).astype(np.float32), q, s)
fmap = rng.standard_normal((19, 24, 24)).astype(np.float32)
masks = (rng.random((5, 50, 50)) > 0.6).astype(np.float32)
outs["image"], outs["regions"] = region_pool(fmap, masks, 6)
frame = rng.integers(0, 256, (97, 131, 3), dtype=np.uint8)
outs["pixels"] = preprocess_frame(frame, 64, (0.5, 0.4, 0.3), (0.2, 0.3, 0.25))
np.savez(sys.argv[1], **outs)
"""


def _run(path, baseline: bool):
    env = dict(os.environ)
    env.pop("RGPT_CPU_BASELINE", None)
    if baseline:
        env["RGPT_CPU_BASELINE"] = "1"
    # cwd outside the checkout: `python -c` puts the cwd first on sys.path, and the checkout's rgpt_rt (no built
    # module in a non-editable install) would shadow the installed package
    subprocess.run([sys.executable, "-c", SCRIPT, str(path)], check=True, env=env, timeout=120, cwd=path.parent)
    return np.load(path)


def test_portable_bodies_match_the_dispatched_ones(tmp_path):
    fast = _run(tmp_path / "fast.npz", baseline=False)
    base = _run(tmp_path / "base.npz", baseline=True)
    np.testing.assert_array_equal(base["pixels"], fast["pixels"])
    for key in fast.files:
        np.testing.assert_allclose(base[key], fast[key], rtol=1e-5, atol=1e-5, err_msg=key)
