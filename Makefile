# Two commands on a fresh machine: `make demo` (the follow demo in simulation) and `make test`.
# Each one sets up .venv first: pinned pip dependencies, the interfaces built with CMake into the venv,
# and this package installed in editable mode. Set-up steps are stamped: a second run does nothing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := $(VENV)/.mbmf
BUILD := build/interfaces
INTERFACES := $(wildcard msg/*.msg srv/*.srv) CMakeLists.txt cmake/fix_wheel_includes.cmake package.xml

.PHONY: venv demo test bench bench-peers paper mbmf clean
venv: $(STAMPS)/package

$(STAMPS)/deps: requirements.txt
	@command -v cmake >/dev/null || (apt-get update -qq && apt-get install -y -qq cmake)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -r requirements.txt
	mkdir -p $(STAMPS) && touch $@

$(STAMPS)/interfaces: $(STAMPS)/deps $(INTERFACES)
	rm -rf $(BUILD) && mkdir -p $(BUILD)
	source $(VENV)/bin/activate && cd $(BUILD) && \
	  CMAKE_PREFIX_PATH=$$VIRTUAL_ENV AMENT_PREFIX_PATH=$$VIRTUAL_ENV cmake $(CURDIR) -DCMAKE_BUILD_TYPE=Release \
	    -DMBMF_INTERFACES_ONLY=ON -DMBMF_FIX_WHEEL_INCLUDES=ON -DCMAKE_INSTALL_PREFIX=$$VIRTUAL_ENV \
	    -DPython3_EXECUTABLE=$$VIRTUAL_ENV/bin/python >cmake.log && \
	  $(MAKE) -j$$(nproc) >make.log && $(MAKE) install >install.log
	# The generated half of mbmf_ros must stay a plain folder: the sources' __init__.py (extend_path) owns
	# the package, and pip owns its metadata.
	rm -rf $(VENV)/lib/python3*/site-packages/mbmf_ros/__init__.py $(VENV)/lib/python3*/site-packages/mbmf_ros-*.egg-info
	touch $@

$(STAMPS)/package: $(STAMPS)/interfaces setup.py
	$(PY) -m pip install -q --no-deps --no-build-isolation --config-settings editable_mode=compat -e .
	$(PY) -c "from mbmf_ros.msg import AgentState; import mbmf_ros.core"
	touch $@

demo: venv
	ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST $(VENV)/bin/mbmf-ros demo

test: venv
	$(VENV)/bin/python -m pytest -q test

# The paper's tables into results/ (README.md, results.json, plots): hours; resumable (re-run to continue).
# PROFILE=paper for the appendix's settings (many hours more), PROFILE=here for what fits one session here.
PROFILE ?= here
paper: venv
	nice -n 10 $(VENV)/bin/mbmf-ros paper --profile $(PROFILE) --readme README.md

# The peers (pytorch-mppi, mbrl-lib) live in their own venv, never in the product's: mbrl 0.2.0 pins gymnasium
# 0.26 and hydra 1.0, so it goes in with --no-deps beside the pieces its planning module imports.
PEERS := .venv-peers
$(PEERS)/.stamp: bench/requirements-peers.txt
	test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install -q --upgrade pip setuptools wheel
	$(PEERS)/bin/python -m pip install -q -r bench/requirements-peers.txt
	$(PEERS)/bin/python -m pip install -q --no-deps mbrl==0.2.0
	touch $@

bench-peers: $(PEERS)/.stamp

# Every benchmark, each measuring the machine's matmul ceiling in its own run; bench/results.md is written from
# their output (BENCH_ARGS=--quick for a short run).
bench: venv bench-peers
	nice -n 10 $(PY) bench/run_all.py $(BENCH_ARGS)

# Mb-Mf curves (paper Fig. 8) for the swimmer and the half_cheetah, seeds 0 and 1, then results/mbmf.md + plots.
# Scaled to a 2-core machine: about 75 min here (about 17 min per swimmer seed, 20 per half_cheetah seed, on
# half a core of a machine shared by five jobs, niced); resumable: run it again after a stop; these are the
# settings of results/mbmf.md. Why each cut: MPC K=300, H=10 (appendix A.3: swimmer 5000/20, half_cheetah
# 1000/20) and 1-3 aggregation iterations so an MPC step costs ~0.05 s; 10 / 5 expert rollouts (paper: 30);
# TRPO batches of 3000 steps (paper: 50 000) so 150 000 fine-tuning steps make 50 updates, with the authors'
# released code's KL step 0.05 (paper: 0.5, meant for 50 000-step batches) and imitation lr 1e-3 / batch 512
# (--released: the appendix's 1e-4 / 500 left the policy under-fitted on 10x less expert data); std 1.0 for the
# swimmer (the paper's) and 0.5 for the half_cheetah (the released code's). The paper's own settings
# (MBMF_SCALE= MBMF_SWIMMER= MBMF_CHEETAH=) take days here.
MBMF_SEEDS ?= 0 1
MBMF_SCALE ?= --num-samples 300 --horizon 10 --batch 3000 --steps 150000 --step-size 0.05 --released
MBMF_SWIMMER ?= --std 1.0 --aggregation-iterations 1 --aggregation-rollouts 3 --mpc-rollouts 10 \
	--dagger-iterations 3 --dagger-rollouts 2
MBMF_CHEETAH ?= --aggregation-iterations 3 --aggregation-rollouts 2 --mpc-rollouts 5 --dagger-iterations 3 \
	--dagger-rollouts 2
mbmf: venv
	for seed in $(MBMF_SEEDS); do \
	  nice -n 10 $(VENV)/bin/mbmf-ros mbmf --agent swimmer --seed $$seed --out runs/mbmf/swimmer_s$$seed \
	    $(MBMF_SCALE) $(MBMF_SWIMMER) && \
	  nice -n 10 $(VENV)/bin/mbmf-ros mbmf --agent half_cheetah --seed $$seed --out runs/mbmf/half_cheetah_s$$seed \
	    $(MBMF_SCALE) $(MBMF_CHEETAH) || exit 1; \
	done
	$(VENV)/bin/mbmf-ros mbmf --report results/mbmf.md --runs $(foreach s,$(MBMF_SEEDS),runs/mbmf/swimmer_s$(s)) \
	  $(foreach s,$(MBMF_SEEDS),runs/mbmf/half_cheetah_s$(s))

clean:
	rm -rf build $(VENV) $(PEERS) *.egg-info
