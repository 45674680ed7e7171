"""The trt backend's contract, checked in CI without TensorRT or a GPU.

tests/trt_double stands in for TensorRT and cuda-python: `python -m rgpt_rt.build --backend trt` (the real
build_engine/trt_builder.py) builds "engines" with it, and the real trt backend runs them, with its device
buffers, shape profiles, tensor addresses, ping-pong KV buffers, stream order and region_pool call, on host
memory where the engines execute the engine directory's ONNX graphs with ONNX Runtime. Its answers must be
the onnx backend's answers on the same graphs, token for token.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

import trt_double  # noqa: E402
from trt_double import cudart as cudart_double  # noqa: E402
from trt_double import tensorrt as trt  # noqa: E402

from build_engine.cli import main as build_main  # noqa: E402
from rgpt_rt import Runtime  # noqa: E402
from rgpt_rt.cli import SAMPLE_BOX  # noqa: E402
from rgpt_rt.engine import read_manifest  # noqa: E402

BOXES = [SAMPLE_BOX, (10, 40, 90, 160)]
GREEDY = {"max_new_tokens": 10, "ignore_eos": True}


@pytest.fixture
def double(monkeypatch):
    return trt_double.install(monkeypatch)


@pytest.fixture(scope="module", params=["llava", "vila"])
def trt_engine(request, tmp_path_factory):
    """An engine directory built by the real CLI glue with --backend trt, against the TensorRT double."""
    ckpt = request.getfixturevalue(f"tiny_{request.param}")
    out = tmp_path_factory.mktemp("trt") / request.param
    with pytest.MonkeyPatch.context() as mp:
        trt_double.install(mp)
        assert build_main([str(ckpt), "--out", str(out), "--backend", "trt"]) == 0
    return out


def test_the_trt_build_writes_engines_profiles_and_gpu_into_a_verified_manifest(trt_engine):
    m = read_manifest(trt_engine, verify=True)
    d = m.data
    assert d["backend"] == "trt" and d["tools"]["tensorrt"] == trt.__version__
    assert d["gpu"]["arch"] == "sm_90"
    for g in ("vision", "connector", "decoder"):
        assert d["graphs"][g]["engine"] == f"{g}.engine" and f"{g}.engine" in d["files"]
        assert (trt_engine / f"{g}.engine").read_bytes().startswith(trt.MAGIC)
    assert set(d["profiles"]["decoder"]) == {"prefill", "decode"}


def test_trt_backend_gives_the_onnx_backends_tokens_for_every_call(trt_engine, double, sample_frame):
    rt = Runtime.from_pretrained(trt_engine)  # auto: a trt engine directory on a usable GPU
    ref = Runtime.from_pretrained(trt_engine, backend="onnx")  # the same graphs, run by ONNX Runtime directly
    assert rt.backend_name == "trt" and ref.backend_name == "onnx"
    instr = "Describe in detail the object located at <region> in the image."
    a = rt.generate(sample_frame, instr, SAMPLE_BOX, return_first_logits=True, **GREEDY)
    b = ref.generate(sample_frame, instr, SAMPLE_BOX, return_first_logits=True, **GREEDY)
    assert len(a.token_ids) == GREEDY["max_new_tokens"] and a.token_ids == b.token_ids
    np.testing.assert_allclose(a.first_logits, b.first_logits, rtol=0, atol=1e-5 * np.abs(b.first_logits).max())
    assert rt.describe(sample_frame, BOXES[1], **GREEDY) == ref.describe(sample_frame, BOXES[1], **GREEDY)
    two = "How does <region> relate to <region>?"
    assert (
        rt.generate(sample_frame, two, BOXES, **GREEDY).token_ids
        == ref.generate(sample_frame, two, BOXES, **GREEDY).token_ids
    )
    assert rt.describe_many(sample_frame, BOXES, **GREEDY) == ref.describe_many(sample_frame, BOXES, **GREEDY)
    chat, ref_chat = rt.chat(sample_frame, [SAMPLE_BOX]), ref.chat(sample_frame, [SAMPLE_BOX])
    for turn in ("What is <region>?", "And what colour is it?", "Compare <region> with the rest."):
        assert chat.ask(turn, **GREEDY) == ref_chat.ask(turn, **GREEDY)
    cands = ["car", "tree", "a red car"]  # teacher-forced rows after a reused (repacked) prompt prefix
    np.testing.assert_allclose(
        rt.score(sample_frame, instr, SAMPLE_BOX, cands), ref.score(sample_frame, instr, SAMPLE_BOX, cands), atol=1e-4
    )
    assert rt.backend.kv_prefix.reused > 0
    assert double.launches > 0 and not any(double.streams.values())  # every queued piece of work ran


def test_a_region_pool_call_in_the_old_flat_argument_form_fails_the_contract(trt_engine, double, monkeypatch):
    """What the contract test catches: the trt backend calling the native op in any other form than the one
    the module takes (here the 25 flat arguments the backend once passed) fails on the first frame."""
    from rgpt_rt import _native
    from rgpt_rt.backends import trt_backend

    def old_form(fmap, masks, image, regions, grid, eps, workspace, stream):
        _native.cuda().region_pool(*fmap, *masks, *image, *regions, grid, eps, workspace.ptr, workspace.extent, stream)

    monkeypatch.setattr(trt_backend, "region_pool_device", old_form)
    rt = Runtime.from_pretrained(trt_engine, backend="trt")
    with pytest.raises(TypeError, match="incompatible function arguments"):
        rt.describe(np.zeros((64, 64, 3), np.uint8), (0, 0, 32, 32), max_new_tokens=2)


def test_the_double_refuses_shapes_outside_the_profile_like_tensorrt(trt_engine, double):
    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine((trt_engine / "decoder.engine").read_bytes())
    ctx = engine.create_execution_context()
    longest = read_manifest(trt_engine).data["profiles"]["decoder"]["prefill"]["input_ids"][2][1]
    assert engine.num_optimization_profiles == 2
    assert ctx.set_input_shape("input_ids", (1, longest)) and not ctx.set_input_shape("input_ids", (1, longest + 1))
    assert ctx.get_tensor_shape("input_ids") == (1, longest) and ctx.get_tensor_shape("logits")[0] == -1
    assert not ctx.set_input_shape("input_ids", (1, 2, 3))  # wrong rank
    assert ctx.set_optimization_profile_async(1, 0) and not ctx.set_optimization_profile_async(2, 0)
    assert not ctx.set_input_shape("input_ids", (1, 2))  # the decode profile takes one token
    past = engine.get_tensor_shape("past_key_0")
    assert not ctx.set_input_shape("past_key_0", (1, past[1], 0, past[3]))  # decode needs a past
    assert not ctx.execute_async_v3(0)  # input shapes not all set


def test_the_double_catches_reads_and_writes_outside_device_allocations(trt_engine, double):
    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine((trt_engine / "connector.engine").read_bytes())
    ctx = engine.create_execution_context()
    _, stream = cudart_double.cudaStreamCreate()
    c = engine.get_tensor_shape("image_features")[1]
    g2 = engine.get_tensor_shape("image_features")[0]
    ptr = {n: cudart_double.cudaMalloc(g2 * 4096)[1] for n in engine.names}
    _, small = cudart_double.cudaMalloc(4)
    assert ctx.set_input_shape("region_features", (1, c)) and ctx.get_tensor_shape("region_embeds")[0] == 1
    for name in engine.names:
        assert ctx.set_tensor_address(name, small if name == "image_embeds" else ptr[name])
    assert ctx.execute_async_v3(int(stream))
    with pytest.raises(cudart_double.DeviceError, match="output image_embeds.*overrun an allocation of 4 bytes"):
        cudart_double.cudaStreamSynchronize(stream)
    host = np.zeros(8, np.float32)
    with pytest.raises(cudart_double.DeviceError, match="not inside any live device allocation"):
        cudart_double.cudaMemcpy(host.ctypes.data, host.ctypes.data, 32, cudart_double.cudaMemcpyKind(2))


def test_the_trt_builder_refuses_a_network_whose_dynamic_input_has_no_profile(trt_engine, double, tmp_path):
    from build_engine.trt_builder import _build_one

    with pytest.raises(RuntimeError, match="TensorRT failed to build an engine from connector.onnx"):
        _build_one(trt, trt_engine / "connector.onnx", tmp_path / "c.engine", [{}], lambda s: None)
