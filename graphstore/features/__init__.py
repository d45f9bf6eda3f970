"""The read side of node features: the chunked `open_feature` gather, its caches and the look-ahead."""
from graphstore.features.array import FeatureArray, open_feature

__all__ = ["FeatureArray", "open_feature"]
