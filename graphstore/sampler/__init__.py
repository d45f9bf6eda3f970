"""Neighbour samplers over the store's topology (C++/OpenMP or Numba kernels, identical output)."""
from graphstore.errors import SamplerError
from graphstore.sampler.neighbor import NeighborSampler, parse_fanouts
from graphstore.sampler.output import SampleOutput

__all__ = ["NeighborSampler", "SampleOutput", "SamplerError", "parse_fanouts"]
