"""The GPU scripts' plumbing, checked without a GPU (tests/gpu/fast_path.sh and check.sh get one device command
of at most 10 minutes, and the device machine returns at most 8 files): the plan at the top of each script
matches its steps and fits in 540 s, every pytest node id they select exists and no GPU test is left out,
$OUT gets 3 files merged from the steps, and a run without a usable CUDA module stops at its check step."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GPU = REPO / "tests" / "gpu"
SCRIPTS = ["fast_path.sh", "check.sh", "nano_tower.sh"]
SELECTIONS = ["fast_path_tests.txt", "compile_tests.txt", "memcheck_tests.txt"]
ONE_COMMAND_S = 540  # 9 minutes: the device tool's 10-minute command, less the machine's start and transfers
MAX_OUT_FILES = 8

sys.path.insert(0, str(GPU))
import summarize  # noqa: E402


def plan(script: str) -> dict[str, tuple[int, str]]:
    """The plan table at the top of a script: {row name: (seconds, the rest of the row)}."""
    rows = {}
    for line in (GPU / script).read_text().splitlines():
        if not line.startswith("#"):
            break  # the plan is in the header comment
        m = re.match(r"^#   (\S.*?)\s{2,}(\d+)\s*(.*)$", line)
        if m:
            rows[m.group(1)] = (int(m.group(2)), m.group(3))
    return rows


def dry_run(script: str, tmp: Path, *names: str) -> tuple[str, list[tuple[str, int, list[str]]]]:
    """The steps a script would run (RGPT_GPU_DRY_RUN=1): its work folder and [(name, limit, argv)]."""
    env = dict(os.environ, RGPT_GPU_DRY_RUN="1", TMPDIR=str(tmp), OUT=str(tmp / "out"), PYTHON=sys.executable)
    res = subprocess.run(
        ["bash", str(GPU / script), *names], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr
    records = [r.split("\x1f")[:-1] for r in res.stdout.split("\x1e") if r.strip()]
    work = next(r[1] for r in records if r[0] == "WORK")
    return work, [(r[1], int(r[2]), r[3:]) for r in records if r[0] == "STEP"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[str, list]]:
    """Dry runs: each script's default set, and fast_path.sh's optional second call."""
    tmp = tmp_path_factory.mktemp("dry")
    out = {script: dry_run(script, tmp) for script in SCRIPTS}
    out["fast_path.sh second"] = dry_run("fast_path.sh", tmp, "build", "check", "compile", "compile_tests")
    return out


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_plan_matches_the_steps_and_fits_one_device_command(script, runs):
    rows = plan(script)
    work, default = runs[script]
    assert [s[0] for s in default[:2]] == ["build", "check"]
    assert {"(packing)", "total"} <= set(rows), rows
    packing = rows["(packing)"][0]
    planned = {k: v[0] for k, v in rows.items() if not k.startswith(("(", "total"))}
    ran = {name: limit for name, limit, _ in default}
    total = sum(ran.values()) + packing
    assert rows["total"][0] == total, f"the plan's total says {rows['total'][0]}, its steps add up to {total}"
    assert total <= ONE_COMMAND_S
    optional = sorted(set(planned) - set(ran))
    if script == "fast_path.sh":
        assert optional == ["compile", "compile_tests"]
        _, second = runs["fast_path.sh second"]
        assert [s[0] for s in second] == ["build", "check", "compile", "compile_tests"]
        ran.update({name: limit for name, limit, _ in second})
        total2 = sum(limit for _, limit, _ in second) + packing
        assert rows["total second"][0] == total2 and total2 <= ONE_COMMAND_S
    else:
        assert not optional
    assert planned == ran, "the plan at the top and the steps' limits disagree"
    # the plan names each step's log and every file a step writes
    for name, _, argv in default + (runs["fast_path.sh second"][1] if script == "fast_path.sh" else []):
        assert f"{name}.log" in rows[name][1], f"{script}: the plan row of {name} does not name {name}.log"
        for arg in argv:
            for f in re.findall(re.escape(work) + r"/([\w.]+)", arg):
                assert f in rows[name][1].split(), f"{script}: step {name} writes {f}, which its plan row omits"
    lib = (GPU / "lib.sh").read_text()
    assert "RGPT_GPU_BUDGET_S:-540" in lib and "RGPT_REQUIRE_CUDA=ON" in lib


def _pytest_ids(runs) -> list[str]:
    ids = set()
    for _, steps in runs.values():
        for _, _, argv in steps:
            if "pytest" in argv:  # also under compute-sanitizer
                ids |= {a for a in argv if a.startswith(str(REPO / "tests") + "/")}
    return sorted(ids)


def test_every_selected_node_id_exists(runs, tmp_path):
    """Collected as the scripts run them: absolute ids, from outside the checkout, the checkout as rootdir."""
    ids = _pytest_ids(runs)
    assert len(ids) >= 10 and not [i for i in ids if "::" not in i and not i.endswith(".py")]
    files = {str(REPO / i) for s in SELECTIONS for i in node_ids(s)}
    assert set(ids) == files, "the selection files and what the scripts pass to pytest differ"
    ids += [str(REPO / i) for i in node_ids("not_selected.txt")]  # these must exist too
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "--rootdir", str(REPO)]
        + ids,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    collected = [ln.strip() for ln in out.stdout.splitlines() if "::" in ln]
    for i in ids:
        rel = str(Path(i).relative_to(REPO))
        hits = [c for c in collected if c == rel or c.startswith((rel + "[", rel + "::"))]
        assert hits, f"{rel} selects no test"


def test_the_bench_commands_parse(runs, tmp_path):
    """Each `python -m rgpt_rt.bench` command of the scripts passes the bench's own argument checks as it would
    on a GPU machine, and each tests/bench script knows every option the scripts give it."""
    from rgpt_rt.bench.run import parse_args

    benches, scripts = 0, []
    for _, steps in runs.values():
        for name, _, argv in steps:
            if argv[1:3] == ["-m", "rgpt_rt.bench"]:
                args = parse_args(argv[3:], cuda_available=True)  # a usage error raises SystemExit here
                assert args.device == "cuda" and args.json.endswith(f"/{name}.json")
                benches += 1
            elif argv[1].startswith(str(REPO / "tests" / "bench")):
                scripts.append((argv[1], [a for a in argv[2:] if a.startswith("--")]))
    assert benches == 5 and len(scripts) == 5  # fp16 int8 soak hf compile; decode_ops int8_op pool x2 preprocess
    code = (
        "import contextlib, io, json, runpy, sys\n"
        "out = {}\n"
        "for path in json.loads(sys.argv[1]):\n"
        "    sys.argv, buf = [path, '--help'], io.StringIO()\n"
        "    with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):\n"
        "        runpy.run_path(path, run_name='__main__')\n"
        "    out[path] = buf.getvalue()\n"
        "print(json.dumps(out))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, json.dumps(sorted({p for p, _ in scripts}))],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    helps = json.loads(res.stdout.splitlines()[-1])
    for path, options in scripts:
        assert "usage:" in helps[path], (path, helps[path][-500:])
        for opt in options:
            assert re.search(re.escape(opt) + r"\b", helps[path]), f"{path} has no option {opt}"


def node_ids(selection: str) -> list[str]:
    lines = (GPU / selection).read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def _skips_without_cuda(node: ast.AST) -> bool:
    """A module mark, decorator or call in `node` that skips without a GPU: a skipif on
    torch.cuda.is_available(), a pytest.skip(...) naming CUDA or a GPU, or the test files' _cuda_or_skip()."""
    for n in ast.walk(node):
        if not isinstance(n, ast.Call):
            continue
        f = ast.unparse(n.func)
        if f == "_cuda_or_skip":
            return True
        if f.endswith("skipif") and "cuda.is_available" in ast.unparse(n):
            return True
        if f == "pytest.skip" and re.search(r"CUDA|GPU", ast.unparse(n)):
            return True
    return False


def _needs_gpu(path: Path) -> list[str]:
    """Test functions of a test file that need a GPU: all of a file whose module mark skips without one, else
    those that skip themselves without one."""
    tree = ast.parse(path.read_text())
    marks = [n for n in tree.body if isinstance(n, ast.Assign) and "pytestmark" in ast.unparse(n.targets[0])]
    whole = any(_skips_without_cuda(n) for n in marks)
    tests = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]
    return [n.name for n in tests if whole or _skips_without_cuda(n)]


def test_no_gpu_test_is_left_out_of_the_selections():
    selected = set(node_ids("fast_path_tests.txt")) | set(node_ids("compile_tests.txt"))
    selected |= set(node_ids("not_selected.txt"))  # left out on purpose, each with its reason
    missing = []
    for path in sorted((REPO / "tests").glob("test_*.py")):
        rel = f"tests/{path.name}"
        if rel == "tests/test_gpu_script.py":
            continue  # this file skips WITH a GPU
        missing += [f"{rel}::{n}" for n in _needs_gpu(path) if rel not in selected and f"{rel}::{n}" not in selected]
    assert _needs_gpu(REPO / "tests" / "test_fast_path_cuda.py")  # the detection itself finds GPU tests
    assert not missing, f"GPU tests no GPU script selects: {missing}"
    assert "tests/test_fast_path_cuda.py::test_compiled_decode_on_cuda" not in set(node_ids("fast_path_tests.txt"))


def _run_script(tmp_path, *args, budget=60):
    env = dict(os.environ, OUT=str(tmp_path / "out"), TMPDIR=str(tmp_path), PYTHON=sys.executable)
    env["RGPT_GPU_BUDGET_S"] = str(budget)
    return subprocess.run(
        ["bash", str(GPU / "fast_path.sh"), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


@pytest.mark.skipif(shutil.which("timeout") is None, reason="needs coreutils' timeout")
def test_a_run_without_a_usable_cuda_module_stops_at_the_check_step(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the check step would pass")
    res = _run_script(tmp_path, "check", "tests")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "build_info {" in res.stdout  # build_info() printed before the verdict
    assert re.search(r"FAILED: check: (the CUDA module rgpt_rt._C_cuda was not built|.*sees no GPU)", res.stdout)
    assert "== tests" not in res.stdout  # stopped at once
    out = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert out == ["logs.tar.gz", "results.json", "summary.txt"] and len(out) <= MAX_OUT_FILES
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [s["name"] for s in results["steps"]] == ["check"] and results["steps"][0]["rc"] in (3, 4)
    assert results["check"]["build_info"]["version"] and results["check"]["ready"] is False
    assert results["stopped"].startswith("check: ")
    assert res.stdout.rstrip().splitlines()[-1].startswith("STOPPED: check: ")  # the table comes last


def test_a_step_gets_only_what_is_left_of_the_budget(tmp_path):
    res = _run_script(tmp_path, "check", budget=12)  # 12 s less the 10 s reserve: nothing may start
    assert res.returncode == 1
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["steps"][0]["status"] == "SKIPPED (budget spent)" and results["budget_s"] == 12


def test_summarize_merges_the_steps_into_three_files(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    (work / "steps.tsv").write_text("build\t120\t120\t0\t61\t\ntests\t95\t95\t1\t40\t\nfp16\t70\t70\t124\t70\t\n")
    (work / "fp16.json").write_text(json.dumps({"decode_ms_per_token": 6.5, "decode_vs_floor": 1.3}))
    (work / "hf.json").write_text(json.dumps({"hf_eager_ms_per_token": 21.0, "hf_static_error": "OOM"}))
    (work / "int8.json").write_text('{"decode_ms_per')  # killed while writing
    (work / "decode_ops.json").write_text(json.dumps({"rows": [{"op": "rms_norm+add", "batch": 1, "speedup": 2.5}]}))
    (work / "tests.xml").write_text(
        '<testsuites><testsuite><testcase classname="tests.test_a" name="test_x[1]"/>'
        '<testcase classname="tests.test_a" name="test_y"><failure message="assert 1 == 2">tb</failure></testcase>'
        '<testcase classname="tests.test_b" name="test_z"><skipped message="needs a GPU"/></testcase>'
        "</testsuite></testsuites>"
    )
    for i in range(20):
        (work / f"step{i}.log").write_text("x\n")
    text = summarize.pack(work, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(summarize.OUT_FILES)
    assert len(summarize.OUT_FILES) <= MAX_OUT_FILES
    r = json.loads((out / "results.json").read_text())
    assert [s["status"] for s in r["steps"]] == ["ok", "FAILED rc=1", "TIMED OUT at 70 s"]
    assert r["fp16"]["decode_vs_floor"] == 1.3 and "unreadable JSON" in r["int8"]["error"]
    t = r["tests"]
    assert (t["passed"], t["failed"], t["skipped"]) == (1, 1, 1)
    assert t["failures"] == ["tests/test_a.py::test_y: assert 1 == 2"]
    assert "1.30x floor" in text and "ERROR hf.hf_static_error: OOM" in text and "speedup=2.5" in text
    import tarfile

    with tarfile.open(out / "logs.tar.gz") as tar:
        assert len([n for n in tar.getnames() if n.endswith(".log")]) == 20


def test_require_cuda_turns_a_missing_nvcc_into_a_configure_error(tmp_path):
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("needs cmake")
    tomllib = pytest.importorskip("tomllib")
    defines = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["scikit-build"]["cmake"]["define"]
    assert defines["RGPT_REQUIRE_CUDA"] == {"env": "RGPT_REQUIRE_CUDA", "default": "OFF"}
    # no nvcc on PATH, none named: the option must stop the configure, naming the reason
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    keep = tmp_path / "bin"  # the build tools that lived next to nvcc (pip's cmake and ninja may), without it
    keep.mkdir()
    for tool in ("ninja", "make", "cc", "c++", "gcc", "g++"):
        found = shutil.which(tool)
        if found and os.path.exists(os.path.join(os.path.dirname(found), "nvcc")):
            (keep / tool).symlink_to(found)
    path = os.pathsep.join([str(keep)] + [d for d in dirs if not os.path.exists(os.path.join(d, "nvcc"))])
    env = {k: v for k, v in os.environ.items() if k not in ("CUDACXX", "CUDA_HOME", "CUDA_PATH")}
    env["PATH"] = path
    res = subprocess.run(
        [cmake, "-S", str(REPO), "-B", str(tmp_path / "b"), f"-DPython_EXECUTABLE={sys.executable}",
         "-DRGPT_REQUIRE_CUDA=ON"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    err = " ".join(res.stderr.split())  # CMake wraps its messages
    assert res.returncode != 0
    assert "RGPT_REQUIRE_CUDA is ON but the CUDA module cannot be built: no CUDA compiler found" in err, res.stderr
