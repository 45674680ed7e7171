"""Pack a GPU script's work folder into $OUT, which the device machine returns (at most 8 files):

    results.json   every step's outcome and every number, one key per step (the step's JSON files merged,
                   the pytest junit report reduced to counts, failures and skip reasons)
    logs.tar.gz    every file of the work folder (logs, raw JSON, junit XML)
    summary.txt    the short table, also printed last by the scripts

    python tests/gpu/summarize.py WORK OUT [--print]

The scripts run it after every step, so a command stopped by its time limit still returns what it did.
Standard library only: it must run when the build or the torch import has failed.
"""

from __future__ import annotations

import json
import os
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

OUT_FILES = ("results.json", "logs.tar.gz", "summary.txt")


def read_steps(work: Path) -> list[dict]:
    """steps.tsv, one line per step: name, planned limit, limit it ran under, exit status, seconds, note."""
    steps = []
    path = work / "steps.tsv"
    if not path.exists():
        return steps
    for line in path.read_text().splitlines():
        name, limit, ran_limit, rc, secs, note = (line.split("\t") + [""] * 6)[:6]
        rc_i = int(rc) if rc.lstrip("-").isdigit() else None
        if note:
            status = note
        elif rc_i == 0:
            status = "ok"
        elif rc_i in (124, 137):
            status = f"TIMED OUT at {ran_limit} s"
        else:
            status = f"FAILED rc={rc}"
        steps.append(
            {
                "name": name,
                "limit_s": int(limit),
                "ran_limit_s": int(ran_limit) if ran_limit.isdigit() else None,
                "rc": rc_i,
                "seconds": int(secs) if secs.isdigit() else None,
                "status": status,
            }
        )
    return steps


def read_junit(path: Path) -> dict:
    """pytest's junit XML reduced to counts, the failing node ids with the first line of their message, and
    the skip reasons (on a GPU machine every selected test should run: a skip there is news)."""
    root = ET.parse(path).getroot()
    out = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "failures": [], "skips": []}
    for case in root.iter("testcase"):
        node = case.get("classname", "").replace(".", "/") + ".py::" + case.get("name", "")
        bad = next((c for c in case if c.tag in ("failure", "error")), None)
        skip = case.find("skipped")
        if bad is not None:
            out["errors" if bad.tag == "error" else "failed"] += 1
            first = (bad.get("message") or bad.text or "").strip().splitlines()
            out["failures"].append(f"{node}: {first[0][:200] if first else ''}")
        elif skip is not None:
            out["skipped"] += 1
            out["skips"].append(f"{node}: {(skip.get('message') or '')[:200]}")
        else:
            out["passed"] += 1
    return out


def collect(work: Path) -> dict:
    results: dict = {"steps": read_steps(work)}
    meta = work / "meta.json"
    if meta.exists():
        results.update(json.loads(meta.read_text()))
    for path in sorted(work.glob("*.json")):
        if path.name == "meta.json":
            continue
        try:
            results[path.stem] = json.loads(path.read_text())
        except ValueError as exc:  # a step killed while writing: say so, keep the rest
            results[path.stem] = {"error": f"unreadable JSON: {exc}"}
    stopped = work / "stopped.log"
    if stopped.exists():  # the build or check step stopped the run
        results["stopped"] = stopped.read_text().strip()
    memcheck = work / "memcheck.log"
    if memcheck.exists():  # compute-sanitizer's last word: "ERROR SUMMARY: N errors"
        summary = [ln for ln in memcheck.read_text(errors="replace").splitlines() if "ERROR SUMMARY" in ln]
        results["memcheck"] = {"error_summary": summary[-1].strip("= ") if summary else None}
    for path in sorted(work.glob("*.xml")):
        try:
            results[path.stem] = read_junit(path)
        except ET.ParseError as exc:
            results[path.stem] = {"error": f"unreadable junit XML: {exc}"}
    return results


def _num(d: dict, key: str, fmt: str = "{:.2f}") -> str:
    v = d.get(key)
    if v is None:
        return "-"
    return fmt.format(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def table(results: dict) -> str:
    """The short table: one line per step, then the numbers that matter most, then what failed."""
    lines = [f"{'step':<12} {'status':<24} {'s':>4} / limit"]
    for s in results["steps"]:
        lines.append(
            f"{s['name']:<12} {s['status']:<24} {s['seconds'] if s['seconds'] is not None else '-':>4} / "
            f"{s['ran_limit_s'] if s['ran_limit_s'] is not None else s['limit_s']}"
        )
    check = results.get("check", {})
    info = check.get("build_info")
    if info:
        lines.append(
            f"build: cuda={info.get('cuda')} archs={info.get('cuda_archs')} nvcc={info.get('cuda_compiler')} "
            f"devices={info.get('cuda_devices', '-')} gpu={check.get('gpu', '-')} torch={check.get('torch', '-')}"
        )
    for name in ("tests", "compile_tests", "memcheck_tests"):
        t = results.get(name)
        if t and "passed" in t:
            lines.append(
                f"{name}: {t['passed']} passed, {t['failed']} failed, {t['errors']} errors, {t['skipped']} skipped"
            )
            lines += [f"  FAIL {f}" for f in t["failures"][:10]]
            lines += [f"  skip {f}" for f in t["skips"][:10]]
    for name in ("fp16", "int8", "compile"):
        d = results.get(name)
        if not d:
            continue
        lines.append(
            f"{name}: decode {_num(d, 'decode_ms_per_token')} ms/tok = {_num(d, 'decode_vs_floor')}x floor "
            f"({_num(d, 'floor_ms_per_token')} ms, copy {_num(d, 'copy_GBps', '{:.0f}')} GB/s); ttft "
            f"{_num(d, 'ttft_ms', '{:.1f}')} ms; regions/s@8 {_num(d, 'regions_per_s_8', '{:.1f}')}; peak "
            f"{_num(d, 'peak_gpu_mem_gb', '{:.1f}')} GB"
        )
        modes = [k[len("step_ms_") :] for k in d if k.startswith("step_ms_")]
        if modes:
            lines.append(
                "  step ms: "
                + ", ".join(f"{m} {_num(d, 'step_ms_' + m)} ({_num(d, 'step_vs_floor_' + m)}x)" for m in modes)
            )
    hf = results.get("hf")
    if hf:
        lines.append(
            f"hf (transformers {hf.get('hf_transformers_version', '?')}, no compile; dynamo graphs "
            f"{hf.get('hf_dynamo_graphs', '-')}): eager {_num(hf, 'hf_eager_ms_per_token')} ms/tok ttft "
            f"{_num(hf, 'hf_eager_ttft_ms', '{:.1f}')}; static {_num(hf, 'hf_static_ms_per_token')} ms/tok "
            f"ttft {_num(hf, 'hf_static_ttft_ms', '{:.1f}')}"
        )
    soak = results.get("soak")
    if soak and "soak_calls" in soak:
        lines.append(
            f"soak: {soak['soak_calls']} calls in {_num(soak, 'soak_s', '{:.0f}')} s, rss "
            f"{_num(soak, 'soak_rss_growth_mb', '{:+.1f}')} MB, gpu {_num(soak, 'soak_gpu_growth_mb', '{:+.1f}')} MB"
        )
    for name, d in results.items():  # the op benches: one line per row
        if isinstance(d, dict) and isinstance(d.get("rows"), list):
            lines.append(f"{name}:")
            for r in d["rows"]:
                lines.append("  " + " ".join(f"{k}={_num(r, k, '{:.4g}')}" for k in r))
    if results.get("memcheck", {}).get("error_summary"):
        lines.append(f"memcheck: {results['memcheck']['error_summary']}")
    errors = [
        f"{step}.{k}: {v}"
        for step, d in results.items()
        if isinstance(d, dict)
        for k, v in d.items()
        if k.endswith("error")
    ]
    lines += [f"  ERROR {e}"[:300] for e in errors]
    if results.get("stopped"):
        lines.append(f"STOPPED: {results['stopped']}")
    return "\n".join(lines) + "\n"


def pack(work: Path, out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    results = collect(work)
    text = table(results)
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(tmp, out / "results.json")
    (out / "summary.txt").write_text(text)
    with tarfile.open(out / "logs.tar.gz.tmp", "w:gz") as tar:
        tar.add(work, arcname="logs")
    os.replace(out / "logs.tar.gz.tmp", out / "logs.tar.gz")
    return text


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    text = pack(Path(argv[0]), Path(argv[1]))
    if "--print" in argv[2:]:
        print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
