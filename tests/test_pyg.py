"""graphstore.pyg: HeteroData batches from the store, seeds first, labels, workers, edge lists, and a model that learns."""
from __future__ import annotations


import numpy as np
import pytest
import torch
from torch_geometric.nn import HeteroConv, SAGEConv

from graphstore.build import build_store
from graphstore.errors import UserError
from graphstore.features import array as array_module
from graphstore.featurize import featurize_store
from graphstore.pyg import make_loader
from graphstore.store import GraphStore
from tests.xsvideo_fixtures import make_records, with_learnable_levels, write_xsvideo


@pytest.fixture(scope="session")
def pyg_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pyg")
    src = write_xsvideo(tmp / "xs.json", with_learnable_levels(make_records(80, seed=5)))
    path = build_store(src, tmp / "store", featurize=False, progress=False)
    featurize_store(path, progress=False, text_dim=32, time_encoding="paper")  # 512-d time: large raw arrays
    return GraphStore.open(path)


def _check_batch(store, b, seeds):
    v = b["video"]
    assert v.batch_size == len(seeds)
    np.testing.assert_array_equal(v.n_id[: v.batch_size].numpy(), seeds)
    np.testing.assert_array_equal(v.y.numpy(), store.labels()[v.n_id.numpy()].astype(np.float32))
    for t in b.node_types:
        assert b[t].x.dtype == torch.float32 and b[t].x.shape[0] == b[t].n_id.shape[0]
    xt = store.features("title").gather(b["title"].n_id.numpy()).astype(np.float32)
    np.testing.assert_array_equal(b["title"].x.numpy(), xt)
    for et in b.edge_types:
        ei = b[et].edge_index
        assert et[2] == "video"
        if ei.numel():
            assert ei[0].max() < b[et[0]].num_nodes and ei[1].max() < v.num_nodes
    # a sampled history edge (u -> v) is a true in-neighbour of v
    et = ("video", "is_history_of", "video")
    if et in b.edge_types and b[et].edge_index.numel():
        u, w = b[et].edge_index[:, 0].tolist()
        assert int(v.n_id[u]) in store.in_neighbors("is_history_of", int(v.n_id[w])).tolist()


def test_batches_seeds_first_and_labels(pyg_store):
    seeds = pyg_store.split("train")[:10]
    loader = make_loader(pyg_store, seeds=seeds, fanouts=[3, 2], batch_size=10, shuffle=False)
    b = next(iter(loader))
    _check_batch(pyg_store, b, seeds)
    assert ("comment", "is_comment_of", "video") in b.edge_types


def test_workers_match_in_process(pyg_store):
    kw = dict(split="train", fanouts=[4, 4], batch_size=16, shuffle=True, seed=3)
    a = list(make_loader(pyg_store, num_workers=0, **kw))
    b = list(make_loader(pyg_store, num_workers=1, **kw))
    assert len(a) == len(b) > 1
    for x, y in zip(a, b):
        assert torch.equal(x["video"].n_id, y["video"].n_id)
        assert torch.equal(x["comment"].x, y["comment"].x)
        _check_batch(pyg_store, y, y["video"].n_id[: y["video"].batch_size].numpy())


def test_shared_output_buffer():
    from graphstore.pyg import _shared_float32

    x = _shared_float32((3, 4))
    assert x.is_shared() and x.shape == (3, 4) and x.dtype == torch.float32
    x.numpy()[...] = 1.5  # the NumPy view writes into the shared storage
    assert torch.equal(x, torch.full((3, 4), 1.5))
    assert _shared_float32((0, 4)).shape == (0, 4)


@pytest.mark.parametrize("kernel", [
    pytest.param(True, marks=pytest.mark.skipif(array_module._gather_cpp is None, reason="C++ gather kernel not built")),
    False,  # without the kernel, 'pread' arrays are read through the chunk cache: same batches
])
def test_raw_arrays_mapped_within_the_budget_read_with_pread_past_it(pyg_store, kernel, monkeypatch):
    if not kernel:
        monkeypatch.setattr(array_module, "_gather_cpp", None)
    kw = dict(split="train", fanouts=[4, 4], batch_size=16, shuffle=False, seed=3)
    roomy = make_loader(pyg_store, cache_bytes=1 << 30, **kw)
    assert set(roomy.data[0].raw_read.values()) == {"mmap"}
    tight = make_loader(pyg_store, cache_bytes=64 << 10, **kw)  # only the small raw arrays fit
    assert all(a.kernel == kernel for a in tight.data[0].arrays.values())
    modes = tight.data[0].raw_read
    assert modes["comment"] == "pread" and modes["likes"] == "mmap"
    for a, b in zip(roomy, tight):
        for t in a.node_types:
            assert torch.equal(a[t].x, b[t].x)
    with pytest.raises(UserError, match="raw_read"):
        make_loader(pyg_store, raw_read="fast")


@pytest.mark.parametrize("layout", ["csc", "coo"])
def test_graph_store_edge_index_lists_every_edge(pyg_store, layout):
    from torch_geometric.data import EdgeAttr
    from torch_geometric.data.graph_store import EdgeLayout

    from graphstore.pyg import GraphStoreGraphStore

    graph = GraphStoreGraphStore(pyg_store)
    nv = pyg_store.num_nodes("video")
    assert len(graph.edge_types) == len(pyg_store.relations)
    for et in graph.edge_types:
        want = [pyg_store.in_neighbors(et[1], v).tolist() for v in range(nv)]
        row, second = graph._get_edge_index(EdgeAttr(et, EdgeLayout(layout)))
        assert row.dtype == second.dtype == torch.int64
        assert row.tolist() == [h for heads in want for h in heads], et
        assert len(row) == pyg_store.num_edges(et[1])
        if layout == "csc":
            assert second.tolist() == np.cumsum([0] + [len(h) for h in want]).tolist(), et
        else:
            assert second.tolist() == [v for v, heads in enumerate(want) for _ in heads], et


def test_relations_and_drop_features(pyg_store):
    rels = ["is_title_of", "has_same_topic_as"]
    b = next(iter(make_loader(pyg_store, fanouts=[2], batch_size=8, relations=rels, drop_features=("title",))))
    assert {et[1] for et in b.edge_types} <= set(rels)
    assert set(b.node_types) == {"video", "title"}
    assert not b["title"].x.any()


class TinyHetero(torch.nn.Module):
    def __init__(self, edge_types, hidden: int = 16):
        super().__init__()
        self.conv = HeteroConv({et: SAGEConv((-1, -1), hidden) for et in edge_types}, aggr="mean")
        self.norm_self = torch.nn.LazyBatchNorm1d()  # the video's own columns (counts, ages) are unscaled
        self.lin_self = torch.nn.LazyLinear(hidden)
        self.out = torch.nn.Linear(hidden, 1)

    def forward(self, b):
        h = self.conv(b.x_dict, b.edge_index_dict)["video"] + self.lin_self(self.norm_self(b["video"].x))
        return 9 * torch.sigmoid(self.out(torch.relu(h))).squeeze(-1)


def _predict(model: torch.nn.Module, loader) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, label) of every seed video the loader yields."""
    preds, ys = [], []
    with torch.no_grad():
        for b in loader:
            n = b["video"].batch_size
            preds.append(model(b)[:n].numpy())
            ys.append(b["video"].y[:n].numpy())
    return np.concatenate(preds), np.concatenate(ys)


def test_tiny_model_learns_labels_it_can_see(pyg_store):
    """Labels are a function of the likes node's features: a model must beat the mean on videos it never saw.

    (On labels unrelated to the inputs, the training loss falls too, by fitting the mean: only held-out
    error tells learning from that.)
    """
    torch.manual_seed(0)
    train = np.random.default_rng(0).permutation(pyg_store.split("train"))
    fit, held_out = np.sort(train[: len(train) * 2 // 3]), np.sort(train[len(train) * 2 // 3:])
    assert len(held_out) >= 30
    loader = make_loader(pyg_store, seeds=fit, fanouts=[5, 5], batch_size=32, seed=1)
    edge_types = [("title", "is_title_of", "video"), ("likes", "is_likes_of", "video"),
                  ("video", "has_same_topic_as", "video"), ("comment", "is_comment_of", "video")]
    model = TinyHetero(edge_types)
    model(next(iter(loader)))  # initialise lazy modules
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(12):
        for b in loader:
            n = b["video"].batch_size
            loss = torch.nn.functional.smooth_l1_loss(model(b)[:n], b["video"].y[:n])
            opt.zero_grad()
            loss.backward()
            opt.step()
    pred, y = _predict(model, make_loader(pyg_store, seeds=held_out, fanouts=[5, 5], batch_size=64, shuffle=False))
    mean = pyg_store.labels()[fit].mean()
    mae, mae_of_mean = np.abs(pred - y).mean(), np.abs(mean - y).mean()
    assert mae < 0.5 * mae_of_mean, (mae, mae_of_mean)
