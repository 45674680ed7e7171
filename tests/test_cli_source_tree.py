"""A fresh clone: running from the checkout root either works (an in-place or editable build) or says precisely
why not; and the README's quick start runs as written."""

import importlib.machinery
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEV_BUILD = "pip install --no-build-isolation -e ."


def python(code: str, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )


def _native_from(package_dir: Path):
    """rgpt_rt/_native.py loaded from `package_dir` under another name (so it sees that directory as its own)."""
    spec = importlib.util.spec_from_file_location("_native_under_test", package_dir / "_native.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _copy_package(dst: Path) -> Path:
    import rgpt_rt

    src = Path(rgpt_rt.__file__).parent
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("_C*", "__pycache__", "assets", "testing"))
    return dst


def test_importing_from_the_checkout_root_works_or_names_the_problem(tmp_path):
    where = "import rgpt_rt, pathlib; print(pathlib.Path(rgpt_rt.__file__).parent.resolve())"
    installed = python(where, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    installed_dir = Path(installed.stdout.strip())
    source = ROOT / "rgpt_rt"
    out = python("import rgpt_rt; print(rgpt_rt.build_info()['version'])", cwd=ROOT)
    serves_source = installed_dir == source  # editable install: its import hook serves the source tree
    built_in_place = any(f.name.startswith("_C.") for f in source.iterdir())
    if serves_source or built_in_place:
        assert out.returncode == 0, out.stderr
    else:
        assert out.returncode == 1
        last = out.stderr.strip().splitlines()[-1]
        assert last.startswith("ImportError: rgpt_rt was imported from the source tree at " + str(source))
        assert f"shadows the installed copy at {installed_dir}" in last and DEV_BUILD in last
        demo = subprocess.run([sys.executable, "-m", "rgpt_rt", "demo"], capture_output=True, text=True, cwd=ROOT)
        assert demo.returncode == 1 and demo.stderr.count("\n") == 1, demo.stderr  # at once, in one line
        assert demo.stderr.startswith("rgpt-rt: error: rgpt_rt was imported from the source tree at")


def test_python_m_pytest_from_the_checkout_root_tests_a_built_package():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_package.py::test_build_info_reports_the_build",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert out.returncode == 0 and "1 passed" in out.stdout, out.stdout + out.stderr


def test_a_shadowing_source_tree_is_named(tmp_path):
    checkout = tmp_path / "clone"
    (checkout / "csrc").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("[project]\nname = 'rgpt_rt'\n")
    package = _copy_package(checkout / "rgpt_rt")
    message = _native_from(package).missing_module_message()
    assert message.startswith(f"rgpt_rt was imported from the source tree at {package.resolve()}, which is not built")
    m = re.search(r"shadows the installed copy at (\S+) ", message)
    assert m, message
    assert any(f.name.startswith("_C.") for f in Path(m.group(1)).iterdir())  # it names a real, built copy
    assert DEV_BUILD in message and "Run from another directory" in message


def test_an_unbuilt_install_and_a_broken_module_are_named(tmp_path):
    package = _copy_package(tmp_path / "site" / "rgpt_rt")  # not a checkout: no pyproject.toml next to it
    message = _native_from(package).missing_module_message()
    assert message.startswith(f"rgpt_rt's native module rgpt_rt._C is missing from {package.resolve()}")
    broken = package / ("_C" + importlib.machinery.EXTENSION_SUFFIXES[0])
    broken.write_bytes(b"not a shared object")
    message = _native_from(package).missing_module_message(ImportError("invalid ELF header"))
    assert message.startswith(f"rgpt_rt's native module {broken.resolve()} failed to load (invalid ELF header)")


def _readme_quick_start() -> str:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README.md has no python example"
    return blocks[0]


def test_readme_quick_start_runs_as_written(tmp_path):
    code = _readme_quick_start()
    assert "rgpt_rt.assets" in code  # the quick start uses the documented sample image
    out = python(code, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip(), "the quick start prints the description"
