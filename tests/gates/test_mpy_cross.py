"""Gate: every module that runs on a board compiles with mpy-cross for RP2040 and ESP32."""

from __future__ import annotations

from pathlib import Path

import pytest

from isopress.firmware_build import compile_module, shared_sources
from isopress.paths import repo_root

BOARD_ARCHES = ["armv6m", "xtensawin"]  # RP2040 (Cortex-M0+), ESP32 (Xtensa LX6 windowed)


def test_gate_covers_firmware_and_protocol() -> None:
    sources = shared_sources()
    root = repo_root()
    parts = {p.relative_to(root).parts[0] for p in sources}
    assert parts == {"firmware", "protocol"}
    assert any(p.name == "main.py" for p in sources)
    assert any(p.parts[-2:] == ("isoproto", "__init__.py") for p in sources)


@pytest.mark.parametrize("arch", BOARD_ARCHES)
def test_every_board_module_compiles(arch: str, tmp_path: Path) -> None:
    errors = [
        err
        for i, src in enumerate(shared_sources())
        if (err := compile_module(src, arch, tmp_path / f"{i}.mpy")) is not None
    ]
    assert not errors, "\n".join(str(e) for e in errors)


@pytest.mark.parametrize("arch", BOARD_ARCHES)
def test_gate_names_file_and_line_of_a_module_micropython_cannot_compile(arch: str, tmp_path: Path) -> None:
    bad = tmp_path / "throwaway.py"
    bad.write_text(
        "def classify(code):\n    x = code + 1\n    match x:\n        case 1:\n            return 2\n"
    )
    err = compile_module(bad, arch, tmp_path / "throwaway.mpy")
    assert err is not None
    assert err.path == bad
    assert err.line == 3
    assert "SyntaxError" in err.message
    assert str(err).startswith(f"{bad}:3:")
