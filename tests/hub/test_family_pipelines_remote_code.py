"""The saved pipelines of the generative families (motion, world model, Cupid image-to-3D, shape generation from text
and from an image) load with ``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`` in a process that
cannot import whitebox_hf, from the code bundled into each folder, and produce exactly what the saved pipelines
produce.

One child process loads every folder in turn (a fresh interpreter spends about 12 s importing diffusers on this
machine, the calls a fraction of a second); each family keeps its own test, reading its share of the child's outputs.
"""

import importlib.util
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from test_remote_code_export import run_without_whitebox_hf
from transformers import AutoTokenizer

from tests.pipelines.test_cupid_pipeline import IMAGE, SIZE
from tests.pipelines.test_cupid_pipeline import tiny_pipeline as tiny_cupid_pipeline
from tests.pipelines.test_motion_pipeline import FAST, head
from tests.pipelines.test_motion_pipeline import tiny_pipeline as tiny_motion_pipeline
from tests.pipelines.test_world_model_pipeline import start
from tests.pipelines.test_world_model_pipeline import tiny_pipeline as tiny_world_pipeline
from whitebox_hf.models.whitebox_clip import minilm_path

CUPID_CALL = dict(num_inference_steps=3, guidance_scale=3.0, output_type="latent")
SHAPE_CALL = dict(num_inference_steps=3, octree_depth=3, guidance_scale=3.0, output_type="latent")
WORLD_ACTIONS = [[0, 1, 2], [2, 1, 0]]

# Each body runs with ``plan`` (its family's part of the JSON argument) and ``load(folder)`` (the pipeline by remote
# code alone, none of its parts from whitebox_hf, progress bar off), and writes its outputs where the plan says.
BODIES = {
    "motion": '''
        pipe = load(plan["folder"])
        out = pipe(load_file(plan["head"])["head"], generator=torch.Generator().manual_seed(0), output_type="bvh",
                   **plan["call"])
        save_file({"joints": out.joints.contiguous()}, plan["outputs"])
        open(plan["bvh"], "w").write(out.bvh[0])
    ''',
    "world": '''
        pipe = load(plan["folder"])
        out = pipe(load_file(plan["start"])["start"], plan["actions"], num_inference_steps=2,
                   generator=torch.Generator().manual_seed(0))
        save_file({"frames": torch.from_numpy(out.frames).contiguous()}, plan["outputs"])
    ''',
    "cupid": '''
        from PIL import Image

        pipe = load(plan["folder"])
        image = Image.new("RGB", (plan["size"], plan["size"]), (30, 120, 220))
        out = pipe(image, generator=torch.Generator().manual_seed(0), **plan["call"])
        mesh = pipe(image, generator=torch.Generator().manual_seed(0), num_inference_steps=2).shapes[0]
        assert mesh is None or len(mesh.vertices) > 0
        save_file({"cube": out.shapes, "rotations": out.rotations, "intrinsics": out.intrinsics,
                   "silhouettes": out.silhouettes}, plan["outputs"])
    ''',
    "shape": '''
        from PIL import Image

        outputs = {}
        for name, folder in plan["folders"].items():
            pipe = load(folder)
            condition = dict(prompt="a chair") if name == "text" else dict(image=Image.new("RGB", (8, 8), (5, 90, 250)))
            outputs[name] = pipe(generator=torch.Generator().manual_seed(0), **plan["call"], **condition).shapes
        save_file({k: v.contiguous() for k, v in outputs.items()}, plan["outputs"])
    ''',
}

CHILD = '''
import json
import sys

import torch
from diffusers import DiffusionPipeline
from safetensors.torch import load_file, save_file

plans = json.loads(sys.argv[1])


def load(folder):
    pipe = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
    modules = [type(pipe).__module__] + [type(c).__module__ for c in pipe.components.values() if c is not None]
    assert all(m.startswith(("diffusers.", "diffusers_modules.", "transformers.")) for m in modules), modules
    pipe.set_progress_bar_config(disable=True)
    return pipe

''' + "".join(f"\ndef run_{family}(plan):\n{textwrap.indent(textwrap.dedent(body), '    ')}\n"
              for family, body in BODIES.items()) + '''
for family, plan in plans.items():
    globals()["run_" + family](plan)
    print("loaded and ran", family)
assert not [m for m in sys.modules if m.startswith("whitebox_hf")]
'''


def _shape_builders():
    """The tiny pipelines of tests/pipelines/test_shape_generation_pipeline.py (loaded by path, as a sibling file)."""
    path = Path(__file__).resolve().parents[1] / "pipelines" / "test_shape_generation_pipeline.py"
    spec = importlib.util.spec_from_file_location("_shape_pipeline_builders", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.text_pipeline, module.image_pipeline


def _index(folder: Path) -> dict:
    return json.loads((folder / "model_index.json").read_text())


@pytest.fixture(scope="module")
def saved_and_reloaded(tmp_path_factory):
    """Every family's pipeline saved, its expected outputs and index, and the child's outputs: ``{family: (expected,
    index, plan)}`` after one child process ran every plan."""
    tmp = tmp_path_factory.mktemp("families")
    families, plans = {}, {}

    pipe, poses = tiny_motion_pipeline(), head()
    expected = pipe(poses, generator=torch.Generator().manual_seed(0), output_type="bvh", **FAST)
    pipe.save_pretrained(tmp / "motion")
    save_file({"head": poses.contiguous()}, tmp / "head.safetensors")
    plans["motion"] = {"folder": str(tmp / "motion"), "head": str(tmp / "head.safetensors"), "call": FAST,
                       "outputs": str(tmp / "motion_out.safetensors"), "bvh": str(tmp / "motion_out.bvh")}
    families["motion"] = (expected, [_index(tmp / "motion")])

    pipe = tiny_world_pipeline()
    expected = pipe(start(), WORLD_ACTIONS, num_inference_steps=2, generator=torch.Generator().manual_seed(0)).frames
    pipe.save_pretrained(tmp / "world")
    save_file({"start": torch.from_numpy(start())}, tmp / "start.safetensors")
    plans["world"] = {"folder": str(tmp / "world"), "start": str(tmp / "start.safetensors"),
                      "actions": WORLD_ACTIONS, "outputs": str(tmp / "world_out.safetensors")}
    families["world"] = (expected, [_index(tmp / "world")])

    pipe = tiny_cupid_pipeline()
    expected = pipe(IMAGE, generator=torch.Generator().manual_seed(0), **CUPID_CALL)
    pipe.save_pretrained(tmp / "cupid")
    plans["cupid"] = {"folder": str(tmp / "cupid"), "call": CUPID_CALL, "size": SIZE,
                      "outputs": str(tmp / "cupid_out.safetensors")}
    families["cupid"] = (expected, [_index(tmp / "cupid")])

    text_pipeline, image_pipeline = _shape_builders()
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    expected, folders = {}, {}
    for name, pipe, condition in (("text", text_pipeline(tokenizer), dict(prompt="a chair")),
                                  ("image", image_pipeline(), dict(image=Image.new("RGB", (8, 8), (5, 90, 250))))):
        expected[name] = pipe(generator=torch.Generator().manual_seed(0), **SHAPE_CALL, **condition).shapes
        pipe.save_pretrained(tmp / f"shape_{name}")
        folders[name] = str(tmp / f"shape_{name}")
    plans["shape"] = {"folders": folders, "call": SHAPE_CALL, "outputs": str(tmp / "shape_out.safetensors")}
    families["shape"] = (expected, [_index(Path(folder)) for folder in folders.values()])

    result = run_without_whitebox_hf(CHILD, json.dumps(plans), tmp_path=tmp)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert result.stdout.split() == " ".join(f"loaded and ran {f}" for f in plans).split()
    return {family: (expected, indexes, plans[family]) for family, (expected, indexes) in families.items()}


def test_saved_motion_pipeline_loads_without_whitebox_hf(saved_and_reloaded):
    expected, (index,), plan = saved_and_reloaded["motion"]
    assert index["_class_name"] == ["pipeline_motion", "MotionGenerationPipeline"]
    assert index["prior"] == ["modeling_motion_prior", "MotionPriorModel"]
    assert torch.equal(load_file(plan["outputs"])["joints"], expected.joints)
    assert Path(plan["bvh"]).read_text() == expected.bvh[0]


def test_saved_world_model_pipeline_loads_without_whitebox_hf(saved_and_reloaded):
    expected, (index,), plan = saved_and_reloaded["world"]
    assert index["_class_name"] == ["pipeline_world_model", "WorldModelPipeline"]
    assert index["model"] == ["modeling_world_model", "WorldModel"]
    assert np.array_equal(load_file(plan["outputs"])["frames"].numpy(), expected)


def test_saved_cupid_pipeline_loads_without_whitebox_hf(saved_and_reloaded):
    expected, (index,), plan = saved_and_reloaded["cupid"]
    assert index["_class_name"] == ["pipeline_cupid", "CupidPipeline"]
    assert index["flow_model"] == ["modeling_cupid_flow", "CupidFlowModel"]
    actual = load_file(plan["outputs"])
    assert torch.equal(actual["cube"], expected.shapes)
    assert torch.equal(actual["rotations"], expected.rotations)
    assert torch.equal(actual["intrinsics"], expected.intrinsics)
    assert torch.equal(actual["silhouettes"], expected.silhouettes)


def test_saved_shape_pipelines_load_without_whitebox_hf(saved_and_reloaded):
    expected, indexes, plan = saved_and_reloaded["shape"]
    for index in indexes:
        assert index["_class_name"] == ["pipeline_shape_generation", "ShapeGenerationPipeline"]
        assert index["denoiser"] == ["aligned_shape_latent", "AlignedShapeLatentDenoiser"]
        assert index["vae"] == ["modeling_sita_vae", "SitaVaeModel"]
    assert indexes[1]["image_encoder"] == ["modeling_whitebox_clip", "WhiteboxClipModel"]
    actual = load_file(plan["outputs"])
    for name in expected:
        assert torch.equal(actual[name], expected[name]), name
