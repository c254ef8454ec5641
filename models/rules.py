"""Business rules that turn one user's ranked candidates into the list the site shows.

Rules are applied per list, after ranking, so they never change what the model learns:
- already bought or rated and out-of-stock items never appear (the caller blocks them);
- at most ``max_per_category`` items of one category (0 = no cap); when the candidates
  cannot fill the list under the cap, the best capped-out items fill it, so a list is
  never shorter than the catalog allows;
- ``new_item_quota`` slots go to new items (exploration), spread evenly down the list
  rather than parked at its end.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Rules:
    top_n: int = 20
    max_per_category: int = 0  # 0 = no cap
    new_item_quota: int = 0  # slots per list for new items

    def __post_init__(self) -> None:
        if self.top_n < 1 or self.max_per_category < 0 or self.new_item_quota < 0:
            raise ValueError(f"rules need top_n >= 1 and non-negative cap and quota: {self}")


def pick(ranked: Iterable[int], new_ranked: Iterable[int], category: np.ndarray,
         blocked: set[int], rules: Rules) -> tuple[list[int], set[int], bool]:
    """One list, best first: (item indices, those placed by the exploration quota, whether
    the category cap had to be relaxed to fill it).

    ``ranked`` is the user's candidates best first (it may be long or lazy: it is read
    only until the list is full), ``new_ranked`` the new items in the order to explore
    them, ``category`` an integer code per item (-1 = none, never capped), ``blocked``
    items that must not appear.
    """
    cap = rules.max_per_category or rules.top_n
    counts: dict[int, int] = {}
    taken = set(blocked)

    def fits(item: int) -> bool:
        c = int(category[item])
        return c < 0 or counts.get(c, 0) < cap

    def take(item: int, into: list[int]) -> None:
        into.append(item)
        taken.add(item)
        if (c := int(category[item])) >= 0:
            counts[c] = counts.get(c, 0) + 1

    quota = min(rules.new_item_quota, rules.top_n)
    main: list[int] = []
    over: list[int] = []  # capped out, best first: used only if the list cannot fill
    stream = iter(ranked)

    def fill(size: int) -> None:
        while len(main) < size and (item := next(stream, None)) is not None:
            if item in taken:
                continue
            if fits(item):
                take(item, main)
            else:
                over.append(item)

    fill(rules.top_n - quota)
    explore: list[int] = []
    if quota:
        for item in new_ranked:
            if len(explore) == quota:
                break
            if item not in taken and fits(item):
                take(item, explore)
    fill(rules.top_n - len(explore))  # slots the quota left unused go back to the ranking
    relaxed = False
    for item in over:
        if len(main) + len(explore) == rules.top_n:
            break
        if item not in taken:
            take(item, main)
            relaxed = True
    return interleave(main, explore), set(explore), relaxed


def interleave(main: list[int], explore: list[int]) -> list[int]:
    """``explore`` spread evenly through ``main``: with 18 + 2 items they land at ranks 7
    and 13, so exploration is seen without leading the list."""
    n = len(main) + len(explore)
    slots = {round((k + 1) * n / (len(explore) + 1)) - 1 for k in range(len(explore))}
    out, m, e = [], list(reversed(main)), list(reversed(explore))
    for pos in range(n):
        out.append(e.pop() if e and (pos in slots or not m) else m.pop())
    return out
