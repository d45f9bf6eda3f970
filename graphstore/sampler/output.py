"""The sampled subgraph, shaped like PyG's HeteroSamplerOutput.

Orientation (PyG convention, torch_geometric.sampler.base.HeteroSamplerOutput): for an edge
type (head, rel, 'video'), `row` holds *source* (head) indices local to `node[head]` and
`col` holds *destination* (tail video) indices local to `node['video']`; PyG's
`filter_hetero_data` stacks them as `edge_index = [row, col]`, i.e. messages flow head ->
video. `num_sampled_nodes[type]` has num_hops + 1 entries (entry 0: the seeds) and
`num_sampled_edges[edge_type]` has num_hops entries, as pyg-lib returns them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch_geometric.sampler import HeteroSamplerOutput

EdgeType = tuple[str, str, str]


@dataclass
class SampleOutput:
    """Sampled node ids per type, local (row, col) per edge type and per-hop counts."""

    node: dict[str, np.ndarray]
    row: dict[EdgeType, np.ndarray]
    col: dict[EdgeType, np.ndarray]
    num_sampled_nodes: dict[str, list[int]]
    num_sampled_edges: dict[EdgeType, list[int]]
    backend: str = ""

    @property
    def num_edges(self) -> int:
        """Sampled (head, tail) pairs over all hops and relations."""
        return int(sum(len(r) for r in self.row.values()))

    @property
    def num_nodes(self) -> int:
        """Distinct sampled nodes over all types."""
        return int(sum(len(n) for n in self.node.values()))

    def global_row(self, edge_type: EdgeType) -> np.ndarray:
        """Global head ids of the sampled edges of one edge type."""
        return self.node[edge_type[0]][self.row[edge_type]]

    def global_col(self, edge_type: EdgeType) -> np.ndarray:
        """Global tail (video) ids of the sampled edges of one edge type."""
        return self.node[edge_type[2]][self.col[edge_type]]

    def to_pyg(self) -> HeteroSamplerOutput:
        """A torch_geometric.sampler.HeteroSamplerOutput with int64 torch tensors."""
        import torch
        from torch_geometric.sampler import HeteroSamplerOutput

        t = torch.from_numpy
        return HeteroSamplerOutput(
            node={k: t(np.ascontiguousarray(v, dtype=np.int64)) for k, v in self.node.items()},
            row={k: t(np.ascontiguousarray(v, dtype=np.int64)) for k, v in self.row.items()},
            col={k: t(np.ascontiguousarray(v, dtype=np.int64)) for k, v in self.col.items()},
            # filter_hetero_data indexes edge[edge_type]; None means "no edge features" (implicit edges
            # have no ids). No batch vector: seeds come first in node['video'].
            edge={k: None for k in self.row},
            batch=None,
            num_sampled_nodes={k: list(v) for k, v in self.num_sampled_nodes.items()},
            num_sampled_edges={k: list(v) for k, v in self.num_sampled_edges.items()},
        )
