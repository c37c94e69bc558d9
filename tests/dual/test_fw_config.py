# The board's config.json: checksum, validation naming the field, safe fault boot.
# CPython and MicroPython.

import json

from isofw import config
from isofw.app import build_core
from isofw.core import Inputs
from isoproto import codes

_REPO = __file__.rsplit("/", 3)[0]


def _text(board):
    with open("%s/firmware/boards/%s/config.json" % (_REPO, board)) as f:
        return f.read()


def _sealed(doc) -> str:
    doc["checksum"] = "crc32:00000000"
    text = json.dumps(doc)
    return text.replace("crc32:00000000", config.compute_checksum(text))


def _errors_for(change) -> list:
    doc = json.loads(_text("sim"))
    change(doc)
    return config.load(_sealed(doc), "sim")[1]


def test_checked_in_configs_are_sealed_and_valid():
    for board in ("sim", "rp2", "esp32"):
        cfg, errors = config.load(_text(board), board)
        assert errors == [], (board, errors)
        assert cfg["profile"]["trip_mpa"] == 420.0
        assert cfg["board"] == board


def test_checksum_covers_every_byte_but_its_own_digits():
    text = _text("sim")
    assert config.compute_checksum(text) in text
    edited = text.replace('"max_working_mpa": 400.0', '"max_working_mpa": 401.0')
    assert config.compute_checksum(edited) != config.compute_checksum(text)
    errors = config.load(edited, "sim")[1]
    assert len(errors) == 1 and errors[0].startswith("checksum: does not match")


def test_missing_file_missing_checksum_and_bad_json_are_errors():
    assert config.load(None, "sim")[1] == ["config.json: missing"]
    assert config.load('{"board": "sim"}', "sim")[1][0].startswith("checksum: missing")
    assert config.load('{"checksum": "crc32:00000000", ', "sim")[1] == ["config.json: not valid JSON"]


def test_errors_name_the_field_and_the_reason():
    def bad(doc):
        doc["profile"]["trip_mpa"] = "high"
        doc["calibration"]["gain"] = 9.0
        doc["safety"]["slew_ticks"] = 1.5
        doc["control"]["kp_per_s"] = -1.0
        doc["telemetry_decimation"] = 0

    errors = _errors_for(bad)
    assert "profile.trip_mpa: must be within 1.0..1000.0" in errors or any(
        e.startswith("profile.trip_mpa:") for e in errors
    )
    assert any(e.startswith("calibration.gain: must be within") for e in errors)
    assert "safety.slew_ticks: must be an integer" in errors
    assert any(e.startswith("control.kp_per_s: must be within") for e in errors)
    assert any(e.startswith("telemetry_decimation: must be within") for e in errors)


def test_unknown_and_missing_keys_are_errors():
    def bad(doc):
        doc["safety"]["namur_lo_ma"] = 3.6  # a typo
        del doc["profile"]["margin_mpa"]
        doc["colour"] = "red"

    errors = _errors_for(bad)
    assert "safety.namur_lo_ma: unknown key" in errors
    assert "profile.margin_mpa: missing" in errors
    assert "colour: unknown key" in errors


def test_profile_must_keep_margin_below_the_trip_and_the_trip_readable():
    def tight(doc):
        doc["profile"]["max_working_mpa"] = 415.0  # + 10 margin >= 420 trip

    assert "profile.trip_mpa: must be above max_working_mpa + margin_mpa" in _errors_for(tight)

    def unreadable(doc):
        doc["calibration"]["range_mpa"] = 400.0

    assert any("below the transducer range" in e for e in _errors_for(unreadable))


def test_nan_in_a_config_is_refused():
    doc = json.loads(_text("sim"))
    doc["control"]["ki_per_s2"] = float("nan")
    doc["profile"]["max_hold_s"] = float("inf")
    errors = config.validate(doc, "sim")[1]
    assert "control.ki_per_s2: must be a finite number" in errors
    assert "profile.max_hold_s: must be a finite number" in errors
    # In the file itself: CPython's parser reads NaN and the validator refuses it,
    # MicroPython's parser refuses the text; either way the board does not boot on it.
    text = _text("sim").replace('"ki_per_s2": 0.4', '"ki_per_s2": NaN')
    text = text.replace(config.compute_checksum(_text("sim")), config.compute_checksum(text))
    errors = config.load(text, "sim")[1]
    assert errors in (["control.ki_per_s2: must be a finite number"], ["config.json: not valid JSON"])


def test_a_config_for_another_board_is_refused():
    errors = config.load(_text("sim"), "rp2")[1]
    assert any(e.startswith("board: is 'sim'") for e in errors)
    assert "pins.pump_pwm: missing" in errors


def test_a_bad_config_boots_a_core_that_never_controls():
    cfg, errors = config.load(_text("sim").replace("400.0", "401.0"), "sim")
    assert errors
    core = build_core(cfg, errors, "sim")
    inputs = Inputs(counts=core.calibration.mpa_to_counts(100.0))
    for t in range(0, 1000, 10):
        core.step(t, inputs)
        assert core.pump_duty == 0 and core.vent_duty == 0 and core.dump_closed is False
    assert core.state == codes.ST_FAULT
    assert core.faults == 1 << codes.F_CONFIG_INVALID
    # It reports itself, refuses to run and cannot be reset: the cause is in the file.
    assert core.load_recipe([(codes.SEG_RAMP, 10.0, 1.0, 0.0)])[1] == codes.R_BAD_STATE
    assert core.reset_faults() == (codes.RESULT_REJECTED, codes.R_CAUSE_PERSISTS, codes.F_CONFIG_INVALID, ())
    raised = [e for e in core.events.since(0) if e[3] == codes.EV_FAULT_RAISED]
    assert [e[4] for e in raised] == [codes.F_CONFIG_INVALID]
    assert core.config_errors == tuple(errors)


def test_every_config_key_is_documented():
    from isofw.profile import PROFILE_FIELDS

    with open(_REPO + "/docs/firmware.md") as f:
        doc = f.read()
    fields = config.TOP_FIELDS + config.CALIBRATION_FIELDS + config.CONTROL_FIELDS + config.SAFETY_FIELDS
    names = [f[0] for f in fields] + [f[0] for f in PROFILE_FIELDS] + list(config.PIN_FIELDS)
    missing = [name for name in names if "`%s`" % name not in doc]
    assert missing == [], missing
