"""A saved CupidPipeline loads with ``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`` in a process
that cannot import whitebox_hf, from the code bundled into the folder (pipeline, flow model), and generates exactly
the cube and camera that the saved pipeline generates."""

import json

import torch
from safetensors.torch import load_file
from test_remote_code_export import run_without_whitebox_hf

from tests.hub.remote_code_children import LOAD_PIPELINE
from tests.pipelines.test_cupid_pipeline import IMAGE, SIZE, tiny_pipeline

CALL = dict(num_inference_steps=3, guidance_scale=3.0, output_type="latent")

CHILD = LOAD_PIPELINE + '''
from PIL import Image

image = Image.new("RGB", (plan["size"], plan["size"]), (30, 120, 220))
out = pipe(image, generator=torch.Generator().manual_seed(0), **plan["call"])
mesh = pipe(image, generator=torch.Generator().manual_seed(0), num_inference_steps=2).shapes[0]
assert mesh is None or len(mesh.vertices) > 0
assert not [m for m in sys.modules if m.startswith("whitebox_hf")]
save_file({"cube": out.shapes, "rotations": out.rotations, "intrinsics": out.intrinsics,
           "silhouettes": out.silhouettes}, plan["outputs"])
'''


def test_saved_cupid_pipeline_loads_without_whitebox_hf(tmp_path):
    pipe, image, size = tiny_pipeline(), IMAGE, SIZE
    expected = pipe(image, generator=torch.Generator().manual_seed(0), **CALL)
    pipe.save_pretrained(tmp_path / "cupid")
    index = json.loads((tmp_path / "cupid" / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_cupid", "CupidPipeline"]
    assert index["flow_model"] == ["modeling_cupid_flow", "CupidFlowModel"]
    plan = {"folder": str(tmp_path / "cupid"), "call": CALL, "size": size, "outputs": str(tmp_path / "out.safetensors")}
    result = run_without_whitebox_hf(CHILD, json.dumps(plan), tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    actual = load_file(tmp_path / "out.safetensors")
    assert torch.equal(actual["cube"], expected.shapes)
    assert torch.equal(actual["rotations"], expected.rotations)
    assert torch.equal(actual["intrinsics"], expected.intrinsics)
    assert torch.equal(actual["silhouettes"], expected.silhouettes)
