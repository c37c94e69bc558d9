# Recipes: a list of segments, and the setpoint generator that walks through them.
#
# A segment is either a RAMP (to target_mpa at rate_mpa_s; up or down by the sign of
# target - current) or a HOLD (at the previous target for duration_s).

try:
    from micropython import const
except ImportError:  # CPython: const() is only a hint to MicroPython's compiler
    const = lambda x: x


SEG_RAMP = const(1)
SEG_HOLD = const(2)


class Segment:
    __slots__ = ("duration_s", "kind", "rate_mpa_s", "target_mpa")

    def __init__(self, kind: int, target_mpa: float = 0.0, rate_mpa_s: float = 0.0, duration_s: float = 0.0):
        self.kind = kind
        self.target_mpa = target_mpa
        self.rate_mpa_s = rate_mpa_s
        self.duration_s = duration_s


def ramp(target_mpa: float, rate_mpa_s: float) -> Segment:
    return Segment(SEG_RAMP, target_mpa, rate_mpa_s, 0.0)


def hold(duration_s: float) -> Segment:
    return Segment(SEG_HOLD, 0.0, 0.0, duration_s)


class SetpointGenerator:
    """Turns a segment list and the time into a setpoint, its rate and the segment index."""

    def __init__(self):
        self.segments = []
        self.index = 0
        self.setpoint_mpa = 0.0
        self.rate_mpa_s = 0.0
        self.done = True
        self._segment_start_s = 0.0
        self._start_mpa = 0.0

    def start(self, segments, now_s: float, pressure_mpa: float):
        self.segments = segments
        self.index = 0
        self.done = len(segments) == 0
        self.setpoint_mpa = pressure_mpa
        self.rate_mpa_s = 0.0
        self._begin_segment(now_s)

    def _begin_segment(self, now_s: float):
        self._segment_start_s = now_s
        self._start_mpa = self.setpoint_mpa

    def update(self, now_s: float) -> bool:
        """Advance to now_s; returns True when the segment index changed."""
        if self.done:
            self.rate_mpa_s = 0.0
            return False
        seg = self.segments[self.index]
        elapsed = now_s - self._segment_start_s
        finished = False
        if seg.kind == SEG_RAMP:
            span = seg.target_mpa - self._start_mpa
            rate = seg.rate_mpa_s if span >= 0.0 else -seg.rate_mpa_s
            travelled = rate * elapsed
            if (span >= 0.0 and travelled >= span) or (span < 0.0 and travelled <= span):
                self.setpoint_mpa = seg.target_mpa
                self.rate_mpa_s = 0.0
                finished = True
            else:
                self.setpoint_mpa = self._start_mpa + travelled
                self.rate_mpa_s = rate
        else:
            self.rate_mpa_s = 0.0
            finished = elapsed >= seg.duration_s
        if not finished:
            return False
        self.index += 1
        if self.index >= len(self.segments):
            self.done = True
            self.index = len(self.segments) - 1
        else:
            self._begin_segment(now_s)
        return True
