# The board's config.json: pin map, device profile, calibration, control gains, safety
# thresholds, telemetry decimation; checksummed and validated at boot.
#
# Checksum: "checksum": "crc32:XXXXXXXX" holds the CRC-32 (binascii.crc32, lower-case
# hex) of the file's UTF-8 bytes with those 8 hex digits replaced by "00000000". It is
# computed over the text, not over re-serialised JSON, because a board with float32 and
# unordered dicts cannot reproduce a canonical JSON byte for byte. Any edit of the file
# therefore needs a new checksum: `isopress firmware seal-config FILE` writes it.
#
# validate() returns every problem as "field.path: what is wrong" and never raises; a
# config with any problem boots the board into F_CONFIG_INVALID (outputs safe, no
# control) and the problems are printed and kept for the host.

import json
import math

from isofw.calibration import calibration_errors
from isofw.profile import PROFILE_FIELDS, profile_errors

try:
    from binascii import crc32
except ImportError:  # pragma: no cover - every supported build has it
    crc32 = None

CHECKSUM_KEY = '"checksum"'
_CHECKSUM_PREFIX = "crc32:"
_PLACEHOLDER = "00000000"

# (key, kind, lowest, highest, default). kind: "i" integer, "f" finite number, "s" text.
TOP_FIELDS = (
    ("control_period_ms", "i", 5, 50, 10),
    ("watchdog_ms", "i", 100, 8000, 500),
    ("telemetry_decimation", "i", 1, 100, 1),
    ("history_samples", "i", 16, 2048, 1024),
    ("gc_every_ticks", "i", 1, 100, 10),
)

CALIBRATION_FIELDS = (
    ("cal_id", "s", 0, 32, "factory"),
    ("cal_date", "s", 0, 32, ""),
    ("range_mpa", "f", 10.0, 2000.0, 600.0),
    ("shunt_ohm", "f", 10.0, 1000.0, 150.0),
    ("adc_vref_v", "f", 1.0, 5.0, 3.3),
    ("offset_mpa", "f", -50.0, 50.0, 0.0),
    ("gain", "f", 0.5, 2.0, 1.0),
)

CONTROL_FIELDS = (
    ("kp_per_s", "f", 0.0, 50.0, 1.5),
    ("ki_per_s2", "f", 0.0, 50.0, 0.4),
    ("hold_ki_per_s2", "f", 0.0, 50.0, 0.8),
    ("integral_limit_mpa_s", "f", 0.0, 10.0, 0.5),
    ("switch_band_mpa_s", "f", 0.0, 5.0, 0.1),
    ("pump_rate_mpa_s", "f", 0.01, 100.0, 2.0),
    ("pump_stall_mpa", "f", 10.0, 2000.0, 450.0),
    ("vent_rate_mpa_s", "f", 0.001, 100.0, 0.36),
    ("stiffening_per_mpa", "f", 0.0, 0.1, 0.00333),
    ("filter_alpha", "f", 0.01, 1.0, 0.05),
    ("filter_beta", "f", 0.0, 1.0, 0.0005),
    ("ambient_mpa", "f", 0.05, 20.0, 0.2),
)

SAFETY_FIELDS = (
    ("namur_low_ma", "f", 3.0, 4.0, 3.6),
    ("namur_high_ma", "f", 20.0, 23.0, 21.0),
    ("pressurised_mpa", "f", 0.1, 50.0, 1.0),
    ("rate_margin_frac", "f", 0.0, 2.0, 0.25),
    ("rate_margin_mpa_s", "f", 0.0, 10.0, 0.3),
    ("rate_window_ms", "i", 100, 600, 500),
    ("rate_confirm_ms", "i", 0, 10000, 100),
    ("stuck_window_ms", "i", 200, 60000, 2000),
    ("stuck_band_counts", "f", 0.0, 1000.0, 2.0),
    ("stuck_min_pump_duty", "i", 0, 65535, 16384),
    ("slew_max_mpa_s", "f", 1.0, 10000.0, 500.0),
    ("slew_noise_mpa", "f", 0.0, 100.0, 5.0),
    ("slew_ticks", "i", 1, 100, 3),
    ("mismatch_mpa", "f", 0.1, 200.0, 10.0),
    ("mismatch_ms", "i", 10, 60000, 200),
    ("pressurise_expected_mpa", "f", 0.5, 100.0, 5.0),
    ("pressurise_min_fraction", "f", 0.01, 1.0, 0.25),
    ("leak_settle_ms", "i", 0, 600000, 15000),
    ("leak_window_ms", "i", 1000, 600000, 10000),
    ("leak_max_mpa_s", "f", 0.001, 10.0, 0.05),
    ("second_transducer", "b", 0, 1, False),
)

PIN_FIELDS = (
    "transducer_adc",
    "pump_pwm",
    "vent_pwm",
    "dump_valve",
    "closure_locked",
    "estop_ok",
    "glovebox_ok",
    "status_led",
)

# Pins a board may have: the second transducer's ADC, and the maintenance input (held at
# reset: the firmware leaves the outputs safe and the REPL free for a redeploy).
OPTIONAL_PINS = ("transducer2_adc", "maintenance")

# The pins each real board must have in its pin map (the virtual board has none).
BOARD_PINS = {"rp2": PIN_FIELDS, "esp32": PIN_FIELDS, "sim": ()}

_SECTIONS = ("profile", "calibration", "control", "safety", "pins")
_TOP_KEYS = ("board", "board_id", "checksum") + _SECTIONS


def checksum_text(text: str) -> str:
    """The text with the checksum's 8 hex digits replaced by the placeholder, or "" if absent."""
    key = text.find(CHECKSUM_KEY)
    if key < 0:
        return ""
    start = text.find(_CHECKSUM_PREFIX, key)
    if start < 0:
        return ""
    start += len(_CHECKSUM_PREFIX)
    return text[:start] + _PLACEHOLDER + text[start + 8 :]


def compute_checksum(text: str) -> str:
    """ "crc32:xxxxxxxx" for text (whatever its checksum field holds now)."""
    blank = checksum_text(text)
    if not blank or crc32 is None:
        return ""
    return _CHECKSUM_PREFIX + "%08x" % (crc32(blank.encode()) & 0xFFFFFFFF)


def _check(section: str, fields, given, out: dict, errors: list):
    if not isinstance(given, dict):
        errors.append("%s: must be an object" % section)
        given = {}
    known = [f[0] for f in fields]
    for key in given:
        if key not in known:
            errors.append("%s.%s: unknown key" % (section, key))
    for name, kind, lo, hi, default in fields:
        path = "%s.%s" % (section, name) if section else name
        if name not in given:
            out[name] = default
            continue
        v = given[name]
        if kind == "s":
            if not isinstance(v, str) or len(v) > hi:
                errors.append("%s: must be text of at most %d characters" % (path, hi))
                continue
        elif kind == "b":
            if not isinstance(v, bool):
                errors.append("%s: must be true or false" % path)
                continue
        elif kind == "i":
            if not isinstance(v, int) or isinstance(v, bool):
                errors.append("%s: must be an integer" % path)
                continue
            if v < lo or v > hi:
                errors.append("%s: must be within %s..%s" % (path, lo, hi))
                continue
        else:
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                errors.append("%s: must be a finite number" % path)
                continue
            if v < lo or v > hi:
                errors.append("%s: must be within %s..%s" % (path, lo, hi))
                continue
            v = float(v)
        out[name] = v


def validate(doc, board_name="") -> tuple:
    """Check a parsed config document; returns (config, errors).

    config has every section filled in (defaults where a key may be omitted); errors
    is a list of "field.path: problem" strings, empty when the config may be used.
    Profile and calibration keys are required: they decide where the press trips.
    """
    errors = []
    config = {}
    if not isinstance(doc, dict):
        return ({}, ["config: must be a JSON object"])
    for key in doc:
        if key not in _TOP_KEYS and key not in [f[0] for f in TOP_FIELDS]:
            errors.append("%s: unknown key" % key)
    for key in ("board", "board_id"):
        v = doc.get(key, "")
        if not isinstance(v, str) or len(v) > 32:
            errors.append("%s: must be text of at most 32 characters" % key)
            v = ""
        config[key] = v
    if board_name and config["board"] != board_name:
        errors.append("board: is %r, this is a %r board (wrong config file?)" % (config["board"], board_name))
    required_pins = BOARD_PINS.get(board_name, ())
    top = {}
    for name, _, _, _, _ in TOP_FIELDS:
        if name in doc:
            top[name] = doc[name]
    _check("", TOP_FIELDS, top, config, errors)

    profile_doc = doc.get("profile")
    if not isinstance(profile_doc, dict):
        errors.append("profile: missing (the device profile is required)")
        profile_doc = {}
    for name, _, _ in PROFILE_FIELDS:
        if name not in profile_doc:
            errors.append("profile.%s: missing" % name)
    for key in profile_doc:
        if key not in [f[0] for f in PROFILE_FIELDS]:
            errors.append("profile.%s: unknown key" % key)

    cal = {}
    cal_doc = doc.get("calibration")
    if not isinstance(cal_doc, dict):
        errors.append("calibration: missing (the transducer calibration is required)")
        cal_doc = {}
    for name in ("range_mpa", "shunt_ohm", "adc_vref_v"):
        if name not in cal_doc:
            errors.append("calibration.%s: missing" % name)
    _check("calibration", CALIBRATION_FIELDS, cal_doc, cal, errors)
    config["calibration"] = cal
    if not errors:
        for name, text in calibration_errors(
            cal["cal_id"],
            cal["cal_date"],
            cal["range_mpa"],
            cal["shunt_ohm"],
            cal["offset_mpa"],
            cal["gain"],
            cal["adc_vref_v"],
        ):
            errors.append("calibration.%s: %s" % (name, text))

    if not [e for e in errors if e.startswith("profile")]:
        values = tuple(profile_doc[name] for name, _, _ in PROFILE_FIELDS)
        for name, text in profile_errors(values, cal.get("range_mpa", 600.0)):
            errors.append("profile.%s: %s" % (name, text))
        config["profile"] = dict(zip([f[0] for f in PROFILE_FIELDS], values))

    for section, fields in (("control", CONTROL_FIELDS), ("safety", SAFETY_FIELDS)):
        out = {}
        _check(section, fields, doc.get(section, {}), out, errors)
        config[section] = out

    pins = doc.get("pins", {})
    config["pins"] = {}
    if not isinstance(pins, dict):
        errors.append("pins: must be an object")
    else:
        for key in pins:
            if key not in PIN_FIELDS and key not in OPTIONAL_PINS:
                errors.append("pins.%s: unknown pin" % key)
            elif not isinstance(pins[key], (int, str)) or isinstance(pins[key], bool):
                errors.append("pins.%s: must be a pin number or name" % key)
            else:
                config["pins"][key] = pins[key]
        for key in required_pins:
            if key not in pins:
                errors.append("pins.%s: missing" % key)
        if config["safety"]["second_transducer"] and "transducer2_adc" not in pins and required_pins:
            errors.append("pins.transducer2_adc: missing (safety.second_transducer is true)")
    return (config, errors)


def defaults() -> dict:
    """A complete config of defaults: what a fault-only core is built from."""
    config: dict = {"board": "", "board_id": ""}
    for name, _, _, _, default in TOP_FIELDS:
        config[name] = default
    for section, fields in (
        ("calibration", CALIBRATION_FIELDS),
        ("control", CONTROL_FIELDS),
        ("safety", SAFETY_FIELDS),
    ):
        config[section] = {f[0]: f[4] for f in fields}
    config["profile"] = {}
    config["pins"] = {}
    return config


def load(text, board_name="") -> tuple:
    """Parse, checksum-check and validate config text; returns (config, errors).

    text None means the file is missing. Never raises: every problem is an error string.
    With errors, config is defaults() (a core built from it only reports the fault).
    """
    doc, errors = _parse(text)
    if not errors:
        config, errors = validate(doc, board_name)
        if not errors:
            return (config, errors)
    return (defaults(), errors)


def _parse(text) -> tuple:
    if text is None:
        return (None, ["config.json: missing"])
    expected = compute_checksum(text)
    if not expected:
        return (None, ['checksum: missing (add "checksum": "crc32:00000000" and seal the file)'])
    try:
        doc = json.loads(text)
    except ValueError:
        return (None, ["config.json: not valid JSON"])
    if not isinstance(doc, dict):
        return (None, ["config: must be a JSON object"])
    if doc.get("checksum") != expected:
        return (None, ["checksum: does not match the file (expected %s): edited or corrupted" % expected])
    return (doc, [])
