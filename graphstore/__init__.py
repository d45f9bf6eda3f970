"""graphstore: an out-of-core store for the XS-Video propagation graph, with neighbour samplers and a PyG loader.

    from graphstore import GraphStore, NeighborSampler, make_loader

The names are imported on first use (PEP 562), so `import graphstore` stays cheap: the sampler
pulls in Numba and the loader torch_geometric, which take seconds to import.
"""
from __future__ import annotations

from importlib import import_module, metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graphstore.pyg import make_loader
    from graphstore.sampler import NeighborSampler
    from graphstore.store import GraphStore

DISTRIBUTION = "graphstore-netgpt"


def _version() -> str:
    """The installed distribution's version; a placeholder when running from a source tree that is not installed."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0+unknown"


__version__ = _version()

_LAZY = {"GraphStore": "graphstore.store", "NeighborSampler": "graphstore.sampler", "make_loader": "graphstore.pyg"}
__all__ = ["GraphStore", "NeighborSampler", "__version__", "make_loader"]


def __getattr__(name: str) -> Any:
    """Imports GraphStore, NeighborSampler and make_loader from their modules on first access."""
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'graphstore' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
