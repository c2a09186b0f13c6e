"""Model file scanning, side by side: vallum, picklescan, modelscan and promptfoo's modelaudit.

    python benchmarks/model_scan.py [--json results.json] [--skip-speed] [--speed-gib 1.0]

Writes the generated corpus (tests/supplychain_corpus.py: unsafe files for many code-execution routes per
format, safe artefacts saved by NumPy, scikit-learn/joblib, safetensors and PyTorch where installed) to a
temporary folder, then scans every file with each tool installed, each tool in its own process (a crash or
a hang costs that tool, not the run). Prints, per tool: unsafe files caught, safe files flagged (false
alarms), files it could not judge (error, skipped or unsupported format), and scan speed in MB/s on a
large safetensors file (sparse, created in the temp folder) and large pickle-based checkpoints (a PyTorch
zip checkpoint when torch is installed, and a plain pickle of NumPy arrays). Temporary files are deleted.

A tool "flags" a file when its own default verdict says so: vallum's verdict unsafe; picklescan's dangerous
globals (infected); modelscan's issues; modelaudit's critical or warning issues. Run with
PROMPTFOO_DISABLE_TELEMETRY=1 (set here for the modelaudit worker) so modelaudit sends nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("vallum", "picklescan", "modelscan", "modelaudit")
FLAGGED, CLEAN, NOT_JUDGED = "flagged", "clean", "not judged"


# -- workers: one process per tool --------------------------------------------------------------------------


def judge_vallum() -> Any:
    from vallum.supplychain import ModelScanner

    scanner = ModelScanner()

    def judge(path: str) -> tuple[str, str]:
        report = scanner.scan_file(path)
        if report.verdict.value == "unsafe":
            return FLAGGED, report.format
        if report.verdict.value == "safe":
            return CLEAN, report.format
        return NOT_JUDGED, f"{report.verdict.value}: {report.findings[-1].message if report.findings else ''}"

    return judge


def judge_picklescan() -> Any:
    from picklescan.scanner import scan_file_path

    def judge(path: str) -> tuple[str, str]:
        result = scan_file_path(path)
        if result.infected_files or result.issues_count:
            return FLAGGED, f"{result.issues_count} dangerous globals"
        if result.scan_err or not result.scanned_files:
            return NOT_JUDGED, "scan error" if result.scan_err else "not scanned"
        return CLEAN, f"{result.suspicious_count} suspicious"

    return judge


def judge_modelscan() -> Any:
    from modelscan.modelscan import ModelScan

    def judge(path: str) -> tuple[str, str]:
        report = ModelScan().scan(path)
        if report.get("issues"):
            return FLAGGED, report["issues"][0].get("description", "")[:80]
        skipped = report["summary"]["skipped"]["total_skipped"]
        scanned = report["summary"]["scanned"]["total_scanned"]
        if report.get("errors") or not scanned:
            reason = (
                report["errors"][0].get("description", "error")
                if report.get("errors")
                else f"skipped ({skipped})"
            )
            return NOT_JUDGED, str(reason)[:80]
        return CLEAN, ""

    return judge


def judge_modelaudit() -> Any:
    import logging

    logging.disable(logging.CRITICAL)
    from modelaudit.core import scan_model_directory_or_file

    def judge(path: str) -> tuple[str, str]:
        result = scan_model_directory_or_file(path).model_dump()
        serious = [i for i in result.get("issues", []) if i.get("severity") in ("critical", "warning")]
        if serious:
            return FLAGGED, serious[0]["message"][:80]
        if result.get("has_errors") or not result.get("files_scanned"):
            infos = [i["message"] for i in result.get("issues", [])]
            return NOT_JUDGED, (infos[0] if infos else "not scanned")[:80]
        return CLEAN, ""

    return judge


def worker(tool: str, jobs: Path, out: Path) -> None:
    spec = json.loads(jobs.read_text())
    judge = {
        "vallum": judge_vallum,
        "picklescan": judge_picklescan,
        "modelscan": judge_modelscan,
        "modelaudit": judge_modelaudit,
    }[tool]()
    results: dict[str, Any] = {"files": {}, "speed": {}}
    for path in spec["files"]:
        start = time.perf_counter()
        try:
            verdict, note = judge(path)
        except Exception as exc:  # a tool's crash on one file is that file not judged
            verdict, note = NOT_JUDGED, f"crashed: {type(exc).__name__}: {exc}"[:120]
        results["files"][path] = {"verdict": verdict, "note": note, "seconds": time.perf_counter() - start}
        out.write_text(json.dumps(results))
    for label, path in spec["speed"].items():
        best = float("inf")
        verdict, note = NOT_JUDGED, ""
        for _ in range(spec["repeats"]):
            start = time.perf_counter()
            try:
                verdict, note = judge(path)
            except Exception as exc:
                verdict, note = NOT_JUDGED, f"crashed: {type(exc).__name__}"
            best = min(best, time.perf_counter() - start)
        results["speed"][label] = {
            "seconds": best,
            "verdict": verdict,
            "note": note,
            "bytes": os.path.getsize(path),
        }
        out.write_text(json.dumps(results))


# -- the run --------------------------------------------------------------------------------------------


def tool_available(tool: str) -> bool:
    module = {"vallum": "vallum.supplychain", "picklescan": "picklescan.scanner", "modelscan": "modelscan.modelscan",
              "modelaudit": "modelaudit.core"}[tool]  # fmt: skip
    probe = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, env=_env(), check=False
    )
    return probe.returncode == 0


def _env() -> dict[str, str]:
    env = dict(os.environ, PROMPTFOO_DISABLE_TELEMETRY="1", NO_ANALYTICS="1", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    return env


def run_tool(
    tool: str, files: list[str], speed: dict[str, str], scratch: Path, timeout: float, repeats: int
) -> dict[str, Any]:
    jobs = scratch / f"{tool}-jobs.json"
    out = scratch / f"{tool}-results.json"
    jobs.write_text(json.dumps({"files": files, "speed": speed, "repeats": repeats}))
    started = time.perf_counter()
    try:
        subprocess.run(
            [sys.executable, __file__, "--worker", tool, str(jobs), str(out)],
            env=_env(), timeout=timeout, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        status = "ok"
    except subprocess.TimeoutExpired:
        status = f"timed out after {timeout:.0f} s"
    results = json.loads(out.read_text()) if out.exists() else {"files": {}, "speed": {}}
    results["status"] = status
    results["wall"] = time.perf_counter() - started
    return results


def make_speed_files(scratch: Path, gib: float) -> dict[str, str]:
    """A large sparse safetensors file, a PyTorch zip checkpoint, a pickle of NumPy arrays and a
    scikit-learn forest saved by joblib (many small arrays)."""
    import numpy as np

    out: dict[str, str] = {}
    size = int(gib * (1 << 30)) // 4 * 4
    header = json.dumps(
        {
            "__metadata__": {"format": "pt"},
            "embed.weight": {"dtype": "F32", "shape": [size // 4], "data_offsets": [0, size]},
        }
    ).encode()
    header += b" " * (-len(header) % 8)
    big = scratch / "large.safetensors"
    with big.open("wb") as handle:
        handle.write(struct.pack("<Q", len(header)) + header)
        handle.truncate(8 + len(header) + size)  # sparse: the scan reads the header only
    out[f"safetensors {size / 1e9:.2f} GB (sparse)"] = str(big)
    rng = np.random.default_rng(0)
    layers = {f"layer{i}.weight": rng.standard_normal((1024, 1024), dtype=np.float32) for i in range(75)}
    try:
        import torch

        checkpoint = scratch / "large_checkpoint.pt"
        torch.save({name: torch.from_numpy(array) for name, array in layers.items()}, checkpoint)
        out[f"PyTorch zip checkpoint {checkpoint.stat().st_size / 1e6:.0f} MB"] = str(checkpoint)
    except ImportError:
        pass
    pickled = scratch / "large_arrays.pkl"
    with pickled.open("wb") as handle:
        pickle.dump(layers, handle, protocol=4)
    out[f"pickle of NumPy arrays {pickled.stat().st_size / 1e6:.0f} MB"] = str(pickled)
    try:
        import joblib
        from sklearn.ensemble import RandomForestClassifier

        x = rng.random((20_000, 10))
        y = (x[:, 0] + rng.random(20_000) > 1).astype(int)
        forest = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=2).fit(x, y)
        dumped = scratch / "large_forest.joblib"
        joblib.dump(forest, dumped)
        out[f"scikit-learn forest, joblib {dumped.stat().st_size / 1e6:.0f} MB"] = str(dumped)
    except ImportError:
        pass
    return out


def report(samples: list[tuple[str, Any]], results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for tool, result in results.items():
        files = result["files"]
        caught = sum(1 for path, s in samples if s.unsafe and files.get(path, {}).get("verdict") == FLAGGED)
        alarms = sum(
            1 for path, s in samples if not s.unsafe and files.get(path, {}).get("verdict") == FLAGGED
        )
        not_judged = sum(
            1 for path, s in samples if files.get(path, {}).get("verdict", NOT_JUDGED) == NOT_JUDGED
        )
        by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
        for path, s in samples:
            verdict = files.get(path, {}).get("verdict", NOT_JUDGED)
            row = by_kind[s.kind]
            if s.unsafe:
                row[0] += 1
                row[1] += verdict == FLAGGED
            else:
                row[2] += 1
                row[3] += verdict == FLAGGED
            row[4] += verdict == NOT_JUDGED
        summary[tool] = {
            "caught": caught,
            "false_alarms": alarms,
            "not_judged": not_judged,
            "by_kind": dict(by_kind),
            "status": result["status"],
            "corpus_seconds": sum(f["seconds"] for f in files.values()),
            "speed": result["speed"],
            "missed": sorted(Path(p).relative_to(Path(p).parents[len(Path(s.name).parts) - 1]).as_posix() for p, s in samples
                             if s.unsafe and files.get(p, {}).get("verdict") != FLAGGED),
            "false_alarm_files": sorted(s.name for p, s in samples if not s.unsafe and files.get(p, {}).get("verdict") == FLAGGED),
        }  # fmt: skip
    return summary


def print_tables(samples: list[tuple[str, Any]], summary: dict[str, Any]) -> None:
    unsafe = sum(1 for _, s in samples if s.unsafe)
    safe = len(samples) - unsafe
    tools = list(summary)
    print(f"\ncorpus: {len(samples)} files, {unsafe} unsafe, {safe} safe\n")
    print("| tool | unsafe caught | false alarms | not judged | corpus time |")
    print("|---|---|---|---|---|")
    for tool in tools:
        row = summary[tool]
        status = "" if row["status"] == "ok" else f" ({row['status']})"
        print(
            f"| {tool}{status} | {row['caught']}/{unsafe} | {row['false_alarms']}/{safe} | {row['not_judged']} | {row['corpus_seconds']:.1f} s |"
        )
    kinds = sorted({s.kind for _, s in samples})
    print("\nper format: unsafe caught / false alarms / not judged\n")
    print("| format | files (unsafe/safe) | " + " | ".join(tools) + " |")
    print("|---|---|" + "---|" * len(tools))
    for kind in kinds:
        first = summary[tools[0]]["by_kind"].get(kind, [0, 0, 0, 0, 0])
        cells = []
        for tool in tools:
            u, c, _, f, n = summary[tool]["by_kind"].get(kind, [0, 0, 0, 0, 0])
            cells.append(f"{c}/{u} · {f} · {n}")
        print(f"| {kind} | {first[0]}/{first[2]} | " + " | ".join(cells) + " |")
    labels = sorted({label for row in summary.values() for label in row["speed"]})
    if labels:
        print("\nscan speed (MB/s, best of runs; n/a: the tool did not judge the file)\n")
        print("| file | " + " | ".join(tools) + " |")
        print("|---|" + "---|" * len(tools))
        for label in labels:
            cells = []
            for tool in tools:
                speed = summary[tool]["speed"].get(label)
                if speed is None:
                    cells.append("timed out")
                elif speed["verdict"] == NOT_JUDGED:
                    cells.append(f"n/a ({speed['note'][:40]})")
                else:
                    cells.append(f"{speed['bytes'] / 1e6 / max(speed['seconds'], 1e-9):,.0f}")
            print(f"| {label} | " + " | ".join(cells) + " |")
    for tool in tools:
        row = summary[tool]
        if row["missed"] or row["false_alarm_files"]:
            print(f"\n{tool}: missed {row['missed']}\n{tool}: false alarms {row['false_alarm_files']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", nargs=3, metavar=("TOOL", "JOBS", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--skip-speed", action="store_true", help="skip the large-file speed runs")
    parser.add_argument("--speed-gib", type=float, default=1.0, help="size of the sparse safetensors file")
    parser.add_argument("--repeats", type=int, default=3, help="speed runs per file (best is kept)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds each tool may take in all")
    parser.add_argument(
        "--tools", default=",".join(TOOLS), help="comma-separated subset of " + ", ".join(TOOLS)
    )
    args = parser.parse_args()
    if args.worker:
        tool, jobs, out = args.worker
        worker(tool, Path(jobs), Path(out))
        return
    sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
    from tests.supplychain_corpus import write_corpus

    scratch = Path(tempfile.mkdtemp(prefix="vallum-model-scan-bench-"))
    try:
        samples = [(str(path), sample) for path, sample in write_corpus(scratch / "corpus")]
        speed = {} if args.skip_speed else make_speed_files(scratch, args.speed_gib)
        results: dict[str, dict[str, Any]] = {}
        for tool in args.tools.split(","):
            if not tool_available(tool):
                print(f"{tool}: not installed or does not import; left out", file=sys.stderr)
                continue
            print(f"scanning with {tool} ...", file=sys.stderr)
            results[tool] = run_tool(
                tool, [p for p, _ in samples], speed, scratch, args.timeout, args.repeats
            )
        summary = report(samples, results)
        print_tables(samples, summary)
        if args.json:
            args.json.write_text(json.dumps(summary, indent=2))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
