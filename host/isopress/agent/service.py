"""The agent: spool, MQTT link, command handler and run recorder around one board.

``async with Agent(config, board, updates) as agent: await agent.wait()``

``board`` is the :class:`~.board.BoardPort` (commands) and ``updates`` an async iterable
of bursts (sequences) of :data:`~.model.BoardUpdate` values, in board order, both provided
by the serial session (or, for tests and manual runs, by :class:`~.fake_board.FakeBoard`).
A burst is whatever the session decoded at once (one sample live, many during a
backfill); the agent consumes it synchronously, so a slow consumer holds the session back
instead of growing a queue. Tasks, all in one ``TaskGroup``:

- *dispatch*: each burst is written to the spool in one transaction FIRST, then fed to
  the press view (retained ``state``) and the run recorder;
- *commands*: MQTT commands through the handler to the board, replies back (a command
  the board has not answered in ``commands.board_timeout_s`` is replied ``pending`` and
  gets a second, final reply when the board answers: see docs/mqtt.md);
- *housekeeping*: once a second, flush run traces, delete the spool rows the broker
  acknowledged (the spool deletes them in groups) and report spool drops as an event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any, TypeVar

from isoproto import codes

from ..runs.hooks import RunHooks, hil_hooks
from ..runs.record import RunRecorder
from .board import BoardPort
from .commands import CommandHandler, Outcome
from .config import AgentConfig
from .model import BoardEvent, BoardInfo, BoardUpdate, LinkDown, Sample, SessionCheckpoint, SessionNotice
from .mqtt import IncomingCommand, MqttLink
from .payloads import RunSummary, agent_event_outgoing, event_outgoing, sample_outgoing
from .press import LoadedRecipe, PressView
from .recipe import Recipe
from .spool import STREAM_RETAINED, Outgoing, Spool
from .topics import PressTopics

__all__ = ["SESSION_CHECKPOINT_KEY", "Agent", "AgentFailed", "read_session_checkpoint"]

SESSION_CHECKPOINT_KEY = "session_checkpoint"
_HOOKS_GRACE_S = 30.0  # at shutdown, finished runs' metrics and plots get this long
_SUMMARY_FLUSH_S = 2.0  # and then their summaries this long to reach the broker
_T = TypeVar("_T")


class AgentFailed(RuntimeError):
    """One of the agent's tasks died; the message names it and the cause."""


async def _named(loop: Coroutine[Any, Any, None], name: str) -> None:
    """Run one of the agent's loops; a crash becomes an AgentFailed that names the loop."""
    try:
        await loop
    except Exception as exc:
        raise AgentFailed(f"agent task {name} failed: {exc!r}") from exc


def read_session_checkpoint(config: AgentConfig) -> str | None:
    """The serial session's last checkpoint stored in the spool (None for a new spool).

    Call it before starting the session (the agent need not be running).
    """
    with Spool(config.spool.path) as spool:
        return spool.get_meta(SESSION_CHECKPOINT_KEY)


log = logging.getLogger("isopress.agent")


class Agent:
    """The whole host agent for one press (see the module docstring)."""

    def __init__(
        self,
        config: AgentConfig,
        board: BoardPort,
        updates: AsyncIterable[Sequence[BoardUpdate]],
        *,
        hooks: RunHooks | None = None,
    ) -> None:
        self.config = config
        self.board = board
        self.topics = PressTopics(config.agent.press_id)
        self.spool = Spool(
            config.spool.path,
            max_rows=config.spool.max_rows,
            max_bytes=config.spool.max_bytes,
            synchronous=config.spool.synchronous,
        )
        self.press = PressView(config.agent.press_id)
        self.link = MqttLink(config, self.spool)
        self.recorder: RunRecorder | None = None
        self.handler: CommandHandler | None = None
        self._updates = updates
        if hooks is None:
            hooks = hil_hooks() if config.runs.metrics_and_plot else RunHooks()
        self._hooks = hooks
        self._tasks: asyncio.TaskGroup | None = None
        self._running: list[asyncio.Task[None]] = []
        self._done = asyncio.Event()
        self._fingerprint: tuple[object, ...] | None = None
        self._hook_work: set[asyncio.Future[Any]] = set()

    # -- life cycle --------------------------------------------------------------------
    async def __aenter__(self) -> Agent:
        self.spool.open()
        self._restore_recipe()
        self.recorder = RunRecorder(
            self.config.runs.folder,
            self.config.agent.press_id,
            hooks=self._hooks,
            publish=self._publish_run,
            background=self._in_worker,
        )
        self.handler = CommandHandler(
            self.config.commands,
            self.board,
            self.press,
            on_start=self._on_start,
            on_recipe_loaded=self._remember_recipe,
            on_settled=self._answer,
        )
        await self.link.__aenter__()
        self._publish_state()
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        for loop, name in (
            (self._dispatch_loop(), "dispatch"),
            (self._command_loop(), "commands"),
            (self._housekeeping_loop(), "housekeeping"),
        ):
            self._running.append(self._tasks.create_task(_named(loop, name), name=name))
        log.info(
            "agent for press %s started (spool %s, %d rows waiting)",
            self.topics.press_id,
            self.spool.path,
            self.spool.rows,
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._tasks is not None
        if self._hook_work:
            # A run that just ended still gets its metrics, plot and published summary
            # (what the link cannot publish in a moment waits in the spool for next time).
            await asyncio.wait(self._hook_work, timeout=_HOOKS_GRACE_S)
            await asyncio.sleep(0)  # their done callbacks
            for _ in range(int(_SUMMARY_FLUSH_S / 0.05)):  # the spool has no "emptied" event
                if not self.spool.rows:
                    break
                await asyncio.sleep(0.05)
        for task in self._running:
            task.cancel()
        try:
            # A task that died has cancelled the caller (TaskGroup semantics); the group
            # then raises its errors here, which become one AgentFailed.
            await self._tasks.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            failures = [e for e in group.exceptions if isinstance(e, AgentFailed)]
            log.error("%s", "; ".join(str(e) for e in failures) or repr(group))
            raise (failures[0] if failures else AgentFailed(repr(group))) from group
        finally:
            # The link is stopped on purpose whatever happened out here.
            await self.link.__aexit__(None, None, None)
            if self.recorder is not None:
                self.recorder.close()
            self.spool.close()

    async def wait(self) -> None:
        """Return when the board's update stream has ended (the session closed).

        Raises :class:`AgentFailed` if one of the agent's tasks died (e.g. the spool's disk
        failed): the service then exits non-zero and systemd restarts it.
        """
        ended = asyncio.ensure_future(self._done.wait())
        watched: set[asyncio.Future[Any]] = {ended, *self._running}
        if self.link.runner is not None:
            watched.add(self.link.runner)
        try:
            finished, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
        for task in finished:
            if task is not ended and not task.cancelled() and task.exception() is not None:
                failure = task.exception()
                raise failure if isinstance(failure, AgentFailed) else AgentFailed(repr(failure))

    # -- tasks ---------------------------------------------------------------------------
    async def _dispatch_loop(self) -> None:
        async for burst in self._updates:
            self._dispatch(burst)
        log.info("the board's update stream ended")
        self._done.set()

    def _dispatch(self, updates: Sequence[BoardUpdate]) -> None:
        outgoing: list[Outgoing] = []
        checkpoint: dict[str, str] | None = None
        for update in updates:
            if isinstance(update, Sample):
                outgoing.append(sample_outgoing(self.topics, update))
            elif isinstance(update, BoardEvent):
                outgoing.append(event_outgoing(self.topics, update))
            elif isinstance(update, SessionCheckpoint):
                checkpoint = {SESSION_CHECKPOINT_KEY: update.text}
        # Spool first: from here on, nothing that reached the host can be lost. The
        # session's checkpoint goes in the same transaction as the samples it covers.
        self.spool.append(outgoing, meta=checkpoint)
        assert self.recorder is not None
        for update in updates:
            if isinstance(update, Sample):
                self.press.on_sample(update)
                run_id = self.recorder.on_sample(update)
                if not update.historical:
                    self.press.run_id = run_id if run_id in self.recorder.open_run_ids() else None
            elif isinstance(update, BoardEvent):
                self.recorder.on_event(update)
            elif isinstance(update, BoardInfo):
                self._on_info(update)
            elif isinstance(update, LinkDown):
                self.press.on_link_down(update)
                self._agent_event("board_link_lost", f"serial link to the board lost: {update.reason}")
            elif isinstance(update, SessionNotice):
                self._agent_event(update.kind, update.reason, detail=update.detail)
        self._publish_state()

    def _on_info(self, info: BoardInfo) -> None:
        assert self.recorder is not None
        previous = self.press.on_info(info)
        # Runs of an earlier boot end here, whether this agent saw that boot or reopened
        # their records from disk after a restart (the board rebooted while it was down).
        interrupted = self.recorder.on_info(info)
        runs = f"; run(s) {', '.join(interrupted)} interrupted" if interrupted else ""
        if previous is not None:
            self._agent_event(
                "board_reset",
                f"board rebooted (reset cause: {info.reset_cause_name}); boot count "
                f"{previous.boot_count} -> {info.boot_count}{runs}",
                detail=info.boot_count,
            )
        else:
            self._agent_event(
                "board_connected",
                f"board {info.board_kind} {info.board_id} connected: firmware {info.firmware_version}, "
                f"protocol {info.protocol_version}, boot {info.boot_count}{runs}",
                detail=info.boot_count,
            )

    async def _command_loop(self) -> None:
        assert self.handler is not None
        async for command in self.link.commands():
            await self._answer(command, await self.handler.handle(command))

    async def _answer(self, command: IncomingCommand, outcome: Outcome) -> None:
        """Log, record and reply one command's outcome (also the late, final one of a pending command)."""
        assert self.recorder is not None
        if outcome.reply is None:
            self._agent_event("command_ignored", f"{command.verb} from {command.operator}: retained, ignored")
            return
        reply = outcome.reply
        if reply.accepted and command.verb == "abort":
            self.recorder.mark_aborted()
        verdict = "accepted" if reply.accepted else f"rejected: {reply.error}"
        if reply.pending:
            kind, verdict = "command_pending", f"pending: {reply.error}"
        elif outcome.late:
            kind, verdict = "command_settled", f"after it was reported pending, {verdict}"
        else:
            kind = "command_accepted" if reply.accepted else "command_rejected"
        self._agent_event(kind, f"{command.verb} from {command.operator} ({reply.command_id}): {verdict}")
        self._publish_state()
        await self.link.reply(command, reply.model_dump_json())

    async def _housekeeping_loop(self) -> None:
        assert self.recorder is not None
        while True:
            await asyncio.sleep(1.0)
            self.recorder.flush()
            self.spool.delete_acknowledged()  # bounds what a crash would publish again
            dropped = self.spool.take_dropped()
            if dropped.total:
                totals = self.spool.dropped_totals()
                self._agent_event(
                    "spool_overflow",
                    f"spool full (spool.max_rows/max_bytes): {dropped.samples} samples and "
                    f"{dropped.events} events dropped unpublished "
                    f"(since install: {totals.samples} samples, {totals.events} events)",
                    detail=dropped.total,
                )
                log.error("spool overflow: %d samples, %d events dropped", dropped.samples, dropped.events)

    # -- helpers -------------------------------------------------------------------------
    def _agent_event(self, kind: str, reason: str, *, detail: int = 0) -> None:
        log.info("%s: %s", kind, reason)
        self.spool.append([agent_event_outgoing(self.topics, kind, reason, detail=detail)])

    def _publish_state(self) -> None:
        fingerprint = self.press.fingerprint()
        if fingerprint != self._fingerprint:
            self._fingerprint = fingerprint
            self.link.set_state(self.press.payload_json())

    def _in_worker(self, work: Callable[[], _T], done: Callable[[_T], None]) -> None:
        """The run recorder's hooks (metrics, plot) in a worker thread; ``done`` back here."""
        future = asyncio.get_running_loop().run_in_executor(None, work)
        self._hook_work.add(future)

        def finished(f: asyncio.Future[_T]) -> None:
            self._hook_work.discard(f)
            if f.cancelled() or f.exception() is not None:
                log.error("run hooks failed: %r", None if f.cancelled() else f.exception())
                return
            try:
                done(f.result())
            except Exception:  # a spool failure here is the dispatch loop's to report
                log.exception("closing a run record failed")

        future.add_done_callback(finished)

    def _publish_run(self, summary: RunSummary) -> None:
        body = summary.model_dump_json()
        self.spool.append([Outgoing(STREAM_RETAINED, self.topics.run(summary.run_id), body, retain=True)])

    def _on_start(self, operator: str, recipe: LoadedRecipe | None, board_run_id: int) -> None:
        assert self.recorder is not None
        self.press.run_id = self.recorder.expect_start(operator, recipe, board_run_id)
        self.press.board_run_id = board_run_id
        # The board runs now: a second start within the same sample period is refused here
        # too, and a sample from before the start does not say ready again.
        self.press.expect(codes.ST_PRESSURISING, (codes.ST_READY, codes.ST_COMPLETE), run_id=board_run_id)

    def _remember_recipe(self, loaded: LoadedRecipe) -> None:
        self.spool.set_meta("loaded_recipe", loaded.recipe.model_dump_json())

    def _restore_recipe(self) -> None:
        text = self.spool.get_meta("loaded_recipe")
        if text:
            try:
                self.press.recipe = LoadedRecipe.of(Recipe.model_validate_json(text))
            except ValueError:
                log.warning("the recipe remembered in the spool is unreadable; load it again")
