"""The sdist and the wheel install into a clean virtual environment and work there (tools/check_package.sh)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.package
def test_the_wheel_passes_the_smoke_test_in_a_clean_environment_and_the_sdist_installs_the_same_files():
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(PYTHON=sys.executable, OMP_NUM_THREADS="1")
    result = subprocess.run(["bash", str(ROOT / "tools" / "check_package.sh")], capture_output=True, text=True,
                            env=env, timeout=600, check=False)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert result.stdout.rstrip().endswith("check_package: OK")
    assert "both wheels list the same" in result.stdout
    (report,) = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]  # the wheel's
    assert "venv-wheel" in report["whitebox_hf"] and str(ROOT) not in report["whitebox_hf"]
    assert {"fashion-mnist-crate", "python-docs-crate-alpha", "fashion-mnist-flow-vae-dit"} <= set(report["bundled"])
    assert report["pipeline_images"] == [1, 1, 28, 28] and report["generated_tokens"] > 1
    assert "modeling_crate.py" in report["remote_code"]["files"]
    assert report["console_script"].startswith("whitebox-hf: error: unrecognized arguments: --no-such-flag")
    # The sdist's environment installs the same files byte for byte (so the smoke test above holds for it).
    same = [line for line in result.stdout.splitlines() if line.startswith("the sdist installs the same")]
    assert len(same) == 1 and int(same[0].split()[5]) > 100, result.stdout[-2000:]


def test_space_requirements_install_this_version_of_the_wheel():
    """Each Space names whitebox_hf as a PEP 508 direct reference to the wheel of the current version."""
    from packaging.requirements import Requirement
    from packaging.utils import parse_wheel_filename

    import whitebox_hf

    files = sorted((ROOT / "spaces").glob("*/requirements.txt"))
    assert len(files) == 7
    for path in files:
        requirements = [Requirement(line) for line in path.read_text().splitlines()
                        if line.strip() and not line.startswith("#")]
        ours = [r for r in requirements if r.name == "whitebox_hf"]
        assert len(ours) == 1, path
        assert ours[0].url.startswith("https://huggingface.co/"), path
        name, version, _, tags = parse_wheel_filename(ours[0].url.rsplit("/", 1)[1])
        assert (name, str(version)) == ("whitebox-hf", whitebox_hf.__version__), path
        assert {str(tag) for tag in tags} == {"py3-none-any"}, path
