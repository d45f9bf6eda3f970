"""Build section of the scale benchmark (issue 14): synth, build and featurize at a scale, each in its own process.

    python bench/scale_build.py --scale 10 --work /data/scale10 --out bench/results_scale_build_10.json

Steps, each a child process (`graphstore synth`, `graphstore build --no-features`, `graphstore featurize`),
measured alone: wall seconds; peak RSS of the largest process (ru_maxrss from wait4, which covers the
step's own children: the build's ingest runs one process per CPU); and the peak of the whole process
tree summed, sampled every 0.2 s with psutil. Then the store's counts from its metadata (nodes, logical
edges per relation, implicit bucket edges included, against what the generator's growth rule implies),
its bytes per part (topology, columns, tables) and the feature bytes per node type.

The features use the paper's 512-d time encoding by default (`--time-encoding paper`): about 26 GB at
scale 10, more than the 24 GB of RAM of the machine the issue targets; the project's default
(`multiscale`, 64-d) gives about 11 GB.

Resumable: the state of every finished step is kept in WORK/build_section.json; run the same command
again and finished steps are reused (`"reused": true`), an interrupted featurize continues where it
stopped (its attempts are listed and their seconds summed). `--fresh` starts over.

`bench/scale.py` (the loader section) imports `build_section` and `add_build_arguments` from here.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from graphstore.atomic import write_json  # noqa: E402
from graphstore.errors import UserError  # noqa: E402

STATE_FILE = "build_section.json"
BUILD_SECONDS_TARGET, PEAK_RSS_TARGET_GB = 300.0, 4.0  # issue 14: build at scale 10 in < 5 min, < 4 GB
# disk needed per unit of scale (measured at scale 1-2): input JSON 0.70 GB, build staging and spill ~1.0 GB
# (freed at the end), store tables and topology 0.06 GB, features 1.13 GB (multiscale) / 2.63 GB (paper)
DISK_GB_PER_SCALE = {"multiscale": 0.7 + 1.0 + 0.06 + 1.13, "paper": 0.7 + 1.0 + 0.06 + 2.63}
SAMPLE_SECONDS = 0.2


def run_measured(cmd: list[str], log_path: Path, *, echo: bool = False) -> dict[str, Any]:
    """Run `cmd` with its output in `log_path`; wall seconds, exit status, peak RSS (largest process, tree sum)."""
    import psutil

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    peak_tree = [0]
    with open(log_path, "ab") as log:
        log.write(f"\n$ {' '.join(cmd)}\n".encode())
        log.flush()
        started = time.time()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.PIPE if echo else log, env=env, cwd=ROOT)
        done = threading.Event()

        def sample() -> None:
            root = psutil.Process(proc.pid)
            while not done.is_set():
                try:
                    procs = [root, *root.children(recursive=True)]
                    total = 0
                    for p in procs:
                        try:
                            total += p.memory_info().rss
                        except psutil.Error:
                            pass
                    peak_tree[0] = max(peak_tree[0], total)
                except psutil.Error:
                    pass
                done.wait(SAMPLE_SECONDS)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        if echo:  # progress bars to the console and the log
            for line in iter(lambda: proc.stderr.read1(65536), b""):
                sys.stderr.buffer.write(line)
                sys.stderr.flush()
                log.write(line)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.time() - started
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    return {"seconds": round(seconds, 1), "returncode": proc.returncode,
            "peak_rss_gb": round(usage.ru_maxrss * 1024 / 1e9, 3), "peak_rss_tree_gb": round(peak_tree[0] / 1e9, 3)}


def dir_bytes(path: Path) -> int:
    """Apparent bytes of the files under `path` (0 when it does not exist)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def store_report(store: Path, scale: float) -> dict[str, Any]:
    """Nodes, logical edges (metadata) against the growth rule's expectation, bytes per part."""
    from graphstore.store import GraphStore
    from graphstore.synth import expected_counts, topics_at

    with GraphStore.open(store) as s:
        meta = s.meta
        data = s.path
    edges = {r["name"]: int(r["num_edges"]) for r in meta["relations"]}
    expected = expected_counts(scale)
    parts = {name: dir_bytes(data / name) for name in ("topology", "columns", "splits", "samples.parquet",
                                                       "comments.parquet")}
    return {
        "store": str(store), "nodes": int(sum(meta["node_types"].values())), "node_types": meta["node_types"],
        "logical_edges": int(sum(edges.values())), "edges": edges,
        "expected": {"topics": topics_at(scale), "has_same_topic_as": round(expected["same_topic"]),
                     "has_same_author_as": round(expected["same_author"]), "is_history_of": round(expected["history"]),
                     "video": round(expected["samples"]), "comment": round(expected["comments"])},
        "topology_bytes": parts["topology"], "bytes": parts, "splits": meta.get("splits", {}),
        "build_seconds_in_metadata": meta.get("build", {}).get("seconds"),
    }


def feature_report(store: Path) -> dict[str, Any]:
    """Feature bytes on disk, in all and per node type, and the widths."""
    from graphstore.store import GraphStore

    with GraphStore.open(store) as s:
        feats, data = s.meta.get("features", {}), s.path
    by_type = {t: dir_bytes(data / "features" / t) for t in feats}
    return {"feature_bytes": int(sum(by_type.values())), "feature_bytes_by_type": by_type,
            "dims": {t: f["dim"] for t, f in feats.items()}, "complete": bool(feats)}


def _machine() -> dict[str, Any]:
    import psutil

    return {"cpus": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)), "platform": platform.platform(),
            "processor": platform.processor(), "python": platform.python_version(),
            "memory_gb": round(psutil.virtual_memory().total / 1e9, 1), "load_average_at_start": os.getloadavg()}


def _check_disk(work: Path, scale: float, time_encoding: str, need_input: bool) -> dict[str, float]:
    need = DISK_GB_PER_SCALE[time_encoding] * scale - (0 if need_input else 0.7 * scale)
    free = shutil.disk_usage(work).free / 1e9
    if free < need * 1.1:
        raise UserError(f"{work}: {free:.0f} GB free, scale {scale} needs about {need:.0f} GB "
                        f"({time_encoding} time features); pass --skip-disk-check to try anyway")
    return {"free_gb": round(free, 1), "estimated_need_gb": round(need, 1)}


def build_section(work_dir: str | Path | argparse.Namespace, scale: float | None = None, seed: int = 0, *,
                  time_encoding: str = "paper", text_encoder: str = "hash", memory_limit: str | None = None,
                  ingest_workers: int | None = None, duckdb_threads: int | None = None, fresh: bool = False,
                  delete_input: bool = False, skip_disk_check: bool = False, echo: bool = True,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """Synth, build and featurize at `scale` in `work_dir` (each in its own process); their measurements.

    `work_dir` may also be bench/scale.py's parsed arguments (workdir, scale, seed and the options of
    `add_build_arguments`). The result's "store" is the store's path; the state is kept (and reused
    unless `fresh`) in work_dir/build_section.json.
    """
    if isinstance(work_dir, argparse.Namespace):
        a = work_dir
        return build_section(a.workdir, a.scale, a.seed, time_encoding=a.time_encoding, text_encoder=a.text_encoder,
                             memory_limit=a.duckdb_memory_limit, ingest_workers=a.ingest_workers,
                             duckdb_threads=a.duckdb_threads, fresh=a.fresh, delete_input=a.delete_input,
                             skip_disk_check=a.skip_disk_check, echo=not getattr(a, "quiet", False), log=log)
    if scale is None or not 0 < scale <= 10:
        raise UserError(f"--scale must be in (0, 10], got {scale}")
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    src, store, log_path, state_path = work / "xsvideo.json", work / "store", work / "build_section.log", work / STATE_FILE
    settings = {"scale": scale, "seed": seed, "time_encoding": time_encoding, "text_encoder": text_encoder,
                "memory_limit": memory_limit, "ingest_workers": ingest_workers, "duckdb_threads": duckdb_threads}
    state: dict[str, Any] = {}
    if state_path.is_file() and not fresh:
        state = json.loads(state_path.read_text())
        if state.get("settings", {}) != settings:
            raise UserError(f"{state_path} holds a run with other settings ({state.get('settings')}); pass --fresh")
    if fresh or not state:
        for path in (src, store):
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        state = {"section": "build", "settings": settings, "machine": _machine(),
                 "started": time.strftime("%Y-%m-%d %H:%M:%S"), "log": str(log_path)}
    if not skip_disk_check and "featurize" not in state:
        state["disk"] = _check_disk(work, scale, time_encoding, need_input="synth" not in state)

    def save() -> None:
        write_json(state_path, state)

    py, cli = sys.executable, ["-m", "graphstore.cli"]

    def step(name: str, cmd: list[str], done: Callable[[], bool]) -> dict[str, Any]:
        if name in state and state[name].get("returncode") == 0 and done():
            log(f"{name}: reused ({state[name]['seconds']} s)")
            return {**state[name], "reused": True}
        log(f"{name}: {' '.join(cmd)}")
        result = run_measured(cmd, log_path, echo=echo)
        log(f"{name}: {result['seconds']} s, peak RSS {result['peak_rss_gb']} GB (process tree {result['peak_rss_tree_gb']} GB)")
        if result["returncode"]:
            state.setdefault("failed", []).append({name: result})
            save()
            raise RuntimeError(f"{name} failed (exit status {result['returncode']}); see {log_path}")
        return result

    synth_cmd = [py, *cli, "synth", "--scale", str(scale), "--seed", str(seed), "--out", str(src), "--json"]
    state["synth"] = step("synth", synth_cmd, lambda: src.is_file() or "build" in state)
    if "summary" not in state["synth"]:
        lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.startswith('{"path"')]
        state["synth"]["summary"] = json.loads(lines[-1])
        state["synth"]["input_bytes"] = src.stat().st_size
    save()

    build_cmd = [py, *cli, "build", "--input", str(src), "--out", str(store), "--overwrite", "--no-features"]
    build_cmd += ["--memory-limit", memory_limit] if memory_limit else []
    build_cmd += ["--ingest-workers", str(ingest_workers)] if ingest_workers else []
    build_cmd += ["--threads", str(duckdb_threads)] if duckdb_threads else []
    state["build"] = step("build", build_cmd, lambda: (store / "zarr.json").is_file())
    state["store"] = store_report(store, scale)
    save()
    if delete_input and src.is_file():
        src.unlink()
        state["input_deleted"] = True

    feat_cmd = [py, *cli, "featurize", str(store), "--text-encoder", text_encoder, "--time-encoding", time_encoding]
    previous = state.get("featurize", {})
    if previous.get("returncode") == 0 and feature_report(store)["complete"]:
        log(f"featurize: reused ({previous['seconds']} s)")
        state["featurize"] = {**previous, "reused": True}
    else:
        attempts = [a for a in previous.get("attempts", [])]
        log(f"featurize: {' '.join(feat_cmd)}" + (f" (resuming after {len(attempts)} attempt(s))" if attempts else ""))
        result = run_measured(feat_cmd, log_path, echo=echo)
        attempts.append(result)
        state["featurize"] = {**result, "attempts": attempts,
                              "seconds_all_attempts": round(sum(a["seconds"] for a in attempts), 1),
                              "peak_rss_gb": max(a["peak_rss_gb"] for a in attempts),
                              "peak_rss_tree_gb": max(a["peak_rss_tree_gb"] for a in attempts)}
        log(f"featurize: {result['seconds']} s, peak RSS {result['peak_rss_gb']} GB")
        save()
        if result["returncode"]:
            raise RuntimeError(f"featurize failed (exit status {result['returncode']}); run again to resume; see {log_path}")
    state["featurize"].update(feature_report(store))
    build = state["build"]
    state["targets"] = {
        "build_seconds": build["seconds"], "build_seconds_target": BUILD_SECONDS_TARGET,
        "build_within_time": build["seconds"] < BUILD_SECONDS_TARGET,
        "build_peak_rss_gb": max(build["peak_rss_gb"], build["peak_rss_tree_gb"]),
        "build_within_memory": max(build["peak_rss_gb"], build["peak_rss_tree_gb"]) < PEAK_RSS_TARGET_GB,
    }
    state["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    save()
    return state


def add_build_arguments(group: argparse._ActionsContainer) -> None:
    """The build section's own options (bench/scale.py adds them to its parser)."""
    group.add_argument("--time-encoding", choices=("paper", "multiscale"), default="paper",
                       help="time features: paper (512-d; ~26 GB of features at scale 10) or multiscale (64-d; ~11 GB)")
    group.add_argument("--text-encoder", default="hash", help="featurize's text encoder")
    group.add_argument("--duckdb-memory-limit", default=None, help="build's DuckDB memory limit (default: the build's, 2GB)")
    group.add_argument("--ingest-workers", type=int, default=None, help="build's ingest processes (default: the CPUs)")
    group.add_argument("--duckdb-threads", type=int, default=None, help="build's DuckDB threads (default: all cores)")
    group.add_argument("--fresh", action="store_true", help="start over instead of reusing finished steps")
    group.add_argument("--delete-input", action="store_true", help="delete the synthetic JSON once the store is built")
    group.add_argument("--skip-disk-check", action="store_true", help="do not check the free disk space first")
    group.add_argument("--quiet", action="store_true", help="progress to the log file only, not the console")


def main(argv: list[str] | None = None) -> int:
    """Run the build section alone and write its JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, required=True, help="synthetic scale (1.0 = XS-Video's size)")
    ap.add_argument("--work", required=True, help="directory for the input file, the store and the state")
    ap.add_argument("--out", default=None, help="JSON result (default: WORK/build_section.json only)")
    ap.add_argument("--seed", type=int, default=0, help="generator seed")
    add_build_arguments(ap)
    args = ap.parse_args(argv)
    args.workdir = args.work
    try:
        result = build_section(args)
    except UserError as exc:
        print(f"scale_build: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # a step failed: its state is saved, the same command resumes
        print(f"scale_build: {exc}", file=sys.stderr)
        return 1
    if args.out:
        write_json(args.out, result)
        print(f"wrote {args.out}")
    t = result["targets"]
    print(f"build {t['build_seconds']} s (target < {BUILD_SECONDS_TARGET:.0f} s), peak RSS {t['build_peak_rss_gb']} GB "
          f"(target < {PEAK_RSS_TARGET_GB:.0f} GB); logical edges {result['store']['logical_edges']:,}; "
          f"features {result['featurize']['feature_bytes'] / 1e9:.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
