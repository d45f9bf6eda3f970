"""Relation index arrays and exact neighbour queries (see docs/FORMAT.md): one `Relation` class per kind.

A new relation kind is one new module here: a `Relation` subclass with its `KIND`, `KIND_CODE` and stored
`ARRAYS`, decorated with `@register` and imported below (and its case in the sampling kernels).
"""
from graphstore.topology.base import KINDS, KernelArrays, Relation
from graphstore.topology.aligned import AlignedRelation
from graphstore.topology.indptr import CscRelation, RangeRelation
from graphstore.topology.bucket import BucketRelation, bucket_bounds, bucket_order, merge_bucket
from graphstore.topology.graph import Topology

RELATION_KINDS = tuple(KINDS)

__all__ = ["RELATION_KINDS", "AlignedRelation", "BucketRelation", "CscRelation", "KernelArrays", "RangeRelation",
           "Relation", "Topology", "bucket_bounds", "bucket_order", "merge_bucket"]
