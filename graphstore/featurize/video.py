"""Import precomputed per-video feature vectors (`--video-features`), streamed block by block.

Layouts:
- the reference code's: `DIR/<platform>/<video id>.pth`, one torch tensor per video, the platform
  directory named as in REFERENCE_PLATFORM_DIRS and the video id taken from the sample's url as the
  reference code takes it (`reference_video_id`); every state of a video reads the same file;
- `DIR/<sample id>.npy`, one vector per sample;
- a `.npy` matrix already in node order (memory-mapped);
- a Parquet file with a `sample_id` column and one list column `features`.
A sample without a vector gets zeros. No layout holds the whole matrix in memory: rows are read
for each block that `encode(lo, hi)` is asked for.
"""
from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graphstore.errors import UserError

log = logging.getLogger(__name__)

# The reference code's platform directories (group_data.py, video_feat).
REFERENCE_PLATFORM_DIRS = {"抖音": "douyin", "头条": "toutiao", "西瓜": "xigua", "快手": "kuaishou", "哔哩哔哩": "bilibili"}
# Platforms whose url segment the reference code cleans with re.sub(r'[^\w\-]', '_', ...) (data.py, url2dir_*).
_CLEANED_PLATFORMS = frozenset({"头条", "西瓜", "快手"})
_NOT_WORD = re.compile(r"[^\w\-]")


@dataclass
class VideoFeatures:
    """Rows [lo, hi) of the video feature matrix from `encode(lo, hi)`, and what the source matched."""

    dim: int
    encode: Callable[[int, int], np.ndarray]
    report: dict[str, int | str]


def reference_video_id(url: str, platform: str) -> str:
    """The video id the reference code derives from a url: its last path segment (cleaned for Toutiao,
    Xigua and Kuaishou), cut at the first '.'; its feature file is `<platform dir>/<id>.pth`."""
    if url.endswith("/"):
        url = url[:-1]
    name = url.split("/")[-1]
    if platform in _CLEANED_PLATFORMS:
        name = _NOT_WORD.sub("_", name)
    return name.split(".")[0]


def open_video_features(source: str | Path, store_path: Path, num_videos: int, dim: int | None = None) -> VideoFeatures:
    """The video features of `source` (any layout of the module docstring) for a store's `num_videos` samples."""
    src = Path(source)
    if not src.exists():
        raise UserError(f"--video-features {src}: no such file or directory")
    if src.is_dir():
        if any((src / d).is_dir() for d in REFERENCE_PLATFORM_DIRS.values()):
            return _reference_dir(src, store_path, num_videos, dim)
        return _sample_dir(src, store_path, num_videos, dim)
    if src.suffix == ".npy":
        return _npy_matrix(src, num_videos, dim)
    if src.suffix == ".parquet":
        return _parquet(src, store_path, num_videos, dim)
    raise UserError(f"--video-features {src}: expected a directory (<platform>/<video id>.pth or <sample id>.npy), "
                    "a .npy matrix or a .parquet file")


def describe(features_meta: dict) -> str | None:
    """One line for the command line saying how many videos and samples an import matched (None: no import)."""
    report = features_meta.get("video", {}).get("import")
    if not report:
        return None
    if "videos_matched" in report:
        videos = report["videos_matched"] + report["videos_missing"]
        return (f"video features: {report['videos_matched']:,} of {videos:,} videos matched "
                f"({report['samples_matched']:,} samples), {report['videos_missing']:,} missing "
                f"({report['samples_missing']:,} samples get zeros)")
    return (f"video features: {report['samples_matched']:,} samples matched, "
            f"{report['samples_missing']:,} missing (zeros)")


def _store_columns(store_path: Path, columns: list[str]) -> dict[str, list]:
    import pyarrow.parquet as pq

    table = pq.read_table(store_path / "samples.parquet", columns=columns)
    return {c: table.column(c).to_pylist() for c in columns}


def _reference_dir(src: Path, store_path: Path, num_videos: int, dim: int | None) -> VideoFeatures:
    """`src/<platform>/<video id>.pth`, matched to samples through their url as the reference code does."""
    cols = _store_columns(store_path, ["sample_id", "url", "platform"])
    available = {d: _names_with_suffix(src / d, ".pth") for d in REFERENCE_PLATFORM_DIRS.values()}
    keys = []
    for sid, url, platform in zip(cols["sample_id"], cols["url"], cols["platform"]):
        vid = reference_video_id(url, platform) if url else str(sid)  # no url: the sample id names the video
        keys.append(f"{REFERENCE_PLATFORM_DIRS[platform]}/{vid}")
    found = [k.split("/", 1)[1] in available[k.split("/", 1)[0]] for k in keys]
    example = src / f"{keys[0]}.pth" if keys else src
    return _file_rows(src, keys, found, ".pth", _load_pth, num_videos, dim, example, per_video=True)


def _sample_dir(src: Path, store_path: Path, num_videos: int, dim: int | None) -> VideoFeatures:
    """`src/<sample id>.npy`, one vector per sample."""
    keys = [str(s) for s in _store_columns(store_path, ["sample_id"])["sample_id"]]
    available = _names_with_suffix(src, ".npy")
    if not available:
        raise UserError(f"--video-features {src}: no .npy files and no platform directories "
                        f"({', '.join(REFERENCE_PLATFORM_DIRS.values())})")
    found = [k in available for k in keys]
    return _file_rows(src, keys, found, ".npy", _load_npy, num_videos, dim, src / "<sample id>.npy", per_video=False)


def _names_with_suffix(folder: Path, suffix: str) -> set[str]:
    """File names in `folder` ending in `suffix`, without it (empty if `folder` is absent)."""
    if not folder.is_dir():
        return set()
    with os.scandir(folder) as entries:
        return {e.name[: -len(suffix)] for e in entries if e.name.endswith(suffix)}


def _file_rows(src: Path, keys: list[str], found: list[bool], suffix: str, load: Callable[[Path], np.ndarray],
               num_videos: int, dim: int | None, example: Path, *, per_video: bool) -> VideoFeatures:
    """Rows read from one file per key (`src/<key><suffix>`); rows whose file is absent are zeros."""
    if len(keys) != num_videos:
        raise UserError(f"{src}: the store lists {len(keys)} samples for {num_videos} video nodes")
    names = sorted({k for k, ok in zip(keys, found) if ok})
    if not names:
        raise UserError(f"--video-features {src}: no sample has a vector (expected files like {example})")
    file_index = {k: i for i, k in enumerate(names)}
    file_of_row = np.array([file_index[k] if ok else -1 for k, ok in zip(keys, found)], dtype=np.int64)
    paths = [src / f"{k}{suffix}" for k in names]
    d = int(dim or _first_width(paths, load, src))

    def encode(lo: int, hi: int) -> np.ndarray:
        rows = file_of_row[lo:hi]
        files, inverse = np.unique(rows, return_inverse=True)
        vectors = np.zeros((len(files), d), np.float32)
        for j, f in enumerate(files):
            if f >= 0:
                vectors[j] = _checked(load(paths[f]), d, paths[f])
        return vectors[inverse]

    samples_matched = int(sum(found))
    report: dict[str, int | str] = {"layout": f"<{'video id' if per_video else 'sample id'}>{suffix}",
                                    "samples_matched": samples_matched, "samples_missing": len(keys) - samples_matched}
    if per_video:
        videos = len(set(keys))
        report.update(videos_matched=len(names), videos_missing=videos - len(names))
    return VideoFeatures(d, encode, report)


def _first_width(paths: list[Path], load: Callable[[Path], np.ndarray | None], src: Path) -> int:
    """The number of values in the first readable file."""
    for path in paths:
        vector = load(path)
        if vector is not None:
            return int(vector.size)
    raise UserError(f"--video-features {src}: none of the {len(paths)} matching files can be read")


def _checked(vector: np.ndarray | None, dim: int, path: Path) -> np.ndarray:
    """A vector of `dim` values; zeros for an unreadable file (the reference code's fallback)."""
    if vector is None:
        return np.zeros(dim, np.float32)
    if vector.size != dim:
        raise UserError(f"--video-features {path}: {vector.size} values, expected {dim}")
    return vector


def _load_pth(path: Path) -> np.ndarray | None:
    """The tensor in a `.pth` file as float32, flattened; None (with a warning) if it cannot be read."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True).float().reshape(-1).numpy()
    except Exception as exc:  # the reference code, too, turns any unreadable file into zeros
        log.warning("video features: cannot read %s (%s); using zeros", path, exc)
        return None


def _load_npy(path: Path) -> np.ndarray | None:
    """The array in a `.npy` file as float32, flattened; None (with a warning) if it cannot be read."""
    try:
        return np.load(path, allow_pickle=False).astype(np.float32).reshape(-1)
    except (OSError, ValueError) as exc:
        log.warning("video features: cannot read %s (%s); using zeros", path, exc)
        return None


def _npy_matrix(src: Path, num_videos: int, dim: int | None) -> VideoFeatures:
    """A `[num_videos, d]` matrix in node order, memory-mapped and read by block."""
    mat = np.load(src, mmap_mode="r")
    if mat.ndim != 2 or mat.shape[0] != num_videos or (dim and mat.shape[1] != dim):
        raise UserError(f"--video-features {src}: shape {mat.shape}, expected ({num_videos}, {dim or 'd'}) in node order")
    report: dict[str, int | str] = {"layout": "matrix", "samples_matched": num_videos, "samples_missing": 0}
    return VideoFeatures(int(mat.shape[1]), lambda lo, hi: np.asarray(mat[lo:hi], dtype=np.float32), report)


def _parquet(src: Path, store_path: Path, num_videos: int, dim: int | None) -> VideoFeatures:
    """Rows of a Parquet file (`sample_id`, `features`) in any order, sorted into node order on disk."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(src)
    if not {"sample_id", "features"} <= set(pf.schema_arrow.names):
        raise UserError(f"--video-features {src}: needs columns 'sample_id' and 'features'")
    index = {str(s): i for i, s in enumerate(_store_columns(store_path, ["sample_id"])["sample_id"])}
    ids = [str(s) for s in pq.read_table(src, columns=["sample_id"]).column(0).to_pylist()]
    matched = len({s for s in ids if s in index})
    first = next((v for b in pf.iter_batches(batch_size=64, columns=["features"]) for v in b.column(0).to_pylist() if v), None)
    d = int(dim or (len(first) if first else 0))
    if not d:
        raise UserError(f"--video-features {src}: no vectors")
    scratch: list = []  # filled on the first block: a job already complete never pays for the sort

    def encode(lo: int, hi: int) -> np.ndarray:
        if not scratch:
            scratch.append(_sort_parquet_rows(pf, src, index, num_videos, d, store_path))
        return _read_rows(scratch[0], lo, hi, d)

    report: dict[str, int | str] = {"layout": "parquet", "samples_matched": matched, "samples_missing": num_videos - matched}
    return VideoFeatures(d, encode, report)


def _sort_parquet_rows(pf, src: Path, index: dict[str, int], num_videos: int, dim: int, scratch_dir: Path):
    """An unlinked float32 scratch file of `num_videos` rows in node order (holes read as zeros)."""
    import pyarrow.compute as pc

    f = tempfile.TemporaryFile(dir=scratch_dir, prefix="video-features-")
    row_bytes = dim * 4
    os.ftruncate(f.fileno(), num_videos * row_bytes)
    for batch in pf.iter_batches(batch_size=1024, columns=["sample_id", "features"]):
        feats = batch.column(1)
        lengths = pc.fill_null(pc.list_value_length(feats), 0).to_numpy(zero_copy_only=False)
        values = feats.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
        starts = np.concatenate([[0], np.cumsum(lengths)])
        for sid, k, start in zip(batch.column(0).to_pylist(), lengths, starts):
            node = index.get(str(sid))
            if node is None or k == 0:
                continue
            if k != dim:
                raise UserError(f"--video-features {src}: sample {sid} has dimension {k}, expected {dim}")
            os.pwrite(f.fileno(), values[start:start + k].tobytes(), node * row_bytes)
    return f


def _read_rows(f, lo: int, hi: int, dim: int) -> np.ndarray:
    """Rows [lo, hi) of a float32 scratch file."""
    data = os.pread(f.fileno(), (hi - lo) * dim * 4, lo * dim * 4)
    return np.frombuffer(data, dtype=np.float32).reshape(hi - lo, dim)
