"""python -m rgpt_rt.eval: metrics against hand-computed values, the harness with oracle and wrong fake runtimes,
and the random tiny checkpoint end to end (near-chance numbers, so the metrics can fail)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from rgpt_rt import Box
from rgpt_rt.data.scene import SHAPES
from rgpt_rt.data.world import generate_split
from rgpt_rt.eval import evaluate, markdown_table, world_items
from rgpt_rt.eval import metrics as M
from rgpt_rt.eval.__main__ import load_dataset, main, parse_args
from rgpt_rt.eval.datasets import coco_category_items, refcocog_items, select
from rgpt_rt.inputs import load_frame, rle_decode
from rgpt_rt.prompts import parse_refer
from rgpt_rt.runtime import content_key


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalworld")
    generate_split(root, "test", 3, seed=11)
    return root


# ---- metrics on tiny inputs ------------------------------------------------------------------------------


def test_average_precision_by_hand():
    # ranked: +, -, +, -  -> precision 1, 1/2, 2/3, 1/2 at recall 1/2, 1/2, 1, 1; interpolated: 1, 2/3, 2/3, 1/2
    # 101 thresholds: 0..0.50 (51 of them) see 1.0, 0.51..1.0 (50) see 2/3
    ap = M.average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0], bool))
    assert ap == pytest.approx((51 * 1.0 + 50 * 2 / 3) / 101)
    assert M.average_precision(np.array([0.1, 0.9]), np.array([1, 0], bool)) == pytest.approx(
        (51 * 0.5 + 50 * 0.5) / 101
    )
    assert M.average_precision(np.array([0.3, 0.2]), np.array([1, 1], bool)) == 1.0
    assert M.average_precision(np.array([0.3, 0.2]), np.array([0, 0], bool)) is None


def test_mean_average_precision_by_hand():
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0]])
    labels = np.array([0, 1, 1])
    m, per = M.mean_average_precision(scores, labels)
    # class 0: ranks (0.9 +, 0.6 -, 0.2 -) -> AP 1; class 1: ranks (0.8 +, 0.4 +, 0.1 -) -> AP 1; class 2: no positive
    assert per == {0: 1.0, 1: 1.0} and m == 1.0
    # class 0: (0.2 -, 0.1 +, 0.05 -) -> precision 0, 1/2 at recall 1 -> AP 1/2
    # class 1: (0.9 -, 0.8 +, 0.1 +) -> precision 0, 1/2, 2/3 at recall 0, 1/2, 1 -> interpolated 2/3 everywhere
    mixed = np.array([[0.1, 0.9, 0.0], [0.2, 0.8, 0.0], [0.05, 0.1, 0.0]])
    m2, per2 = M.mean_average_precision(mixed, labels)
    assert per2 == pytest.approx({0: 0.5, 1: 2 / 3}) and m2 == pytest.approx((0.5 + 2 / 3) / 2)


def test_accuracy_yes_no_and_exact_match():
    assert M.accuracy([True, False, True, True]) == 0.75 and M.accuracy([]) is None
    assert M.yes_no("Yes, it is.") == "yes" and M.yes_no("no") == "no" and M.yes_no("maybe") is None
    assert M.exact_match("A large red circle.", "a large red circle")
    assert not M.exact_match("a large red circle on the left", "a large red circle")
    assert not M.exact_match(None, "x")
    assert np.allclose(M.softmax_rows(np.log([[1.0, 3.0]])), [[0.25, 0.75]])


def test_caption_metrics_on_identical_and_disjoint_captions():
    pytest.importorskip("pycocoevalcap")
    refs = {"1": ["a large red circle on the left"], "2": ["a small blue star at the top"], "3": ["two green squares"]}
    same = M.caption_scores(refs, {k: v[0] for k, v in refs.items()}, tokenizer="simple", meteor=False)
    assert same["BLEU-4"] == pytest.approx(1.0, abs=1e-6)
    assert same["ROUGE-L"] == pytest.approx(1.0)
    # CIDEr-D: 10 x the mean over n = 1..4 of the n-gram cosine; a candidate equal to its only reference gets 10,
    # except that the 3-word caption has no 4-grams (cosine 0 for n = 4): 7.5
    assert same["CIDEr"] == pytest.approx((10 + 10 + 7.5) / 3)
    other = M.caption_scores(
        refs, {"1": "zebra", "2": "purple hat", "3": "an old boat sails"}, tokenizer="simple", meteor=False
    )
    assert other["BLEU-4"] < 1e-6 and other["CIDEr"] == 0.0 and other["ROUGE-L"] == 0.0
    assert M.caption_scores(refs, {}, tokenizer="simple", meteor=False) == {"error": "no captions to score"}


def test_java_tokenizer_and_meteor_run_or_say_why():
    pytest.importorskip("pycocoevalcap")
    refs = {"1": ["A large red circle, on the left."], "2": ["a small blue star"]}
    out = M.caption_scores(refs, {"1": "a large red circle on the left", "2": "a green square"})
    if shutil.which("java") is None:  # the fallback, with the reason
        assert out["tokenizer"] == "simple" and out["METEOR"] is None and out["notes"]
        return
    assert out["tokenizer"] == "ptb" and not out["notes"]
    assert 0.0 < out["METEOR"] < 1.0
    # on plain sentences the fallback tokenizer gives the PTB tokenizer's tokens
    ptb, _ = M._ptb({"1": [{"caption": refs["1"][0]}]}, {"1": [{"caption": "x"}]})
    assert ptb["1"][0].split() == M.simple_tokenize(refs["1"][0])


def test_without_java_the_caption_metrics_fall_back_and_say_why(monkeypatch, tmp_path):
    pytest.importorskip("pycocoevalcap")
    monkeypatch.setenv("PATH", str(tmp_path))  # no java on PATH
    refs = {"1": ["A large red circle, on the left."], "2": ["a small blue star"]}
    out = M.caption_scores(refs, {"1": "a large red circle on the left", "2": "a green square"})
    assert out["tokenizer"] == "simple" and out["METEOR"] is None
    assert "PTB tokenizer could not run" in out["notes"][0] and "METEOR could not run" in out["notes"][1]
    assert out["BLEU-4"] > 0.5 and out["CIDEr"] > 0.0


# ---- the harness with fake runtimes ----------------------------------------------------------------------


class FakeRuntimeWithoutScore:
    """Answers from the ground truth (looked up by the masks' content), or wrongly with `wrong=True`."""

    def __init__(self, ds, wrong: bool = False):
        self.wrong = wrong
        self.names = ds.categories
        self.by_mask, self.by_question = {}, {}
        for it in ds.items:
            keys = tuple(self._key(self._mask(r)) for r in it.regions)
            if it.task == "category":
                self.by_mask[("category", keys[0])] = it.answer
            elif it.task in ("brief", "detail"):
                self.by_mask[(it.task, keys[0])] = it.answer
            else:
                self.by_question[(it.question, keys)] = it.answer

    @staticmethod
    def _mask(r):
        r = r() if callable(r) else r
        return rle_decode(r) if isinstance(r, dict) else r

    @staticmethod
    def _key(m):
        return content_key(np.asarray(m, dtype=bool))

    def _truth_name(self, mask):
        name = self.by_mask[("category", self._key(mask))]
        return self.names[(self.names.index(name) + 1) % len(self.names)] if self.wrong else name

    def classify(self, frame, mask, vocabulary=None, **kw):
        assert load_frame(frame).shape == (128, 128, 3)
        return self._truth_name(mask)

    def describe_many(self, frame, masks, task="detail", **kw):
        out = [self.by_mask[(task, self._key(m))] for m in masks]
        return ["a purple hat" if self.wrong else t for t in out]

    def refer(self, frame, masks, expression, **kw):
        ans = self.by_question[(expression, tuple(self._key(m) for m in masks))]
        if self.wrong:
            return None if ans is not None else 0
        return ans

    def ask(self, frame, question, masks, **kw):
        ans = self.by_question[(question, tuple(self._key(m) for m in masks))]
        if self.wrong:
            return {"Yes": "No", "No": "Yes"}.get(ans, "something else")
        return ans


class FakeRuntime(FakeRuntimeWithoutScore):
    def score(self, frame, instruction, mask, candidates):
        """The Runtime's signature: one log-likelihood per candidate."""
        truth = self._truth_name(mask)
        return [0.0 if c == truth else -3.0 - 0.1 * i for i, c in enumerate(candidates)]


def test_an_oracle_scores_full_marks_and_a_wrong_model_scores_nothing(world):
    ds = world_items(world, "test")
    good = evaluate(FakeRuntime(ds), ds, progress=False, tokenizer="simple", meteor=False)
    bad = evaluate(FakeRuntime(ds, wrong=True), ds, progress=False, tokenizer="simple", meteor=False)
    g, b = good["metrics"], bad["metrics"]
    assert good["errors"] == bad["errors"] == 0
    for task, key in (
        ("category", "accuracy"),
        ("category", "mAP"),
        ("category", "accuracy_by_likelihood"),
        ("refer", "accuracy"),
        ("reasoning", "yes_no_accuracy"),
        ("reasoning", "open_exact_match"),
        ("brief", "exact_match"),
    ):
        assert g[task][key] == 1.0, (task, key)
        assert b[task][key] < 0.5, (task, key, b[task][key])
    assert g["brief"].get("CIDEr", 10.0) > b["brief"].get("CIDEr", 0.0)
    assert g["category"]["n"] == sum(1 for it in ds.items if it.task == "category")
    table = markdown_table(good, {"model": "oracle"})
    assert "| category | mAP | 100.0 |" in table and "| refer | accuracy | 100.0 |" in table


def test_without_score_the_map_is_reported_missing(world):
    ds = select(world_items(world, "test"), ["category"], 1)
    out = evaluate(FakeRuntimeWithoutScore(ds), ds, progress=False)
    assert out["metrics"]["category"]["accuracy"] == 1.0
    assert "mAP" not in out["metrics"]["category"] and "no score()" in out["metrics"]["category"]["mAP_note"]


# ---- the random tiny checkpoint end to end ---------------------------------------------------------------


def test_the_random_tiny_checkpoint_runs_end_to_end_at_chance(world, tmp_path):
    from rgpt_rt.testing import make_tiny_checkpoint

    ckpt = make_tiny_checkpoint(tmp_path / "tiny", layout="llava")
    out = tmp_path / "out"
    rc = main(
        [
            str(ckpt),
            "--world",
            str(world),
            "--tasks",
            "category,refer,reasoning,brief",
            "--limit",
            "2",
            "--max-new-tokens",
            "4",
            "--out",
            str(out),
            "--quiet",
            "--tokenizer",
            "simple",
            "--no-meteor",
        ]
    )
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    m = res["metrics"]
    assert res["backend"] == "torch" and res["errors"] == 0 and res["images"] == 2
    assert set(m) == {"category", "refer", "reasoning", "brief"}
    # near chance: 12 categories; refer has 2..6 options (or none); a random model gets few right
    assert m["category"]["accuracy"] <= 0.5
    # mAP through Runtime.score (one log-likelihood per category name): computed, and near chance
    assert 0.0 <= m["category"]["mAP"] <= 1.0 and m["category"]["accuracy_by_likelihood"] <= 0.5
    assert m["refer"]["accuracy"] <= max(m["refer"]["no_match_share"], 0.5) + 0.2
    assert m["brief"]["exact_match"] == 0.0
    assert m["brief"]["METEOR"] is None and "skipped" in m["brief"]["notes"][0]  # --no-meteor
    assert (out / "results.md").read_text().startswith("model: ")
    # predictions are the runtime's parsed answers
    refer_preds = [
        v
        for k, v in res["predictions"].items()
        if k in {it.key for it in world_items(world).items if it.task == "refer"}
    ]
    assert refer_preds and all(p is None or isinstance(p, int) for p in refer_preds)
    assert parse_refer("Region [2]", 3) == 1


def test_the_same_readers_serve_the_coco_refcocog_and_vg_layouts(world):
    ann = world / "annotations"
    coco = coco_category_items(ann / "instances_test.json", world / "test")
    assert coco.categories == list(SHAPES) and coco.vocabulary == list(SHAPES)
    assert all(it.image.is_file() for it in coco.items)
    ref = refcocog_items(ann / "refs_test.json", ann / "instances_test.json", world / "test")
    refer = [it for it in ref.items if it.task == "refer"]
    caps = [it for it in ref.items if it.task == "refcocog_caption"]
    assert refer and caps and all(2 <= len(it.regions) <= 6 for it in refer)
    for it in refer:  # the answer indexes the region the expression names
        target = rle_decode(
            next(
                a
                for a in json.loads((ann / "instances_test.json").read_text())["annotations"]
                if it.question in a["sentences"]
            )["segmentation"]
        )
        assert (it.regions[it.answer]() == target).all()
    assert all(it.references and it.answer == it.references[0] for it in caps)
    out = evaluate(FakeRuntime(select(ref, ["refer"], None)), select(ref, ["refer"], None), progress=False)
    assert out["metrics"]["refer"]["accuracy"] == 1.0
    args = parse_args(
        [
            "m",
            "--vg-regions",
            str(ann / "region_descriptions_test.json"),
            "--images",
            str(world / "test"),
            "--vg-image-pattern",
            "{image_id:06d}.png",
        ]
    )
    vg = load_dataset(args)
    assert vg.items and all(it.image.is_file() and isinstance(it.regions[0], Box) for it in vg.items)


def test_cli_errors_name_the_problem(tmp_path, capsys):
    assert main([str(tmp_path / "nope"), "--world", str(tmp_path), "--quiet"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main([str(tmp_path), "--world", str(tmp_path), "--tasks", "bogus"]) == 2
    assert main([str(tmp_path), "--coco-instances", str(tmp_path / "x.json")]) == 2
    assert "needs --images" in capsys.readouterr().err


def test_an_onnx_engine_gives_the_torch_answers(world, tmp_path):
    pytest.importorskip("onnxruntime")
    from build_engine.builder import build
    from rgpt_rt.runtime import Runtime
    from rgpt_rt.testing import make_tiny_checkpoint

    ckpt = make_tiny_checkpoint(tmp_path / "tiny", layout="llava")
    engine = build(ckpt, tmp_path / "engine", log=lambda *a: None)
    ds = select(world_items(world, "test"), ["category", "refer", "reasoning"], 1)
    kw = {"max_new_tokens": 4, "progress": False, "tokenizer": "simple", "meteor": False}
    ref = evaluate(Runtime.from_pretrained(ckpt, backend="torch"), ds, **kw)
    got = evaluate(Runtime.from_pretrained(engine, backend="onnx"), ds, **kw)
    assert got["errors"] == ref["errors"] == 0
    assert len(got["predictions"]) == len(ds.items) > 0 and got["predictions"] == ref["predictions"]
    assert got["metrics"]["category"]["mAP"] == pytest.approx(ref["metrics"]["category"]["mAP"], abs=1e-6)
