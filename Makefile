# Everything installs from scratch into this folder: a virtual environment (.venv), the JavaScript
# peers used by the interop tests (tests/interop/js/node_modules), the emulated network's delay
# program (build/nfdelay), and Debian's chromium, iproute2, iptables and libnetfilter-queue.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
JS     := tests/interop/js

.PHONY: all install venv npm apt lab test pytest fuzz soak lint format gen demo bench clean

all: test

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

npm: $(JS)/node_modules/.installed
$(JS)/node_modules/.installed: $(JS)/package.json $(JS)/package-lock.json
	cd $(JS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Debian packages the interop tests need: a browser and `ip` for the test network namespace; and
# those of the emulated long path (tests/lab): iptables, tc, and libnetfilter-queue to build its
# delay program (iptables also cuts a link between two peers in tests/rpc/test_outage.py).
APT_PACKAGES := chromium iproute2 iptables libnetfilter-queue-dev gcc libc6-dev coturn
apt: .apt-installed
.apt-installed: Makefile
	@if ! command -v chromium >/dev/null || ! command -v ip >/dev/null \
		|| ! command -v iptables >/dev/null || ! command -v gcc >/dev/null \
		|| ! command -v turnserver >/dev/null \
		|| [ ! -e /usr/include/libnetfilter_queue/libnetfilter_queue.h ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); \
	fi
	touch $@

# The emulated long path's delay program (tests/lab/nfdelay.c): this kernel has no sch_netem.
lab: build/nfdelay
build/nfdelay: tests/lab/nfdelay.c .apt-installed
	mkdir -p build
	gcc -O2 -Wall -Wextra -Werror -o $@ tests/lab/nfdelay.c -lnetfilter_queue

install: venv npm apt lab $(VENV)/.bench-installed

test: install lint pytest

# The suite in two parts: every test but those that measure time, CPU or memory against a budget,
# spread over PYTEST_WORKERS processes (pytest-xdist; most tests wait on timers and the network:
# seven keep two cores about three quarters busy, one of them running the network labs, which
# mostly wait, and one the libwebrtc costs tests), then those (marked serial by tests/conftest.py)
# one at a time, the decoders' cost tests first, in a process no peer has run in yet. Tests that
# make connections run once on each transport, aiortc and libwebrtc.
PYTEST_WORKERS ?= 7
pytest: install
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadgroup -m "not serial"
	$(PY) -m pytest -q -m serial tests/fuzz tests/wire tests/rpc tests/lab tests/costs

# The decoders of everything a peer or a tracker sends, fuzzed with 10,000 examples a test (make test
# runs the same tests with 200). Only the library's typed errors may escape; memory stays in its caps;
# tests/fuzz/test_decoder_costs.py holds each decoder to the cost model (memory and CPU for the input's
# size; make test runs 24 examples of those, each timed several times).
fuzz: venv
	P2PRPC_FUZZ_PROFILE=fuzz $(PY) -m pytest -q -o timeout=0 tests/fuzz

# Soak on the native transport (libwebrtc, through wrtc): 1,000 connect/call/close cycles between two
# nodes, then 10 minutes of mixed traffic (every call shape, a topic, nodes leaving and joining).
# No crash, every call ends with a status, and file descriptors, threads and resident memory are as
# flat at the end as after a warm-up (tests/soak; about 12 minutes; figures printed). make test runs
# 20 cycles and 10 seconds of it on both transports. SOAK_CYCLES, SOAK_SECONDS change its length.
SOAK_CYCLES  ?= 1000
SOAK_SECONDS ?= 600
soak: venv
	P2PRPC_SOAK_CYCLES=$(SOAK_CYCLES) P2PRPC_SOAK_SECONDS=$(SOAK_SECONDS) \
		$(PY) -m pytest -q -s -p no:cacheprovider tests/soak --transport libwebrtc

lint: venv $(VENV)/.bench-installed
	$(VENV)/bin/ruff check p2prpc tests generated examples bench
	$(VENV)/bin/ruff format --check p2prpc tests generated examples bench
	$(VENV)/bin/mypy p2prpc examples generated bench
	$(VENV)/bin/lint-imports

format: venv
	$(VENV)/bin/ruff check --fix p2prpc tests generated examples bench
	$(VENV)/bin/ruff format p2prpc tests generated examples bench

# generated/ is what protoc and our plugin make of protos/; a test fails when they differ.
# protos/p2prpc/options.proto is the exception: compiled into the package (as p2prpc.options_pb2,
# where the modules of protos that import it look) and shipped in it for `p2prpc gen`.
gen: venv
	rm -rf generated && mkdir generated
	$(VENV)/bin/p2prpc gen -I protos -o . protos/p2prpc/options.proto
	cp protos/p2prpc/options.proto p2prpc/proto/p2prpc/options.proto
	$(VENV)/bin/p2prpc gen -I protos -o generated \
		$$(find protos -name '*.proto' -not -path 'protos/p2prpc/*' | LC_ALL=C sort)
	$(VENV)/bin/ruff format --quiet generated p2prpc/options_pb2.py p2prpc/options_pb2.pyi

demo: venv
	PYTHONPATH=generated $(PY) examples/demo.py

# Benchmarks of p2prpc on aiortc and on libwebrtc against raw data channels on each, gRPC aio and
# JavaScript P2PT, measured in the same run (about 11 minutes on 2 cores, and more for the
# long-path rows; the JavaScript and long-path rows need root for their network namespaces).
# BENCH="--quick" for a smoke run, BENCH="--only connect" for one row.
bench: install
	$(PY) -m bench $(BENCH)

# The benchmark's extras (the chart) and types, for make bench and for linting bench/.
$(VENV)/.bench-installed: $(VENV)/.installed pyproject.toml constraints.txt
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	touch $@

clean:
	rm -rf $(VENV) $(JS)/node_modules .apt-installed .mypy_cache .ruff_cache .pytest_cache
