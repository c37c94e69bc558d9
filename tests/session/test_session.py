"""The serial session against the scripted TEST PEER (tests/session/board_peer.py), socket:// or a pty."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest
from board_peer import BoardPeer, executed_names
from session_helpers import contiguous, event_seqs, eventually, newest, running, seqs, settings, settled

from isopress.agent.board import BoardUnavailable
from isopress.agent.checkpoint import Checkpoint
from isopress.agent.model import BoardInfo, LinkDown, Sample, SessionCheckpoint
from isopress.agent.press import LoadedRecipe
from isopress.agent.recipe import Recipe
from isopress.agent.session import SerialSession
from isoproto import codes, framing
from isoproto.ids import REQUEST_HISTORY

SHORT = Recipe.model_validate(
    {
        "name": "short",
        "segments": [
            {"kind": "ramp", "target_mpa": 4.0, "rate_mpa_s": 2.0},
            {"kind": "hold", "duration_s": 0.3},
            {"kind": "ramp", "target_mpa": 0.0, "rate_mpa_s": 1.0},
        ],
    }
)


def _loaded(recipe: Recipe = SHORT) -> LoadedRecipe:
    return LoadedRecipe.of(recipe)


# -- handshake -------------------------------------------------------------------------------


def test_the_handshake_gives_board_info_and_samples_stream_with_utc_times() -> None:
    async def body() -> None:
        async with BoardPeer() as peer:
            session = SerialSession(settings(peer.url))
            async with running(session) as seen:
                await eventually(lambda: len(seen.samples()) >= 50, what="50 samples")
                (info,) = seen.infos()
                assert info.board_id == "PEER0001" and info.boot_count == 1 and info.board_kind == "peer"
                assert info.protocol_version == "1.0" and info.firmware_version == "peer-1.0"
                assert info.profile.max_working_mpa == 400.0 and info.profile.host_lost_timeout_ms == 5000
                assert info.history_capacity == 1200 and info.telemetry_period_ms == 10
                assert session.board_connected
                # HELLO_HOST: our major, a random nonce (never 0), the sender's next cmd_seq
                major, _minor, nonce, next_seq = peer.hello_hosts[0]
                assert major == 1 and nonce != 0 and next_seq == peer.executed[0][1]
                # the bursts come in board order; the first BoardInfo before any sample
                assert isinstance(seen.all()[0], BoardInfo)
                got = seqs(seen.samples())
                assert contiguous(got), got[:20]
                now = datetime.now(UTC)
                for s in seen.samples():
                    assert s.wall_time.tzinfo is UTC and now - timedelta(seconds=3) < s.wall_time <= now
                # times follow board_ms (10 ms apart) within the clock estimate's jitter
                a, b = seen.samples()[5], seen.samples()[-1]
                elapsed = (b.wall_time - a.wall_time).total_seconds()
                assert abs(elapsed - (b.board_ms - a.board_ms) / 1000) < 0.005
                heartbeats = peer.host_heartbeats
                await asyncio.sleep(0.55)
                assert 4 <= peer.host_heartbeats - heartbeats <= 7  # every heartbeat_period_ms = 100

    asyncio.run(body())


def test_a_board_of_another_major_is_refused_in_words_and_not_hammered() -> None:
    async def body() -> None:
        async with BoardPeer(major=2) as peer:
            session = SerialSession(settings(peer.url, initial_s=0.1, max_s=0.4))
            async with running(session) as seen:
                await asyncio.sleep(2.0)
                assert seen.infos() == [] and not session.board_connected
                (notice,) = seen.notices("board_refused")  # once, not at every retry
                assert "the board speaks protocol 2.0 (firmware peer-1.0) but this host speaks 1.0" in (
                    notice.reason
                )
                assert "upgrade the isopress host" in notice.reason
                # backoff 0.1 s doubling to a cap of 0.4 s: a handful of attempts in 2 s, not hundreds
                assert 3 <= session.stats.refusals <= 10, session.stats
                assert len(peer.hello_hosts) == session.stats.refusals
                with pytest.raises(BoardUnavailable, match="not connected"):
                    await session.pause()

    asyncio.run(body())


def test_a_profile_that_does_not_match_the_hello_hash_fails_the_handshake() -> None:
    async def body() -> None:
        async with BoardPeer() as peer:
            peer.script.profile_hash_offset = 1
            session = SerialSession(settings(peer.url))
            async with running(session) as seen:
                await eventually(lambda: bool(seen.notices("profile_mismatch")), what="mismatch notice")
                assert seen.infos() == [] and not session.board_connected
                peer.script.profile_hash_offset = 0
                await eventually(lambda: bool(seen.infos()), what="handshake once the hash is right")
                assert len(seen.notices("profile_mismatch")) == 1

    asyncio.run(body())


# -- link loss ---------------------------------------------------------------------------------


def test_a_silent_board_loses_the_link_then_reconnect_and_backfill_lose_nothing() -> None:
    async def body() -> None:
        async with BoardPeer() as peer:
            session = SerialSession(settings(peer.url, timeout_ms=400, initial_s=0.2, max_s=0.4))
            async with running(session) as seen:
                await eventually(lambda: len(seen.samples()) >= 20, what="samples")
                peer.script.muted = True
                t0 = asyncio.get_running_loop().time()
                await eventually(lambda: bool(seen.downs()), what="link down")
                lost_after = asyncio.get_running_loop().time() - t0
                assert 0.35 < lost_after < 0.9
                (down,) = seen.downs()
                assert "nothing from the board for" in down.reason
                assert "heartbeat_timeout_ms = 400" in down.reason
                assert not session.board_connected
                with pytest.raises(BoardUnavailable, match="not connected"):
                    await session.abort()
                await asyncio.sleep(0.5)  # the board keeps sampling, nobody hears it
                peer.script.muted = False
                await eventually(lambda: len(seen.infos()) == 2, what="second handshake")
                latest = peer.sample_seq
                await eventually(lambda: newest(seen.samples()) >= latest, what="caught up")
                await eventually(lambda: settled(session), what="backfill done")
                got = seqs(seen.samples())
                assert contiguous(got), [g for g in range(got[0], got[-1]) if g not in set(got)][:10]
                assert any(s.historical for s in seen.samples()), "the silent part came from history"
                assert session.stats.samples_lost == 0 and session.stats.link_losses == 1
                # LinkDown sits between the two BoardInfos, in stream order
                kinds = [type(u).__name__ for u in seen.all() if isinstance(u, BoardInfo | LinkDown)]
                assert kinds == ["BoardInfo", "LinkDown", "BoardInfo"]

    asyncio.run(body())


def test_a_dropped_line_is_a_read_error_and_the_session_comes_back() -> None:
    async def body() -> None:
        async with BoardPeer() as peer:
            session = SerialSession(settings(peer.url))
            async with running(session) as seen:
                await eventually(lambda: len(seen.samples()) >= 20, what="samples")
                peer.disconnect()
                await eventually(lambda: bool(seen.downs()), what="link down")
                assert seen.downs()[0].reason.startswith(f"read error on {peer.url}: ")
                await eventually(lambda: len(seen.infos()) == 2 and peer.connections == 2, what="reconnect")
                result = await session.pause()  # a command after the reconnect reaches the board
                assert not result.ok and result.reason == codes.R_BAD_STATE
                await eventually(lambda: settled(session), what="backfill")
                assert contiguous(seqs(seen.samples()))

    asyncio.run(body())


def test_an_unopenable_port_is_retried_with_backoff_and_no_link_down() -> None:
    async def body() -> None:
        session = SerialSession(settings("/dev/isopress-no-such-board", initial_s=0.05, max_s=0.2))
        async with running(session) as seen:
            await asyncio.sleep(1.0)
            # 0.05 (jitter: >= half), 0.1, 0.2, 0.2, ... : between 4 and 20 attempts in a second
            assert 4 <= session.stats.open_failures <= 20, session.stats
            assert seen.all() == []  # nothing was up, so nothing went down
            with pytest.raises(BoardUnavailable, match="cannot open serial port /dev/isopress-no-such-board"):
                await session.start(1)

    asyncio.run(body())


def test_the_session_runs_over_a_pseudo_terminal_and_notices_it_vanish() -> None:
    async def body() -> None:
        peer = BoardPeer(transport="pty")
        async with peer:
            session = SerialSession(settings(peer.url))
            async with running(session) as seen:
                await eventually(lambda: len(seen.samples()) >= 30, what="samples over the pty")
                assert peer.url.startswith("/dev/pts/") and contiguous(seqs(seen.samples()))
                assert (await session.pause()).reason == codes.R_BAD_STATE
                peer.disconnect()  # the pty's master closes: like a USB unplug
                await eventually(lambda: bool(seen.downs()), what="link down")
                assert "read error on /dev/pts/" in seen.downs()[0].reason

    asyncio.run(body())


# -- commands ------------------------------------------------------------------------------------


def test_commands_get_the_boards_ack_or_nak_with_reason_detail_and_problems() -> None:
    too_high = Recipe.model_validate(
        {
            "name": "too high",
            "segments": [
                {"kind": "ramp", "target_mpa": 450.0, "rate_mpa_s": 1.0},
                {"kind": "hold", "duration_s": 1.0},
                {"kind": "ramp", "target_mpa": 500.0, "rate_mpa_s": 1.0},
            ],
        }
    )
    many = Recipe.model_validate(
        {"name": "twenty", "segments": [{"kind": "hold", "duration_s": 0.01 * (i + 1)} for i in range(20)]}
    )

    async def body() -> None:
        async with BoardPeer() as peer:
            session = SerialSession(settings(peer.url))
            async with running(session) as seen:
                await eventually(lambda: session.board_connected, what="handshake")
                no_recipe = await session.start(0x12345678)
                assert not no_recipe.ok and no_recipe.reason == codes.R_NO_RECIPE
                assert no_recipe.result == codes.RESULT_REJECTED and no_recipe.reason_name == "no_recipe"
                bad = await session.load_recipe(too_high, _loaded(too_high).recipe_id)
                assert not bad.ok and bad.reason == codes.R_TARGET_TOO_HIGH and bad.detail == 0
                assert bad.problems == ((codes.R_TARGET_TOO_HIGH, 0), (codes.R_TARGET_TOO_HIGH, 2))
                # two chunks (18 + 2 segments); the ACK's value is the recipe id
                loaded = _loaded(many)
                ok = await session.load_recipe(many, loaded.recipe_id)
                assert ok.ok and ok.value == loaded.recipe_id and peer.recipe_id == loaded.recipe_id
                short = _loaded()
                assert (await session.load_recipe(SHORT, short.recipe_id)).ok
                started = await session.start(short.recipe_id)
                assert started.ok and started.value == 1
                paused = await session.pause()
                assert paused.ok
                names = executed_names(peer)
                assert names.count("LOAD_RECIPE_CHUNK") == 4 and names.count("START") == 2
                await eventually(
                    lambda: any(e.kind == codes.EV_RUN_STARTED for e in seen.events()), what="run event"
                )

    asyncio.run(body())


def test_a_lost_command_or_a_lost_reply_is_retransmitted_and_executed_exactly_once() -> None:
    async def body() -> None:
        async with BoardPeer() as peer:
            session = SerialSession(settings(peer.url))
            async with running(session):
                await eventually(lambda: session.board_connected, what="handshake")
                await eventually(lambda: session.sender.outstanding == 0, what="first history asks answered")
                short = _loaded()
                peer.script.drop_commands = 1  # the first chunk never reaches the board
                assert (await session.load_recipe(SHORT, short.recipe_id)).ok
                peer.script.drop_replies = 1  # START runs, its ACK is lost: the retransmission gets it again
                started = await session.start(short.recipe_id)
                assert started.ok and started.value == 1
                peer.script.drop_commands = 2  # lost twice
                assert (await session.pause()).ok
                names = [n for n in executed_names(peer) if n != "REQUEST_HISTORY"]
                assert names == ["LOAD_RECIPE_CHUNK", "START", "PAUSE"]  # each exactly once
                assert session.sender.retransmits >= 4

    asyncio.run(body())


def test_a_command_without_any_reply_fails_in_words_and_the_session_handshakes_again() -> None:
    async def body() -> None:
        async with BoardPeer() as peer:
            session = SerialSession(settings(peer.url, timeout_ms=5000), max_tries=3)
            async with running(session) as seen:
                await eventually(lambda: session.board_connected, what="handshake")
                before = len(peer.hello_hosts)
                peer.script.drop_commands = 1000  # the line to the board loses every command
                failed = r"pause: no reply from the board \(no reply after 3 tries\)"
                with pytest.raises(BoardUnavailable, match=failed):
                    await session.pause()
                await eventually(lambda: len(peer.hello_hosts) > before, what="a new HELLO_HOST")
                _major, _minor, nonce, next_seq = peer.hello_hosts[-1]
                assert nonce != peer.hello_hosts[before - 1][2]
                peer.script.drop_commands = 0
                await eventually(lambda: session.board_connected, what="synced again")
                assert not (await session.resume()).ok  # the next command is executed
                assert "RESUME" in executed_names(peer)
                resumed_from = [seq for _m, seq in peer.executed].index(next_seq)  # the window's new start
                assert executed_names(peer)[resumed_from:].count("RESUME") == 1
                assert session.stats.resyncs >= 1 and seen.downs() == []  # the link itself stayed up

    asyncio.run(body())


def test_a_command_in_flight_when_the_link_drops_fails_in_words_and_is_never_resent() -> None:
    async def body() -> None:
        async with BoardPeer() as peer:
            session = SerialSession(settings(peer.url))
            async with running(session) as seen:
                await eventually(lambda: session.board_connected, what="handshake")
                await eventually(lambda: session.sender.outstanding == 0, what="first history asks answered")
                peer.script.drop_commands = 1000  # the command never gets through
                pause = asyncio.create_task(session.pause())
                await asyncio.sleep(0.3)
                peer.disconnect()
                with pytest.raises(
                    BoardUnavailable, match=r"pause: the serial link was lost before the board"
                ):
                    await pause
                peer.script.drop_commands = 0
                await eventually(lambda: len(seen.infos()) == 2, what="reconnected")
                await asyncio.sleep(0.5)
                assert "PAUSE" not in executed_names(peer)  # a late command is never sent again

    asyncio.run(body())


def test_a_read_interval_batches_the_records_but_replies_are_read_as_they_arrive() -> None:
    async def body() -> None:
        async with BoardPeer() as peer:
            session = SerialSession(settings(peer.url, period_ms=500, timeout_ms=8000), read_interval_s=3.0)
            async with running(session) as seen:
                await eventually(lambda: session.board_connected, what="handshake")
                await eventually(lambda: session.sender.outstanding == 0, what="first history asks answered")
                loop = asyncio.get_running_loop()
                with_samples = len([b for b in seen.bursts if any(isinstance(u, Sample) for u in b)])
                await asyncio.sleep(3.5)
                # 350 samples at 100 Hz: two reads of what gathered (each as many chunks of
                # the link's read size as it takes), not 350 reads.
                assert (
                    len([b for b in seen.bursts if any(isinstance(u, Sample) for u in b)]) - with_samples
                    <= 12
                )
                # A command in flight ends the rest: its reply does not wait for the interval.
                for _ in range(3):
                    t0 = loop.time()
                    nak = await session.start(0x12345678)
                    assert not nak.ok and nak.reason == codes.R_NO_RECIPE
                    assert loop.time() - t0 < 1.0
                await eventually(lambda: settled(session), 8.0, "every sample taken")
                assert contiguous(seqs(seen.samples()))

    asyncio.run(body())


def test_a_read_interval_must_leave_room_for_the_heartbeat_timeout() -> None:
    with pytest.raises(ValueError, match=r"read_interval_s \(1.5 s\) must be under half of serial.heartbeat"):
        SerialSession(settings("socket://127.0.0.1:1", timeout_ms=2000), read_interval_s=1.5)


def test_commands_are_refused_at_once_while_no_board_answers() -> None:
    async def body() -> None:
        async with BoardPeer() as peer:
            peer.script.answer_hello = False
            session = SerialSession(settings(peer.url))
            async with running(session):
                await asyncio.sleep(0.3)
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                with pytest.raises(BoardUnavailable, match="pause: the board is not connected"):
                    await session.pause()
                assert loop.time() - t0 < 0.05
                assert peer.executed == []

    asyncio.run(body())


# -- gaps, backfill, loss ------------------------------------------------------------------------


def test_gaps_in_samples_and_events_are_backfilled_from_history_in_order() -> None:
    async def body() -> None:
        async with BoardPeer() as peer:
            session = SerialSession(settings(peer.url))
            async with running(session) as seen:
                await eventually(lambda: len(seen.samples()) >= 10, what="samples")
                now = peer.sample_seq
                skipped = {now + 20, now + 21, now + 22, now + 40, now + 70}
                peer.script.skip_live_samples |= skipped
                skipped_event = peer.event_seq + 2  # the load's recipe_loaded event
                peer.script.skip_live_events.add(skipped_event)
                short = _loaded()
                assert (await session.load_recipe(SHORT, short.recipe_id)).ok
                assert (await session.start(short.recipe_id)).ok
                await eventually(lambda: peer.sample_seq > now + 100, what="board moves on")
                await eventually(
                    lambda: settled(session),
                    what="backfill",
                )
                got = seqs(seen.samples())
                assert contiguous(got)
                historical = {s.seq for s in seen.samples() if s.historical}
                assert skipped <= historical
                ev = seen.events()
                assert contiguous(event_seqs(ev)) and any(e.historical for e in ev)
                (backfilled,) = [e for e in ev if e.event_seq == skipped_event]
                assert backfilled.historical and backfilled.kind == codes.EV_RECIPE_LOADED
                assert session.stats.samples_lost == 0 and session.stats.events_lost == 0
                # a backfilled sample's time comes from its board_ms, like a live one's
                s = next(s for s in seen.samples() if s.seq == now + 21)
                neighbour = next(x for x in seen.samples() if x.seq == now + 23)
                gap = (neighbour.wall_time - s.wall_time).total_seconds()
                assert abs(gap - (neighbour.board_ms - s.board_ms) / 1000) < 0.005

    asyncio.run(body())


def test_a_gap_at_the_end_of_a_stream_shows_up_in_the_heartbeat() -> None:
    async def body() -> None:
        async with BoardPeer() as peer:
            session = SerialSession(settings(peer.url))
            async with running(session) as seen:
                await eventually(lambda: bool(seen.events()) or session.board_connected, what="handshake")
                await asyncio.sleep(0.3)
                short = _loaded()
                # the load's two events (state ready, recipe loaded) are skipped live; no event follows
                peer.script.skip_live_events |= {peer.event_seq + 1, peer.event_seq + 2}
                assert (await session.load_recipe(SHORT, short.recipe_id)).ok
                target = peer.event_seq
                await eventually(lambda: target in {e.event_seq for e in seen.events()}, 2.0, "backfill")
                late = [e for e in seen.events() if e.event_seq in (target - 1, target)]
                assert all(e.historical for e in late)
                assert {e.kind for e in late} == {codes.EV_STATE_CHANGED, codes.EV_RECIPE_LOADED}

    asyncio.run(body())


def test_records_the_board_no_longer_holds_are_counted_lost_and_reported() -> None:
    async def body() -> None:
        async with BoardPeer(history_samples=40) as peer:
            session = SerialSession(settings(peer.url, timeout_ms=3000))
            async with running(session) as seen:
                await eventually(lambda: len(seen.samples()) >= 10, what="samples")
                # a stall (nothing at all, not even heartbeats) for 100 samples; the ring keeps 40
                first_missing = peer.sample_seq + 1
                peer.script.skip_live_samples |= set(range(first_missing, first_missing + 100))
                peer.script.muted = True
                await eventually(lambda: peer.sample_seq >= first_missing + 99, what="100 skipped")
                peer.script.muted = False
                end = peer.sample_seq + 1  # (a loaded machine may have sampled past first_missing + 99)
                await eventually(lambda: newest(seen.samples()) >= end, what="live again")
                await eventually(lambda: settled(session), 3.0, "gap settled")
                lost = session.stats.samples_lost
                got = {s.seq for s in seen.samples()}
                recovered = [q for q in range(first_missing, end) if q in got]
                assert lost + len(recovered) == end - first_missing  # every record of the gap accounted
                assert lost >= end - first_missing - 40  # the ring holds only 40 samples
                # (not always one tail: the board may overwrite a record while its reply is paced out)
                assert recovered and min(recovered) >= end - 40
                notices = seen.notices("records_lost")
                assert sum(n.detail for n in notices) == lost
                assert "samples lost: the board no longer held them" in notices[0].reason
                assert "history keeps the newest 1200" not in notices[0].reason
                assert "keeps the newest 40 samples" in notices[0].reason

    asyncio.run(body())


def test_garbage_and_damaged_frames_on_the_line_are_skipped() -> None:
    async def body() -> None:
        rng = random.Random(7)
        async with BoardPeer() as peer:
            session = SerialSession(settings(peer.url))
            async with running(session) as seen:
                await eventually(lambda: len(seen.samples()) >= 10, what="samples")
                for _ in range(30):
                    peer.inject(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))))
                    damaged = bytearray(framing.frame(b"\x20" + bytes(27)))
                    damaged[rng.randrange(1, len(damaged) - 1)] ^= 0x10
                    peer.inject(bytes(damaged))
                    await asyncio.sleep(0.01)
                peer.inject(bytes(1000) + b"\x99" * 600 + b"\0")  # idle filler, an oversize run
                await asyncio.sleep(0.5)
                await eventually(lambda: settled(session), what="backfill")
                assert seen.downs() == [] and session.board_connected
                got = seqs(seen.samples())
                assert contiguous(got) and got[-1] >= peer.sample_seq - 5  # nothing invented, nothing lost
                assert len({(s.boot_count, s.seq) for s in seen.samples()}) == len(got)
                assert all(s.pressure_mpa == s.setpoint_mpa for s in seen.samples())  # no damaged sample

    asyncio.run(body())


def test_a_busy_board_nak_makes_the_session_ask_again_later() -> None:
    async def body() -> None:
        async with BoardPeer() as peer:
            session = SerialSession(settings(peer.url))
            async with running(session) as seen:
                await eventually(lambda: len(seen.samples()) >= 10, what="samples")
                peer.script.busy_beyond = 0  # every REQUEST_HISTORY is NAKed R_BUSY
                skipped = peer.sample_seq + 5
                peer.script.skip_live_samples.add(skipped)
                await eventually(lambda: len(peer.history_requests) >= 2, what="asked (and refused) twice")
                await asyncio.sleep(0.3)
                assert len(peer.history_requests) < 6, "a busy board is not hammered (200 ms hold-off)"
                peer.script.busy_beyond = 2
                await eventually(lambda: skipped in {s.seq for s in seen.samples()}, what="backfilled")
                assert session.stats.samples_lost == 0
                assert all(r[1] <= skipped for r in peer.history_requests)
                assert [m for m, _s in peer.executed].count(REQUEST_HISTORY) == len(peer.history_requests)

    asyncio.run(body())


# -- reboot and restart ----------------------------------------------------------------------------


def test_a_board_reboot_is_detected_and_the_new_boot_followed_from_seq_zero() -> None:
    async def body() -> None:
        async with BoardPeer() as peer:
            session = SerialSession(settings(peer.url))
            async with running(session) as seen:
                await eventually(lambda: len(seen.samples()) >= 20, what="samples")
                short = _loaded()
                assert (await session.load_recipe(SHORT, short.recipe_id)).ok
                peer.reboot(codes.RESET_WATCHDOG)
                await eventually(lambda: len(seen.infos()) == 2, what="BoardInfo of the new boot")
                info = seen.infos()[-1]
                assert info.boot_count == 2 and info.reset_cause == codes.RESET_WATCHDOG
                assert info.reset_cause_name == "watchdog"
                await eventually(lambda: len(seen.samples(boot=2)) >= 30, what="boot 2 samples")
                await eventually(lambda: settled(session), what="backfill")
                boot2 = seqs(seen.samples(boot=2))
                assert boot2[0] == 0 and contiguous(boot2)  # from the first sample of the boot
                await eventually(
                    lambda: any(e.kind == codes.EV_BOOT for e in seen.events(boot=2)), what="boot event"
                )
                boot_event = next(e for e in seen.events(boot=2) if e.kind == codes.EV_BOOT)
                assert boot_event.event_seq == 0 and boot_event.code == codes.RESET_WATCHDOG
                assert seen.downs() == []  # the line never went down: a resync on the open link
                # the new boot's board takes commands from the handshake on
                assert (await session.pause()).reason == codes.R_BAD_STATE
                assert session.stats.samples_lost == 0

    asyncio.run(body())


def test_a_restarted_agent_resumes_from_its_checkpoint_and_loses_no_sample() -> None:
    """Session 1 is killed mid-run; only what reached the 'spool' up to its last checkpoint counts."""

    async def body() -> None:
        async with BoardPeer() as peer:
            session = SerialSession(settings(peer.url), checkpoint_interval_s=0.2)
            spooled: list[int] = []
            checkpoint = ""
            async with running(session) as seen:
                await eventually(lambda: len(seen.checkpoints()) >= 3, what="checkpoints")
                short = _loaded()
                assert (await session.load_recipe(SHORT, short.recipe_id)).ok
                assert (await session.start(short.recipe_id)).ok
                await asyncio.sleep(0.5)
                # the agent dies: the spool holds every burst up to the last one with a checkpoint
                bursts = list(seen.bursts)
            last = max(i for i, b in enumerate(bursts) for u in b if isinstance(u, SessionCheckpoint))
            for burst in bursts[: last + 1]:
                for u in burst:
                    if isinstance(u, Sample):
                        spooled.append(u.seq)
                    elif isinstance(u, SessionCheckpoint):
                        checkpoint = u.text
            stored = Checkpoint.from_text(checkpoint)
            assert stored.board_id == "PEER0001" and stored.boot_count == 1
            await asyncio.sleep(0.7)  # the agent is down; the board samples on
            session2 = SerialSession(settings(peer.url), checkpoint=checkpoint)
            async with running(session2) as seen2:
                await eventually(lambda: session2.board_connected, what="second agent")
                latest = peer.sample_seq
                await eventually(lambda: newest(seen2.samples()) >= latest, what="caught up")
                await eventually(lambda: settled(session2), what="backfill")
                resumed = seen2.samples()
                assert any(s.historical for s in resumed)
            everything = sorted(set(spooled) | {s.seq for s in resumed})
            holes = sorted(set(range(everything[0], everything[-1] + 1)) - set(everything))
            assert everything[0] == min(spooled) and not holes, f"samples lost: {holes[:20]} ({checkpoint})"
            # the second session asked for nothing before the checkpoint's position
            assert min(s.seq for s in resumed) > stored.samples.latest - 1200
            assert session2.stats.samples_lost == 0

    asyncio.run(body())


def test_a_checkpoint_of_an_earlier_boot_starts_the_new_boot_from_zero_and_says_so() -> None:
    async def body() -> None:
        async with BoardPeer(boot_count=5) as peer:
            await asyncio.sleep(0.3)
            old = Checkpoint.from_text(
                '{"v":1,"board_id":"PEER0001","boot_count":4,"samples":{"latest":900,"missing":[]},'
                '"events":{"latest":9,"missing":[]}}'
            )
            session = SerialSession(settings(peer.url), checkpoint=old.to_text())
            async with running(session) as seen:
                await eventually(lambda: session.board_connected, what="handshake")
                await eventually(lambda: settled(session) and len(seen.events()) >= 2, what="backfill")
                (notice,) = seen.notices("board_reset")
                assert "boot 4 -> 5" in notice.reason and "after sample 900" in notice.reason
                assert seqs(seen.samples())[0] == 0 and contiguous(seqs(seen.samples()))
                assert event_seqs(seen.events())[0] == 0  # the boot event, backfilled

    asyncio.run(body())
