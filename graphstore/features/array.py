"""`FeatureArray`: batched row gather from a row-chunked Zarr feature matrix (memory maps or a SIEVE chunk cache)."""
from __future__ import annotations

import mmap
import os
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graphstore.errors import UserError
from graphstore.format.generations import current
from graphstore.features.cache import POLICIES
from graphstore.format.damage import StoreDamaged, damaged, read_document
from graphstore.format.integrity import check_chunk_files
from graphstore.format.layout import ArrayLayout

try:
    from graphstore import _gather_cpp
except ImportError:  # the extension is optional: NumPy fancy indexing is the fallback
    _gather_cpp = None

# chunk-cache budget of one FeatureArray opened on its own (a loader shares its own budget, LOADER_FEATURE_BYTES
# in graphstore.pyg, among the arrays it opens)
CHUNK_CACHE_BYTES = 64 << 20
# raw arrays: 'mmap' maps the chunk files (fastest; the pages a process touches count in its RSS, and
# the kernel's fault-around maps up to 64 KiB around each), 'pread' reads rows with pread() (RSS stays
# flat however much is read; needs the C++ kernel, else the chunk cache serves the array)
RAW_READS = ("mmap", "pread")
MAX_MAPPED_CHUNKS = 4096  # per array, far below the kernel's default limit of 65,530 mappings per process


@dataclass
class ChunkLayout:
    """What the direct chunk reader needs from an array's zarr.json."""

    shape: tuple[int, int]
    dtype: np.dtype
    chunk_rows: int
    codec: str  # "raw", "blosc" or "zarr" (anything else: read through zarr)
    fill_value: float
    files: ArrayLayout  # the array document, which names the chunk files

    @property
    def row_bytes(self) -> int:
        return int(self.dtype.itemsize * self.shape[1])


def read_layout(array_dir: Path, meta: dict | None = None) -> ChunkLayout:
    """Parse a 2-d Zarr v3 array's metadata (`meta`: its zarr.json, already read); codec 'zarr' when the
    fast path does not apply. StoreDamaged when the document is not valid JSON or not an array's."""
    array_dir = Path(array_dir)
    what, data_dir = _array_name(array_dir), array_dir.parent.parent.parent
    if meta is None:
        meta = read_document(array_dir / "zarr.json", what, data_dir)
    try:
        return _layout_of(meta)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise damaged(data_dir, what, array_dir / "zarr.json", f"not a Zarr array document ({e!r})") from None


def _array_name(array_dir: Path) -> str:
    """'features/<type>/<name>' of a feature array's directory."""
    return f"features/{array_dir.parent.name}/{array_dir.name}"


def _layout_of(meta: dict) -> ChunkLayout:
    layout = ArrayLayout.parse(meta)
    codec = "zarr"
    if layout.row_chunked and layout.regular_keys and layout.little_endian and layout.codecs[:1] == ("bytes",):
        codec = {(): "raw", ("blosc",): "blosc"}.get(layout.codecs[1:], "zarr")
    return ChunkLayout(shape=layout.matrix_shape, dtype=layout.dtype, chunk_rows=layout.chunk_rows, codec=codec,
                       fill_value=layout.fill_value, files=layout)


class _ChunkMaps(list):
    """One process's memory maps of an array's chunks (a list, so that it can be weakly referenced).

    Items are the chunks as arrays over `mmaps[c]` (a file map), or fill-value arrays for absent chunks.
    """

    def __init__(self, n_chunks: int):
        super().__init__([None] * n_chunks)
        self.mmaps: list[mmap.mmap] = []


_MAPS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _open_raw_chunk(arr: "FeatureArray", path: Path, expected: int) -> int:
    """A read-only descriptor of a raw chunk file, after checking it holds `expected` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise arr.damaged(path, "chunk file missing") from None
    size = os.fstat(fd).st_size
    if size != expected:
        os.close(fd)
        raise arr.damaged(path, f"chunk file has {size:,} bytes, expected {expected:,}")
    return fd


def _open_chunks(arr: "FeatureArray", n_chunks: int) -> np.ndarray:
    """File descriptors of an array's chunk files (-1: absent), closed when `arr` is collected."""
    expected = arr.chunk_rows * arr.layout.row_bytes
    fds = np.full(n_chunks, -1, np.int64)
    weakref.finalize(arr, _close_fds, fds)
    for c in range(n_chunks):
        fds[c] = _open_raw_chunk(arr, arr.chunk_file(c), expected)
    return fds


def _close_fds(fds: np.ndarray) -> None:
    for fd in fds[fds >= 0]:
        try:
            os.close(int(fd))
        except OSError:
            pass


def _shared_maps(path: Path, n_chunks: int) -> _ChunkMaps:
    """The chunk maps of one array, shared by every FeatureArray over it in this process.

    Each loader (train, val, test, every epoch) opens its own FeatureArrays; separate maps of the
    same file would count its cached pages once per map in RSS. The key holds the pid and the
    metadata file's inode and mtime, so a fork or a rewritten array gets maps of its own.
    """
    st = os.stat(path / "zarr.json")
    key = (str(path.resolve()), os.getpid(), st.st_ino, st.st_mtime_ns)
    maps = _MAPS.get(key)
    if maps is None or len(maps) != n_chunks:
        maps = _ChunkMaps(n_chunks)
        _MAPS[key] = maps
    return maps


class FeatureArray:
    """Row gather over `features/<type>/<name>`.

    Raw chunks are memory-mapped (one set of maps per array and process) and copied row by row by
    the C++ kernel (NumPy when it is not built; the page cache is the cache), or with
    raw_read="pread" read row by row (runs of consecutive ids at once) so that no page is mapped
    into the process and its RSS stays flat however much is read. Compressed chunks are
    read once per gather, grouped by chunk, and hot ones stay in a byte-bounded cache (SIEVE by
    default) laid out as one slab [slots, chunk_rows, dim], so hits are one vectorised fancy index.
    Maps, file handles, cache and slab are created lazily and re-created after a fork, so one object
    may be pickled into DataLoader workers or shared through fork safely (reads use os.pread).
    """

    def __init__(self, array_dir: str | Path, cache_bytes: int = CHUNK_CACHE_BYTES, policy: str = "sieve",
                 map_raw: bool | None = None, kernel: bool = True, raw_read: str = "mmap"):
        self.path = Path(array_dir)
        if not (self.path / "zarr.json").is_file():
            raise UserError(f"{self.path}: no feature array (run `graphstore featurize`)")
        if policy not in POLICIES:
            raise UserError(f"cache policy must be one of {sorted(POLICIES)}, got {policy!r}")
        if raw_read not in RAW_READS:
            raise UserError(f"raw_read must be one of {RAW_READS}, got {raw_read!r}")
        # once per open, off the hot path: every chunk file is there (raw ones of their size)
        self.layout = read_layout(self.path, check_chunk_files(self.path, _array_name(self.path), self._data_dir))
        self.cache_bytes, self.policy, self.map_raw = int(cache_bytes), policy, map_raw
        # the C++ kernel serves raw memory-mapped arrays; kernel=False keeps the NumPy path (benchmarks)
        self.kernel = bool(kernel) and _gather_cpp is not None
        self.raw_read = raw_read
        self._pid = -1
        self.stats = {"hits": 0, "misses": 0, "bytes_read": 0}

    @property
    def _data_dir(self) -> Path:
        return self.path.parent.parent.parent

    def damaged(self, path: Path | str, problem: str) -> StoreDamaged:
        """The error for a damaged file of this array."""
        return damaged(self._data_dir, _array_name(self.path), path, problem)

    # --- public API ---------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return self.layout.shape

    @property
    def dtype(self) -> np.dtype:
        return self.layout.dtype

    @property
    def chunk_rows(self) -> int:
        return self.layout.chunk_rows

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice):
            return self.gather(np.arange(self.shape[0])[key])
        return self.gather(np.asarray(key, dtype=np.int64))

    def gather(self, ids: np.ndarray, dtype: np.dtype | str | None = None, num_threads: int | None = None,
               out: np.ndarray | None = None) -> np.ndarray:
        """Rows `ids` (any order, repeats allowed) as a [len(ids), dim] array, in `dtype` (default: as stored).

        Raw memory-mapped arrays go through one C++ pass that converts float16 to float32 on the way
        when dtype is float32, on `num_threads` threads (default: all cores). `out`, a C-contiguous
        [len(ids), dim] array of that dtype, receives the rows (e.g. a buffer in shared memory).
        """
        ids = np.ascontiguousarray(ids, dtype=np.int64).ravel()
        n, dim = self.shape
        out_dtype = self.dtype if dtype is None else np.dtype(dtype)
        if out is not None and (out.shape != (ids.shape[0], dim) or out.dtype != out_dtype
                                or not out.flags.c_contiguous):
            raise ValueError(f"out must be a C-contiguous {(ids.shape[0], dim)} {out_dtype} array")
        if ids.size and (ids.min() < 0 or ids.max() >= n):
            raise UserError(f"{self.path}: row ids must lie in 0..{n - 1}")
        self._ensure_open()
        kernel_dtype = out_dtype == self.dtype or (out_dtype == np.float32 and self.dtype == np.float16)
        if kernel_dtype and (self._bases is not None or self._chunk_fds is not None):
            out = np.empty((ids.shape[0], dim), dtype=out_dtype) if out is None else out
            threads = int(num_threads or _gather_cpp.max_threads())
            convert = int(out_dtype != self.dtype)
            if self._bases is not None:
                _gather_cpp.gather_rows(self._bases, self.chunk_rows, dim, self.dtype.itemsize, ids, out,
                                        convert, threads)
            else:
                try:
                    _gather_cpp.gather_rows_pread(self._chunk_fds, self.chunk_rows, dim, self.dtype.itemsize, ids,
                                                  out, convert, threads, self._fill_row)
                except RuntimeError as e:  # a short read: a chunk file truncated since it was opened
                    raise self.damaged(self.path / "c", str(e)) from None
            return out
        rows = self._widen(self._gather_stored(ids), out_dtype)
        if out is None:
            return rows
        out[...] = rows
        return out

    def _widen(self, rows: np.ndarray, out_dtype: np.dtype) -> np.ndarray:
        """Stored rows in out_dtype (float16 -> float32 by the C++ converter when built)."""
        if out_dtype == self.dtype:
            return rows
        if _gather_cpp is not None and out_dtype == np.float32 and self.dtype == np.float16:
            wide = np.empty(rows.shape, dtype=np.float32)
            _gather_cpp.half_to_float32(rows.view(np.uint16), wide)  # F16C: NumPy's astype is ~5x slower
            return wide
        return rows.astype(out_dtype)

    def _gather_stored(self, ids: np.ndarray) -> np.ndarray:
        """The NumPy paths: memory-mapped chunks, or chunk reads through the cache."""
        n, dim = self.shape
        out = np.empty((ids.shape[0], dim), dtype=self.dtype)
        if ids.size == 0:
            return out
        cr = self.chunk_rows
        if self.layout.codec == "raw" and self._maps is not None:
            return self._gather_mapped(ids, out)
        chunk_of = ids // cr
        if self._table is not None:  # SIEVE, every chunk cached: one lookup per row, no sort
            slot_of = self._table[chunk_of]
            if slot_of.min() >= 0:
                self._cache.visited[slot_of] = True
                touched = np.count_nonzero(np.bincount(chunk_of, minlength=self._table.shape[0]))
                self.stats["hits"] += touched
                return self._slab[slot_of, ids - chunk_of * cr]
        uniq, inv = np.unique(chunk_of, return_inverse=True)
        local = ids - chunk_of * cr
        if self._slots is None:  # cache disabled: each chunk read into one scratch buffer
            order = np.argsort(inv, kind="stable")
            bounds = np.searchsorted(inv[order], np.arange(uniq.shape[0] + 1))
            buf = np.empty((cr, dim), dtype=self.dtype)
            for k, c in enumerate(uniq):
                sel = order[bounds[k]:bounds[k + 1]]
                out[sel] = self._read_chunk(int(c), into=buf)[local[sel]]
            return out
        if self._table is not None:  # SIEVE: vectorised lookup, a hit only sets its visited bit
            slot = self._table[uniq]
            hit = slot >= 0
            self._cache.visited[slot[hit]] = True
        else:
            slot = np.fromiter((self._cache.lookup(int(c)) for c in uniq), dtype=np.int64, count=uniq.shape[0])
            hit = slot >= 0
        n_hit = int(hit.sum())
        self.stats["hits"] += n_hit
        self.stats["misses"] += uniq.shape[0] - n_hit
        if n_hit == uniq.shape[0]:
            return self._slab[slot[inv], local]
        if n_hit:
            rows_hit = hit[inv]
            out[rows_hit] = self._slab[slot[inv[rows_hit]], local[rows_hit]]
        if not hit.all():
            miss_k = np.flatnonzero(~hit)
            # rows of each missed chunk, grouped by one stable sort of the inverse index
            rows_miss = np.flatnonzero(~hit[inv])
            order = rows_miss[np.argsort(inv[rows_miss], kind="stable")]
            bounds = np.searchsorted(inv[order], miss_k, side="left")
            ends = np.searchsorted(inv[order], miss_k, side="right")
            for k, lo, hi in zip(miss_k, bounds, ends):
                c = int(uniq[k])
                s, evicted = self._cache.insert(c)
                if self._table is not None:
                    if evicted is not None:
                        self._table[evicted] = -1
                    self._table[c] = s
                block = self._slab[s]
                self._read_chunk(c, into=block)
                sel = order[lo:hi]
                out[sel] = block[local[sel]]
        return out

    def _gather_mapped(self, ids: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Raw arrays: fancy-index memory-mapped chunk files (the OS page cache is the cache)."""
        cr = self.chunk_rows
        n_chunks = len(self._maps)
        if n_chunks == 1:
            return self._map(0)[ids]
        chunk_of = ids // cr
        order = np.argsort(chunk_of, kind="stable")
        bounds = np.searchsorted(chunk_of[order], np.arange(n_chunks + 1))
        for c in np.flatnonzero(np.diff(bounds)):
            sel = order[bounds[c]:bounds[c + 1]]
            out[sel] = self._map(int(c))[ids[sel] - c * cr]
        return out

    def _map(self, c: int) -> np.ndarray:
        mm = self._maps[c]
        if mm is None:
            path = self.chunk_file(c)
            shape = (self.chunk_rows, self.shape[1])
            fd = _open_raw_chunk(self, path, self.chunk_rows * self.layout.row_bytes)
            try:
                fmap = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
            finally:
                os.close(fd)  # the map keeps its own reference to the file
            self._maps.mmaps.append(fmap)
            mm = np.frombuffer(fmap, dtype=self.dtype).reshape(shape)
            self._maps[c] = mm
        return mm

    def clear_cache(self) -> None:
        """Drop all cached chunks (the next gather is cold)."""
        self._pid = -1

    def close(self) -> None:
        """Closes this array's chunk files and drops its cache and maps (a later gather reopens them)."""
        if self._pid == os.getpid() and self._chunk_fds is not None:
            _close_fds(self._chunk_fds)
            self._chunk_fds[:] = -1  # the finalizer holds the same array: it must not close reused numbers
        for name in ("_chunk_fds", "_maps", "_bases", "_cache", "_slab", "_zarr"):
            self.__dict__.pop(name, None)
        self._pid = -1

    # --- internals ----------------------------------------------------------------------
    def _ensure_open(self) -> None:
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._fds: dict[int, int] = {}
        self._zarr = None
        chunk_bytes = self.chunk_rows * self.layout.row_bytes
        n_chunks = -(-self.shape[0] // self.chunk_rows)
        capacity = min(n_chunks, self.cache_bytes // max(1, chunk_bytes))
        # raw chunks are memory-mapped (the kernel serves any chunk size; NumPy only pays off from 1 MiB),
        # compressed chunks go through the cache
        if self.map_raw is None:
            map_raw = chunk_bytes >= (1 << 20) or (self.kernel and n_chunks <= MAX_MAPPED_CHUNKS)
        else:
            map_raw = self.map_raw
        self._chunk_fds = None
        if self.layout.codec == "raw" and self.raw_read == "pread":
            map_raw = False  # nothing mapped: the kernel's pread reader, else reads through the chunk cache
            if self.kernel:
                self._chunk_fds = _open_chunks(self, n_chunks)
                self._fill_row = np.full(self.shape[1], self.layout.fill_value, dtype=self.dtype).view(np.uint8)
                capacity = 0
        self._maps = _shared_maps(self.path, n_chunks) if self.layout.codec == "raw" and map_raw else None
        self._bases = None
        if self._maps is not None:
            capacity = 0
            if self.kernel:  # every chunk mapped up front: the kernel needs each chunk's address
                self._bases = np.array([self._map(c).ctypes.data for c in range(n_chunks)], dtype=np.uint64)
        if capacity >= 1:
            self._cache = POLICIES[self.policy](capacity)
            # np.empty: pages are only touched (and counted in RSS) as slots fill
            self._slab = np.empty((capacity, self.chunk_rows, self.shape[1]), dtype=self.dtype)
            self._slots = capacity
            self._table = np.full(n_chunks, -1, np.int64) if self.policy == "sieve" else None
        else:
            self._cache, self._slab, self._slots, self._table = None, None, None, None
        if self.layout.codec == "blosc":
            import numcodecs

            self._blosc = numcodecs.Blosc()

    def chunk_file(self, c: int) -> Path:
        """The file of row chunk `c`."""
        return self.layout.files.chunk_file(self.path, c)

    def _read_chunk(self, c: int, into: np.ndarray | None = None) -> np.ndarray:
        """Chunk c as [chunk_rows, dim] (padded past the last row)."""
        shape = (self.chunk_rows, self.shape[1])
        out = np.empty(shape, dtype=self.dtype) if into is None else into
        codec = self.layout.codec
        if codec == "zarr":
            if self._zarr is None:
                import zarr

                self._zarr = zarr.open_array(str(self.path), mode="r")
            lo = c * self.chunk_rows
            hi = min(self.shape[0], lo + self.chunk_rows)
            try:
                block = np.asarray(self._zarr[lo:hi]).reshape(hi - lo, -1)
            except (ValueError, TypeError, RuntimeError, OSError) as e:
                raise self.damaged(self.path / "c" / str(c), f"chunk does not decode ({e})") from None
            out[: hi - lo] = block
            self.stats["bytes_read"] += block.nbytes
            return out
        path = self.chunk_file(c)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # it was there when the array was opened
            raise self.damaged(path, "chunk file missing") from None
        try:
            size = os.fstat(fd).st_size
            if codec == "raw":
                buf = out.reshape(-1).view(np.uint8)
                got = os.preadv(fd, [buf], 0) if size == buf.nbytes else -1
                if got != buf.nbytes:
                    raise self.damaged(path, f"chunk file has {size:,} bytes, expected {buf.nbytes:,}")
            else:
                data = os.pread(fd, size, 0)
                try:
                    got = self._blosc.decode(data, out=out.reshape(-1).view(np.uint8))
                except (RuntimeError, ValueError, TypeError) as e:
                    raise self.damaged(path, f"chunk does not decode ({e})") from None
                if got is not None and memoryview(got).nbytes != out.nbytes:
                    raise self.damaged(path, f"chunk decodes to {memoryview(got).nbytes:,} bytes, expected {out.nbytes:,}")
            self.stats["bytes_read"] += size
        finally:
            os.close(fd)
        return out

    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if not k.startswith("_") or k == "_pid"}
        state["_pid"] = -1  # the receiving process opens its own files and cache
        return state

    def __repr__(self) -> str:
        return f"FeatureArray({str(self.path)!r}, shape={self.shape}, dtype={self.dtype}, codec={self.layout.codec})"


def open_feature(store, node_type: str, name: str = "x", cache_bytes: int = CHUNK_CACHE_BYTES,
                 policy: str = "sieve") -> FeatureArray:
    """The feature matrix `features/<node_type>/<name>` of a GraphStore (or a store path: its current generation)."""
    path = Path(getattr(store, "path", store))
    if not hasattr(store, "path") and (path / "zarr.json").is_file():
        path = current(path)[0]  # featurize and append write new generations; a path names the store
    array_dir = path / "features" / node_type / name
    if not (array_dir / "zarr.json").is_file():
        have = sorted(p.name for p in (path / "features").iterdir()) if (path / "features").is_dir() else []
        raise UserError(f"{path}: no feature {node_type}/{name}; featurized types: {', '.join(have) or 'none'} "
                        f"(run `graphstore featurize {path}`)")
    return FeatureArray(array_dir, cache_bytes=cache_bytes, policy=policy)
