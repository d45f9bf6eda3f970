"""`Topology`: all relations of a store, with node counts per type, and checked neighbour queries."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from graphstore.errors import UserError, check_node_id
from graphstore.topology.base import Relation


@dataclass
class Topology:
    """All relations of a store; node counts per type."""

    num_nodes: dict[str, int]
    relations: dict[str, Relation] = field(default_factory=dict)

    @property
    def num_videos(self) -> int:
        return self.num_nodes["video"]

    def count(self, node_type: str) -> int:
        """Number of nodes of a type; UserError naming an unknown type."""
        try:
            return int(self.num_nodes[node_type])
        except KeyError:
            raise UserError(f"unknown node type {node_type!r}; node types: {', '.join(self.num_nodes)}") from None

    def relation(self, name: str) -> Relation:
        """The relation called `name`; UserError naming an unknown one."""
        try:
            return self.relations[name]
        except KeyError:
            raise UserError(f"unknown relation {name!r}; relations: {', '.join(self.relations)}") from None

    def node_types_reached(self, relations: Iterable[str] | None = None) -> list[str]:
        """'video' and, sorted, the head types of `relations` (default: all): the node types of a sampled batch."""
        keep = None if relations is None else set(relations)
        heads = {r.head for name, r in self.relations.items() if keep is None or name in keep}
        return ["video"] + sorted(heads - {"video"})

    def in_neighbors(self, relation: str, v: int) -> np.ndarray:
        """Exact global head ids of tail v's in-neighbours; UserError on an unknown relation or id."""
        rel = self.relation(relation)
        return rel.in_neighbors(check_node_id(v, rel.tail, self.count(rel.tail)))

    def in_degree(self, relation: str, v: int) -> int:
        """In-degree of tail v; UserError on an unknown relation or id."""
        rel = self.relation(relation)
        return rel.in_degree(check_node_id(v, rel.tail, self.count(rel.tail)))
