"""Self-supervised and multimodal objectives: formulas, invariances, and what must not receive gradients."""

import copy
import math

import pytest
import torch
from torch import nn

from whitebox_hf.objectives import (
    DINOHead,
    DINOLoss,
    clamp_logit_scale_,
    clip_loss,
    coding_rate,
    cosine_momentum,
    ema_update_,
    masked_patch_loss,
    random_patch_mask,
    simdino_loss,
)


def test_coding_rate_equals_the_direct_logdet_and_is_rotation_invariant():
    z = torch.randn(12, 5, dtype=torch.float64)
    eps = 0.3
    direct = 0.5 * torch.logdet(torch.eye(5, dtype=torch.float64) + 5 / (12 * eps**2) * z.T @ z)
    torch.testing.assert_close(coding_rate(z, eps), direct)
    rotation, _ = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64))
    torch.testing.assert_close(coding_rate(z @ rotation, eps), direct)
    # float32 through Cholesky agrees, and bf16 autocast does not lower the precision.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = coding_rate(z.float(), eps, dtype=torch.float32)
    torch.testing.assert_close(low.double(), direct, atol=1e-4, rtol=1e-5)


def test_coding_rate_bad_input():
    with pytest.raises(ValueError, match="two samples"):
        coding_rate(torch.randn(1, 4))
    with pytest.raises(ValueError, match="eps"):
        coding_rate(torch.randn(3, 4), eps=0.0)
    with pytest.raises(ValueError, match="dtype"):
        coding_rate(torch.randn(3, 4), dtype=torch.bfloat16)


def views(batch=8, dim=16, count=4, requires_grad=False):
    return [torch.randn(batch, dim, requires_grad=requires_grad) for _ in range(count)]


def test_simdino_loss_matches_its_definition():
    students, teachers = views(count=4), views(count=2)
    out = simdino_loss(students, teachers, eps=0.05)
    s = [nn.functional.normalize(v, dim=-1) for v in students]
    t = [nn.functional.normalize(v, dim=-1) for v in teachers]
    cosines = [(t[i] * s[j]).sum(-1).mean() for i in range(2) for j in range(4) if j != i]
    assert len(cosines) == 2 * 4 - 2
    alignment = torch.stack(cosines).mean()
    rates = []
    for i in range(2):
        z = ((s[i] + t[i]) / 2).double()
        rates.append(0.5 * torch.logdet(torch.eye(16, dtype=torch.float64) + 16 / (8 * 0.05) * z.T @ z))
    expansion = torch.stack(rates).mean().float()
    gamma = 1 / 8 + 1 / 16
    torch.testing.assert_close(out.alignment, alignment)
    torch.testing.assert_close(out.expansion, expansion)
    assert out.gamma == pytest.approx(gamma)
    torch.testing.assert_close(out.loss, -alignment - gamma * expansion)
    assert out.loss < 0  # negative by construction


def test_no_gradient_reaches_the_teacher():
    students, teachers = views(count=3, requires_grad=True), views(count=2, requires_grad=True)
    simdino_loss(students, teachers).loss.backward()
    assert all(v.grad is not None for v in students)
    assert all(v.grad is None for v in teachers)
    dino = DINOLoss(num_prototypes=16)
    students, teachers = views(count=3, requires_grad=True), views(count=2, requires_grad=True)
    dino(students, teachers).backward()
    assert all(v.grad is None for v in teachers) and students[2].grad is not None


def test_simdino_bad_input():
    with pytest.raises(ValueError, match="teacher_views"):
        simdino_loss(views(dim=16), views(dim=8, count=2))
    with pytest.raises(ValueError, match="two samples"):
        simdino_loss(views(batch=1), views(batch=1, count=2))
    with pytest.raises(ValueError, match="eps"):
        simdino_loss(views(), views(count=2), eps=0.0)
    with pytest.raises(ValueError, match="same"):
        simdino_loss([torch.randn(8, 16), torch.randn(8, 15)], views(count=2))


def test_ema_update_is_exact_and_momentum_follows_a_cosine():
    student = nn.Linear(4, 3)
    teacher = copy.deepcopy(student)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    before = {n: p.clone() for n, p in teacher.named_parameters()}
    ema_update_(teacher, student, 0.9)
    for name, p in teacher.named_parameters():
        torch.testing.assert_close(p, 0.9 * before[name] + 0.1 * dict(student.named_parameters())[name])
    assert cosine_momentum(0, 100, 0.996) == pytest.approx(0.996)
    assert cosine_momentum(50, 100, 0.996) == pytest.approx(0.998)
    assert cosine_momentum(100, 100, 0.996) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="momentum"):
        ema_update_(teacher, student, 1.5)
    with pytest.raises(ValueError, match="same parameters"):
        ema_update_(nn.Linear(4, 3, bias=False), student, 0.9)


def test_dino_head_and_loss():
    head = DINOHead(8, num_prototypes=32, hidden_dim=16, bottleneck_dim=4)
    out = head(torch.randn(5, 8))
    assert out.shape == (5, 32)
    # Weight-normalised last layer with gain fixed at 1: every prototype has unit norm and cannot grow.
    weight = head.last_layer.weight
    torch.testing.assert_close(weight.norm(dim=1), torch.ones(32))
    assert not head.last_layer.parametrizations.weight.original0.requires_grad
    assert DINOHead(8, num_prototypes=0, hidden_dim=16, bottleneck_dim=4)(torch.randn(5, 8)).shape == (5, 4)

    loss = DINOLoss(num_prototypes=32, teacher_temperature=0.07, warmup_teacher_temperature=0.04, warmup_steps=10)
    assert loss.teacher_temperature_at(0) == pytest.approx(0.04)
    assert loss.teacher_temperature_at(5) == pytest.approx(0.055)
    assert loss.teacher_temperature_at(20) == pytest.approx(0.07)
    teachers, students = views(batch=6, dim=32, count=2), views(batch=6, dim=32, count=4)
    value = loss(students, teachers, step=20)

    def reference(center, temperature):  # DINO: mean over (teacher view i, student view j ≠ i) of H(P_t, P_s)
        terms = [-(torch.softmax((t - center) / temperature, -1) * torch.log_softmax(s / 0.1, -1)).sum(-1).mean()
                 for i, t in enumerate(teachers) for j, s in enumerate(students) if j != i]
        assert len(terms) == 2 * 4 - 2
        return torch.stack(terms).mean()

    torch.testing.assert_close(value, reference(torch.zeros(1, 32), 0.07))
    expected_center = 0.1 * torch.cat(teachers).mean(0, keepdim=True)
    torch.testing.assert_close(loss.center, expected_center)
    # The next call centres the teacher with the updated centre, at the warm-up temperature of its step.
    torch.testing.assert_close(loss(students, teachers, step=5), reference(expected_center, 0.055))
    with pytest.raises(ValueError, match="32"):
        loss(views(batch=6, dim=16, count=3), views(batch=6, dim=16, count=2))


def test_clip_loss_and_logit_scale_clamp():
    torch.manual_seed(0)
    images = torch.randn(6, 8)
    scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    # Perfectly matched pairs at a high temperature give a loss near zero; shuffled texts give a large one.
    matched = clip_loss(images, images * 3.0, torch.tensor(math.log(100.0)))
    shuffled = clip_loss(images, images.roll(1, 0), torch.tensor(math.log(100.0)))
    assert matched < 0.1 < shuffled
    # Symmetric: swapping the towers gives the same loss.
    texts = torch.randn(6, 8)
    torch.testing.assert_close(clip_loss(images, texts, scale), clip_loss(texts, images, scale))
    with torch.no_grad():
        scale.fill_(7.0)
    clamp_logit_scale_(scale)
    assert scale.item() == pytest.approx(math.log(100.0))
    with pytest.raises(ValueError, match="image_embeds"):
        clip_loss(torch.randn(6, 8), torch.randn(6, 7), scale)


def test_masked_patch_loss_ignores_visible_patches():
    torch.manual_seed(0)
    mask = random_patch_mask(3, 16, 0.75)
    assert mask.shape == (3, 16) and torch.all(mask.sum(1) == 12)
    target = torch.randn(3, 16, 12)
    predicted = target.clone()
    predicted[~mask] += 100.0  # errors on visible patches must not count
    assert masked_patch_loss(predicted, target, mask).item() == 0.0
    predicted[mask] += 1.0
    assert masked_patch_loss(predicted, target, mask).item() == pytest.approx(1.0)
    normalized = masked_patch_loss(target, target, mask, normalize_target=True)
    assert normalized > 0  # the raw patch is no longer the target
    with pytest.raises(ValueError, match="mask_ratio"):
        random_patch_mask(2, 16, 1.0)
    with pytest.raises(ValueError, match="mask_ratio"):
        random_patch_mask(2, 16, -0.1)
    with pytest.raises(ValueError, match="mask"):
        masked_patch_loss(target, target, torch.zeros(3, 16, dtype=torch.bool))
