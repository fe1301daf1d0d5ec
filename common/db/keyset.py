"""Keyset pagination, written once: a page is the rows after a position in a fixed order, read
with one row more than asked for, which tells whether another page follows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from common.db.base import Row, Tx

T = TypeVar("T")
K = TypeVar("K", int, str)


@dataclass(frozen=True)
class Page(Generic[T, K]):
    items: list[T]
    next_after: K | None  # the position of the last item when more follow; None on the last page


async def keyset_page(
    tx: Tx,
    select: str,
    where: str,
    params: Sequence[Any],
    after: K,
    limit: int,
    convert: Callable[[Row], T],
    *,
    key: str = "seq",
    descending: bool = False,
) -> Page[T, K]:
    """`limit` rows of `select WHERE where` after `after` by `key` (ascending, or descending with
    `after` as the upper bound; an empty text key or 0 starts at the first row). `select` must
    name `key` among its columns (a qualified key, "e.seq", is read back as "seq")."""
    first = not after
    bound = "" if first else f" AND {key} {'<' if descending else '>'} ?"
    order = f" ORDER BY {key} {'DESC' if descending else 'ASC'} LIMIT ?"
    rows = await tx.fetchall(f"{select} WHERE ({where}){bound}{order}", *params, *(() if first else (after,)), limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return Page([convert(r) for r in rows], rows[-1][key.rpartition(".")[2]] if more else None)
