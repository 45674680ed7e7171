"""python -m rgpt_rt.bench on the tiny checkpoint (CPU): the table and the JSON carry every number the
fast-path issue asks for, with plausible values, and --decode compares the decode steps in one run."""

import json

from rgpt_rt import bench


def test_bench_json_on_the_tiny_checkpoint(tiny_llava, tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["--model", str(tiny_llava), "--device", "cpu", "--repeats", "1", "--new-tokens", "6"]
    args += ["--regions", "1,3", "--decode", "fused,reference", "--soak", "20", "--compare-hf", "--json", str(out)]
    assert bench.main(args) == 0
    d = json.loads(out.read_text())
    for key in (
        "startup_cold_ms",
        "startup_warm_ms",
        "vision_ms",
        "ttft_ms",
        "decode_ms_per_token",
        "describe_ms_6tok",
        "describe_many_1_ms",
        "describe_many_3_ms",
        "regions_per_s_3",
        "step_ms_fused",
        "step_ms_reference",
        "decode_ms_per_token_fused",
        "decode_ms_per_token_reference",
        "soak_rss_growth_mb",
    ):
        assert key in d, key
    assert d["decode"] == "fused" and d["soak_calls"] == 20
    assert d["hf_eager_ms_per_token"] > 0 and d["hf_static_ms_per_token"] > 0  # transformers at the same shapes
    assert not [k for k in d if k.endswith("_error")]
    assert 0 < d["ttft_ms"] < 60_000 and 0 < d["step_ms_fused"] < 10_000 and d["prompt_tokens"] > 50
    assert d["ttft_ms"] >= d["vision_ms"]
    printed = capsys.readouterr().out
    assert "decode_ms_per_token_reference" in printed and "regions_per_s_3" in printed


def test_bench_rejects_random_7b_without_a_gpu(monkeypatch, capsys):
    import pytest

    with pytest.raises(SystemExit):
        bench.main(["--random-7b", "--device", "cpu"])
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_decoder_weight_bytes_counts_fused_and_int8_weights_once():
    from rgpt_rt.model.fused_decode import fuse_projections_
    from rgpt_rt.model.quant import quantize_decoder_
    from rgpt_rt.testing import make_tiny_model

    llm = make_tiny_model("llava").llm
    plain = sum(p.numel() * p.element_size() for p in llm.parameters())
    linear = sum(p.numel() for layer in llm.model.layers for p in layer.parameters() if p.dim() == 2)
    assert bench.decoder_weight_bytes(llm) == plain
    fuse_projections_(llm)
    assert bench.decoder_weight_bytes(llm) == plain  # views into the fused weights are not counted twice

    model = make_tiny_model("llava")
    quantize_decoder_(model)
    llm = model.llm
    int8 = bench.decoder_weight_bytes(llm)
    n_out = sum(m.out_features for m in llm.modules() if type(m).__name__ == "Int8Linear")
    assert int8 == plain - 3 * linear + 4 * n_out  # fp32 linear weights became int8, plus one fp32 scale per row
    fuse_projections_(llm)
    assert bench.decoder_weight_bytes(llm) == int8
