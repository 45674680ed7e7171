"""The package itself: what was built, and that `import rgpt_rt` needs no torch."""

import subprocess
import sys

import pytest

import rgpt_rt


def test_build_info_reports_the_build():
    info = rgpt_rt.build_info()
    assert info["version"] == rgpt_rt.__version__
    assert info["cxx_standard"] >= "201703"
    assert info["target_arch"] in ("x86_64", "aarch64", "other")
    assert isinstance(info["cuda"], bool)
    if info["cuda"]:
        assert info["cuda_archs"] and all(isinstance(a, int) and a >= 50 for a in info["cuda_archs"])
        assert info["cuda_runtime"] >= 12000 and info["cuda_devices"] >= 0
    else:
        assert info["cuda_archs"] == []


def test_import_without_torch(tmp_path):
    code = (
        "import sys\n"
        "for name in ('torch', 'transformers', 'safetensors', 'onnxruntime', 'tensorrt'):\n"
        "    sys.modules[name] = None  # any import of these now raises ImportError\n"
        "import rgpt_rt, rgpt_rt.errors, rgpt_rt.config, rgpt_rt.runtime, rgpt_rt.cli\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "info = rgpt_rt.build_info()\n"
        "print('ok', info['version'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok ")


def test_cuda_module_imports_without_a_gpu_and_reports_cleanly():
    cuda = rgpt_rt._cuda()
    if cuda is None:
        pytest.skip("built without CUDA (no nvcc at build time, or RGPT_CPU_ONLY)")
    if cuda.device_count() == 0:
        with pytest.raises(RuntimeError, match="device probe failed"):
            cuda.probe(8)
    else:
        assert cuda.probe(1000) == [3 * i + 1 for i in range(1000)]
    with pytest.raises(ValueError, match="n must be in"):
        cuda.probe(0)
