"""Targeted mutation check: apply one realistic code change at a time and see whether the tests notice.

Each mutant (``tests/mutation/mutants.py``) is a literal (file, old text, new text) replacement plus the fast test
selection that should catch it. The repository is copied once into a temporary directory; each mutant is applied
there, its tests run with a per-mutant timeout, and the file is restored. A mutant whose anchor text is not found
exactly once (the code moved on) is reported as ``anchor-missing``, not run, and never crashes the check; ``--list``
then exits 1, and ``tests/test_mutation_list.py`` fails, so no mutant is retired silently.

The copy must be what the tests import: the editable install maps ``declip`` to the original checkout, so each
copy gets a ``declip`` link of its own put first on ``PYTHONPATH`` (subprocess CLI tests inherit it), and the
check refuses to start unless ``declip`` really resolves into the copy.

The tiny test fixtures (dataset, manifest, store) are built once by the unmutated baseline run and reused by
mutants that cannot change them (``DECLIP_TEST_CACHE``); mutants of extraction, taps, preprocessing, masks or the
store's write path get fresh fixtures built with the mutated code.

    python tests/mutation/run.py                 # everything (~15–25 min on 2 cores)
    python tests/mutation/run.py --only T1,T2    # some mutants
    python tests/mutation/run.py --list          # the mutants and their anchors; exit 1 if any is not found once
    python tests/mutation/run.py --jobs 2        # two mutants at a time (one tree copy per job)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from queue import Queue

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mutants import MUTANTS, Mutant, anchor_count, anchor_state  # noqa: E402

IGNORE = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.pyc", ".prefect", "demo-out", ".pytest_cache",
                                "*.egg-info")


def shim_dir(root: Path) -> Path:
    """The folder put first on PYTHONPATH for the copy at ``root``: it holds only ``declip`` -> ``root``."""
    return root.parent / f"{root.name}-path"


def copy_tree(root: Path) -> None:
    """Copy the repository to ``root`` and make ``import declip`` resolve there (not to the editable install)."""
    shutil.copytree(REPO, root, ignore=IGNORE)
    shim = shim_dir(root)
    shim.mkdir()
    (shim / "declip").symlink_to(root, target_is_directory=True)


def mutant_env(root: Path, cache: Path | None) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), TQDM_DISABLE="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(shim_dir(root)), os.environ.get("PYTHONPATH", "")) if p)
    env.pop("DECLIP_TEST_CACHE", None)
    if cache is not None:
        env["DECLIP_TEST_CACHE"] = str(cache)
    return env


def check_imports_the_copy(root: Path) -> str:
    """'' when ``declip`` imports from ``root`` under the test environment; else what it imports instead."""
    code = "import declip.pipeline.train.training as m; print(m.__file__)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, env=mutant_env(root, None), capture_output=True,
                          text=True)
    got = Path(proc.stdout.strip()).resolve() if proc.returncode == 0 else None
    if got is not None and got.is_relative_to(root.resolve()):
        return ""
    return str(got) if got is not None else (proc.stderr.strip().splitlines() or ["an import error"])[-1]


def run_tests(root: Path, tests: list[str], timeout: int, cache: Path | None) -> tuple[str, float, str]:
    env = mutant_env(root, cache)
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "not flow", *tests]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - t0, ""
    seconds = time.perf_counter() - t0
    tail = (proc.stdout + proc.stderr).strip().splitlines()
    summary = next((line for line in reversed(tail) if "passed" in line or "failed" in line or "error" in line), "")
    if proc.returncode == 0:
        return "passed", seconds, summary
    if proc.returncode == 1:
        return "failed", seconds, summary
    if proc.returncode == 5:  # the selection ran nothing (all deselected by "not flow", or gone): not a kill
        return "no-tests", seconds, summary
    return f"error(rc={proc.returncode})", seconds, summary


def run_mutant(root: Path, m: Mutant, timeout: int, cache: Path) -> dict:
    """Apply one mutant in ``root``, run its tests, restore the file; the result record."""
    base = {"id": m.id, "area": m.area, "what": m.what, "equivalent": m.equivalent}
    state = anchor_state(root, m)
    if state != "ok":
        return dict(base, status=state)
    path = root / m.file
    original = path.read_text()
    path.write_text(original.replace(m.old, m.new))
    try:
        status, seconds, summary = run_tests(root, list(m.tests), timeout, None if m.fresh else cache)
    finally:
        path.write_text(original)
    if status == "timeout":  # slow is not caught: counted as not killed, and listed
        verdict = "TIMEOUT"
    elif status == "no-tests":
        verdict = "NO-TESTS"
    else:
        verdict = "killed" if status != "passed" else ("equivalent" if m.equivalent else "SURVIVED")
    return dict(base, status=status, verdict=verdict, seconds=round(seconds, 1), summary=summary)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="comma-separated mutant ids")
    ap.add_argument("--area", help="comma-separated areas (metrics, masks, schedule, training, ...)")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per mutant")
    ap.add_argument("--list", action="store_true", help="list mutants and anchor status, run nothing")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--skip-baseline", action="store_true", help="only build the shared fixtures, do not run "
                    "every selected test unmutated first")
    ap.add_argument("--jobs", type=int, default=1, help="mutants run at the same time")
    ap.add_argument("--tests", help="comma-separated test selection replacing each chosen mutant's own")
    args = ap.parse_args(argv)

    chosen = MUTANTS
    if args.only:
        ids = set(args.only.split(","))
        chosen = [m for m in MUTANTS if m.id in ids]
    if args.area:
        areas = set(args.area.split(","))
        chosen = [m for m in chosen if m.area in areas]
    if args.tests:
        from dataclasses import replace

        chosen = [replace(m, tests=tuple(args.tests.split(","))) for m in chosen]
    if args.list:
        states = {m.id: anchor_state(REPO, m) for m in chosen}
        for m in chosen:
            print(f"{m.id:5} {m.area:13} {states[m.id]:18} {m.file}: {m.what}")
        bad = [i for i, state in states.items() if state != "ok"]
        if bad:
            print(f"{len(bad)} mutant(s) whose anchor is not found exactly once: {', '.join(bad)}; re-point them at "
                  "the code that now does that job (tests/mutation/mutants.py)", file=sys.stderr)
        return 1 if bad else 0

    work = Path(tempfile.mkdtemp(prefix="declip-mutation-"))
    cache = work / "cache"
    cache.mkdir()
    roots: Queue = Queue()
    for j in range(max(1, args.jobs)):
        copy_tree(work / f"repo{j}")
        roots.put(work / f"repo{j}")
    wrong = check_imports_the_copy(work / "repo0")
    if wrong:
        shutil.rmtree(work, ignore_errors=True)
        print(f"the tests would import declip from {wrong}, not from the mutated copy: refusing to run",
              file=sys.stderr)
        return 2
    results: list[dict] = []
    try:
        root = work / "repo0"
        if args.skip_baseline:  # still build the shared fixtures once, with unmutated code
            tests = ["tests/pipeline/extract/test_extraction.py::test_masks_cached_with_declip_polarity"]
        else:
            tests = sorted({t for m in chosen for t in m.tests})
        status, seconds, summary = run_tests(root, tests, args.timeout * 4, cache)
        print(f"baseline (unmutated): {status} in {seconds:.0f}s  {summary}", flush=True)
        if status != "passed":
            print("the unmutated tests must pass first", file=sys.stderr)
            return 2

        def one(m: Mutant) -> dict:
            root = roots.get()
            try:
                return run_mutant(root, m, args.timeout, cache)
            finally:
                roots.put(root)

        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for r in pool.map(one, chosen):
                results.append(r)
                print(f"{r['id']:5} {r.get('verdict', ''):10} {r['status']:12} {r.get('seconds', 0):5.0f}s  "
                      f"{r['what']}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ran = [r for r in results if "verdict" in r]
    non_equivalent = [r for r in ran if not r["equivalent"]]
    killed = [r for r in non_equivalent if r["verdict"] == "killed"]
    missing = [r for r in results if "verdict" not in r]
    print()
    print(f"mutants: {len(results)}; run {len(ran)}; anchors not found {len(missing)}; "
          f"argued equivalent {len(ran) - len(non_equivalent)}")
    if non_equivalent:
        print(f"kill ratio (non-equivalent): {len(killed)}/{len(non_equivalent)} = "
              f"{100 * len(killed) / len(non_equivalent):.1f}%")
    print(area_table(non_equivalent))
    for r in ran:
        if r["verdict"] != "killed":
            print(f"  not killed: {r['id']} {r['what']}" + (f" — equivalent: {r['equivalent']}" if r["equivalent"] else ""))
    for r in missing:
        print(f"  anchor not found: {r['id']} {r['what']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if len(killed) == len(non_equivalent) else 1


def area_table(non_equivalent: list[dict]) -> str:
    """Killed / non-equivalent per area, lowest ratio first (the issue's bar: >= 90 % in every area)."""
    areas: dict[str, list[int]] = {}
    for r in non_equivalent:
        counts = areas.setdefault(r["area"], [0, 0])
        counts[0] += r["verdict"] == "killed"
        counts[1] += 1
    rows = sorted(areas.items(), key=lambda kv: (kv[1][0] / kv[1][1], kv[0]))
    lines = ["area            killed  ratio"] + [f"{a:15} {k:3}/{n:<3} {100 * k / n:5.1f}%" for a, (k, n) in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
