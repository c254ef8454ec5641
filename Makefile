# nightrecs: two commands for a fresh machine.
#   make demo   install, generate a demo shop, run the whole DAG with `airflow dags test`
#   make test   install, run the test suite (what CI runs)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO_ROOT ?= $(CURDIR)/demo/data
DATE   ?= $(shell date -u +%F)
# torch first, pinned: on the project's machines this takes a local CPU wheel; elsewhere
# pip picks the build for the platform (CUDA on Linux x86-64).
TORCH  ?= torch==2.13.0

export AIRFLOW_HOME := $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(BIN)/.installed

demo: install
	rm -rf $(DEMO_ROOT)/raw
	$(BIN)/nightrecs demo-data --root $(DEMO_ROOT) --end-date $(DATE)
	$(BIN)/airflow db migrate > /dev/null
	$(BIN)/airflow dags test nightrecs_daily $(DATE) -c '{"root": "$(DEMO_ROOT)"}'
	@echo
	@echo "Published lists: $(DEMO_ROOT)/recs (pointer: $(DEMO_ROOT)/recs/LATEST)"
	@cat $(DEMO_ROOT)/recs/LATEST; echo
	@echo "Sample list for user u000001:"
	@$(BIN)/nightrecs recs get --root $(DEMO_ROOT) u000001

test: install
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .airflow demo *.egg-info
