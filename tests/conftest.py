"""Test-wide settings: never touch the network, keep every cache in a throw-away folder."""

import os
import tempfile

# Read by huggingface_hub at import time, so set before anything imports it.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="whitebox_hf_test_hf_home_"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Under pytest-xdist (`make test` runs two workers), the workers share the cores: each takes its share of threads,
# here and in the subprocesses it starts, instead of every worker spinning one OpenMP thread per core.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

import pytest  # noqa: E402
import torch  # noqa: E402

import whitebox_hf  # noqa: E402,F401


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def tiny_crate_config():
    """A CRATE small enough for every test: 8×8 grey images, patch 2 → 16 tokens + cls."""

    def make(**overrides):
        kwargs = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, image_size=8, patch_size=2,
                      num_channels=1, num_labels=3)
        kwargs.update(overrides)
        return whitebox_hf.CrateConfig(**kwargs)

    return make


def load_training_script(name: str):
    """Import ``training/<name>.py`` as a module (the training scripts are not part of the package).
    ``$WHITEBOX_HF_TRAINING_DIR`` points elsewhere: benchmarks/fuzz_report.py measures an older tree's scripts."""
    import importlib.util
    import os
    from pathlib import Path

    folder = os.environ.get("WHITEBOX_HF_TRAINING_DIR") or Path(__file__).resolve().parents[1] / "training"
    path = Path(folder) / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_benchmark(name: str):
    """Import ``benchmarks/<name>.py`` as the module ``name`` (the benchmarks are scripts, not a package): with
    ``benchmarks/`` on ``sys.path`` for their shared helpers (``_common``, ``_slopes``) and the module in
    ``sys.modules`` (dataclasses and pickling look their module up there)."""
    import importlib.util
    import sys
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def hub_server(tmp_path_factory):
    """A Hub-compatible HTTP server (``tests/hub_server.py``) on a free loopback port, repos kept in a temp dir;
    yields its endpoint URL. Tests stay offline unless they opt in with ``hub_server.go_online`` (see there)."""
    from hub_server import HubServer

    with HubServer(tmp_path_factory.mktemp("hub_storage")) as server:
        yield server.url
