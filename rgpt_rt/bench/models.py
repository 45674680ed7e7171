"""The models the benchmark runs: the tiny demo checkpoint, a given checkpoint or engine directory, or
random weights at RegionGPT-7B shapes made on the GPU."""

from __future__ import annotations

from pathlib import Path


def config_7b():
    from ..config import ConnectorConfig, LlamaConfig, ModelConfig, RegionConfig, VisionConfig

    vision = VisionConfig("clip_vision_model", 1024, 4096, 24, 16, 336, 14, "quick_gelu", 1e-5)
    llm = LlamaConfig(
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=11008,
        num_layers=32,
        num_heads=32,
        num_kv_heads=32,
        head_dim=128,
        rms_norm_eps=1e-5,
        max_position_embeddings=4096,
    )
    return ModelConfig("llava", vision, RegionConfig(image_grid=24), ConnectorConfig("mlp2x_gelu", 1024, 4096), llm)


TORCH_DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32", "int8": "float16"}


def random_7b_tokenizer(tmp: Path, cfg):
    """A small generated tokenizer written to `tmp`, with the LLaVA specials (no download)."""
    from ..testing.tokenizer import LLAVA_SPECIALS, train_tokenizer, write_tokenizer
    from ..tokenizer import PromptTokenizer

    write_tokenizer(tmp, train_tokenizer(LLAVA_SPECIALS, 512), "<s>", "</s>", ["<image>", "<region>"])
    return PromptTokenizer(tmp, cfg)


def random_7b_runtime(device: str, precision: str, tmp: Path):
    """RegionGPT-7B shapes with random weights created on the device (no checkpoint on disk)."""
    import torch

    from ..backends.torch_backend import TorchBackend
    from ..model.regiongpt import RegionGPT
    from ..runtime import Runtime

    cfg = config_7b()
    dtype = getattr(torch, TORCH_DTYPES[precision])
    with torch.device("meta"):
        model = RegionGPT(cfg)
    model = model.to_empty(device=device).to(dtype)
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "layrnorm" in name:
                p.fill_(1.0) if name.endswith("weight") else p.zero_()
            else:
                p.normal_(0.0, 0.02, generator=gen)
    backend = TorchBackend(model=model.eval(), device=device, precision="int8" if precision == "int8" else None)
    return Runtime(backend, random_7b_tokenizer(tmp, cfg))


def open_runtime(args, tmp: Path):
    from ..runtime import Runtime

    if args.random_7b:
        return random_7b_runtime(args.device, args.precision, tmp)
    path = args.model
    if path is None:
        from ..cli import demo_checkpoint

        path = demo_checkpoint("llava")
    prec = (
        args.precision if args.backend in ("auto", "torch") and not (Path(path) / "manifest.json").is_file() else None
    )
    decode = args.decode[0] if args.decode and prec is not None else None
    return Runtime.from_pretrained(path, backend=args.backend, device=args.device, precision=prec, decode=decode)


def hf_inputs(args, tmp: Path):
    """What `--hf-only` needs to build transformers' model: (config, tokenizer, torch dtype). With --random-7b
    the runtime's 7B weights are never made."""
    import torch

    if args.random_7b:
        cfg = config_7b()
        return cfg, random_7b_tokenizer(tmp, cfg), getattr(torch, TORCH_DTYPES[args.precision])
    rt = open_runtime(args, tmp)
    return rt.cfg, rt.tokenizer, getattr(rt.backend, "dtype", torch.float32)
