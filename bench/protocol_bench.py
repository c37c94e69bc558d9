"""Protocol benchmarks: encode/decode throughput on both runtimes, bytes on the wire per
telemetry sample against a JSON line, allocations per telemetry encode on MicroPython,
the board modules' heap, the 115 200-baud budget, and command round trips over the
simulated lossy serial link of tests/dual/test_proto_reliable.py.
"""

from __future__ import annotations

import importlib.util
import json
import random
import statistics
import time
from typing import Any

from isopress import micropython_port
from isopress.paths import protocol_root, repo_root
from isoproto import catalog, codec, framing, samples
from isoproto.writer import FrameWriter

N_CPYTHON = 200_000
N_MICROPYTHON = 20_000
BAUD = 115_200

# a sample as the board sends it in a hold at 250 MPa
SAMPLE = (1234567, 3600250, 250.2531, 250.0, 32768, 1024, 0, 4, 0x1F, 2, 7)

# Runs under MicroPython (MICROPYPATH=protocol): prints one JSON line.
_MICROPYTHON_SCRIPT = """
import gc, json, time
from isoproto import framing, samples
from isoproto.writer import FrameWriter
from isoproto.receiver import CommandReceiver, EXECUTE

N = %(n)d
w = FrameWriter()
p = 250.2531
sp = 250.0
w.telemetry(1, 2, p, sp, 3, 4, 5, 6, 7, 8, 9)  # builds the CRC table once

def encode_loop():
    # locals only: a new global name would grow the module's dict inside the count, and a
    # for loop would allocate its range iterator
    gc.collect()
    a0 = gc.mem_alloc()
    t0 = time.ticks_us()
    i = 0
    while i < N:
        w.telemetry(i, i, p, sp, 32768, 1024, 0, 4, 31, 2, 7)
        i += 1
    t1 = time.ticks_us()
    a1 = gc.mem_alloc()
    return time.ticks_diff(t1, t0) / 1e6, a1 - a0


encode_s, encode_alloc = encode_loop()

frame = bytes(w.frame[: w.telemetry(1234567, 3600250, p, sp, 32768, 1024, 0, 4, 31, 2, 7)])
stream = frame * 64
dec = framing.FrameDecoder()
frames = 0
rounds = N // 64
t0 = time.ticks_us()
for _ in range(rounds):
    i = 0
    n = len(stream)
    while i < n:
        i = dec.push(stream, i, n)
        if dec.payload_len:
            samples.unpack_sample(dec.buf, 1)
            frames += 1
t1 = time.ticks_us()
decode_s = time.ticks_diff(t1, t0) / 1e6

rx = CommandReceiver()
rx.reset(0)
cmd = framing.frame(bytes((0x42, 0, 0)))  # PAUSE, cmd_seq 0


def command():
    gc.collect()
    c0 = gc.mem_alloc()
    dec.push(cmd)
    seq = dec.buf[1] | (dec.buf[2] << 8)
    ok = rx.accept(seq) == EXECUTE
    rx.executed(seq, w.frame, w.ack(seq, 0, 0))
    return gc.mem_alloc() - c0, ok


command_alloc, command_ok = command()

print(json.dumps({
    "encode_per_s": N / encode_s,
    "alloc_per_encode": encode_alloc / N,
    "decode_per_s": frames / decode_s,
    "decoded": frames,
    "command_alloc": command_alloc,
    "command_ok": command_ok,
}))
"""

_HEAP_SCRIPT = """
import gc
gc.collect()
a = gc.mem_alloc()
import isoproto.codes
gc.collect()
b = gc.mem_alloc()
import isoproto.framing, isoproto.samples, isoproto.writer, isoproto.history
import isoproto.codec, isoproto.receiver, isoproto.recipe, isoproto.ids
from isoproto import codec, wire
for k in wire.SPECS:
    codec.field_count(k)
gc.collect()
c = gc.mem_alloc()
import isoproto.catalog
gc.collect()
d = gc.mem_alloc()
print(c - b, b - a, d - c)
"""


def _rate(n: int, fn: Any) -> float:
    """Best of three runs, in calls per second."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return n / best


def _cpython() -> dict[str, float]:
    w = FrameWriter()

    def board_encode() -> None:
        for i in range(N_CPYTHON):
            w.telemetry(i, i, 250.2531, 250.0, 32768, 1024, 0, 4, 31, 2, 7)

    def host_encode() -> None:
        for i in range(N_CPYTHON // 4):
            framing.frame(codec.encode(catalog.TELEMETRY, (i, *SAMPLE[1:])))

    frames = [
        framing.frame(codec.encode(catalog.TELEMETRY, ((SAMPLE[0] + i) & 0xFFFFFFFF, *SAMPLE[1:])))
        for i in range(1000)
    ]
    stream = b"".join(frames) * (N_CPYTHON // 1000)
    chunks = [stream[i : i + 4096] for i in range(0, len(stream), 4096)]  # a serial read's worth

    def host_decode() -> None:
        dec = framing.StreamDecoder()
        n = 0
        for chunk in chunks:
            for payload in dec.feed(chunk):
                samples.telemetry_values(payload)
                n += 1
        assert n == N_CPYTHON and dec.frames_ok == N_CPYTHON

    def generic_decode() -> None:
        dec = framing.StreamDecoder()
        for chunk in chunks[: len(chunks) // 4]:
            for payload in dec.feed(chunk):
                codec.decode(payload)

    # the baseline: the same samples as JSON lines, split and parsed
    names = [f[0] for f in catalog.fields(catalog.TELEMETRY)]
    json_stream = b"".join(
        (
            json.dumps(dict(zip(names, ((SAMPLE[0] + i) & 0xFFFFFFFF, *SAMPLE[1:]), strict=True))) + "\n"
        ).encode()
        for i in range(1000)
    ) * (N_CPYTHON // 4 // 1000)

    def json_decode() -> None:
        n = 0
        for line in json_stream.splitlines():
            json.loads(line)
            n += 1
        assert n == N_CPYTHON // 4

    return {
        "json_decode": _rate(N_CPYTHON // 4, json_decode),
        "board_encode": _rate(N_CPYTHON, board_encode),
        "host_encode": _rate(N_CPYTHON // 4, host_encode),
        "host_decode": _rate(N_CPYTHON, host_decode),
        "generic_decode": _rate(N_CPYTHON // 4, generic_decode),
    }


def _micropython() -> dict[str, Any]:
    script = repo_root() / "build" / "protocol_bench_mp.py"
    script.parent.mkdir(exist_ok=True)
    script.write_text(_MICROPYTHON_SCRIPT % {"n": N_MICROPYTHON})
    proc = micropython_port.run(script, path=[protocol_root()], timeout_s=600)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode())
    result: dict[str, Any] = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    heap = repo_root() / "build" / "protocol_heap_mp.py"
    heap.write_text(_HEAP_SCRIPT)
    proc = micropython_port.run(heap, path=[protocol_root()], timeout_s=60)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode())
    board, codes, cat = (int(x) for x in proc.stdout.split())
    result.update(heap_board=board, heap_codes=codes, heap_catalog=cat)
    return result


def _json_line() -> int:
    names = [f[0] for f in catalog.fields(catalog.TELEMETRY)]
    f32 = samples.unpack_sample(codec.encode(catalog.TELEMETRY, SAMPLE), 1)
    values = [round(v, 3) if isinstance(v, float) else v for v in f32]
    return len(json.dumps(dict(zip(names, values, strict=True))) + "\n")


def _lossy_link() -> dict[str, tuple[float, float]]:
    """Median submit-to-reply of commands over the test suite's simulated serial link."""
    path = repo_root() / "tests" / "dual" / "test_proto_reliable.py"
    spec = importlib.util.spec_from_file_location("proto_link_sim", path)
    assert spec is not None and spec.loader is not None
    sim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sim)
    out: dict[str, tuple[float, float]] = {}
    for drop in (0.0, 0.02, 0.10):
        rtts = []
        for seed in range(10):
            random.seed(seed)
            h2b = sim.LossyChannel(drop, 0.05, 0.01, 20)
            b2h = sim.LossyChannel(drop, 0.05, 0.01, 20)
            board = sim.SimBoard()
            host = sim.SimHost()
            board.rx.reset(0)
            host.tracker.note_latest(board.sample_seq)
            now = 0
            for tick in range(4000):
                now += 5
                if tick % 10 == 0 and tick < 1500 and host.sender.outstanding < 16:
                    host.sender.submit(catalog.START, (tick,))
                out_frames: list[bytes] = []
                board.on_bytes(h2b.receive(now), out_frames)
                board.tick(out_frames, telemetry=tick < 1500 and tick % 2 == 0, heartbeat=tick % 20 == 0)
                for f in out_frames:
                    b2h.send(now, f)
                host.on_bytes(b2h.receive(now), now)
                for f in host.poll(now):
                    h2b.send(now, f)
            rtts += [o.rtt_ms for o in host.outcomes if o.msg_id == catalog.START]
        rtts.sort()
        out[f"{drop:.0%}"] = (statistics.median(rtts), rtts[len(rtts) * 9 // 10])
    return out


def run() -> list[dict[str, Any]]:
    cp = _cpython()
    mp = _micropython()
    frame_bytes = framing.frame_size(samples.TELEMETRY_PAYLOAD_SIZE)
    json_bytes = _json_line()
    bytes_per_s = BAUD // 10
    others = 2 * 18 + 10 * 27 + 10 * 12  # heartbeats 2/s, events 10/s, ACKs 10/s
    link = _lossy_link()
    rows: list[dict[str, Any]] = [
        {
            "metric": "CPython decode: stream -> TELEMETRY values",
            "value": round(cp["host_decode"]),
            "unit": "frames/s",
            "target": ">= 100000",
            "baseline": round(cp["json_decode"]),
            "baseline_label": "the same samples as JSON lines (json.loads)",
            "ratio": round(cp["host_decode"] / cp["json_decode"], 1),
        },
        {
            "metric": "CPython decode through the generic codec",
            "value": round(cp["generic_decode"]),
            "unit": "frames/s",
            "target": "",
        },
        {
            "metric": "CPython encode: FrameWriter.telemetry",
            "value": round(cp["board_encode"]),
            "unit": "frames/s",
            "target": "",
        },
        {
            "metric": "CPython encode: codec.encode + framing.frame",
            "value": round(cp["host_encode"]),
            "unit": "frames/s",
            "target": "",
        },
        {
            "metric": "MicroPython (unix) encode: FrameWriter.telemetry",
            "value": round(mp["encode_per_s"]),
            "unit": "frames/s",
            "target": "",
        },
        {
            "metric": "MicroPython (unix) decode: FrameDecoder.push + unpack",
            "value": round(mp["decode_per_s"]),
            "unit": "frames/s",
            "target": "",
        },
        {
            "metric": "MicroPython heap allocated per telemetry encode (gc.mem_alloc)",
            "value": mp["alloc_per_encode"],
            "unit": "bytes",
            "target": "0",
        },
        {
            "metric": "MicroPython heap allocated receiving + acknowledging a command",
            "value": mp["command_alloc"],
            "unit": "bytes",
            "target": "0",
        },
        {
            "metric": "telemetry sample on the wire",
            "value": frame_bytes,
            "unit": "bytes",
            "target": "<= 32",
            "baseline": json_bytes,
            "baseline_label": "as a JSON line",
            "ratio": round(frame_bytes / json_bytes, 2),
        },
        {
            "metric": "the same sample as a JSON line",
            "value": json_bytes,
            "unit": "bytes",
            "target": f"{json_bytes / frame_bytes:.1f}x the frame",
        },
        {
            "metric": "115200 baud 8N1: telemetry samples/s, nothing else",
            "value": bytes_per_s // frame_bytes,
            "unit": "samples/s",
            "target": ">= 200",
        },
        {
            "metric": "115200 baud: samples/s beside heartbeats, 10 events/s, 10 ACKs/s",
            "value": (bytes_per_s - others) // frame_bytes,
            "unit": "samples/s",
            "target": ">= 200",
        },
        {
            "metric": "MicroPython (unix x64) heap: board modules of isoproto",
            "value": mp["heap_board"],
            "unit": "bytes",
            "target": "",
        },
        {
            "metric": "MicroPython (unix x64) heap: isoproto.codes (text tables)",
            "value": mp["heap_codes"],
            "unit": "bytes",
            "target": "",
        },
        {
            "metric": "MicroPython (unix x64) heap: isoproto.catalog (host only)",
            "value": mp["heap_catalog"],
            "unit": "bytes",
            "target": "",
        },
    ]
    for loss, (median, p90) in link.items():
        what = f"command submit->reply, simulated serial link, {loss} frame loss"
        rows.append({"metric": what + " (median)", "value": median, "unit": "ms", "target": ""})
        rows.append({"metric": what + " (90th percentile)", "value": p90, "unit": "ms", "target": ""})
    return rows


if __name__ == "__main__":
    for row in run():
        print(f"{row['metric']}: {row['value']} {row['unit']} (target {row['target']})")
