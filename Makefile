# Two commands a fresh clone needs:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.neuroq-installed
DEV    := $(VENV)/.neuroq-dev-installed
REPORT := $(VENV)/.neuroq-report-installed
SJ14   := .sj14

.PHONY: demo test test-sj14 install clean bench

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $(STAMP)

$(DEV): $(STAMP)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(DEV)

# the report extra (Bokeh) for the demo's report.html
$(REPORT): $(STAMP)
	$(PY) -m pip install -q -e '.[report]'
	touch $(REPORT)

install: $(STAMP)

# Main job: every method on scikit-learn's digits (offline), the same budget, one energy meter:
# runs/demo/compare.json, frontier.png, and per method its checkpoint, metrics, energy report and raster;
# then runs/demo/report.html, every method's spikes, energy and the frontier in one page that opens offline.
DEMO_METHODS := lif,s2nn,saf-e,ottt-o,maqd,ann
demo: $(REPORT)
	$(PY) -m neuroq.cli compare --dataset digits --methods $(DEMO_METHODS) --epochs 15 --jobs 2 --out runs/demo
	$(PY) -m neuroq.cli report runs/demo

# The whole test suite against the installed SpikingJelly (2.0.0 by default), slow end-to-end checks
# included (a plain `pytest` leaves those out: setup.cfg).
ALL_TESTS := -m "slow or not slow"
test: $(DEV)
	$(PY) -m pytest -q $(ALL_TESTS)

# The same suite with SpikingJelly 0.0.0.0.14 first on the path.
$(SJ14)/.ok: $(DEV)
	$(PY) -m pip install -q --no-deps --target $(SJ14) spikingjelly==0.0.0.0.14
	touch $@

test-sj14: $(SJ14)/.ok
	PYTHONPATH=$(SJ14) $(PY) -m pytest -q $(ALL_TESTS)

clean:
	rm -rf $(VENV) $(SJ14) runs build *.egg-info
