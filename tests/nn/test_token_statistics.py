"""TSSA against the book's formula, and the properties its linear-time form promises."""

import pytest
import torch

from whitebox_hf.nn import TokenStatisticsCache, TokenStatisticsSelfAttention
from whitebox_hf.nn.token_statistics import FusedCausalTokenStatistics, causal_token_statistics


def reference_tssa(coordinates, temperature, position_bias=None):
    """Non-causal TSSA on W = U_kᵀZ of shape (K, N, p), written term by term from spec §3.1-§3.2."""
    num_heads, num_tokens, head_dim = coordinates.shape
    squared = coordinates**2
    energy = squared.sum(1, keepdim=True)  # per channel, over tokens
    scores = (squared / energy).sum(-1) * temperature[:, None]  # (K, N)
    if position_bias is not None:
        scores = scores + head_dim * position_bias * temperature[:, None]
    memberships = torch.softmax(scores, dim=0)
    out = torch.empty_like(coordinates)
    for k in range(num_heads):
        pi = memberships[k]
        moment = (pi[:, None] * squared[k]).sum(0) / (pi.sum() + 1e-8)  # (p,)
        gate = 1.0 / (1.0 + moment)  # ∇f with d/ε² = 1
        out[k] = -pi[:, None] * coordinates[k] * gate
    return out, memberships


def project(layer, z):
    batch, n, d = z.shape
    return layer.projection(z).view(batch, n, layer.num_heads, layer.head_dim).transpose(1, 2)


def test_vision_tssa_matches_the_formula():
    torch.manual_seed(0)
    layer = TokenStatisticsSelfAttention(16, 4, projection_bias=True).eval()
    with torch.no_grad():
        layer.temperature.uniform_(0.5, 2.0)
    z = torch.randn(1, 9, 16)
    out, memberships = layer(z, output_attentions=True)
    expected_heads, expected_pi = reference_tssa(project(layer, z)[0], layer.temperature)
    expected = layer.output_projection(expected_heads.transpose(0, 1).reshape(1, 9, 16))
    torch.testing.assert_close(memberships[0], expected_pi)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)


def reference_causal_tssa(coordinates, temperature, position_bias):
    """Causal TSSA (spec §3.3) position by position, with explicit sums over j ≤ t instead of cumsums."""
    num_heads, num_tokens, head_dim = coordinates.shape
    squared = coordinates**2
    memberships = torch.empty(num_heads, num_tokens)
    out = torch.empty_like(coordinates)
    for t in range(num_tokens):
        energy = squared[:, : t + 1].sum(1)  # E_t: (K, p)
        scores = temperature * ((squared[:, t] / energy).sum(-1) + head_dim * position_bias[:, t])
        memberships[:, t] = torch.softmax(scores, dim=0)
        pi = memberships[:, : t + 1]  # Π_j for j ≤ t, each computed with its own E_j
        moment = (pi[..., None] * squared[:, : t + 1]).sum(1) / (pi.sum(1, keepdim=True) + 1e-8)
        out[:, t] = -memberships[:, t, None] * coordinates[:, t] / (1.0 + moment)
    return out, memberships


def test_causal_tssa_matches_the_formula_position_by_position():
    torch.manual_seed(0)
    causal = TokenStatisticsSelfAttention(16, 4, is_causal=True, max_position_embeddings=32).eval()
    with torch.no_grad():
        causal.position_bias.normal_()
        causal.temperature.uniform_(0.5, 2.0)
    z = torch.randn(1, 10, 16)
    out, memberships = causal(z, position_ids=torch.arange(10)[None], output_attentions=True)
    heads, expected_pi = reference_causal_tssa(project(causal, z)[0], causal.temperature, causal.position_bias)
    torch.testing.assert_close(memberships[0], expected_pi, atol=1e-6, rtol=1e-5)
    expected = causal.output_projection(heads.transpose(0, 1).reshape(1, 10, 16))
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)
    # At the last position of a prefix, the causal memberships equal the vision memberships of that prefix.
    _, vision_pi = reference_tssa(project(causal, z)[0], causal.temperature, causal.position_bias[:, :10])
    torch.testing.assert_close(memberships[0, :, -1], vision_pi[:, -1], atol=1e-6, rtol=1e-5)


def test_vision_tssa_is_permutation_equivariant():
    layer = TokenStatisticsSelfAttention(16, 4).eval()
    z = torch.randn(2, 11, 16)
    permutation = torch.randperm(11)
    torch.testing.assert_close(layer(z[:, permutation])[0], layer(z)[0][:, permutation], atol=1e-6, rtol=1e-5)


def test_recurrent_state_equals_full_pass():
    layer = TokenStatisticsSelfAttention(16, 4, is_causal=True, max_position_embeddings=32).eval()
    z = torch.randn(2, 12, 16)
    full, _ = layer(z, position_ids=torch.arange(12).expand(2, -1))
    cache = TokenStatisticsCache(1)
    layer.layer_idx = 0
    steps = [layer(z[:, t : t + 1], position_ids=torch.full((2, 1), t), past_key_values=cache)[0] for t in range(12)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-6, rtol=1e-5)
    assert cache.get_seq_length() == 12


def test_chunked_causal_pass_equals_one_chunk():
    layer = TokenStatisticsSelfAttention(16, 4, is_causal=True, max_position_embeddings=64).eval()
    with torch.no_grad():
        layer.position_bias.normal_()
    z = torch.randn(2, 50, 16)
    mask = torch.ones(2, 50)
    mask[1, :7] = 0
    positions = (mask.cumsum(-1) - 1).clamp_min(0).long()
    one_chunk, pi_one = layer(z, token_mask=mask, position_ids=positions, output_attentions=True)
    layer.chunk_size = 8  # 7 chunks, the last one partial
    chunked, pi_chunked = layer(z, token_mask=mask, position_ids=positions, output_attentions=True)
    torch.testing.assert_close(chunked, one_chunk, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(pi_chunked, pi_one, atol=1e-6, rtol=1e-5)


def _record_dtypes(layer, method_name):
    """Wrap ``layer.<method_name>`` (a mixing step) to record the dtypes of what goes in and what comes out."""
    original, seen = getattr(layer, method_name), []

    def spy(coordinates, *args):
        result = original(coordinates, *args)
        carry = result[2] if len(result) > 2 else ()
        seen.append({"coordinates": coordinates.dtype, "heads": result[0].dtype, "memberships": result[1].dtype,
                     "carry": [tensor.dtype for tensor in carry]})
        return result

    setattr(layer, method_name, spy)
    return seen


@pytest.mark.parametrize("is_causal", [False, True])
def test_statistics_stay_float32_under_bf16_autocast(is_causal):
    torch.manual_seed(0)
    layer = TokenStatisticsSelfAttention(16, 4, is_causal=is_causal, max_position_embeddings=4096, layer_idx=0).eval()
    z, positions = torch.randn(1, 4096, 16), torch.arange(4096)[None]
    reference, _ = layer(z, position_ids=positions)
    seen = _record_dtypes(layer, "_causal_mixing" if is_causal else "_vision_mixing")
    cache = TokenStatisticsCache(1) if is_causal else None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low, memberships = layer(z, position_ids=positions, past_key_values=cache, output_attentions=True)
    # The projections run in bf16 under autocast (so does the output); the statistics W = U_kᵀZ, the memberships
    # Π, the gated heads and the running sums carried between chunks and kept in the cache are float32.
    assert low.dtype == torch.bfloat16 and memberships.dtype == torch.float32
    assert len(seen) == (4 if is_causal else 1)  # chunk_size 1024: four causal chunks
    for record in seen:
        assert record["coordinates"] == record["heads"] == record["memberships"] == torch.float32, record
        assert record["carry"] == ([torch.float32] * 3 if is_causal else []), record
    if is_causal:
        state = cache.layers[0]
        assert [state.energy.dtype, state.weighted_moment.dtype, state.mass.dtype] == [torch.float32] * 3
    # Only the two projections run in bf16: the error stays at bf16's resolution, not growing with N.
    assert (low.float() - reference).abs().max() < 0.05 * reference.abs().max()


def test_bad_construction_arguments():
    with pytest.raises(ValueError, match="num_heads"):
        TokenStatisticsSelfAttention(16, 5)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        TokenStatisticsSelfAttention(16, 4, is_causal=True)
    with pytest.raises(ValueError, match="chunk_size"):
        TokenStatisticsSelfAttention(16, 4, chunk_size=0)


def _causal_layer(hidden_size=16, num_heads=4, max_positions=64, chunk_size=1024, dtype=torch.float32):
    torch.manual_seed(0)
    layer = TokenStatisticsSelfAttention(
        hidden_size, num_heads, is_causal=True, max_position_embeddings=max_positions, chunk_size=chunk_size
    ).to(dtype)
    with torch.no_grad():
        layer.position_bias.normal_()
        layer.temperature.uniform_(0.5, 2.0)
    return layer


def test_fused_causal_statistics_equal_the_reference_formula_forward_and_gradients():
    """The in-place, recomputing `FusedCausalTokenStatistics` against the out-of-place `causal_token_statistics`
    that autograd differentiates, with a carry from earlier tokens and padding."""
    torch.manual_seed(0)
    coordinates = torch.randn(2, 4, 3, 9)
    real = torch.ones(2, 1, 9)
    real[1, :, :2] = 0
    coordinates = coordinates * real[:, :, None]
    bias, temperature = torch.randn(2, 4, 9), torch.rand(4) + 0.5
    carry = (torch.rand(2, 4, 3) + 0.1, torch.rand(2, 4, 3), torch.rand(2, 4) + 0.5)
    leaves = [t.clone().requires_grad_() for t in (coordinates, bias, temperature, *carry)]
    reference = causal_token_statistics(leaves[0], real, leaves[1], leaves[2], tuple(leaves[3:]))
    reference = [reference[0], reference[1], *reference[2]]
    fused_leaves = [t.detach().clone().requires_grad_() for t in leaves]
    fused = FusedCausalTokenStatistics.apply(fused_leaves[0], real, *fused_leaves[1:], True)
    for got, want in zip(fused, reference):
        torch.testing.assert_close(got, want, atol=0, rtol=0)  # same operations, same order: the same values
    weights = [torch.randn_like(t) for t in reference]
    grads = torch.autograd.grad(sum((w * t).sum() for w, t in zip(weights, reference)), leaves)
    fused_grads = torch.autograd.grad(sum((w * t).sum() for w, t in zip(weights, fused)), fused_leaves)
    for got, want in zip(fused_grads, grads):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_fused_causal_statistics_pass_gradcheck_in_float64():
    torch.manual_seed(0)
    inputs = [torch.randn(1, 2, 2, 5, dtype=torch.float64), torch.randn(1, 2, 5, dtype=torch.float64),
              torch.rand(2, dtype=torch.float64) + 0.5, torch.rand(1, 2, 2, dtype=torch.float64) + 0.1,
              torch.rand(1, 2, 2, dtype=torch.float64), torch.rand(1, 2, dtype=torch.float64) + 0.5]
    inputs = [t.requires_grad_() for t in inputs]

    def fused(coordinates, bias, temperature, energy, weighted, mass):
        return FusedCausalTokenStatistics.apply(coordinates, None, bias, temperature, energy, weighted, mass, True)

    assert torch.autograd.gradcheck(fused, inputs)


def test_causal_layer_gradients_equal_the_plain_autograd_path_across_chunks():
    """Module level: parameter and input gradients of the fused, chunked layer equal those of the plain autograd
    path (`causal_token_statistics` chained over the same chunks), which active gate dropout selects."""
    layer = _causal_layer(chunk_size=4)
    z = torch.randn(2, 11, 16, requires_grad=True)
    mask = torch.ones(2, 11)
    mask[0, :3] = 0
    positions = (mask.cumsum(-1) - 1).clamp_min(0).long()
    weight = torch.randn(2, 11, 16)

    def gradients():
        output, _ = layer(z, token_mask=mask, position_ids=positions)
        return output, torch.autograd.grad((output * weight).sum(), [z, *layer.parameters()])

    layer.train()
    fused_out, fused_grads = gradients()
    layer.gate_dropout.p = 1e-12  # selects the plain path; a mask dropping nothing at this rate
    plain_out, plain_grads = gradients()
    torch.testing.assert_close(fused_out, plain_out, atol=1e-6, rtol=1e-5)
    for got, want in zip(fused_grads, plain_grads):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_causal_tssa_output_at_t_ignores_later_inputs():
    layer = _causal_layer(chunk_size=4).eval()
    z = torch.randn(1, 13, 16, requires_grad=True)
    output, _ = layer(z, position_ids=torch.arange(13)[None])
    t = 6
    (gradient,) = torch.autograd.grad(output[0, t].sum(), z)
    assert gradient[0, t + 1 :].abs().max() == 0
    assert gradient[0, : t + 1].abs().max() > 0
    changed = z.detach().clone()
    changed[0, t + 1 :] = torch.randn(13 - t - 1, 16)
    with torch.no_grad():
        again, _ = layer(changed, position_ids=torch.arange(13)[None])
    torch.testing.assert_close(again[0, : t + 1], output.detach()[0, : t + 1], atol=0, rtol=0)


def test_causal_tssa_inference_buffer_equals_the_autograd_path_in_bf16():
    """Without autograd the chunks are written into one bf16 buffer; with it they are concatenated: same values."""
    layer = _causal_layer(chunk_size=8, dtype=torch.bfloat16).eval()
    z = torch.randn(2, 30, 16, dtype=torch.bfloat16)
    positions = torch.arange(30).expand(2, -1)
    with torch.no_grad():
        buffered, _ = layer(z, position_ids=positions)
    concatenated, _ = layer(z, position_ids=positions)
    assert buffered.dtype == torch.bfloat16
    torch.testing.assert_close(buffered, concatenated.detach(), atol=0, rtol=0)
