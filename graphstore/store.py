"""`GraphStore.open()`: a built store, topology memory-mapped, everything else read lazily."""
from __future__ import annotations

import weakref
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pyarrow as pa
import zarr

from graphstore.errors import UserError
from graphstore.features.array import FeatureArray, open_feature
from graphstore.format.generations import current, exclusive
from graphstore.format.damage import StoreDamaged, damaged, read_document
from graphstore.format.integrity import check_chunk_files, check_table_files, store_id, verify_tables
from graphstore.format.tables import read_table_files, table_files
from graphstore.schema import FORMAT_VERSION, READABLE_FORMAT_VERSIONS
from graphstore.topology import Relation, Topology
from graphstore.format.arrays import checksum_matches, read_array


SPLITS = ("train", "val", "test")


class GraphStore:
    """Read access to a store written by `graphstore build` (docs/FORMAT.md).

    `location` is the directory the store was opened by; `path` the directory of the generation it
    pointed at then (the same directory until the first append), where every file of this handle is read.
    """

    def __init__(self, path: Path, root: zarr.Group, meta: dict[str, Any], location: Path | None = None) -> None:
        self.path = path
        self.root = root
        self.meta = meta
        self.location = path if location is None else location
        self._features: weakref.WeakSet[FeatureArray] = weakref.WeakSet()
        self.closed = False

    def __enter__(self) -> GraphStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the feature arrays this store opened and drops its memory-mapped topology and caches."""
        for arr in list(self._features):
            arr.close()
        self._features.clear()
        for name in ("topology", "_sample_ids", "_index_of", "_array_names"):
            self.__dict__.pop(name, None)
        self.closed = True

    @classmethod
    @contextmanager
    def open_for_writing(cls, path: str | Path) -> Iterator[GraphStore]:
        """The store at `path` under its writer lock, opened at the generation current once the lock is held
        (a UserError for what is not a store comes before the lock is taken)."""
        location = cls.open(path).location
        with exclusive(location):
            yield cls.open(location)

    @classmethod
    def open(cls, path: str | Path, mode: str = "r") -> GraphStore:
        """Open a store's current generation; raises UserError when `path` is not a store of a known version."""
        location = Path(path)
        if location.exists() and not location.is_dir():
            raise UserError(f"{location}: a file, not a graphstore directory")
        for attempt in range(3):  # an append may delete the generation read a moment ago: read the pointer again
            try:
                data, _ = current(location)
            except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError, IsADirectoryError) as e:
                raise damaged(location, "the store's metadata", location / "zarr.json", f"unreadable ({e})",
                              verify=False) from None
            if (data / "zarr.json").is_file() or attempt == 2:
                break
        if not (data / "zarr.json").is_file():
            raise UserError(f"{location}: not a graphstore (no {data / 'zarr.json'}); build one with `graphstore build`")
        doc = read_document(data / "zarr.json", "the store's metadata", data, verify=False)
        try:
            root = zarr.open_group(str(data), mode=mode, zarr_format=3)
        except (ValueError, TypeError, KeyError) as e:
            raise damaged(data, "the store's metadata", data / "zarr.json", f"not a Zarr group document ({e})",
                          verify=False) from None
        meta = doc.get("attributes", {}).get("graphstore") if isinstance(doc.get("attributes"), dict) else None
        if not isinstance(meta, dict) or meta.get("format") != "graphstore":
            raise UserError(f"{location}: a Zarr group but not a graphstore (no 'graphstore' metadata)")
        if meta.get("format_version") not in READABLE_FORMAT_VERSIONS:
            raise UserError(f"{location}: format version {meta.get('format_version')} is not supported "
                            f"(this is {FORMAT_VERSION})")
        for key in ("node_types", "relations", "splits"):
            if not isinstance(meta.get(key), (dict, list)):
                raise damaged(data, "the store's metadata", data / "zarr.json", f"no valid {key!r} entry", verify=False)
        return cls(data, root, meta, location)

    @property
    def store_id(self) -> str | None:
        """The store's identity: made by its build, kept by append and featurize (docs/FORMAT.md)."""
        return store_id(self.meta)

    @property
    def generation(self) -> int:
        """0 for a built store, k after its k-th append."""
        return int(self.meta.get("generation", 0))

    # --- graph structure ---------------------------------------------------------------
    @property
    def node_types(self) -> list[str]:
        """Node type names, in store order."""
        return list(self.meta["node_types"])

    def num_nodes(self, node_type: str) -> int:
        """Number of nodes of a type; UserError naming an unknown type."""
        counts = self.meta["node_types"]
        if node_type not in counts:
            raise UserError(f"unknown node type {node_type!r}; node types: {', '.join(counts)}")
        return int(counts[node_type])

    @cached_property
    def topology(self) -> Topology:
        """All relations with their index arrays memory-mapped."""
        if self.closed:
            raise UserError(f"{self.path}: the store is closed")
        rels = {}
        recorded = {name for name in self.meta.get("checksums", {}) if name.startswith("topology/")}
        for r in self.meta["relations"]:
            arrays = {}
            group = self.path / "topology" / r["name"]
            names = {f"topology/{r['name']}/{c.name}" for c in group.iterdir() if (c / "zarr.json").is_file()} \
                if group.is_dir() else set()
            for name in sorted(names | {n for n in recorded if n.rsplit("/", 1)[0] == f"topology/{r['name']}"}):
                arrays[name.rsplit("/", 1)[1]] = read_array(self.path, name)  # a recorded array must be there
            rels[r["name"]] = Relation.from_arrays(r["name"], r["head"], r["kind"], r["tail"], arrays)
        return Topology(num_nodes={k: int(v) for k, v in self.meta["node_types"].items()}, relations=rels)

    @property
    def relations(self) -> list[Relation]:
        """All relations, in store order."""
        return list(self.topology.relations.values())

    def num_edges(self, relation: str) -> int:
        """Logical edge count of a relation (implicit bucket edges counted); UserError if unknown."""
        self.topology.relation(relation)
        return int(next(r["num_edges"] for r in self.meta["relations"] if r["name"] == relation))

    def in_degree(self, relation: str, v: int) -> int:
        """In-degree of video v; UserError naming an unknown relation or an id outside 0..num_videos-1."""
        return self.topology.in_degree(relation, v)

    def in_neighbors(self, relation: str, v: int) -> np.ndarray:
        """Exact global head ids of video v's in-neighbours; UserError on an unknown relation or bad id."""
        return self.topology.in_neighbors(relation, v)

    # --- columns, labels, splits --------------------------------------------------------
    def column(self, name: str) -> np.ndarray:
        """A per-video column (docs/FORMAT.md), node order."""
        if f"columns/{name}" not in self._array_names:
            raise UserError(f"no column {name!r}; columns: {', '.join(sorted(self.root['columns'].array_keys()))}")
        return read_array(self.path, f"columns/{name}", mmap=False)

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
        return read_array(self.path, f"splits/{name}", mmap=False).astype(np.int64)

    # --- tables -------------------------------------------------------------------------
    def table_files(self, name: str) -> list[Path]:
        """The Parquet files of table `name` ('samples' or 'comments'), in node order (docs/FORMAT.md)."""
        files = table_files(self.path, name)
        check_table_files(self.path, name, files, self.meta)
        return files

    def samples_table(self, columns: Iterable[str] | None = None) -> pa.Table:
        """The sample table (samples.parquet), one row per video node in node order."""
        return read_table_files(self.path, "samples", self.table_files("samples"), columns)

    def comments_table(self, columns: Iterable[str] | None = None) -> pa.Table:
        """The comment table (comments.parquet), one row per comment node in node order."""
        return read_table_files(self.path, "comments", self.table_files("comments"), columns)

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

    # --- features --------------------------------------------------------------------
    def features(self, node_type: str, name: str = "x") -> FeatureArray:
        """A feature matrix of `node_type`, read lazily by chunk (closed with the store)."""
        self.num_nodes(node_type)
        arr = open_feature(self, node_type, name)
        self._features.add(arr)
        return arr

    def verify(self) -> list[str]:
        """Arrays (topology, columns, splits, features) and table files whose bytes no longer match their
        recorded checksums (`verify_problems` says what is wrong with each)."""
        return list(self.verify_problems())

    def verify_problems(self) -> dict[str, str]:
        """{array or table file: problem} of everything that no longer matches its recorded checksum."""
        digests = dict(self.meta.get("checksums", {}))
        digests.update({f"features/{t}/{f['name']}": f["xxh64"] for t, f in self.meta.get("features", {}).items()
                        if f.get("xxh64")})
        problems = {}
        for name, digest in digests.items():
            problem = _damage(self.path, self.root, name, digest)
            if problem:
                problems[name] = problem
        problems.update(verify_tables(self.path, self.meta))
        return problems

    def __repr__(self) -> str:
        return f"GraphStore({str(self.location)!r}, generation={self.generation}, videos={self.num_nodes('video')})"


StoreLike = GraphStore | str | Path


def opened(store: StoreLike) -> GraphStore:
    """The store itself, or the store opened at a path: for public functions that take either."""
    return store if isinstance(store, GraphStore) else GraphStore.open(store)


def _damage(data: Path, root: zarr.Group, name: str, digest) -> str | None:
    """What is wrong with array `name` (None: it matches `digest`): a missing or truncated chunk file is
    named, as is a chunk that no longer decodes."""
    try:
        check_chunk_files(data / name, name, data)
        if name not in root:
            return "missing"
        return None if checksum_matches(root[name], digest) else "checksum mismatch"
    except StoreDamaged as e:
        return f"{e.file}: {e.problem}"
    except (RuntimeError, ValueError, TypeError, KeyError, OSError) as e:
        return f"does not decode ({e})"
