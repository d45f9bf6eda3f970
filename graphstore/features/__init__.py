"""Out-of-core node features: encoders, `featurize_store` and the chunked `open_feature` gather."""
from graphstore.features.array import FeatureArray, open_feature
from graphstore.features.featurize import featurize_store

__all__ = ["FeatureArray", "featurize_store", "open_feature"]
