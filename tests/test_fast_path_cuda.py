"""The torch backend's GPU fast path on the tiny checkpoints. Skipped without a CUDA GPU."""

import pytest

torch = pytest.importorskip("torch")

from rgpt_rt import Runtime  # noqa: E402
from rgpt_rt.backends.torch_backend import TorchBackend  # noqa: E402
from rgpt_rt.tokenizer import PromptTokenizer  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
BOXES = [(128, 128, 232, 198), (10, 40, 90, 160), (240, 10, 300, 70), (0, 150, 320, 240)]


def _rt(path, **kw):
    be = TorchBackend(path, device="cuda", **kw)
    return Runtime(be, PromptTokenizer(path, be.cfg))


@pytest.mark.parametrize("layout", ["llava", "vila"])
def test_cuda_graph_decode_matches_eager_and_batches(layout, request, sample_frame):
    path = request.getfixturevalue(f"tiny_{layout}")
    graphs = _rt(path, dtype="fp32")
    eager = _rt(path, dtype="fp32", cuda_graphs=False)
    cpu = Runtime.from_pretrained(path)
    for box in BOXES:
        a = graphs.generate(sample_frame, "Describe <region>.", box, max_new_tokens=24)
        b = eager.generate(sample_frame, "Describe <region>.", box, max_new_tokens=24)
        c = cpu.generate(sample_frame, "Describe <region>.", box, max_new_tokens=24)
        assert a.token_ids == b.token_ids == c.token_ids
    assert len(graphs.backend._graphs) >= 1
    many = graphs.describe_many(sample_frame, BOXES, max_new_tokens=16)
    assert many == [graphs.describe(sample_frame, b, max_new_tokens=16) for b in BOXES]
    assert many == cpu.describe_many(sample_frame, BOXES, max_new_tokens=16)


def test_fp16_and_int8_on_cuda(tiny_llava, sample_frame):
    import numpy as np

    ref = Runtime.from_pretrained(tiny_llava)
    for prec in ("fp16", "bf16", "int8"):
        rt = _rt(tiny_llava, precision=prec)
        a = rt.generate(sample_frame, "Describe <region>.", BOXES[0], return_first_logits=True, max_new_tokens=8)
        b = ref.generate(sample_frame, "Describe <region>.", BOXES[0], return_first_logits=True, max_new_tokens=8)
        cos = float(a.first_logits @ b.first_logits / np.linalg.norm(a.first_logits) / np.linalg.norm(b.first_logits))
        assert cos > 0.99, (prec, cos)
