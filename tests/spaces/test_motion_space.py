"""The motion-from-head Space's own functions (no browser): the CSV and BVH uploads, their refusals of bad input, the
model lookup, and one request per input kind through the handler, on a tiny random pipeline."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import gradio as gr
import pytest
import torch
from test_spaces_browser import TINY_MOTION_PRIOR, load_app, tiny_motion_pipeline

from whitebox_hf.data.motion import JOINT_NAMES, _bvh_folder, load_motion_clip, read_bvh
from whitebox_hf.data.motion_bvh import motion_to_bvh
from whitebox_hf.models.motion_prior import MotionPriorConfig, MotionPriorModel

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CSV = ROOT / "spaces" / "motion-from-head" / "examples" / "01_01_head_first_5s.csv"
app = load_app("motion-from-head")


@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory):
    return tiny_motion_pipeline(tmp_path_factory.mktemp("motion") / "pipeline")


@pytest.fixture(scope="module")
def estimate(pipeline_folder, tmp_path_factory):
    pipe = app.load_pipeline(pipeline_folder)
    return app.make_estimate(pipe, tmp_path_factory.mktemp("outputs"))


def clips_or_skip():
    try:
        return load_motion_clip("01_01", fetch=False)
    except FileNotFoundError:
        pytest.skip("assimp BVH clips not cached (a data download, outside the install): run "
                    "`python -c 'from whitebox_hf.data import fetch_motion_bvh; fetch_motion_bvh()'`")


FAST = {"steps": 2, "guidance": "off", "floor_height": 0.0, "seed": 0}


def run(estimate, clip="01_01", upload=None, start=0.0, duration=1.2, **overrides):
    options = dict(FAST, **overrides)
    return estimate(clip, None if upload is None else str(upload), options["steps"], options["guidance"],
                    options["floor_height"], options["seed"], start, duration)


# -- CSV ----------------------------------------------------------------------------------------------------------

def test_csv_round_trip_with_and_without_header(tmp_path):
    poses = torch.eye(4, dtype=torch.float64).repeat(40, 1, 1)
    poses[:, :3, 3] = torch.linspace(0, 1, 40)[:, None] * torch.tensor([1.0, 0.5, 0.0]) + torch.tensor([0, 0, 1.6])
    path = app.write_head_csv(tmp_path / "head.csv", poses)
    assert path.read_text().splitlines()[0] == ",".join(app.CSV_COLUMNS)
    assert torch.allclose(app.parse_head_csv(path), poses, atol=1e-6)
    bare = tmp_path / "bare.csv"
    bare.write_text("\n".join(path.read_text().splitlines()[1:]) + "\n\n")  # no header, a trailing blank line
    assert torch.allclose(app.parse_head_csv(bare), poses, atol=1e-6)


@pytest.mark.parametrize(("text", "message"), [
    ("1,0,0,0,0,1,0,0,0,0,1,0,0,0,0\n", r"head\.csv:1: expected 16 columns .* got 15"),
    ("m00,m01\n1,2\n", r"head\.csv:1: expected 16 columns"),  # a header other than m00..m33 is a data row
    ("1,0,0,0,0,1,0,0,0,0,1,0,0,0,0,1\n1,0,0,x,0,1,0,0,0,0,1,0,0,0,0,1\n", r"head\.csv:2: expected numbers, got 'x'"),
    ("\n\n", r"head\.csv: no data rows"),
])
def test_csv_with_wrong_columns_or_cells_is_refused_naming_the_line(tmp_path, text, message):
    path = tmp_path / "head.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        app.parse_head_csv(path)


def test_trajectory_checks_name_the_first_bad_frame():
    poses = torch.eye(4, dtype=torch.float64).repeat(40, 1, 1)
    app.check_trajectory(poses, "t.csv", 32)
    with pytest.raises(ValueError, match=r"t\.csv: the trajectory is too short: 20 frames \(0\.67 s at 30 fps\); "
                                         r"the model needs at least 32 frames"):
        app.check_trajectory(poses[:20], "t.csv", 32)
    scaled = poses.clone()
    scaled[6, :3, :3] *= 1.1
    with pytest.raises(ValueError, match=r"t\.csv: frame 7 is not a rigid pose: its rotation block is not orthonormal"):
        app.check_trajectory(scaled, "t.csv", 32)
    mirrored = poses.clone()
    mirrored[3, 0, 0] = -1.0
    with pytest.raises(ValueError, match=r"frame 4 is not a rigid pose: .*reflection"):
        app.check_trajectory(mirrored, "t.csv", 32)
    projective = poses.clone()
    projective[9, 3, 0] = 0.5
    with pytest.raises(ValueError, match=r"frame 10 is not a rigid pose: its last row is not 0 0 0 1"):
        app.check_trajectory(projective, "t.csv", 32)
    infinite = poses.clone()
    infinite[2, 0, 3] = float("inf")
    with pytest.raises(ValueError, match=r"frame 3 holds a non-finite number"):
        app.check_trajectory(infinite, "t.csv", 32)


# -- BVH ----------------------------------------------------------------------------------------------------------

def test_bvh_that_does_not_parse_is_refused_naming_the_line(tmp_path):
    path = tmp_path / "broken.bvh"
    path.write_text("HIERARCHY\nROOT Hips\n{\n\tOFFSET 0 0 zero\n}\nMOTION\nFrames: 1\nFrame Time: 0.03\n0 0 0\n")
    with pytest.raises(ValueError, match=r"does not parse: broken\.bvh:4: expected a number"):
        app.head_from_bvh(path)


def test_bvh_of_an_unknown_skeleton_is_refused_listing_its_joints(tmp_path):
    path = tmp_path / "arm.bvh"
    path.write_text("HIERARCHY\nROOT Shoulder\n{\n\tOFFSET 0 0 0\n\tCHANNELS 6 Xposition Yposition Zposition "
                    "Zrotation Xrotation Yrotation\n\tEnd Site\n\t{\n\t\tOFFSET 0 1 0\n\t}\n}\nMOTION\nFrames: 2\n"
                    "Frame Time: 0.0333333\n0 0 0 0 0 0\n0 0 0 0 0 0\n")
    with pytest.raises(ValueError, match=r"arm\.bvh: the skeleton matches none .* its joints are Shoulder"):
        app.head_from_bvh(path)


def test_bvh_of_the_spaces_own_skeleton_gives_back_its_head_and_joints(estimate, tmp_path):
    """The BVH the Space offers for download, uploaded again: its head trajectory and joints are those of the
    estimate it came from (so a downloaded estimate can be re-run and compared)."""
    poses = app.parse_head_csv(EXAMPLE_CSV)
    _gif, bvh, _status = run(estimate, upload=EXAMPLE_CSV, duration=1.2)
    heads, joints, source = app.head_from_bvh(bvh)
    assert source == f"the 22-joint skeleton of {Path(bvh).name}"
    assert joints.shape == (36, len(JOINT_NAMES), 3) and heads.shape == (36, 4, 4)
    # The pipeline places the skeleton's head on the input trajectory; the file stores 6 decimals of centimetres.
    assert (heads[:, :3, 3] - poses[:36, :3, 3]).norm(dim=-1).max() < 0.2
    again = read_bvh(bvh)
    assert again.fps == 30 and again.motion.shape[0] == 36


def test_bvh_of_a_cmu_clip_gives_the_clip(tmp_path):
    clip = clips_or_skip()
    source = _bvh_folder(None, None, False) / "01_01.bvh"
    heads, joints, description = app.head_from_bvh(source)
    assert description == "the CMU skeleton of 01_01.bvh"
    assert torch.allclose(heads.float(), clip.head_poses) and torch.allclose(joints.float(), clip.positions)
    # The same clip written on the Space's own skeleton (as its download button writes an estimate) reads back to the
    # same head trajectory and joints, up to the file's 6 decimals of centimetres.
    own = tmp_path / "own.bvh"
    own.write_text(motion_to_bvh(clip.local_rotations, clip.root_translation, clip.offsets))
    heads, joints, description = app.head_from_bvh(own)
    assert description == "the 22-joint skeleton of own.bvh"
    assert (heads - clip.head_poses.double()).abs().max() < 1e-4
    assert (joints - clip.positions.double()).norm(dim=-1).max() < 1e-4
    # One frame of the CMU file: it parses, but cannot be resampled to 30 fps.
    lines = source.read_text().splitlines()
    motion = next(i for i, line in enumerate(lines) if line.strip() == "MOTION")
    single = tmp_path / "single.bvh"
    single.write_text("\n".join([*lines[:motion + 1], "Frames: 1", lines[motion + 2], lines[motion + 3]]) + "\n")
    with pytest.raises(ValueError, match=r"single\.bvh: .*at least 2 frames"):
        app.head_from_bvh(single)


# -- the handler --------------------------------------------------------------------------------------------------

def test_csv_request_gives_an_animation_a_bvh_and_a_status(estimate):
    gif, bvh, status = run(estimate, upload=EXAMPLE_CSV, start=1.0, duration=1.5)
    from PIL import Image

    with Image.open(gif) as image:
        assert image.format == "GIF" and image.n_frames == 45 and image.size == (app.GIF_SIZE, app.GIF_SIZE)
    assert read_bvh(bvh).motion.shape[0] == 45
    assert "CSV trajectory 01_01_head_first_5s.csv" in status and "frames 31-75 (45 frames" in status
    assert "sampling" in status and "MPJPE" not in status  # no ground truth for a CSV


def test_held_out_clip_is_drawn_beside_its_ground_truth(estimate):
    clips_or_skip()
    gif, _bvh, status = run(estimate, clip="Boxing_Toes", duration=1.2, guidance="post")
    from PIL import Image

    with Image.open(gif) as image:
        assert image.size == (2 * app.GIF_SIZE, app.GIF_SIZE)  # two panels: estimate and ground truth
    assert "held-out clip Boxing_Toes" in status and "MPJPE against the ground truth" in status


@pytest.mark.parametrize(("overrides", "message"), [
    ({"duration": 0.5}, r"too short: 15 frames \(0\.50 s at 30 fps\); the model needs at least 32 frames"),
    ({"start": 10.0}, r"Start 10 s lies beyond the end of the CSV trajectory"),
    ({"steps": 2.5}, r"Steps must be a whole number, got 2\.5\."),
    ({"guidance": "always"}, r"Guidance must be one of off, post, inner_and_post"),
    ({"floor_height": float("nan")}, r"Floor height must be a finite number"),
    ({"duration": 60.0}, r"duration in \(0, 30\] s"),
])
def test_bad_options_are_a_gradio_error(estimate, overrides, message):
    with pytest.raises(gr.Error, match=message):
        run(estimate, upload=EXAMPLE_CSV, **overrides)


def test_bad_uploads_are_a_gradio_error_naming_the_problem(estimate, tmp_path):
    rows = app.parse_head_csv(EXAMPLE_CSV)
    shear = rows.clone()
    shear[5, 0, 1] += 0.3
    app.write_head_csv(tmp_path / "shear.csv", shear)
    with pytest.raises(gr.Error, match=r"shear\.csv: frame 6 is not a rigid pose"):
        run(estimate, upload=tmp_path / "shear.csv")
    (tmp_path / "head.txt").write_text("1,2,3")
    with pytest.raises(gr.Error, match=r"head\.txt: upload a \.csv or a \.bvh file"):
        run(estimate, upload=tmp_path / "head.txt")
    (tmp_path / "binary.bvh").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(gr.Error, match=r"binary\.bvh:1: not UTF-8 text"):
        run(estimate, upload=tmp_path / "binary.bvh")


# -- the model lookup ---------------------------------------------------------------------------------------------

def test_model_lookup_order_and_its_failure(pipeline_folder, tmp_path, monkeypatch):
    monkeypatch.setenv(app.ENV_VAR, str(pipeline_folder))
    assert app.resolve_model_path() == pipeline_folder
    monkeypatch.delenv(app.ENV_VAR)
    monkeypatch.setattr(app, "CANDIDATES", (tmp_path / "none", pipeline_folder))
    assert app.resolve_model_path() == pipeline_folder
    with pytest.raises(FileNotFoundError, match=r"no folder with model_index\.json or config\.json .*run_motion"):
        app.resolve_model_path(tmp_path / "empty")
    with pytest.raises(TypeError, match="`model_path` must be a folder"):
        app.resolve_model_path(3)


def test_a_bare_prior_of_a_training_run_is_wrapped_with_its_clip_and_window(tmp_path):
    """``train_motion_prior.py`` saves only ``<run>/model``; the Space builds the pipeline from it, the run's
    training clip's skeleton and window (from ``metrics.json``)."""
    clips_or_skip()
    clip = load_motion_clip("01_03", fetch=False)
    prior = MotionPriorModel(MotionPriorConfig(**TINY_MOTION_PRIOR))
    prior.save_pretrained(tmp_path / "run" / "model")
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({"train_clips": ["01_03"], "window": 64}))
    pipe = app.load_pipeline(app.resolve_model_path(tmp_path / "run" / "model"))
    assert pipe.config.window == 64 and pipe.config.overlap == 16
    assert torch.allclose(pipe.skeleton_offsets.float(), clip.offsets)



def test_the_bundle_step_builds_a_float16_pipeline_the_space_serves(tmp_path):
    """``training/bundle_checkpoints.py``'s entry for this Space, on a tiny stand-in of the ``ours`` run: the bare prior
    becomes a pipeline with the training clip's skeleton and window, stored in float16, carrying its code, and the
    Space loads it (in float32) and answers a request."""
    clips_or_skip()
    path = ROOT / "training" / "bundle_checkpoints.py"
    spec = importlib.util.spec_from_file_location("bundle_checkpoints", path)
    bundle = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bundle)
    assert bundle.BUNDLES[app.BUNDLE]["build"] == "motion_pipeline"
    assert bundle.BUNDLES[app.BUNDLE]["source"] == "runs/motion/ours"  # where run_motion_comparison.sh trains it
    run = tmp_path / "ours"
    MotionPriorModel(MotionPriorConfig(**TINY_MOTION_PRIOR)).save_pretrained(run / "model")
    (run / "model" / "README.md").write_text("---\nlicense: apache-2.0\n---\n# prior\n")
    (run / "metrics.json").write_text(json.dumps({"train_clips": ["01_03"], "window": 64}))
    target = tmp_path / app.BUNDLE
    bundle.build_motion_pipeline(run, target)
    bundle.cast_weights(target, "float16")
    bundle.add_pipeline_code(target)
    assert (target / "README.md").read_text().startswith("---") and "skeleton of clip 01_03" in (
        target / "README.md").read_text()
    index = json.loads((target / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_motion", "MotionGenerationPipeline"]
    from safetensors import safe_open

    (weights,) = (target / "prior").glob("*.safetensors")
    with safe_open(weights, "pt") as handle:
        dtypes = {handle.get_tensor(key).dtype for key in handle.keys()}  # noqa: SIM118  (safe_open is no dict)
    assert dtypes == {torch.float16}
    pipe = app.load_pipeline(app.resolve_model_path(target))
    assert pipe.prior.dtype == torch.float32 and pipe.config.window == 64
    assert torch.allclose(pipe.skeleton_offsets.float(), load_motion_clip("01_03", fetch=False).offsets)
    _, bvh, status = app.make_estimate(pipe, tmp_path)("01_01", None, 1, "off", 0.0, 0, 0.0, 1.1)
    assert "33 frames" in status and read_bvh(bvh).motion.shape[0] == 33
