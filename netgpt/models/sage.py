"""The default stage-1 model: a heterogeneous GraphSAGE with the seed's own state kept.

Each node type's (scaled) inputs go through a small MLP encoder. Each layer updates the video rows
it must compute as h + Dropout(ReLU(LayerNorm(W_self h + sum_r W_r mean_{N_r} h))): the residual
keeps a sample's own state through aggregation (a plain mean over hundreds of same-topic neighbours
otherwise washes it out), the per-relation weights keep authors, topics, history and attributes
apart, and LayerNorm keeps the sum of 17 relation messages at one scale. Non-video nodes have no
in-edges, so their state is their encoding at every layer. The predictor is 9*sigmoid of a 2-layer
MLP on the seed's final state, which is also the embedding the LLM stages read."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from .rgcn import MAX_LEVEL, EdgeType, plan_layers

# Inputs that are (nearly) unique to a video and the same in all of its states: its text, its post time
# and its duration. They let a network memorise "this video -> that level" on train videos (the label is
# shared by the video's states), which never transfers to new videos; training noise on them
# (`identity_noise`) keeps only what many videos share.
IDENTITY_TYPES = ("title", "description", "comment", "time", "video_time")


class HeteroSAGE(nn.Module):
    """forward(x_dict, edge_index_dict, batch_size) -> (seed embeddings [B, d], predicted levels [B])."""

    def __init__(self, in_dims: dict[str, int], relations: list[EdgeType], d: int, num_layers: int = 2,
                 dropout: float = 0.1, identity_noise: float = 0.0):
        super().__init__()
        self.identity_noise = identity_noise
        self.node_types = sorted(in_dims)
        self.relations = [tuple(r) for r in relations]
        self.num_layers = num_layers
        self.encoders = nn.ModuleDict({t: nn.Sequential(nn.Linear(in_dims[t], d), nn.LayerNorm(d), nn.ReLU(),
                                                        nn.Linear(d, d)) for t in self.node_types})
        self.self_lins = nn.ModuleList(nn.Linear(d, d) for _ in range(num_layers))
        self.rel_lins = nn.ModuleList(nn.ModuleDict({r[1]: nn.Linear(d, d, bias=False) for r in self.relations})
                                      for _ in range(num_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(num_layers))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 1))

    def forward(self, x_dict: dict[str, Tensor], edge_index_dict: dict[EdgeType, Tensor],
                batch_size: int) -> tuple[Tensor, Tensor]:
        names = {r[1] for r in self.relations}
        edges = {et: ei for et, ei in edge_index_dict.items() if et[0] in x_dict and et[1] in names}
        num_nodes = {t: x.size(0) for t, x in x_dict.items()}
        plans = plan_layers(num_nodes, edges, batch_size, self.num_layers)
        if self.training and self.identity_noise:
            x_dict = {t: x + self.identity_noise * torch.randn_like(x) if t in IDENTITY_TYPES else x
                      for t, x in x_dict.items()}
        h = {t: self.dropout(self.encoders[t](x)) for t, x in x_dict.items() if t in self.encoders}
        for layer, plan in enumerate(plans):
            rows = plan.nodes["video"]
            hv = h["video"]
            msg = self.self_lins[layer](hv[rows])
            for et, (src, dst) in plan.edges.items():
                if et[0] in h:
                    agg = scatter(h[et[0]][src], dst, dim=0, dim_size=rows.numel(), reduce="mean")
                    msg = msg + self.rel_lins[layer][et[1]](agg)
            new = hv[rows] + self.dropout(torch.relu(self.norms[layer](msg)))
            h["video"] = hv.index_copy(0, rows, new)
        emb = h["video"][:batch_size]
        return emb, self.predict(emb)

    def predict(self, emb: Tensor) -> Tensor:
        """Predicted level in [0, 9]."""
        return MAX_LEVEL * torch.sigmoid(self.head(emb)).squeeze(-1)

