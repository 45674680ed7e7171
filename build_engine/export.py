"""Export the three graphs to ONNX (opset 17, dynamic batch / sequence / past axes, fp32 or fp16)."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch

from rgpt_rt.model.regiongpt import RegionGPT

from .graphs import ConnectorGraph, DecoderGraph, VisionGraph, decoder_io_names

OPSET = 17
DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


def _export(module, args, path: Path, inputs, outputs, dynamic_axes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def graph_model(model: RegionGPT, precision: str) -> RegionGPT:
    """A copy of the model in the graph's float type (int8 graphs start from fp32)."""
    m = copy.deepcopy(model).eval()
    m.native_ops = False
    return m.to(DTYPES.get(precision, torch.float32))


def export_vision(model: RegionGPT, path: Path, precision: str = "fp32") -> dict:
    m = graph_model(model, precision)
    s = m.cfg.vision.image_size
    dtype = DTYPES.get(precision, torch.float32)
    with torch.no_grad():
        _export(
            VisionGraph(m),
            (torch.zeros(1, 3, s, s, dtype=dtype),),
            path,
            ["pixels"],
            ["refined"],
            {"pixels": {0: "batch"}, "refined": {0: "batch"}},
        )
    c, hw = m.cfg.vision.hidden_size, m.cfg.refined_size
    return {
        "inputs": [_io("pixels", precision, ["batch", 3, s, s])],
        "outputs": [_io("refined", precision, ["batch", c, hw, hw])],
    }


def export_connector(model: RegionGPT, path: Path, precision: str = "fp32") -> dict:
    m = graph_model(model, precision)
    c, d, g = m.cfg.vision.hidden_size, m.cfg.llm.hidden_size, m.cfg.region.image_grid
    dtype = DTYPES.get(precision, torch.float32)
    with torch.no_grad():
        _export(
            ConnectorGraph(m),
            (torch.zeros(g * g, c, dtype=dtype), torch.zeros(2, c, dtype=dtype)),
            path,
            ["image_features", "region_features"],
            ["image_embeds", "region_embeds"],
            {"region_features": {0: "regions"}, "region_embeds": {0: "regions"}},
        )
    t = m.cfg.num_image_tokens
    return {
        "inputs": [_io("image_features", precision, [g * g, c]), _io("region_features", precision, ["regions", c])],
        "outputs": [_io("image_embeds", precision, [t, d]), _io("region_embeds", precision, ["regions", d])],
    }


def export_decoder(model: RegionGPT, path: Path, precision: str = "fp32", all_logits: bool = False) -> dict:
    m = graph_model(model, precision)
    cfg = m.cfg.llm
    dtype = DTYPES.get(precision, torch.float32)
    inputs, outputs = decoder_io_names(cfg.num_layers)
    past = [torch.zeros(1, cfg.num_kv_heads, 3, cfg.head_dim, dtype=dtype) for _ in range(2 * cfg.num_layers)]
    args = (
        torch.tensor([[1, 2, cfg.vocab_size]]),
        torch.zeros(1, 1, cfg.hidden_size, dtype=dtype),
        torch.tensor([[3, 4, 5]]),
        *past,
    )
    axes = {
        "input_ids": {0: "batch", 1: "seq"},
        "mm_table": {0: "batch", 1: "mm_rows"},
        "position_ids": {0: "batch", 1: "seq"},
        "logits": {0: "batch", 1: "seq"} if all_logits else {0: "batch"},
    }
    for name in inputs[3:]:
        axes[name] = {0: "batch", 2: "past"}
    for name in outputs[1:]:
        axes[name] = {0: "batch", 2: "total"}
    with torch.no_grad():
        _export(DecoderGraph(m, all_logits), args, path, inputs, outputs, axes)
    kv_shape = ["batch", cfg.num_kv_heads, "past", cfg.head_dim]
    return {
        "inputs": [
            _io("input_ids", "int64", ["batch", "seq"]),
            _io("mm_table", precision, ["batch", "mm_rows", cfg.hidden_size]),
            _io("position_ids", "int64", ["batch", "seq"]),
        ]
        + [_io(n, precision, kv_shape) for n in inputs[3:]],
        "outputs": [
            _io(
                "logits",
                "fp32" if precision == "fp32" else precision,
                ["batch", "seq", cfg.vocab_size] if all_logits else ["batch", cfg.vocab_size],
            )
        ]
        + [_io(n, precision, ["batch", cfg.num_kv_heads, "total", cfg.head_dim]) for n in outputs[1:]],
    }


def _io(name: str, dtype: str, shape: list) -> dict:
    return {"name": name, "dtype": "fp32" if dtype == "int8" else dtype, "shape": shape}
