# The virtual press: a vessel of hydraulic oil with a pump, a vent valve, a dump valve,
# a leak and a relief valve. Units: MPa, mL, seconds.
#
# dP/dt = K(P) / V * (Q_pump - Q_vent - Q_dump - Q_leak - Q_relief)
# Foundation version; the Simulator issue adds creep, faults and the transducer model.

import math


class Vessel:
    def __init__(
        self,
        volume_ml: float = 500.0,
        bulk_modulus_mpa: float = 1800.0,
        bulk_modulus_slope: float = 6.0,
        pump_flow_ml_s: float = 0.556,
        pump_stall_mpa: float = 450.0,
        vent_coeff_ml_s: float = 0.1,
        dump_coeff_ml_s: float = 1.0,
        leak_ml_s_per_mpa: float = 2e-6,
        relief_mpa: float = 440.0,
        relief_coeff_ml_s_per_mpa: float = 0.5,
        pressure_mpa: float = 0.0,
    ):
        self.volume_ml = volume_ml
        self.bulk_modulus_mpa = bulk_modulus_mpa
        self.bulk_modulus_slope = bulk_modulus_slope
        self.pump_flow_ml_s = pump_flow_ml_s
        self.pump_stall_mpa = pump_stall_mpa
        self.vent_coeff_ml_s = vent_coeff_ml_s
        self.dump_coeff_ml_s = dump_coeff_ml_s
        self.leak_ml_s_per_mpa = leak_ml_s_per_mpa
        self.relief_mpa = relief_mpa
        self.relief_coeff_ml_s_per_mpa = relief_coeff_ml_s_per_mpa
        self.pressure_mpa = pressure_mpa

    def net_flow_ml_s(self, p: float, pump: float, vent: float, dump_open: bool) -> float:
        q = 0.0
        if pump > 0.0 and p < self.pump_stall_mpa:
            q += pump * self.pump_flow_ml_s * (1.0 - p / self.pump_stall_mpa)
        root = math.sqrt(p) if p > 0.0 else 0.0
        q -= vent * self.vent_coeff_ml_s * root
        if dump_open:
            q -= self.dump_coeff_ml_s * root
        q -= self.leak_ml_s_per_mpa * p
        if p > self.relief_mpa:
            q -= self.relief_coeff_ml_s_per_mpa * (p - self.relief_mpa)
        return q

    def step(self, dt_s: float, pump: float, vent: float, dump_open: bool):
        """Advance dt_s with pump and vent openings in 0..1; sub-steps keep Euler stable."""
        p = self.pressure_mpa
        n = 1
        # Limit each sub-step to a 0.5 MPa change (fast dumps near zero pressure).
        rate = self.bulk_modulus_mpa / self.volume_ml * abs(self.net_flow_ml_s(p, pump, vent, dump_open))
        if rate * dt_s > 0.5:
            n = int(rate * dt_s / 0.5) + 1
        h = dt_s / n
        for _ in range(n):
            k = self.bulk_modulus_mpa + self.bulk_modulus_slope * p
            p += k / self.volume_ml * self.net_flow_ml_s(p, pump, vent, dump_open) * h
            p = max(p, 0.0)
        self.pressure_mpa = p
