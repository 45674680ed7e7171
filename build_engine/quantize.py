"""int8 for the decoder's linear layers, as Q/DQ nodes in the ONNX graph (TensorRT 10/11 read precision from
the graph; ONNX Runtime runs the same graph on the CPU).

weight_only   W -> int8 per output channel (scale = max|W[:, n]| / 127) + DequantizeLinear feeding MatMul.
smoothquant   SmoothQuant W8A8: a calibration pass records each linear layer's input channel maxima;
              scales s_j = max|X_j|^a / max|W_j|^(1-a) move activation outliers into the weights (folded into
              the preceding RMSNorm for q/k/v and gate/up); then weights are int8 per channel and each linear
              layer's input gets a per-tensor QuantizeLinear -> DequantizeLinear pair at the calibrated max.
The lm_head (vocab-sized output) stays in float in both recipes.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

RECIPES = ("weight_only", "smoothquant")


def _quantize_weight(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[K, N] float -> int8 [K, N], scale [N] (symmetric, per output channel)."""
    scale = np.abs(w).max(axis=0) / 127.0
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    return q, scale.astype(np.float32)


def _key(w: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(w, np.float32).tobytes()).hexdigest()


def rewrite_int8(
    src: Path,
    dst: Path,
    vocab_size: int,
    act_scales: dict[str, float] | None = None,
    weight_names: dict[str, str] | None = None,
) -> int:
    """Replace the float weights of the decoder's MatMuls with int8 + DequantizeLinear; with act_scales also
    insert per-tensor Q/DQ on each MatMul's activation input. Returns the number of MatMuls rewritten."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    new_nodes, new_inits, dropped = [], [], set()
    count = 0
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in inits:
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        if w.ndim != 2 or w.shape[1] == vocab_size:
            continue
        name = node.input[1]
        q, scale = _quantize_weight(w.astype(np.float32))
        new_inits += [
            numpy_helper.from_array(q, f"{name}_int8"),
            numpy_helper.from_array(scale, f"{name}_scale"),
            numpy_helper.from_array(np.zeros(scale.shape, np.int8), f"{name}_zero"),
        ]
        new_nodes.append(
            helper.make_node(
                "DequantizeLinear",
                [f"{name}_int8", f"{name}_scale", f"{name}_zero"],
                [f"{name}_dq"],
                axis=1,
                name=f"{name}_DequantizeLinear",
            )
        )
        node.input[1] = f"{name}_dq"
        dropped.add(name)
        if act_scales is not None:
            layer = (weight_names or {}).get(_key(w))
            if layer is None or layer not in act_scales:
                raise RuntimeError(f"no calibrated activation scale for MatMul weight {name}")
            a_scale, a_zero = f"{name}_act_scale", f"{name}_act_zero"
            new_inits += [
                numpy_helper.from_array(np.array(max(act_scales[layer], 1e-8) / 127.0, np.float32), a_scale),
                numpy_helper.from_array(np.array(0, np.int8), a_zero),
            ]
            x = node.input[0]
            new_nodes.append(
                helper.make_node("QuantizeLinear", [x, a_scale, a_zero], [f"{name}_xq"], name=f"{name}_QuantizeLinear")
            )
            new_nodes.append(
                helper.make_node(
                    "DequantizeLinear",
                    [f"{name}_xq", a_scale, a_zero],
                    [f"{name}_xdq"],
                    name=f"{name}_act_DequantizeLinear",
                )
            )
            node.input[0] = f"{name}_xdq"
        count += 1
    still_used = {i for n in graph.node for i in n.input}
    keep = [i for i in graph.initializer if i.name not in dropped or i.name in still_used]
    del graph.initializer[:]
    graph.initializer.extend(keep + new_inits)
    # Q/DQ nodes go right before their MatMul: rebuild the node list in a valid topological order.
    by_output = {o: n for n in new_nodes for o in n.output}
    ordered = []
    for node in list(graph.node):
        for inp in node.input:
            if inp in by_output:
                dq = by_output.pop(inp)
                for inp2 in dq.input:  # the activation DQ needs its Q first
                    if inp2 in by_output:
                        ordered.append(by_output.pop(inp2))
                ordered.append(dq)
        ordered.append(node)
    del graph.node[:]
    graph.node.extend(ordered)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return count


# ---- SmoothQuant ---------------------------------------------------------------------------------------


def _linear_layers(model) -> dict[str, nn.Linear]:
    return {n: m for n, m in model.llm.model.layers.named_modules() if isinstance(m, nn.Linear)}


@torch.no_grad()
def _input_maxima(model, run: Callable[[], None], per_channel: bool) -> dict[str, torch.Tensor]:
    maxima: dict[str, torch.Tensor] = {}
    hooks = []
    for name, lin in _linear_layers(model).items():

        def hook(_mod, args, _out, name=name):
            x = args[0].detach().abs().float().reshape(-1, args[0].shape[-1])
            m = x.max(dim=0).values if per_channel else x.max()
            maxima[name] = m if name not in maxima else torch.maximum(maxima[name], m)

        hooks.append(lin.register_forward_hook(hook))
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    return maxima


@torch.no_grad()
def smooth(model, calibrate: Callable[[object], None], alpha: float = 0.5):
    """A smoothed copy of `model` and its per-tensor activation maxima per linear layer (after smoothing).

    calibrate(m) runs the calibration prompts through model m (any forward that reaches the decoder layers).
    """
    m = copy.deepcopy(model).eval()
    m.native_ops = False
    x_max = _input_maxima(m, lambda: calibrate(m), per_channel=True)
    for i, layer in enumerate(m.llm.model.layers):
        groups = [
            (
                layer.input_layernorm,
                [layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj],
                f"{i}.self_attn.q_proj",
            ),
            (layer.post_attention_layernorm, [layer.mlp.gate_proj, layer.mlp.up_proj], f"{i}.mlp.gate_proj"),
        ]
        for norm, linears, key in groups:
            w_max = torch.stack([lin.weight.abs().max(dim=0).values for lin in linears]).max(dim=0).values
            s = (x_max[key].clamp(min=1e-5) ** alpha / w_max.clamp(min=1e-5) ** (1 - alpha)).clamp(min=1e-5)
            norm.weight.div_(s.to(norm.weight.dtype))
            for lin in linears:
                lin.weight.mul_(s.to(lin.weight.dtype)[None, :])
    act = _input_maxima(m, lambda: calibrate(m), per_channel=False)
    return m, {name: float(v) for name, v in act.items()}


def weight_index(model) -> dict[str, str]:
    """sha256 of each decoder linear layer's weight as the exporter stores it (transposed) -> layer name."""
    return {
        _key(lin.weight.detach().float().T.contiguous().numpy()): name for name, lin in _linear_layers(model).items()
    }
