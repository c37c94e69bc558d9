# The shared code tables: every number has a name, and names are unique.

from isoproto import codes, names


def test_every_state_fault_reason_and_event_has_a_name():
    assert len(names.STATE_NAMES) == codes.ST_ESTOP + 1
    assert len(names.FAULT_NAMES) == codes.FAULT_COUNT
    assert len(names.FAULT_TEXT) == codes.FAULT_COUNT
    assert len(names.REASON_NAMES) == codes.R_RECIPE_HASH + 1
    assert len(names.REASON_TEXT) == len(names.REASON_NAMES)
    assert len(names.EVENT_NAMES) == codes.EV_BOOT + 1
    assert len(names.RESET_NAMES) == codes.RESET_DEEPSLEEP + 1


def test_names_are_unique():
    for table in (names.STATE_NAMES, names.FAULT_NAMES, names.REASON_NAMES, names.EVENT_NAMES):
        assert len(set(table)) == len(table)


def test_faults_fit_the_telemetry_mask():
    assert codes.FAULT_COUNT <= 16
    assert codes.F_CONFIG_INVALID == codes.FAULT_COUNT - 1
