"""Dual-runtime tests: every ``test_*`` function in this folder runs twice.

Once under CPython (``[cpython]``) and once under the real MicroPython unix port
(``[micropython]``, marked ``micropython``). Test modules here are plain-assert code that
both interpreters run: no pytest imports, no fixtures. MicroPython runs each module once
in a subprocess and reports every test separately, with its MicroPython traceback.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest

from dualrun import DUAL_DIR, find_test_functions, run_module_under_micropython

if str(DUAL_DIR) not in sys.path:
    sys.path.insert(0, str(DUAL_DIR))


class DualModule(pytest.File):
    def collect(self):  # type: ignore[no-untyped-def]
        names = find_test_functions(self.path)
        for name in names:
            yield DualItem.from_parent(self, name=f"{name}[cpython]", func=name, runtime="cpython")
        for name in names:
            item = DualItem.from_parent(self, name=f"{name}[micropython]", func=name, runtime="micropython")
            item.add_marker(pytest.mark.micropython)
            yield item

    _mp_cache: tuple[dict[str, dict[str, Any]], str] | None = None

    def micropython_results(self) -> tuple[dict[str, dict[str, Any]], str]:
        if self._mp_cache is None:
            self._mp_cache = run_module_under_micropython(self.path, find_test_functions(self.path))
        return self._mp_cache


class MicroPythonFailure(Exception):
    pass


class DualItem(pytest.Item):
    def __init__(self, *, func: str, runtime: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.func = func
        self.runtime = runtime

    def runtest(self) -> None:
        if self.runtime == "cpython":
            module = importlib.import_module(self.path.stem)
            getattr(module, self.func)()
            return
        parent = self.parent
        assert isinstance(parent, DualModule)
        results, log = parent.micropython_results()
        record = results.get(self.func)
        if record is None:
            raise MicroPythonFailure(f"{self.func} did not report a result under MicroPython:\n{log[-4000:]}")
        if not record["ok"]:
            raise MicroPythonFailure(record["tb"])

    def repr_failure(self, excinfo, style=None):  # type: ignore[no-untyped-def]
        if isinstance(excinfo.value, MicroPythonFailure):
            return f"under MicroPython:\n{excinfo.value}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):  # type: ignore[no-untyped-def]
        return self.path, 0, f"{self.path.name}::{self.name}"


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if module_path.parent == DUAL_DIR and module_path.name.startswith("test_"):
        return DualModule.from_parent(parent, path=module_path)
    return None
