"""The installed distribution has unambiguous import names and a console script."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from isopress.paths import repo_root


@pytest.mark.slow
def test_wheel_installs_only_isopress_and_isoproto(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(repo_root())],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("isopress-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"isopress", "isoproto"}
    assert "isoproto/__init__.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "isopress = isopress.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_protocol_has_one_import_name_on_host_and_board() -> None:
    import isoproto

    # The host imports the very files the board bundle is built from.
    assert Path(isoproto.__file__).resolve() == repo_root() / "protocol" / "isoproto" / "__init__.py"
