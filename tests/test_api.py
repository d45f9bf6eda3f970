"""The public API: top-level names, versions, typed entry points, clear errors for bad input, closing a store."""
from __future__ import annotations

import inspect
import subprocess
import sys
from importlib import metadata

import numpy as np
import pytest

import graphstore
import netgpt
from graphstore.build import build_store
from graphstore.errors import NodeIdError, UserError
from graphstore.featurize import featurize_store
from graphstore.store import GraphStore
from tests.xsvideo_fixtures import make_records, write_xsvideo


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api")
    path = build_store(write_xsvideo(tmp / "xs.json", make_records(10, seed=3)), tmp / "store", featurize=False,
                       progress=False)
    featurize_store(path, progress=False, text_dim=8, node_types=["video", "title"])
    return path


@pytest.fixture(scope="module")
def store(store_path) -> GraphStore:
    return GraphStore.open(store_path)


# --- top-level names and versions ----------------------------------------------------------------
def test_top_level_names_are_the_real_objects():
    from graphstore import GraphStore as top_store, NeighborSampler, make_loader
    from graphstore.pyg import make_loader as loader_fn
    from graphstore.sampler.neighbor import NeighborSampler as sampler_cls

    assert top_store is GraphStore and NeighborSampler is sampler_cls and make_loader is loader_fn
    assert set(graphstore.__all__) >= {"GraphStore", "NeighborSampler", "make_loader", "__version__"}
    assert {"GraphStore", "NeighborSampler", "make_loader"} <= set(dir(graphstore))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        graphstore.nope  # noqa: B018


def test_versions_come_from_the_distribution():
    try:
        want = metadata.version(graphstore.DISTRIBUTION)
    except metadata.PackageNotFoundError:
        want = "0+unknown"
    assert graphstore.__version__ == want == netgpt.__version__
    assert isinstance(want, str) and want


def test_import_graphstore_is_lazy():
    """`import graphstore` must not import the sampler's Numba or the loader's torch_geometric."""
    code = ("import sys, graphstore; heavy = [m for m in ('numba', 'torch_geometric', 'torch', 'zarr') "
            "if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("func", [
    GraphStore.open, GraphStore.num_nodes, GraphStore.in_neighbors, GraphStore.in_degree, GraphStore.features,
    "graphstore.NeighborSampler.__init__", "graphstore.NeighborSampler.sample", "graphstore.make_loader",
])
def test_entry_points_are_fully_typed(func):
    if isinstance(func, str):
        owner, _, attr = func.rpartition(".")
        obj = graphstore
        for part in owner.split(".")[1:]:
            obj = getattr(obj, part)
        func = getattr(obj, attr)
    sig = inspect.signature(func)
    params = [p for p in sig.parameters.values() if p.name not in ("self", "cls")]
    assert [p.name for p in params if p.annotation is inspect.Parameter.empty] == []
    assert sig.return_annotation is not inspect.Signature.empty


# --- clear errors for bad input --------------------------------------------------------------------
def test_unknown_node_type_and_relation(store):
    with pytest.raises(UserError, match=r"unknown node type 'nosuch'; node types: video, .*comment"):
        store.num_nodes("nosuch")
    with pytest.raises(UserError, match=r"unknown relation 'nosuch'; relations: is_platform_of, "):
        store.in_neighbors("nosuch", 0)
    with pytest.raises(UserError, match="unknown relation"):
        store.num_edges("nosuch")
    with pytest.raises(UserError, match="unknown node type"):
        store.features("nosuch")


@pytest.mark.parametrize("method", ["in_neighbors", "in_degree"])
def test_out_of_range_video_ids(store, method):
    n = store.num_nodes("video")
    call = getattr(store, method)
    for bad in (-1, n, n + 100, -n):
        with pytest.raises(NodeIdError, match=rf"video id {bad} is out of range \(valid ids: 0\.\.{n - 1}\)"):
            call("is_history_of", bad)
    with pytest.raises(IndexError):  # still an IndexError, and a ValueError, for callers that catch those
        call("has_same_topic_as", n)
    with pytest.raises(ValueError):
        call("is_platform_of", -1)
    for bad in (1.5, "3", None, True):
        with pytest.raises(NodeIdError, match="is not an integer"):
            call("is_title_of", bad)
    assert call("is_title_of", np.int64(n - 1)) == (1 if method == "in_degree" else [n - 1])


def test_in_neighbors_of_last_node_is_not_what_minus_one_returned(store):
    n = store.num_nodes("video")
    assert store.in_neighbors("is_title_of", n - 1).tolist() == [n - 1]
    with pytest.raises(NodeIdError):
        store.in_neighbors("is_title_of", -1)


def test_topology_checks_ids_too(store):
    topo = store.topology
    with pytest.raises(NodeIdError, match="video id 10000 is out of range"):
        topo.in_neighbors("has_same_author_as", 10_000)
    with pytest.raises(UserError, match="unknown relation"):
        topo.in_degree("nosuch", 0)


# --- closing ---------------------------------------------------------------------------------------
def test_store_is_a_context_manager_that_closes_what_it_opened(store_path):
    with GraphStore.open(store_path) as s:
        arr = s.features("title", "x")
        rows = arr.gather(np.arange(3))
        assert arr._pid != -1
        n = len(s.in_neighbors("has_same_topic_as", 0))
    assert s.closed
    assert arr._pid == -1 and "_slab" not in arr.__dict__  # files, maps and cache released
    np.testing.assert_array_equal(arr.gather(np.arange(3)), rows)  # a feature array reopens on demand
    with pytest.raises(UserError, match="closed"):
        s.in_neighbors("has_same_topic_as", 0)
    assert n >= 1


def test_close_releases_pread_descriptors(store_path):
    s = GraphStore.open(store_path)
    arr = s.features("video")
    arr.raw_read = "pread"
    arr.gather(np.arange(2))
    fds = arr._chunk_fds
    s.close()
    if fds is not None:  # the C++ kernel's pread reader held them open
        assert (fds == -1).all()
