"""`graphstore query STORE "SQL"`: DuckDB SQL over the sample and comment tables."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from graphstore.cli import add_store_argument, positive_int, store_path
from graphstore.errors import UserError
from graphstore.sql import literal_list

if TYPE_CHECKING:
    import duckdb

    from graphstore.store import GraphStore


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("query", help="run DuckDB SQL over views `samples` and `comments`",
                       usage="%(prog)s [-h] [--limit N] (STORE | --store STORE) SQL")
    add_store_argument(p)
    sql = p.add_argument("sql", metavar="SQL", nargs=None, default=None,
                         help="a DuckDB statement over the views `samples` and `comments`")
    sql.required = False  # `query --store STORE SQL` leaves the SQL in the STORE slot: see store_and_sql
    p.add_argument("--limit", type=positive_int, default=50, metavar="N", help="rows to print")
    p.set_defaults(func=run)


def store_and_sql(args: argparse.Namespace) -> tuple[str, str]:
    """(store, SQL) of `query STORE SQL` or `query --store STORE SQL`; UserError when one is missing."""
    if args.sql is None:
        if args.store_flag is None or args.store is None:
            raise UserError("expected STORE SQL (or --store STORE SQL)")
        args.sql, args.store = args.store, None  # one word: the SQL, the store came as --store
    return store_path(args), args.sql


def connect(store: GraphStore) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with views `samples` and `comments` over the store's tables."""
    import duckdb

    con = duckdb.connect()
    for view, table in (("samples", "samples"), ("comments", "comments")):  # a view takes no parameters: quoted
        con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet({literal_list(store.table_files(table))})")
    return con


def run(args: argparse.Namespace) -> int:
    import duckdb

    from graphstore.store import GraphStore

    path, sql = store_and_sql(args)
    con = connect(GraphStore.open(path))
    try:
        rel = con.sql(sql)
    except duckdb.Error as exc:
        raise UserError(f"SQL failed: {exc}") from None
    if rel is None:
        return 0
    rel.show(max_rows=args.limit, max_width=200)
    return 0
