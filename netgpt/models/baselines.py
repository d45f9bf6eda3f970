"""Graph baselines on the same batches, head and loss as the RGCN: GCN on the homogeneous view,
HAN (one metapath per relation) and HGT (standing in for HetSANN)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GCNConv, HANConv, HGTConv

from .rgcn import MAX_LEVEL, EdgeType


class _Base(nn.Module):
    """Per-type input projection to d and the 9*sigmoid predictor."""

    def __init__(self, in_dims: dict[str, int], d: int):
        super().__init__()
        self.node_types = sorted(in_dims)
        self.proj = nn.ModuleDict({t: nn.Linear(in_dims[t], d) for t in self.node_types})
        self.head = nn.Linear(d, 1)

    def project(self, x_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        out = {}
        for t, x in x_dict.items():
            if t not in self.proj:
                continue
            out[t] = self.proj[t](x.float())
        return out

    def predict(self, emb: Tensor) -> Tensor:
        return MAX_LEVEL * torch.sigmoid(self.head(emb)).squeeze(-1)


class HomoGCN(_Base):
    """GCNConv layers on the homogeneous view (all node types in one graph, relations merged)."""

    def __init__(self, in_dims: dict[str, int], etypes: list[EdgeType], d: int, num_layers: int = 2):
        super().__init__(in_dims, d)
        self.convs = nn.ModuleList(GCNConv(d, d) for _ in range(num_layers))

    def forward(self, x_dict, edge_index_dict, batch_size: int):
        h = self.project(x_dict)
        offsets, start = {}, 0
        for t in ["video"] + [t for t in h if t != "video"]:  # video first: seeds are rows 0..B-1
            offsets[t] = start
            start += h[t].size(0)
        x = torch.cat([h[t] for t in offsets])
        ei = torch.cat([torch.stack([e[0] + offsets[et[0]], e[1] + offsets[et[2]]])
                        for et, e in edge_index_dict.items() if et[0] in offsets], dim=1)
        for conv in self.convs:
            x = F.relu(conv(x, ei))
        emb = x[:batch_size]
        return emb, self.predict(emb)


class HAN(_Base):
    """HANConv layers; every relation is a length-1 metapath. Nodes without in-edges keep their state."""

    def __init__(self, in_dims, etypes, d: int, num_layers: int = 2, heads: int = 4):
        super().__init__(in_dims, d)
        meta = (self.node_types, [tuple(e) for e in etypes])
        self.convs = nn.ModuleList(HANConv(d, d, meta, heads=heads) for _ in range(num_layers))

    def forward(self, x_dict, edge_index_dict, batch_size: int):
        h = self.project(x_dict)
        ei = {et: e for et, e in edge_index_dict.items() if et[0] in h}
        for conv in self.convs:
            out = conv(h, ei)
            h = {t: (out[t] if out.get(t) is not None else h[t]) for t in h}
        emb = h["video"][:batch_size]
        return emb, self.predict(emb)


class HGT(_Base):
    """HGTConv layers (heterogeneous attention; our stand-in for HetSANN)."""

    def __init__(self, in_dims, etypes, d: int, num_layers: int = 2, heads: int = 4):
        super().__init__(in_dims, d)
        meta = (self.node_types, [tuple(e) for e in etypes])
        self.convs = nn.ModuleList(HGTConv(d, d, meta, heads=heads) for _ in range(num_layers))

    def forward(self, x_dict, edge_index_dict, batch_size: int):
        h = self.project(x_dict)
        ei = {et: e for et, e in edge_index_dict.items() if et[0] in h}
        for conv in self.convs:
            out = conv(h, ei)
            h = {t: (F.relu(out[t]) if out.get(t) is not None else h[t]) for t in h}
        emb = h["video"][:batch_size]
        return emb, self.predict(emb)


def build_baseline(cfg, in_dims: dict[str, int], etypes: list[EdgeType]) -> nn.Module:
    """gcn | han | hgt model of a PretrainConfig."""
    if cfg.model == "gcn":
        return HomoGCN(in_dims, etypes, cfg.d_g, cfg.num_layers)
    if cfg.model == "han":
        return HAN(in_dims, etypes, cfg.d_g, cfg.num_layers, cfg.heads)
    if cfg.model == "hgt":
        return HGT(in_dims, etypes, cfg.d_g, cfg.num_layers, cfg.heads)
    raise ValueError(f"unknown model {cfg.model!r}")
