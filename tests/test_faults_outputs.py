"""`graphstore build --overwrite` replaces only a graphstore, and a replaced store is never lost (issue 24)."""
from __future__ import annotations

import os

import pytest

from graphstore.build import build_store
from graphstore.cli import main
from graphstore.errors import UserError
from graphstore.format.generations import exclusive
from graphstore.store import GraphStore
from tests.xsvideo_fixtures import make_records, write_xsvideo


@pytest.fixture()
def src(tmp_path):
    return write_xsvideo(tmp_path / "in.json", make_records(8, seed=3))


def _build(src, out, **kw):
    return build_store(src, out, featurize=False, progress=False, **kw)


def test_overwrite_refuses_a_directory_that_is_not_a_store(tmp_path, src, capsys):
    mine = tmp_path / "mydata"
    mine.mkdir()
    (mine / "thesis.txt").write_text("years of work")
    assert main(["build", "--input", str(src), "--out", str(mine), "--overwrite", "--no-features"]) == 2
    assert "not a graphstore" in capsys.readouterr().err
    assert (mine / "thesis.txt").read_text() == "years of work"


def test_overwrite_refuses_a_regular_file_and_dot_paths(tmp_path, src, monkeypatch):
    f = tmp_path / "notes.txt"
    f.write_text("x")
    with pytest.raises(UserError, match="is a file"):
        _build(src, f, overwrite=True)
    assert f.read_text() == "x"
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    for out in (".", ".."):
        with pytest.raises(UserError, match="name a store directory"):
            _build(src, out, overwrite=True)
    assert work.is_dir()


def test_overwrite_refuses_a_store_that_holds_the_input(tmp_path, src):
    store = _build(src, tmp_path / "s")
    inside = store / "in.json"
    inside.write_bytes(src.read_bytes())
    with pytest.raises(UserError, match="lies inside --out"):
        _build(inside, store, overwrite=True)
    assert inside.is_file() and GraphStore.open(store).num_nodes("video") > 0


def test_overwrite_replaces_a_store_and_leaves_nothing_beside_it(tmp_path, src):
    store = _build(src, tmp_path / "s")
    other = write_xsvideo(tmp_path / "other.json", make_records(5, seed=9))
    _build(other, store, overwrite=True)
    assert GraphStore.open(store).num_nodes("video") == len(make_records(5, seed=9))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.json", "other.json", "s"]


def test_build_over_a_store_with_a_writer_is_refused(tmp_path, src):
    store = _build(src, tmp_path / "s")
    before = sorted(os.listdir(store))
    with exclusive(store):
        with pytest.raises(UserError, match="another writer"):
            _build(src, store, overwrite=True)
    assert sorted(os.listdir(store)) == before


def test_second_build_of_the_same_out_is_refused_while_the_first_runs(tmp_path, src):
    out = tmp_path / "s"
    tmp = tmp_path / "s.tmp-build"
    tmp.mkdir()
    with exclusive(tmp):  # as a running build holds it
        with pytest.raises(UserError, match="another build is writing"):
            _build(src, out)
    assert tmp.is_dir() and not out.exists()
    _build(src, out)  # a dead build's leftover (unlocked) is ours to remove
    assert not tmp.exists() and GraphStore.open(out).num_nodes("video") > 0


def test_a_failed_swap_puts_the_old_store_back(tmp_path, src, monkeypatch):
    import graphstore.build as build

    store = _build(src, tmp_path / "s")
    n = GraphStore.open(store).num_nodes("video")
    real_rename = os.rename

    def rename(a, b):  # the new store's rename fails, as an interrupt there would
        if str(a).endswith(".tmp-build"):
            raise KeyboardInterrupt
        return real_rename(a, b)

    monkeypatch.setattr(build.Path, "rename", lambda self, target: rename(self, target))
    with pytest.raises(KeyboardInterrupt):
        _build(write_xsvideo(tmp_path / "o.json", make_records(5, seed=9)), store, overwrite=True)
    monkeypatch.undo()
    assert GraphStore.open(store).num_nodes("video") == n
    assert not GraphStore.open(store).verify()


def test_featurize_waits_for_no_writer_it_is_refused_while_one_runs(tmp_path, src, capsys):
    store = _build(src, tmp_path / "s")
    with exclusive(store):  # as an append in progress holds it
        assert main(["featurize", str(store), "--no-progress"]) == 2
    assert "another writer" in capsys.readouterr().err
    assert "features" not in GraphStore.open(store).meta
    assert main(["featurize", str(store), "--no-progress"]) == 0
