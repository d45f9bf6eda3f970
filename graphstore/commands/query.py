"""`graphstore query STORE "SQL"`: DuckDB SQL over the sample and comment tables."""
from __future__ import annotations

import argparse

from graphstore.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("query", help="run DuckDB SQL over views `samples` and `comments`")
    p.add_argument("store")
    p.add_argument("sql")
    p.add_argument("--limit", type=int, default=50, help="rows to print (default %(default)s)")
    p.set_defaults(func=run)


def connect(store):
    """A DuckDB connection with views `samples` and `comments` over the store's tables."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"CREATE VIEW samples AS SELECT * FROM read_parquet('{(store.path / 'samples.parquet').as_posix()}')")
    con.execute(f"CREATE VIEW comments AS SELECT * FROM read_parquet('{(store.path / 'comments.parquet').as_posix()}')")
    return con


def run(args: argparse.Namespace) -> int:
    import duckdb

    from graphstore.store import GraphStore

    con = connect(GraphStore.open(args.store))
    try:
        rel = con.sql(args.sql)
    except duckdb.Error as exc:
        raise UserError(f"SQL failed: {exc}") from None
    if rel is None:
        return 0
    rel.show(max_rows=args.limit, max_width=200)
    return 0
