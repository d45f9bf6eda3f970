"""Import precomputed per-video feature vectors (`--video-features`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from graphstore.errors import UserError


def load_video_features(source: str | Path, store_path: Path, num_videos: int, dim: int | None = None) -> np.ndarray:
    """A [num_videos, d] float32 matrix in node order; videos without a vector get zeros.

    `source` is a directory of `<sample id>.npy` vectors, a `.npy` matrix already in node order,
    or a Parquet file with a `sample_id` column and one list column `features`.
    """
    import pyarrow.parquet as pq

    src = Path(source)
    if not src.exists():
        raise UserError(f"--video-features {src}: no such file or directory")
    sample_ids = pq.read_table(store_path / "samples.parquet", columns=["sample_id"]).column(0).to_pylist()
    index = {str(s): i for i, s in enumerate(sample_ids)}
    if src.is_dir():
        files = sorted(src.glob("*.npy"))
        if not files:
            raise UserError(f"--video-features {src}: no .npy files")
        vecs = {f.stem: np.load(f).ravel() for f in files if f.stem in index}
        d = dim or (len(next(iter(vecs.values()))) if vecs else 0)
        if not d:
            raise UserError(f"--video-features {src}: no file is named after a sample id of the store")
        out = np.zeros((num_videos, d), np.float32)
        for key, v in vecs.items():
            if v.shape[0] != d:
                raise UserError(f"--video-features {src}/{key}.npy: dimension {v.shape[0]}, expected {d}")
            out[index[key]] = v
        return out
    if src.suffix == ".npy":
        mat = np.load(src, mmap_mode="r")
        if mat.ndim != 2 or mat.shape[0] != num_videos:
            raise UserError(f"--video-features {src}: shape {mat.shape}, expected ({num_videos}, d) in node order")
        return mat
    if src.suffix == ".parquet":
        table = pq.read_table(src)
        if "sample_id" not in table.column_names or "features" not in table.column_names:
            raise UserError(f"--video-features {src}: needs columns 'sample_id' and 'features'")
        ids = [str(s) for s in table.column("sample_id").to_pylist()]
        feats = table.column("features").to_pylist()
        d = dim or (len(feats[0]) if feats else 0)
        out = np.zeros((num_videos, d), np.float32)
        for sid, v in zip(ids, feats):
            if sid in index:
                if len(v) != d:
                    raise UserError(f"--video-features {src}: sample {sid} has dimension {len(v)}, expected {d}")
                out[index[sid]] = v
        return out
    raise UserError(f"--video-features {src}: expected a directory of .npy files, a .npy matrix or a .parquet file")
