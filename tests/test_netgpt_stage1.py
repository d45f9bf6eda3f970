"""NetGPT stage 1 end to end on a tiny store: train, resume, eval, embed, baselines, 2-rank DDP."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from graphstore.build import build_store
from graphstore.store import GraphStore
from tests.xsvideo_fixtures import file_digests, make_records, write_xsvideo

TINY = {"d_g": 16, "fanouts": [3, 3], "batch_size": 16, "eval_batch_size": 32, "epochs": 2, "patience": 5,
        "lr": 1e-2, "embed_fanout": 5}


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("stage1")
    src = write_xsvideo(tmp / "xs.json", make_records(120, seed=3))
    return build_store(src, tmp / "store", featurize=True, progress=False, cutoff="2024-11-20", val_days=6)


def _cfg(**kw):
    from netgpt.config import preset

    return preset("cpu", **{**TINY, **kw})


def _parse(argv: list[str]):
    import argparse

    from netgpt.commands import baselines, embed, eval as eval_cmd, train

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    for mod in (train, eval_cmd, embed, baselines):
        mod.register(sub)
    return parser.parse_args(argv)


TRAIN_ARGS = ["--preset", "cpu", "--d-g", "16", "--fanouts", "3", "3", "--batch-size", "16", "--epochs", "2",
              "--max-steps", "2", "--no-progress", "--seed", "1"]


@pytest.fixture(scope="session")
def trained_run(tiny_store, tmp_path_factory) -> Path:
    """A 2-epoch, 2-steps-per-epoch run through the `netgpt train` command."""
    run = tmp_path_factory.mktemp("runs") / "tiny_run"
    args = _parse(["train", "--store", str(tiny_store), "--out", str(run), *TRAIN_ARGS])
    assert args.func(args) == 0
    return run


def test_train_writes_run_directory(trained_run, tiny_store):
    import pyarrow.parquet as pq

    from netgpt.metrics import regression_metrics

    out = trained_run / "pretrain"
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt", "best.pt", "metrics.json",
                 "predictions_val.parquet", "predictions_test.parquet"):
        assert (out / name).is_file(), name
    top = json.loads((trained_run / "config.json").read_text())
    assert top["pretrain"]["d_g"] == 16 and top["pretrain"]["fanouts"] == [3, 3]
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [0, 1] and all(e["steps"] == 2 for e in epochs)
    metrics = json.loads((out / "metrics.json").read_text())
    store = GraphStore.open(tiny_store)
    for split in ("val", "test"):
        t = pq.read_table(out / f"predictions_{split}.parquet").to_pydict()
        assert sorted(t["node"]) == store.split(split).tolist()
        assert t["sample_id"] == [store.sample_ids()[i] for i in t["node"]]
        assert t["y_true"] == store.labels()[t["node"]].astype(float).tolist()
        assert all(0.0 <= p <= 9.0 for p in t["y_pred"])
        again = regression_metrics(np.array(t["y_true"]), np.array(t["y_pred"]))
        for k in ("acc", "mse", "mae"):
            assert metrics[split][k] == pytest.approx(again[k])


def test_existing_run_needs_resume(trained_run, tiny_store):
    from graphstore.errors import UserError

    args = _parse(["train", "--store", str(tiny_store), "--out", str(trained_run), *TRAIN_ARGS])
    with pytest.raises(UserError, match="--resume"):
        args.func(args)


def test_resume_matches_uninterrupted_run(tiny_store, tmp_path):
    from netgpt.train_gnn import run_pretrain

    cfg = _cfg(epochs=3, max_steps=2, seed=5)
    full = run_pretrain(tmp_path / "full", tiny_store, cfg, progress=False)
    part = run_pretrain(tmp_path / "part", tiny_store, cfg, progress=False, stop_after_epochs=1)
    assert part == {"stopped_after_epochs": 1}
    assert not (tmp_path / "part" / "pretrain" / "metrics.json").exists()
    resumed = run_pretrain(tmp_path / "part", tiny_store, cfg, resume=True, progress=False)
    assert resumed == full
    a = torch.load(tmp_path / "full" / "pretrain" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "part" / "pretrain" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    lines = (tmp_path / "part" / "pretrain" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [0, 1, 2]


@pytest.mark.parametrize("over", [{}, {"no_video_features": True, "no_comments": True}, {"num_layers": 3, "fanouts": [2, 2, 2]}])
def test_planned_forward_equals_full_forward(tiny_store, over):
    from netgpt.data import batch_inputs, iter_batches
    from netgpt.train_gnn import model_for_store

    store = GraphStore.open(tiny_store)
    cfg = _cfg(**over)
    model = model_for_store(cfg, store).eval()
    batch = next(iter_batches(store, store.split("train")[:16], cfg, seed=0))
    x, ei, bs, _, _ = batch_inputs(batch, torch.device("cpu"))
    emb, pred = model(x, ei, bs)
    emb_ref, pred_ref = model.model.forward_full(model.inputs(x), ei, bs)
    assert emb.shape == (bs, 16)
    torch.testing.assert_close(emb, emb_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(pred, pred_ref, rtol=1e-5, atol=1e-6)


def test_eval_command_writes_report(trained_run, tiny_store):
    args = _parse(["eval", "--run", str(trained_run), "--split", "test"])
    assert args.func(args) == 0
    out = trained_run / "pretrain"
    report = json.loads((out / "eval_test.json").read_text())
    n = len(GraphStore.open(tiny_store).split("test"))
    assert report["overall"]["n"] == n
    assert sum(v["n"] for v in report["by_period"].values()) == n
    assert sum(v["n"] for v in report["by_platform"].values()) == n
    assert np.asarray(report["confusion"]).sum() == n
    assert "## By observation period" in (out / "eval_test.md").read_text()
    for png in report["plots"]:
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_embed_writes_into_the_run_not_the_store(trained_run, tiny_store):
    from netgpt.embed import check_embeddings

    before = file_digests(tiny_store)
    args = _parse(["embed", "--run", str(trained_run), "--store", str(tiny_store), "--no-progress"])
    assert args.func(args) == 0
    assert file_digests(tiny_store) == before  # the dataset is read-only to training
    store = GraphStore.open(tiny_store)
    emb = np.load(trained_run / "embeddings" / "video.npy")
    assert emb.shape == (store.num_nodes("video"), 16) and emb.dtype == np.float16
    assert np.isfinite(emb).all() and emb.std(axis=0).max() > 0
    meta = check_embeddings(trained_run, store)
    assert len(meta["run_id"]) == 16 and meta["store"]["num_videos"] == store.num_nodes("video")
    assert not any(p.name.endswith(".tmp") for p in trained_run.iterdir())


def test_a_run_refuses_embeddings_of_another_checkpoint(trained_run, tiny_store, tmp_path):
    import shutil

    from graphstore.errors import UserError
    from netgpt.embed import check_embeddings

    other = tmp_path / "other"
    shutil.copytree(trained_run, other)
    ck = torch.load(other / "pretrain" / "best.pt", weights_only=False)
    ck["epoch"] = ck["epoch"] + 100  # another checkpoint: other bytes
    torch.save(ck, other / "pretrain" / "best.pt")
    with pytest.raises(UserError, match="another stage-1 checkpoint"):
        check_embeddings(other, GraphStore.open(tiny_store))


def test_baselines_table(tiny_store, tmp_path):
    args = _parse(["baselines", "--store", str(tiny_store), "--out", str(tmp_path / "bl"), "--models", "gcn",
                   "lightgbm_own", "lightgbm", "lightgbm_graph", "train_mean", "--seeds", "0", "1", *TRAIN_ARGS])
    assert args.func(args) == 0
    table = (tmp_path / "bl" / "baselines.md").read_text()
    rows = [line.split("|") for line in table.splitlines()[2:]]
    assert [r[1].strip() for r in rows] == ["gcn", "lightgbm_own", "lightgbm", "lightgbm_graph", "train_mean"]
    assert all(r[2].strip() == "2" and "±" in r[4] for r in rows)
    res = json.loads((tmp_path / "bl" / "baselines.json").read_text())
    assert res["seeds"] == [0, 1] and len(res["per_seed"]["gcn"]) == 2
    # lightgbm_graph reads the graph's exact aggregates, not a stage-1 model: none was trained for it
    assert not (tmp_path / "bl" / "sage_seed0").exists()
    assert res["per_seed"]["lightgbm_graph"][0] != res["per_seed"]["lightgbm"][0]
    y = GraphStore.open(tiny_store).labels().astype(float)
    te = GraphStore.open(tiny_store).split("test")
    mean = y[GraphStore.open(tiny_store).split("train")].mean()
    assert res["summary"]["train_mean"]["mae"] == pytest.approx(np.abs(y[te] - mean).mean())
    assert res["summary"]["train_mean"]["mae_std"] == 0.0


def test_unknown_relation_group_is_a_user_error(tiny_store, tmp_path):
    from graphstore.errors import UserError
    from netgpt.config import exclusion_overrides

    with pytest.raises(UserError, match="relation group"):
        exclusion_overrides(["nope"])
    assert "has_same_topic_as" not in _cfg(**exclusion_overrides(["video_video"])).relations()


def test_llm_stage_without_llm_dir_is_a_user_error(tiny_store, tmp_path):
    from graphstore.errors import UserError

    args = _parse(["train", "--stage", "align", "--store", str(tiny_store), "--out", str(tmp_path / "r")])
    with pytest.raises(UserError):
        args.func(args)


# --- 2-rank DDP on CPU (gloo) ------------------------------------------------------------------
def _ddp_worker(rank: int, world: int, port: int, store: str, run: str, dump: str, feature_cache: str) -> None:
    import os

    import netgpt.train_gnn as tg

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    original = tg.final_evaluation

    def capture(run_dir, store_, model, cfg, ctx, *a, **kw):
        torch.save(model.state_dict(), Path(dump) / f"rank{rank}.pt")  # weights after the last step
        return original(run_dir, store_, model, cfg, ctx, *a, **kw)

    tg.final_evaluation = capture
    cfg = _cfg(epochs=1, max_steps=1, seed=2, feature_cache=feature_cache, feature_cache_mb=1)
    tg.run_pretrain(run, store, cfg, progress=False)


@pytest.mark.parametrize("feature_cache", ["none", "lookahead"])
def test_two_rank_ddp_equals_one_process_on_the_same_global_batch(tiny_store, tmp_path, feature_cache):
    """One DDP step on 2 ranks = one step of a single process whose gradient is the mean over both
    ranks' batches (same seeds, same sampled neighbourhoods, same optimizer and schedule). The ranks
    open one store on shared storage, each with its own feature budget and reader (with
    "lookahead", each rank's own look-ahead cache); the reference reads with the plain loader."""
    import socket

    import torch.multiprocessing as mp

    from netgpt.data import batch_inputs, iter_batches
    from netgpt.distributed import shard_seeds
    from netgpt.train_gnn import epoch_steps, fit_input_statistics, loader_seed, make_optimizer, model_for_store

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tiny_store), str(tmp_path / "run"), str(tmp_path), feature_cache), nprocs=2,
             join=True)
    w0 = torch.load(tmp_path / "rank0.pt")
    w1 = torch.load(tmp_path / "rank1.pt")
    assert all(torch.equal(w0[k], w1[k]) for k in w0)

    cfg = _cfg(epochs=1, max_steps=1, seed=2)
    store = GraphStore.open(tiny_store)
    model = model_for_store(cfg, store)
    fit_input_statistics(model, store, cfg)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    opt, sched = make_optimizer(model, cfg, epoch_steps(cfg, store.split("train").size, 2))
    losses = []
    for rank in (0, 1):
        seeds = shard_seeds(store.split("train"), 0, cfg.seed, rank, 2)
        batch = next(iter_batches(store, seeds, cfg, seed=loader_seed(cfg, 0, rank)))
        x, ei, bs, _, y = batch_inputs(batch, torch.device("cpu"))
        losses.append(torch.nn.functional.smooth_l1_loss(model(x, ei, bs)[1], y))
    (sum(losses) / 2).backward()  # DDP averages the ranks' gradients
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step(); sched.step()
    ref = model.state_dict()
    assert any(not torch.equal(ref[k], init[k]) for k in ref)  # the step moved the weights
    for k in ref:
        torch.testing.assert_close(w0[k], ref[k], rtol=1e-5, atol=1e-6, msg=k)
    line = json.loads((tmp_path / "run" / "pretrain" / "metrics.jsonl").read_text().splitlines()[0])
    assert line["steps"] == 1 and line["train_samples"] == 2 * min(16, len(store.split("train")) // 2)
