# `make demo` and `make test` each create (or refresh, when pyproject.toml changed) .venv, then run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test venv clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) examples/demo_fashion_mnist.py

test: $(VENV)/.installed
	bash tools/install_system_packages.sh
	# The CGAL sample meshes (apt-get download libcgal-demo into the cache; evaluation-only shapes, tests/data).
	$(PY) -c "from whitebox_hf.data import fetch_cgal_meshes; fetch_cgal_meshes()" >/dev/null \
		|| echo "warning: could not fetch the CGAL meshes; tests/data/test_cgal_meshes.py will skip its real-mesh test" >&2
	# The assimp BVH motion clips (apt-get download assimp-testmodels into the cache; the motion prior's real data).
	$(PY) -c "from whitebox_hf.data import fetch_motion_bvh; fetch_motion_bvh()" >/dev/null \
		|| echo "warning: could not fetch the assimp BVH clips; tests/data/test_motion.py will skip its real-clip tests" >&2
	# The Noto colour emoji and their Unicode names (apt-get download fonts-noto-color-emoji unicode-data into the cache; text-to-image data).
	$(PY) -c "from whitebox_hf.data import fetch_emoji; fetch_emoji()" >/dev/null \
		|| echo "warning: could not fetch the Noto emoji; tests/data/test_emoji.py will skip its real-emoji tests" >&2
	# Two pytest-xdist workers, each whole test file on one worker (module fixtures are built once).
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -n 2 --dist loadfile

clean:
	rm -rf $(VENV) runs/demo
