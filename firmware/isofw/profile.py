# The device profile: what this press may do. Recipes are validated against it on the
# board, and the software limits and the hard trip derive from it.
#
# The fields and their order are those of the protocol's SET_PROFILE command.

import math
import struct

from isoproto.codes import HOST_LOST_DEPRESSURISE, HOST_LOST_FINISH

try:
    from hashlib import sha256
except ImportError:  # a board build without hashlib
    sha256 = None

# (name, lowest, highest): the hardware envelope a profile may not leave.
PROFILE_FIELDS = (
    ("max_working_mpa", 1.0, 1000.0),
    ("trip_mpa", 1.0, 1000.0),
    ("max_ramp_up_mpa_s", 0.001, 50.0),
    ("max_ramp_down_mpa_s", 0.001, 50.0),
    ("max_hold_s", 1.0, 604800.0),  # a week
    ("margin_mpa", 0.0, 100.0),
    ("host_lost_timeout_ms", 500, 3600000),
    ("host_lost_policy", HOST_LOST_FINISH, HOST_LOST_DEPRESSURISE),
)

_HASH_FMT = "<ffffffIB"


class DeviceProfile:
    __slots__ = (
        "host_lost_policy",
        "host_lost_timeout_ms",
        "margin_mpa",
        "max_hold_s",
        "max_ramp_down_mpa_s",
        "max_ramp_up_mpa_s",
        "max_working_mpa",
        "trip_mpa",
    )

    def __init__(
        self,
        max_working_mpa: float = 400.0,
        trip_mpa: float = 420.0,
        max_ramp_up_mpa_s: float = 2.0,
        max_ramp_down_mpa_s: float = 1.0,
        max_hold_s: float = 7200.0,
        margin_mpa: float = 10.0,
        host_lost_timeout_ms: int = 10000,
        host_lost_policy: int = HOST_LOST_DEPRESSURISE,
    ):
        self.max_working_mpa = max_working_mpa
        self.trip_mpa = trip_mpa
        self.max_ramp_up_mpa_s = max_ramp_up_mpa_s
        self.max_ramp_down_mpa_s = max_ramp_down_mpa_s
        self.max_hold_s = max_hold_s
        self.margin_mpa = margin_mpa
        self.host_lost_timeout_ms = host_lost_timeout_ms
        self.host_lost_policy = host_lost_policy

    def values(self) -> tuple:
        return (
            self.max_working_mpa,
            self.trip_mpa,
            self.max_ramp_up_mpa_s,
            self.max_ramp_down_mpa_s,
            self.max_hold_s,
            self.margin_mpa,
            self.host_lost_timeout_ms,
            self.host_lost_policy,
        )

    def profile_hash(self) -> int:
        """u32 for HELLO: the first 4 bytes of SHA-256 over struct "<ffffffIB" of the fields,
        read big-endian (as isoproto.recipe.profile_hash)."""
        if sha256 is None:
            return 0
        d = sha256(struct.pack(_HASH_FMT, *self.values())).digest()
        return (d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3]


def profile_errors(values: tuple, range_mpa: float) -> list:
    """Problems of a candidate profile as (field name, message); empty when valid.

    values are in PROFILE_FIELDS order. range_mpa is the transducer's full scale: the
    trip must be readable, and the working maximum plus margin must stay below the trip.
    """
    errors = []
    if len(values) != len(PROFILE_FIELDS):
        return [("profile", "expected %d fields" % len(PROFILE_FIELDS))]
    for (name, lo, hi), v in zip(PROFILE_FIELDS, values):
        if isinstance(lo, int) and isinstance(hi, int):
            if not isinstance(v, int) or isinstance(v, bool):
                errors.append((name, "must be an integer"))
                continue
        elif not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            errors.append((name, "must be a finite number"))
            continue
        if v < lo or v > hi:
            errors.append((name, "must be within %s..%s" % (lo, hi)))
    if errors:
        return errors
    max_working, trip, _, _, _, margin, _, _ = values
    if max_working + margin >= trip:
        errors.append(("trip_mpa", "must be above max_working_mpa + margin_mpa"))
    if trip >= range_mpa:
        errors.append(("trip_mpa", "must be below the transducer range (%s MPa)" % range_mpa))
    return errors
