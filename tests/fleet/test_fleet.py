"""``isopress fleet``: N virtual boards and agents on one broker, one subscriber's report."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from isopress.cli import main
from isopress.fleet import FleetError, FleetSpec, PressSamples, TelemetryMonitor, board_rate_settings
from isopress.rig import BrokerHandle

RATE_HZ = 100.0
WINDOW_S = 4.0


@pytest.mark.mqtt
@pytest.mark.micropython
@pytest.mark.slow
def test_two_presses_deliver_every_sample_with_sane_figures(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "isopress"
    cmd = [str(exe), "fleet", "--presses", "2", "--rate", str(RATE_HZ), "--duration", str(WINDOW_S)]
    cmd += ["--warmup", "2", "--broker", "mosquitto", "--workdir", str(tmp_path), "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["presses"] == 2 and report["zero_loss"] is True
    assert report["missing"] == 0 and report["delivered"] == report["produced"]
    assert [p["press_id"] for p in report["per_press"]] == ["fleet-01", "fleet-02"]
    for press in report["per_press"]:
        # the board's own count: its sequence numbers in the window, at the configured rate
        assert press["produced"] == press["seq_last"] - press["seq_first"] + 1
        assert press["produced"] == pytest.approx(RATE_HZ * report["window_s"], rel=0.05)
        assert press["delivered"] == press["produced"] and press["missing"] == 0
        lat = press["latency_ms"]
        # wall_time is the agent's min-delay estimate: a sample cannot arrive before it
        assert -2.0 <= lat["min"] <= lat["p50"] <= lat["p99"] <= lat["max"] < 5000.0
        assert 0.0 < press["agent_cpu_pct"] < 100.0 and 10.0 < press["agent_rss_mb"] < 1000.0
        assert 0.0 < press["board_cpu_pct"] < 100.0 and 0.1 < press["board_rss_mb"] < 200.0
        # the agents ran the recipe: their run records are on disk
        assert any((tmp_path / press["press_id"] / "runs").iterdir())
    assert report["broker_kind"] == "mosquitto" and report["broker_cpu_pct"] is not None
    assert report["broker_cpu_pct"] > 0.0 and report["subscriber_cpu_pct"] > 0.0
    assert report["agents_cpu_pct"] == pytest.approx(
        sum(p["agent_cpu_pct"] for p in report["per_press"]), abs=0.05
    )
    assert 0.0 < report["machine_busy_pct"] <= 100.0 and len(report["load_average"]) == 3
    assert 0.0 <= report["others_cpu_pct"] <= 100.0 * report["cores"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--presses", "0", "--rate", "100"], ["presses", "1 to 64"]),
        (["--presses", "65", "--rate", "100"], ["presses", "1 to 64"]),
        (["--presses", "2", "--rate", "30"], ["rate", "30 Hz", "100/k"]),
        (["--presses", "2", "--rate", "-5"], ["rate", "positive"]),
        (["--presses", "2", "--rate", "nan"], ["rate", "positive"]),
        (["--presses", "2", "--rate", "0.5"], ["rate", "telemetry_decimation"]),
        (["--presses", "2", "--rate", "10", "--duration", "0"], ["duration", "1 to 3600"]),
        (["--presses", "2", "--rate", "10", "--warmup", "-1"], ["warmup", "0 to 120"]),
    ],
)
def test_bad_arguments_are_refused_in_words_before_anything_starts(
    args: list[str], words: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    workdir = tmp_path / "fleet"
    assert main(["fleet", *args, "--workdir", str(workdir)]) == 2
    err = capsys.readouterr().err
    for word in words:
        assert word in err, err
    assert not workdir.exists()  # nothing started, nothing written


def test_argparse_refuses_a_missing_or_non_numeric_argument(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["fleet", "--presses", "2"])
    assert exc.value.code == 2 and "--rate" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["fleet", "--presses", "two", "--rate", "10"])
    assert exc.value.code == 2 and "--presses" in capsys.readouterr().err


def test_the_rate_is_the_boards_control_period_times_its_decimation() -> None:
    assert board_rate_settings(100) == {"control_period_ms": 10, "telemetry_decimation": 1}
    assert board_rate_settings(10) == {"control_period_ms": 10, "telemetry_decimation": 10}
    assert board_rate_settings(1) == {"control_period_ms": 10, "telemetry_decimation": 100}
    assert board_rate_settings(200) == {"control_period_ms": 5, "telemetry_decimation": 1}
    assert board_rate_settings(40) == {"control_period_ms": 5, "telemetry_decimation": 5}
    for bad in (0, 300, 30, 0.5, math.inf):
        with pytest.raises(FleetError, match="rate"):
            board_rate_settings(bad)
    FleetSpec(presses=3, rate_hz=10).check()


def test_a_hole_in_a_press_sequence_is_a_loss_and_the_window_is_the_boards_range() -> None:
    monitor = TelemetryMonitor(BrokerHandle("127.0.0.1", 1, "mosquitto"))  # never connected
    monitor.begin(0.0)
    monitor.streams["p"] = stream = PressSamples()
    for seq in range(100, 200):
        if seq != 150:  # one sample never arrives
            wall = 1000.0 + (seq - 100) * 0.01
            stream.add(3, seq, wall, wall + 0.005 + (0.05 if seq == 160 else 0.0), seq == 170)
    stream.add(3, 120, 1000.2, 1000.3, False)  # a copy (at least once)
    result = monitor.result("p", 1000.10, 1000.89, 100.0)
    assert (result.seq_first, result.seq_last, result.produced) == (110, 189, 80)
    assert result.delivered == 79 and result.missing == 1 and result.duplicates == 1
    assert result.historical == 1 and result.boot_count == 3
    assert result.latency_ms.min == pytest.approx(5.0) and result.latency_ms.max == pytest.approx(55.0)
    assert not monitor.settled(["p"], 1000.5)  # the hole is still open
    stream.add(3, 150, 1000.5, 1001.5, True)  # backfilled late
    assert monitor.settled(["p"], 1000.5) and stream.holes() == 0
