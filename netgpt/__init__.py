"""NetGPT: influence-level prediction for XS-Video from a graph encoder and a language model."""
from __future__ import annotations

from graphstore import __version__  # one distribution (graphstore-netgpt) ships both packages

__all__ = ["__version__"]
