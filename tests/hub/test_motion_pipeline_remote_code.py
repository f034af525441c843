"""A saved MotionGenerationPipeline loads with ``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`` in
a process that cannot import whitebox_hf, from the code bundled into the folder (pipeline, guidance, windows,
kinematics, BVH writer, motion prior), and estimates exactly the motion the saved pipeline estimates."""

import importlib.util
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from test_remote_code_export import run_without_whitebox_hf

CHILD = '''
import json
import sys

import torch
from diffusers import DiffusionPipeline
from safetensors.torch import load_file, save_file

plan = json.loads(sys.argv[1])
pipe = DiffusionPipeline.from_pretrained(plan["folder"], trust_remote_code=True)
modules = [type(pipe).__module__] + [type(c).__module__ for c in pipe.components.values() if c is not None]
assert all(m.startswith(("diffusers.", "diffusers_modules.", "transformers.")) for m in modules), modules
pipe.set_progress_bar_config(disable=True)
head = load_file(plan["head"])["head"]
out = pipe(head, generator=torch.Generator().manual_seed(0), output_type="bvh", **plan["call"])
assert not [m for m in sys.modules if m.startswith("whitebox_hf")]
save_file({"joints": out.joints.contiguous()}, plan["outputs"])
open(plan["bvh"], "w").write(out.bvh[0])
'''


def _pipeline_module():
    path = Path(__file__).resolve().parents[1] / "pipelines" / "test_motion_pipeline.py"
    spec = importlib.util.spec_from_file_location("_motion_pipeline_builders", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_saved_motion_pipeline_loads_without_whitebox_hf(tmp_path):
    builders = _pipeline_module()
    pipe = builders.tiny_pipeline()
    head = builders.head()
    expected = pipe(head, generator=torch.Generator().manual_seed(0), output_type="bvh", **builders.FAST)
    pipe.save_pretrained(tmp_path / "motion")
    index = json.loads((tmp_path / "motion" / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_motion", "MotionGenerationPipeline"]
    assert index["prior"] == ["modeling_motion_prior", "MotionPriorModel"]
    save_file({"head": head.contiguous()}, tmp_path / "head.safetensors")
    plan = {"folder": str(tmp_path / "motion"), "head": str(tmp_path / "head.safetensors"), "call": builders.FAST,
            "outputs": str(tmp_path / "out.safetensors"), "bvh": str(tmp_path / "out.bvh")}
    result = run_without_whitebox_hf(CHILD, json.dumps(plan), tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert torch.equal(load_file(tmp_path / "out.safetensors")["joints"], expected.joints)
    assert (tmp_path / "out.bvh").read_text() == expected.bvh[0]
