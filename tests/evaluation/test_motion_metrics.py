"""Motion metrics (`whitebox_hf.evaluation.motion`) on hand-made motions with known answers."""

import math

import pytest
import roma
import torch

from whitebox_hf.evaluation import foot_skating, ground_contact, head_error, motion_metrics, mpjpe, pa_mpjpe
from whitebox_hf.evaluation.motion import FOOT_INDICES


def motion(batch=2, frames=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    positions = torch.rand(batch, frames, 22, 3, generator=generator, dtype=torch.float64)
    positions[..., 2] += 0.5  # every joint well above the floor
    return positions


def test_identical_motions_score_zero_errors():
    target = motion()
    scores = motion_metrics(target.clone(), target)
    for key in ("mpjpe_mm", "pa_mpjpe_mm", "head_error_m"):
        assert torch.allclose(scores[key], torch.zeros(2, dtype=torch.float64), atol=1e-9), key


def test_a_shifted_copy_has_the_shift_as_mpjpe_and_head_error_but_no_pa_mpjpe():
    target = motion()
    shifted = target + torch.tensor([0.03, -0.04, 0.0], dtype=torch.float64)  # 5 cm
    assert torch.allclose(mpjpe(shifted, target), torch.full((2,), 50.0, dtype=torch.float64))
    assert torch.allclose(head_error(shifted, target), torch.full((2,), 0.05, dtype=torch.float64))
    assert torch.allclose(pa_mpjpe(shifted, target), torch.zeros(2, dtype=torch.float64), atol=1e-6)


def test_pa_mpjpe_is_invariant_to_a_similarity_transform_per_frame_and_mpjpe_is_not():
    target = motion()
    predicted = target + 0.01 * torch.randn(target.shape, generator=torch.Generator().manual_seed(1),
                                            dtype=torch.float64)
    rotation = roma.random_rotmat((2, 5), dtype=torch.float64)
    moved = 1.7 * predicted @ rotation.transpose(-1, -2) + torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    assert torch.allclose(pa_mpjpe(moved, target), pa_mpjpe(predicted, target), atol=1e-6)
    assert pa_mpjpe(predicted, target).min() > 0
    assert (mpjpe(moved, target) > 10 * mpjpe(predicted, target)).all()


def test_a_rotated_copy_about_the_centroid_has_the_known_mpjpe():
    # One joint at distance r from the rotation axis moves by the chord 2 r sin(θ/2); the others sit on the axis.
    target = torch.zeros(1, 1, 22, 3, dtype=torch.float64)
    target[0, 0, 3] = torch.tensor([0.2, 0.0, 0.0], dtype=torch.float64)
    turn = roma.rotvec_to_rotmat(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64))
    predicted = target @ turn.T
    chord = 2 * 0.2 * math.sin(math.pi / 4)
    assert mpjpe(predicted, target).item() == pytest.approx(chord * 1000 / 22)


def test_gnd_tells_a_grounded_from_a_floating_sequence():
    grounded = motion(batch=1)
    grounded[0, 2, FOOT_INDICES[2], 2] = 0.03  # a toe below 4 cm in one frame
    floating = motion(batch=1)
    floating[0, :, FOOT_INDICES[2:], 2] = 0.05  # toes above 4 cm, ankles at 0.5 m or more
    assert ground_contact(torch.cat([grounded, floating])).tolist() == [1.0, 0.0]
    # A raised floor: the floating sequence's toes are now below the threshold.
    assert ground_contact(floating, floor_height=0.02).tolist() == [1.0]


def test_foot_skating_counts_sliding_planted_feet_only():
    frames = 4
    positions = torch.zeros(1, frames, 22, 3, dtype=torch.float64)
    positions[..., 2] = 1.0
    toe = FOOT_INDICES[2]
    positions[0, :, toe, 2] = 0.0  # on the floor: weight 2 - 2^0 = 1
    positions[0, :, toe, 0] = torch.arange(frames, dtype=torch.float64) * 0.01  # slides 1 cm per frame
    positions[0, :, toe, 1] = torch.arange(frames, dtype=torch.float64) * 0.02  # and 2 cm sideways: L1 3 cm
    assert foot_skating(positions, per_frame=False).item() == pytest.approx(0.03 * (frames - 1))
    assert foot_skating(positions).item() == pytest.approx(0.03)
    # The toe 2 cm (half its threshold) above the lowest foot joint, which sets the floor: weight 2 - 2^0.5.
    raised = positions.clone()
    raised[0, :, FOOT_INDICES[0], 2] = 0.0  # an ankle on the floor sets the floor
    raised[0, :, toe, 2] = 0.02
    assert foot_skating(raised).item() == pytest.approx(0.03 * (2 - 2 ** 0.5))
    # A planted foot that does not move does not skate, and a moving foot in the air does not either.
    still = positions.clone()
    still[0, :, toe, :2] = 0.0
    assert foot_skating(still).item() == 0.0
    flying = positions.clone()
    flying[0, :, FOOT_INDICES[0], 2] = 0.0
    flying[0, :, toe, 2] = 0.5
    assert foot_skating(flying).item() == 0.0


@pytest.mark.parametrize("call, needle", [
    (lambda: mpjpe(torch.zeros(1, 2, 21, 3), torch.zeros(1, 2, 21, 3)), "predicted"),
    (lambda: mpjpe(torch.zeros(1, 2, 22, 3), torch.zeros(1, 3, 22, 3)), "target"),
    (lambda: mpjpe(torch.zeros(1, 2, 22, 3, dtype=torch.long), torch.zeros(1, 2, 22, 3)), "predicted"),
    (lambda: foot_skating(torch.zeros(1, 1, 22, 3)), "frames"),
    (lambda: pa_mpjpe(torch.full((1, 2, 22, 3), float("nan")), torch.zeros(1, 2, 22, 3)), "predicted"),
])
def test_bad_inputs_are_refused_by_name(call, needle):
    with pytest.raises((ValueError, TypeError), match=needle):
        call()


def test_window_evaluation_lowers_the_estimate_by_the_floor_shift_it_gave():
    from whitebox_hf.evaluation import evaluate_motion_windows

    target = motion(batch=3, frames=4)
    heads = torch.eye(4, dtype=torch.float64).expand(3, 4, 4, 4).clone()
    calls = []

    def lifted_truth(head_poses, offsets, floor_height):
        # An estimator that knows the truth and places it in the lifted world it is shown.
        calls.append(floor_height.clone())
        index = slice(sum(len(c) for c in calls[:-1]), sum(len(c) for c in calls))
        assert torch.allclose(head_poses[:, :, 2, 3], floor_height[:, None].expand(-1, 4))
        return target[index] + torch.stack([torch.zeros_like(floor_height)] * 2 + [floor_height], -1)[:, None, None]

    result = evaluate_motion_windows(lifted_truth, heads, torch.zeros(3, 22, 3, dtype=torch.float64), target,
                                     ["a", "b", "a"], floor_shift=0.5, seed=0, batch_size=2)
    shifts = torch.cat(calls)
    assert len(calls) == 2 and shifts.abs().max() <= 0.5 and shifts.abs().min() > 0
    assert result["all"]["mpjpe_mm"] == pytest.approx(0.0, abs=1e-9) and result["all"]["num_windows"] == 3
    assert result["per_clip"]["a"]["num_windows"] == 2 and result["per_clip"]["b"]["num_frames"] == 4
    # An estimator that ignores the shift is off by it.
    ignoring = evaluate_motion_windows(lambda h, o, f: target[: len(f)].clone() if len(f) == 2 else target[2:].clone(),
                                       heads, torch.zeros(3, 22, 3, dtype=torch.float64), target, ["a", "b", "a"],
                                       floor_shift=0.5, seed=0, batch_size=2)
    assert ignoring["all"]["mpjpe_mm"] == pytest.approx(1000 * shifts.abs().mean().item())
