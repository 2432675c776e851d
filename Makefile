# Every target sets up its own virtual environment from pyproject.toml.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_TEXT ?= 我在你们这儿办了十年的卡,今天柜员对我爱答不理,问三遍才回一句。退款的事拖了半个月也没人给个说法,再不处理我就去12315投诉!

.PHONY: install demo test bench lint eval clean browser

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/complaint-motive analyze "$(DEMO_TEXT)"

test: $(STAMP) browser
	$(PY) -m pytest -q

# Headless Chromium from the system packages, for the test that opens report.html in a real
# browser (skipped without it, except in CI). Installs only when missing; where apt cannot
# run (not root) it says so and the tests go on.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } || \
		echo "note: could not install chromium; the browser test will be skipped"

bench: $(STAMP)
	$(PY) bench/run.py $(SECTIONS)

lint: $(STAMP)
	$(VENV)/bin/ruff check plugin tests bench
	$(VENV)/bin/mypy

# The real-text set is the measure (per language, with the second annotator's agreement);
# the set written in the project is a regression check.
eval: $(STAMP)
	$(VENV)/bin/complaint-motive eval corpus/eval/real.jsonl --backend offline --report reports/real \
		--by lang --by channel --second-annotator second_motive
	$(VENV)/bin/complaint-motive eval corpus/eval/complaints.jsonl --backend offline --report reports/offline

clean:
	rm -rf $(VENV) dist build reports .pytest_cache
