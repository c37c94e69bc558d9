"""Hardware-in-the-loop tooling: scenario files, run traces, metrics and plots.

The virtual board (``firmware/boards/sim``) runs the firmware against the plant and
transducer models; this package describes what to run (:mod:`.scenario`), records what
happened (:mod:`.trace`), judges it (:mod:`.metrics`) and draws it (:mod:`.plot`).
"""

from .metrics import Metrics, Verdict, check_expectations, compute_metrics
from .scenario import Scenario, ScenarioError, load_scenario, loads_scenario
from .trace import TraceError, TraceRow, read_trace_csv, write_trace_csv

__all__ = [
    "Metrics",
    "Scenario",
    "ScenarioError",
    "TraceError",
    "TraceRow",
    "Verdict",
    "check_expectations",
    "compute_metrics",
    "load_scenario",
    "loads_scenario",
    "read_trace_csv",
    "write_trace_csv",
]
