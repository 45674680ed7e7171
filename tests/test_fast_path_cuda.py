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
@pytest.mark.parametrize("decode", ["fused", "reference"])
def test_cuda_graph_decode_matches_eager_and_batches(layout, decode, request, sample_frame):
    path = request.getfixturevalue(f"tiny_{layout}")
    graphs = _rt(path, dtype="fp32", decode=decode)
    eager = _rt(path, dtype="fp32", cuda_graphs=False, decode=decode)
    cpu = Runtime.from_pretrained(path)
    assert graphs.backend.decode == decode
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


def test_fused_is_the_cuda_default_and_fp16_fused_tracks_fp16_reference(tiny_llava, sample_frame):
    import numpy as np

    assert _rt(tiny_llava).backend.decode == "fused"
    for prec in ("fp16", "int8"):
        fused = _rt(tiny_llava, precision=prec)
        ref = _rt(tiny_llava, precision=prec, decode="reference")
        for box in BOXES[:2]:
            a = fused.generate(sample_frame, "Describe <region>.", box, ignore_eos=True, max_new_tokens=32)
            b = ref.generate(sample_frame, "Describe <region>.", box, ignore_eos=True, max_new_tokens=32)
            same = sum(x == y for x, y in zip(a.token_ids, b.token_ids)) / len(b.token_ids)
            assert same >= 0.9, (prec, same)  # fp16 rounding may flip a near-tie late in the sequence
        fl = fused.backend
        tok = torch.tensor([3], device="cuda")
        pos = torch.tensor([40], device="cuda")
        with torch.inference_mode():
            x = fl._step_fn(tok, pos).float()
            fl.set_decode("reference")
            y = fl._step_fn(tok, pos).float()
        cos = float((x @ y.T) / x.norm() / y.norm())
        assert cos > 0.999, (prec, cos)
        assert np.isfinite(x.cpu().numpy()).all()


def test_compiled_decode_on_cuda(tiny_llava, sample_frame):
    ref = _rt(tiny_llava, dtype="fp32", decode="reference")
    compiled = _rt(tiny_llava, dtype="fp32", decode="compile")
    a = ref.generate(sample_frame, "Describe <region>.", BOXES[0], max_new_tokens=12)
    b = compiled.generate(sample_frame, "Describe <region>.", BOXES[0], max_new_tokens=12)
    assert a.token_ids == b.token_ids


def test_frames_are_preprocessed_on_the_gpu_bit_exactly(tiny_llava, sample_frame):
    import numpy as np

    from rgpt_rt.inputs import preprocess_frame

    be = TorchBackend(tiny_llava, device="cuda")
    gpu = be.preprocess_frame(sample_frame, be.cfg.vision)
    assert isinstance(gpu, torch.Tensor) and gpu.device.type == "cuda"
    np.testing.assert_array_equal(gpu.cpu().numpy(), preprocess_frame(sample_frame, be.cfg.vision))
