"""bench/fleet_bench's bounded search for the largest fleet (with a fake trial)."""

from __future__ import annotations

import asyncio

import pytest

from bench.fleet_bench import search_largest


def _search(limit: int, cap: int, max_sizes: int = 10) -> tuple[tuple[int, int | None], list[int]]:
    tried: list[int] = []

    async def passes_at(n: int) -> bool:
        tried.append(n)
        return n <= limit

    return asyncio.run(search_largest(passes_at, cap, max_sizes)), tried


@pytest.mark.parametrize("limit", [0, 1, 3, 5, 11, 14, 23, 40])
def test_doubling_then_bisection_finds_the_limit_within_an_eighth(limit: int) -> None:
    (best, worst), tried = _search(limit, cap=48)
    assert best <= limit and (worst is None or worst > limit)
    assert worst is not None and worst - best <= max(1, best // 8)
    assert len(tried) <= 10 and len(set(tried)) == len(tried)  # no size measured twice by the search


def test_the_cap_bounds_the_search_and_says_so() -> None:
    (best, worst), tried = _search(limit=100, cap=20)
    assert (best, worst) == (20, None) and tried == [1, 2, 4, 8, 16, 20]


def test_the_number_of_sizes_is_bounded() -> None:
    (best, worst), tried = _search(limit=1000, cap=10_000, max_sizes=4)
    assert len(tried) == 4 and best == 8 and worst is None
