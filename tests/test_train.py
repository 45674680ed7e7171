"""Training on tiny checkpoints: both stages, the frozen/trained split, the runtime reading what training
wrote, starting from a LLaVA checkpoint without a region module, data validation and the COCO adapter.

(The multi-rank and kill-and-resume checks run subprocesses: tests/test_train_dist.py.)
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from rgpt_rt.errors import ConfigError
from rgpt_rt.train import RunConfig
from rgpt_rt.train.toy import write_toy_dataset


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("toy"), n=8, seed=0)


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny shapes: threads only add overhead on a shared 2-core machine
    yield
    torch.set_num_threads(n)


def _state(path):
    from rgpt_rt.checkpoint import load_model

    return {k: v.clone() for k, v in load_model(path).state_dict().items()}


def _train(toy, init, out, stage, steps, lr, parallel="none", **kw):
    from rgpt_rt.train.loop import train

    cfg = RunConfig(
        stage=stage,
        data=[str(toy)],
        init=str(init),
        output=str(out),
        global_batch=8,
        micro_batch=4,
        max_steps=steps,
        lr=lr,
        max_seq_len=256,
        save_every=1000,
        parallel=parallel,
        **kw,
    )
    summary, model = train(cfg)
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    return summary, model, losses


def _changed(before, after, prefix):
    keys = [k for k in before if k.startswith(prefix)]
    assert keys, prefix
    return {k: not torch.equal(before[k], after[k]) for k in keys}


def test_stage_one_trains_only_refinement_and_connector_and_the_loss_falls(toy, tiny_llava, tmp_path, one_thread):
    summary, _, losses = _train(toy, tiny_llava, tmp_path / "s1", stage=1, steps=20, lr=1e-2)
    before, after = _state(tiny_llava), _state(summary["checkpoint"])
    # Same 8 samples every step (global batch = the data), so the curve has no sampling noise. The LLM is
    # frozen at random weights: only what the connector feeds it can lower the loss (6.49 -> 5.58 here).
    first, last = losses[0], float(np.mean(losses[-3:]))
    print(f"stage 1 loss: {first:.3f} -> {last:.3f} ({losses})")
    assert last < first - 0.5 and last < 0.9 * first, losses
    for prefix in ("vision.", "llm."):
        assert not any(_changed(before, after, prefix).values()), f"{prefix} changed in stage 1"
    for prefix in ("refiner.", "image_connector."):
        assert all(_changed(before, after, prefix).values()), f"{prefix} did not all change in stage 1"
    # The same output directory with another recipe is another run: refused, nothing overwritten.
    with pytest.raises(ConfigError, match="different lr"):
        _train(toy, tiny_llava, tmp_path / "s1", stage=1, steps=20, lr=1e-3)


def test_stage_two_trains_the_llm_too_and_the_loss_falls(toy, tiny_llava, tmp_path, one_thread):
    summary, _, losses = _train(toy, tiny_llava, tmp_path / "s2", stage=2, steps=20, lr=3e-3)
    before, after = _state(tiny_llava), _state(summary["checkpoint"])
    print(f"stage 2 loss: {losses[0]:.3f} -> {losses[-1]:.3f} ({losses})")
    assert losses[-1] < 0.3 * losses[0], losses
    assert not any(_changed(before, after, "vision.").values()), "the vision tower changed in stage 2"
    for prefix in ("refiner.", "image_connector.", "llm.model.layers.", "llm.lm_head."):
        assert all(_changed(before, after, prefix).values()), f"{prefix} did not all change in stage 2"
    assert summary["peak_mem_mb_per_rank"][0] > 0
    try:  # the loss curve is drawn with each checkpoint when matplotlib is installed (it is optional)
        import matplotlib  # noqa: F401

        assert (Path(summary["checkpoint"]) / "loss.png").stat().st_size > 1000
    except ImportError:
        assert not (Path(summary["checkpoint"]) / "loss.png").exists()


def test_train_vision_option_unfreezes_the_vision_tower(toy, tiny_llava, tmp_path, one_thread):
    summary, _, _ = _train(toy, tiny_llava, tmp_path / "v", stage=1, steps=1, lr=1e-3, train_vision=True)
    before, after = _state(tiny_llava), _state(summary["checkpoint"])
    changed = _changed(before, after, "vision.encoder.layers.0.")
    assert all(changed.values())
    assert not any(_changed(before, after, "llm.").values())


def test_a_trained_checkpoint_gives_the_runtime_the_training_models_first_step_logits(
    toy, tiny_llava, tmp_path, one_thread
):
    from rgpt_rt import Runtime
    from rgpt_rt.inputs import load_frame, preprocess_frame, preprocess_masks, to_masks
    from rgpt_rt.prompts import build_prompt, category_instruction
    from rgpt_rt.tokenizer import PromptTokenizer
    from rgpt_rt.train.data import Encoder
    from rgpt_rt.train.toy import COLOURS

    summary, tm, _ = _train(toy, tiny_llava, tmp_path / "rt", stage=2, steps=3, lr=3e-3)
    tm.eval()
    ckpt = summary["checkpoint"]
    line = json.loads(toy.read_text().splitlines()[0])
    frame = load_frame(toy.parent / line["image"])
    region = line["regions"][0]["rle"]
    q = category_instruction(sorted(COLOURS))
    cfg = tm.model.cfg
    tok = PromptTokenizer(ckpt, cfg)
    ids = tok.encode_prompt(build_prompt([(q, None)], cfg.conv_template), cfg.num_image_tokens, [0])
    # The training encoder starts every sample with exactly the ids the runtime prompts with.
    train_ids, _ = Encoder(tok, cfg, {"mask": 1.0}, 256).token_ids([(q, "red")], cfg.num_image_tokens)
    assert train_ids[: len(ids)] == ids
    masks = to_masks([region], frame.shape[:2])
    pixels = torch.from_numpy(preprocess_frame(frame, cfg.vision))[None]
    mask_px = torch.from_numpy(preprocess_masks(masks, cfg.vision.image_size))
    ours = tm.last_logits(pixels, [mask_px], torch.tensor([ids]))[0].numpy()

    rt = Runtime.from_pretrained(ckpt)
    theirs = rt.generate(frame, q, [region], return_first_logits=True, max_new_tokens=1).first_logits
    # Same weights and inputs; the runtime pools regions with the native op, training with the torch
    # reference (float32 both): agreement to float32 rounding.
    err = np.abs(ours - theirs).max()
    print(f"first-step logits: max |train - runtime| = {err:.2e} (logit scale {np.abs(theirs).max():.1f})")
    assert err < 1e-4 * max(1.0, np.abs(theirs).max())
    assert int(ours.argmax()) == int(theirs.argmax())
    # ... and `python -m rgpt_rt.build` compiles it as it is (ONNX engine, same first-step logits).
    pytest.importorskip("onnxruntime")
    from build_engine.builder import build

    engine = build(ckpt, tmp_path / "engine", log=lambda s: None)
    onnx = Runtime.from_pretrained(engine).generate(frame, q, [region], return_first_logits=True, max_new_tokens=1)
    assert np.abs(onnx.first_logits - theirs).max() < 1e-4 * max(1.0, np.abs(theirs).max())


def _plain_llava(src, dst):
    """A LLaVA-1.5-style checkpoint: no refinement tensors, no region_extractor config, no <region> token."""
    import shutil

    from safetensors.torch import load_file, save_file

    from rgpt_rt.testing.tiny import TINY_VOCAB
    from rgpt_rt.testing.tokenizer import train_tokenizer, write_tokenizer

    shutil.copytree(src, dst)
    tensors = load_file(str(dst / "model.safetensors"))
    kept = {k: v for k, v in tensors.items() if "region_extractor" not in k}
    assert len(kept) < len(tensors)
    save_file(kept, str(dst / "model.safetensors"), metadata={"format": "pt"})
    conf = json.loads((dst / "config.json").read_text())
    for key in ("region_extractor", "region_token"):
        conf.pop(key)
    (dst / "config.json").write_text(json.dumps(conf))
    tok = train_tokenizer(["<unk>", "<s>", "</s>", "<image>"], TINY_VOCAB)
    assert tok.get_vocab_size() == TINY_VOCAB and tok.token_to_id("<region>") is None
    write_tokenizer(dst, tok, bos="<s>", eos="</s>", extra_specials=["<image>"])
    return dst


def test_training_starts_from_a_llava_checkpoint_without_a_region_module(toy, tiny_llava, tmp_path, one_thread):
    from tokenizers import Tokenizer

    from rgpt_rt import Runtime
    from rgpt_rt.errors import CheckpointError
    from rgpt_rt.testing.tiny import TINY_VOCAB

    plain = _plain_llava(tiny_llava, tmp_path / "plain")
    with pytest.raises(CheckpointError, match="refine says 2 stages but the weights have 0"):
        Runtime.from_pretrained(plain)  # the runtime cannot use it ...
    summary, _, losses = _train(toy, plain, tmp_path / "p", stage=1, steps=2, lr=1e-3)  # ... training can
    ckpt = summary["checkpoint"]
    tok = Tokenizer.from_file(f"{ckpt}/tokenizer.json")
    assert tok.token_to_id("<region>") == TINY_VOCAB  # a new special token after the 512 BPE tokens
    assert tok.encode("is <region> red", add_special_tokens=False).ids.count(TINY_VOCAB) == 1
    state = _state(ckpt)
    assert state["llm.model.embed_tokens.weight"].shape[0] == TINY_VOCAB + 1
    assert state["llm.lm_head.weight"].shape[0] == TINY_VOCAB + 1
    assert any(k.startswith("refiner.") for k in state)
    assert json.loads(open(f"{ckpt}/config.json").read())["vocab_size"] == TINY_VOCAB + 1
    rt = Runtime.from_pretrained(ckpt)
    frame = np.full((48, 64, 3), 100, np.uint8)
    assert isinstance(rt.describe(frame, (4, 4, 30, 40), task="brief", max_new_tokens=3), str)


def test_bad_lines_are_named_counted_and_skipped(tmp_path, toy):
    from rgpt_rt.train.data import JsonlSource

    good = toy.read_text().splitlines()[0]
    sample = json.loads(good)
    one_region = dict(
        sample,
        regions=sample["regions"][:1],
        conversations=[{"from": "human", "value": "What is <region>?"}, {"from": "gpt", "value": "red"}],
    )
    bad = [
        "{not json",
        json.dumps({**one_region, "regions": []}),  # placeholder without a region
        json.dumps({k: v for k, v in one_region.items() if k != "image"}),
        json.dumps({**one_region, "regions": [{"box": [10, 10, 5, 20]}]}),  # inverted box
        json.dumps({**one_region, "conversations": [{"from": "gpt", "value": "x"}, {"from": "human", "value": "y"}]}),
    ]
    f = tmp_path / "mixed.jsonl"
    f.write_text("\n".join([good, *bad, "", json.dumps(one_region)]) + "\n")
    src = JsonlSource(f, image_root=toy.parent)
    assert len(src) == 2 and src.num_bad == 5 and list(src.lines) == [1, 8]
    for line, words in zip(
        range(2, 7),
        (
            "not valid JSON",
            "1 <region> placeholders but the sample has 0",
            "'image'",
            "empty or inverted",
            "conversations[0]",
        ),
    ):
        assert any(f"mixed.jsonl:{line}:" in msg and words in msg for msg in src.bad), (line, src.bad)
    s = src.get(1, random.Random(0))
    assert s.turns == [("What is <region>?", "red")] and s.image == toy.parent / sample["image"]


def test_regions_are_given_as_mask_box_or_polygon(tmp_path):
    from rgpt_rt.inputs import rle_encode
    from rgpt_rt.train.data import pick_form, region_mask

    m = np.zeros((20, 30), bool)
    m[5:10, 3:8] = True
    m[12, 20] = True  # a stray pixel: the box covers it, the mask keeps it a pixel
    region = {"rle": rle_encode(m), "polygon": [[3, 5, 8, 5, 8, 10, 3, 10]]}
    assert np.array_equal(region_mask(region, "mask", 20, 30), m)
    poly = region_mask(region, "polygon", 20, 30)
    assert poly.sum() == 25 and poly[5:10, 3:8].all()
    box = region_mask(region, "box", 20, 30)
    assert box.sum() == 8 * 18 and box[5:13, 3:21].all()
    assert np.array_equal(region_mask({"box": [3, 5, 8, 10]}, "mask", 20, 30), poly)  # only a box: the box
    rng = random.Random(0)
    picks = [pick_form({"mask": 0.5, "box": 0.25, "polygon": 0.25}, rng) for _ in range(400)]
    assert 150 < picks.count("mask") < 250 and picks.count("box") > 60 and picks.count("polygon") > 60
    assert {pick_form({"box": 1.0}, rng) for _ in range(20)} == {"box"}


def test_coco_annotations_become_task_guided_samples(toy):
    from rgpt_rt.prompts import count_regions, parse_refer
    from rgpt_rt.train.coco import CocoSource
    from rgpt_rt.train.toy import COLOURS

    src = CocoSource(toy.parent / "instances.json")
    assert len(src) == 8 and src.num_bad == 0
    tasks = {"category": 0, "refer": 0, "brief": 0}
    for i in range(len(src)):
        for seed in range(6):
            s = src.get(i, random.Random(seed))
            ((q, a),) = s.turns
            assert count_regions(q) == len(s.regions) and s.image.is_file()
            if q.startswith("What category"):
                tasks["category"] += 1
                assert a in COLOURS and a in q  # the true name is in the sampled vocabulary
            elif q.startswith("From the provided masks"):
                tasks["refer"] += 1
                k = parse_refer(a, len(s.regions))
                colour = q.split('"the ')[1].split('"')[0]
                target = s.regions[k]
                ann = next(a for a in src.images[i][1] if a["_region"] is target)
                assert src.names[ann["category_id"]] == colour
            else:
                tasks["brief"] += 1
                assert a.endswith(" box")
        assert src.get(i, random.Random(3)) == src.get(i, random.Random(3))  # same seed, same sample
    assert all(tasks.values()), tasks


def test_activation_checkpointing_and_bf16_autocast_paths(toy, tiny_llava, tmp_path, one_thread):
    """The GPU defaults, run on the CPU: recomputation changes nothing; bf16 autocast stays near fp32."""
    _, _, ref = _train(toy, tiny_llava, tmp_path / "fp32", stage=2, steps=3, lr=3e-3)
    _, _, ac = _train(toy, tiny_llava, tmp_path / "ac", stage=2, steps=3, lr=3e-3, activation_checkpointing=True)
    _, _, bf16 = _train(toy, tiny_llava, tmp_path / "bf16", stage=2, steps=3, lr=3e-3, precision="bf16")
    # FSDP2 (one rank) in bf16: parameters gathered in bf16, gradients reduced in fp32, fp32 master weights.
    _, _, fsdp = _train(
        toy, tiny_llava, tmp_path / "fsdp", stage=2, steps=3, lr=3e-3, parallel="fsdp", precision="bf16"
    )
    print(f"fp32 {ref}\nac   {ac}\nbf16 {bf16}\nfsdp bf16 {fsdp}")
    assert np.allclose(ac, ref, rtol=1e-6, atol=0)
    assert np.allclose(bf16, ref, rtol=2e-2, atol=0) and bf16 != ref
    assert np.allclose(fsdp, ref, rtol=2e-2, atol=0) and fsdp != ref


def test_stage_two_with_lora_trains_adapters_only_and_writes_a_merged_checkpoint(toy, tiny_llava, tmp_path, one_thread):
    pytest.importorskip("peft")
    from rgpt_rt import Runtime

    lora = dict(lora_rank=4, lora_dropout=0.0)
    summary, tm, losses = _train(toy, tiny_llava, tmp_path / "lora", stage=2, steps=12, lr=1e-2, **lora)
    print(f"stage 2 LoRA loss: {losses[0]:.3f} -> {losses[-1]:.3f}")
    assert losses[-1] < 0.7 * losses[0], losses
    trained = {n for n, p in tm.named_parameters() if p.requires_grad}
    assert trained and all(".lora_" in n for n in trained if n.startswith("model.llm."))
    before, after = _state(tiny_llava), _state(summary["checkpoint"])  # plain names: the adapters are merged
    assert set(before) == set(after)
    assert not any(_changed(before, after, "llm.model.embed_tokens.").values())
    assert all(_changed(before, after, "llm.model.layers.0.self_attn.q_proj.").values())
    # The merged checkpoint computes what the model with adapters computes.
    tm.eval()
    line = json.loads(toy.read_text().splitlines()[0])
    rt = Runtime.from_pretrained(summary["checkpoint"])
    frame = toy.parent / line["image"]
    from rgpt_rt.inputs import load_frame, preprocess_frame, preprocess_masks, to_masks
    from rgpt_rt.prompts import task_instruction

    img = load_frame(frame)
    region = line["regions"][0]["rle"]
    q = task_instruction("brief")
    cfg = tm.model.cfg
    ids = rt._prompt_ids(rt.encode(img, [region]), [(q, None)], [0])
    pixels = torch.from_numpy(preprocess_frame(img, cfg.vision))[None]
    masks = torch.from_numpy(preprocess_masks(to_masks([region], img.shape[:2]), cfg.vision.image_size))
    ours = tm.last_logits(pixels, [masks], torch.tensor([ids]))[0].numpy()
    theirs = rt.generate(img, q, [region], return_first_logits=True, max_new_tokens=1).first_logits
    assert np.abs(ours - theirs).max() < 1e-4 * max(1.0, np.abs(theirs).max())
    # A resume continues from the start's base weights plus the saved adapters: the same function.
    from rgpt_rt.train.loop import setup_model
    from rgpt_rt.train.state import latest

    cfg_run = RunConfig(stage=2, data=[str(toy)], init=str(tiny_llava), output=str(tmp_path / "lora"), **lora)
    resumed, _ = setup_model(cfg_run.resolved(), latest(tmp_path / "lora"), _rank0(), print)
    for name, p in tm.model.named_parameters():
        assert torch.equal(p.detach(), dict(resumed.named_parameters())[name].detach()), name


def _rank0():
    from rgpt_rt.train.dist import init_distributed

    return init_distributed()


def test_start_from_a_config_with_coco_data_and_a_sample_that_fails_to_load(toy, tiny_llava, tmp_path, one_thread):
    from rgpt_rt import Runtime
    from rgpt_rt.train.loop import train

    lines = toy.read_text().splitlines()
    broken = json.loads(lines[0])
    broken["image"] = "images/missing.png"  # a valid line whose image cannot be read
    data = toy.parent / "with_missing.jsonl"
    data.write_text("\n".join([*lines, json.dumps(broken)]) + "\n")
    coco = toy.parent / "instances.json"
    # 9 JSON Lines samples + 8 COCO images = one global batch of 17: every slot is read exactly once.
    cfg = RunConfig(
        stage=2,
        data=[str(data), str(coco)],
        init_config=str(tiny_llava / "config.json"),
        tokenizer=str(tiny_llava),
        output=str(tmp_path / "cfg"),
        global_batch=17,
        micro_batch=9,
        max_steps=1,
        max_seq_len=256,
        parallel="none",
    )
    summary, _ = train(cfg)
    assert summary["skipped_samples"] == 1 and "missing.png" in summary["problems"][0]
    before, after = _state(tiny_llava), _state(summary["checkpoint"])
    key = "vision.embeddings.patch_embedding.weight"  # frozen, so it is the random start's, not the checkpoint's
    assert before[key].shape == after[key].shape and not torch.equal(before[key], after[key])
    rt = Runtime.from_pretrained(summary["checkpoint"])
    assert isinstance(rt.describe(np.full((48, 64, 3), 90, np.uint8), (2, 2, 20, 30), max_new_tokens=2), str)


def test_every_turn_is_tokenized_as_the_runtime_prompts_it_and_only_answers_are_labelled(rt_llava):
    from rgpt_rt.runtime import Visual
    from rgpt_rt.train.data import IGNORE, Encoder

    cfg, tok = rt_llava.cfg, rt_llava.tokenizer
    n_image = cfg.num_image_tokens
    turns = [("What is <region>?", "a red box"), ("Is <region> left of <region>?", "Yes, it is.")]
    ids, labels = Encoder(tok, cfg, {"mask": 1.0}, 1024).token_ids(turns, n_image)
    visual = Visual(table=None, n_image=n_image, n_regions=3, preprocess_ms=0.0, vision_ms=0.0)
    first = rt_llava._prompt_ids(visual, [(turns[0][0], None)], [0])
    second = rt_llava._prompt_ids(visual, [turns[0], (turns[1][0], None)], [0, 1, 2])
    assert ids[: len(first)] == first and ids[: len(second)] == second
    # labels[j] is the target of position j: token j + 1. Contiguous labelled spans are the two answers.
    targets = [j + 1 for j, x in enumerate(labels) if x != IGNORE]
    assert all(labels[j - 1] == ids[j] for j in targets)
    spans = [[targets[0]]]
    for j in targets[1:]:
        spans[-1].append(j) if j == spans[-1][-1] + 1 else spans.append([j])
    assert [s[0] for s in spans] == [len(first), len(second)]
    stop = tok.tok.token_to_id("</s>")
    assert [ids[s[-1]] for s in spans] == [stop, stop] and spans[-1][-1] == len(ids) - 1
    assert [tok.decode([ids[j] for j in s]).strip() for s in spans] == ["a red box", "Yes, it is."]
