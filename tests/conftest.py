"""Shared fixtures. Also makes `python -m pytest` from the checkout root test the installed package."""

import importlib.machinery
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _built_in_place() -> bool:
    return any(
        f.name.startswith("_C.") and f.name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
        for f in (ROOT / "rgpt_rt").iterdir()
    )


def _drop_unbuilt_source_tree() -> bool:
    """`python -m pytest` puts the checkout root first on sys.path, where rgpt_rt is the source tree without
    its compiled modules. Unless it was built in place, take the root off sys.path so that the tests import the
    installed package, as `pytest -q tests` does. An editable install (`pip install --no-build-isolation -e .`)
    still serves the source tree through its import hook."""
    if _built_in_place():
        return False
    before = len(sys.path)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT]
    return len(sys.path) != before


DROPPED_ROOT = _drop_unbuilt_source_tree()


def pytest_report_header(config):
    import rgpt_rt

    note = f" (the unbuilt source tree at {ROOT} was taken off sys.path)" if DROPPED_ROOT else ""
    return f"rgpt_rt: {Path(rgpt_rt.__file__).parent}{note}"


def pytest_sessionstart(session):
    """Stop with one clear message, instead of a failure per test, when rgpt_rt cannot be imported or built."""
    try:
        from rgpt_rt import _native
    except ModuleNotFoundError:
        pytest.exit(
            f"cannot test rgpt_rt: it is not installed in {sys.executable} and the source tree at {ROOT} is not "
            "built; `pip install .` (or, for development, `pip install --no-build-isolation -e .`) first",
            returncode=4,
        )
    try:
        _native.cpu()
    except ImportError as exc:
        pytest.exit(f"cannot test rgpt_rt: {exc}", returncode=4)


torch = pytest.importorskip("torch")


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory):
    from rgpt_rt.testing import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_llava", layout="llava", seed=0)


@pytest.fixture(scope="session")
def tiny_vila(tmp_path_factory):
    from rgpt_rt.testing import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_vila", layout="vila", seed=0)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)


@pytest.fixture(scope="session")
def rt_llava(tiny_llava):
    from rgpt_rt.runtime import Runtime

    return Runtime.from_pretrained(tiny_llava)


@pytest.fixture(scope="session")
def rt_vila(tiny_vila):
    from rgpt_rt.runtime import Runtime

    return Runtime.from_pretrained(tiny_vila)


@pytest.fixture(scope="session")
def sample_frame():
    import numpy as np
    from PIL import Image

    from rgpt_rt.assets import SAMPLE_IMAGE

    return np.asarray(Image.open(SAMPLE_IMAGE).convert("RGB"))
