"""Our ViT against transformers' CLIPVisionModel / SiglipVisionModel on the same random weights (fp32)."""

import dataclasses

import pytest
import torch

transformers = pytest.importorskip("transformers")

from rgpt_rt.checkpoint.layouts import hf_vision_config  # noqa: E402
from rgpt_rt.model.vision import VisionTower  # noqa: E402
from rgpt_rt.testing import init_random_, tiny_config  # noqa: E402

TOL = 1e-4


def _hf_model(cfg):
    d = hf_vision_config(cfg)
    if cfg.model_type == "clip_vision_model":
        hf = transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**d))
    else:
        hf = transformers.SiglipVisionModel(transformers.SiglipVisionConfig(**d))
    return hf.eval()


def _load_ours_into(hf, ours):
    hf_keys = set(hf.state_dict())
    prefix = "vision_model." if any(k.startswith("vision_model.") for k in hf_keys) else ""
    state = {prefix + k: v for k, v in ours.state_dict().items()}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    # Only the parts after the selected layer (final norm, pooling head) are absent from our tower.
    assert all(("post_layernorm" in k) or (".head." in k) or k.startswith("head.") for k in missing), missing


@pytest.mark.parametrize("layout", ["llava", "vila"])  # CLIP (llava) and SigLIP (vila) flavours
@pytest.mark.parametrize("select_layer", [-2, -1, -3])
def test_hidden_states_match_transformers(layout, select_layer):
    cfg = dataclasses.replace(tiny_config(layout).vision, select_layer=select_layer)
    ours = init_random_(VisionTower(cfg), seed=3).eval()
    hf = _hf_model(cfg)
    _load_ours_into(hf, ours)
    pixels = torch.randn(2, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        ref = hf(pixel_values=pixels, output_hidden_states=True).hidden_states[select_layer]
        got = ours.hidden_states(pixels)
    assert got.shape == ref.shape
    err = (got - ref).abs().max().item()
    print(f"{cfg.model_type} select_layer={select_layer}: max abs error {err:.2e}")
    assert err < TOL, f"max abs error {err:.3e} >= {TOL}"


def test_patch_features_drop_cls_and_are_channels_first():
    cfg = tiny_config("llava").vision
    ours = init_random_(VisionTower(cfg), seed=3).eval()
    pixels = torch.randn(1, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        hs = ours.hidden_states(pixels)  # [1, 1+P, C]
        feats = ours(pixels)  # [1, C, g, g]
    g = cfg.grid
    assert feats.shape == (1, cfg.hidden_size, g, g)
    torch.testing.assert_close(feats[0].flatten(1).T, hs[0, 1:], rtol=0, atol=0)


def test_siglip_grid_floors_like_a_strided_conv():
    cfg = dataclasses.replace(tiny_config("vila").vision, image_size=75)  # 75 / 14 -> 5 patches per side
    assert cfg.grid == 5
    ours = init_random_(VisionTower(cfg), seed=1).eval()
    with torch.no_grad():
        assert ours(torch.randn(1, 3, 75, 75)).shape == (1, cfg.hidden_size, 5, 5)
