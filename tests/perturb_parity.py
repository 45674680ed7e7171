"""Shows that the parity tests fail when the implementation is perturbed (not collected by pytest).

    python tests/perturb_parity.py vision_gelu|gqa_tile|rope_interleaved

vision_gelu       a tanh GELU where CLIP's quick_gelu belongs
gqa_tile          query head i reads kv head i % kv instead of i // (heads / kv)
rope_interleaved  RoPE rotating interleaved pairs instead of the two halves (Hugging Face's convention)
Each run must end with failing parity tests.
"""

import sys

import pytest
import torch
import torch.nn.functional as F

import rgpt_rt.model.llama as llama
import rgpt_rt.model.vision as vision


def perturb(which: str) -> None:
    if which == "vision_gelu":
        orig = vision.activation
        vision.activation = lambda name: (
            (lambda x: F.gelu(x, approximate="tanh")) if name == "quick_gelu" else orig(name)
        )
    elif which == "gqa_tile":
        orig_ri = torch.Tensor.repeat_interleave

        def tile(self, n, dim=None, **kw):
            if dim == 1 and self.dim() == 4:
                return self.repeat(1, n, 1, 1)
            return orig_ri(self, n, dim=dim, **kw)

        torch.Tensor.repeat_interleave = tile
    elif which == "rope_interleaved":

        def rope(x, cos, sin):
            x1, x2 = x[..., ::2], x[..., 1::2]
            return x * cos + torch.stack([-x2, x1], -1).flatten(-2) * sin

        llama.apply_rope = rope
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    perturb(sys.argv[1] if len(sys.argv) > 1 else "")
    code = pytest.main(["-q", "-p", "no:cacheprovider", "tests/test_vision_parity.py", "tests/test_llama_parity.py"])
    print("parity tests FAILED under the perturbation, as they must" if code else "parity tests passed: NOT detected")
    sys.exit(0 if code else 1)
