"""Engines: ONNX export parity per graph, the onnx backend end to end, manifests, the build CLI, int8."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")

from build_engine.builder import build  # noqa: E402
from build_engine.export import export_connector, export_decoder, export_vision  # noqa: E402
from rgpt_rt import Runtime  # noqa: E402
from rgpt_rt.cli import SAMPLE_BOX, SAMPLE_IMAGE  # noqa: E402
from rgpt_rt.engine import read_manifest  # noqa: E402
from rgpt_rt.errors import EngineError  # noqa: E402
from rgpt_rt.testing import make_tiny_model  # noqa: E402

INSTR = "Describe in detail the object located at <region> in the image."


def _quiet(msg):
    pass


@pytest.fixture(scope="module", params=["llava", "vila"])
def engine(request, tmp_path_factory):
    ckpt = request.getfixturevalue(f"tiny_{request.param}")
    out = tmp_path_factory.mktemp("eng") / request.param
    return ckpt, build(ckpt, out, log=_quiet)


@pytest.mark.parametrize("layout", ["llava", "vila"])
@pytest.mark.parametrize("precision,tol", [("fp32", 1e-5), ("fp16", 5e-3)])
def test_each_graph_matches_torch(layout, precision, tol, tmp_path):
    m = make_tiny_model(layout)
    m.native_ops = False
    dt = np.float16 if precision == "fp16" else np.float32
    cfg = m.cfg
    s, c, g = cfg.vision.image_size, cfg.vision.hidden_size, cfg.region.image_grid
    export_vision(m, tmp_path / "v.onnx", precision)
    export_connector(m, tmp_path / "c.onnx", precision)
    export_decoder(m, tmp_path / "d.onnx", precision)
    rel = lambda a, b: float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b))  # noqa: E731
    px = torch.randn(2, 3, s, s)
    got = ort.InferenceSession(str(tmp_path / "v.onnx")).run(None, {"pixels": px.numpy().astype(dt)})[0]
    with torch.no_grad():
        ref = m.encode_image(px).numpy()
    assert got.shape == ref.shape and rel(got, ref) < tol, rel(got, ref)
    feats, regs = torch.randn(g * g, c), torch.randn(3, c)
    got = ort.InferenceSession(str(tmp_path / "c.onnx")).run(
        None, {"image_features": feats.numpy().astype(dt), "region_features": regs.numpy().astype(dt)}
    )
    with torch.no_grad():
        ref = m.connect(feats, regs)
    for a, b in zip(got, ref):
        assert a.shape == tuple(b.shape) and rel(a, b.numpy()) < tol
    llm = cfg.llm
    ids = torch.tensor([[1, 9, llm.vocab_size, llm.vocab_size + 1, 17, 30]])
    table = torch.randn(1, 2, llm.hidden_size)
    sess = ort.InferenceSession(str(tmp_path / "d.onnx"))
    with torch.no_grad():
        m.llm.setup_caches(1, 16)
        full = m.llm(m.embed(ids, table), torch.arange(6)[None])[0].numpy()  # [6, V]
    empty = np.zeros((1, llm.num_kv_heads, 0, llm.head_dim), dt)
    feeds = {"input_ids": ids[:, :4].numpy(), "mm_table": table.numpy().astype(dt), "position_ids": np.arange(4)[None]}
    feeds.update({f"past_{k}_{i}": empty for i in range(llm.num_layers) for k in ("key", "value")})
    out = sess.run(None, feeds)
    assert rel(out[0][0], full[3]) < tol
    feeds = {
        "input_ids": ids[:, 4:].numpy(),
        "mm_table": np.zeros((1, 1, llm.hidden_size), dt),
        "position_ids": np.arange(4, 6)[None],
    }
    feeds.update(
        {f"past_{k}_{i}": out[1 + 2 * i + j] for i in range(llm.num_layers) for j, k in enumerate(("key", "value"))}
    )
    out2 = sess.run(None, feeds)  # two new tokens on top of a 4-token past
    assert rel(out2[0][0], full[5]) < tol
    assert out2[1].shape == (1, llm.num_kv_heads, 6, llm.head_dim)


def test_onnx_backend_gives_the_torch_tokens(engine, sample_frame):
    ckpt, eng = engine
    onnx_rt = Runtime.from_pretrained(eng, backend="onnx")
    torch_rt = Runtime.from_pretrained(ckpt, backend="torch")
    assert Runtime.from_pretrained(eng).backend_name == "onnx"  # auto picks onnx for engine dirs here
    for box in (SAMPLE_BOX, (10, 40, 90, 160)):
        a = onnx_rt.generate(sample_frame, INSTR, box, max_new_tokens=24, return_first_logits=True)
        b = torch_rt.generate(sample_frame, INSTR, box, max_new_tokens=24, return_first_logits=True)
        assert a.token_ids == b.token_ids
        err = np.abs(a.first_logits - b.first_logits).max() / np.abs(b.first_logits).max()
        print(f"{eng.name}: first-step logits relative error {err:.2e}")
        assert err < 1e-5
    assert onnx_rt.describe_many(
        sample_frame, [SAMPLE_BOX, (0, 0, 60, 60)], max_new_tokens=6
    ) == torch_rt.describe_many(sample_frame, [SAMPLE_BOX, (0, 0, 60, 60)], max_new_tokens=6)


def test_onnx_runtime_works_without_torch(engine, tmp_path):
    _, eng = engine
    code = (
        "import sys\n"
        "for name in ('torch', 'build_engine', 'transformers'):\n"
        "    sys.modules[name] = None\n"
        "from rgpt_rt import Runtime\n"
        "from rgpt_rt.cli import SAMPLE_IMAGE, SAMPLE_BOX\n"
        f"rt = Runtime.from_pretrained({str(eng)!r}, backend='onnx')\n"
        "print('OUT', len(rt.generate(SAMPLE_IMAGE, 'Describe <region>.', SAMPLE_BOX, max_new_tokens=5).token_ids))\n"
        "assert not any(m == 'torch' or m.startswith('torch.') for m in sys.modules if sys.modules[m] is not None)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "OUT 5" in out.stdout


def test_manifest_contents(engine):
    _, eng = engine
    m = read_manifest(eng)
    d = m.data
    assert d["format"] == "rgpt_rt.engine" and d["precision"] == "fp32" and d["backend"] == "onnx"
    assert set(d["graphs"]) == {"vision", "connector", "decoder"}
    assert d["graphs"]["decoder"]["inputs"][0] == {"name": "input_ids", "dtype": "int64", "shape": ["batch", "seq"]}
    assert {"vision.onnx", "connector.onnx", "decoder.onnx", "tokenizer.json"} <= set(d["files"])
    assert all(len(f["sha256"]) == 64 for f in d["files"].values())
    assert d["tools"]["onnx"] and d["source"]["inputs_sha256"]
    assert m.cfg == Runtime.from_pretrained(eng).cfg


def test_manifest_validation_errors(engine, tmp_path):
    _, eng = engine
    bad = tmp_path / "bad"
    shutil.copytree(eng, bad)
    (bad / "connector.onnx").write_bytes((bad / "connector.onnx").read_bytes()[:-1] + b"\x00")
    with pytest.raises(EngineError, match="connector.onnx changed since the build"):
        Runtime.from_pretrained(bad)
    shutil.rmtree(bad)
    shutil.copytree(eng, bad)
    (bad / "vision.onnx").unlink()
    with pytest.raises(EngineError, match="vision.onnx named in manifest.json is missing"):
        read_manifest(bad)
    shutil.rmtree(bad)
    shutil.copytree(eng, bad)
    d = json.loads((bad / "manifest.json").read_text())
    d["format_version"] = 99
    (bad / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(EngineError, match="format version 99.*rebuild"):
        read_manifest(bad)
    (bad / "manifest.json").write_text("{")
    with pytest.raises(EngineError, match="not valid JSON"):
        read_manifest(bad)
    with pytest.raises(EngineError, match="not an engine directory"):
        read_manifest(tmp_path)


def test_trt_engine_for_another_gpu_is_refused(engine, tmp_path):
    _, eng = engine
    m = read_manifest(eng)
    with pytest.raises(EngineError, match="has no TensorRT engines"):
        m.check_trt("10.3.0", "sm_90")
    m.data["tools"]["tensorrt"], m.data["gpu"] = "10.3.0", {"arch": "sm_87", "name": "Orin"}
    with pytest.raises(EngineError, match="built for GPU architecture sm_87 but this GPU is sm_90.*rebuild"):
        m.check_trt("10.3.0", "sm_90")
    with pytest.raises(EngineError, match="built with TensorRT 10.3.0 but TensorRT 10.8.0 is installed"):
        m.check_trt("10.8.0", "sm_87")
    m.check_trt("10.3.0", "sm_87")


def test_backend_and_directory_mismatches(engine):
    ckpt, eng = engine
    with pytest.raises(ValueError, match="engine directory; the torch backend loads checkpoint"):
        Runtime.from_pretrained(eng, backend="torch")
    with pytest.raises(ValueError, match="needs an engine directory.*python -m rgpt_rt.build"):
        Runtime.from_pretrained(ckpt, backend="onnx")


def test_build_cli_end_to_end_and_rebuild_skip(tiny_llava, tmp_path):
    out = tmp_path / "eng"
    cmd = [sys.executable, "-m", "rgpt_rt.build", str(tiny_llava), "--out", str(out), "--precision", "fp16"]
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "[1/5] loading" in first.stdout and "engine directory ready" in first.stdout
    assert read_manifest(out).precision == "fp16"
    stamp = (out / "decoder.onnx").stat().st_mtime_ns
    tokens = Runtime.from_pretrained(out).generate(SAMPLE_IMAGE, INSTR, SAMPLE_BOX, max_new_tokens=4).token_ids
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert "up to date" in again.stdout and (out / "decoder.onnx").stat().st_mtime_ns == stamp
    forced = subprocess.run(cmd + ["--force"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert forced.returncode == 0 and "[4/5]" in forced.stdout
    rt = Runtime.from_pretrained(out)
    assert len(tokens) == 4 and rt.generate(SAMPLE_IMAGE, INSTR, SAMPLE_BOX, max_new_tokens=4).token_ids == tokens
    bad = subprocess.run(
        [sys.executable, "-m", "rgpt_rt.build", str(tmp_path / "nope"), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert bad.returncode == 2 and "error:" in bad.stderr


@pytest.mark.parametrize("recipe", ["weight_only", "smoothquant"])
def test_int8_quality_and_graph(recipe, tiny_llava, tmp_path, sample_frame):
    import onnx

    out = build(tiny_llava, tmp_path / recipe, precision="int8", int8_recipe=recipe, log=_quiet)
    q = read_manifest(out).data["quality"]
    print(f"int8 {recipe}: {q}")
    assert q["first_logits_cosine_min"] >= 0.99
    assert q["greedy_agreement_teacher_forced"] >= 0.8
    ops = [n.op_type for n in onnx.load(str(out / "decoder.onnx")).graph.node]
    assert ops.count("DequantizeLinear") >= 14  # 2 layers x 7 linear layers
    assert (ops.count("QuantizeLinear") >= 14) == (recipe == "smoothquant")
    rt = Runtime.from_pretrained(out)  # the runtime's own first-step logits keep the build's quality claim
    got = rt.generate(sample_frame, INSTR, SAMPLE_BOX, max_new_tokens=8, return_first_logits=True).first_logits
    ref = (
        Runtime.from_pretrained(tiny_llava)
        .generate(sample_frame, INSTR, SAMPLE_BOX, max_new_tokens=1, return_first_logits=True)
        .first_logits
    )
    assert float(got @ ref / np.linalg.norm(got) / np.linalg.norm(ref)) >= 0.99


def test_trt_backend_without_tensorrt_says_what_to_install_and_refuses_an_onnx_only_directory(engine, monkeypatch):
    import trt_double

    _, eng = engine
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # as on a machine without TensorRT
    with pytest.raises(ImportError, match=r"needs TensorRT and cuda-python \(pip install 'rgpt_rt\[trt\]'\)"):
        Runtime.from_pretrained(eng, backend="trt")
    trt_double.install(monkeypatch)  # TensorRT and a GPU present (tests/trt_double), engines absent
    with pytest.raises(EngineError, match="has no TensorRT engines"):
        Runtime.from_pretrained(eng, backend="trt")
