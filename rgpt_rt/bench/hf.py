"""transformers' LlavaForConditionalGeneration at the runtime's shapes (same run, same GPU), eager and with a
static cache: the comparison `--compare-hf` prints."""

from __future__ import annotations

import statistics
import time

from .measure import sync


def compare_hf(rt, args) -> dict:
    """transformers' LlavaForConditionalGeneration at the same shapes, random weights: eager and static cache."""
    import torch
    import transformers as T

    from ..checkpoint.layouts import hf_llama_config, hf_vision_config

    cfg = rt.cfg
    dev = args.device
    dtype = rt.backend.dtype if hasattr(rt.backend, "dtype") else torch.float32
    text = {k: v for k, v in hf_llama_config(cfg.llm).items() if k not in ("architectures", "torch_dtype")}
    vis = {k: v for k, v in hf_vision_config(cfg.vision).items() if k not in ("image_mean", "image_std")}
    n_img = cfg.vision.num_patches
    hf_cfg = T.LlavaConfig(
        vision_config=T.CLIPVisionConfig(**vis),
        text_config=T.LlamaConfig(**text),
        image_token_index=cfg.llm.vocab_size - 1,
        vision_feature_layer=cfg.vision.select_layer,
        vision_feature_select_strategy="default",
        image_seq_length=n_img,
    )
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:  # built on the device in its dtype: a 7B model initialised on the host would take minutes
        with torch.device(dev):
            model = T.LlavaForConditionalGeneration(hf_cfg).eval()
    finally:
        torch.set_default_dtype(prev)
    prompt = (
        rt.tokenizer.encode_text("USER: ")
        + [cfg.llm.vocab_size - 1] * n_img
        + rt.tokenizer.encode_text("\nDescribe the region. ASSISTANT:")
    )
    ids = torch.tensor([[cfg.llm.bos_token_id, *prompt]], device=dev)
    pixels = torch.randn(1, 3, cfg.vision.image_size, cfg.vision.image_size, device=dev, dtype=dtype)
    out = {}
    for label, kw in (("eager", {}), ("static", {"cache_implementation": "static"})):

        def run(n, kw=kw):
            sync(dev)
            t0 = time.perf_counter()
            with torch.no_grad():
                model.generate(
                    input_ids=ids,
                    pixel_values=pixels,
                    attention_mask=torch.ones_like(ids),
                    do_sample=False,
                    max_new_tokens=n,
                    min_new_tokens=n,
                    pad_token_id=0,
                    **kw,
                )
            sync(dev)
            return (time.perf_counter() - t0) * 1e3

        try:
            run(2)  # warm-up (and compilation for the static cache)
            ttft = statistics.median(run(1) for _ in range(3))
            total = statistics.median(run(args.new_tokens) for _ in range(3))
            out[f"hf_{label}_ttft_ms"] = ttft
            out[f"hf_{label}_ms_per_token"] = (total - ttft) / max(args.new_tokens - 1, 1)
        except Exception as exc:  # report, don't hide: the comparison row says what failed
            out[f"hf_{label}_error"] = f"{type(exc).__name__}: {exc}"[:300]
    return out
