"""`GraphStore.open()`: a built store, topology memory-mapped, everything else read lazily."""
from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zarr

from graphstore.errors import UserError
from graphstore.schema import FORMAT_VERSION
from graphstore.topology import Relation, Topology
from graphstore.zarr_io import read_array

SPLITS = ("train", "val", "test")


class GraphStore:
    """Read access to a store written by `graphstore build` (docs/FORMAT.md)."""

    def __init__(self, path: Path, root: zarr.Group, meta: dict[str, Any]):
        self.path = path
        self.root = root
        self.meta = meta

    @classmethod
    def open(cls, path: str | Path, mode: str = "r") -> "GraphStore":
        """Open a store; raises UserError when `path` is not a store of a known version."""
        path = Path(path)
        if not (path / "zarr.json").is_file():
            raise UserError(f"{path}: not a graphstore (no zarr.json); build one with `graphstore build`")
        root = zarr.open_group(str(path), mode=mode, zarr_format=3)
        meta = root.attrs.get("graphstore")
        if not isinstance(meta, dict) or meta.get("format") != "graphstore":
            raise UserError(f"{path}: a Zarr group but not a graphstore (no 'graphstore' metadata)")
        if meta.get("format_version") != FORMAT_VERSION:
            raise UserError(f"{path}: format version {meta.get('format_version')} is not supported (this is {FORMAT_VERSION})")
        return cls(path, root, meta)

    # --- graph structure ---------------------------------------------------------------
    @property
    def node_types(self) -> list[str]:
        return list(self.meta["node_types"])

    def num_nodes(self, node_type: str) -> int:
        return int(self.meta["node_types"][node_type])

    @cached_property
    def topology(self) -> Topology:
        """All relations with their index arrays memory-mapped."""
        rels = {}
        for r in self.meta["relations"]:
            arrays = {}
            group = self.path / "topology" / r["name"]
            if group.is_dir():
                for child in group.iterdir():
                    if (child / "zarr.json").is_file():
                        arrays[child.name] = read_array(self.path, f"topology/{r['name']}/{child.name}")
            rels[r["name"]] = Relation(
                name=r["name"], head=r["head"], kind=r["kind"], tail=r["tail"],
                head_index=arrays.get("head"), indptr=arrays.get("indptr"), indices=arrays.get("indices"),
                members=arrays.get("members"), lo=arrays.get("lo"), hi=arrays.get("hi"),
            )
        return Topology(num_nodes={k: int(v) for k, v in self.meta["node_types"].items()}, relations=rels)

    @property
    def relations(self) -> list[Relation]:
        return list(self.topology.relations.values())

    def _relation(self, relation: str) -> Relation:
        try:
            return self.topology.relations[relation]
        except KeyError:
            raise UserError(f"unknown relation {relation!r}; known: {', '.join(self.topology.relations)}") from None

    def num_edges(self, relation: str) -> int:
        """Logical edge count of a relation (implicit bucket edges counted)."""
        self._relation(relation)
        return int(next(r["num_edges"] for r in self.meta["relations"] if r["name"] == relation))

    def in_degree(self, relation: str, v: int) -> int:
        return self._relation(relation).in_degree(int(v))

    def in_neighbors(self, relation: str, v: int) -> np.ndarray:
        """Exact global head ids of video v's in-neighbours in `relation`."""
        return self._relation(relation).in_neighbors(int(v))

    # --- columns, labels, splits --------------------------------------------------------
    def column(self, name: str) -> np.ndarray:
        """A per-video column (docs/FORMAT.md), node order."""
        if f"columns/{name}" not in self._array_names:
            raise UserError(f"no column {name!r}; columns: {', '.join(sorted(self.root['columns'].array_keys()))}")
        return self.root[f"columns/{name}"][...]

    @cached_property
    def _array_names(self) -> set[str]:
        names = set()
        for group in ("columns", "splits"):
            if group in self.root:
                names.update(f"{group}/{k}" for k in self.root[group].array_keys())
        return names

    def labels(self) -> np.ndarray:
        """Influence level (int8) of every video node."""
        return self.column("level")

    def split(self, name: str) -> np.ndarray:
        """Video node ids (int64, ascending) of split `name`."""
        if name not in SPLITS:
            raise UserError(f"unknown split {name!r}; splits: {', '.join(SPLITS)}")
        return self.root[f"splits/{name}"][...].astype(np.int64)

    # --- tables -------------------------------------------------------------------------
    def samples_table(self, columns: Iterable[str] | None = None) -> pa.Table:
        """The sample table (samples.parquet), one row per video node in node order."""
        return pq.read_table(self.path / "samples.parquet", columns=list(columns) if columns else None)

    def comments_table(self, columns: Iterable[str] | None = None) -> pa.Table:
        """The comment table (comments.parquet), one row per comment node in node order."""
        return pq.read_table(self.path / "comments.parquet", columns=list(columns) if columns else None)

    @cached_property
    def _sample_ids(self) -> list[str]:
        return self.samples_table(["sample_id"]).column(0).to_pylist()

    def sample_ids(self) -> list[str]:
        """Original sample id of every video node, node order."""
        return list(self._sample_ids)

    @cached_property
    def _index_of(self) -> dict[str, int]:
        return {sid: i for i, sid in enumerate(self._sample_ids)}

    def video_index(self, sample_ids: Iterable[str]) -> np.ndarray:
        """Video node ids of the given sample ids; UserError names an unknown id."""
        out = []
        for sid in sample_ids:
            node = self._index_of.get(str(sid))
            if node is None:
                raise UserError(f"sample {sid}: not in the store {self.path}")
            out.append(node)
        return np.asarray(out, dtype=np.int64)

    # --- features and embeddings --------------------------------------------------------
    def features(self, node_type: str, name: str = "x"):
        """A feature matrix of `node_type`, read lazily by chunk (see graphstore.features)."""
        from graphstore.features import open_feature

        return open_feature(self, node_type, name)

    def embeddings(self, run_name: str) -> zarr.Array:
        """Stage-1 video embeddings written by `netgpt embed`."""
        key = f"embeddings/{run_name}"
        if key not in self.root:
            raise UserError(f"{self.path}: no embeddings {run_name!r}; run `netgpt embed` first")
        return self.root[key]

    def verify(self) -> list[str]:
        """Arrays (topology, columns, splits, features) whose bytes no longer match their recorded checksums."""
        from graphstore.zarr_io import array_checksum

        digests = dict(self.meta.get("checksums", {}))
        digests.update({f"features/{t}/{f['name']}": f["xxh64"] for t, f in self.meta.get("features", {}).items()
                        if f.get("xxh64")})
        return [name for name, digest in digests.items()
                if name not in self.root or array_checksum(self.root[name]) != digest]

    def __repr__(self) -> str:
        return f"GraphStore({str(self.path)!r}, videos={self.num_nodes('video')})"
