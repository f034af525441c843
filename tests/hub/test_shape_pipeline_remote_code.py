"""A saved ShapeGenerationPipeline (text and image conditioned) loads with ``DiffusionPipeline.from_pretrained(folder,
trust_remote_code=True)`` in a process that cannot import whitebox_hf, from the code bundled into the folder
(pipeline, denoiser, SITA-VAE, LIFT image model), and samples exactly what the saved pipeline samples."""

import importlib.util
import json
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import load_file
from test_remote_code_export import run_without_whitebox_hf
from transformers import AutoTokenizer

from whitebox_hf.models.whitebox_clip import minilm_path

CALL = dict(num_inference_steps=3, octree_depth=3, guidance_scale=3.0, output_type="latent")

CHILD = '''
import json
import sys

import torch
from diffusers import DiffusionPipeline
from PIL import Image
from safetensors.torch import save_file

plan = json.loads(sys.argv[1])
outputs = {}
for name, folder in plan["folders"].items():
    pipe = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
    modules = [type(pipe).__module__] + [type(c).__module__ for c in pipe.components.values() if c is not None]
    assert all(m.startswith(("diffusers.", "diffusers_modules.", "transformers.")) for m in modules), modules
    pipe.set_progress_bar_config(disable=True)
    condition = dict(prompt="a chair") if name == "text" else dict(image=Image.new("RGB", (8, 8), (5, 90, 250)))
    outputs[name] = pipe(generator=torch.Generator().manual_seed(0), **plan["call"], **condition).shapes
assert not [m for m in sys.modules if m.startswith("whitebox_hf")]
save_file({k: v.contiguous() for k, v in outputs.items()}, plan["outputs"])
'''


def _pipeline_builders():
    """The tiny pipelines of tests/pipelines/test_shape_generation_pipeline.py (another folder: loaded by path)."""
    path = Path(__file__).resolve().parents[1] / "pipelines" / "test_shape_generation_pipeline.py"
    spec = importlib.util.spec_from_file_location("_shape_pipeline_builders", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.text_pipeline, module.image_pipeline


def test_saved_shape_pipelines_load_without_whitebox_hf(tmp_path):
    text_pipeline, image_pipeline = _pipeline_builders()
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    expected, folders = {}, {}
    for name, pipe, condition in (("text", text_pipeline(tokenizer), dict(prompt="a chair")),
                                  ("image", image_pipeline(), dict(image=Image.new("RGB", (8, 8), (5, 90, 250))))):
        expected[name] = pipe(generator=torch.Generator().manual_seed(0), **CALL, **condition).shapes
        pipe.save_pretrained(tmp_path / name)
        folders[name] = str(tmp_path / name)
        index = json.loads((tmp_path / name / "model_index.json").read_text())
        assert index["_class_name"] == ["pipeline_shape_generation", "ShapeGenerationPipeline"]
        assert index["denoiser"] == ["aligned_shape_latent", "AlignedShapeLatentDenoiser"]
        assert index["vae"] == ["modeling_sita_vae", "SitaVaeModel"]
    assert json.loads((tmp_path / "image" / "model_index.json").read_text())["image_encoder"] == [
        "modeling_whitebox_clip", "WhiteboxClipModel"]
    plan = {"folders": folders, "call": CALL, "outputs": str(tmp_path / "out.safetensors")}
    result = run_without_whitebox_hf(CHILD, json.dumps(plan), tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    actual = load_file(tmp_path / "out.safetensors")
    for name in expected:
        assert torch.equal(actual[name], expected[name]), name
