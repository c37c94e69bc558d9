"""The scenario board's per-millisecond method spells some of board.py's constants as
literals (an imported name would be a global lookup a thousand times per virtual second);
they must stay the same numbers."""

from __future__ import annotations

import re

from isopress.paths import firmware_root

SIM = firmware_root() / "boards" / "sim"


def test_the_interrupt_sum_cap_is_the_boards() -> None:
    board = (SIM / "board.py").read_text()
    match = re.search(r"^_IRQ_SUM_CAP = (\d+)", board, re.M)
    assert match is not None
    scenario = (SIM / "scenario_board.py").read_text()
    uses = re.findall(r"if self\._n2? < (\d+):  # board\._IRQ_SUM_CAP", scenario)
    assert uses == [match.group(1), match.group(1)], uses
