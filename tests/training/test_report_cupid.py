"""training/report_cupid.py end to end on tiny runs of train_cupid_flow.py (every model, 2 steps, 16² renders): the page
holds the pose rows, the oracle row at zero error, the stage-2 rows (pose-aligned and not) with their ceiling and
floor, the multi-view and known-camera rows, the CGAL section (both stage-1 runs on meshes rendered from random
cameras), no not-built row, and the JSON the numbers; a missing run is listed;
bad settings are refused."""

import json

import pytest

from tests.conftest import load_training_script
from tests.training.test_resume import CUPID, cupid_renders

report = load_training_script("report_cupid")
train = load_training_script("train_cupid_flow")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cupid_runs")
    renders = cupid_renders()
    for name, model, extra in (("flow", "flow", []), ("flow_dense", "flow", ["--dense_uv", "true"]),
                               ("pose_regression", "pose_regression", []),
                               ("flow_pose_encoder", "flow", ["--image_encoder", str(root / "pose_regression" / "model"),
                                                              "--freeze_image_encoder", "true"]),
                               ("appearance", "appearance", []),
                               ("appearance_global", "appearance", ["--pose_aligned", "false"])):
        train.main(CUPID + ["--model", model, "--max_steps", "2", "--eval_num_items", "2", "--sample_steps", "2",
                            "--num_threads", "1", "--output_dir", str(root / name), *extra], renders=renders)
    return root, renders


@pytest.fixture(scope="module")
def cgal_renders(tmp_path_factory):
    """Two closed meshes (and an open one, skipped) rendered as the runs' renders are: 16², 2 views."""
    import trimesh

    from whitebox_hf.data.cgal_renders import load_cgal_renders

    folder = tmp_path_factory.mktemp("meshes")
    trimesh.creation.icosphere(subdivisions=2).export(folder / "ball.off")
    trimesh.creation.box(extents=(1.0, 0.5, 0.25)).export(folder / "slab.off")
    cap = trimesh.creation.icosphere(subdivisions=2)
    cap.update_faces(cap.triangles_center[:, 1] > 0)
    cap.export(folder / "cap.off")
    return load_cgal_renders(num_views=2, size=16, min_faces=10, mesh_dir=folder,
                             cache_dir=tmp_path_factory.mktemp("cgal_cache"))


def test_report_writes_every_row_from_measured_numbers(runs, cgal_renders, tmp_path):
    root, renders = runs
    output = tmp_path / "cupid.md"
    results = report.main(["--runs_dir", str(root), "--output", str(output), "--split", "validation", "--num_items",
                           "3", "--sample_steps", "2"], renders=renders, cgal_renders=cgal_renders)
    page = output.read_text()
    assert "(a) Cupid stage 1" in page and "(c) direct pose regression" in page
    assert page.count("not built") == 0 and "oracle" in page
    # The CGAL section: both stage-1 runs and the oracle scored on the two closed meshes; the open one left out.
    assert "## CGAL meshes rendered from random cameras" in page
    cgal = json.loads(output.with_suffix(".json").read_text())["cgal"]
    assert cgal["meshes"] == ["ball", "slab"] and cgal["skipped"]["cap"].startswith("not watertight")
    assert cgal["runs"].keys() == {"flow", "flow_dense", "flow_pose_encoder", "pose_regression"}
    section = page.split("## CGAL meshes rendered from random cameras")[1].split("## Appearance")[0]
    assert "2 meshes scored; left out — not watertight: 1" in section
    for name, label in report.RUNS.items():
        summary = cgal["runs"][name]
        assert summary["num_items"] + summary["num_empty_skipped"] == 2
        assert summary["per_mesh_rotation_deg"].keys() <= {"ball", "slab"}
        assert report._pose_row(label, summary, summary["eval_seconds"]) in section
    assert "volumetric_iou" in cgal["runs"]["flow"]["geometry"] and "geometry" not in cgal["runs"]["pose_regression"]
    assert cgal["oracle"]["pose"]["rotation_error_median_deg"] == pytest.approx(0.0, abs=1e-6)
    assert cgal["oracle"]["geometry"]["volumetric_iou"] == 1.0
    # The true mesh drawn at its own camera redraws the input's silhouette.
    assert cgal["oracle"]["grounding"]["true_shape_mask_iou"] == pytest.approx(1.0)
    stored = json.loads(output.with_suffix(".json").read_text())
    assert stored["runs"].keys() == {"flow", "flow_dense", "flow_pose_encoder", "pose_regression"}
    assert stored["runs"]["flow_dense"]["training"]["dense_uv"] is True
    assert stored["runs"]["flow"]["training"]["dense_uv"] is False
    dense_config = json.loads((root / "flow_dense" / "pipeline" / "flow_model" / "config.json").read_text())
    assert dense_config["dense_uv"] is True
    assert f"{flow_ssim(stored):.3f}" in page
    # Stage 1 + stage 2 end to end: every flow with every stage-2 run, on the stage-1 items.
    end_to_end = stored["end_to_end"]
    assert end_to_end.keys() == {f"{f}+{a}" for f in ("flow", "flow_dense", "flow_pose_encoder") for a in ("appearance",
                                                                                        "appearance_global")}
    first = end_to_end["flow+appearance"]
    assert first["num_items"] == results["runs"]["flow"]["evaluation"]["num_items"] and 0 <= first["mask_iou"] <= 1 and -1 <= first["ssim"] <= 1
    assert f"{first['psnr']:.2f} dB | {first['ssim']:.3f}" in page.split("### Stage 1 + stage 2 end to end")[1]
    assert "not scored yet" not in page
    effect = stored["runs"]["flow"]["evaluation"]["condition_effect"]
    assert effect["times"].keys() == {"0.3", "0.6", "0.9"}
    scores = effect["times"]["0.6"]
    assert scores["gain"]["all"] == pytest.approx(1 - scores["conditional"]["all"] / scores["unconditional"]["all"])
    assert "### Does the flow use its image?" in page
    assert stored["appearance_runs"].keys() == {"appearance", "appearance_global"}
    assert stored["appearance_runs"]["appearance"]["training"]["pose_aligned"] is True
    assert stored["appearance_runs"]["appearance_global"]["training"]["pose_aligned"] is False
    aligned = stored["appearance_runs"]["appearance"]["evaluation"]
    assert "(a) stage 2, pose-aligned" in page and "(b) stage 2 without pose-aligned" in page
    assert f"{aligned['psnr']:.2f} dB" in page and f"{aligned['oracle_psnr']:.2f} dB" in page
    assert aligned["oracle_psnr"] > aligned["flat_psnr"] - 1.0  # the exact colours are no worse than flat grey
    assert "stage 2 (pose-aligned appearance)" not in page  # the old not-built line is gone
    assert stored["oracle"]["pose"]["rotation_error_median_deg"] == pytest.approx(0.0, abs=1e-6)
    assert stored["oracle"]["geometry"]["volumetric_iou"] == 1.0
    flow = results["runs"]["flow"]["evaluation"]
    assert flow["num_items"] + flow["num_empty_skipped"] == 3
    assert f"{flow['pose']['rotation_error_median_deg']:.1f}°" in page
    assert str(root) not in page  # no machine paths on the page
    # Beyond the released code: (d) multi-view vs single view (the renders' 2 views) and known cameras.
    assert "multi-view (velocities averaged across views)" not in page
    assert "(d) multi-view approximation" in page and "known camera: with the true camera" in page
    multi, known = stored["multi_view"], stored["known_camera"]
    assert multi["num_views"] == 2 and multi["multi"]["num_rows"] == 2 * multi["num_items"]
    assert known["with"]["rotation_error_median_deg"] == pytest.approx(0.0, abs=1e-6)
    assert f"{known['with']['volumetric_iou']:.3f} with the camera" in page


def flow_ssim(stored):
    grounding = stored["runs"]["flow"]["evaluation"]["grounding"]
    assert -1 <= grounding["generated_ssim"] <= 1 and -1 <= grounding["true_shape_ssim"] <= 1
    return grounding["generated_ssim"]


def test_report_lists_a_missing_run_and_refuses_bad_settings(runs, cgal_renders, tmp_path):
    import shutil

    root, renders = runs
    partial = tmp_path / "runs"
    shutil.copytree(root / "pose_regression", partial / "pose_regression")
    output = tmp_path / "cupid.md"
    report.main(["--runs_dir", str(partial), "--output", str(output), "--split", "validation", "--num_items", "2"],
                renders=renders, cgal_renders=cgal_renders)
    page = output.read_text()
    assert "(a) Cupid stage 1: pose by PnP on the generated UV cube | not run" in page
    section = page.split("## CGAL meshes rendered from random cameras")[1]
    assert "(a) Cupid stage 1: pose by PnP on the generated UV cube | not run" in section
    assert "(c) direct pose regression (same CRATE encoder + MLP → R, t, f) | not run" not in section
    # --no-cgal leaves the section out and says so.
    report.main(["--runs_dir", str(partial), "--output", str(output), "--split", "validation", "--num_items", "2",
                 "--no-cgal"], renders=renders)
    assert "Not scored (`--no-cgal`, or no stage-1 run)." in output.read_text()
    with pytest.raises(SystemExit):
        report.parse_args(["--cgal_num_items", "0"])
    with pytest.raises(SystemExit):
        report.parse_args(["--num_items", "0"])
    with pytest.raises(SystemExit):
        report.parse_args(["--multi_view_views", "1"])
    with pytest.raises(SystemExit, match="exceeds the renders' 2 views"):
        report.main(["--runs_dir", str(root), "--output", str(output), "--split", "validation", "--num_items", "2",
                     "--multi_view_views", "3"], renders=renders)
    with pytest.raises(SystemExit, match="no Cupid run"):
        report.main(["--runs_dir", str(tmp_path / "empty"), "--output", str(output)], renders=renders)
