"""The synthetic world: deterministic files, exact masks, unique referring expressions, geometry-true answers."""

from __future__ import annotations

import hashlib
import json
import pickle
import re

import numpy as np
import pytest
from PIL import Image

from rgpt_rt.data import DatasetError, read_coco_instances, read_refs, read_tasks, read_vg_regions
from rgpt_rt.data import language as L
from rgpt_rt.data.scene import COLORS, HELD_OUT, SHAPES, SIZES, Obj, Scene, sample_scene, shape_mask
from rgpt_rt.data.world import generate_split, main, scene_rng
from rgpt_rt.inputs import rle_decode, rle_encode
from rgpt_rt.prompts import count_regions

N_IMAGES = 12


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    generate_split(root, "test", N_IMAGES, seed=1)
    generate_split(root, "train", N_IMAGES, seed=0)
    return root


def _digest(root) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _scenes(split: str, seed: int, n: int) -> list[Scene]:
    return [sample_scene(scene_rng(seed, split, i), split) for i in range(n)]


def test_same_seed_gives_the_same_bytes_and_other_seeds_differ(tmp_path):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        generate_split(tmp_path / name, "test", 4, seed=seed)
    a, b, c = (_digest(tmp_path / n) for n in "abc")
    assert len(a) == 4 + 5  # 4 images, 4 annotation files, 1 tasks file
    assert a == b
    assert all(a[k] != c[k] for k in a)  # every file of another seed differs
    generate_split(tmp_path / "d", "train", 4, seed=5)
    assert _digest(tmp_path / "d")["train/000001.png"] != a["test/000001.png"]  # the split is part of the seed


def test_rle_is_coco_column_major():
    m = np.array([[0, 1, 1], [0, 0, 1]], dtype=bool)
    # column-major runs: col 0 = 0,0; col 1 = 1,0; col 2 = 1,1 -> 2 zeros, 1 one, 1 zero, 2 ones
    assert rle_encode(m, compressed=False)["counts"] == [2, 1, 1, 2]
    assert (rle_decode(rle_encode(m)) == m).all()


def test_rle_matches_pycocotools_when_installed(world):
    mask_util = pytest.importorskip("pycocotools.mask")
    coco = read_coco_instances(world / "annotations" / "instances_test.json")
    for ann in list(coco.anns.values())[:10]:
        m = rle_decode(ann["segmentation"])
        ref = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
        assert ref["counts"].decode() == ann["segmentation"]["counts"]
        assert (mask_util.decode(ref).astype(bool) == m).all()


def test_masks_are_exact_areas_match_and_hidden_parts_are_excluded(world):
    coco = read_coco_instances(world / "annotations" / "instances_test.json")
    scenes = _scenes("test", 1, N_IMAGES)
    occluded = 0
    for image_id, scene in enumerate(scenes, 1):
        anns = coco.anns_by_image[image_id]
        assert [a["attributes"]["shape"] for a in anns] == [o.shape for o in scene.objects]
        img = np.asarray(Image.open(world / "test" / f"{image_id:06d}.png"))
        assert (img == scene.image).all()
        union = np.zeros(img.shape[:2], dtype=int)
        for i, (a, o) in enumerate(zip(anns, scene.objects)):
            m = rle_decode(a["segmentation"])
            assert (m == o.mask).all()
            assert a["area"] == int(m.sum()) > 0
            ys, xs = np.nonzero(m)
            assert a["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            # the visible part is the full shape minus every shape drawn later
            later = np.zeros_like(m)
            for p in scene.objects[i + 1 :]:
                later |= p.full
            assert (m == (o.full & ~later)).all()
            assert not (m & later).any()
            occluded += int((o.full & later).any())
            # every visible pixel shows the object's colour (or its pattern's second tone)
            colors = {tuple(c) for c in img[m]}
            assert tuple(COLORS[o.color]) in colors and len(colors) <= 2
            union += m
        assert union.max() <= 1  # instance masks never overlap
        named = {tuple(v) for v in COLORS.values()}
        assert not any(tuple(px) in named for px in img[union == 0])  # the background is no object's colour
    assert occluded > 0


def test_shape_masks_at_pixel_centres():
    m = shape_mask("square", 10.0, 10.0, 4.0 / 0.85, 20, 20)  # half side 4 -> pixels 6..13
    assert m.sum() == 64 and m[6:14, 6:14].all()
    c = shape_mask("circle", 8.0, 8.0, 3.0, 16, 16)
    yy, xx = np.mgrid[0:16, 0:16] + 0.5
    assert (c == ((xx - 8) ** 2 + (yy - 8) ** 2 <= 9)).all()


def test_size_classes_have_disjoint_extents(world):
    coco = read_coco_instances(world / "annotations" / "instances_test.json")
    extents = {s: [] for s in SIZES}
    for a in coco.anns.values():
        extents[a["attributes"]["size"]].append(max(a["amodal_bbox"][2:]))
    assert all(extents.values())
    assert max(extents["small"]) < min(extents["medium"]) and max(extents["medium"]) < min(extents["large"])


def test_every_referring_expression_names_exactly_one_object(world):
    coco = read_coco_instances(world / "annotations" / "instances_test.json")
    refs = read_refs(world / "annotations" / "refs_test.json")
    scenes = _scenes("test", 1, N_IMAGES)
    assert len(refs) >= len(coco.anns) // 2
    kinds = set()
    for r in refs:
        scene = scenes[r["image_id"] - 1]
        index = [a["id"] for a in coco.anns_by_image[r["image_id"]]].index(r["ann_id"])
        for s in r["sentences"]:
            assert L.matching_objects(s, scene) == [index], s
            e = L.parse_expression(s)
            kinds.add("relation" if e.relation else "position" if e.position else "attributes")
    assert kinds == {"relation", "position", "attributes"}


def _obj(shape, color, size, x0, y0, side=6):
    m = np.zeros((60, 60), dtype=bool)
    m[y0 : y0 + side, x0 : x0 + side] = True
    return Obj(shape, color, size, "plain", x0 + side / 2, y0 + side / 2, side / 2, False, m, m.copy())


def test_the_expression_checker_sees_ambiguity():
    scene = Scene(
        60,
        60,
        "gray",
        "plain",
        [
            _obj("circle", "red", "small", 2, 2),
            _obj("circle", "red", "large", 40, 40),
            _obj("star", "blue", "small", 40, 2),
        ],
    )
    assert L.matching_objects("the red circle", scene) == [0, 1]
    assert L.matching_objects("the large red circle", scene) == [1]
    assert L.matching_objects("the red circle on the left", scene) == [0]
    assert L.matching_objects("the red circle below the blue star", scene) == [1]
    assert L.matching_objects("the red circle to the left of the blue star", scene) == [0]
    assert L.matching_objects("the green circle", scene) == []
    assert L.referring_expressions(scene, 0)[0] == "the small red circle"
    for bad in ("a red circle", "the red red circle", "the red blob", "the circle near the star"):
        with pytest.raises(ValueError):
            L.parse_expression(bad)


def test_reasoning_answers_follow_the_geometry(world):
    coco = read_coco_instances(world / "annotations" / "instances_test.json")
    tasks = [t for t in read_tasks(world / "tasks_test.jsonl") if t["task"] == "reasoning"]
    yes_no = [t["answer"] for t in tasks if t["kind"] == "yes_no"]
    assert len(tasks) >= 10 and 0.3 <= yes_no.count("Yes") / len(yes_no) <= 0.7  # "always No" is no strategy

    def box(ann):
        ys, xs = np.nonzero(rle_decode(ann["segmentation"]))
        return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1

    def extent(ann):
        return max(ann["amodal_bbox"][2:])

    for t in tasks:
        a, b = (coco.anns[r["ann_id"]] for r in t["regions"])
        (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = box(a), box(b)
        left, right, above, below = ax1 <= bx0, bx1 <= ax0, ay1 <= by0, by1 <= ay0
        q, ans = t["question_type"], t["answer"]
        truth = {
            "left": left if left or right else None,
            "right": right if left or right else None,
            "above": above if above or below else None,
            "below": below if above or below else None,
            "larger": extent(a) > extent(b),
            "smaller": extent(a) < extent(b),
            "same_color": a["attributes"]["color"] == b["attributes"]["color"],
            "same_shape": a["attributes"]["shape"] == b["attributes"]["shape"],
        }
        if t["kind"] == "yes_no":
            assert truth[q] is not None, t
            assert ans == ("Yes" if truth[q] else "No"), t
        else:
            win = {
                "further_left": a if left else b if right else None,
                "higher": a if above else b if below else None,
                "bigger": a if extent(a) > extent(b) else b,
                "color_of_larger": a if extent(a) > extent(b) else b,
            }[q]
            assert win is not None
            assert ans == (win["attributes"]["color"] if q == "color_of_larger" else win["caption"]), t
        assert count_regions(t["conversations"][0]["value"]) == 2


def test_tasks_are_in_the_training_format_with_every_task(world):
    tasks = read_tasks(world / "tasks_test.jsonl")
    coco = read_coco_instances(world / "annotations" / "instances_test.json")
    assert {t["task"] for t in tasks} == {"detail", "brief", "category", "refer", "reasoning"}
    no_match = 0
    for t in tasks:
        conv = t["conversations"]
        assert [c["from"] for c in conv] == ["human", "gpt"] and conv[1]["value"] == t["answer"]
        assert count_regions(conv[0]["value"]) == len(t["regions"]) >= 1
        assert (world / t["image"]).is_file()
        if t["task"] == "refer":
            assert 2 <= len(t["regions"]) <= 6
            if t["target_index"] is None:
                no_match += 1
                assert t["answer"] == L.NO_MATCH
            else:
                assert t["answer"] == f"Region [{t['target_index'] + 1}]"
                target = t["regions"][t["target_index"]]["ann_id"]
                assert t["expression"] in coco.anns[target]["sentences"]
        if t["task"] == "brief":
            a = coco.anns[t["regions"][0]["ann_id"]]["attributes"]
            assert re.fullmatch(r"a (small|medium|large) \w+( striped| dotted)? \w+", t["answer"])
            assert t["answer"].split()[1:3] == [a["size"], a["color"]] and t["answer"].endswith(a["shape"])
        if t["task"] == "detail":
            assert re.search(r"of the image|the only object", t["answer"])
    assert no_match > 0


def test_no_match_refer_tasks_hold_no_matching_region(world):
    scenes = _scenes("test", 1, N_IMAGES)
    coco = read_coco_instances(world / "annotations" / "instances_test.json")
    for t in read_tasks(world / "tasks_test.jsonl"):
        if t["task"] != "refer":
            continue
        ids = [a["id"] for a in coco.anns_by_image[t["image_id"]]]
        matches = [ids[i] for i in L.matching_objects(t["expression"], scenes[t["image_id"] - 1])]
        shown = [r["ann_id"] for r in t["regions"]]
        assert [s for s in shown if s in matches] == ([] if t["target_index"] is None else [shown[t["target_index"]]])


def test_held_out_pairs_appear_only_in_test(world):
    train = read_coco_instances(world / "annotations" / "instances_train.json")
    test = read_coco_instances(world / "annotations" / "instances_test.json")
    pair = lambda a: (a["attributes"]["color"], a["attributes"]["shape"])  # noqa: E731
    assert not any(pair(a) in HELD_OUT for a in train.anns.values())
    held = [a for a in test.anns.values() if pair(a) in HELD_OUT]
    assert held and all(a["held_out"] for a in held)
    assert len(train.categories) == len(SHAPES) >= 10 and len(COLORS) >= 8


def test_captions_and_region_descriptions(world):
    vg = read_vg_regions(world / "annotations" / "region_descriptions_test.json")
    coco = read_coco_instances(world / "annotations" / "instances_test.json")
    assert len(vg) == len(coco.anns)
    for r in vg:
        a = coco.anns[r["region_id"]]
        x, y, w, h = a["bbox"]
        assert r["box"] == (x, y, x + w, y + h) and a["attributes"]["shape"] in r["phrase"]
    caps = json.loads((world / "annotations" / "captions_test.json").read_text())
    assert len(caps["annotations"]) == 2 * N_IMAGES


def test_pickle_files_are_refused_with_a_clear_error(tmp_path):
    p = tmp_path / "refs(umd).p"
    p.write_bytes(pickle.dumps([{"ann_id": 1}]))
    with pytest.raises(DatasetError, match="pickle"):
        read_refs(p)
    disguised = tmp_path / "refs.json"
    disguised.write_bytes(pickle.dumps([{"ann_id": 1}]))
    with pytest.raises(DatasetError, match="pickle"):
        read_refs(disguised)
    with pytest.raises(DatasetError, match="not found"):
        read_coco_instances(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"images": []}')
    with pytest.raises(DatasetError, match="annotations"):
        read_coco_instances(tmp_path / "bad.json")


def test_cli(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--split", "train", "--images", "2", "--seed", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 2
    assert main(["--out", str(tmp_path), "--split", "train", "--images", "0"]) == 2
