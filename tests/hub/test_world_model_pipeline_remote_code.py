"""A saved WorldModelPipeline loads with ``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`` in a
process that cannot import whitebox_hf, and rolls out exactly what the saved pipeline rolls out."""

import json

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from test_remote_code_export import run_without_whitebox_hf

from tests.hub.remote_code_children import LOAD_PIPELINE
from tests.pipelines.test_world_model_pipeline import start, tiny_pipeline

CHILD = LOAD_PIPELINE + '''
start = load_file(plan["start"])["start"]
out = pipe(start, [[0, 1, 2], [2, 1, 0]], num_inference_steps=2, generator=torch.Generator().manual_seed(0))
assert not [m for m in sys.modules if m.startswith("whitebox_hf")]
save_file({"frames": torch.from_numpy(out.frames).contiguous()}, plan["outputs"])
'''


def test_saved_world_model_pipeline_loads_without_whitebox_hf(tmp_path):
    pipe = tiny_pipeline()
    expected = pipe(start(), [[0, 1, 2], [2, 1, 0]], num_inference_steps=2,
                    generator=torch.Generator().manual_seed(0)).frames
    pipe.save_pretrained(tmp_path / "world")
    index = json.loads((tmp_path / "world" / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_world_model", "WorldModelPipeline"]
    assert index["model"] == ["modeling_world_model", "WorldModel"]
    save_file({"start": torch.from_numpy(start())}, tmp_path / "start.safetensors")
    plan = {"folder": str(tmp_path / "world"), "start": str(tmp_path / "start.safetensors"),
            "outputs": str(tmp_path / "out.safetensors")}
    result = run_without_whitebox_hf(CHILD, json.dumps(plan), tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert np.array_equal(load_file(tmp_path / "out.safetensors")["frames"].numpy(), expected)
