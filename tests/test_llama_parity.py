"""Our LLaMA decoder against transformers' LlamaForCausalLM on the same random weights (fp32)."""

import dataclasses

import pytest
import torch

transformers = pytest.importorskip("transformers")

from rgpt_rt.checkpoint.layouts import hf_llama_config  # noqa: E402
from rgpt_rt.model.generate import decode_n_tokens, generate_greedy, greedy, prefill  # noqa: E402
from rgpt_rt.model.llama import Llama  # noqa: E402
from rgpt_rt.testing import init_random_, tiny_config  # noqa: E402

TOL = 1e-4

CONFIGS = {
    # Vicuna-style: plain RoPE, grouped-query attention 4/2.
    "vicuna": tiny_config("llava").llm,
    # Llama-3 style with a short original context so that all three wavelength bands of the scaling occur.
    "llama3": dataclasses.replace(
        tiny_config("vila").llm,
        rope_theta=10000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
    ),
    "mha_tied": dataclasses.replace(tiny_config("llava").llm, num_kv_heads=4, tie_word_embeddings=True),
}


def _pair(name, seed=5):
    cfg = CONFIGS[name]
    ours = init_random_(Llama(cfg), seed=seed).eval()
    hf_cfg = transformers.LlamaConfig(**{k: v for k, v in hf_llama_config(cfg).items() if k != "architectures"})
    hf = transformers.LlamaForCausalLM(hf_cfg).eval()
    state = dict(ours.state_dict())
    if cfg.tie_word_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    hf.load_state_dict(state, strict=True)
    hf.config._attn_implementation = "eager"
    return cfg, ours, hf


def test_llama3_rope_scaling_touches_all_bands():
    from rgpt_rt.model.llama import rope_inv_freq

    cfg = CONFIGS["llama3"]
    plain = rope_inv_freq(dataclasses.replace(cfg, rope_scaling=None))
    scaled = rope_inv_freq(cfg)
    ratio = plain / scaled
    assert (ratio == 1).any() and (ratio == 8).any() and ((ratio > 1) & (ratio < 8)).any(), ratio


@pytest.mark.parametrize("name", list(CONFIGS))
def test_logits_match_transformers(name):
    cfg, ours, hf = _pair(name)
    ids = torch.randint(0, cfg.vocab_size, (2, 40))
    ours.setup_caches(2, 64)
    with torch.no_grad():
        ref = hf(input_ids=ids).logits
        pos = torch.arange(40)[None].expand(2, -1)
        got = ours(ours.embed(ids), pos)
    err = (got - ref).abs().max().item()
    print(f"{name}: logits max abs error {err:.2e} (logit scale {ref.abs().max().item():.1f})")
    assert err < TOL, f"max abs error {err:.3e} >= {TOL}"


@pytest.mark.parametrize("name", ["vicuna", "llama3"])
def test_prefill_then_decode_equals_full_recompute(name):
    cfg, ours, _ = _pair(name)
    ids = torch.randint(0, cfg.vocab_size, (1, 30))
    ours.setup_caches(1, 64)
    with torch.no_grad():
        full = ours(ours.embed(ids), torch.arange(30)[None])  # [1, 30, V]
        ours.setup_caches(1, 64)
        step_logits = [prefill(ours, ours.embed(ids[:, :14]), torch.tensor([14]))]
        for t in range(14, 30):
            step_logits.append(ours(ours.embed(ids[:, t : t + 1]), torch.tensor([[t]]))[:, 0])
    got = torch.stack(step_logits[:-1], dim=1)  # logits for positions 13 .. 28
    err = (got - full[:, 13:29]).abs().max().item()
    assert err < TOL, f"incremental vs full: {err:.3e}"
    assert len(step_logits) == 17  # prefill + 16 one-token steps


@pytest.mark.parametrize("name", ["vicuna", "llama3"])
def test_greedy_tokens_equal_transformers_generate(name):
    cfg, ours, hf = _pair(name)
    ids = torch.randint(3, cfg.vocab_size, (1, 12))
    with torch.no_grad():
        ref = hf.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=16,
            min_new_tokens=16,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )[0, 12:]
        ours.setup_caches(1, 64)
        got = generate_greedy(ours, ours.embed(ids), torch.tensor([12]), 16)[0]
    assert got.tolist() == ref.tolist()


def test_batch_of_different_lengths_equals_each_alone():
    cfg, ours, _ = _pair("vicuna")
    lengths = [5, 13, 9]
    seqs = [torch.randint(0, cfg.vocab_size, (n,)) for n in lengths]
    padded = torch.zeros(3, max(lengths), dtype=torch.long)
    for i, s in enumerate(seqs):
        padded[i, : len(s)] = s
    with torch.no_grad():
        ours.setup_caches(3, 64)
        batch_first = prefill(ours, ours.embed(padded), torch.tensor(lengths))
        batch = decode_n_tokens(ours, greedy(batch_first), torch.tensor(lengths), 10)
        for i, s in enumerate(seqs):
            ours.setup_caches(1, 64)
            alone_first = prefill(ours, ours.embed(s[None]), torch.tensor([len(s)]))
            torch.testing.assert_close(batch_first[i], alone_first[0], rtol=1e-5, atol=1e-5)
            alone = decode_n_tokens(ours, greedy(alone_first), torch.tensor([len(s)]), 10)
            assert batch[i].tolist() == alone[0].tolist()


def test_cache_overflow_is_a_clear_error():
    cfg, ours, _ = _pair("vicuna")
    ours.setup_caches(1, 8)
    with pytest.raises(ValueError, match="exceed the cache"):
        ours(ours.embed(torch.zeros(1, 9, dtype=torch.long)), torch.arange(9)[None])
