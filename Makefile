# isopress: every target sets up what it needs (.venv, MicroPython stubs, mosquitto).
# `make test` and `make demo` are the two commands a newcomer needs.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
TYPINGS := typings/.installed
PYTEST_ARGS ?=

.PHONY: test demo bench fuzz soak lint deps broker clean

$(INSTALLED): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "isopress needs Python >= 3.11 (found $$($(PYTHON) --version))" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

# MicroPython stubs go into their own folder (pyright's typeshed for firmware/ and
# protocol/), never into the venv, so host code keeps CPython's typeshed.
$(TYPINGS): constraints.txt | $(INSTALLED)
	rm -rf typings
	$(BIN)/python -m pip install --quiet --no-deps --target typings -c constraints.txt \
		micropython-rp2-stubs micropython-stdlib-stubs
	@touch $@

deps: $(INSTALLED) $(TYPINGS)

broker:
	@bash tools/ensure-mosquitto.sh

test: deps broker
	$(BIN)/pytest $(PYTEST_ARGS)

# The whole stack on embedded defaults (virtual board under the venv's MicroPython, the
# agent, Mosquitto if installed else the embedded broker): about 70 s. Needs only the venv.
# DEMO_ARGS: e.g. --keep-running, --broker embedded, --recipe FILE (see isopress demo -h).
DEMO_ARGS ?=
demo: $(INSTALLED)
	$(BIN)/isopress demo $(DEMO_ARGS)

# BENCH=fleet,protocol_bench runs only those (a name or a unique prefix); the other rows are kept.
BENCH ?=
bench: deps broker
	BENCH="$(BENCH)" $(BIN)/python -m bench

# The protocol decoders and the command payload parsers for much longer than `make test`
# does: FUZZ_EXAMPLES random frames (default 3 000 000), FUZZ_COMMAND_ITERATIONS commands in
# the command parsers' memory run (default 100 000) and hypothesis's random profile (5000
# examples a test): ~8 min.
FUZZ_EXAMPLES ?= 3000000
FUZZ_COMMAND_ITERATIONS ?= 100000
fuzz: deps
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_COMMAND_ITERATIONS=$(FUZZ_COMMAND_ITERATIONS) HYPOTHESIS_PROFILE=fuzz \
		$(BIN)/pytest -p no:cacheprovider tests/protocol tests/security/test_command_fuzz.py $(PYTEST_ARGS)

# A virtual press for SOAK_S seconds of real time (default an hour) with the broker SIGKILLed
# every 30 s and the serial link damaged and unplugged; prints a summary (samples produced /
# delivered / lost, commands, reconnect times, faults, memory) and fails on any loss.
SOAK_S ?= 3600
soak: deps broker
	$(BIN)/python -m isopress.soak --duration-s $(SOAK_S) $(SOAK_ARGS)

lint: deps
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pyright -p pyrightconfig.json

clean:
	rm -rf $(VENV) typings build .pytest_cache .mypy_cache .ruff_cache .hypothesis
