"""The write side of node features: encoders, per-sample features, feature jobs and `featurize_store`.

The store (the read side, `graphstore.store` and `graphstore.features`) never imports this package.
"""
from graphstore.featurize.run import FeaturizeStopped, featurize_into, featurize_store

__all__ = ["FeaturizeStopped", "featurize_into", "featurize_store"]
