# The two commands of the README quickstart:
#   make run   sets up .venv, runs the default study on all cores, writes results/report.html
#   make test  sets up .venv and runs the test suite
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# Rules call `python -m whatmatters`: put the venv first on PATH for every step.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
SNAKEMAKE := snakemake --workflow-profile workflow/profiles/workstation
# These targets run locally. Where SLURM's client is installed, the SLURM executor plugin's
# import asks the controller for its config (`scontrol show config`) and waits ~9 s if
# none answers; an empty config makes scontrol give up at once. Cluster runs: README.
run report dry-run lint: export SLURM_CONF := /dev/null

.PHONY: run test setup report dry-run lint clean

setup: $(VENV)/.installed

# constraints.txt pins every package to the versions this project was tested with;
# pip resolves torch and torchvision together from PyPI. The SLURM executor plugin comes
# too, so the test suite can run the workflow through SLURM.
$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test,slurm]'
	touch $@

run: setup
	$(PY) -m whatmatters check config.yaml   # one clear message (with line and column) for a bad study
	$(SNAKEMAKE) --cores all
	$(SNAKEMAKE) --report results/report.html
	@echo "Report: results/report.html"

report: setup
	$(SNAKEMAKE) --report results/report.html

dry-run: setup
	$(SNAKEMAKE) --dry-run

test: setup
	$(PY) -m pytest

lint: setup
	snakemake --lint
	snakefmt --check Snakefile workflow

clean:
	rm -rf results .snakemake
