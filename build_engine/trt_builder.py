"""TensorRT engines from the exported ONNX graphs (TensorRT Python API, 10.x and 11.x).

Precision lives in the graphs (fp16 weights, Q/DQ nodes for int8), so the network is built strongly typed
and no FP16/INT8 builder flags are used (TensorRT 11 removed them). The decoder gets two optimisation
profiles: 0 = prefill (seq 1..max_prompt, past 0..1), 1 = decode (seq 1, past 1..max_context). Imported
only when --backend trt is asked for.
"""

from __future__ import annotations

from pathlib import Path

from rgpt_rt.config import ModelConfig

MAX_REGIONS = 64


def gpu_arch() -> tuple[str, str]:
    """('sm_90', 'NVIDIA H100 ...') of device 0 through cuda-python."""
    from cuda.bindings import runtime as cudart

    err, props = cudart.cudaGetDeviceProperties(0)
    if int(err) != 0:
        raise RuntimeError(f"no CUDA device for building TensorRT engines (cudaGetDeviceProperties: {err})")
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return f"sm_{props.major}{props.minor}", name


def profiles_for(cfg: ModelConfig, max_prompt: int | None = None) -> dict:
    llm = cfg.llm
    ctx = llm.max_position_embeddings
    max_prompt = max_prompt or min(ctx, 2048)
    t = cfg.num_image_tokens
    mm_max = t + MAX_REGIONS
    kv = lambda p_min, p_opt, p_max: [[1, llm.num_kv_heads, p, llm.head_dim] for p in (p_min, p_opt, p_max)]  # noqa: E731
    prefill = {
        "input_ids": [[1, 1], [1, max_prompt // 2], [1, max_prompt]],
        "position_ids": [[1, 1], [1, max_prompt // 2], [1, max_prompt]],
        "mm_table": [[1, 1, llm.hidden_size], [1, t + 1, llm.hidden_size], [1, mm_max, llm.hidden_size]],
        "past": kv(0, 0, ctx - 1),  # a prompt after a reused prefix, or a batch row's suffix after the shared one
    }
    decode = {
        "input_ids": [[1, 1]] * 3,
        "position_ids": [[1, 1]] * 3,
        "mm_table": [[1, 1, llm.hidden_size]] * 3,
        "past": kv(1, ctx // 2, ctx - 1),
    }
    s = cfg.vision.image_size
    return {
        "vision": {"pixels": [[1, 3, s, s]] * 3},
        "connector": {
            "region_features": [
                [0, cfg.vision.hidden_size],
                [1, cfg.vision.hidden_size],
                [MAX_REGIONS, cfg.vision.hidden_size],
            ]
        },
        "decoder": {"prefill": prefill, "decode": decode},
    }


def _build_one(trt, onnx_path: Path, engine_path: Path, profiles: list[dict], log) -> None:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    for prof in profiles:
        p = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            name = network.get_input(i).name
            key = "past" if name.startswith("past_") else name
            if key in prof:
                lo, opt, hi = prof[key]
                p.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(p)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path.name}")
    engine_path.write_bytes(bytes(blob))
    log(f"      {engine_path.name}: {engine_path.stat().st_size / 1e6:.1f} MB")


def build_engines(stage: Path, graphs: dict, cfg: ModelConfig, log) -> tuple[dict, dict, str]:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise ImportError(
            f"--backend trt needs TensorRT (pip install 'rgpt_rt[trt]' on a machine with an NVIDIA GPU): {exc}"
        ) from None
    arch, name = gpu_arch()
    profiles = profiles_for(cfg)
    for gname in ("vision", "connector", "decoder"):
        prof = profiles[gname]
        plist = [prof["prefill"], prof["decode"]] if gname == "decoder" else [prof]
        engine = f"{gname}.engine"
        _build_one(trt, stage / graphs[gname]["onnx"], stage / engine, plist, log)
        graphs[gname]["engine"] = engine
    return {"arch": arch, "name": name}, profiles, trt.__version__
