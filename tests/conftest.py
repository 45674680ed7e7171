import pytest

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

    from rgpt_rt.cli import SAMPLE_IMAGE

    return np.asarray(Image.open(SAMPLE_IMAGE).convert("RGB"))
