"""The virtual board's plant and transducer models, loaded from the firmware tree.

The models live in ``firmware/boards/sim/`` (they run inside the virtual board under
MicroPython). The host reads their parameter tables from there, so a scenario file's
``[plant]`` and ``[transducer]`` keys are always exactly the models' own.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from types import ModuleType
from typing import Literal

from isopress.paths import firmware_root

__all__ = [
    "ParamRanges",
    "check_plant_params",
    "check_transducer_params",
    "load_sim_module",
    "plant_defaults",
    "plant_ranges",
    "transducer_defaults",
    "transducer_fault_kinds",
    "transducer_ranges",
]

ParamRanges = dict[str, tuple[float, float]]


@cache
def load_sim_module(name: Literal["plant", "transducer"]) -> ModuleType:
    """Import ``firmware/boards/sim/<name>.py`` under a private module name."""
    path = firmware_root() / "boards" / "sim" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"isopress_sim_{name}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the sim model {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _floats(table: object) -> dict[str, float]:
    assert isinstance(table, dict)
    return {str(k): float(v) for k, v in table.items()}


def _ranges(table: object) -> ParamRanges:
    assert isinstance(table, dict)
    return {str(k): (float(lo), float(hi)) for k, (lo, hi) in table.items()}


def plant_defaults() -> dict[str, float]:
    """``PLANT_DEFAULTS``: every plant parameter and its default."""
    return _floats(load_sim_module("plant").PLANT_DEFAULTS)


def plant_ranges() -> ParamRanges:
    """``PLANT_RANGES``: the inclusive range each plant parameter may take."""
    return _ranges(load_sim_module("plant").PLANT_RANGES)


def transducer_defaults() -> dict[str, float]:
    """``TRANSDUCER_DEFAULTS``: every transducer parameter and its default."""
    return _floats(load_sim_module("transducer").TRANSDUCER_DEFAULTS)


def transducer_ranges() -> ParamRanges:
    """``TRANSDUCER_RANGES``: the inclusive range each transducer parameter may take."""
    return _ranges(load_sim_module("transducer").TRANSDUCER_RANGES)


def transducer_fault_kinds() -> tuple[str, ...]:
    """The fault kinds ``Transducer.set_fault`` accepts."""
    kinds = load_sim_module("transducer").FAULT_KINDS
    return tuple(str(k) for k in kinds)


def check_plant_params(params: dict[str, float]) -> None:
    """Build the model with these overrides; ValueError ("key: reason") when it refuses."""
    load_sim_module("plant").Plant(params)


def check_transducer_params(params: dict[str, float]) -> None:
    """Build the model with these overrides; ValueError ("key: reason") when it refuses."""
    load_sim_module("transducer").Transducer(params)
