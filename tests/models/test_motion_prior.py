"""EgoAllo's motion prior (issue 16 items 3-4): the head conditionings of Table 8.15 and their invariances, the
x₀-predicting transformer, its loss, the DDIM sampler (rotations in SO(3), the head placed on the observed pose),
the invariance of the outputs under world yaw and horizontal shifts with the "ours" conditioning, save/load and
bad inputs. Tiny models on synthetic head trajectories: no data download."""

import math

import pytest
import roma
import torch
from transformers import AutoConfig, AutoModel

from tests.models.motion_models import TINY, tiny_model
from whitebox_hf import MotionPriorConfig, MotionPriorModel
from whitebox_hf.data.motion import CPF_OFFSET, CPF_ROTATION, HEAD_INDEX, JOINT_PARENTS
from whitebox_hf.data.motion_kinematics import forward_kinematics
from whitebox_hf.models.motion_prior import (
    HEAD_CONDITIONING_DIMS,
    HEAD_CONDITIONINGS,
    MOTION_PRIOR_PRESETS,
    egoallo_timesteps,
    fourier_encode,
    head_condition_features,
    motion_prior_loss,
    motion_prior_scheduler,
    motion_prior_training_loss,
    noise_level_weights,
    pack_motion,
    place_root_from_head,
    sample_motion,
)

B, T = 2, 8


def head_trajectory(batch=B, frames=T, seed=0, dtype=torch.float32):
    """A walking-like head: height ~1.6 m with pitch/roll wobble, yawing and moving forward."""
    generator = torch.Generator().manual_seed(seed)
    steps = torch.arange(frames, dtype=torch.float64)
    poses = torch.eye(4, dtype=torch.float64).repeat(batch, frames, 1, 1)
    for b in range(batch):
        yaw = 0.3 * b + 0.05 * steps + 0.1 * torch.randn(frames, generator=generator, dtype=torch.float64)
        tilt = 0.1 * torch.randn(frames, 2, generator=generator, dtype=torch.float64)
        rotvec = torch.stack([tilt[:, 0], tilt[:, 1], torch.zeros(frames, dtype=torch.float64)], -1)
        # CPF axes: z forward (horizontal), y up, x left: turn the identity so that e_z -> +x, e_y -> +z.
        base = torch.tensor([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=torch.float64)
        poses[b, :, :3, :3] = roma.rotvec_to_rotmat(torch.stack([0 * yaw, 0 * yaw, yaw], -1)) @ \
            roma.rotvec_to_rotmat(rotvec) @ base
        poses[b, :, :3, 3] = torch.stack([0.04 * steps, 0.01 * steps * b, 1.6 + 0.02 * torch.sin(steps)], -1)
    return poses.to(dtype)


def world_transform(poses, yaw=0.7, shift=(1.5, -2.0, 0.0)):
    """G·T_t for a world yaw and shift G."""
    g = torch.eye(4, dtype=poses.dtype)
    g[:3, :3] = roma.rotvec_to_rotmat(torch.tensor([0.0, 0.0, yaw], dtype=torch.float64)).to(poses.dtype)
    g[:3, 3] = torch.tensor(shift, dtype=poses.dtype)
    return g @ poses, g


def random_motion(config, batch=B, frames=T, seed=1):
    generator = torch.Generator().manual_seed(seed)
    rotations = roma.rotvec_to_rotmat(0.3 * torch.randn(batch, frames, config.num_body_joints, 3,
                                                        generator=generator))
    contacts = torch.rand(batch, frames, config.num_contacts, generator=generator) > 0.5
    return pack_motion(rotations, contacts)


def skeleton_offsets(seed=2):
    generator = torch.Generator().manual_seed(seed)
    return 0.15 * torch.randn(len(JOINT_PARENTS), 3, generator=generator)


# ----------------------------------------------------------------------------------------------- conditioning


@pytest.mark.parametrize("variant", HEAD_CONDITIONINGS)
def test_head_condition_widths_and_fourier_features(variant):
    poses = head_trajectory(dtype=torch.float64)
    features = head_condition_features(poses, variant)
    assert features.shape == (B, T, HEAD_CONDITIONING_DIMS[variant])
    encoded = fourier_encode(features, 3)
    assert encoded.shape == (B, T, 7 * HEAD_CONDITIONING_DIMS[variant])
    d = features.shape[-1]
    torch.testing.assert_close(encoded[..., :d], features)
    torch.testing.assert_close(encoded[..., d + 2 * d: d + 3 * d], torch.sin(4 * features))  # sin 2²x
    torch.testing.assert_close(encoded[..., 4 * d: 5 * d], torch.cos(features))  # cos 2⁰x
    assert MotionPriorConfig(**TINY, head_conditioning=variant).condition_size == 7 * HEAD_CONDITIONING_DIMS[variant]


def test_ours_features_are_the_spec_features_and_frame_zero_follows_itself():
    poses = head_trajectory(dtype=torch.float64)
    features = head_condition_features(poses, "ours")
    torch.testing.assert_close(features[:, 0, :12], torch.eye(4, dtype=torch.float64)[:3].reshape(12).expand(B, 12))
    torch.testing.assert_close(features[:, :, 12], poses[:, :, 2, 3])  # h_t
    relative = torch.linalg.inv(poses[:, 2]) @ poses[:, 3]
    torch.testing.assert_close(features[:, 3, :12], relative[:, :3].reshape(B, 12))
    forward = (features[:, :, 13:].reshape(B, T, 3, 3))[..., :, 2]
    torch.testing.assert_close(forward[..., 1], torch.zeros(B, T, dtype=torch.float64), atol=1e-12, rtol=0)


@pytest.mark.parametrize("variant,invariant", [("ours", True), ("sequence_canonical", True), ("absolute", False),
                                               ("absolute_relative", False), ("absolute_global_deltas", False)])
def test_invariance_to_world_yaw_and_horizontal_shift(variant, invariant):
    poses = head_trajectory(dtype=torch.float64)
    moved, _ = world_transform(poses)
    same = torch.allclose(head_condition_features(poses, variant), head_condition_features(moved, variant),
                          atol=1e-9)
    assert same == invariant


def test_ours_sees_pitch_and_roll_and_a_floor_shift_only_without_the_floor_height():
    poses = head_trajectory(dtype=torch.float64)
    tilted = poses.clone()
    tilted[..., :3, :3] = roma.rotvec_to_rotmat(torch.tensor([0.3, 0.0, 0.0], dtype=torch.float64)) @ \
        poses[..., :3, :3]
    assert not torch.allclose(head_condition_features(poses), head_condition_features(tilted), atol=1e-6)
    raised = poses.clone()
    raised[..., 2, 3] += 0.4
    floor = torch.full((B,), 0.4, dtype=torch.float64)
    assert not torch.allclose(head_condition_features(poses), head_condition_features(raised), atol=1e-6)
    torch.testing.assert_close(head_condition_features(raised, floor_height=floor), head_condition_features(poses))


def test_conditioning_refuses_bad_head_poses():
    poses = head_trajectory()
    scaled = poses.clone()
    scaled[..., :3, :3] *= 1.1
    with pytest.raises(ValueError, match="head_poses"):
        head_condition_features(scaled)
    with pytest.raises(ValueError, match="head_poses"):
        head_condition_features(poses.masked_fill(torch.zeros_like(poses, dtype=torch.bool).index_fill(1,
                                torch.tensor([2]), True), float("nan")))
    with pytest.raises(ValueError, match="at least 2 frames"):
        head_condition_features(poses[:, :1])
    with pytest.raises(ValueError, match="head_poses"):
        head_condition_features(poses[0])
    with pytest.raises(ValueError, match="head_conditioning"):
        head_condition_features(poses, "egocentric")
    with pytest.raises(ValueError, match="floor_height"):
        head_condition_features(poses, floor_height=torch.zeros(B + 1))


# ---------------------------------------------------------------------------------------------------- model


def test_config_presets_and_validation():
    cpu = MotionPriorConfig.from_preset("motion-prior-cpu")
    assert (cpu.hidden_size, cpu.num_encoder_layers, cpu.num_decoder_layers) == (128, 2, 2)
    assert (cpu.motion_size, cpu.condition_size) == (21 * 9 + 4, 154)
    full = MotionPriorConfig.from_preset("motion-prior-egoallo")
    assert (full.hidden_size, full.intermediate_size, full.num_encoder_layers, full.noise_embedding_dim) == (
        512, 2048, 6, 1024)
    assert set(MOTION_PRIOR_PRESETS) == {"motion-prior-cpu", "motion-prior-egoallo"}
    with pytest.raises(ValueError, match="head_conditioning"):
        MotionPriorConfig(head_conditioning="relative")
    with pytest.raises(ValueError, match="num_attention_heads"):
        MotionPriorConfig(hidden_size=12, num_attention_heads=4)  # head width 3: odd, no rotary pairs
    with pytest.raises(ValueError, match="min_noise_weight"):
        MotionPriorConfig(min_noise_weight=1.5)


def test_forward_shapes_loss_terms_and_mask():
    model = tiny_model()
    config = model.config
    clean = random_motion(config)
    timestep = torch.tensor([0, 700])
    out = model(clean, timestep, head_trajectory(), target=clean)
    assert out.sample.shape == (B, T, config.motion_size)
    alphas = motion_prior_scheduler(config).alphas_cumprod
    terms = motion_prior_loss(out.sample, clean, timestep, alphas, config)
    assert set(terms) == {"body", "contacts", "loss"}
    torch.testing.assert_close(terms["loss"], 1.0 * terms["body"] + 0.1 * terms["contacts"])
    torch.testing.assert_close(out.loss, terms["loss"])
    # Padded frames are masked out of the keys: changing them leaves the real frames' predictions unchanged.
    mask = torch.ones(B, T, dtype=torch.long)
    mask[:, -3:] = 0
    other = clean.clone()
    other[:, -3:] += 1.0
    with torch.no_grad():
        first = model(clean, timestep, head_trajectory(), attention_mask=mask).sample
        second = model(other, timestep, head_trajectory(), attention_mask=mask).sample
    torch.testing.assert_close(first[:, :-3], second[:, :-3])


def test_noise_level_weights_range():
    config = MotionPriorConfig(**TINY)
    scheduler = motion_prior_scheduler(config)
    assert scheduler.config.beta_schedule == "squaredcos_cap_v2" and scheduler.config.prediction_type == "sample"
    weights = noise_level_weights(scheduler.alphas_cumprod, 0.01)
    assert weights[0] == pytest.approx(1.0)
    assert weights[-1] == pytest.approx(0.01, abs=1e-4)
    assert bool((weights[1:] <= weights[:-1]).all())


def test_x0_loss_decreases_when_overfitting_one_window():
    model = tiny_model().train()
    config = model.config
    clean, heads = random_motion(config, batch=1), head_trajectory(batch=1)
    scheduler = motion_prior_scheduler(config)
    timestep = torch.tensor([50])
    noisy = scheduler.add_noise(clean, torch.randn(clean.shape, generator=torch.Generator().manual_seed(3)), timestep)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = model(noisy, timestep, heads, target=clean).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_model_outputs_are_invariant_to_world_yaw_and_shift_with_ours_only():
    heads = head_trajectory()
    moved, _ = world_transform(heads)
    x = random_motion(MotionPriorConfig(**TINY))
    timestep = torch.tensor([10, 400])
    for variant, invariant in (("ours", True), ("absolute", False)):
        model = tiny_model(head_conditioning=variant)
        with torch.no_grad():
            same = torch.allclose(model(x, timestep, heads).sample, model(x, timestep, moved).sample, atol=1e-5)
        assert same == invariant, variant
    # A floor shift with the matching floor height leaves "ours" unchanged.
    model = tiny_model()
    raised = heads.clone()
    raised[..., 2, 3] += 0.3
    with torch.no_grad():
        torch.testing.assert_close(model(x, timestep, raised, floor_height=torch.full((B,), 0.3)).sample,
                                   model(x, timestep, heads).sample, atol=1e-5, rtol=1e-5)


def test_sampler_gives_rotations_in_so3_places_the_head_and_is_equivariant():
    model = tiny_model()
    heads, offsets = head_trajectory(), skeleton_offsets()
    scheduler = motion_prior_scheduler(model.config, "ddim")
    scheduler.set_timesteps(30)
    assert len(scheduler.timesteps) == 30 and int(scheduler.timesteps[0]) == 999
    result = sample_motion(model, heads, offsets, num_inference_steps=4, generator=torch.Generator().manual_seed(0))
    rotations = result.local_rotations
    assert rotations.shape == (B, T, 22, 3, 3) and result.positions.shape == (B, T, 22, 3)
    torch.testing.assert_close(rotations.transpose(-1, -2) @ rotations, torch.eye(3).expand_as(rotations),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rotations), torch.ones(B, T, 22), atol=1e-5, rtol=0)
    # The skeleton's CPF lands on the observed head pose.
    world, positions = forward_kinematics(rotations, offsets, JOINT_PARENTS, result.root_translation)
    torch.testing.assert_close(positions, result.positions)
    cpf_position = positions[:, :, HEAD_INDEX] + (world[:, :, HEAD_INDEX] @ torch.tensor(CPF_OFFSET))
    torch.testing.assert_close(cpf_position, heads[..., :3, 3], atol=1e-5, rtol=0)
    torch.testing.assert_close(world[:, :, HEAD_INDEX] @ torch.tensor(CPF_ROTATION), heads[..., :3, :3], atol=1e-5,
                               rtol=0)
    # World yaw + shift: the same body rotations and contacts, the joints moved rigidly with the head.
    moved, g = world_transform(heads)
    again = sample_motion(model, moved, offsets, num_inference_steps=4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(again.local_rotations[:, :, 1:], rotations[:, :, 1:], atol=1e-4, rtol=0)
    torch.testing.assert_close(again.contacts, result.contacts, atol=1e-4, rtol=0)
    torch.testing.assert_close(again.positions, result.positions @ g[:3, :3].T + g[:3, 3], atol=1e-4, rtol=0)


def test_place_root_from_head_recovers_a_known_pelvis():
    offsets = skeleton_offsets()
    generator = torch.Generator().manual_seed(5)
    local = roma.rotvec_to_rotmat(0.4 * torch.randn(1, T, 22, 3, generator=generator, dtype=torch.float64))
    translation = torch.randn(1, T, 3, generator=generator, dtype=torch.float64)
    world, positions = forward_kinematics(local, offsets.double(), JOINT_PARENTS, translation)
    heads = torch.eye(4, dtype=torch.float64).repeat(1, T, 1, 1)
    heads[..., :3, :3] = world[:, :, HEAD_INDEX] @ torch.tensor(CPF_ROTATION, dtype=torch.float64)
    heads[..., :3, 3] = positions[:, :, HEAD_INDEX] + world[:, :, HEAD_INDEX] @ torch.tensor(CPF_OFFSET,
                                                                                          dtype=torch.float64)
    placed, root, placed_positions = place_root_from_head(local[:, :, 1:], offsets.double(), heads)
    torch.testing.assert_close(placed, local)
    torch.testing.assert_close(root, translation)
    torch.testing.assert_close(placed_positions, positions)


def test_save_load_and_auto_round_trip(tmp_path):
    model = tiny_model(head_conditioning="absolute_global_deltas")
    model.save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is MotionPriorConfig
    x, timestep, heads = random_motion(model.config), torch.tensor([1, 2]), head_trajectory()
    for loaded in (MotionPriorModel.from_pretrained(tmp_path), AutoModel.from_pretrained(tmp_path)):
        assert type(loaded) is MotionPriorModel and loaded.config.head_conditioning == "absolute_global_deltas"
        with torch.no_grad():
            torch.testing.assert_close(loaded.eval()(x, timestep, heads).sample, model(x, timestep, heads).sample,
                                       atol=0, rtol=0)


def test_forward_and_sampler_refuse_bad_inputs():
    model = tiny_model()
    x, timestep, heads = random_motion(model.config), torch.tensor([1, 2]), head_trajectory()
    bent = heads.clone()
    bent[0, 3, 0, 1] += 0.2  # not a rotation
    nan = heads.clone()
    nan[1, 2, 0, 3] = math.nan
    cases = [
        (dict(head_poses=bent), "head_poses"),
        (dict(head_poses=nan), "head_poses"),
        (dict(head_poses=heads[:, :-1]), "head_poses"),
        (dict(sample=x[:, :1], head_poses=heads[:, :1]), "head_poses"),  # one frame: too short
        (dict(sample=x[..., :-1]), "sample"),
        (dict(sample=x[0]), "sample"),
        (dict(timestep=torch.tensor([1, 1000])), "timestep"),
        (dict(timestep=torch.tensor([0.5, 0.5])), "timestep"),
        (dict(floor_height=torch.zeros(3)), "floor_height"),
        (dict(attention_mask=torch.full((B, T), 2)), "attention_mask"),
        (dict(target=x[:, :-1]), "target"),
    ]
    with torch.no_grad():
        for overrides, name in cases:
            inputs = {**dict(sample=x, timestep=timestep, head_poses=heads), **overrides}
            with pytest.raises(ValueError, match=name):
                model(**inputs)
    with pytest.raises(ValueError, match="head_poses"):
        sample_motion(model, bent, skeleton_offsets(), num_inference_steps=2)
    with pytest.raises(ValueError, match="at least 2 frames"):
        sample_motion(model, heads[:, :1], skeleton_offsets(), num_inference_steps=2)
    with pytest.raises(ValueError, match="num_inference_steps"):
        sample_motion(model, heads, skeleton_offsets(), num_inference_steps=0)
    with pytest.raises(ValueError, match="offsets"):
        sample_motion(model, heads, skeleton_offsets()[:-1], num_inference_steps=2)


def test_egoallo_schedule_and_its_update():
    times = egoallo_timesteps(30, 1000)
    assert times[:4] == [1000, 841, 784, 729] and times[-3:] == [4, 1, 0] and len(times) == 31
    with pytest.raises(ValueError, match="num_inference_steps"):
        egoallo_timesteps(40, 1000)
    model = tiny_model()
    heads, offsets = head_trajectory(), skeleton_offsets()
    outputs = [sample_motion(model, heads, offsets, num_inference_steps=5, schedule="egoallo", egoallo_quirk=quirk,
                             generator=torch.Generator().manual_seed(0)) for quirk in (False, True)]
    for result in outputs:
        rotations = result.local_rotations
        torch.testing.assert_close(torch.linalg.det(rotations), torch.ones(B, T, 22), atol=1e-5, rtol=0)
    assert not torch.allclose(outputs[0].motion, outputs[1].motion)  # the +0.1 changes the update
    with pytest.raises(ValueError, match="schedule"):
        sample_motion(model, heads, offsets, schedule="ddpm")


def test_training_loss_helper_returns_the_terms_and_backpropagates():
    model = tiny_model().train()
    clean = random_motion(model.config)
    terms = motion_prior_training_loss(model, clean, head_trajectory(), generator=torch.Generator().manual_seed(0))
    assert set(terms) == {"body", "contacts", "loss"} and all(torch.isfinite(v) for v in terms.values())
    terms["loss"].backward()
    assert model.body_encoder[0].weight.grad.abs().sum() > 0


def test_real_clip_when_cached_round_trips_through_the_head_placement_and_the_model():
    from whitebox_hf.data import load_motion_clip, motion_clip_names
    from whitebox_hf.data.fashion_mnist import DataUnavailableError

    try:
        motion_clip_names(fetch=False)
    except DataUnavailableError:
        pytest.skip("assimp BVH clips not cached (a data download, outside the install): run "
                    "`python -c 'from whitebox_hf.data import fetch_motion_bvh; fetch_motion_bvh()'`")
    clip = load_motion_clip("01_01", fetch=False)
    frames = slice(0, 32)
    rotations = clip.local_rotations[frames][None].float()
    heads = clip.head_poses[frames][None].float()
    # The pelvis placed from the clip's own head poses is the clip's pelvis: the CPF conventions agree with
    # whitebox_hf.data.motion.
    _, root, positions = place_root_from_head(rotations[:, :, 1:], clip.offsets.float(), heads)
    torch.testing.assert_close(root[0], clip.root_translation[frames].float(), atol=1e-5, rtol=0)
    torch.testing.assert_close(positions[0], clip.positions[frames].float(), atol=1e-5, rtol=0)
    model = tiny_model()
    clean = pack_motion(rotations[:, :, 1:], clip.contacts[frames][None])
    out = model(clean, torch.tensor([100]), heads, target=clean)
    assert out.sample.shape == (1, 32, 193) and torch.isfinite(out.loss)
