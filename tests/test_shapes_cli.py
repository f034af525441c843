"""`whitebox-hf shapes prepare / reconstruct` (issue 13, "your own mesh in"): the winding-number occupancy is exact
for closed meshes, a prepared item has the layout of the procedural shapes' items, reconstruct runs a saved
SITA-VAE end to end, and bad files and non-watertight meshes are one-line errors."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from safetensors.numpy import load_file

import whitebox_hf
from whitebox_hf import SitaVaeConfig, SitaVaeModel
from whitebox_hf.cli import main
from whitebox_hf.hub.shapes_cli import prepare_mesh, winding_number

BOX_VERTICES = np.array([[x, y, z] for x in (0.0, 2.0) for y in (0.0, 1.0) for z in (0.0, 0.5)])
# Twelve outward-facing triangles, two per face (vertex index = 4x + 2y + z).
BOX_FACES = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1], [2, 3, 7], [2, 7, 6],
                      [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
TETRAHEDRON_VERTICES = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
TETRAHEDRON_FACES = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])


def write_off(path: Path, vertices, faces) -> Path:
    lines = ["OFF", f"{len(vertices)} {len(faces)} 0"]
    lines += [" ".join(f"{x:.6f}" for x in vertex) for vertex in vertices]
    lines += ["3 " + " ".join(str(i) for i in face) for face in faces]
    path.write_text("\n".join(lines) + "\n")
    return path


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_box_faces_are_outward_and_closed():
    mesh = trimesh.Trimesh(BOX_VERTICES, BOX_FACES, process=False)
    assert mesh.is_watertight and mesh.volume == pytest.approx(1.0)


def test_winding_number_is_exact_containment_for_a_box_and_a_tetrahedron():
    rng = np.random.default_rng(0)
    points = rng.uniform(-0.5, 2.5, size=(3000, 3))
    winding = winding_number(BOX_VERTICES, BOX_FACES, points, chunk_size=257)
    inside = np.all((points > [0, 0, 0]) & (points < [2, 1, 0.5]), axis=1)
    np.testing.assert_allclose(winding, inside.astype(float), atol=1e-9)
    # Reversing every triangle flips the sign, not the magnitude.
    np.testing.assert_allclose(winding_number(BOX_VERTICES, BOX_FACES[:, ::-1], points), -inside.astype(float), atol=1e-9)
    points = rng.uniform(-0.2, 1.2, size=(2000, 3))
    inside = (points > 0).all(axis=1) & (points.sum(axis=1) < 1)
    winding = winding_number(TETRAHEDRON_VERTICES, TETRAHEDRON_FACES, points)
    np.testing.assert_allclose(winding, inside.astype(float), atol=1e-9)


def test_winding_number_refuses_bad_arrays():
    with pytest.raises(ValueError, match="`faces`"):
        winding_number(BOX_VERTICES, BOX_FACES + 8, np.zeros((1, 3)))
    with pytest.raises(ValueError, match="`points`"):
        winding_number(BOX_VERTICES, BOX_FACES, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="`chunk_size`"):
        winding_number(BOX_VERTICES, BOX_FACES, np.zeros((4, 3)), chunk_size=0)


@pytest.mark.parametrize("orientation", ["outward", "inward"])
def test_prepare_a_box_labels_occupancy_exactly(orientation, tmp_path, capsys):
    faces = BOX_FACES if orientation == "outward" else BOX_FACES[:, ::-1]
    mesh_file = write_off(tmp_path / "box.off", BOX_VERTICES, faces)
    out = tmp_path / "prepared"
    code, stdout, err = run(["shapes", "prepare", str(mesh_file), "--out", str(out), "--num-surface-points", "512",
                             "--num-volume-queries", "800", "--num-near-queries", "300", "--seed", "3"], capsys)
    assert code == 0, err
    assert f"wrote {out}" in stdout and "512 surface points" in stdout
    item = load_file(str(out / "shape.safetensors"))
    assert item["surface_points"].shape == (512, 3) and item["surface_points"].dtype == np.float32
    assert item["volume_occupancy"].dtype == np.uint8 and item["near_queries"].shape == (300, 3)
    # Normalised: the box [0, 2] x [0, 1] x [0, 0.5] is centred and its longest side becomes 1.8 (scale 0.9).
    half = np.array([0.9, 0.45, 0.225])
    surface = item["surface_points"].astype(np.float64)
    assert np.abs(surface).max(axis=0) == pytest.approx(half, abs=1e-6)
    on_face = np.isclose(np.abs(surface), half, atol=1e-5)
    assert on_face.any(axis=1).all()
    # Each normal is the outward axis of the face its point lies on.
    normals = item["surface_normals"].astype(np.float64)
    axis = on_face.argmax(axis=1)
    expected = np.zeros_like(normals)
    expected[np.arange(len(axis)), axis] = np.sign(surface[np.arange(len(axis)), axis])
    np.testing.assert_allclose(normals, expected, atol=1e-6)
    for name in ("volume", "near"):
        queries = item[f"{name}_queries"].astype(np.float64)
        inside = np.all(np.abs(queries) < half, axis=1)
        assert np.array_equal(item[f"{name}_occupancy"].astype(bool), inside), name
    assert 0 < item["near_occupancy"].mean() < 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scale"] == pytest.approx(0.9) and summary["num_faces"] == 12 and not summary["holes_filled"]
    assert summary["volume_inside_fraction"] == pytest.approx(item["volume_occupancy"].mean())


def test_prepare_is_reproducible_from_its_seed(tmp_path):
    mesh_file = write_off(tmp_path / "tetra.off", TETRAHEDRON_VERTICES, TETRAHEDRON_FACES)
    first = prepare_mesh(mesh_file, tmp_path / "a", num_surface_points=64, num_volume_queries=64,
                         num_near_queries=64, seed=1)
    prepare_mesh(mesh_file, tmp_path / "b", num_surface_points=64, num_volume_queries=64, num_near_queries=64, seed=1)
    prepare_mesh(mesh_file, tmp_path / "c", num_surface_points=64, num_volume_queries=64, num_near_queries=64, seed=2)
    a, b, c = (load_file(str(tmp_path / name / "shape.safetensors")) for name in "abc")
    assert all(np.array_equal(a[key], b[key]) for key in a)
    assert not np.array_equal(a["surface_points"], c["surface_points"])
    assert first["num_faces"] == 4


def test_a_single_missing_face_is_filled_but_an_open_box_is_refused(tmp_path, capsys):
    one_hole = write_off(tmp_path / "one_hole.off", BOX_VERTICES, BOX_FACES[2:])
    code, stdout, err = run(["shapes", "prepare", str(one_hole), "--out", str(tmp_path / "filled"),
                             "--num-surface-points", "64"], capsys)
    assert code == 0, err
    assert "holes filled" in stdout
    assert json.loads((tmp_path / "filled" / "summary.json").read_text())["holes_filled"] is True
    # Three faces missing: a hole fill_holes does not close.
    open_box = write_off(tmp_path / "open.off", BOX_VERTICES, BOX_FACES[6:])
    code, stdout, err = run(["shapes", "prepare", str(open_box), "--out", str(tmp_path / "open")], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "not watertight" in err and "open.off" in err
    assert not (tmp_path / "open" / "shape.safetensors").exists()
    # Two opposite faces alone: hole filling closes them into a flat shell with no inside.
    flat = write_off(tmp_path / "flat.off", BOX_VERTICES, BOX_FACES[8:])
    code, stdout, err = run(["shapes", "prepare", str(flat), "--out", str(tmp_path / "flat")], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "encloses no volume" in err and "flat.off" in err


@pytest.mark.parametrize("case", ["missing", "garbage", "suffix", "no-out"])
def test_prepare_file_errors_are_one_line_naming_the_file(case, tmp_path, capsys):
    path = tmp_path / ("mesh.txt" if case == "suffix" else "mesh.off")
    if case != "missing":
        path.write_text("this is not a mesh\n")
    argv = ["shapes", "prepare", str(path)] + ([] if case == "no-out" else ["--out", str(tmp_path / "out")])
    code, _, err = run(argv, capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert ("--out" in err) if case == "no-out" else (str(path) in err)


@pytest.fixture
def saved_model(tmp_path):
    torch.manual_seed(0)
    model = SitaVaeModel(SitaVaeConfig(num_latents=4, hidden_size=16, num_attention_heads=2, num_encoder_layers=1,
                                       num_decoder_layers=1, latent_channels=3, alignment_dim=8)).eval()
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    return model, folder


@pytest.fixture
def prepared(tmp_path):
    mesh_file = write_off(tmp_path / "box.off", BOX_VERTICES, BOX_FACES)
    prepare_mesh(mesh_file, tmp_path / "prepared", num_surface_points=256, num_volume_queries=256,
                 num_near_queries=64)
    return tmp_path / "prepared"


def grid_median(model, folder, depth):
    item = load_file(str(folder / "shape.safetensors"))
    points = torch.from_numpy(np.concatenate([item["surface_points"], item["surface_normals"]], axis=-1))[None]
    with torch.no_grad():
        latents = model.encode(points, sample_posterior=False).latents
        return model.occupancy_grid(latents, octree_depth=depth).median().item(), latents


def test_reconstruct_writes_a_readable_mesh_and_prints_the_iou(saved_model, prepared, tmp_path, capsys):
    model, folder = saved_model
    # An untrained model's logits hardly vary: the surface at their median level exists by construction.
    level, latents = grid_median(model, prepared, 4)
    out = tmp_path / "mesh.glb"
    code, stdout, err = run(["shapes", "reconstruct", str(prepared), "--model", str(folder), "--out", str(out),
                             "--octree-depth", "4", "--level", repr(level)], capsys)
    assert code == 0, err
    assert "volume IoU" in stdout and f"wrote {out}" in stdout
    mesh = trimesh.load(out, force="mesh")
    _, faces = model.extract_meshes(latents, octree_depth=4, level=level)[0]
    assert len(mesh.faces) == len(faces) > 0
    iou = float(stdout.split("volume IoU ")[1].split()[0])
    assert 0.0 <= iou <= 1.0


def test_reconstruct_reports_a_field_without_surface(saved_model, prepared, tmp_path, capsys):
    model, folder = saved_model
    _, latents = grid_median(model, prepared, 3)
    with torch.no_grad():
        logits = model.occupancy_grid(latents, octree_depth=3)
    level = logits.max().item() + 1.0  # above every logit: nothing crosses it
    out = tmp_path / "mesh.obj"
    code, stdout, err = run(["shapes", "reconstruct", str(prepared), "--model", str(folder), "--out", str(out),
                             "--octree-depth", "3", "--level", repr(level)], capsys)
    assert code == 1
    assert "no surface" in err and err.count("\n") == 1 and not out.exists()
    assert "volume IoU" in stdout


@pytest.mark.parametrize("case", ["no-dir", "no-model", "not-a-model", "bad-suffix", "not-prepared"])
def test_reconstruct_errors_are_one_line(case, saved_model, prepared, tmp_path, capsys):
    _, folder = saved_model
    argv = ["shapes", "reconstruct", str(prepared), "--model", str(folder), "--out", str(tmp_path / "m.glb")]
    needle = {"no-dir": "zz-missing", "no-model": "--model", "not-a-model": "config.json",
              "bad-suffix": "m.png", "not-prepared": "shape.safetensors"}[case]
    if case == "no-dir":
        argv[2] = str(tmp_path / "zz-missing")
    elif case == "no-model":
        argv = argv[:3] + argv[5:]
    elif case == "not-a-model":
        argv[4] = str(tmp_path)
    elif case == "bad-suffix":
        argv[6] = str(tmp_path / "m.png")
    else:
        (tmp_path / "empty").mkdir()
        argv[2] = str(tmp_path / "empty")
    code, _, err = run(argv, capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert needle in err


@pytest.mark.parametrize("command", [["shapes"], ["shapes", "prepare"], ["shapes", "reconstruct"]], ids=" ".join)
def test_shapes_help_has_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert f"example:\n  whitebox-hf {' '.join(command) if len(command) > 1 else 'shapes'}" in capsys.readouterr().out


def test_shapes_usage_errors_never_import_torch():
    script = textwrap.dedent("""
        import contextlib, io, json, sys
        from whitebox_hf.cli import main
        results = []
        for argv in (["shapes"], ["shapes", "prepare", "/nonexistent.obj", "--out", "x"],
                     ["shapes", "reconstruct", "/nonexistent-dir", "--model", "m", "--out", "m.glb"],
                     ["shapes", "prepare", "m.obj", "--num-surface-points", "0"]):
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                try:
                    code = main(argv)
                except SystemExit as exit_info:
                    code = exit_info.code
            results.append([code, err.getvalue()])
        print(json.dumps({"results": results, "torch": "torch" in sys.modules}))
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(whitebox_hf.__file__).parents[1]),
                                                       os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["torch"] is False
    for code, err in out["results"]:
        assert code == 2 and err.count("\n") == 1 and "error:" in err, err
