"""A saved MotionGenerationPipeline loads with ``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`` in
a process that cannot import whitebox_hf, from the code bundled into the folder (pipeline, guidance, windows,
kinematics, BVH writer, motion prior), and estimates exactly the motion the saved pipeline estimates."""

import json

import torch
from safetensors.torch import load_file, save_file
from test_remote_code_export import run_without_whitebox_hf

from tests.hub.remote_code_children import LOAD_PIPELINE
from tests.pipelines.test_motion_pipeline import FAST, head, tiny_pipeline

CHILD = LOAD_PIPELINE + '''
head = load_file(plan["head"])["head"]
out = pipe(head, generator=torch.Generator().manual_seed(0), output_type="bvh", **plan["call"])
assert not [m for m in sys.modules if m.startswith("whitebox_hf")]
save_file({"joints": out.joints.contiguous()}, plan["outputs"])
open(plan["bvh"], "w").write(out.bvh[0])
'''


def test_saved_motion_pipeline_loads_without_whitebox_hf(tmp_path):
    pipe = tiny_pipeline()
    poses = head()
    expected = pipe(poses, generator=torch.Generator().manual_seed(0), output_type="bvh", **FAST)
    pipe.save_pretrained(tmp_path / "motion")
    index = json.loads((tmp_path / "motion" / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_motion", "MotionGenerationPipeline"]
    assert index["prior"] == ["modeling_motion_prior", "MotionPriorModel"]
    save_file({"head": poses.contiguous()}, tmp_path / "head.safetensors")
    plan = {"folder": str(tmp_path / "motion"), "head": str(tmp_path / "head.safetensors"), "call": FAST,
            "outputs": str(tmp_path / "out.safetensors"), "bvh": str(tmp_path / "out.bvh")}
    result = run_without_whitebox_hf(CHILD, json.dumps(plan), tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert torch.equal(load_file(tmp_path / "out.safetensors")["joints"], expected.joints)
    assert (tmp_path / "out.bvh").read_text() == expected.bvh[0]
