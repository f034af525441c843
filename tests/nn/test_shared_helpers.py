"""The helpers every image model shares (one copy each, in whitebox_hf.nn / whitebox_hf.utils): the patch
layout, the 2-D sin-cos position table and the positive-integer check."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from whitebox_hf.nn import LinearPatchEmbedding, patchify, sincos_position_embedding_2d, unpatchify
from whitebox_hf.utils.validation import check_finite_tensor, check_positive_int

shapes = st.tuples(
    st.integers(1, 3),  # batch
    st.integers(1, 4),  # channels
    st.integers(1, 4),  # patch size
    st.integers(1, 5),  # grid height
    st.integers(1, 5),  # grid width
)


@settings(max_examples=40, deadline=None)
@given(shapes, st.integers(0, 2**31 - 1))
def test_unpatchify_inverts_patchify(shape, seed):
    batch, channels, p, grid_h, grid_w = shape
    images = torch.randn(batch, channels, grid_h * p, grid_w * p, generator=torch.Generator().manual_seed(seed))
    patches = patchify(images, p)
    assert patches.shape == (batch, grid_h * grid_w, p * p * channels)
    assert torch.equal(unpatchify(patches, p, channels, (grid_h, grid_w)), images)
    assert torch.equal(patchify(unpatchify(patches, p, channels, (grid_h, grid_w)), p), patches)


@settings(max_examples=20, deadline=None)
@given(shapes)
def test_patchify_matches_unfold_in_row_col_channel_order(shape):
    batch, channels, p, grid_h, grid_w = shape
    images = torch.randn(batch, channels, grid_h * p, grid_w * p)
    # torch's unfold: (B, C·p·p, L) with values in (channel, row, col) order; ours is (row, col, channel).
    unfolded = F.unfold(images, kernel_size=p, stride=p).transpose(1, 2)
    reference = unfolded.reshape(batch, grid_h * grid_w, channels, p * p).transpose(2, 3).reshape(batch, -1,
                                                                                                 p * p * channels)
    assert torch.equal(patchify(images, p), reference)


def test_unpatchify_defaults_to_a_square_grid_and_checks_shapes():
    images = torch.randn(2, 3, 8, 8)
    assert torch.equal(unpatchify(patchify(images, 2), 2, 3), images)
    with pytest.raises(ValueError, match="not a square grid"):
        unpatchify(torch.zeros(1, 6, 12), 2, 3)
    with pytest.raises(ValueError, match="expected patch_size²·num_channels = 12"):
        unpatchify(torch.zeros(1, 4, 8), 2, 3)
    with pytest.raises(ValueError, match="does not hold 6 patches"):
        unpatchify(torch.zeros(1, 6, 12), 2, 3, (2, 2))
    with pytest.raises(ValueError, match="not divisible by patch_size=3"):
        patchify(torch.zeros(1, 1, 4, 6), 3)
    with pytest.raises(ValueError, match=r"\(batch, channels, height, width\)"):
        patchify(torch.zeros(4, 6), 2)


def test_linear_patch_embedding_projects_patchify_layout():
    torch.manual_seed(0)
    stem = LinearPatchEmbedding(num_channels=2, patch_size=2, hidden_size=8)
    images = torch.randn(3, 2, 4, 6)
    expected = stem.embedding_norm(stem.projection(stem.patch_norm(patchify(images, 2))))
    assert torch.equal(stem(images), expected)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 8).map(lambda k: 4 * k), st.integers(1, 5), st.integers(1, 5), st.integers(0, 2))
def test_sincos_table_follows_mae_channel_order(hidden_size, grid_h, grid_w, prefix):
    table = sincos_position_embedding_2d(hidden_size, grid_h, grid_w, num_prefix_tokens=prefix)
    assert table.shape == (1, prefix + grid_h * grid_w, hidden_size)
    assert table.dtype == torch.float32
    assert torch.equal(table[0, :prefix], torch.zeros(prefix, hidden_size))
    grid = table[0, prefix:].reshape(grid_h, grid_w, hidden_size)
    half = hidden_size // 2
    # MAE (facebookresearch/mae): the first half of the channels varies along the columns only, the second along
    # the rows only; each half is [sin(x·ω), cos(x·ω)] with ω_0 = 1.
    assert torch.equal(grid[:, :, :half], grid[:1, :, :half].expand_as(grid[:, :, :half]))
    assert torch.equal(grid[:, :, half:], grid[:, :1, half:].expand_as(grid[:, :, half:]))
    columns = torch.arange(grid_w, dtype=torch.float64)
    torch.testing.assert_close(grid[0, :, 0], columns.sin().float())
    torch.testing.assert_close(grid[0, :, hidden_size // 4], columns.cos().float())


def test_sincos_table_needs_a_multiple_of_four():
    with pytest.raises(ValueError, match="divisible by 4, got 6"):
        sincos_position_embedding_2d(6, 2, 2)


@pytest.mark.parametrize("value", [1, 7, 2**40])
def test_check_positive_int_accepts_positive_integers(value):
    check_positive_int("size", value)


@pytest.mark.parametrize("value", [0, -3, 2.0, True, "4", None])
def test_check_positive_int_names_argument_and_value(value):
    with pytest.raises(ValueError, match=rf"`size` must be a positive integer, got {value!r}"):
        check_positive_int("size", value)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 50), st.integers(0, 49), st.sampled_from([float("nan"), float("inf"), float("-inf"), None]),
       st.sampled_from([torch.float32, torch.float64, torch.bfloat16]))
def test_check_finite_tensor_refuses_exactly_the_tensors_holding_a_non_finite_value(size, where, bad, dtype):
    """The one-reduction fast path (a finite sum) must never let NaN or ±inf through."""
    value = torch.randn(size, dtype=torch.float64).to(dtype)
    if bad is not None:
        value[where % size] = bad
    if bad is None:
        check_finite_tensor("x", value)
    else:
        with pytest.raises(ValueError, match="`x` must be finite, got a tensor holding (nan|inf|-inf)"):
            check_finite_tensor("x", value)


def test_check_finite_tensor_accepts_finite_values_whose_sum_overflows():
    """Large finite values make the sum infinite: the exact element-wise test then decides, and accepts them."""
    big = torch.full((4,), torch.finfo(torch.float32).max)
    assert not torch.isfinite(big.sum())
    check_finite_tensor("x", big)
    check_finite_tensor("x", torch.tensor([torch.finfo(torch.float32).max, -torch.finfo(torch.float32).max, 1.0]))
    with pytest.raises(ValueError, match="must be finite"):  # +inf and -inf cancel to NaN in the sum: still caught
        check_finite_tensor("x", torch.tensor([float("inf"), float("-inf")]))
