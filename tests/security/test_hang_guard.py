"""The guard the ACL tests run under: a hang fails fast and says where each task waited."""

from __future__ import annotations

import asyncio

import pytest
from security_helpers import hang_guard


async def _wait_forever(event: asyncio.Event) -> None:
    await event.wait()


def test_a_hang_fails_with_the_stacks_of_the_waiting_tasks() -> None:
    async def body() -> None:
        event = asyncio.Event()
        async with hang_guard(0.2):
            await asyncio.create_task(_wait_forever(event), name="the-waiter")

    with pytest.raises(AssertionError) as caught:
        asyncio.run(body())
    message = str(caught.value)
    assert "hung for 0.2 s" in message
    assert "the-waiter" in message and "_wait_forever" in message


def test_a_block_that_finishes_in_time_is_left_alone() -> None:
    async def body() -> int:
        async with hang_guard(5.0):
            await asyncio.sleep(0.01)
        return 7

    assert asyncio.run(body()) == 7
