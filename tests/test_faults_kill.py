"""Fault injection (issue 24): SIGKILL at random points of build, append and featurize, in a subprocess;
disk full on a small tmpfs; concurrent writers; featurize writes a new generation, never the current one.

After every fault the store opens, `verify()` finds nothing, a reader sees either the old or the new
contents (never a mix), and rerunning the command gives what an uninterrupted run gives.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from graphstore.build import build_store
from graphstore.append import KILL_ENV as APPEND_KILL_ENV
from graphstore.errors import UserError
from graphstore.featurize import featurize_store
from graphstore.featurize.run import PENDING
from graphstore.featurize.writer import KILL_ENV as FEATURIZE_KILL_ENV
from graphstore.format.generations import exclusive
from graphstore.store import GraphStore
from tests.xsvideo_fixtures import make_records, write_xsvideo

ROOT = Path(__file__).resolve().parents[1]
SMALL_CHUNKS = {"chunk_bytes": 4096, "raw_chunk_bytes": 8192}  # several chunks per array, so kills land mid-array


def _cli(*args: str, env: dict | None = None, wait: bool = True):
    cmd = [sys.executable, "-m", "graphstore.cli", *args, "--no-progress"]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    if not wait:
        return subprocess.Popen(cmd, env=full_env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=full_env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _contents(path: Path) -> dict:
    """What a reader of the store sees: samples, relations' edge counts, and every feature matrix."""
    store = GraphStore.open(path)
    assert store.verify() == [], store.verify()
    out = {"ids": store.sample_ids(), "edges": {r.name: store.num_edges(r.name) for r in store.relations},
           "features": {}}
    for t, info in store.meta.get("features", {}).items():
        out["features"][t] = (info["dim"], store.features(t).gather(np.arange(store.num_nodes(t))).tobytes())
    return out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """A small input split by whole videos into a base and a rest to append, and the whole."""
    d = tmp_path_factory.mktemp("kill")
    records = make_records(30, seed=5)
    urls = sorted({r["url"] for r in records.values()})
    rest_urls = set(urls[::3])
    base = {k: r for k, r in records.items() if r["url"] not in rest_urls}
    rest = {k: r for k, r in records.items() if r["url"] in rest_urls}
    return {"base": write_xsvideo(d / "base.json", base), "rest": write_xsvideo(d / "rest.json", rest),
            "all": write_xsvideo(d / "all.json", records)}


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory) -> dict[str, dict]:
    """Uninterrupted runs: the base store, base + rest appended, and base re-featurized at 16-d."""
    d = tmp_path_factory.mktemp("ref")
    base = build_store(inputs["base"], d / "base", progress=False, feature_options=SMALL_CHUNKS)
    out = {"base": _contents(base)}
    shutil.copytree(base, d / "appended")
    assert _cli("append", "--store", str(d / "appended"), "--input", str(inputs["rest"])).returncode == 0
    out["appended"] = _contents(d / "appended")
    shutil.copytree(base, d / "refeaturized")
    featurize_store(d / "refeaturized", progress=False, overwrite=True, text_dim=16, **SMALL_CHUNKS)
    out["refeaturized"] = _contents(d / "refeaturized")
    out["store"] = {"base": base}
    return out


def _fresh(reference, tmp_path: Path) -> Path:
    path = tmp_path / "s"
    shutil.copytree(reference["store"]["base"], path)
    return path


# --- SIGKILL at random points -----------------------------------------------------------------------------
def test_featurize_killed_at_random_rows_changes_nothing_and_resumes(reference, tmp_path):
    path = _fresh(reference, tmp_path)
    total = sum(GraphStore.open(path).meta["node_types"].values())
    rng = np.random.default_rng(0)
    for rows in rng.integers(1, total // 4, size=3).tolist():  # each run resumes the last: 3/4 at most
        proc = _cli("featurize", str(path), "--overwrite", "--text-dim", "16",
                    env={FEATURIZE_KILL_ENV: str(rows)})
        assert proc.returncode == -9, proc.stderr
        assert _contents(path) == reference["base"]  # the killed run is invisible
        assert (path / "gen" / "1" / PENDING).is_file()  # and left its work pending
    proc = _cli("featurize", str(path), "--overwrite", "--text-dim", "16")
    assert proc.returncode == 0, proc.stderr
    assert _contents(path) == reference["refeaturized"]
    assert not (GraphStore.open(path).path / PENDING).exists()


def test_build_killed_at_random_points_leaves_no_store_or_the_old_one(inputs, reference, tmp_path):
    out = tmp_path / "s"
    started = time.time()
    assert _cli("build", "--input", str(inputs["base"]), "--out", str(out)).returncode == 0
    took = time.time() - started
    shutil.rmtree(out)
    rng = np.random.default_rng(1)
    # a fresh build: killed anywhere (feature rows or a random moment), it leaves nothing at --out
    for rows in rng.integers(1, 200, size=2).tolist():
        assert _cli("build", "--input", str(inputs["base"]), "--out", str(out),
                    env={FEATURIZE_KILL_ENV: str(rows)}).returncode == -9
        assert not out.exists()
    # replacing a store: killed at random moments, the old store (or the new one, if it finished) is there
    assert _cli("build", "--input", str(inputs["all"]), "--out", str(out)).returncode == 0
    for delay in sorted(rng.uniform(0.2, took, size=3).tolist()):
        proc = _cli("build", "--input", str(inputs["base"]), "--out", str(out), "--overwrite", wait=False)
        time.sleep(delay)
        proc.kill()
        proc.wait()
        if not out.exists():  # killed between the two renames of the swap: the next build puts it back
            assert (tmp_path / "s.tmp-old").is_dir()
            with pytest.raises(UserError, match="exists"):
                build_store(inputs["base"], out, progress=False)
        ids = GraphStore.open(out).sample_ids()
        assert GraphStore.open(out).verify() == [] and len(ids) in (len(reference["base"]["ids"]),
                                                                     len(reference["appended"]["ids"]))
    assert _cli("build", "--input", str(inputs["base"]), "--out", str(out), "--overwrite").returncode == 0
    assert _contents(out)["ids"] == reference["base"]["ids"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("s")) == ["s"]


def test_restore_after_a_kill_between_the_swap_renames(inputs, reference, tmp_path):
    out = _fresh(reference, tmp_path)
    out.rename(tmp_path / "s.tmp-old")  # where a build killed after its first rename leaves the old store
    with pytest.raises(UserError, match="exists"):  # put back, and then not replaced without --overwrite
        build_store(inputs["all"], out, progress=False)
    assert _contents(out) == reference["base"]


def test_append_killed_at_random_moments_is_all_or_nothing(inputs, reference, tmp_path):
    path = _fresh(reference, tmp_path)
    started = time.time()
    probe = _fresh(reference, tmp_path / "probe")
    assert _cli("append", "--store", str(probe), "--input", str(inputs["rest"])).returncode == 0
    took = time.time() - started
    rng = np.random.default_rng(2)
    for delay in sorted(rng.uniform(0.2, took, size=3).tolist()):
        proc = _cli("append", "--store", str(path), "--input", str(inputs["rest"]), wait=False)
        time.sleep(delay)
        proc.kill()
        proc.wait()
        seen = _contents(path)
        assert seen in (reference["base"], reference["appended"])
        if seen == reference["appended"]:
            return  # it committed before the kill; a rerun would (rightly) refuse the duplicates
    assert _cli("append", "--store", str(path), "--input", str(inputs["rest"])).returncode == 0
    assert _contents(path) == reference["appended"]


def test_featurize_pending_work_is_discarded_by_an_append(inputs, reference, tmp_path):
    path = _fresh(reference, tmp_path)
    assert _cli("featurize", str(path), "--overwrite", "--text-dim", "16",
                env={FEATURIZE_KILL_ENV: "40"}).returncode == -9
    assert _cli("append", "--store", str(path), "--input", str(inputs["rest"])).returncode == 0
    assert _contents(path) == reference["appended"]
    assert sorted(p.name for p in (path / "gen").iterdir()) == ["1"]


def test_a_killed_append_is_discarded_by_the_next_featurize(inputs, reference, tmp_path):
    path = _fresh(reference, tmp_path)
    assert _cli("append", "--store", str(path), "--input", str(inputs["rest"]),
                env={APPEND_KILL_ENV: "features"}).returncode == -9
    assert _cli("featurize", str(path), "--overwrite", "--text-dim", "16").returncode == 0
    assert _contents(path) == reference["refeaturized"] and GraphStore.open(path).generation == 1


# --- featurize: a new generation, never the current one rewritten ----------------------------------------
def test_featurize_leaves_open_handles_on_their_generation(reference, tmp_path):
    path = _fresh(reference, tmp_path)
    old = GraphStore.open(path)
    title = old.features("title")
    featurize_store(path, progress=False, overwrite=True, text_dim=16, **SMALL_CHUNKS)
    assert old.verify() == [] and title.shape[1] == reference["base"]["features"]["title"][0]
    assert title.gather(np.arange(title.shape[0])).tobytes() == reference["base"]["features"]["title"][1]
    assert GraphStore.open(path).generation == 1 and _contents(path) == reference["refeaturized"]


def test_featurize_refused_for_its_settings_leaves_nothing_behind(reference, tmp_path):
    path = _fresh(reference, tmp_path)
    with pytest.raises(UserError, match="pass --overwrite"):
        featurize_store(path, progress=False, text_dim=16, **SMALL_CHUNKS)
    assert not (path / "gen").exists() and _contents(path) == reference["base"]


def test_featurize_that_changes_nothing_commits_nothing(reference, tmp_path):
    path = _fresh(reference, tmp_path)
    featurize_store(path, progress=False, **SMALL_CHUNKS)
    assert GraphStore.open(path).generation == 0 and not (path / "gen").exists()


def test_interrupted_overwrite_resumes_instead_of_restarting(reference, tmp_path, monkeypatch):
    path = _fresh(reference, tmp_path)
    featurize_store(path, progress=False, overwrite=True, text_dim=16, stop_after_rows=200, **SMALL_CHUNKS)
    bars = []

    class Bar:
        def __init__(self, total, initial, **kw):
            self.initial = initial
            bars.append(self)

        def update(self, k):
            pass

        def close(self):
            pass

    monkeypatch.setattr("tqdm.tqdm", Bar)
    featurize_store(path, progress=True, overwrite=True, text_dim=16, **SMALL_CHUNKS)
    assert bars[0].initial > 0  # what the interrupted --overwrite run wrote was kept
    assert _contents(path) == reference["refeaturized"]


# --- concurrent writers -----------------------------------------------------------------------------------
def test_featurize_is_refused_while_another_writer_holds_the_store(reference, tmp_path):
    path = _fresh(reference, tmp_path)
    with exclusive(path):
        with pytest.raises(UserError, match="another writer"):
            featurize_store(path, progress=False, overwrite=True, text_dim=16)
    assert _contents(path) == reference["base"]


@pytest.mark.parametrize("first", ["append", "featurize"])
def test_concurrent_append_and_featurize_lose_nothing_committed(inputs, reference, tmp_path, first):
    path = _fresh(reference, tmp_path)
    commands = {"append": ["append", "--store", str(path), "--input", str(inputs["rest"])],
                "featurize": ["featurize", str(path), "--overwrite", "--text-dim", "16"]}
    order = [first, *(c for c in commands if c != first)]
    procs = {name: _cli(*commands[name], wait=False) for name in order}
    codes = {}
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        codes[name] = proc.returncode
        assert proc.returncode in (0, 2), err
        if proc.returncode == 2:
            assert "another writer" in err, err  # refused, with a clear message
    store = GraphStore.open(path)
    assert store.verify() == []
    appended = codes["append"] == 0
    assert len(store.sample_ids()) == len(reference["appended" if appended else "base"]["ids"])
    assert store.meta["features"]["title"]["dim"] == (16 if codes["featurize"] == 0
                                                      else reference["base"]["features"]["title"][0])


# --- disk full ---------------------------------------------------------------------------------------------
@pytest.fixture()
def small_disk(tmp_path):
    """A 6 MB tmpfs, or a skip where this process may not mount one."""
    where = tmp_path / "disk"
    where.mkdir()
    if shutil.which("mount") is None or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(where)],
                                                       capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)")
    yield where
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _fill(disk: Path, leave: int) -> None:
    """Fill `disk` up to `leave` bytes free."""
    free = shutil.disk_usage(disk).free
    with open(disk / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def test_disk_full_build_append_featurize_exit_1_and_lose_nothing(inputs, reference, small_disk):
    # build: the tmpfs fills before the store is complete
    _fill(small_disk, 200_000)
    proc = _cli("build", "--input", str(inputs["all"]), "--out", str(small_disk / "s"))
    assert proc.returncode == 1 and "no space left" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]
    (small_disk / "filler").unlink()
    # append and featurize on a store that lies on the full disk
    shutil.copytree(reference["store"]["base"], small_disk / "s")
    _fill(small_disk, 32_000)
    for args in (["append", "--store", str(small_disk / "s"), "--input", str(inputs["rest"])],
                 ["featurize", str(small_disk / "s"), "--overwrite", "--text-dim", "512"]):
        proc = _cli(*args)
        assert proc.returncode == 1 and "no space left" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert _contents(small_disk / "s") == reference["base"]


def test_zarr_writes_chunks_by_rename_so_hard_linked_generations_stay_apart(tmp_path):
    """Generations share unchanged files by hard link: that is safe only while Zarr replaces files, never edits them."""
    import zarr

    arr = zarr.create_array(str(tmp_path / "a"), shape=(4,), chunks=(4,), dtype="<i4", fill_value=0, compressors=None)
    arr[:] = [1, 2, 3, 4]
    chunk = next(p for p in (tmp_path / "a").rglob("*") if p.is_file() and p.name != "zarr.json")
    os.link(chunk, tmp_path / "other")
    arr[:] = [5, 6, 7, 8]
    assert (tmp_path / "other").read_bytes() != chunk.read_bytes()
    assert np.frombuffer((tmp_path / "other").read_bytes(), dtype="<i4").tolist() == [1, 2, 3, 4]
