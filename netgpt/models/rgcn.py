"""Heterogeneous RGCN of NetGPT stage 1: per-type input projection, relation-wise mean
aggregation (PyG SAGEConv without root), a self-loop Linear with bias per node type, ReLU,
and the predictor 9*sigmoid(W f + b).

Every relation points into `video`, so only video nodes aggregate; any other node's state at
layer l is ReLU(self_loop(state at l-1)). `forward` computes a layer's states only for the
nodes the next layer reads (seeds at the last layer, their in-neighbours one layer below, ...)
and aggregates layer-1 messages in input-feature space (see `first_layer`); `forward_full`
computes every node at every layer with the plain PyG convolutions and is the reference."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import SAGEConv
from torch_geometric.utils import scatter

MAX_LEVEL = 9.0
EdgeType = tuple[str, str, str]


@dataclass
class LayerPlan:
    """Which nodes a layer computes: per node type the batch-local ids (ascending)."""

    nodes: dict[str, Tensor]
    # per edge type: edges into this layer's video nodes, (src batch id, dst row in nodes['video'])
    edges: dict[EdgeType, tuple[Tensor, Tensor]]


def plan_layers(num_nodes: dict[str, int], edge_index_dict: dict[EdgeType, Tensor],
                batch_size: int, num_layers: int) -> list[LayerPlan]:
    """Backward pass over the batch graph: the nodes each layer 1..L must compute."""
    device = next(iter(edge_index_dict.values())).device if edge_index_dict else torch.device("cpu")
    need = {"video": torch.arange(batch_size, device=device)}
    plans: list[LayerPlan] = []
    for _ in range(num_layers):
        vids = need["video"]
        row = torch.full((num_nodes["video"],), -1, dtype=torch.long, device=device)
        row[vids] = torch.arange(vids.numel(), device=device)
        edges: dict[EdgeType, tuple[Tensor, Tensor]] = {}
        below: dict[str, list[Tensor]] = {t: [ids] for t, ids in need.items()}
        for et, ei in edge_index_dict.items():
            dst_row = row[ei[1]]
            keep = dst_row >= 0
            src = ei[0][keep]
            edges[et] = (src, dst_row[keep])
            below.setdefault(et[0], []).append(src)
        plans.append(LayerPlan(nodes=need, edges=edges))
        need = {t: torch.unique(torch.cat(parts)) for t, parts in below.items()}
    plans.reverse()  # plans[l] = nodes computed by layer l+1
    return plans


class HeteroRGCN(nn.Module):
    """NetGPT stage-1 graph model; `forward(batch)` returns (seed embeddings, predicted levels)."""

    def __init__(self, in_dims: dict[str, int], relations: list[EdgeType], d_g: int,
                 num_layers: int = 2, dropout: float = 0.0):
        super().__init__()
        self.node_types = sorted(in_dims)
        self.relations = [tuple(r) for r in relations]
        self.num_layers = num_layers
        self.dropout = dropout
        self.proj = nn.ModuleDict({t: nn.Linear(in_dims[t], d_g) for t in self.node_types})
        self.convs = nn.ModuleList()
        self.loops = nn.ModuleList()
        for layer in range(num_layers):
            self.convs.append(nn.ModuleDict({
                r[1]: SAGEConv(d_g, d_g, aggr="mean", root_weight=False, bias=False) for r in self.relations
            }))
            # Non-video nodes are only read up to layer L-1; the last layer computes videos only.
            types = ["video"] if layer == num_layers - 1 else self.node_types
            self.loops.append(nn.ModuleDict({t: nn.Linear(d_g, d_g) for t in types}))
        self.head = nn.Linear(d_g, 1)

    # --- pieces shared by the training forward, the reference forward and embedding export ---
    def project(self, node_type: str, x: Tensor) -> Tensor:
        """Layer-0 state: the per-type input projection."""
        return self.proj[node_type](x.float())

    def self_only(self, layer: int, node_type: str, h: Tensor) -> Tensor:
        """State at `layer`+1 of a node without in-edges (any non-video node)."""
        return self._act(self.loops[layer][node_type](h), layer)

    def video_layer(self, layer: int, h_dst: Tensor, h_src: dict[str, Tensor],
                    edges: dict[EdgeType, tuple[Tensor, Tensor]]) -> Tensor:
        """States at `layer`+1 of video rows: self loop + per-relation mean of in-neighbours."""
        out = self.loops[layer]["video"](h_dst)
        n_dst = h_dst.size(0)
        for et, (src, dst) in edges.items():
            if et[0] not in h_src:
                continue
            ei = torch.stack([src, dst])
            out = out + self.convs[layer][et[1]]((h_src[et[0]], None), ei, size=(h_src[et[0]].size(0), n_dst))
        return self._act(out, layer)

    def _act(self, h: Tensor, layer: int) -> Tensor:
        h = F.relu(h)
        if self.dropout and layer < self.num_layers - 1:
            h = F.dropout(h, self.dropout, self.training)
        return h

    def predict(self, emb: Tensor) -> Tensor:
        """Predicted level in [0, 9]."""
        return MAX_LEVEL * torch.sigmoid(self.head(emb)).squeeze(-1)

    # --- forwards ------------------------------------------------------------------------
    def forward(self, x_dict: dict[str, Tensor], edge_index_dict: dict[EdgeType, Tensor],
                batch_size: int) -> tuple[Tensor, Tensor]:
        """Embeddings and predictions of the first `batch_size` video nodes (the seeds)."""
        num_nodes = {t: x.size(0) for t, x in x_dict.items()}
        edge_index_dict = self._known_edges(x_dict, edge_index_dict)
        plans = plan_layers(num_nodes, edge_index_dict, batch_size, self.num_layers)
        h, ids = self.first_layer(plans[0], x_dict)
        for layer, plan in enumerate(plans[1:], start=1):
            new_h, new_ids = {}, {}
            pos_cache: dict[str, Tensor] = {}
            for t, nodes in plan.nodes.items():
                hd = h[t][self._rows(ids[t], nodes, num_nodes[t], pos_cache, t)]
                if t == "video":
                    src_edges = {et: (self._rows(ids[et[0]], src, num_nodes[et[0]], pos_cache, et[0]), dst)
                                 for et, (src, dst) in plan.edges.items()}
                    new_h[t] = self.video_layer(layer, hd, h, src_edges)
                else:
                    new_h[t] = self.self_only(layer, t, hd)
                new_ids[t] = nodes
            h, ids = new_h, new_ids
        emb = h["video"]
        return emb, self.predict(emb)

    def first_layer(self, plan: LayerPlan, x_dict: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Layer-1 states of the planned nodes, exploiting that layer 0 is linear in the features.

        A node's layer-0 state P_t x + b_t depends only on its own features, so a relation's mean
        message W_r mean_j(P_t x_j + b_t) equals (W_r P_t) mean_j(x_j) + W_r b_t (for a non-empty
        neighbourhood): neighbours are averaged in input space and never projected. Only the
        nodes with a self loop at layer 1 (the seeds' attribute nodes and the hop-1 videos) are
        projected; the hop-2 videos, most of a batch, are not. Same output as `forward_full`
        up to float rounding."""
        h, ids = {}, {}
        for t, nodes in plan.nodes.items():
            h0 = self.project(t, x_dict[t][nodes])
            if t != "video":
                h[t] = self.self_only(0, t, h0)
            else:
                out = self.loops[0]["video"](h0)
                n_dst = nodes.numel()
                for et, (src, dst) in plan.edges.items():
                    lin = self.convs[0][et[1]].lin_l
                    proj = self.proj[et[0]]
                    xs = x_dict[et[0]][src].float()
                    agg = scatter(xs, dst, dim=0, dim_size=n_dst, reduce="mean")
                    has = (torch.bincount(dst, minlength=n_dst) > 0).to(agg.dtype).unsqueeze(1)
                    out = out + agg @ (lin.weight @ proj.weight).t() + has * (lin.weight @ proj.bias)
                h[t] = self._act(out, 0)
            ids[t] = nodes
        return h, ids

    def _known_edges(self, x_dict, edge_index_dict):
        names = {r[1] for r in self.relations}
        return {et: ei for et, ei in edge_index_dict.items() if et[0] in x_dict and et[1] in names}

    @staticmethod
    def _rows(have: Tensor, want: Tensor, n: int, cache: dict, key: str) -> Tensor:
        if key not in cache:
            pos = torch.full((n,), -1, dtype=torch.long, device=have.device)
            pos[have] = torch.arange(have.numel(), device=have.device)
            cache[key] = pos
        return cache[key][want]

    def forward_full(self, x_dict: dict[str, Tensor], edge_index_dict: dict[EdgeType, Tensor],
                     batch_size: int) -> tuple[Tensor, Tensor]:
        """Reference: every node at every layer over every batch edge; same output as forward."""
        h = {t: self.project(t, x) for t, x in x_dict.items()}
        all_edges = {et: (ei[0], ei[1]) for et, ei in self._known_edges(x_dict, edge_index_dict).items()}
        for layer in range(self.num_layers):
            new_h = {}
            for t in h:
                if t == "video":
                    new_h[t] = self.video_layer(layer, h[t], h, all_edges)
                elif t in self.loops[layer]:
                    new_h[t] = self.self_only(layer, t, h[t])
            h = new_h
        emb = h["video"][:batch_size]
        return emb, self.predict(emb)
