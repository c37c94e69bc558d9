"""The seam between the agent and the serial session: what the agent asks of the board.

The serial session implements :class:`BoardPort` (each call sends one sequenced command,
retransmits as the protocol says, and returns the board's ACK or NAK as a
:class:`~isopress.agent.model.CommandResult`) and produces the stream of
:data:`~isopress.agent.model.BoardUpdate` values the agent consumes. Tests use a fake that
records calls; no physical board exists in CI.
"""

from __future__ import annotations

from typing import Protocol

from .model import CommandResult
from .recipe import Recipe

__all__ = ["BoardPort", "BoardUnavailable"]


class BoardUnavailable(RuntimeError):
    """The command could not reach the board (link down, or no ACK/NAK after every retry).

    Nothing was executed as far as the host knows; the message says why in words.
    """


class BoardPort(Protocol):
    """Commands to the board. Every method returns the board's ACK/NAK or raises :class:`BoardUnavailable`."""

    async def load_recipe(self, recipe: Recipe, recipe_id: int) -> CommandResult:
        """Send the recipe (chunked as the protocol needs) under ``recipe_id``."""
        ...

    async def start(self, recipe_id: int) -> CommandResult:
        """Start the loaded recipe; the ACK's ``value`` is the board's run id."""
        ...

    async def pause(self) -> CommandResult:
        """Hold the current pressure."""
        ...

    async def resume(self) -> CommandResult:
        """Continue a paused run."""
        ...

    async def abort(self) -> CommandResult:
        """End the run (controlled depressurisation)."""
        ...

    async def reset_faults(self) -> CommandResult:
        """Clear latched faults whose cause is gone."""
        ...
