"""The fused decode step (rgpt_rt.model.fused_decode) against the reference model's forward, and the torch
backend's decode modes (fused / reference / compile) giving the same tokens, on the CPU."""

import numpy as np
import pytest
import torch

from rgpt_rt import Runtime
from rgpt_rt.backends.torch_backend import TorchBackend
from rgpt_rt.generation import GenerationConfig
from rgpt_rt.model.fused_decode import fuse_projections_, fused_decode_step
from rgpt_rt.model.quant import quantize_decoder_
from rgpt_rt.testing import make_tiny_model
from rgpt_rt.tokenizer import PromptTokenizer

BOXES = [(128, 128, 232, 198), (10, 40, 90, 160), (240, 10, 300, 70), (0, 150, 320, 240)]


def _caches(llm):
    return [(layer.self_attn.kv_cache.k.clone(), layer.self_attn.kv_cache.v.clone()) for layer in llm.model.layers]


def _restore(llm, saved):
    for layer, (k, v) in zip(llm.model.layers, saved):
        layer.self_attn.kv_cache.k.copy_(k)
        layer.self_attn.kv_cache.v.copy_(v)


@pytest.mark.parametrize("layout", ["llava", "vila"])
@pytest.mark.parametrize("int8", [False, True])
def test_fused_step_equals_reference_forward(layout, int8):
    model = make_tiny_model(layout)
    if int8:
        quantize_decoder_(model)
    llm = model.llm
    llm.setup_caches(3, 48)
    g = torch.Generator().manual_seed(1)
    tok, pos = torch.tensor([5, 7, 9]), torch.tensor([20, 13, 0])
    with torch.inference_mode():
        llm(torch.randn(3, 20, llm.cfg.hidden_size, generator=g), torch.arange(20)[None].expand(3, -1))
        before = _caches(llm)
        ref = llm(llm.embed(tok[:, None]), pos[:, None])[:, 0]
        ref_caches = _caches(llm)
        _restore(llm, before)
    fuse_projections_(llm)
    with torch.inference_mode():
        fused = fused_decode_step(llm, tok, pos)
    torch.testing.assert_close(fused, ref, rtol=1e-5, atol=1e-5)
    for (k, v), (rk, rv) in zip(_caches(llm), ref_caches):  # the same slots written with the same values
        torch.testing.assert_close(k, rk, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(v, rv, rtol=1e-6, atol=1e-6)  # one fused projection vs three
    with torch.inference_mode():  # the reference forward still works through the fused weights' views
        _restore(llm, before)
        torch.testing.assert_close(llm(llm.embed(tok[:, None]), pos[:, None])[:, 0], ref, rtol=0, atol=0)


def test_fuse_projections_keeps_one_copy_of_each_weight():
    llm = make_tiny_model("llava").llm
    before = sum(p.numel() for p in llm.parameters())
    fuse_projections_(llm)
    fuse_projections_(llm)  # idempotent
    layer = llm.model.layers[0]
    assert layer.self_attn.q_proj.weight.data_ptr() == layer.self_attn.qkv.weight.data_ptr()
    fused_storage = layer.mlp.gate_up.weight.untyped_storage().data_ptr()
    assert layer.mlp.up_proj.weight.untyped_storage().data_ptr() == fused_storage
    assert sum(p.numel() for p in llm.parameters()) == before


def _runtime(path, **kw):
    be = TorchBackend(path, **kw)
    return Runtime(be, PromptTokenizer(path, be.cfg))


@pytest.mark.parametrize("layout", ["llava", "vila"])
def test_decode_modes_give_the_same_tokens(layout, request, sample_frame):
    path = request.getfixturevalue(f"tiny_{layout}")
    ref = _runtime(path, decode="reference")
    fused = _runtime(path, decode="fused")
    assert fused.backend.decode == "fused" and _runtime(path).backend.decode == "reference"  # CPU default
    for box in BOXES:
        a = ref.generate(sample_frame, "Describe <region>.", box, max_new_tokens=24)
        b = fused.generate(sample_frame, "Describe <region>.", box, max_new_tokens=24)
        assert a.token_ids == b.token_ids
    many = fused.describe_many(sample_frame, BOXES, max_new_tokens=16)
    assert many == ref.describe_many(sample_frame, BOXES, max_new_tokens=16)
    assert many == [fused.describe(sample_frame, b, max_new_tokens=16) for b in BOXES]


def test_int8_fused_decode_matches_int8_reference(tiny_llava, sample_frame):
    ref = _runtime(tiny_llava, precision="int8", decode="reference")
    fused = _runtime(tiny_llava, precision="int8", decode="fused")
    for box in BOXES[:2]:
        a = ref.generate(sample_frame, "Describe <region>.", box, max_new_tokens=16, return_first_logits=True)
        b = fused.generate(sample_frame, "Describe <region>.", box, max_new_tokens=16, return_first_logits=True)
        assert a.token_ids == b.token_ids
        np.testing.assert_allclose(a.first_logits, b.first_logits, rtol=1e-5, atol=1e-5)


def test_compiled_decode_step_gives_the_same_tokens(tiny_llava, sample_frame):
    ref = _runtime(tiny_llava, decode="reference")
    compiled = _runtime(tiny_llava, decode="compile")
    a = ref.generate(sample_frame, "Describe <region>.", BOXES[0], max_new_tokens=12)
    b = compiled.generate(sample_frame, "Describe <region>.", BOXES[0], max_new_tokens=12)
    assert a.token_ids == b.token_ids


def test_bad_decode_mode_and_positions_outside_the_cache(tiny_llava):
    with pytest.raises(ValueError, match="decode must be one of fused, reference, compile"):
        TorchBackend(tiny_llava, decode="turbo")
    be = TorchBackend(tiny_llava, decode="fused")
    be.reserve(16)
    sampler = be.sampler(GenerationConfig(), 2)
    with pytest.raises(ValueError, match="do not fit the KV cache"):
        be.step([3], [be.model.llm.max_seq], sampler)
    with pytest.raises(ValueError, match="do not fit the KV cache"):
        be.step([3, 4], [1, -1], sampler)


def test_describe_many_reads_the_shared_prefix_from_row_0(tiny_llava, sample_frame):
    """The fused step's attention reads the prefix slots of every row from row 0 during describe_many: poison
    the other rows' copies after the prefill and the answers must not change."""
    rt = _runtime(tiny_llava, decode="fused")
    want = rt.describe_many(sample_frame, BOXES, max_new_tokens=12)
    be = rt.backend
    orig = be.prefill

    def prefill_then_poison(prefix, start, suffixes, table, sampler, want_logits=False):
        out = orig(prefix, start, suffixes, table, sampler, want_logits)
        p = len(prefix)
        assert len(suffixes) == len(BOXES) and int(be._shared[0]) == p
        for layer in be.model.llm.model.layers:
            layer.self_attn.kv_cache.k[1 : len(suffixes), :, :p] = float("nan")
            layer.self_attn.kv_cache.v[1 : len(suffixes), :, :p] = float("nan")
        return out

    be.prefill = prefill_then_poison
    assert rt.describe_many(sample_frame, BOXES, max_new_tokens=12) == want


def test_from_pretrained_passes_decode_and_refuses_it_for_engines(tiny_llava, tmp_path):
    assert Runtime.from_pretrained(tiny_llava, decode="fused").backend.decode == "fused"
    with pytest.raises(ValueError, match="decode= selects the torch backend's decode step"):
        Runtime.from_pretrained(tiny_llava, backend="onnx", decode="fused")


@pytest.mark.parametrize(
    "heads,kv,head_dim,scaling",
    [
        (2, 2, 128, None),
        (
            4,
            1,
            64,
            {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
        ),
    ],
)
def test_fused_step_at_vicuna_and_llama3_head_layouts(heads, kv, head_dim, scaling):
    """MHA with 128-dim heads (Vicuna-7B's layout) and GQA 4:1 with Llama-3 rope scaling, past 64 positions."""
    from rgpt_rt.config import LlamaConfig
    from rgpt_rt.model.llama import Llama

    cfg = LlamaConfig(
        vocab_size=300,
        hidden_size=256,
        intermediate_size=512,
        num_layers=2,
        num_heads=heads,
        num_kv_heads=kv,
        head_dim=head_dim,
        rope_scaling=scaling,
        max_position_embeddings=512,
    )
    torch.manual_seed(0)
    llm = Llama(cfg).eval()
    with torch.no_grad():
        for p in llm.parameters():
            p.normal_(0.0, 0.05) if p.dim() > 1 else p.uniform_(0.5, 1.5)
    llm.setup_caches(2, 200)
    tok, pos = torch.tensor([11, 250]), torch.tensor([150, 99])
    with torch.inference_mode():
        llm(torch.randn(2, 150, 256), torch.arange(150)[None].expand(2, -1))
        before = _caches(llm)
        ref = llm(llm.embed(tok[:, None]), pos[:, None])[:, 0]
        _restore(llm, before)
    fuse_projections_(llm)
    with torch.inference_mode():
        fused = fused_decode_step(llm, tok, pos)
    torch.testing.assert_close(fused, ref, rtol=1e-5, atol=1e-5)
