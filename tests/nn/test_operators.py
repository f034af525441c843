import math

import pytest
import torch
from torch.nn import functional as F

from whitebox_hf.nn import (
    ISTA,
    MultiHeadSubspaceSelfAttention,
    OvercompleteDictionaryLearning,
    coding_rate,
    interpolate_position_embedding,
)


# ---------------------------------------------------------------- MSSA
def test_mssa_matches_the_shared_projection_formula():
    attention = MultiHeadSubspaceSelfAttention(hidden_size=12, num_heads=3, head_dim=4).eval()
    z = torch.randn(2, 5, 12)
    out, probabilities = attention(z, output_attentions=True)

    u = attention.subspace_projection.weight.view(3, 4, 12)  # U_k stacked: (K, p, d)
    heads = []
    for k in range(3):
        w = z @ u[k].T  # (B, N, p): coordinates in subspace k, used as query, key AND value
        a = torch.softmax(w @ w.transpose(1, 2) / math.sqrt(4), dim=-1)
        heads.append(a @ w)
        torch.testing.assert_close(probabilities[:, k], a)
    expected = attention.output_projection(torch.cat(heads, dim=-1))
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("is_causal", [False, True])
def test_mssa_sdpa_equals_eager(is_causal):
    attention = MultiHeadSubspaceSelfAttention(16, 4, 4, is_causal=is_causal).eval()
    z = torch.randn(3, 7, 16)
    sdpa, none = attention(z, attn_implementation="sdpa")
    eager, _ = attention(z, attn_implementation="eager")
    with_probabilities, probabilities = attention(z, output_attentions=True)
    assert none is None
    torch.testing.assert_close(sdpa, eager, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(sdpa, with_probabilities, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(3, 4, 7))


def test_causal_mssa_ignores_future_tokens():
    attention = MultiHeadSubspaceSelfAttention(16, 4, 4, is_causal=True).eval()
    z = torch.randn(1, 6, 16)
    longer = torch.cat([z, torch.randn(1, 3, 16)], dim=1)
    out, probabilities = attention(z, output_attentions=True)
    out_longer, _ = attention(longer)
    torch.testing.assert_close(out, out_longer[:, :6], atol=1e-6, rtol=1e-5)
    assert torch.all(probabilities.triu(1) == 0)


def test_mssa_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_heads"):
        MultiHeadSubspaceSelfAttention(16, 0, 4)
    attention = MultiHeadSubspaceSelfAttention(16, 4, 4)
    with pytest.raises(ValueError, match="attn_implementation"):
        attention(torch.randn(1, 3, 16), attn_implementation="flash")


# ---------------------------------------------------------------- ISTA
@pytest.mark.parametrize("num_tokens", [1, 40])  # few tokens: two GEMMs; many tokens: the folded single GEMM
def test_ista_is_one_nonnegative_proximal_step(num_tokens):
    ista = ISTA(8, step_size=0.1, lambd=0.1)
    y = torch.randn(4, num_tokens, 8)
    d = ista.dictionary
    # Column form: ReLU(y − η Dᵀ(D y − y) − η λ), written with tokens as rows.
    expected = F.relu(y - 0.1 * ((y @ d.T - y) @ d) - 0.1 * 0.1)
    out = ista(y)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert torch.all(out >= 0)
    assert (out == 0).any(), "the threshold must produce exact zeros"
    out.sum().backward()
    assert ista.dictionary.grad is not None and ista.dictionary.grad.abs().sum() > 0


def _unfused_ista(ista, y):
    """The folded-GEMM step as it was written before the fusion: GEMM, then a threshold pass, then ReLU."""
    return F.relu(F.linear(y, ista.folded_weight()) - ista.step_size * ista.lambd)


def test_fused_ista_equals_the_separate_threshold_and_relu_in_fp32_forward_and_backward():
    torch.manual_seed(0)
    ista = ISTA(24, step_size=0.1, lambd=0.5)
    y = torch.randn(3, 40, 24, requires_grad=True)
    weight = torch.randn(3, 40, 24)
    fused = ista(y)
    unfused = _unfused_ista(ista, y)
    torch.testing.assert_close(fused, unfused, atol=1e-6, rtol=1e-5)
    assert (fused == 0).float().mean() > 0.2  # the threshold is active: the comparison covers the ReLU's kink
    fused_grads = torch.autograd.grad((fused * weight).sum(), [y, ista.dictionary])
    unfused_grads = torch.autograd.grad((unfused * weight).sum(), [y, ista.dictionary])
    for got, want in zip(fused_grads, unfused_grads):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["cast", "autocast"])
def test_fused_ista_stays_within_bf16_resolution_of_the_fp32_formula(mode):
    torch.manual_seed(0)
    ista = ISTA(24, step_size=0.1, lambd=0.5)
    y = torch.randn(3, 40, 24)
    reference = _unfused_ista(ista, y)
    if mode == "cast":
        low = ista.to(torch.bfloat16)(y.to(torch.bfloat16))
    else:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = ista(y)
    assert low.dtype == torch.bfloat16
    # bf16 keeps 8 mantissa bits: errors of a few 2⁻⁸ of the output's scale, not more.
    assert (low.float() - reference).abs().max() < 4 * 2**-8 * reference.abs().max()
    assert torch.all(low >= 0)


def test_ista_reuses_its_folded_matrix_without_grad_and_forms_it_afresh_when_the_dictionary_changes():
    torch.manual_seed(0)
    ista = ISTA(16, step_size=0.1, lambd=0.1)
    y = torch.randn(2, 40, 16)  # many tokens: the folded path
    with torch.no_grad():
        first = ista(y)
        cached = ista._folded_weight_cache[1]
        assert ista(y).equal(first) and ista._folded_weight_cache[1] is cached  # formed once, reused
    with torch.inference_mode():
        assert ista(y).equal(first)
    # Under autograd nothing is cached: the gradient must reach D.
    ista._folded_weight_cache = None
    out = ista(y)
    assert ista._folded_weight_cache is None
    torch.testing.assert_close(out, first, atol=0, rtol=0)
    # An optimizer step changes D in place: the next no-grad forward sees the new dictionary.
    with torch.no_grad():
        ista(y)
        stale = ista._folded_weight_cache[1].clone()
    out.square().sum().backward()
    torch.optim.SGD(ista.parameters(), lr=0.5).step()
    with torch.no_grad():
        after_step = ista(y)
        assert not ista._folded_weight_cache[1].equal(stale)
        torch.testing.assert_close(ista._folded_weight_cache[1], ista.folded_weight(), atol=0, rtol=0)
    torch.testing.assert_close(after_step, _unfused_ista(ista, y).detach(), atol=1e-6, rtol=1e-5)
    # load_state_dict copies in place, a new step size or dtype changes the key: never a stale matrix.
    other = ISTA(16, step_size=0.1, lambd=0.1)
    ista.load_state_dict(other.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(ista(y), other(y), atol=0, rtol=0)
        ista.step_size = other.step_size = 0.3
        torch.testing.assert_close(ista(y), other(y).detach(), atol=0, rtol=0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = ista(y)
        assert ista._folded_weight_cache[1].dtype == torch.bfloat16 and low.dtype == torch.bfloat16
        assert ista(y).dtype == torch.float32 and ista._folded_weight_cache[1].dtype == torch.float32


def test_ista_threshold_is_subtracted_and_sparsity_grows_with_lambda():
    y = torch.randn(64, 16)
    weak, strong = ISTA(16, lambd=0.0), ISTA(16, lambd=5.0)
    strong.dictionary.data.copy_(weak.dictionary.data)
    with torch.no_grad():
        weak_out, strong_out = weak(y), strong(y)
    # A larger λ removes η·Δλ from every coordinate before the ReLU: never larger, strictly sparser.
    assert torch.all(strong_out <= weak_out + 1e-6)
    assert (strong_out == 0).float().mean() > (weak_out == 0).float().mean()
    with torch.no_grad():
        zero_dictionary = ISTA(16, step_size=0.5, lambd=0.2)
        zero_dictionary.dictionary.zero_()
        torch.testing.assert_close(zero_dictionary(y), F.relu(y - 0.1))


def test_ista_rejects_bad_arguments():
    with pytest.raises(ValueError, match="hidden_size"):
        ISTA(0)
    with pytest.raises(ValueError, match="lambd"):
        ISTA(4, lambd=-1.0)


# ---------------------------------------------------------------- ODL
def test_odl_runs_two_steps_from_zero_then_decodes_with_a_separate_dictionary():
    odl = OvercompleteDictionaryLearning(6, expansion=4, num_steps=2, step_size=0.1, lambd=0.1)
    assert odl.encoder_dictionary.shape == (24, 6) and odl.decoder_dictionary.shape == (6, 24)
    y = torch.randn(3, 6)
    d = odl.encoder_dictionary.T  # D ∈ R^{d×s}
    d1 = odl.decoder_dictionary  # D₁ ∈ R^{d×s}
    a1 = F.relu(0.1 * y @ d - 0.01)
    a2 = F.relu(a1 - 0.1 * ((a1 @ d.T - y) @ d) - 0.01)
    torch.testing.assert_close(odl.sparse_code(y), a2)
    torch.testing.assert_close(odl(y), a2 @ d1.T)
    assert torch.all(odl.sparse_code(y) >= 0)


def test_odl_step_count_matters():
    one, three = (OvercompleteDictionaryLearning(6, num_steps=n) for n in (1, 3))
    three.load_state_dict(one.state_dict())
    y = torch.randn(3, 6)
    assert not torch.allclose(one(y), three(y))


# ---------------------------------------------------------------- coding rate
def test_coding_rate_matches_formula_and_both_gram_forms():
    torch.manual_seed(1)
    for n, d in [(10, 4), (4, 10)]:
        z = torch.randn(n, d, dtype=torch.float64)
        eps = 0.5
        expected = 0.5 * torch.logdet(torch.eye(d, dtype=torch.float64) + d / (n * eps**2) * z.T @ z)
        torch.testing.assert_close(coding_rate(z, eps), expected)


def test_coding_rate_properties():
    assert coding_rate(torch.zeros(5, 3)).item() == pytest.approx(0.0)
    z = torch.randn(2, 8, 4)
    batched = coding_rate(z)
    assert batched.shape == (2,)
    torch.testing.assert_close(batched[1], coding_rate(z[1]))
    assert coding_rate(2 * z[0]) > coding_rate(z[0]) > 0  # spreading features raises the rate
    with pytest.raises(ValueError, match="features"):
        coding_rate(torch.randn(3))
    with pytest.raises(ValueError, match="eps"):
        coding_rate(z, eps=0.0)
    with pytest.raises(TypeError, match="features"):
        coding_rate([[1.0]])


# ---------------------------------------------------------------- embeddings
def test_position_interpolation_is_identity_at_native_size_and_resizes_otherwise():
    table = torch.randn(1, 1 + 16, 8)
    assert interpolate_position_embedding(table, 4, 4) is table
    resized = interpolate_position_embedding(table, 3, 5)
    assert resized.shape == (1, 1 + 15, 8)
    torch.testing.assert_close(resized[:, :1], table[:, :1])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("is_causal", [False, True])
def test_low_precision_cpu_attention_takes_the_matmul_route_and_matches_fp32(dtype, is_causal, monkeypatch):
    """bf16/fp16 on CPU with few keys: "sdpa" computes matmul-softmax-matmul (faster than PyTorch's CPU flash
    kernel there) and stays within the dtype's resolution of the fp32 attention, forward and backward."""
    from whitebox_hf.nn import attention

    calls = []
    real_sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(attention.F, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append(a[0].shape) or real_sdpa(*a, **k))
    generator = torch.Generator().manual_seed(0)
    q32 = torch.randn(2, 3, 50, 16, generator=generator, requires_grad=True)
    q = q32.detach().to(dtype).requires_grad_()
    low, _ = attention.attend(q, q, q, None, 0.25, 0.0, is_causal, "sdpa", False)
    reference, _ = attention.attend(q32, q32, q32, None, 0.25, 0.0, is_causal, "sdpa", False)
    assert len(calls) == 1 and calls[0][-2] == 50  # only the fp32 call went to SDPA
    assert low.dtype == dtype
    torch.testing.assert_close(low.float(), reference, atol=2e-2, rtol=2e-2)
    low.float().square().sum().backward()
    reference.square().sum().backward()
    torch.testing.assert_close(q.grad.float(), q32.grad, atol=6e-2, rtol=6e-2)


def test_low_precision_cpu_attention_keeps_sdpa_for_long_sequences(monkeypatch):
    from whitebox_hf.nn import attention

    calls = []
    real_sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(attention.F, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append(a[1].shape[-2]) or real_sdpa(*a, **k))
    limit = attention.LOW_PRECISION_CPU_MATMUL_MAX_KEYS
    for keys in (limit, limit + 1):
        q = torch.randn(1, 2, keys, 8).bfloat16()
        attention.attend(q, q, q, None, 0.3, 0.0, True, "sdpa", False)
    assert calls == [limit + 1]
    assert attention.uses_low_precision_cpu_matmul(torch.zeros(1, 1, 4, 8, dtype=torch.bfloat16),
                                                   torch.zeros(1, 1, 4, 8, dtype=torch.bfloat16))
    assert not attention.uses_low_precision_cpu_matmul(torch.zeros(1, 1, 4, 8), torch.zeros(1, 1, 4, 8))
