"""The store a run was trained on: its identity is recorded in RUN/config.json (`store_id`), and a
run refuses another store unless told to (`--allow-other-store`). A store grown by `graphstore append`
(or the overlay of `netgpt predict --input`) keeps its identity: it is the same store."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from graphstore.errors import UserError
from graphstore.store import GraphStore

ALLOW_FLAG = "--allow-other-store"


def add_allow_other_store_argument(p: argparse.ArgumentParser) -> None:
    """The flag that lets a run be used with a store other than the one it was trained on."""
    p.add_argument(ALLOW_FLAG, action="store_true",
                   help="use the run with a store other than the one it was trained on (its id differs)")


def recorded_store(run_dir: str | Path) -> tuple[str | None, str | None]:
    """(store id, store path) recorded in RUN/config.json; (None, None) for a run that recorded none."""
    cfg = Path(run_dir) / "config.json"
    try:
        doc = json.loads(cfg.read_text())
    except FileNotFoundError:
        return None, None
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{cfg}: not valid JSON ({e}); the run directory is damaged") from None
    if not isinstance(doc, dict):
        raise UserError(f"{cfg}: not a JSON object; the run directory is damaged")
    return doc.get("store_id"), doc.get("store")


def check_run_store(run_dir: str | Path, store: GraphStore | str | Path, allow_other: bool = False) -> None:
    """UserError when `store` is not the store the run was trained on (unless `allow_other`).

    Nothing is checked for a run that recorded no identity, or a store that has none (both predate them).
    """
    expected, where = recorded_store(run_dir)
    if allow_other or expected is None:
        return
    store = store if isinstance(store, GraphStore) else GraphStore.open(store)
    got = store.store_id
    if got is None or got == expected:
        return
    raise UserError(f"{run_dir}: trained on another store (id {expected}, at {where}) than {store.location} "
                    f"(id {got}); pass {ALLOW_FLAG} to use it anyway")
