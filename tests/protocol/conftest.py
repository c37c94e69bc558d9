"""Hypothesis profiles for the protocol's property tests.

``ci`` (the default, used by ``make test``) is derandomized: the same examples on every
run, so a CRC-16 collision, which the design allows with probability 2^-16 per damaged
frame, cannot make the suite flaky. ``fuzz`` (``make fuzz``, or HYPOTHESIS_PROFILE=fuzz)
explores new random examples, many more of them.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=300,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("FUZZ_HYPOTHESIS_EXAMPLES", "5000")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
