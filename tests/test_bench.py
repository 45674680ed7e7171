"""python -m rgpt_rt.bench on the tiny checkpoint (CPU): the table and the JSON carry every number the
fast-path issue asks for, with plausible values, and --decode compares the decode steps in one run."""

import json
import math

import pytest

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
    # transformers at the same shapes; per token is a difference of two timings, which a shared CPU can make
    # negative on the tiny model: only its presence is checked here (the GPU run is where it counts)
    assert d["hf_eager_ttft_ms"] > 0 and d["hf_static_ttft_ms"] > 0
    assert math.isfinite(d["hf_eager_ms_per_token"]) and math.isfinite(d["hf_static_ms_per_token"])
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


def test_hf_only_times_transformers_alone_without_its_automatic_compile(tiny_llava, tmp_path, monkeypatch):
    """--hf-only measures transformers and nothing of the runtime, and every generate call reaches transformers'
    auto-compile decision with disable_compile set (the decision's result is recorded: never compile)."""
    from transformers.generation.utils import GenerationMixin

    if not hasattr(GenerationMixin, "_valid_auto_compile_criteria"):
        pytest.skip("this transformers decides on automatic compilation elsewhere")
    seen = []
    decide = GenerationMixin._valid_auto_compile_criteria

    def spy(self, model_kwargs, generation_config):
        verdict = decide(self, model_kwargs, generation_config)
        seen.append((generation_config.disable_compile, type(model_kwargs.get("cache")).__name__, verdict))
        return verdict

    monkeypatch.setattr(GenerationMixin, "_valid_auto_compile_criteria", spy)
    out = tmp_path / "hf.json"
    args = ["--model", str(tiny_llava), "--device", "cpu", "--repeats", "1", "--new-tokens", "3", "--hf-only"]
    assert bench.main([*args, "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["hf_eager_ttft_ms"] > 0 and d["hf_static_ttft_ms"] > 0  # per token: see the test above
    assert math.isfinite(d["hf_eager_ms_per_token"]) and math.isfinite(d["hf_static_ms_per_token"])
    assert d["hf_dynamo_graphs"] == 0 and not [k for k in d if k.endswith("_error")]
    assert not [k for k in d if k.startswith(("startup", "ttft", "decode", "describe"))]  # nothing of the runtime
    assert seen and all(flag is True and verdict is False for flag, _, verdict in seen)
    assert any("Static" in cache for _, cache, _ in seen)  # the static-cache run is the one that would compile


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--compare-hf"], "not allowed with argument"),
        (["--soak", "5"], "--hf-only times transformers alone"),
        (["--decode", "fused"], "--hf-only times transformers alone"),
        (["--precision", "int8"], "no int8 counterpart"),
    ],
)
def test_hf_only_rejects_what_it_cannot_do(extra, message, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--hf-only", "--device", "cpu", *extra])
    assert message in capsys.readouterr().err


def test_soak_stops_after_its_time_limit(tiny_llava, tmp_path):
    out = tmp_path / "soak.json"
    args = ["--model", str(tiny_llava), "--device", "cpu", "--new-tokens", "2", "--soak", "1000000"]
    assert bench.main([*args, "--soak-seconds", "0.5", "--soak-only", "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert 1 <= d["soak_calls"] < 1_000_000 and 0.5 <= d["soak_s"] < 60
