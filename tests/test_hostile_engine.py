"""Hostile engine directories (issue 16, class 6): every path a manifest names stays inside the engine
directory, a malformed manifest is an EngineError naming the field, and with verify=False a truncated or
swapped graph is an EngineError naming the file, not a raw ONNX Runtime error or a wrong answer later."""

import json
import os
import shutil

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from build_engine.builder import build  # noqa: E402
from rgpt_rt import Runtime  # noqa: E402
from rgpt_rt.engine import read_manifest  # noqa: E402
from rgpt_rt.errors import EngineError  # noqa: E402

FRAME = np.full((60, 80, 3), 128, np.uint8)
BOX = (10, 10, 40, 40)
INSTR = "Provide a short description of <region>."


@pytest.fixture(scope="module")
def engine(tiny_llava, tmp_path_factory):
    return build(tiny_llava, tmp_path_factory.mktemp("eng") / "llava", log=lambda msg: None)


@pytest.fixture
def copy(engine, tmp_path):
    """A fresh copy of the engine at tmp_path/eng, and a copy of its connector graph just outside it."""
    dst = tmp_path / "eng"
    shutil.copytree(engine, dst)
    shutil.copy(engine / "connector.onnx", tmp_path / "outside.onnx")
    return dst


def _edit(path, fn):
    mf = path / "manifest.json"
    d = json.loads(mf.read_text())
    fn(d)
    mf.write_text(json.dumps(d))


def _rename_connector(d, name):
    d["files"][name] = d["files"].pop("connector.onnx")
    d["graphs"]["connector"]["onnx"] = name


ESCAPES = ["../outside.onnx", "sub/../../outside.onnx", "/etc/passwd", "../../../../../../etc/passwd", "ABSOLUTE"]


@pytest.mark.parametrize("name", ESCAPES)
@pytest.mark.parametrize("verify", [False, True])
def test_every_manifest_path_stays_inside_the_engine_dir(copy, name, verify):
    if name == "ABSOLUTE":  # an absolute path to a real graph with the right hash
        name = str(copy.parent / "outside.onnx")
    _edit(copy, lambda d: _rename_connector(d, name))
    with pytest.raises(EngineError, match="outside the engine directory"):
        read_manifest(copy, verify=verify)
    with pytest.raises(EngineError, match="outside the engine directory"):
        Runtime.from_pretrained(copy, verify=verify)


def test_a_symlink_out_of_the_engine_dir_is_refused_even_with_the_right_hash(copy):
    (copy / "connector.onnx").unlink()
    os.symlink(copy.parent / "outside.onnx", copy / "connector.onnx")
    for verify in (True, False):
        with pytest.raises(EngineError, match="connector.onnx.*outside the engine directory"):
            Runtime.from_pretrained(copy, verify=verify)


def test_a_file_name_that_is_not_a_string_or_is_empty_is_refused(copy):
    _edit(copy, lambda d: d["graphs"]["connector"].update(onnx=["connector.onnx"]))
    with pytest.raises(EngineError, match="connector"):
        read_manifest(copy, verify=False)
    _edit(copy, lambda d: _rename_connector(d, ""))
    with pytest.raises(EngineError, match="file name"):
        read_manifest(copy, verify=False)


@pytest.mark.parametrize("text", ["[]", '"manifest"', "42", "null", "[1, 2]"])
def test_a_manifest_that_is_not_an_object_is_an_engine_error(copy, text):
    (copy / "manifest.json").write_text(text)
    with pytest.raises(EngineError, match="JSON object"):
        read_manifest(copy)
    with pytest.raises(EngineError, match="JSON object"):
        Runtime.from_pretrained(copy)


def _drop(d, *keys):
    for k in keys[:-1]:
        d = d[k]
    del d[keys[-1]]


MALFORMED = [
    ("graphs-missing-decoder", lambda d: _drop(d, "graphs", "decoder"), "decoder"),
    ("graph-not-object", lambda d: d["graphs"].update(vision="vision.onnx"), "vision"),
    ("graph-without-onnx", lambda d: _drop(d, "graphs", "connector", "onnx"), "onnx"),
    ("graphs-list", lambda d: d.update(graphs=[]), "graphs"),
    ("files-list", lambda d: d.update(files=[]), "files"),
    ("file-entry-string", lambda d: d["files"].update({"vision.onnx": "abc"}), "vision.onnx"),
    ("file-without-sha256", lambda d: _drop(d, "files", "vision.onnx", "sha256"), "sha256"),
    ("file-bytes-string", lambda d: d["files"]["vision.onnx"].update(bytes="big"), "bytes"),
    ("model-string", lambda d: d.update(model="llava"), "model"),
    ("model-without-llm", lambda d: _drop(d, "model", "llm"), "llm"),
    ("model-unknown-field", lambda d: d["model"]["vision"].update(bogus=1), "bogus"),
    ("model-image-grid-0", lambda d: d["model"]["region"].update(image_grid=0), "image_grid"),
    ("model-image-grid-huge", lambda d: d["model"]["region"].update(image_grid=10**5), "image_grid"),
    ("model-zero-heads", lambda d: d["model"]["llm"].update(num_heads=0), "num_heads"),
    ("precision-fp4", lambda d: d.update(precision="fp4"), "precision 'fp4'"),
    ("precision-number", lambda d: d.update(precision=16), "precision"),
    ("backend-unknown", lambda d: d.update(backend="cuda"), "backend 'cuda'"),
    ("graph-precision-fp8", lambda d: d.update(graph_precision="fp8"), "graph_precision"),
    ("tools-string", lambda d: d.update(tools="tensorrt"), "tools"),
    ("gpu-list", lambda d: d.update(gpu=["sm_90"]), "gpu"),
]


@pytest.mark.parametrize("edit,field", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_a_malformed_manifest_is_an_engine_error_naming_the_field(copy, edit, field):
    _edit(copy, edit)
    with pytest.raises(EngineError, match=field):
        read_manifest(copy, verify=False)
    with pytest.raises(EngineError, match=field):
        Runtime.from_pretrained(copy, verify=False)


@pytest.mark.parametrize("graph", ["vision", "connector", "decoder"])
def test_a_truncated_graph_without_verification_is_an_engine_error_naming_the_file(copy, graph):
    f = copy / f"{graph}.onnx"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(EngineError, match=rf"{graph}\.onnx"):
        Runtime.from_pretrained(copy, verify=False)


@pytest.mark.parametrize("pair", [("vision", "connector"), ("connector", "decoder")])
def test_swapped_graphs_without_verification_are_an_engine_error_naming_the_file(copy, pair):
    a, b = (copy / f"{g}.onnx" for g in pair)
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)
    with pytest.raises(EngineError, match=rf"{pair[0]}\.onnx.*inputs"):
        Runtime.from_pretrained(copy, verify=False)


def test_a_graph_from_another_model_with_the_same_names_is_an_engine_error_naming_the_file(copy):
    # The vila tiny model's connector has the same input and output names and dtypes, other fixed sizes.
    from build_engine.export import export_connector
    from rgpt_rt.testing import make_tiny_model

    export_connector(make_tiny_model("vila"), copy / "connector.onnx")
    with pytest.raises(EngineError, match=r"connector\.onnx.*shape"):
        Runtime.from_pretrained(copy, verify=False)


def test_an_intact_engine_still_loads_and_answers_without_verification(engine):
    a = Runtime.from_pretrained(engine, verify=False).generate(FRAME, INSTR, BOX, max_new_tokens=4)
    b = Runtime.from_pretrained(engine).generate(FRAME, INSTR, BOX, max_new_tokens=4)
    assert a.token_ids == b.token_ids and a.token_ids
