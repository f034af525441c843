"""whitebox_hf.evaluation.cupid on hand-made cases: zero error at the true camera, the known error of a rotated /
shifted / rescaled one, IoU and PSNR of known sets and images, the cached targets against `build_uv_cube` of the exact
shape, and the pose-regression baseline's outputs."""

import math

import pytest
import roma
import torch

from whitebox_hf.evaluation import cupid as C
from whitebox_hf.models.cupid import build_uv_cube


def camera(focal=1.4, distance=2.5):
    k = torch.tensor([[focal, 0.0, 0.5], [0.0, focal, 0.5], [0.0, 0.0, 1.0]], dtype=torch.float64)
    r = roma.rotvec_to_rotmat(torch.tensor([0.3, -0.5, 0.2], dtype=torch.float64))
    return k, r, torch.tensor([0.0, 0.0, distance], dtype=torch.float64)


def test_true_camera_has_zero_error():
    k, r, t = camera()
    errors = C.pose_errors(k[None], r[None], t[None], k[None], r[None], t[None])
    assert all(float(v[0]) == pytest.approx(0.0, abs=1e-6) for v in errors.values())


def test_rotated_shifted_rescaled_camera_has_the_known_errors():
    k, r, t = camera()
    turn = roma.rotvec_to_rotmat(torch.tensor([0.0, math.radians(10.0), 0.0], dtype=torch.float64))
    k2 = k.clone()
    k2[0, 0] = k2[1, 1] = 1.4 * 1.2
    errors = C.pose_errors(k2[None], (turn @ r)[None], (t + torch.tensor([0.3, 0.4, 0.0], dtype=torch.float64))[None],
                           k[None], r[None], t[None])
    assert float(errors["rotation_error_deg"][0]) == pytest.approx(10.0, abs=1e-6)
    assert float(errors["translation_error"][0]) == pytest.approx(0.5, abs=1e-9)
    assert float(errors["focal_error"][0]) == pytest.approx(0.2, abs=1e-9)


def test_summary_shares_and_failures():
    rows = [dict(rotation_error_deg=e, translation_error=0.1, focal_error=0.0, failed=e == 180.0,
                 true_shape_mask_iou=1.0, true_shape_psnr=30.0) for e in (1.0, 4.0, 10.0, 180.0)]
    pose = C.summarize_cupid_scores(rows)["pose"]
    assert pose["rotation_within_5deg"] == 0.5 and pose["rotation_within_15deg"] == 0.75
    assert pose["rotation_error_median_deg"] == pytest.approx(7.0) and pose["failures"] == 1
    with pytest.raises(ValueError, match="rows"):
        C.summarize_cupid_scores([])


def test_iou_and_psnr_of_known_cases():
    a = torch.zeros(1, 4, 4, dtype=torch.bool)
    b = a.clone()
    a[0, :2], b[0, 1:3] = True, True  # 8 and 8 pixels sharing 4: IoU 4 / 12
    assert float(C.mask_iou(a, b)[0]) == pytest.approx(1 / 3)
    assert float(C.voxel_iou(a[:, None].expand(1, 4, 4, 4), a[:, None].expand(1, 4, 4, 4))[0]) == 1.0
    image = torch.full((1, 4, 4, 3), 0.5)
    assert float(C.psnr(image + 0.1, image)[0]) == pytest.approx(20.0)
    assert float(C.psnr(image, image)[0]) == C.PSNR_CAP_DB
    with pytest.raises(ValueError, match="predicted"):
        C.mask_iou(a.float(), b)
    with pytest.raises(ValueError, match="same shape"):
        C.psnr(image, image[:, :2])


def test_ssim_is_one_for_equal_images_and_falls_with_structure_lost():
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(16, 16, 3, generator=generator)
    assert C.ssim(image, image) == pytest.approx(1.0)
    blurred = image.mean(dim=(0, 1), keepdim=True).expand_as(image).contiguous()  # the mean colour only
    assert C.ssim(blurred, image) < 0.1 < C.ssim((image + 0.02).clamp(0, 1), image)
    with pytest.raises(ValueError, match="`predicted`"):
        C.ssim(image[..., :1], image)
    with pytest.raises(ValueError, match="same shape"):
        C.ssim(image, image[:8])


def test_occupancy_sdf_sign_and_rendering_a_sphere():
    from whitebox_hf.models.cupid import voxel_grid_points

    _, points = voxel_grid_points(16, 2.0)
    inside = (points.norm(dim=-1) < 0.6).reshape(16, 16, 16)
    sdf = C.occupancy_sdf(inside, 2.0)
    values = sdf(torch.tensor([[0.0, 0.0, 0.0], [0.9, 0.0, 0.0], [3.0, 0.0, 0.0]], dtype=torch.float64))
    assert values[0] < 0 < values[1] < values[2]
    k, r, t = camera()
    rendered = C.render_at_camera(sdf, k, r, t, 24)
    assert rendered["mask"][12, 12] and not rendered["mask"][0, 0]


def test_targets_match_build_uv_cube_of_the_exact_shape_and_are_cached(tmp_path):
    import json

    from whitebox_hf.data.shape_renders import load_shape_renders
    from whitebox_hf.data.shapes import make_shape
    from whitebox_hf.models.cupid import camera_from_pose

    renders = load_shape_renders(num_per_category=3, num_views=2, size=16, cache_dir=str(tmp_path))
    cache = tmp_path / "targets.safetensors"
    targets = C.cupid_targets(renders, 16, 2.0, cache)
    assert cache.is_file()
    again = C.cupid_targets(renders, 16, 2.0, cache)
    assert torch.equal(again["train"]["occupancy"], targets["train"]["occupancy"])
    item = int(C.occupied_items(targets["train"])[0])
    row = renders["train"][item]
    shape = make_shape(row["category"], json.loads(row["parameters"]))
    k, r, t = camera_from_pose(torch.tensor(row["intrinsics"][1]).double(), torch.tensor(row["poses"][1]).double(),
                               (16, 16))
    expected = build_uv_cube(shape.sdf, k, r, t, resolution=16).float()
    cube = C.target_cubes(targets["train"], torch.tensor([item]), torch.tensor([1]))[0]
    assert torch.allclose(cube, expected, atol=1e-6)
    # The true camera and the true voxels score perfectly on pose and geometry.
    split = renders["train"]
    view = targets["train"]
    rows = C._score_items(split, view, [item], 0, [(view["intrinsics"][item, 0], view["rotations"][item, 0],
                                                   view["translations"][item, 0])],
                          [view["occupancy"][item].bool()], 2.0, with_geometry=True)
    assert rows[0]["rotation_error_deg"] == pytest.approx(0.0, abs=1e-6) and rows[0]["voxel_iou"] == 1.0
    assert rows[0]["true_shape_mask_iou"] == 1.0 and rows[0]["true_shape_psnr"] > 45
    with pytest.raises(ValueError, match="resolution"):
        C.cupid_targets(renders, 1)


def test_pose_regression_outputs_a_rotation_and_a_loss():
    from whitebox_hf.models.cupid.pose_regression import CupidPoseRegressionModel

    model = CupidPoseRegressionModel(image_encoder_config=dict(image_size=16, patch_size=8, num_channels=3,
                                                               hidden_size=16, num_hidden_layers=1,
                                                               num_attention_heads=2), mlp_hidden_size=8)
    out = model(torch.randn(2, 3, 16, 16))
    assert torch.allclose(torch.linalg.det(out.rotations), torch.ones(2), atol=1e-5)
    assert torch.allclose(out.translations, torch.tensor([[0.0, 0.0, 2.5]] * 2))
    k, r, t = camera()
    loss = model(torch.randn(2, 3, 16, 16), r[None].expand(2, 3, 3).float(), t[None].expand(2, 3).float(),
                 k[None].expand(2, 3, 3).float()).loss
    assert loss.ndim == 0 and loss > 0
    with pytest.raises(ValueError, match="all of"):
        model(torch.randn(2, 3, 16, 16), rotations=r[None].expand(2, 3, 3).float())


def test_pose_regression_saves_and_loads(tmp_path):
    from whitebox_hf.models.cupid.pose_regression import CupidPoseRegressionModel

    encoder = dict(image_size=16, patch_size=8, num_channels=3, hidden_size=16, num_hidden_layers=1,
                   num_attention_heads=2)
    model = CupidPoseRegressionModel(image_encoder_config=encoder, mlp_hidden_size=8, freeze_image_encoder=True)
    with torch.no_grad():
        model.output.weight.normal_()
    model.eval().save_pretrained(tmp_path / "m")
    loaded = CupidPoseRegressionModel.from_pretrained(tmp_path / "m")
    image = torch.randn(1, 3, 16, 16)
    assert torch.allclose(model(image).rotations, loaded(image).rotations, atol=1e-6)
    assert not any(p.requires_grad for p in loaded.image_encoder.parameters())
    with pytest.raises(ValueError, match="mlp_hidden_size"):
        CupidPoseRegressionModel(image_encoder_config=encoder, mlp_hidden_size=0)


def test_a_failed_pnp_counts_as_a_failure_and_the_rest_of_its_batch_is_kept(tmp_path):
    """A stand-in pipeline that returns each item's true camera and voxels, and fails PnP (ValueError) on any call
    holding item 1: the batch is rerun item by item, item 1 counts as 180°, the others score zero error."""
    from types import SimpleNamespace

    from whitebox_hf.data.shape_renders import load_shape_renders

    renders = load_shape_renders(num_per_category=3, num_views=2, size=16, cache_dir=str(tmp_path))
    every = C.cupid_targets({"train": renders["train"]}, 16, 2.0)["train"]
    chosen = C.occupied_items(every)[-3:].tolist()  # three shapes with voxels, not the split's first ones
    split = renders["train"].select(chosen)
    targets = {key: value[chosen] for key, value in every.items()}
    images = {i: C._images(split, [i], 0)[0] for i in range(3)}

    class FakePipeline:
        config = SimpleNamespace(extent=2.0)

        def set_progress_bar_config(self, **kwargs):
            pass

        def __call__(self, batch, generator, **kwargs):
            found = [next(i for i, image in images.items() if torch.equal(image, b)) for b in batch]
            if 1 in found:
                raise ValueError("`cube` has 0 voxels")
            cubes = [torch.cat([targets["occupancy"][i][None].double(), torch.zeros(2, 16, 16, 16)]) for i in found]
            return SimpleNamespace(intrinsics=targets["intrinsics"][found, 0], rotations=targets["rotations"][found, 0],
                                   translations=targets["translations"][found, 0], shapes=cubes,
                                   thresholds=[0.5] * len(found))

    summary, rows = C.evaluate_cupid_pipeline(FakePipeline(), split, targets, batch_size=3)
    assert [row["failed"] for row in rows] == [False, True, False]
    assert rows[1]["rotation_error_deg"] == 180.0 and rows[1]["voxel_iou"] == 0.0
    assert rows[0]["rotation_error_deg"] == pytest.approx(0.0, abs=1e-6) and rows[2]["voxel_iou"] == 1.0
    assert summary["pose"]["failures"] == 1


def test_multiview_and_known_camera_rows_score_views_and_the_given_camera(tmp_path):
    """A stand-in pipeline that knows each (item, view) from its image: alone each view gets its true camera and
    voxels; a multi-view call fails for item 1 (all its views count as failures) and returns the true cameras
    otherwise; without a camera it returns half the true voxels, with the camera given the whole shape and that
    camera."""
    from types import SimpleNamespace

    from whitebox_hf.data.shape_renders import load_shape_renders

    renders = load_shape_renders(num_per_category=3, num_views=2, size=16, cache_dir=str(tmp_path))
    every = C.cupid_targets({"train": renders["train"]}, 16, 2.0)["train"]
    chosen = C.occupied_items(every)[-3:].tolist()
    split = renders["train"].select(chosen)
    targets = {key: value[chosen] for key, value in every.items()}
    images = {(i, v): C._images(split, [i], v)[0] for i in range(3) for v in range(2)}
    calls = []

    class FakePipeline:
        config = SimpleNamespace(extent=2.0)

        def set_progress_bar_config(self, **kwargs):
            pass

        def __call__(self, batch, generator, multi_view=False, camera=None, **kwargs):
            found = [next(key for key, image in images.items() if torch.equal(image, b)) for b in batch]
            calls.append((found, multi_view, camera is not None))
            if multi_view and found[0][0] == 1:
                raise ValueError("`cube` has 0 voxels")
            cubes = []
            for i, _ in found:
                occupancy = targets["occupancy"][i].double()
                if camera is None and not multi_view and len(found) == 1:
                    occupancy = occupancy * (torch.arange(16) < 8).double()[:, None, None]
                cubes.append(torch.cat([occupancy[None], torch.zeros(2, 16, 16, 16)]))
            items, views = [i for i, _ in found], [v for _, v in found]
            k, r, t = (camera if camera is not None else
                       (targets["intrinsics"][items, views], targets["rotations"][items, views],
                        targets["translations"][items, views]))
            return SimpleNamespace(intrinsics=k, rotations=r, translations=t, shapes=cubes,
                                   thresholds=[0.5] * len(found))

    summary, rows = C.evaluate_cupid_multiview(FakePipeline(), split, targets, num_views=2)
    assert summary["num_items"] == 3 and len(rows) == 12
    assert summary["single"]["failures"] == 0
    assert summary["single"]["rotation_error_median_deg"] == pytest.approx(0.0, abs=1e-6)
    assert summary["multi"]["failures"] == 2  # both views of item 1
    assert [r["failed"] for r in rows if r["mode"] == "multi"] == [False, False, True, True, False, False]
    assert len(summary["multi"]["rotation_median_per_view_deg"]) == 2
    assert any(multi for _, multi, _ in calls)
    with pytest.raises(ValueError, match="`num_views`"):
        C.evaluate_cupid_multiview(FakePipeline(), split, targets, num_views=3)

    known, rows = C.evaluate_cupid_known_camera(FakePipeline(), split, targets, batch_size=1)
    assert known["with"]["volumetric_iou"] == 1.0 and known["without"]["volumetric_iou"] < 1.0
    assert known["with"]["rotation_error_median_deg"] == pytest.approx(0.0, abs=1e-6)
    assert sum(given for _, _, given in calls) == 3  # the true camera was passed for every item


def test_condition_effect_is_zero_for_a_flow_that_ignores_the_image(tmp_path):
    from tests.pipelines.test_cupid_pipeline import tiny_pipeline
    from whitebox_hf.data.shape_renders import load_shape_renders

    renders = load_shape_renders(num_per_category=3, num_views=2, size=32, cache_dir=str(tmp_path))
    every = C.cupid_targets({"train": renders["train"]}, 16, 2.0)["train"]
    chosen = C.occupied_items(every)[-3:].tolist()
    split = renders["train"].select(chosen)
    targets = {key: value[chosen] for key, value in every.items()}
    pipe = tiny_pipeline()
    effect = C.condition_effect(pipe, split, targets, times=(0.5,))
    assert effect["num_items"] == 3 and abs(effect["times"]["0.5"]["gain"]["all"]) > 1e-6
    with torch.no_grad():
        for block in pipe.flow_model.blocks:
            block.cross_attention.output_projection.weight.zero_()
            block.cross_attention.output_projection.bias.zero_()
    ignored = C.condition_effect(pipe, split, targets, times=(0.5,))["times"]["0.5"]
    assert ignored["gain"] == {"all": 0.0, "occupancy": 0.0, "uv_at_occupied": 0.0}
