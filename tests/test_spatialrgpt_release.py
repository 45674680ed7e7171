"""A checkpoint in SpatialRGPT's released format (a8cheng/SpatialRGPT-VILA1.5-8B, shrunk) gives SpatialRGPT's
first-token logits on a non-square frame with its `resize` preprocessing, with and without a depth map.

The reference is written here from SpatialRGPT's published inference code (llava/mm_utils.py process_image /
process_regions, llava/model/region_extractor/base_extractor.py, llava/model/llava_arch.py, the DownSampleBlock
of multimodal_projector/base_projector.py, the llama_3 conversation) and the checkpoint's own files, without any
rgpt_rt code: Pillow for the frame, OpenCV's nearest-neighbour index (re-derived in float64) for masks,
transformers' SiglipVisionModel and LlamaForCausalLM in float64 with the checkpoint's weights, and float64
numpy / torch for the refinement, pooling and connectors.
"""

import json

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from safetensors.numpy import load_file  # noqa: E402

from rgpt_rt import Runtime  # noqa: E402
from rgpt_rt.errors import InputError, PromptError  # noqa: E402
from rgpt_rt.testing import make_tiny_checkpoint  # noqa: E402

H, W = 360, 640  # a landscape camera frame (16:9)
QUESTION = "How far is <mask> from <mask>?"
SYSTEM = (
    "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful language and vision assistant. You are able "
    "to understand the visual content that the user provides, and assist the user with a variety of tasks using "
    "natural language."
)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("srgpt") / "SpatialRGPT-tiny", layout="vila", seed=3)


@pytest.fixture(scope="module")
def rt(release):
    return Runtime.from_pretrained(release, backend="torch")


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(11)
    # Smooth colour gradients plus noise: resampling differences show, nothing is flat.
    yy, xx = np.mgrid[0:H, 0:W]
    base = np.stack([xx * 255 / W, yy * 255 / H, (xx + yy) * 255 / (H + W)], -1)
    frame = np.clip(base + rng.normal(0, 25, (H, W, 3)), 0, 255).astype(np.uint8)
    masks = np.zeros((2, H, W), np.uint8)
    masks[0, 40:200, 60:300] = 1  # SpatialRGPT's box masks: zero_mask[y1:y2, x1:x2] = 1
    masks[1, 150:350, 380:620] = 1
    depth = (2.0 + np.sin(xx / 50.0) + yy / 100.0 + rng.normal(0, 0.05, (H, W))).astype(np.float32)  # disparity
    return frame, masks, depth


def release_files_are_the_releases(path):
    llm = path / "llm"
    names = {p.name for p in llm.iterdir()}
    shards = sorted(n for n in names if n.startswith("model-"))
    assert shards == [f"model-{i:05d}-of-00004.safetensors" for i in range(1, 5)]
    assert {"config.json", "generation_config.json", "model.safetensors.index.json", "tokenizer.json",
            "tokenizer_config.json", "special_tokens_map.json"} <= names  # fmt: skip
    assert {p.name for p in (path / "vision_tower").iterdir()} == {
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    }
    region_cfg = json.loads((path / "region_extractor" / "config.json").read_text())
    assert {k for k in region_cfg if not k.startswith("_")} == {
        "architectures",
        "model_type",
        "region_extractor_type",
        "torch_dtype",
    }
    top = json.loads((path / "config.json").read_text())
    assert top["image_aspect_ratio"] == "resize" and top["enable_depth"] is True
    assert not {"conv_template", "image_token", "region_token"} & set(top)
    eos = json.loads((llm / "generation_config.json").read_text())["eos_token_id"]
    vocab = json.loads((llm / "tokenizer.json").read_text())["added_tokens"]
    by_id = {t["id"]: t["content"] for t in vocab}
    assert [by_id[i] for i in eos] == ["<|end_of_text|>", "<|eot_id|>"]
    head = load_file(str(path / "vision_tower" / "model.safetensors"))
    assert "vision_model.head.probe" in head and "vision_model.post_layernorm.weight" in head
    assert "depth_projector.weight" in load_file(str(path / "region_extractor" / "model.safetensors"))


def test_the_tiny_writer_mirrors_the_release_files(release):
    release_files_are_the_releases(release)


# ---- the reference ---------------------------------------------------------------------------------------


def process_image(img: np.ndarray, pre: dict) -> np.ndarray:
    """process_image with image_aspect_ratio "resize": PIL resize to the tower's size (bicubic), then the
    SigLIP processor's rescale and normalise (float64 here). [3, S, S]"""
    s = pre["size"]["height"]
    x = np.asarray(Image.fromarray(img).resize((s, s), Image.BICUBIC), np.float64) * pre["rescale_factor"]
    x = (x - np.asarray(pre["image_mean"])) / np.asarray(pre["image_std"])
    return x.transpose(2, 0, 1)


def process_regions(masks: np.ndarray, s: int) -> np.ndarray:
    """process_regions with "resize": cv2.resize(m, (S, S), INTER_NEAREST), re-derived: source index
    min(floor(i * (1 / (S / n))), n - 1) per axis. [N, S, S] float64"""
    n, h, w = masks.shape

    def idx(size):
        inv = 1.0 / (float(s) / float(size))
        return np.minimum(np.floor(np.arange(s, dtype=np.float64) * inv).astype(np.int64), size - 1)

    out = masks.astype(np.float64)[:, idx(h)][:, :, idx(w)]
    try:
        import cv2

        for k in range(n):
            want = cv2.resize(masks[k].astype(np.uint8), (s, s), interpolation=cv2.INTER_NEAREST)
            np.testing.assert_array_equal(out[k], want)
    except ImportError:
        pass
    return out


def depth_levels(raw: np.ndarray) -> np.ndarray:
    """SpatialRGPT's get_depth_map after the estimator: min-max to 0..255 in float32, uint8, three channels."""
    d = (raw - raw.min()) / (raw.max() - raw.min()) * 255.0
    d = d.astype(np.uint8)
    return np.stack([d, d, d], axis=-1)


def conv_t2x2(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ConvTranspose2d(k=2, s=2): out[o, 2i+p, 2j+q] = sum_c x[c, i, j] w[c, o, p, q] + b[o]."""
    c, h, wd = x.shape
    out = np.einsum("cij,copq->oipjq", x, w).reshape(w.shape[1], 2 * h, 2 * wd)
    return out + b[:, None, None]


def gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + torch.special.erf(torch.from_numpy(x / np.sqrt(2.0))).numpy())


def layer_norm(x: np.ndarray, w, b, eps: float, axis: int) -> np.ndarray:
    mu = x.mean(axis, keepdims=True)
    var = ((x - mu) ** 2).mean(axis, keepdims=True)
    shape = [1] * x.ndim
    shape[axis] = -1
    return (x - mu) / np.sqrt(var + eps) * w.reshape(shape) + b.reshape(shape)


def adaptive_avg_pool(x: np.ndarray, g: int) -> np.ndarray:
    c, h, w = x.shape
    out = np.zeros((c, g, g))
    for i in range(g):
        for j in range(g):
            y0, y1 = (i * h) // g, -((-(i + 1) * h) // g)
            x0, x1 = (j * w) // g, -((-(j + 1) * w) // g)
            out[:, i, j] = x[:, y0:y1, x0:x1].mean(axis=(1, 2))
    return out


def mask_pooling(feats_hw_c: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """base_extractor.MaskPooling: masks bilinearly interpolated with scale_factor sqrt(HW / mask_hw), then
    sum(mask * f) / (sum(mask) + 1e-8). feats [HW, C], masks [M, S, S] -> [M, C]"""
    scale = (feats_hw_c.shape[0] / (masks.shape[-1] * masks.shape[-2])) ** 0.5
    m = torch.nn.functional.interpolate(torch.from_numpy(masks)[None], scale_factor=scale, mode="bilinear")[0]
    m = m.numpy()
    denorm = m.sum(axis=(-1, -2))[:, None] + 1e-8
    return np.einsum("lc,ml->mc", feats_hw_c, m.reshape(m.shape[0], -1) / denorm)


def flat_square(x: np.ndarray) -> np.ndarray:
    """DownSampleBlock.flat_square on [n, w, h, c] (zero-pad odd sides, then 2x2 blocks to 4c channels)."""
    n, w, h, c = x.shape
    if w % 2:
        x = np.concatenate([x, np.zeros((n, 1, h, c))], axis=1)
        n, w, h, c = x.shape
    if h % 2:
        x = np.concatenate([x, np.zeros((n, w, 1, c))], axis=2)
        n, w, h, c = x.shape
    x = x.reshape(n, w, h // 2, c * 2).transpose(0, 2, 1, 3)
    return x.reshape(n, h // 2, w // 2, c * 4)


def reference_logits(path, frame, masks, depth_raw, question: str) -> np.ndarray:
    from tokenizers import Tokenizer

    pre = json.loads((path / "vision_tower" / "preprocessor_config.json").read_text())
    top = json.loads((path / "config.json").read_text())
    s = pre["size"]["height"]
    tower = transformers.SiglipVisionModel.from_pretrained(str(path / "vision_tower")).double().eval()
    layer = top["mm_vision_select_layer"]

    def tower_features(img: np.ndarray) -> np.ndarray:  # [HW, C], VisionTower with select_feature cls_patch
        with torch.no_grad():
            out = tower(torch.from_numpy(process_image(img, pre))[None], output_hidden_states=True)
        return out.hidden_states[layer][0].numpy()

    region = load_file(str(path / "region_extractor" / "model.safetensors"))
    proj = load_file(str(path / "mm_projector" / "model.safetensors"))
    r = {k: v.astype(np.float64) for k, v in region.items()}
    p = {k: v.astype(np.float64) for k, v in proj.items()}

    feats = tower_features(frame)  # [g*g, C]
    g = int(round(feats.shape[0] ** 0.5))
    x = feats.T.reshape(-1, g, g)  # N (H W) C -> N C H W
    x = conv_t2x2(x, r["feature_refinement_module.0.weight"], r["feature_refinement_module.0.bias"])
    x = layer_norm(x, r["feature_refinement_module.1.weight"], r["feature_refinement_module.1.bias"], 1e-6, 0)
    x = gelu(x)
    x = gelu(conv_t2x2(x, r["feature_refinement_module.3.weight"], r["feature_refinement_module.3.bias"]))
    hres = x.reshape(x.shape[0], -1).T  # [HW, C]
    lres = adaptive_avg_pool(x, g).reshape(x.shape[0], -1).T  # ada_pooling to the tower's grid

    m = process_regions(masks, s)
    mask_embeds = mask_pooling(hres, m) @ r["rgb_projector.weight"].T + r["rgb_projector.bias"]
    depth_embeds = None
    if depth_raw is not None:
        dfeats = tower_features(depth_levels(depth_raw))
        depth_embeds = mask_pooling(dfeats, m) @ r["depth_projector.weight"].T + r["depth_projector.bias"]

    y = flat_square(lres.reshape(1, g, g, -1))
    y = y.reshape(1, -1, y.shape[-1])[0]
    y = layer_norm(y, p["layers.1.weight"], p["layers.1.bias"], 1e-5, -1)
    y = gelu(y @ p["layers.2.weight"].T + p["layers.2.bias"])
    image_embeds = y @ p["layers.4.weight"].T + p["layers.4.bias"]

    # llama_3 conversation, one user turn with the image first; tokenizer_image_token: BOS, then the chunks.
    prompt = (
        SYSTEM + "<|eot_id|>" + "<|start_header_id|>user<|end_header_id|>\n\n" + "<image>\n" + question + "<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    tok = Tokenizer.from_file(str(path / "llm" / "tokenizer.json"))
    before, after = prompt.split("<image>")
    bos = tok.token_to_id("<|begin_of_text|>")
    ids_a = tok.encode(before, add_special_tokens=False).ids
    ids_b = tok.encode(after, add_special_tokens=False).ids
    llm = transformers.LlamaForCausalLM.from_pretrained(str(path / "llm")).double().eval()
    emb = llm.get_input_embeddings().weight.detach().numpy()
    text_ids = [bos, *ids_a, *ids_b]
    rows = [emb[i] for i in [bos, *ids_a]] + list(image_embeds) + [emb[i] for i in ids_b]
    # <mask> / <depth> ids are replaced by the k-th region's embeddings, in order (prepare_inputs_labels_...).
    mask_id, depth_id = tok.token_to_id("<mask>"), tok.token_to_id("<depth>")
    offset = 1 + len(ids_a) + len(image_embeds)
    km = kd = 0
    for j, t in enumerate(ids_b):
        if t == mask_id:
            rows[offset + j] = mask_embeds[km]
            km += 1
        elif t == depth_id:
            rows[offset + j] = depth_embeds[kd]
            kd += 1
    assert km == masks.shape[0] and kd == (0 if depth_raw is None else masks.shape[0]) and mask_id in text_ids
    with torch.no_grad():
        out = llm(inputs_embeds=torch.from_numpy(np.stack(rows))[None])
    return out.logits[0, -1].numpy()


# ---- the checks -------------------------------------------------------------------------------------------


def _close(got: np.ndarray, want: np.ndarray, rtol: float = 1e-5) -> None:
    scale = np.abs(want).max()
    err = np.abs(got.astype(np.float64) - want).max()
    assert err <= rtol * scale, f"max |logit error| {err:.3g} > {rtol} x max |logit| {scale:.3g}"
    assert int(np.argmax(got)) == int(np.argmax(want))


@pytest.mark.parametrize("with_depth", [False, True], ids=["rgb", "depth"])
def test_first_token_logits_match_spatialrgpt_on_a_non_square_frame(release, rt, inputs, with_depth):
    frame, masks, depth = inputs
    assert rt.cfg.image_aspect_ratio == "resize" and rt.cfg.enable_depth and rt.cfg.conv_template == "llama_3"
    question = QUESTION.replace("<mask>", "<mask> <depth>") if with_depth else QUESTION
    want = reference_logits(release, frame, masks, depth if with_depth else None, question)
    got = rt.generate(
        frame,
        "How far is <region> from <region>?",  # the runtime writes SpatialRGPT's `<mask> <depth>` itself
        masks,
        depth=depth if with_depth else None,
        max_new_tokens=1,
        return_first_logits=True,
    ).first_logits
    _close(got, want)


def test_depth_changes_the_answer_and_explicit_placeholders_equal_the_default(rt, inputs):
    frame, masks, depth = inputs
    kw = dict(max_new_tokens=1, return_first_logits=True)
    plain = rt.generate(frame, "How far is <region> from <region>?", masks, **kw).first_logits
    auto = rt.generate(frame, "How far is <region> from <region>?", masks, depth=depth, **kw).first_logits
    explicit = rt.generate(
        frame, "How far is <region> <depth> from <region> <depth>?", masks, depth=depth, **kw
    ).first_logits
    # The same prompt (differences come from the KV-prefix reuse between calls only: float summation order).
    np.testing.assert_allclose(auto, explicit, rtol=0, atol=1e-5)
    assert np.abs(auto - plain).max() > 1e-3
    # SpatialRGPT's own 8-bit depth image gives the same as the float map it came from.
    img = depth_levels(depth)
    same = rt.generate(frame, "How far is <region> from <region>?", masks, depth=img, **kw).first_logits
    np.testing.assert_allclose(same, auto, rtol=0, atol=1e-5)


def test_depth_placeholder_without_a_depth_map_is_a_prompt_error(rt, inputs):
    frame, masks, _ = inputs
    with pytest.raises(PromptError, match="<depth> placeholder.* but no depth map was given"):
        rt.ask(frame, "How far is <region> <depth> from <region>?", masks)
    with pytest.raises(PromptError, match="no depth map"):
        rt.chat(frame, masks).ask("Is <region> <depth> nearer than <region>?")


def test_a_depth_map_of_the_wrong_shape_is_an_input_error(rt, inputs):
    frame, masks, depth = inputs
    with pytest.raises(InputError, match=r"depth map is 320x360 \(WxH\) but the frame is 640x360"):
        rt.ask(frame, "Where is <region>?", masks[:1], depth=depth[:, :320])
    with pytest.raises(InputError, match="must be \\[H, W\\]"):
        rt.ask(frame, "Where is <region>?", masks[:1], depth=depth[None])
    bad = depth.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        rt.ask(frame, "Where is <region>?", masks[:1], depth=bad)


def test_every_region_call_takes_depth(rt, inputs, tmp_path):
    frame, masks, depth = inputs
    kw = dict(max_new_tokens=1)
    one = masks[:1]
    want = rt.generate(frame, "Describe in detail the object located at <region> in the image.", one, depth=depth,
                       **kw).text  # fmt: skip
    assert rt.describe(frame, one, depth=depth, **kw) == want
    assert rt.describe_many(frame, masks, depth=depth, **kw)[0] == want
    assert "".join(rt.stream(frame, "Describe in detail the object located at <region> in the image.", one,
                             depth=depth, **kw)) == want  # fmt: skip
    rt.classify(frame, one, depth=depth, **kw)
    rt.refer(frame, masks, "the near one", depth=depth, **kw)
    a, b = rt.score(frame, "What is <region>?", one, ["a car", "a cat"], depth=depth)
    assert np.isfinite([a, b]).all()
    assert rt.chat(frame, one, depth=depth).ask("What is <region>?", **kw) == rt.ask(
        frame, "What is <region>?", one, depth=depth, **kw
    )
    np.save(tmp_path / "d.npy", depth)  # a file path works too (the CLI's --depth)
    assert rt.ask(frame, "What is <region>?", one, depth=str(tmp_path / "d.npy"), **kw) == rt.ask(
        frame, "What is <region>?", one, depth=depth, **kw
    )


def test_a_checkpoint_without_depth_refuses_a_depth_map(rt_llava, sample_frame):
    with pytest.raises(InputError, match="no depth branch"):
        rt_llava.ask(sample_frame, "What is <region>?", (10, 10, 50, 50), depth=np.ones(sample_frame.shape[:2]))


def test_cli_depth_flag_and_aspect_ratio_note(release, rt, inputs, tmp_path, capsys):
    from rgpt_rt.cli import main

    frame, masks, depth = inputs
    Image.fromarray(frame).save(tmp_path / "f.png")
    np.save(tmp_path / "d.npy", depth)
    Image.fromarray(masks[0] * 255).save(tmp_path / "m.png")
    args = ["ask", str(tmp_path / "f.png"), "What is <region>?", "--mask", str(tmp_path / "m.png"), "--model",
            str(release), "--max-new-tokens", "2", "--json"]  # fmt: skip
    assert main([*args, "--depth", str(tmp_path / "d.npy")]) == 0
    out = capsys.readouterr()
    got = json.loads(out.out)
    assert got["image_aspect_ratio"] == "resize" and "image_aspect_ratio=resize" in out.err
    mask = np.asarray(Image.open(tmp_path / "m.png").convert("L"))
    assert got["token_ids"] == rt.generate(frame, "What is <region>?", mask, depth=depth, max_new_tokens=2).token_ids
    assert main([*args, "--depth", str(tmp_path / "missing.npy")]) != 0
    assert "depth map file not found" in capsys.readouterr().err


@pytest.mark.parametrize("module,cls", [("onnx_backend", "OnnxBackend"), ("trt_backend", "TrtBackend")])
def test_engine_backends_name_themselves_when_given_a_depth_map(module, cls):
    """The exported graphs have no depth path yet: the onnx and trt backends refuse a depth map by name (checked
    before any engine is touched, so a bare instance suffices)."""
    import importlib

    backend_cls = getattr(importlib.import_module(f"rgpt_rt.backends.{module}"), cls)
    be = backend_cls.__new__(backend_cls)
    name = module.split("_")[0]
    with pytest.raises(InputError, match=f"not supported by the {name} backend.*backend='torch'"):
        be.visual_embeds(np.zeros((3, 14, 14), np.float32), np.zeros((1, 14, 14), np.float32), depth=np.zeros(1))
