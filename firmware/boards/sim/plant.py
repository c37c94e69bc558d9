# The virtual press: a vessel of hydraulic oil fed by an intensifier pump and emptied by
# a proportional vent valve, a normally-open dump valve, a leak, sample creep, a burst
# sample bag and a mechanical relief valve. Units: MPa, mL, seconds.
#
#   dP/dt = K(P) / V * (Q_pump - Q_vent - Q_dump - Q_leak - Q_relief - Q_creep - Q_burst)
#   K(P)  = K0 + K1 * P                                effective bulk modulus
#   Q_pump   = duty * Q0 * j * (1 - P / P_stall)       for P < P_stall, else 0
#   Q_vent   = opening * C_vent * sqrt(P)              orifice flow
#   Q_dump   = C_dump * sqrt(P)                        when de-energised (open)
#   Q_leak   = L * P                                   laminar leak, L can change at any time
#   Q_relief = C_relief * (P - P_relief)               above the cracking pressure
#   Q_creep  = max(0, (c * P - v_creep) / tau)         sample creep, a plastic volume loss
#   Q_burst  = C_burst * sqrt(P) while the bag's void fills, then L = L_burst
#
# j is a per-stroke flow factor 1 + u * jitter (u uniform in -1..1, one draw per stroke)
# from the plant's own seeded generator: the same seed gives the same run. Every equation
# and default is in docs/simulator.md.
#
# Runs under MicroPython inside the virtual board, stepped once per virtual millisecond, so
# step() is written for speed: between re-evaluations of the flows it only extrapolates
# the pressure (see the solver_* parameters), and it allocates nothing but floats.

import math

# Every parameter, its default and its unit (in the name). docs/simulator.md explains each.
PLANT_DEFAULTS = {
    "volume_ml": 500.0,  # oil in the vessel and lines
    "bulk_modulus_mpa": 1800.0,  # effective bulk modulus at 0 MPa (oil + vessel compliance)
    "bulk_modulus_slope_mpa_per_mpa": 6.0,  # dK/dP: the oil stiffens under pressure
    "pump_flow_ml_s": 0.5556,  # intensifier flow at full duty and 0 MPa (2 MPa/s at the defaults)
    "pump_stall_mpa": 450.0,  # intensifier stall pressure: flow falls linearly to zero here
    "pump_stroke_s": 0.5,  # one intensifier stroke; the flow factor is redrawn each stroke
    "pump_flow_jitter_pct": 2.0,  # stroke-to-stroke flow variation (uniform, +-)
    "vent_flow_ml_s_per_sqrt_mpa": 0.1,  # vent valve fully open: Q = C * sqrt(P)
    "dump_flow_ml_s_per_sqrt_mpa": 1.0,  # dump valve open (de-energised)
    "leak_ml_s_per_mpa": 2e-6,  # seals and fittings: Q = L * P
    "relief_mpa": 440.0,  # mechanical relief valve cracking pressure
    "relief_flow_ml_s_per_mpa": 0.5,  # relief valve flow gain above cracking
    "creep_ml_per_mpa": 4e-4,  # sample volume lost to creep at equilibrium, per MPa
    "creep_time_constant_s": 60.0,  # how fast the sample creeps toward that volume
    "burst_void_ml": 0.5,  # void in the sample bag that oil fills when it bursts
    "burst_flow_ml_s_per_sqrt_mpa": 0.5,  # flow through the rupture while the void fills
    "burst_leak_ml_s_per_mpa": 2e-3,  # leak coefficient after a burst
    "initial_pressure_mpa": 0.0,
    "solver_max_step_s": 0.01,  # numerical: flows re-evaluated at least this often
    "solver_max_dp_mpa": 0.05,  # numerical: ... and whenever the pressure moved this much
}

# Inclusive ranges a parameter may take: wide enough for any lab press, narrow enough to
# catch a unit mistake (mL for L, kPa for MPa).
PLANT_RANGES = {
    "volume_ml": (1.0, 100000.0),
    "bulk_modulus_mpa": (100.0, 10000.0),
    "bulk_modulus_slope_mpa_per_mpa": (0.0, 20.0),
    "pump_flow_ml_s": (0.0, 1000.0),
    "pump_stall_mpa": (1.0, 2000.0),
    "pump_stroke_s": (0.001, 60.0),
    "pump_flow_jitter_pct": (0.0, 50.0),
    "vent_flow_ml_s_per_sqrt_mpa": (0.0, 100.0),
    "dump_flow_ml_s_per_sqrt_mpa": (0.0, 1000.0),
    "leak_ml_s_per_mpa": (0.0, 10.0),
    "relief_mpa": (1.0, 2000.0),
    "relief_flow_ml_s_per_mpa": (0.0, 1000.0),
    "creep_ml_per_mpa": (0.0, 1.0),
    "creep_time_constant_s": (0.1, 1e6),
    "burst_void_ml": (0.0, 1000.0),
    "burst_flow_ml_s_per_sqrt_mpa": (0.0, 1000.0),
    "burst_leak_ml_s_per_mpa": (0.0, 10.0),
    "initial_pressure_mpa": (0.0, 2000.0),
    "solver_max_step_s": (1e-5, 0.1),
    "solver_max_dp_mpa": (1e-4, 5.0),
}


def _merge_params(params, defaults: dict, ranges: dict, what: str) -> dict:
    """Defaults overridden by params; ValueError naming the first bad key."""
    merged = dict(defaults)
    if params is None:
        return merged
    if not isinstance(params, dict):
        raise ValueError("%s parameters must be a dict" % what)
    for key in params:
        if key not in defaults:
            raise ValueError("%s: unknown %s parameter" % (key, what))
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("%s: must be a number, got %r" % (key, value))
        value = float(value)
        if math.isnan(value) or math.isinf(value):
            raise ValueError("%s: must be finite, got %r" % (key, value))
        lo, hi = ranges[key]
        if value < lo or value > hi:
            raise ValueError("%s: must be within %r..%r, got %r" % (key, lo, hi, value))
        merged[key] = value
    return merged


class XorShift32:
    """Small seeded generator: each model owns one, so models never disturb each other."""

    def __init__(self, seed: int):
        # Mix the seed so that 0, 1, 2, ... give unrelated streams; state is never 0.
        s = (int(seed) * 2654435761 + 0x9E3779B9) & 0xFFFFFFFF
        self.state = s or 0x6D2B79F5
        for _ in range(4):
            self.next_u32()

    def next_u32(self) -> int:
        x = self.state
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.state = x
        return x

    def uniform(self) -> float:
        """Uniform in (0, 1]: never 0, so log() of it is safe."""
        return self.next_u32() / 4294967296.0 + 1.0 / 8589934592.0


class Plant:
    """The vessel and everything that moves oil in or out of it."""

    def __init__(self, params=None, seed=1):
        p = _merge_params(params, PLANT_DEFAULTS, PLANT_RANGES, "plant")
        self.params = p
        self._rng = XorShift32(seed)
        self._derive()

        self.pressure_mpa = p["initial_pressure_mpa"]
        self.t_s = 0.0
        self.relief_open = False
        self.leak_ml_s_per_mpa = p["leak_ml_s_per_mpa"]
        self.pump_stuck_on = False
        self.creep_ml = self._creep_per_mpa * self.pressure_mpa  # a sample at rest
        self.burst_void_left_ml = 0.0  # > 0 while a burst bag fills
        self.bag_burst = False
        self._stroke_factor = 1.0
        self._stroke_left_s = 0.0
        self._next_stroke()

        # Solver cache: the inputs of the last evaluation of the flows, the pressure and rate
        # it found, the slow flows, how long ago that was and how long it stays good.
        self._in_pump = 0.0
        self._in_vent = 0.0
        self._in_dump = True
        self._rate_mpa_s = 0.0
        self._q_creep = 0.0
        self._q_burst = 0.0
        self._p_eval = self.pressure_mpa
        self._age_s = 0.0
        self._valid_s = -1.0  # < 0: the next step evaluates

    def _derive(self):
        """Cache the parameters the per-millisecond step reads (attribute loads are cheap)."""
        p = self.params
        self._inv_volume = 1.0 / p["volume_ml"]
        self._k0 = p["bulk_modulus_mpa"]
        self._k1 = p["bulk_modulus_slope_mpa_per_mpa"]
        self._pump_flow = p["pump_flow_ml_s"]
        self._stall_mpa = p["pump_stall_mpa"]
        self._inv_stall = 1.0 / p["pump_stall_mpa"]
        self._stroke_s = p["pump_stroke_s"]
        self._jitter = p["pump_flow_jitter_pct"] / 100.0
        self._c_vent = p["vent_flow_ml_s_per_sqrt_mpa"]
        self._c_dump = p["dump_flow_ml_s_per_sqrt_mpa"]
        self._relief_mpa = p["relief_mpa"]
        self._c_relief = p["relief_flow_ml_s_per_mpa"]
        self._creep_per_mpa = p["creep_ml_per_mpa"]
        self._inv_creep_tau = 1.0 / p["creep_time_constant_s"]
        self._c_burst = p["burst_flow_ml_s_per_sqrt_mpa"]
        self._burst_leak = p["burst_leak_ml_s_per_mpa"]
        self._max_age_s = p["solver_max_step_s"]
        self._max_dp = p["solver_max_dp_mpa"]

    def set_param(self, key, value):
        """Change one parameter now (tests and scenarios: a softer vessel, a dead dump valve)."""
        merged = _merge_params({key: value}, PLANT_DEFAULTS, PLANT_RANGES, "plant")
        self._commit()
        self.params[key] = merged[key]
        self._derive()
        if key == "leak_ml_s_per_mpa":
            self.leak_ml_s_per_mpa = merged[key]
        self._valid_s = -1.0

    def set_pressure(self, pressure_mpa):
        """Put the vessel at pressure_mpa now (tests start mid-run without pumping there)."""
        self._commit()
        self.pressure_mpa = float(pressure_mpa)
        self._p_eval = self.pressure_mpa
        self._valid_s = -1.0

    # -- events --------------------------------------------------------------------
    def set_leak(self, leak_ml_s_per_mpa):
        """Change the leak coefficient now (a slow leak, a repaired seal)."""
        value = _merge_params(
            {"leak_ml_s_per_mpa": leak_ml_s_per_mpa}, PLANT_DEFAULTS, PLANT_RANGES, "plant"
        )["leak_ml_s_per_mpa"]
        self._commit()
        self.leak_ml_s_per_mpa = value
        self._valid_s = -1.0

    def burst_bag(self):
        """The sample bag ruptures: oil fills its void, then leaks into the sample."""
        if self.bag_burst:
            return
        self._commit()
        self.bag_burst = True
        self.burst_void_left_ml = self.params["burst_void_ml"]
        self.leak_ml_s_per_mpa = self._burst_leak
        self._valid_s = -1.0

    def set_pump_stuck_on(self, stuck):
        """A welded relay or a stuck air valve: full pump flow whatever the duty."""
        self._commit()
        self.pump_stuck_on = bool(stuck)
        self._valid_s = -1.0

    # -- physics ---------------------------------------------------------------------
    def _next_stroke(self):
        u = self._rng.uniform() * 2.0 - 1.0
        self._stroke_factor = 1.0 + u * self._jitter
        self._stroke_left_s += self._stroke_s

    # MicroPython puts a call's frame on the heap when its locals and value stack exceed
    # 11 words, and in a heap full of float garbage that allocation costs microseconds. The
    # methods below run every virtual millisecond, so each keeps its frame that small.
    # (No @property on this class either: it makes every attribute store look up the class.)

    def _net_flow_ml_s(self, p: float) -> float:
        """Net flow into the vessel at pressure p with the latched inputs; sets the slow flows."""
        root = math.sqrt(p) if p > 0.0 else 0.0
        q = -self.leak_ml_s_per_mpa * p
        pump = 1.0 if self.pump_stuck_on else self._in_pump
        if pump > 0.0 and p < self._stall_mpa:
            q += pump * self._pump_flow * self._stroke_factor * (1.0 - p * self._inv_stall)
        q -= self._in_vent * self._c_vent * root
        if self._in_dump:
            q -= self._c_dump * root
        self.relief_open = p > self._relief_mpa
        if self.relief_open:
            q -= self._c_relief * (p - self._relief_mpa)
        creep = (self._creep_per_mpa * p - self.creep_ml) * self._inv_creep_tau
        self._q_creep = creep if creep > 0.0 else 0.0
        self._q_burst = self._c_burst * root if self.burst_void_left_ml > 0.0 else 0.0
        return q - self._q_creep - self._q_burst

    def _commit(self):
        """Book the slow states (creep, burst void, pump stroke) up to now."""
        age = self._age_s
        if age <= 0.0:
            return
        self.creep_ml += self._q_creep * age
        if self._q_burst > 0.0:
            left = self.burst_void_left_ml - self._q_burst * age
            self.burst_void_left_ml = left if left > 0.0 else 0.0
        self._stroke_left_s -= age
        while self._stroke_left_s <= 0.0:
            self._next_stroke()
        self._age_s = 0.0

    def _substep(self, left_s: float) -> float:
        """Re-evaluate the flows and advance one sub-step of at most left_s; returns its length."""
        self._commit()
        p = self.pressure_mpa
        rate = (self._k0 + self._k1 * p) * self._inv_volume * self._net_flow_ml_s(p)
        self._rate_mpa_s = rate
        self._p_eval = p
        # The line is good until the pressure has moved solver_max_dp_mpa (or reaches 0).
        h = self._max_age_s
        if rate * h > self._max_dp:
            h = self._max_dp / rate
        elif -rate * h > self._max_dp:
            h = -self._max_dp / rate
        if rate < 0.0 and -rate * h > p:
            h = -p / rate
        self._valid_s = h
        h = min(h, left_s)
        if h < 1e-9:  # at 0 MPa and falling: nothing left to move
            h = left_s
        p += rate * h
        self.pressure_mpa = p if p > 0.0 else 0.0
        self._age_s = h
        return h

    def _advance(self, dt_s: float):
        self._commit()
        left = dt_s
        while left > 1e-12:
            left -= self._substep(left)

    def step(self, dt_s, pump, vent, dump_open):
        """Advance dt_s with pump and vent duties in 0..1 and the dump valve open or not."""
        self.t_s += dt_s
        # Fast path: same inputs and still on the line of the last evaluation of the flows.
        age = self._age_s + dt_s
        same_inputs = pump == self._in_pump and vent == self._in_vent and dump_open == self._in_dump
        if same_inputs and age <= self._valid_s:
            self.pressure_mpa = self._p_eval + self._rate_mpa_s * age
            self._age_s = age
            return
        self._in_pump = pump
        self._in_vent = vent
        self._in_dump = dump_open
        self._advance(dt_s)

    def rate_mpa_s(self) -> float:
        """dP/dt at the last evaluation of the flows (MPa/s)."""
        return self._rate_mpa_s


# The foundation's sim board builds a Vessel(); the new model is a drop-in for it.
Vessel = Plant
