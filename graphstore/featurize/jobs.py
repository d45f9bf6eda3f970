"""What featurize writes: one `FeatureJob` per node type, its rows encoded by range from the store's columns and tables."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from graphstore.errors import UserError
from graphstore.featurize.encoders import DEFAULT_TIME_ENCODING, log_count_encoding, time_dim, time_encoding
from graphstore.featurize.per_sample import SampleFeatures, sample_feature_names
from graphstore.featurize.text import HASH_DIM, TextEncoder, make_text_encoder
from graphstore.featurize.video import open_video_features
from graphstore.format.tables import table_files
from graphstore.store import GraphStore
from graphstore.format.arrays import ColumnReader

# node type -> (column, missing-mask column or None) for log(v + 1) features
COUNT_TYPES = {
    "video_time": ("duration", None), "likes": ("likes", "likes_missing"),
    "collects": ("collects", "collects_missing"), "views": ("views", "views_missing"),
    "shares": ("shares", "shares_missing"), "comments": ("comment_count", "comment_count_missing"),
    "fans": ("fans", "fans_missing"),
}
TIME_TYPES = {"time": "post_time", "ctime": "ctime"}
TEXT_TYPES = ("title", "description", "topic", "platform")


@dataclass
class FeatureJob:
    """One feature matrix to write: its rows come from `encode(lo, hi)`."""

    node_type: str
    rows: int
    dim: int
    source: str
    encode: Callable[[int, int], np.ndarray]
    report: dict[str, Any] | None = None  # what an import matched, kept in the metadata as "import"
    release: Callable[[], None] | None = None  # frees what `encode` set up, once the matrix is written


def _with_sample_features(job: FeatureJob, path: Path) -> FeatureJob:
    """The video job with the per-sample numeric features appended to its (visual) columns.

    The per-sample rows are computed by range (`SampleFeatures`), set up at the first rows asked for,
    so a resumed run whose video matrix is complete does not compute them.
    """
    state: dict[str, SampleFeatures] = {}
    visual = job.encode

    def encode(lo: int, hi: int) -> np.ndarray:
        if "rows" not in state:
            state["rows"] = SampleFeatures(GraphStore.open(path))
        return np.concatenate([np.asarray(visual(lo, hi), dtype=np.float64), state["rows"].rows(lo, hi)], axis=1)

    width = len(sample_feature_names())
    return FeatureJob(job.node_type, job.rows, job.dim + width, f"{job.source}+sample:v2", encode, job.report,
                      release=state.clear)


class TableColumn:
    """Rows of one column of a store table (its Parquet file, or the parts of an appended store) by range,
    one row group decoded at a time: the column is never held whole."""

    def __init__(self, files: Sequence[Path], column: str) -> None:
        import pyarrow.parquet as pq

        self.files, self.column = list(files), column
        self.groups: list[tuple[int, int, int, int]] = []  # (first row, end row, file, row group)
        start = 0
        for i, f in enumerate(self.files):
            meta = pq.ParquetFile(f).metadata
            for g in range(meta.num_row_groups):
                rows = meta.row_group(g).num_rows
                self.groups.append((start, start + rows, i, g))
                start += rows
        self.num_rows = start
        self._cached: tuple[int, Any] = (-1, None)

    def __len__(self) -> int:
        return self.num_rows

    def _group(self, k: int):
        import pyarrow.parquet as pq

        if self._cached[0] != k:
            _, _, i, g = self.groups[k]
            self._cached = (k, pq.ParquetFile(self.files[i]).read_row_group(g, columns=[self.column]).column(0))
        return self._cached[1]

    def arrow(self, lo: int, hi: int):
        """Rows [lo, hi) as a pyarrow ChunkedArray."""
        import pyarrow as pa

        parts = []
        for k, (a, b, _, _) in enumerate(self.groups):
            if b > lo and a < hi:
                parts.extend(self._group(k).slice(max(lo, a) - a, min(hi, b) - max(lo, a)).chunks)
        return pa.chunked_array(parts) if parts else pa.chunked_array([], type=self._type())

    def _type(self):
        import pyarrow.parquet as pq

        return pq.read_schema(self.files[0]).field(self.column).type

    def texts(self, lo: int, hi: int) -> list[str]:
        """Rows [lo, hi) as strings (null as '')."""
        return [x or "" for x in self.arrow(lo, hi).to_pylist()]

    def numpy(self, lo: int, hi: int, dtype: type = np.float64) -> np.ndarray:
        """Rows [lo, hi) as a NumPy array."""
        return self.arrow(lo, hi).to_numpy().astype(dtype)


def video_parts(info: dict) -> dict[str, list[int]]:
    """Column ranges [lo, hi) of the video matrix: 'visual' and (stores featurized since sample:v1) 'sample'."""
    if "parts" in info:
        return {k: list(v) for k, v in info["parts"].items()}
    return {"visual": [0, int(info["dim"])]}


def store_jobs(root: zarr.Group, path: Path, meta: dict, text: TextEncoder, video_features: str | None,
          video_dim: int | None, time_scheme: str) -> list[FeatureJob]:
    """One job per node type; every job reads its inputs by row range (columns by chunk, text by row group)."""
    n = {t: int(c) for t, c in meta["node_types"].items()}
    col = lambda name: ColumnReader(root[f"columns/{name}"])  # noqa: E731
    jobs: list[FeatureJob] = []

    if "video" in n:
        if video_features:
            vids = open_video_features(video_features, path, n["video"], video_dim)
            jobs.append(FeatureJob("video", n["video"], vids.dim, f"import:{video_features}", vids.encode, vids.report))
        else:
            d = int(video_dim or 1)
            jobs.append(FeatureJob("video", n["video"], d, "none (zeros)", lambda lo, hi, d=d: np.zeros((hi - lo, d))))
    for t, c in TIME_TYPES.items():
        if t in n:
            jobs.append(FeatureJob(t, n[t], time_dim(time_scheme), f"time-{time_scheme}:{c}",
                                   lambda lo, hi, s=col(c): time_encoding(s.rows(lo, hi), scheme=time_scheme)))
    for t, (c, m) in COUNT_TYPES.items():
        if t in n:
            jobs.append(FeatureJob(t, n[t], 2, f"log1p:{c}+mask", lambda lo, hi, v=col(c), mm=col(m) if m else None:
                                   log_count_encoding(v.rows(lo, hi).astype(np.float64),
                                                      None if mm is None else mm.rows(lo, hi))))
    texts: dict[str, Any] = {}
    if "title" in n or "description" in n:
        files = table_files(path, "samples")
        texts["title"], texts["description"] = TableColumn(files, "title"), TableColumn(files, "description")
    texts["topic"] = list(meta.get("topics", []))
    texts["platform"] = list(meta.get("platforms", []))
    for t in TEXT_TYPES:
        if t in n:
            if len(texts[t]) != n[t]:
                raise UserError(f"{path}: {n[t]} {t} nodes but {len(texts[t])} texts in the store")
            rows = texts[t].texts if isinstance(texts[t], TableColumn) else \
                (lambda lo, hi, s=texts[t]: [x or "" for x in s[lo:hi]])
            jobs.append(FeatureJob(t, n[t], text.dim, f"text:{text.name}", lambda lo, hi, r=rows: text.encode(r(lo, hi))))
    if "comment" in n:
        files = table_files(path, "comments")
        ctext, cts = TableColumn(files, "text"), TableColumn(files, "timestamp")

        def comment(lo: int, hi: int) -> np.ndarray:
            return np.concatenate([text.encode(ctext.texts(lo, hi)),
                                   time_encoding(cts.numpy(lo, hi), scheme=time_scheme)], axis=1)

        jobs.append(FeatureJob("comment", n["comment"], text.dim + time_dim(time_scheme),
                               f"text:{text.name}+time-{time_scheme}:timestamp", comment))
    return [_with_sample_features(j, path) if j.node_type == "video" else j for j in jobs]


def encoder_record(text_encoder: str, text_dim: int, text_kwargs: dict[str, Any] | None, video_features: str | None,
                   video_dim: int | None) -> dict[str, Any]:
    """The encoder settings kept per node type in the metadata (`features.<type>.encoder`), paths made absolute."""
    spec = text_encoder if text_encoder in ("hash", "minilm") else str(Path(text_encoder).resolve())
    return {"text_encoder": spec, "text_dim": int(text_dim), "text_kwargs": dict(text_kwargs or {}),
            "video_features": str(Path(video_features).resolve()) if video_features else None, "video_dim": video_dim}


def recorded_encoder(features_meta: dict[str, dict], node_type: str) -> dict[str, Any]:
    """The encoder that featurized `node_type`: its record, or what the sources imply for stores featurized before records."""
    info = features_meta[node_type]
    if "encoder" in info:
        return dict(info["encoder"])
    text = {t: features_meta[t] for t in TEXT_TYPES if t in features_meta}
    if any(not f["source"].startswith("text:hash") for f in text.values()):
        raise UserError(f"features/{node_type}: featurized without a recorded text encoder; "
                        "run `graphstore featurize --overwrite` once to record it")
    video = features_meta.get("video", {})
    source = video.get("source", "")
    imported = source.split("+")[0][len("import:"):] if source.startswith("import:") else None
    visual_dim = int(video.get("parts", {}).get("visual", [0, video.get("dim", 1)])[1])
    return encoder_record("hash", next(iter(text.values()))["dim"] if text else HASH_DIM, None, imported,
                          None if imported else visual_dim)


def jobs_for_types(root: zarr.Group, path: Path, meta: dict, node_types: Sequence[str],
                   encoder: dict[str, Any]) -> list[FeatureJob]:
    """The FeatureJobs of `node_types` alone, with a recorded encoder; only these types' data is read.

    `root`, `path` and `meta` may describe a part of a store (the rows an append adds), whose
    `meta["node_types"]` gives the rows of each type.
    """
    wanted = {t: int(meta["node_types"][t]) for t in node_types}
    text = make_text_encoder(encoder["text_encoder"], dim=encoder["text_dim"], **encoder.get("text_kwargs", {}))
    jobs = store_jobs(root, path, {**meta, "node_types": wanted}, text, encoder["video_features"], encoder["video_dim"],
                 meta.get("time_encoding") or DEFAULT_TIME_ENCODING)
    return [j for j in jobs if j.node_type in wanted]
