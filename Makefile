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

.PHONY: run test setup report dry-run lint clean wheelhouse

setup: $(VENV)/.installed

# constraints.txt pins every package to the versions this project was tested with;
# pip resolves torch and torchvision together from PyPI. The SLURM executor plugin comes
# too, so the test suite can run the workflow through SLURM.
$(VENV)/.installed: pyproject.toml constraints.txt workflow/whatmatters_guard.pth
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test,slurm]'
	# every snakemake start refuses a study that would run code, profile or not (config.startup_guard)
	cp workflow/whatmatters_guard.pth "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/"
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

# make wheelhouse [PYTHON_VERSION=3.12] [PLATFORMS="manylinux_2_28_x86_64 ..."]
# Wheels of every runtime dependency that a GPU node's PyTorch installation lacks, for a node
# without internet (README, "Installing offline"). PYTHON_VERSION and PLATFORMS are the node's:
# its `python3 --version`, and manylinux tags its glibc accepts (2.28 and older: `ldd --version`).
# Not torch, torchvision or the CUDA libraries, nor what torch and torchvision bring along
# (TORCH_BRINGS). Two folders, so each fits where only so much can be carried:
#   wheelhouse/train  snakemake, what the prepare and train steps import, pytest (for the GPU checks)
#   wheelhouse/fit    everything else the project needs (pymc, pytensor, arviz, pyarrow, ...)
#   wheelhouse/with-torch  what a node's torch and torchvision already have (numpy, pillow, ...):
#                     copy it too only to a node whose Python lacks them
PYTHON_VERSION ?= 3.12
PLATFORMS ?= manylinux_2_28_x86_64 manylinux2014_x86_64 manylinux1_x86_64
WHEELHOUSE ?= wheelhouse
TRAIN_NEEDS := snakemake snakemake-executor-plugin-slurm pandas pyyaml psutil mnist1d mlxtend scikit-learn threadpoolctl setuptools pytest
TORCH_BRINGS := numpy pillow jinja2 markupsafe sympy mpmath networkx filelock fsspec typing_extensions
# no wheel on PyPI, built here (pure Python); named as constraints.txt names it
SDIST_ONLY := connection_pool
DOWNLOAD = $(PY) -m pip download --quiet --only-binary=:all: --python-version $(PYTHON_VERSION) \
	--implementation cp --abi cp$(subst .,,$(PYTHON_VERSION)) $(addprefix --platform ,$(PLATFORMS)) -c $(WHEELHOUSE)/constraints.txt

wheelhouse: setup
	rm -rf $(WHEELHOUSE) && mkdir -p $(WHEELHOUSE)/train $(WHEELHOUSE)/fit
	grep -viE '^(torch|torchvision|triton|nvidia-|cuda-)' constraints.txt > $(WHEELHOUSE)/constraints.txt
	for p in $(SDIST_ONLY); do $(PY) -m pip wheel --quiet --no-deps -w $(WHEELHOUSE)/train \
		"$$(grep -i "^$$p==" constraints.txt)"; done
	$(DOWNLOAD) -d $(WHEELHOUSE)/train --find-links $(WHEELHOUSE)/train $(TRAIN_NEEDS)
	$(PY) -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
		print("\n".join(d for d in p["dependencies"] + p["optional-dependencies"]["slurm"] \
		if not d.startswith(("torch", "torchvision"))))' > $(WHEELHOUSE)/requirements.txt
	$(DOWNLOAD) -d $(WHEELHOUSE)/fit --find-links $(WHEELHOUSE)/train -r $(WHEELHOUSE)/requirements.txt
	cd $(WHEELHOUSE) && for w in train/*.whl; do rm -f "fit/$${w#train/}"; done
	mkdir -p $(WHEELHOUSE)/with-torch && cd $(WHEELHOUSE) && for p in $(TORCH_BRINGS); do \
		mv -f {train,fit}/$$p-[0-9]*.whl with-torch/ 2>/dev/null || true; done
	@du -sch --apparent-size $(WHEELHOUSE)/train $(WHEELHOUSE)/fit
