"""Build, seal and deploy: the bundle that would be flashed is the one that is tested."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from isofw import config as board_config
from isopress import micropython_port
from isopress.cli import main
from isopress.firmware_build import (
    BOARD_ARCH,
    ConfigError,
    board_config_path,
    build_bundle,
    check_config,
    config_checksum,
    seal_config,
)
from isopress.firmware_deploy import DeployError, deploy, deploy_command
from isopress.paths import repo_root


@pytest.mark.parametrize("board", sorted(BOARD_ARCH))
def test_host_and_board_compute_the_same_checksum(board: str) -> None:
    text = board_config_path(board).read_text()
    assert config_checksum(text) == board_config.compute_checksum(text)
    assert f'"checksum": "{config_checksum(text)}"' in text  # the checked-in file is sealed
    assert check_config(board_config_path(board), board) == []


def test_seal_config_rewrites_only_the_checksum(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    text = board_config_path("rp2").read_text().replace('"board_id": "rp2-0001"', '"board_id": "press-7"')
    path.write_text(text)
    expected = config_checksum(text)
    assert check_config(path, "rp2") == [
        f"checksum: does not match the file (expected {expected}): edited or corrupted"
    ]
    checksum = seal_config(path)
    sealed = path.read_text()
    assert checksum in sealed and len(sealed) == len(text)
    assert check_config(path, "rp2") == []
    assert json.loads(sealed)["board_id"] == "press-7"


def test_seal_config_adds_a_missing_checksum_field(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    doc = json.loads(board_config_path("sim").read_text())
    del doc["checksum"]
    path.write_text(json.dumps(doc, indent=2))
    seal_config(path)
    assert check_config(path, "sim") == []


def _tree_with_config(tmp_path: Path, board: str, edit: str, replacement: str) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(repo_root() / "firmware", root / "firmware", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(repo_root() / "protocol", root / "protocol", ignore=shutil.ignore_patterns("__pycache__"))
    cfg = root / "firmware" / "boards" / board / "config.json"
    cfg.write_text(cfg.read_text().replace(edit, replacement))
    return root


def test_build_refuses_a_config_the_board_would_refuse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _tree_with_config(tmp_path, "rp2", '"trip_mpa": 420.0', '"trip_mpa": 405.0')
    monkeypatch.setenv("ISOPRESS_HOME", str(root))
    cfg = root / "firmware" / "boards" / "rp2" / "config.json"
    with pytest.raises(ConfigError) as unsealed:
        build_bundle("rp2", tmp_path / "out")
    assert "checksum: does not match" in str(unsealed.value)
    seal_config(cfg)
    with pytest.raises(ConfigError) as invalid:
        build_bundle("rp2", tmp_path / "out")
    assert "profile.trip_mpa: must be above max_working_mpa + margin_mpa" in str(invalid.value)
    assert not (tmp_path / "out").exists()


def test_cli_build_reports_a_bad_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _tree_with_config(tmp_path, "esp32", '"checksum": "crc32:', '"checksum": "crc32:f')
    monkeypatch.setenv("ISOPRESS_HOME", str(root))
    assert main(["firmware", "build", "--board", "esp32", "--out", str(tmp_path / "out")]) == 1
    assert "invalid board config" in capsys.readouterr().err


@pytest.mark.micropython
def test_built_sim_bundle_boots_in_an_rp2040_sized_heap(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    files = build_bundle("sim", out)
    assert (out / "isofw" / "core.mpy").exists() and (out / "main.py").exists()
    assert [p.name for p in out.rglob("*.py")] == ["main.py"]  # only main.py stays source
    proc = micropython_port.run(
        out / "main.py",
        ["--sim-s", "12"],
        path=[out],  # nothing from the source tree
        heap_bytes=micropython_port.RP2040_HEAP_BYTES,
        timeout_s=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    summary = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert summary["state"] == "running" and summary["faults"] == 0
    assert summary["config_errors"] == [] and summary["pressure_mpa"] > 5.0
    assert len(files) == len(list(p for p in out.rglob("*") if p.is_file()))


@pytest.mark.micropython
@pytest.mark.parametrize("board", ["rp2", "esp32"])
def test_built_board_bundle_core_modules_import(board: str, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    build_bundle(board, out)
    script = tmp_path / "probe.py"
    script.write_text(
        "import isofw.app, isofw.core, isofw.config, isoproto.codes\n"
        "f = open('config.json')\n"
        "cfg, errors = isofw.config.load(f.read(), '" + board + "')\n"
        "core = isofw.app.build_core(cfg, errors, '" + board + "')\n"
        "print(isofw.core.__file__, len(errors), core.trip_counts)\n"
    )
    # Run where the board's files are: the probe opens config.json like the board does.
    proc = subprocess.run(
        [
            str(micropython_port.micropython_executable()),
            "-X",
            f"heapsize={micropython_port.RP2040_HEAP_BYTES}",
            str(script),
        ],
        cwd=out,
        env={"MICROPYPATH": str(out)},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    name, errors, trip = proc.stdout.decode().split()
    assert name.endswith("isofw/core.mpy") and errors == "0" and int(trip) > 20000


def test_deploy_command_copies_modules_first_and_main_last(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    build_bundle("rp2", out)
    cmd = deploy_command(out, "/dev/ttyACM0", "mpremote")
    assert cmd[:3] == ["mpremote", "connect", "/dev/ttyACM0"]
    text = " ".join(cmd)
    assert f"fs cp -r {out / 'isofw'} {out / 'isoproto'} :" in text
    assert f"{out / 'board.mpy'}" in text and f"{out / 'config.json'}" in text
    assert cmd[-6:] == ["fs", "cp", str(out / "main.py"), ":main.py", "+", "reset"]
    assert text.index("main.py") > text.index("config.json") > text.index("isofw")


def test_deploy_runs_mpremote_and_reports_failure(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    build_bundle("rp2", out)
    seen: list[Sequence[str]] = []

    def runner(cmd: Sequence[str]) -> int:
        seen.append(cmd)
        return 0

    assert deploy(out, "/dev/ttyACM1", runner) == 0
    assert Path(seen[0][0]).name == "mpremote" and "/dev/ttyACM1" in seen[0]
    with pytest.raises(DeployError, match="mpremote exited with 1"):
        deploy(out, "/dev/ttyACM1", lambda cmd: 1)


def test_deploy_refuses_what_is_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="not a firmware bundle"):
        deploy_command(tmp_path, "/dev/ttyACM0")
    (tmp_path / "main.py").write_text("")
    with pytest.raises(DeployError, match=r"no config\.json"):
        deploy_command(tmp_path, "/dev/ttyACM0")
    with pytest.raises(DeployError, match="no serial port"):
        deploy_command(tmp_path, "")


def test_cli_deploy_dry_run_prints_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "bundle"
    build_bundle("esp32", bundle)
    assert main(["firmware", "deploy", "--port", "/dev/ttyUSB0", "--bundle", str(bundle), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "connect /dev/ttyUSB0" in out and out.strip().endswith("reset")


def test_cli_seal_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.json"
    path.write_text(board_config_path("sim").read_text().replace("sim-0001", "sim-0002"))
    assert main(["firmware", "seal-config", "--board", "sim", str(path)]) == 0
    assert check_config(path, "sim") == []
    assert main(["firmware", "seal-config", "--board", "rp2", str(path)]) == 1  # wrong board
    assert "board: is 'sim'" in capsys.readouterr().err
