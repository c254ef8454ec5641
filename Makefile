# nightrecs: two commands for a fresh machine.
#   make demo   install, generate a demo shop, run the whole DAG with `airflow dags test`
#   make test   install, run the test suite (what CI runs, with make stack-test)
# and a production-like deployment on this machine (docker/stack.sh; README "Deploying"):
#   make stack        PostgreSQL, Airflow (web UI on 127.0.0.1:$(STACK_PORT)), Spark, S3, demo data
#   make stack-down   stop it (by the PIDs in .stack/pids)
#   make stack-test   the deployment tests: their own stack on free ports, headless Chromium

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

# hadoop-aws + AWS SDK jars for Spark's s3a:// (Maven is unreachable here; this PyPI sdist
# carries them). A version-mismatched pair (hadoop-aws 3.3.1, Spark's Hadoop 3.5): good for
# tests, not for production images, which should bake matching jars.
S3A_JARS_DIR := $(VENV)/s3a-jars
S3A_JARS := $(S3A_JARS_DIR)/hadoop-aws-3.3.1.jar,$(S3A_JARS_DIR)/aws-java-sdk-bundle-1.11.901.jar

# The compose file's schema (tests/test_compose.py): the compose spec JSON schema inside
# the docker-compose 1.x wheel, no Docker needed.
COMPOSE_SCHEMA := $(VENV)/compose-schema/compose_spec.json
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STACK_PORT ?= 8080
export STACK_PORT

.PHONY: install demo test clean stack stack-down stack-test system-packages

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e '.[test]'
	touch $@

$(S3A_JARS_DIR)/.done:
	mkdir -p $(S3A_JARS_DIR)/sdist
	$(BIN)/pip download -q --no-deps --no-binary :all: --no-build-isolation sagemaker-pyspark==1.4.5 -d $(S3A_JARS_DIR)/sdist
	tar xzf $(S3A_JARS_DIR)/sdist/sagemaker_pyspark-1.4.5.tar.gz -C $(S3A_JARS_DIR) --strip-components=3 \
		sagemaker_pyspark-1.4.5/deps/jars/hadoop-aws-3.3.1.jar sagemaker_pyspark-1.4.5/deps/jars/aws-java-sdk-bundle-1.11.901.jar
	rm -rf $(S3A_JARS_DIR)/sdist
	touch $@

$(COMPOSE_SCHEMA):
	mkdir -p $(@D)/wheel
	$(BIN)/pip download -q --no-deps docker-compose==1.29.2 -d $(@D)/wheel
	$(BIN)/python -c "import sys, zipfile; open(sys.argv[2], 'wb').write(zipfile.ZipFile(sys.argv[1]).read('compose/config/compose_spec.json'))" \
		$(@D)/wheel/docker_compose-1.29.2-py2.py3-none-any.whl $@
	rm -rf $(@D)/wheel

# Debian packages the stack needs: PostgreSQL (metadata DB), Chromium + its driver (UI tests)
system-packages:
	@missing=$$(for p in postgresql chromium chromium-driver; do dpkg -s $$p > /dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "apt-get install" $$missing; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing > /dev/null; fi

install: $(BIN)/.installed

demo: install
	rm -rf $(DEMO_ROOT)/raw
	$(BIN)/nightrecs demo-data --root $(DEMO_ROOT) --end-date $(DATE)
	$(BIN)/airflow db migrate > /dev/null
	$(BIN)/airflow dags test nightrecs_daily $(DATE) -c '{"root": "$(DEMO_ROOT)", "segment_columns": "country,age_band"}'
	@echo
	@echo "Published lists: $(DEMO_ROOT)/recs (pointer: $(DEMO_ROOT)/recs/LATEST)"
	@cat $(DEMO_ROOT)/recs/LATEST; echo
	@echo "Sample list for user u000001:"
	@$(BIN)/nightrecs recs get --root $(DEMO_ROOT) u000001

test: install $(S3A_JARS_DIR)/.done $(COMPOSE_SCHEMA)
	NIGHTRECS_TEST_S3A_JARS=$(S3A_JARS) NIGHTRECS_TEST_COMPOSE_SCHEMA=$(COMPOSE_SCHEMA) $(BIN)/pytest

stack: install $(S3A_JARS_DIR)/.done system-packages
	docker/stack.sh up

stack-down:
	docker/stack.sh down

stack-test: install $(S3A_JARS_DIR)/.done system-packages
	$(BIN)/pytest -m stack tests/test_stack.py

clean:
	rm -rf $(VENV) .airflow demo *.egg-info .stack test-artifacts
