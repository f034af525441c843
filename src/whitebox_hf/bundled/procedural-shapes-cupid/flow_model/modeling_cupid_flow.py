# Bundled from `whitebox_hf.models.cupid.modeling_cupid_flow` by whitebox_hf 0.1.0, with the whitebox_hf modules it imports (whitebox_hf.utils.validation, whitebox_hf.nn.sparse_coding, whitebox_hf.nn.embeddings, whitebox_hf.nn.attention, whitebox_hf.models.crate.masked_modeling, whitebox_hf.models.modeling_utils, whitebox_hf.models.validation, whitebox_hf.models.crate.configuration_crate, whitebox_hf.models.crate.modeling_crate, whitebox_hf.models.cupid.configuration_cupid_flow).
# Only import statements were edited (the package's own imports removed), so this file needs no whitebox_hf
# install. Do not edit by hand.
"""PyTorch Cupid stage-1 flow: a rectified-flow DiT over the occupancy + UV cube, cross-attending to CRATE image
tokens (spec threed_and_motion.md §2.1-2.3; cupid3d/Cupid ``cupid/trainers/flow_matching/flow_matching.py``, TRELLIS's
sparse-structure flow).

    cube (B, C, R, R, R) ─Conv3d(p, stride p)→ (R/p)³ tokens + position ─[AdaLN-zero self-attn, cross-attn(image
    tokens), AdaLN-zero MLP] ×L→ AdaLN → Linear → unpatchify → velocity (B, C, R, R, R)
    image (B, 3, H, W) ─CrateModel→ last_hidden_state ─LN → Linear→ image tokens; null condition: zero tokens
    1000·t ─sinusoidal → MLP→ timestep embedding (the AdaLN shifts, scales and gates)

The rectified-flow helpers (logit-normal t, the path and its target, the time shift) are functions of this module;
`CupidFlowModel.sample` is the Euler sampler with interval classifier-free guidance.
"""

from __future__ import annotations


# ---------------------------------------- whitebox_hf.utils.validation
import math



def reads_values(tensor) -> bool:
    """Whether a check may look at ``tensor``'s values: on CPU, and not inside a ``torch.compile`` trace."""
    import torch

    return tensor.device.type == "cpu" and not torch.compiler.is_compiling()


def check_positive_int(name: str, value) -> None:
    """``value`` must be an ``int`` ≥ 1; ``bool`` is refused although it subclasses ``int`` (``True`` as a size
    is a bug, not a 1)."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}")


def check_finite_float(name: str, value) -> None:
    """A float ``value`` must be finite (NaN or ±inf as a hyper-parameter turns every output into NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number, got {value!r}")


def check_tensor(name: str, value, ndim: int | None = None, shape_doc: str | None = None) -> None:
    """``value`` must be a ``torch.Tensor`` (of ``ndim`` dimensions, described by ``shape_doc``) with no empty
    dimension."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"`{name}` must have shape {shape_doc or f'of {ndim} dimensions'}, got {tuple(value.shape)}")
    if value.numel() == 0:
        raise ValueError(f"`{name}` is empty (shape {tuple(value.shape)}): at least one element is needed")


def check_floating_tensor(name: str, value) -> None:
    """A real floating dtype: integer images (0-255), bool and complex tensors are refused rather than cast."""
    if not value.is_floating_point():
        raise TypeError(
            f"`{name}` must be a floating-point tensor (e.g. torch.float32, values already normalised), got dtype "
            f"{value.dtype}; convert it explicitly (an image processor does)"
        )


def check_finite_tensor(name: str, value) -> None:
    """No NaN or ±inf (checked on CPU tensors only, see the module docstring)."""
    import torch

    if not reads_values(value):
        return
    # One reduction first: a sum is finite only when every element is (NaN and ±inf propagate through it), so the
    # common case costs one pass instead of the four of `isfinite` (==, abs, !=, and) plus `all`. A non-finite sum,
    # from a bad element or from finite values overflowing, falls through to the exact element-wise test.
    if value.is_floating_point() and bool(torch.isfinite(value.sum())):
        return
    finite = torch.isfinite(value)
    if not bool(finite.all()):
        bad = value[~finite].flatten()[0].item()
        raise ValueError(f"`{name}` must be finite, got a tensor holding {bad}")


def check_index_tensor(name: str, value, high: int, high_name: str, ignore_index: int | None = None,
                       long_only: bool = False) -> None:
    """Integer ids in ``[0, high)`` (``ignore_index`` allowed too) of dtype int64 or int32 (what an embedding
    lookup takes; ``long_only``: int64 alone, what a cross-entropy target takes); the range is checked on CPU tensors
    only."""
    import torch

    dtypes = (torch.int64,) if long_only else (torch.int64, torch.int32)
    if value.dtype not in dtypes:
        raise TypeError(f"`{name}` must hold integer ids of dtype {' or '.join(map(str, dtypes))}, got dtype "
                        f"{value.dtype}")
    if not reads_values(value) or value.numel() == 0:
        return
    valid = (value >= 0) & (value < high)
    if ignore_index is not None:
        valid |= value == ignore_index
    if not bool(valid.all()):
        bad = int(value[~valid].flatten()[0])
        allowed = f"[0, {high_name}={high})" + (f" or {ignore_index}" if ignore_index is not None else "")
        raise ValueError(f"`{name}` must lie in {allowed}, got {bad}")


def check_binary_mask(name: str, value) -> None:
    """A 0/1 mask: bool, integer or floating dtype whose values are exactly 0 or 1 (values on CPU only)."""
    import torch

    if value.is_complex():
        raise TypeError(f"`{name}` must be a bool, integer or float 0/1 mask, got dtype {value.dtype}")
    if value.dtype == torch.bool or not reads_values(value):
        return
    binary = (value == 0) | (value == 1)
    if not bool(binary.all()):
        bad = value[~binary].flatten()[0].item()
        raise ValueError(f"`{name}` must hold only 0 and 1 (1 = keep), got {bad}")


# ---------------------------------------- whitebox_hf.nn.sparse_coding
import math

import torch
from torch import nn
from torch.nn import functional as F




def _check_positive_float(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"`{name}` must be a positive float, got {value!r}")


class ISTA(nn.Module):
    """One non-negative ISTA step with a complete ``d×d`` dictionary, warm-started at ``a = y``.

        ISTA(y) = ReLU( y − η·Dᵀ(D y − y) − η·λ )

    The output *is* the sparse code (non-negative, many exact zeros) and replaces the token: the CRATE layer
    adds no residual around it.

    Args:
        hidden_size (`int`): token width ``d``.
        step_size (`float`, defaults to 0.1): ``η``.
        lambd (`float`, defaults to 0.1): ``λ``, the ℓ₁ weight.
    """

    def __init__(self, hidden_size: int, step_size: float = 0.1, lambd: float = 0.1):
        super().__init__()
        check_positive_int("hidden_size", hidden_size)
        _check_positive_float("step_size", float(step_size))
        if lambd < 0:
            raise ValueError(f"`lambd` must be non-negative, got {lambd!r}")
        self.step_size = float(step_size)
        self.lambd = float(lambd)
        # Stored like a Linear weight of shape (d, d): F.linear(a, D) computes D a for token rows a.
        self.dictionary = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self._folded_weight_cache: tuple[tuple, torch.Tensor] | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.dictionary, a=math.sqrt(5))

    def folded_weight(self) -> torch.Tensor:
        """The step is linear in ``y`` before the threshold: ``y − η·Dᵀ(D y − y) = (I + η·Dᵀ − η·DᵀD) y``.
        Returns that ``d×d`` matrix (in the layout `F.linear` expects)."""
        d = self.dictionary
        identity = torch.eye(d.shape[0], dtype=d.dtype, device=d.device)
        return torch.addmm(identity + self.step_size * d.t(), d.t(), d, alpha=-self.step_size)

    def inference_folded_weight(self) -> torch.Tensor:
        """`folded_weight`, formed once and reused while the dictionary is unchanged, when no gradient is taken.

        The folded matrix depends on the parameters only, yet forming it costs ``d³`` multiply-adds per layer and
        forward: at CRATE-T (d 384) with a batch of 8 images that is about 5 % of an inference forward. Under
        autograd (training, or anything needing the gradient of ``D``) and inside a ``torch.compile`` trace (which
        cannot guard on a Python-side cache) it is formed afresh. The cache key holds what changes the result: the
        dictionary's storage and in-place version counter (an optimizer step or ``load_state_dict`` bumps it),
        its dtype and device, the step size and the autocast dtype (under autocast the fold runs in bf16).
        """
        d = self.dictionary
        if torch.is_grad_enabled() or torch.compiler.is_compiling() or d.is_inference():
            return self.folded_weight()  # (an inference tensor has no version counter to key on)
        device_type = d.device.type
        autocast = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
        key = (d.data_ptr(), d._version, d.dtype, d.device, self.step_size, autocast)
        if self._folded_weight_cache is None or self._folded_weight_cache[0] != key:
            self._folded_weight_cache = (key, self.folded_weight())
        return self._folded_weight_cache[1]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_size = self.dictionary.shape[0]
        threshold = self.step_size * self.lambd
        if hidden_states.numel() // hidden_size > hidden_size:
            # Many tokens: one GEMM with the folded matrix (d³ to form it once, then d² per token instead of 2d²).
            # The threshold rides in the GEMM as a bias (added in its epilogue, not in a separate pass over the
            # tokens) and the ReLU runs in place on the GEMM's fresh output: two element-wise passes and one
            # (tokens, d) temporary fewer. ReLU's backward reads its output, which it overwrites by design.
            bias = self.dictionary.new_full((hidden_size,), -threshold)
            return F.relu(F.linear(hidden_states, self.inference_folded_weight(), bias), inplace=True)
        # Few tokens: forming DᵀD would cost more than applying D twice.
        reconstruction = F.linear(hidden_states, self.dictionary)  # D y
        gradient = F.linear(reconstruction - hidden_states, self.dictionary.t())  # Dᵀ(D y − y)
        return F.relu(hidden_states - self.step_size * gradient - threshold)


class OvercompleteDictionaryLearning(nn.Module):
    """ODL, the CRATE-α sparse-coding block with an overcomplete dictionary (book §8 "scaling white-box
    transformers"; UCSC-VLAA/CRATE-alpha).

    ``T`` non-negative ISTA steps from ``a₀ = 0`` against an encoding dictionary ``D ∈ R^{d×s}``, then the
    code is decoded with a *separate* dictionary ``D₁ ∈ R^{d×s}``:

        a₁    = ReLU( η·Dᵀ y − η·λ )
        a_t+1 = ReLU( a_t − η·Dᵀ(D a_t − y) − η·λ )
        ODL(y) = D₁ a_T

    The residual connection around ODL belongs to the layer, not to this block.

    Args:
        hidden_size (`int`): token width ``d``.
        expansion (`int`, defaults to 4): ``s = expansion·d``, the number of dictionary atoms.
        num_steps (`int`, defaults to 2): ``T``.
        step_size (`float`, defaults to 0.1): ``η``.
        lambd (`float`, defaults to 0.1): ``λ``.
    """

    def __init__(
        self, hidden_size: int, expansion: int = 4, num_steps: int = 2, step_size: float = 0.1, lambd: float = 0.1
    ):
        super().__init__()
        check_positive_int("hidden_size", hidden_size)
        check_positive_int("expansion", expansion)
        check_positive_int("num_steps", num_steps)
        _check_positive_float("step_size", float(step_size))
        if lambd < 0:
            raise ValueError(f"`lambd` must be non-negative, got {lambd!r}")
        self.num_steps = num_steps
        self.step_size = float(step_size)
        self.lambd = float(lambd)
        num_atoms = expansion * hidden_size
        # Stored as (s, d), i.e. Dᵀ, so that F.linear(y, encoder) = Dᵀ y and F.linear(a, encoderᵀ) = D a.
        self.encoder_dictionary = nn.Parameter(torch.empty(num_atoms, hidden_size))
        self.decoder_dictionary = nn.Parameter(torch.empty(hidden_size, num_atoms))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.encoder_dictionary, a=math.sqrt(5))
        nn.init.kaiming_uniform_(self.decoder_dictionary, a=math.sqrt(5))

    def sparse_code(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The non-negative sparse code ``a_T`` of shape ``(..., s)``."""
        threshold = self.step_size * self.lambd
        code = F.relu(self.step_size * F.linear(hidden_states, self.encoder_dictionary) - threshold)
        for _ in range(self.num_steps - 1):
            residual = F.linear(code, self.encoder_dictionary.t()) - hidden_states  # D a − y
            code = F.relu(code - self.step_size * F.linear(residual, self.encoder_dictionary) - threshold)
        return code

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return F.linear(self.sparse_code(hidden_states), self.decoder_dictionary)


# ---------------------------------------- whitebox_hf.nn.embeddings
import math

import torch
from torch import nn
from torch.nn import functional as F




def check_pixel_values(pixel_values: torch.Tensor, num_channels: int, patch_size: int) -> None:
    """Raise a clear error for input a patch embedding cannot take: not a 4-D ``(batch, channels, height, width)``
    tensor, empty, not floating point (integer 0-255, bool or complex images are refused, never cast), the wrong
    number of channels, a side not divisible by the patch, or (CPU tensors only: see
    `whitebox_hf.utils.validation`) a NaN or infinite pixel."""
    check_tensor("pixel_values", pixel_values, ndim=4, shape_doc="(batch, channels, height, width)")
    check_floating_tensor("pixel_values", pixel_values)
    channels, height, width = pixel_values.shape[1:]
    if channels != num_channels:
        raise ValueError(
            f"`pixel_values` has {channels} channels but the model expects num_channels={num_channels}"
        )
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"`pixel_values` spatial size {height}x{width} is not divisible by patch_size={patch_size}"
        )
    check_finite_tensor("pixel_values", pixel_values)


def patchify(pixel_values: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``(B, C, H, W)`` → ``(B, (H/ps)·(W/ps), ps·ps·C)``: patches in raster order, each flattened in
    (row, col, channel) order (CRATE's stem and the MAE reconstruction target)."""
    if pixel_values.ndim != 4:
        raise ValueError(
            f"`pixel_values` must have shape (batch, channels, height, width), got {tuple(pixel_values.shape)}"
        )
    batch, channels, height, width = pixel_values.shape
    p = patch_size
    if height % p or width % p:
        raise ValueError(f"`pixel_values` spatial size {height}x{width} is not divisible by patch_size={p}")
    patches = pixel_values.reshape(batch, channels, height // p, p, width // p, p)
    # (B, C, h, p, w, p) -> (B, h, w, p, p, C) -> (B, h·w, p·p·C)
    return patches.permute(0, 2, 4, 3, 5, 1).reshape(batch, (height // p) * (width // p), p * p * channels)


def unpatchify(patches: torch.Tensor, patch_size: int, num_channels: int,
               grid_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Inverse of `patchify`: ``(B, h·w, ps·ps·C)`` → ``(B, C, h·ps, w·ps)``; ``grid_size=(h, w)`` defaults
    to a square grid."""
    if patches.ndim != 3:
        raise ValueError(f"`patches` must have shape (batch, patches, values), got {tuple(patches.shape)}")
    batch, num_patches, values = patches.shape
    p = patch_size
    if values != p * p * num_channels:
        raise ValueError(f"patches hold {values} values, expected patch_size²·num_channels = {p * p * num_channels}")
    if grid_size is None:
        side = math.isqrt(num_patches)
        if side * side != num_patches:
            raise ValueError(f"{num_patches} patches is not a square grid; pass `grid_size`")
        grid_size = (side, side)
    grid_h, grid_w = grid_size
    if grid_h * grid_w != num_patches:
        raise ValueError(f"`grid_size` {grid_size} does not hold {num_patches} patches")
    images = patches.reshape(batch, grid_h, grid_w, p, p, num_channels).permute(0, 5, 1, 3, 2, 4)
    return images.reshape(batch, num_channels, grid_h * p, grid_w * p)


def sincos_position_embedding_2d(hidden_size: int, grid_height: int, grid_width: int,
                                 num_prefix_tokens: int = 1) -> torch.Tensor:
    """Fixed 2-D sine-cosine positions as in MAE (He et al. 2022), shape ``(1, prefix + h·w, d)``.

    Half of the channels encode the column index and half the row index, each with the 1-D transformer table
    ``[sin(x·ω_k), cos(x·ω_k)]``, ``ω_k = 10000^{-k/(d/4)}``; prefix (class-token) slots are zero. Computed in
    float64 so the table does not depend on the device.
    """
    if hidden_size % 4:
        raise ValueError(f"2-D sin-cos positions need `hidden_size` divisible by 4, got {hidden_size}")
    quarter = hidden_size // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)

    def table(coordinates: torch.Tensor) -> torch.Tensor:
        angles = coordinates.reshape(-1, 1).to(torch.float64) * omega
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    rows, cols = torch.meshgrid(torch.arange(grid_height), torch.arange(grid_width), indexing="ij")
    # MAE's order (facebookresearch/mae): the first half of the channels follows the column (x), the second
    # the row (y).
    patch_table = torch.cat([table(cols), table(rows)], dim=1)
    prefix = torch.zeros(num_prefix_tokens, hidden_size, dtype=torch.float64)
    return torch.cat([prefix, patch_table], dim=0).unsqueeze(0).float()


class LinearPatchEmbedding(nn.Module):
    """CRATE's stem (Ma-Lab-Berkeley/CRATE): cut into patches, flatten each in (row, col, channel) order,
    then ``LayerNorm(P) → Linear(P→d) → LayerNorm(d)`` with ``P = C·ps²``."""

    def __init__(self, num_channels: int, patch_size: int, hidden_size: int, layer_norm_eps: float = 1e-5):
        super().__init__()
        self.num_channels = num_channels
        self.patch_size = patch_size
        patch_dim = num_channels * patch_size**2
        self.patch_norm = nn.LayerNorm(patch_dim, eps=layer_norm_eps)
        self.projection = nn.Linear(patch_dim, hidden_size)
        self.embedding_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        check_pixel_values(pixel_values, self.num_channels, self.patch_size)
        patches = patchify(pixel_values, self.patch_size)
        return self.embedding_norm(self.projection(self.patch_norm(patches)))


class ConvPatchEmbedding(nn.Module):
    """CRATE-α's (and ViT's) stem: a ``Conv2d`` with kernel = stride = patch size."""

    def __init__(self, num_channels: int, patch_size: int, hidden_size: int):
        super().__init__()
        self.num_channels = num_channels
        self.patch_size = patch_size
        self.projection = nn.Conv2d(num_channels, hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        check_pixel_values(pixel_values, self.num_channels, self.patch_size)
        return self.projection(pixel_values).flatten(2).transpose(1, 2)


def interpolate_position_embedding(
    position_embedding: torch.Tensor, grid_height: int, grid_width: int, num_prefix_tokens: int = 1
) -> torch.Tensor:
    """Resize a learned ``(1, prefix + h·w, d)`` position table (square grid) to ``grid_height×grid_width``
    patches by bicubic interpolation, keeping the prefix (class token) slots as they are."""
    num_patches = position_embedding.shape[1] - num_prefix_tokens
    side = int(math.isqrt(num_patches))
    if side * side != num_patches:
        raise ValueError(f"position table holds {num_patches} patch slots, which is not a square grid")
    if (grid_height, grid_width) == (side, side):
        return position_embedding
    prefix, patch_table = position_embedding[:, :num_prefix_tokens], position_embedding[:, num_prefix_tokens:]
    dim = patch_table.shape[-1]
    patch_table = patch_table.reshape(1, side, side, dim).permute(0, 3, 1, 2)
    patch_table = F.interpolate(
        patch_table.float(), size=(grid_height, grid_width), mode="bicubic", align_corners=False
    ).to(position_embedding.dtype)
    patch_table = patch_table.permute(0, 2, 3, 1).reshape(1, grid_height * grid_width, dim)
    return torch.cat([prefix, patch_table], dim=1)


# ---------------------------------------- whitebox_hf.nn.attention
import torch
from torch import nn
from torch.nn import functional as F



ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa")

# PyTorch's CPU flash-attention kernel (what SDPA runs on CPU) is slow in bfloat16/float16 at short sequences: at
# CRATE's shapes (50 tokens, head dim 32; 197 tokens, head dim 64) plain matmul-softmax-matmul in bf16 is 1.4-2.0x
# faster forward and 2.4-6.8x faster forward + backward (one idle thread; `docs/results/benchmark_attention_kernels.md`).
# With more keys the advantage shrinks (about even at 1,024 causal keys, SDPA 3x faster at 4,096) while the
# (q_len, k_len) scores the matmul route forms grow quadratically (SDPA never forms them), so the "sdpa" path takes
# the matmul route only up to this many keys. In fp32 SDPA is faster at every shape measured.
LOW_PRECISION_CPU_MATMUL_MAX_KEYS = 256


def causal_attention_mask(
    query_length: int,
    key_length: int,
    padding_mask: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Additive causal mask ``(batch or 1, 1, query_length, key_length)``: 0 where allowed, the dtype's minimum
    where not.

    The queries are the *last* ``query_length`` positions of the ``key_length`` keys (a KV cache holds the
    earlier ones), so query ``i`` sees keys ``0 .. key_length - query_length + i``. ``padding_mask``
    ``(batch, key_length)`` with 1 for real tokens and 0 for padding additionally hides padded keys.

    A finite minimum rather than ``-inf`` keeps rows with no visible key (left padding) finite: they become a
    uniform average that no real token ever reads.
    """
    if query_length > key_length:
        raise ValueError(f"`query_length` ({query_length}) cannot exceed `key_length` ({key_length})")
    query_positions = torch.arange(key_length - query_length, key_length, device=device)
    allowed = torch.arange(key_length, device=device)[None, :] <= query_positions[:, None]
    allowed = allowed[None, None]
    if padding_mask is not None:
        if padding_mask.shape[-1] != key_length:
            raise ValueError(
                f"`padding_mask` must have {key_length} columns (one per key), got shape {tuple(padding_mask.shape)}"
            )
        allowed = allowed & padding_mask[:, None, None, :].to(device=device, dtype=torch.bool)
    return torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)


def eager_attention_forward(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    is_causal: bool = False,
    softmax_dtype: torch.dtype | None = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain softmax attention that also returns the attention probabilities.

    Shapes: ``query`` is ``(batch, heads, q_len, head_dim)``, ``key``/``value`` ``(batch, heads, k_len, head_dim)``.
    ``attention_mask`` is additive and broadcast to ``(batch, heads, q_len, k_len)``. With ``is_causal`` the
    queries are taken to be the last ``q_len`` of the ``k_len`` positions. ``softmax_dtype`` is the precision of the
    softmax (float32 by default; ``None``: the scores' own dtype, which PyTorch's CPU softmax still accumulates in
    float32). Returns ``(output (batch, heads, q_len, head_dim), probabilities (batch, heads, q_len, k_len))``.
    """
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if is_causal:
        q_len, k_len = scores.shape[-2:]
        # Query i sits at absolute position (k_len - q_len + i): it may see keys up to that position.
        causal = torch.ones(q_len, k_len, dtype=torch.bool, device=scores.device).tril(k_len - q_len)
        scores = scores.masked_fill(~causal, float("-inf"))
    if attention_mask is not None:
        scores = scores + attention_mask
    probabilities = torch.softmax(scores, dim=-1, dtype=softmax_dtype).to(query.dtype)
    probabilities_dropped = F.dropout(probabilities, p=dropout, training=dropout > 0)
    return torch.matmul(probabilities_dropped, value), probabilities


def uses_low_precision_cpu_matmul(query: torch.Tensor, key: torch.Tensor) -> bool:
    """Whether the "sdpa" path computes this attention as matmul-softmax-matmul in the inputs' precision instead of
    calling SDPA: bfloat16/float16 on CPU with at most `LOW_PRECISION_CPU_MATMUL_MAX_KEYS` keys."""
    return (query.device.type == "cpu" and query.dtype in (torch.bfloat16, torch.float16)
            and key.shape[-2] <= LOW_PRECISION_CPU_MATMUL_MAX_KEYS)


def attend(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float,
    is_causal: bool,
    attn_implementation: str,
    output_attentions: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run softmax attention with SDPA or the eager path; returns ``(context, probabilities or None)``.

    ``attention_mask`` (additive, 4-D) must already encode causality when given; without one, ``is_causal``
    masks the future. The eager path runs whenever probabilities are requested, since SDPA kernels do not
    expose them. In bfloat16/float16 on CPU with few keys "sdpa" runs the same matmuls with the softmax in the
    inputs' precision (`uses_low_precision_cpu_matmul`): faster there than PyTorch's CPU flash kernel.
    """
    if attn_implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(
            f"`attn_implementation` must be one of {ATTENTION_IMPLEMENTATIONS}, got {attn_implementation!r}"
        )
    q_len, k_len = query.shape[-2], key.shape[-2]
    if is_causal and attention_mask is None and q_len not in (1, k_len):
        # SDPA aligns `is_causal` to the top-left corner, which is wrong once a cache holds earlier keys.
        attention_mask = causal_attention_mask(q_len, k_len, dtype=query.dtype, device=query.device)
    # A single query at the end of the sequence may see every cached key: no mask needed.
    causal_flag = is_causal and attention_mask is None and q_len == k_len
    if output_attentions or attn_implementation == "eager":
        return eager_attention_forward(query, key, value, attention_mask, scaling, dropout, causal_flag)
    if uses_low_precision_cpu_matmul(query, key):
        context, _ = eager_attention_forward(query, key, value, attention_mask, scaling, dropout, causal_flag,
                                             softmax_dtype=None)
        return context, None
    context = F.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, is_causal=causal_flag, scale=scaling
    )
    return context, None


class _SelfAttention(nn.Module):
    """What MSSA and MHSA share after their projections: the KV cache, the kernel and the output projection."""

    def _attend_and_project(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        output_attentions: bool,
        attn_implementation: str,
        past_key_values,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``value=None`` means "the value is the key" (MSSA): the cache then stores that tensor only once."""
        if past_key_values is not None:
            if self.layer_idx is None:
                raise ValueError("`layer_idx` must be set on the attention module to use `past_key_values`")
            key, cached_value = past_key_values.update(key, key[..., :0] if value is None else value, self.layer_idx)
            value = None if value is None else cached_value
        context, probabilities = attend(
            query,
            key,
            key if value is None else value,
            attention_mask,
            self.scaling,
            self.attention_dropout if self.training else 0.0,
            self.is_causal,
            attn_implementation,
            output_attentions,
        )
        batch_size, _, num_tokens, _ = query.shape
        context = context.transpose(1, 2).reshape(batch_size, num_tokens, -1)
        output = self.projection_dropout(self.output_projection(context))
        return output, (probabilities if output_attentions else None)


class MultiHeadSubspaceSelfAttention(_SelfAttention):
    """MSSA: one bias-free projection ``U`` shared by query, key and value.

    Args:
        hidden_size (`int`): token width ``d``.
        num_heads (`int`): number of subspaces ``K``.
        head_dim (`int`): subspace dimension ``p``; ``K·p`` need not equal ``d``.
        output_bias (`bool`, defaults to `True`): bias on the output projection (CRATE: yes, CRATE-α: no).
        attention_dropout (`float`, defaults to 0.0): dropout on the attention probabilities.
        projection_dropout (`float`, defaults to 0.0): dropout after the output projection.
        is_causal (`bool`, defaults to `False`): mask future tokens (causal CRATE and AoT for language).
        layer_idx (`int`, *optional*): this layer's slot in a KV cache.

    ``forward(hidden_states, attention_mask=None, output_attentions=False, attn_implementation="sdpa",
    past_key_values=None)`` returns ``(output, attention_probabilities or None)``. With
    ``output_attentions=True`` the eager path runs (SDPA kernels do not expose probabilities); both paths give
    the same output. Because key and value are the same tensor ``U_kᵀ Z``, a KV cache stores it once (its value
    slot holds an empty tensor), half the memory of a standard attention cache of the same width.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        head_dim: int,
        output_bias: bool = True,
        attention_dropout: float = 0.0,
        projection_dropout: float = 0.0,
        is_causal: bool = False,
        layer_idx: int | None = None,
    ):
        super().__init__()
        for name, value in (("hidden_size", hidden_size), ("num_heads", num_heads), ("head_dim", head_dim)):
            check_positive_int(name, value)
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.scaling = head_dim**-0.5
        self.attention_dropout = attention_dropout
        self.is_causal = is_causal
        self.layer_idx = layer_idx
        # U = [U_1, ..., U_K]: the subspace bases, shared by query, key and value (no bias: a subspace
        # projection is linear, not affine).
        self.subspace_projection = nn.Linear(hidden_size, num_heads * head_dim, bias=False)
        self.output_projection = nn.Linear(num_heads * head_dim, hidden_size, bias=output_bias)
        self.projection_dropout = nn.Dropout(projection_dropout)

    @classmethod
    def from_config(cls, config, output_bias: bool, is_causal: bool = False, layer_idx: int | None = None):
        """Build from a model configuration's ``hidden_size``, ``num_attention_heads``, ``head_dim``,
        ``attention_probs_dropout_prob`` and ``hidden_dropout_prob`` (every CRATE-family config has them)."""
        return cls(
            config.hidden_size,
            config.num_attention_heads,
            config.head_dim,
            output_bias=output_bias,
            attention_dropout=config.attention_probs_dropout_prob,
            projection_dropout=config.hidden_dropout_prob,
            is_causal=is_causal,
            layer_idx=layer_idx,
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        attn_implementation: str = "sdpa",
        past_key_values=None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch_size, num_tokens, _ = hidden_states.shape
        # (B, N, K·p) -> (B, K, N, p): the coordinates U_kᵀ z of every token in every subspace.
        projected = self.subspace_projection(hidden_states)
        projected = projected.view(batch_size, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
        return self._attend_and_project(
            projected, projected, None, attention_mask, output_attentions, attn_implementation, past_key_values
        )


class MultiHeadSelfAttention(_SelfAttention):
    """Standard multi-head self-attention with separate query, key and value projections (GPT-2's ``c_attn``).

    Args:
        hidden_size (`int`): token width ``d``; split into ``num_heads`` heads of ``d / num_heads``.
        num_heads (`int`): number of heads.
        bias (`bool`, defaults to `True`): biases on the projections (GPT-2: yes).
        attention_dropout (`float`, defaults to 0.0): dropout on the attention probabilities.
        projection_dropout (`float`, defaults to 0.0): dropout after the output projection.
        is_causal (`bool`, defaults to `True`): mask future tokens.
        layer_idx (`int`, *optional*): this layer's slot in a KV cache.

    Same call signature and return value as `MultiHeadSubspaceSelfAttention`.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        bias: bool = True,
        attention_dropout: float = 0.0,
        projection_dropout: float = 0.0,
        is_causal: bool = True,
        layer_idx: int | None = None,
    ):
        super().__init__()
        if not isinstance(num_heads, int) or num_heads <= 0 or hidden_size % num_heads:
            raise ValueError(f"`num_heads` must be a positive divisor of `hidden_size` ({hidden_size}), got {num_heads!r}")
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = attention_dropout
        self.is_causal = is_causal
        self.layer_idx = layer_idx
        self.query_key_value = nn.Linear(hidden_size, 3 * hidden_size, bias=bias)
        self.output_projection = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.projection_dropout = nn.Dropout(projection_dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        attn_implementation: str = "sdpa",
        past_key_values=None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch_size, num_tokens, hidden_size = hidden_states.shape
        qkv = self.query_key_value(hidden_states).view(batch_size, num_tokens, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        return self._attend_and_project(
            query, key, value, attention_mask, output_attentions, attn_implementation, past_key_values
        )


# ---------------------------------------- whitebox_hf.models.crate.masked_modeling
import torch



def random_patch_mask(batch_size: int, num_patches: int, mask_ratio: float,
                      generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Boolean ``(batch, num_patches)``, True for masked patches: each sample masks exactly
    ``int(num_patches · mask_ratio)`` patches chosen by its own random permutation.

    The noise is drawn on ``generator``'s device (a CUDA generator cannot draw on the CPU, nor the reverse), then
    moved to ``device``, so a seeded generator gives the same mask whatever ``device`` is."""
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"`mask_ratio` must be in [0, 1), got {mask_ratio!r}")
    if batch_size <= 0 or num_patches <= 0:
        raise ValueError(f"`batch_size` and `num_patches` must be positive, got {batch_size}, {num_patches}")
    num_masked = int(num_patches * mask_ratio)
    noise_device = generator.device if generator is not None else device
    noise = torch.rand(batch_size, num_patches, generator=generator, device=noise_device)
    ranks = noise.to(device).argsort(dim=1).argsort(dim=1)
    return ranks < num_masked


def masked_patch_loss(predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                      normalize_target: bool = False) -> torch.Tensor:
    """Mean squared error per patch, averaged over the **masked** patches only.

    ``predicted`` and ``target`` are ``(batch, patches, values per patch)``; ``mask`` ``(batch, patches)`` is
    True where a patch was hidden. With ``normalize_target`` each target patch is standardised by its own mean and
    variance first (MAE's ``norm_pix_loss``).

    An empty mask raises `ValueError` for a CPU ``mask``; on an accelerator the check would stall the device
    (a host synchronisation), so it is skipped there and an empty mask gives NaN.
    """
    if predicted.shape != target.shape or predicted.ndim != 3:
        raise ValueError(
            f"`predicted` and `target` must both be (batch, patches, values), got {tuple(predicted.shape)} and "
            f"{tuple(target.shape)}"
        )
    if tuple(mask.shape) != tuple(predicted.shape[:2]):
        raise ValueError(f"`mask` must have shape {tuple(predicted.shape[:2])}, got {tuple(mask.shape)}")
    if mask.device.type == "cpu" and not mask.any():
        raise ValueError("`mask` hides no patch: the masked-patch loss is undefined")
    if normalize_target:
        mean = target.mean(dim=-1, keepdim=True)
        variance = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (variance + 1e-6).sqrt()
    per_patch = (predicted - target).square().mean(dim=-1)
    weights = mask.to(per_patch.dtype)
    return (per_patch * weights).sum() / weights.sum()


# ---------------------------------------- whitebox_hf.models.modeling_utils
from pathlib import Path

from transformers import PreTrainedModel
from transformers.modeling_outputs import ImageClassifierOutput




class WhiteboxPreTrainedModel(PreTrainedModel):
    """Base of every whitebox_hf model: safetensors-only loading and the choice of attention kernel."""

    _supports_sdpa = True

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`PreTrainedModel.from_pretrained` restricted to safetensors (loading never unpickles) and to checkpoints
        of this class's ``model_type``: transformers only warns when, e.g., a causal-LM folder is loaded into an
        image classifier, and returns a randomly initialised model."""
        if kwargs.get("use_safetensors") is False:
            raise ValueError("whitebox_hf models load safetensors weights only; `use_safetensors=False` is refused")
        kwargs["use_safetensors"] = True
        if args and kwargs.get("config") is None:
            _check_checkpoint_model_type(cls, args[0], kwargs)
        from safetensors import SafetensorError

        try:
            return super().from_pretrained(*args, **kwargs)
        except SafetensorError as error:
            # safetensors' message names no file: a truncated or corrupt download must say which one.
            location = args[0] if args else kwargs.get("pretrained_model_name_or_path")
            files = sorted(path.name for path in Path(location).glob("*.safetensors")) if location else []
            raise OSError(f"cannot read the safetensors weights in {location} ({', '.join(files) or 'from the Hub'}): "
                          f"{error}") from error

    def _attention_backend(self, output_attentions: bool) -> str:
        if output_attentions:
            return "eager"  # only the eager path returns attention probabilities
        return "eager" if self.config._attn_implementation == "eager" else "sdpa"


def check_classification_labels(labels, batch_size: int, num_labels: int) -> None:
    """Labels as transformers' classification loss reads them: integer class ids ``(batch,)`` in
    ``[0, num_labels)`` (single label), or floats ``(batch,)`` for a 1-label regression head or
    ``(batch, num_labels)`` for multi-label targets. Values are read on CPU only (see `whitebox_hf.utils.validation`)."""
    check_tensor("labels", labels)
    if labels.is_floating_point():
        expected = (batch_size,) if num_labels == 1 else (batch_size, num_labels)
        if tuple(labels.shape) not in {expected, (batch_size, num_labels)}:
            raise ValueError(f"float `labels` must have shape {expected}, got {tuple(labels.shape)}")
        check_finite_tensor("labels", labels)
        return
    if tuple(labels.shape) != (batch_size,):
        raise ValueError(f"`labels` must hold one class id per image, shape ({batch_size},), got {tuple(labels.shape)}")
    check_index_tensor("labels", labels, num_labels, "num_labels", long_only=True)


_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies")


def _check_checkpoint_model_type(cls, pretrained_model_name_or_path, kwargs) -> None:
    from transformers import PreTrainedConfig

    expected = getattr(cls.config_class, "model_type", None)
    if not expected or pretrained_model_name_or_path is None:
        return
    hub_kwargs = {key: kwargs[key] for key in _HUB_KWARGS if key in kwargs}
    config_dict, _ = PreTrainedConfig.get_config_dict(pretrained_model_name_or_path, **hub_kwargs)
    found = config_dict.get("model_type")
    if found is not None and found != expected:
        raise ValueError(
            f"{pretrained_model_name_or_path!s} holds a checkpoint of `model_type`={found!r}, but {cls.__name__} "
            f"loads model_type={expected!r}: load it with its own class or with an Auto class"
        )


def image_classifier_output(model, backbone_outputs, labels, return_dict: bool, **kwargs):
    """Apply ``model.classifier`` to the pooled feature and package loss and logits as transformers does."""
    if labels is not None:
        check_classification_labels(labels, backbone_outputs.pooler_output.shape[0], model.config.num_labels)
    logits = model.classifier(backbone_outputs.pooler_output)
    loss = model.loss_function(labels, logits, model.config, **kwargs) if labels is not None else None
    if not return_dict:
        output = tuple(v for v in (logits, backbone_outputs.hidden_states, backbone_outputs.attentions) if v is not None)
        return ((loss,) + output) if loss is not None else output
    return ImageClassifierOutput(
        loss=loss, logits=logits, hidden_states=backbone_outputs.hidden_states, attentions=backbone_outputs.attentions
    )


def run_layers(layers, hidden_states, output_hidden_states: bool, output_attentions: bool, **layer_kwargs):
    """Run ``hidden_states`` through ``layers`` (each returning ``(hidden_states, weights)``), collecting every
    layer's output and weights when asked. Returns ``(hidden_states, all_hidden_states or None,
    all_attentions or None)``; ``all_hidden_states`` starts with the input, as in transformers."""
    all_hidden_states = (hidden_states,) if output_hidden_states else None
    all_attentions = () if output_attentions else None
    for layer in layers:
        hidden_states, weights = layer(hidden_states, output_attentions=output_attentions, **layer_kwargs)
        if output_hidden_states:
            all_hidden_states += (hidden_states,)
        if output_attentions:
            all_attentions += (weights,)
    return hidden_states, all_hidden_states, all_attentions


# ---------------------------------------- whitebox_hf.models.validation
import dataclasses
import difflib
import functools
import typing

from huggingface_hub.dataclasses import strict
from huggingface_hub.errors import StrictDataclassClassValidationError, StrictDataclassFieldValidationError

_check_positive_int = check_positive_int



class ConfigFieldTypeError(StrictDataclassFieldValidationError, TypeError):
    """A field of the wrong type (strict's error, also a `TypeError` as the developers' guide asks)."""


class ConfigFieldValueError(StrictDataclassFieldValidationError, ValueError):
    """A field whose value a strict validator refused."""


class ConfigValidationError(StrictDataclassClassValidationError, ValueError):
    """A class-level validator (``validate_*``) refused the configuration."""


# Keys that are not `PreTrainedConfig` fields but that transformers itself reads from a config's keyword arguments
# or writes into config.json files (token ids, remote-code and tokenizer pointers, flags of older versions). The
# fields themselves come from ``PreTrainedConfig().to_dict()`` in `standard_config_keys`.
_STANDARD_EXTRA_KEYS = frozenset({
    "num_labels", "torch_dtype", "name_or_path", "attn_implementation", "experts_implementation",
    "output_attentions", "use_return_dict", "_commit_hash", "per_layer_config", "auto_map", "tokenizer_class",
    "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id",
    "task_specific_params", "finetuning_task", "prefix", "is_decoder", "add_cross_attention",
    "cross_attention_hidden_size", "tie_encoder_decoder", "torchscript", "use_bfloat16", "pruned_heads",
    "tf_legacy_loss", "_attn_implementation_internal", "_experts_implementation_internal",
})


@functools.cache
def standard_config_keys() -> frozenset:
    """Keys every configuration accepts besides its own fields: `PreTrainedConfig`'s serialised keys, the generation
    parameters transformers pops from a config's kwargs, and `_STANDARD_EXTRA_KEYS`."""
    from transformers import GenerationConfig, PreTrainedConfig

    # transformers drops these itself in `PreTrainedConfig.__post_init__` (old config.json files carry them).
    generation_keys = GenerationConfig._get_default_generation_params().keys()
    return frozenset(PreTrainedConfig().to_dict()) | frozenset(generation_keys) | _STANDARD_EXTRA_KEYS


def check_config_kwargs(config, kwargs: dict) -> None:
    """Refuse keyword arguments that are neither fields of ``config`` nor standard keys (a typo such as
    ``hidden_sise`` would otherwise be kept as a dead attribute), and a ``model_type`` of another family."""
    cls = type(config)
    model_type = kwargs.get("model_type")
    if model_type is not None and model_type != cls.model_type:
        raise ValueError(
            f"`model_type` is {model_type!r}, but {cls.__name__} is for model_type={cls.model_type!r}: this is the "
            f"configuration of another model (load it with its own class, or with AutoConfig / AutoModel)"
        )
    field_names = {field.name for field in dataclasses.fields(cls)}
    allowed = field_names | standard_config_keys() | set(getattr(cls, "sub_configs_defaults", None) or ())
    for key in kwargs:
        if key not in allowed:
            closest = difflib.get_close_matches(key, sorted(field_names), n=1)
            hint = f"; did you mean `{closest[0]}`?" if closest else ""
            raise TypeError(f"{cls.__name__} got an unknown configuration key `{key}` (= {kwargs[key]!r}){hint}")


def strict_config(cls):
    """huggingface_hub's ``@strict`` for a `PreTrainedConfig` subclass, with the whitebox_hf rules (module docstring).

    Every field's annotation is checked by strict at assignment, so a configuration module must not use
    ``from __future__ import annotations``: strict skips annotations it sees as strings.
    """
    cls = strict(cls)
    strict_setattr, strict_validate = cls.__setattr__, cls.validate
    float_fields = {field.name for field in dataclasses.fields(cls)
                    if field.type is float or float in typing.get_args(field.type)}

    def __setattr__(self, name, value):
        if name in float_fields and isinstance(value, int) and not isinstance(value, bool):
            # An integer is a real number (`ista_lambda=1`, `1` in a YAML file): exact as a float, so taken as
            # one; bool, str and other types still fail strict's check below.
            value = float(value)
        try:
            strict_setattr(self, name, value)
        except StrictDataclassFieldValidationError as error:
            if isinstance(error, (TypeError, ValueError)):
                raise
            error_class = ConfigFieldTypeError if isinstance(error.__cause__, TypeError) else ConfigFieldValueError
            raise error_class(field=name, cause=error.__cause__) from error.__cause__

    def validate(self):
        try:
            strict_validate(self)
        except StrictDataclassClassValidationError as error:
            if isinstance(error, ValueError):
                raise
            raise ConfigValidationError(validator=str(error).split("'")[1], cause=error.__cause__) from error.__cause__

    validate.__is_defined_by_strict_decorator__ = True  # lets a subclass carry @strict_config again
    cls.__setattr__, cls.validate = __setattr__, validate

    own_post_init = cls.__post_init__

    @functools.wraps(own_post_init)
    def __post_init__(self, **kwargs):
        check_config_kwargs(self, kwargs)
        if kwargs.get("num_labels") is not None:  # before transformers builds ``id2label`` from it
            _check_positive_int("num_labels", kwargs["num_labels"])
        for field in dataclasses.fields(self):
            check_finite_float(field.name, getattr(self, field.name, None))
        own_post_init(self, **kwargs)
        if self.num_labels is not None:
            _check_positive_int("num_labels", self.num_labels)

    cls.__post_init__ = __post_init__
    return cls


def _validation_check_positive_int(config, *names: str) -> None:
    """Each named field of ``config`` must be a positive ``int`` (the one rule, in `whitebox_hf.utils.validation`)."""
    for name in names:
        _check_positive_int(name, getattr(config, name))


def check_positive(config, *names: str) -> None:
    for name in names:
        check_finite_float(name, getattr(config, name))
        if not getattr(config, name) > 0:
            raise ValueError(f"`{name}` must be positive, got {getattr(config, name)!r}")


def check_probability(config, *names: str) -> None:
    for name in names:
        check_finite_float(name, getattr(config, name))
        if not 0.0 <= getattr(config, name) < 1.0:
            raise ValueError(f"`{name}` must be in [0, 1), got {getattr(config, name)!r}")


def check_choice(config, name: str, allowed: tuple) -> None:
    if getattr(config, name) not in allowed:
        raise ValueError(f"`{name}` must be one of {allowed}, got {getattr(config, name)!r}")


def resolve_head_dim(config) -> None:
    """Fill ``head_dim = hidden_size // num_attention_heads`` when unset (which must then divide exactly)."""
    if config.head_dim is None:
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(
                f"`hidden_size` ({config.hidden_size}) must be divisible by `num_attention_heads` "
                f"({config.num_attention_heads}), or set `head_dim` explicitly"
            )
        config.head_dim = config.hidden_size // config.num_attention_heads
    else:
        _validation_check_positive_int(config, "head_dim")


# ---------------------------------------- whitebox_hf.models.crate.configuration_crate
from transformers import PreTrainedConfig

_configuration_crate_check_positive_int = _validation_check_positive_int


_BLOCK_TYPES = ("ista", "odl")
_POOLING = ("cls", "mean")
_PATCH_EMBEDDING_TYPES = ("linear", "conv")
_POSITION_EMBEDDING_TYPES = (None, "learned", "sincos")

# Book Table 8.5 (CRATE) and UCSC-VLAA/CRATE-alpha (CRATE-α): width / depth / heads at 224², patch 16.
_CRATE_SHAPES = {"tiny": (384, 12, 6), "small": (576, 12, 12), "base": (768, 12, 12), "large": (1024, 24, 16)}
_CRATE_ALPHA_SHAPES = {"tiny": (192, 12, 3), "small": (576, 12, 12), "base": (768, 12, 12), "large": (1024, 24, 16)}
_CRATE_ALPHA_ARCHITECTURE = dict(
    block_type="odl",
    patch_embedding_type="conv",
    attention_output_bias=False,
    layer_norm_eps=1e-6,
    position_embedding_init_std=0.02,
)
CRATE_PRESETS: dict[str, dict] = {
    **{
        f"crate-{size}": dict(hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads)
        for size, (d, layers, heads) in _CRATE_SHAPES.items()
    },
    **{
        f"crate-alpha-{size}": dict(
            hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads, **_CRATE_ALPHA_ARCHITECTURE
        )
        for size, (d, layers, heads) in _CRATE_ALPHA_SHAPES.items()
    },
    # Spec crate_family.md §6 (Ma-Lab-Berkeley/CRATE `model/crate_ae/`): conv stem, λ = 0.5 in the encoder
    # (the authors' constructor default), a decoder as deep as the encoder, 75% of the patches masked.
    **{
        f"crate-mae-{size}": dict(
            hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads, decoder_num_hidden_layers=layers,
            patch_embedding_type="conv", ista_lambda=0.5, mask_ratio=0.75, position_embedding_type="sincos",
        )
        for size, (d, layers, heads) in _CRATE_SHAPES.items() if size in ("small", "base")
    },
}


def check_sparse_coding_fields(config) -> None:
    """Validate the fields a CRATE layer reads for its sparse-coding block (shared with the causal CRATE LM)."""
    check_choice(config, "block_type", _BLOCK_TYPES)
    _configuration_crate_check_positive_int(config, "odl_expansion", "odl_steps")
    check_positive(config, "ista_step_size")
    if config.ista_lambda < 0:
        raise ValueError(f"`ista_lambda` must be non-negative, got {config.ista_lambda!r}")


@strict_config
class CrateConfig(PreTrainedConfig):
    r"""
    Configuration of a CRATE (*Coding RAte reduction TransformEr*) or CRATE-α image model.

    A CRATE layer (book §8.4.1) compresses tokens with multi-head subspace self-attention (MSSA) and then
    sparsifies them with one ISTA step: ``Z½ = Z + MSSA(LN(Z))``, ``Z⁺ = ISTA(LN(Z½))``. A CRATE-α layer
    replaces ISTA with overcomplete dictionary learning plus a residual: ``Z⁺ = Z½ + ODL(LN(Z½))``.
    Defaults give CRATE-Base at 224², patch 16; `CrateConfig.from_preset(name)` gives every preset.

    Args:
        hidden_size (`int`, *optional*, defaults to 768):
            Token width ``d``.
        num_hidden_layers (`int`, *optional*, defaults to 12):
            Number of CRATE layers ``L``.
        num_attention_heads (`int`, *optional*, defaults to 12):
            Number of MSSA subspaces ``K``.
        head_dim (`int`, *optional*):
            Subspace dimension ``p``; defaults to ``hidden_size // num_attention_heads``, which must then divide
            exactly. Set it to use ``K·p ≠ d``.
        block_type (`str`, *optional*, defaults to `"ista"`):
            Sparse-coding block: `"ista"` (CRATE: one ISTA step, no residual, non-negative output) or `"odl"`
            (CRATE-α: overcomplete dictionary, ``odl_steps`` steps from zero, separate decoder, residual).
        ista_step_size (`float`, *optional*, defaults to 0.1):
            ISTA/ODL step size ``η``.
        ista_lambda (`float`, *optional*, defaults to 0.1):
            ℓ₁ weight ``λ`` of the sparse-coding objective.
        ista_residual (`bool`, *optional*, defaults to `False`):
            Ablation, not in the book or the authors' code: add the layer input back after ISTA
            (``Z⁺ = Z½ + ISTA(LN Z½)``), as CRATE-α does after ODL. The output is then no longer a sparse code.
        odl_expansion (`int`, *optional*, defaults to 4):
            ODL dictionary width ``s / d``.
        odl_steps (`int`, *optional*, defaults to 2):
            ODL proximal-gradient steps ``T``.
        pooling (`str`, *optional*, defaults to `"cls"`):
            Feature extractor f^ext: `"cls"` takes the class token, `"mean"` averages all tokens.
        patch_embedding_type (`str`, *optional*, defaults to `"linear"`):
            `"linear"`: CRATE's ``LN → Linear → LN`` on flattened patches; `"conv"`: CRATE-α's strided conv.
        position_embedding_type (`str`, *optional*):
            `"learned"`: CRATE's learned position table (a parameter, interpolated for other image sizes);
            `"sincos"`: CRATE-MAE's fixed 2-D sin-cos table (a non-persistent buffer, evaluated on other grids),
            which also selects MAE's initialisation (xavier-uniform linears, normal(``initializer_range``) class
            and mask tokens) for the whole model. `None` lets the architecture choose and records the choice:
            `"learned"` for `CrateModel` / `CrateForImageClassification`, `"sincos"` for
            `CrateForMaskedImageModeling`, so that `AutoModel` rebuilds a saved CRATE-MAE's encoder exactly.
        attention_output_bias (`bool`, *optional*, defaults to `True`):
            Bias on the MSSA output projection (CRATE yes, CRATE-α no).
        image_size (`int`, *optional*, defaults to 224):
            Image side the position table is built for; other sizes divisible by the patch are interpolated.
        patch_size (`int`, *optional*, defaults to 16):
            Patch side.
        num_channels (`int`, *optional*, defaults to 3):
            Input channels.
        hidden_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout on the embeddings and after the MSSA output projection.
        attention_probs_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout on the attention probabilities.
        layer_norm_eps (`float`, *optional*, defaults to 1e-5):
            LayerNorm epsilon (1e-5 in CRATE, 1e-6 in CRATE-α).
        pooler_layer_norm_eps (`float`, *optional*):
            Epsilon of the feature extractor's LayerNorm (``pooler_norm``, the head's ``LN``); defaults to
            ``layer_norm_eps``. Checkpoints converted from the CRATE-α torch port (UCSC-VLAA/CRATE-alpha
            ``torch_inference``) set 1e-5: that port's head keeps PyTorch's default while its layers use 1e-6.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal init of linear layers.
        position_embedding_init_std (`float`, *optional*, defaults to 1.0):
            Standard deviation of the class-token and position-table init (1.0 in the CRATE code, 0.02 in
            CRATE-α). CRATE-MAE ignores it: its class and mask tokens use ``initializer_range`` and its
            positions are fixed sin-cos tables.
        mask_ratio (`float`, *optional*, defaults to 0.75):
            CRATE-MAE only: fraction of patches replaced by the mask token when `CrateForMaskedImageModeling` is
            called without `bool_masked_pos` (in ``[0, 1)``; spec ``crate_family.md`` §6).
        decoder_num_hidden_layers (`int`, *optional*):
            CRATE-MAE only: number of decoder layers; defaults to ``num_hidden_layers`` (the authors build the
            decoder as deep as the encoder).
        norm_pix_loss (`bool`, *optional*, defaults to `False`):
            CRATE-MAE only: standardise each target patch by its own mean and variance before the loss (He et
            al.'s ``norm_pix_loss``; off in CRATE-MAE).

    The CRATE-MAE encoder uses ``ista_lambda=0.5`` (spec §6): the `crate-mae-*` presets set it, a hand-built
    configuration must set it explicitly.

    Example:

    ```python
    >>> from whitebox_hf import CrateConfig, CrateForImageClassification

    >>> config = CrateConfig.from_preset("crate-tiny")
    >>> model = CrateForImageClassification(config)
    >>> model.num_parameters()
    6090856
    ```"""

    model_type = "crate"

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    head_dim: int | None = None
    block_type: str = "ista"
    ista_step_size: float = 0.1
    ista_lambda: float = 0.1
    ista_residual: bool = False
    odl_expansion: int = 4
    odl_steps: int = 2
    pooling: str = "cls"
    patch_embedding_type: str = "linear"
    position_embedding_type: str | None = None
    attention_output_bias: bool = True
    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    layer_norm_eps: float = 1e-5
    pooler_layer_norm_eps: float | None = None
    initializer_range: float = 0.02
    position_embedding_init_std: float = 1.0
    mask_ratio: float = 0.75
    decoder_num_hidden_layers: int | None = None
    norm_pix_loss: bool = False

    def __post_init__(self, **kwargs):
        _configuration_crate_check_positive_int(self, "hidden_size", "num_hidden_layers", "num_attention_heads", "image_size",
                           "patch_size", "num_channels")
        resolve_head_dim(self)
        if self.image_size % self.patch_size:
            raise ValueError(
                f"`patch_size` ({self.patch_size}) must divide `image_size` ({self.image_size})"
            )
        check_choice(self, "pooling", _POOLING)
        check_choice(self, "patch_embedding_type", _PATCH_EMBEDDING_TYPES)
        check_choice(self, "position_embedding_type", _POSITION_EMBEDDING_TYPES)
        if self.position_embedding_type == "sincos" and self.hidden_size % 4:
            raise ValueError(f"`position_embedding_type='sincos'` (2-D sin-cos positions) needs `hidden_size` "
                             f"divisible by 4, got {self.hidden_size}")
        check_sparse_coding_fields(self)
        check_positive(self, "layer_norm_eps", "initializer_range", "position_embedding_init_std")
        if self.pooler_layer_norm_eps is not None:
            check_positive(self, "pooler_layer_norm_eps")
        check_probability(self, "hidden_dropout_prob", "attention_probs_dropout_prob", "mask_ratio")
        if self.decoder_num_hidden_layers is None:
            self.decoder_num_hidden_layers = self.num_hidden_layers
        _configuration_crate_check_positive_int(self, "decoder_num_hidden_layers")
        super().__post_init__(**kwargs)

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "CrateConfig":
        """The book's configuration ``name`` (one of `CRATE_PRESETS`: 224², patch 16, 1000 labels), with
        any field overridden by keyword."""
        if name not in CRATE_PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(CRATE_PRESETS)}")
        kwargs = dict(image_size=224, patch_size=16, num_channels=3, num_labels=1000)
        kwargs.update(CRATE_PRESETS[name])
        kwargs.update(overrides)
        return cls(**kwargs)


# ---------------------------------------- whitebox_hf.models.crate.modeling_crate
import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.conversion_mapping import register_checkpoint_conversion_mapping
from transformers.core_model_loading import WeightRenaming
from transformers.modeling_outputs import BaseModelOutputWithPooling, ImageClassifierOutput
from transformers.utils import ModelOutput





def check_patch_mask(bool_masked_pos) -> None:
    """``bool_masked_pos`` must be a tensor of bools or of exact 0/1 values (values read on CPU only)."""
    check_tensor("bool_masked_pos", bool_masked_pos)
    check_binary_mask("bool_masked_pos", bool_masked_pos)

class CrateEmbeddings(nn.Module):
    """f^emb: patch embedding, class token and positions.

    Positions are CRATE's learned table (interpolated for other image sizes) or, with
    ``position_embedding_type="sincos"``, CRATE-MAE's fixed 2-D sin-cos table (a non-persistent buffer, evaluated
    on other grids). With ``use_mask_token`` the patches chosen by ``bool_masked_pos`` are replaced by a learned
    mask token *before* positions are added, so every masked slot still knows where it is (CRATE-MAE, spec §6).
    """

    def __init__(self, config: CrateConfig, use_mask_token: bool = False):
        super().__init__()
        if config.position_embedding_type not in ("learned", "sincos"):
            raise ValueError(f"`position_embedding_type` must be resolved to 'learned' or 'sincos' before the "
                             f"embeddings are built, got {config.position_embedding_type!r}")
        if config.patch_embedding_type == "linear":
            self.patch_embeddings = LinearPatchEmbedding(
                config.num_channels, config.patch_size, config.hidden_size, config.layer_norm_eps
            )
        else:
            self.patch_embeddings = ConvPatchEmbedding(config.num_channels, config.patch_size, config.hidden_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size)) if use_mask_token else None
        self.position_embedding_type = config.position_embedding_type
        self.grid_size = config.image_size // config.patch_size
        if self.position_embedding_type == "sincos":
            # Frozen by construction: a buffer, filled again in `_init_weights` (it is not saved).
            self.register_buffer("position_embeddings", self.sincos_table(), persistent=False)
        else:
            self.position_embeddings = nn.Parameter(torch.zeros(1, config.num_patches + 1, config.hidden_size))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.patch_size = config.patch_size

    def sincos_table(self) -> torch.Tensor:
        """The sin-cos table of the configured grid (what `position_embeddings` holds in ``"sincos"`` mode)."""
        return sincos_position_embedding_2d(self.cls_token.shape[-1], self.grid_size, self.grid_size)

    def positions(self, grid_height: int, grid_width: int) -> torch.Tensor:
        if self.position_embedding_type == "learned":
            return interpolate_position_embedding(self.position_embeddings, grid_height, grid_width)
        return sincos_positions(self.position_embeddings, self.grid_size, grid_height, grid_width)

    def forward(self, pixel_values: torch.Tensor, bool_masked_pos: torch.Tensor | None = None) -> torch.Tensor:
        patch_tokens = self.patch_embeddings(pixel_values)  # validates the input shape
        batch_size, num_patches, _ = patch_tokens.shape
        if bool_masked_pos is not None:
            if self.mask_token is None:
                raise ValueError(
                    "`bool_masked_pos` needs a mask token: build `CrateModel(config, use_mask_token=True)`"
                )
            if tuple(bool_masked_pos.shape) != (batch_size, num_patches):
                raise ValueError(
                    f"`bool_masked_pos` must have shape (batch, num_patches) = {(batch_size, num_patches)}, "
                    f"got {tuple(bool_masked_pos.shape)}"
                )
            mask = bool_masked_pos.to(device=patch_tokens.device, dtype=torch.bool).unsqueeze(-1)
            patch_tokens = torch.where(mask, self.mask_token.to(patch_tokens.dtype), patch_tokens)
        height, width = pixel_values.shape[-2:]
        positions = self.positions(height // self.patch_size, width // self.patch_size)
        cls_tokens = self.cls_token.expand(batch_size, -1, -1)
        tokens = torch.cat([cls_tokens, patch_tokens], dim=1) + positions
        return self.dropout(tokens)


def sincos_positions(table: torch.Tensor, grid_size: int, grid_height: int, grid_width: int) -> torch.Tensor:
    """``table`` (the sin-cos table of a ``grid_size``² grid) or the same formula evaluated on another grid."""
    if (grid_height, grid_width) == (grid_size, grid_size):
        return table
    # Sin-cos positions are a formula, not a learned table: evaluate it on the new grid.
    return sincos_position_embedding_2d(table.shape[-1], grid_height, grid_width).to(table)


class CrateLayer(GradientCheckpointingLayer):
    """One CRATE layer (book §8.4.1):

        Z^{ℓ+½} = Z^ℓ + MSSA(LN(Z^ℓ))                       compression against K subspaces
        Z^{ℓ+1} = ISTA(LN(Z^{ℓ+½}))                          CRATE: sparse codes, no residual
        Z^{ℓ+1} = Z^{ℓ+½} + ODL(LN(Z^{ℓ+½}))                 CRATE-α: overcomplete dictionary, residual
        Z^{ℓ+1} = Z^{ℓ+½} + ISTA(LN(Z^{ℓ+½}))                ablation (`ista_residual=True`), not in the book

    With ``is_causal`` the MSSA masks future tokens and can use a KV cache: the layer of the causal CRATE
    language model (spec ``crate_family.md`` §5), which reads the same configuration fields.
    """

    def __init__(self, config: CrateConfig, is_causal: bool = False, layer_idx: int | None = None):
        super().__init__()
        self.block_type = config.block_type
        # CRATE-α (ODL) always adds its input back; plain CRATE only as the `ista_residual` ablation.
        self.sparse_coding_residual = config.block_type == "odl" or config.ista_residual
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = MultiHeadSubspaceSelfAttention.from_config(
            config, config.attention_output_bias, is_causal=is_causal, layer_idx=layer_idx
        )
        self.sparse_coding_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        if config.block_type == "ista":
            self.sparse_coding = ISTA(config.hidden_size, config.ista_step_size, config.ista_lambda)
        else:
            self.sparse_coding = OvercompleteDictionaryLearning(
                config.hidden_size, config.odl_expansion, config.odl_steps, config.ista_step_size, config.ista_lambda
            )

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        attn_implementation: str = "sdpa",
        past_key_values=None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        compressed, attention_probabilities = self.attention(
            self.attention_norm(hidden_states),
            attention_mask=attention_mask,
            output_attentions=output_attentions,
            attn_implementation=attn_implementation,
            past_key_values=past_key_values,
        )
        compressed = hidden_states + compressed
        sparse = self.sparse_coding(self.sparse_coding_norm(compressed))
        if self.sparse_coding_residual:
            sparse = compressed + sparse
        return sparse, attention_probabilities


class CratePreTrainedModel(WhiteboxPreTrainedModel):
    config: CrateConfig
    config_class = CrateConfig
    base_model_prefix = "crate"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["CrateEmbeddings", "CrateLayer", "CrateMAEDecoderLayer"]

    @torch.no_grad()
    def _init_weights(self, module):
        # A sin-cos configuration is a CRATE-MAE (or its encoder, loaded alone): MAE's scheme for every module
        # (spec §6), xavier-uniform Linears and patch projection, normal(0.02) tokens. The ISTA dictionaries keep
        # CRATE's kaiming-uniform init in both schemes (MAE's `apply` only visits Linear and LayerNorm). The
        # backbone is a sub-model with its own `_init_weights`, so the choice must follow the configuration,
        # not the class.
        mae = self.config.position_embedding_type == "sincos"
        if mae and isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif mae and isinstance(module, nn.Conv2d):
            # xavier on the weight viewed as (d, C·ps²), as MAE does; bound computed here so the init
            # function sees the real parameter (and its loaded/initialised flag), not a view.
            fan_out, fan_in = module.weight.shape[0], module.weight[0].numel()
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            init.uniform_(module.weight, -bound, bound)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, CrateEmbeddings):
            std = self.config.initializer_range if mae else self.config.position_embedding_init_std
            init.normal_(module.cls_token, mean=0.0, std=std)
            if module.mask_token is not None:
                init.normal_(module.mask_token, mean=0.0, std=self.config.initializer_range)
            if mae:
                init.copy_(module.position_embeddings, module.sincos_table())
            else:
                init.normal_(module.position_embeddings, mean=0.0, std=std)
        elif isinstance(module, CrateForMaskedImageModeling):
            grid = self.config.image_size // self.config.patch_size
            init.copy_(module.decoder_position_embeddings,
                       sincos_position_embedding_2d(self.config.hidden_size, grid, grid))
        else:
            super()._init_weights(module)
            if isinstance(module, (ISTA, OvercompleteDictionaryLearning)):
                # The dictionaries keep the authors' kaiming-uniform init (Ma-Lab-Berkeley/CRATE, CRATE-alpha).
                module.reset_parameters()


class CrateModel(CratePreTrainedModel):
    """The CRATE backbone: f^emb, L CRATE layers (f^backbone) and the feature extractor f^ext.

    `last_hidden_state` is ``Z^L`` (for CRATE: non-negative sparse codes); `pooler_output` is
    ``LN(pool(Z^L))``, the feature a classification head or probe reads.

    It is also the encoder of CRATE-MAE (`CrateForMaskedImageModeling.crate`, built with ``use_mask_token=True``):
    `AutoModel` on a CRATE-MAE folder gives this class with every encoder weight loaded (only the decoder and the
    mask token are left over), and its `pooler_output` (class-token pooling) is the class token of the MAE's
    representation.

    Args:
        config (`CrateConfig`): the model configuration; an unset ``position_embedding_type`` becomes
            `"learned"` (recorded in the configuration).
        use_mask_token (`bool`, *optional*, defaults to `False`): build the learned mask token that
            ``forward(bool_masked_pos=...)`` puts in place of the masked patches.
    """

    def __init__(self, config: CrateConfig, use_mask_token: bool = False):
        if config.position_embedding_type is None:
            config.position_embedding_type = "learned"
        super().__init__(config)
        self.embeddings = CrateEmbeddings(config, use_mask_token=use_mask_token)
        self.layers = nn.ModuleList([CrateLayer(config, layer_idx=i) for i in range(config.num_hidden_layers)])
        pooler_eps = config.layer_norm_eps if config.pooler_layer_norm_eps is None else config.pooler_layer_norm_eps
        self.pooler_norm = nn.LayerNorm(config.hidden_size, eps=pooler_eps)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embeddings

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        bool_masked_pos: torch.BoolTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling | tuple:
        r"""
        bool_masked_pos (`torch.BoolTensor` of shape `(batch, num_patches)`, *optional*):
            True for the patches to replace by the mask token (needs ``use_mask_token=True``).
        """
        if pixel_values is None:
            raise ValueError("`pixel_values` is required")
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        backend = self._attention_backend(output_attentions)

        # Checked before the cast to the model's dtype, which would hide integer, bool or complex images.
        check_pixel_values(pixel_values, self.config.num_channels, self.config.patch_size)
        if bool_masked_pos is not None:
            check_patch_mask(bool_masked_pos)
        expected_dtype = self.embeddings.cls_token.dtype
        hidden_states = self.embeddings(pixel_values.to(expected_dtype), bool_masked_pos=bool_masked_pos)
        hidden_states, all_hidden_states, all_attentions = run_layers(
            self.layers, hidden_states, output_hidden_states, output_attentions, attn_implementation=backend
        )

        pooled = hidden_states[:, 0] if self.config.pooling == "cls" else hidden_states.mean(dim=1)
        pooled = self.pooler_norm(pooled)
        if not return_dict:
            return tuple(v for v in (hidden_states, pooled, all_hidden_states, all_attentions) if v is not None)
        return BaseModelOutputWithPooling(
            last_hidden_state=hidden_states,
            pooler_output=pooled,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
        )


class CrateForImageClassification(CratePreTrainedModel):
    """CRATE with the linear head h on the pooled feature (book §8.4.1): ``logits = W·LN(z) + b``."""

    def __init__(self, config: CrateConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.crate = CrateModel(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)  # num_labels >= 1: the config checks it
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> ImageClassifierOutput | tuple:
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.crate(
            pixel_values,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        return image_classifier_output(self, outputs, labels, return_dict, **kwargs)


# ---------------------------------------------------------------------------------------------------- CRATE-MAE


class CrateMAEDecoderLayer(GradientCheckpointingLayer):
    """One CRATE-MAE decoder layer (spec ``crate_family.md`` §6), the encoder layer run "backwards":

        Y      = LN₁(Z) Eᵀ                 E: free d×d bias-free map (a transposed dictionary), no ReLU
        Z_new  = Y − MSSA(LN₂(Y))          MINUS: undo the encoder's compression step

    The encoder's ISTA step sparsifies with a dictionary; the decoder maps codes back with a linear E. The
    encoder adds ``MSSA`` (a gradient step that compresses); the decoder subtracts it (a step that expands).
    """

    def __init__(self, config: CrateConfig, layer_idx: int | None = None):
        super().__init__()
        self.dictionary_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dictionary = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = MultiHeadSubspaceSelfAttention.from_config(
            config, config.attention_output_bias, layer_idx=layer_idx
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        output_attentions: bool = False,
        attn_implementation: str = "sdpa",
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        decoded = self.dictionary(self.dictionary_norm(hidden_states))
        expansion, attention_probabilities = self.attention(
            self.attention_norm(decoded), output_attentions=output_attentions, attn_implementation=attn_implementation
        )
        return decoded - expansion, attention_probabilities


@dataclass
class CrateMaskedImageModelingOutput(ModelOutput):
    r"""
    Output of `CrateForMaskedImageModeling`.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*):
            Per-patch MSE averaged over the masked patches only; `None` when the mask hides no patch (the loss
            is undefined there).
        logits (`torch.FloatTensor` of shape `(batch, num_patches, patch_size² · num_channels)`):
            Predicted pixels of every patch, in `patchify` layout (class token dropped).
        reconstruction (`torch.FloatTensor` of shape `(batch, num_channels, height, width)`):
            `logits` unpatchified into an image.
        mask (`torch.BoolTensor` of shape `(batch, num_patches)`):
            True where a patch was replaced by the mask token (the given `bool_masked_pos` or the sampled one).
        last_hidden_state (`torch.FloatTensor` of shape `(batch, 1 + num_patches, hidden_size)`):
            The encoder's output after its final LayerNorm (class token first): the representation.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            Encoder input and the output of every encoder layer, when `output_hidden_states=True`.
        attentions (`tuple(torch.FloatTensor)`, *optional*):
            Encoder MSSA probabilities per layer, when `output_attentions=True`.
        decoder_hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            Decoder input and the output of every decoder layer, when `output_hidden_states=True`.
        decoder_attentions (`tuple(torch.FloatTensor)`, *optional*):
            Decoder MSSA probabilities per layer, when `output_attentions=True`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    mask: torch.BoolTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    decoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    decoder_attentions: tuple[torch.FloatTensor, ...] | None = None


class CrateForMaskedImageModeling(CratePreTrainedModel):
    r"""CRATE-MAE (spec ``crate_family.md`` §6; Ma-Lab-Berkeley/CRATE ``model/crate_ae/``): a masked
    autoencoder whose encoder is a stack of CRATE layers and whose decoder is the layer-wise inverse
    (`CrateMAEDecoderLayer`).

        pixels ─patch embed─▶ masked patches := mask token ─+ sin-cos─▶ [cls, Z] ─L CRATE layers─▶ LN
               ─+ sin-cos─▶ L' decoder layers ─▶ LN ─▶ Linear(d → ps²·C) ─▶ drop cls ─▶ patches

    Unlike He et al.'s MAE, masked tokens are **not dropped**: the full sequence (class token + every patch)
    goes through the encoder, so the encoder keeps the fixed token geometry CRATE's derivation assumes. The
    mask token replaces the patch embedding *before* positions are added, so every masked slot still knows
    where it is.

    The encoder is a `CrateModel` under ``crate`` (the ``ViTMAEForPreTraining.vit`` pattern), built with a mask token
    and ``position_embedding_type="sincos"``: `AutoModel` on a saved CRATE-MAE gives that encoder with every weight
    loaded. The encoder's final LayerNorm is the backbone's ``pooler_norm`` applied to every token, so the
    backbone's `pooler_output` (class-token pooling) equals ``last_hidden_state[:, 0]`` here.

    Positions are fixed 2-D sin-cos tables (non-persistent buffers, rebuilt for other grid sizes); they are not
    parameters and not in the checkpoint. The authors' model also builds a ``decoder_embed`` Linear(d→d) that
    its forward never calls (encoder and decoder have the same width); it is left out here, as an unused
    parameter gets no gradient and breaks DDP without ``find_unused_parameters``. Hence ``num_parameters()`` is
    smaller than the book's count by ``d² + d`` (``decoder_embed``) and ``2·197·d`` (the two frozen tables):
    24,846,528 vs 25.41M for `crate-mae-small`, 43,745,280 vs 44.64M for `crate-mae-base`.

    Checkpoints saved before the encoder moved under ``crate`` (root keys ``patch_embeddings``, ``cls_token``,
    ``mask_token``, ``encoder_layers``, ``encoder_norm``) still load through this class: the renames are
    registered with transformers' checkpoint-conversion mapping (`CRATE_MAE_LEGACY_RENAMES`), and
    `save_pretrained` writes the current layout.

    Args:
        config (`CrateConfig`): an unset ``position_embedding_type`` becomes `"sincos"` (recorded in the
            configuration); `"learned"` is refused, as CRATE-MAE's positions are fixed tables.
    """

    def __init__(self, config: CrateConfig):
        if config.position_embedding_type is None:
            config.position_embedding_type = "sincos"
        if config.position_embedding_type != "sincos":
            raise ValueError(f"CRATE-MAE uses fixed sin-cos positions: `position_embedding_type` must be 'sincos' "
                             f"(or unset), got {config.position_embedding_type!r}")
        if config.hidden_size % 4:
            raise ValueError(f"CRATE-MAE's 2-D sin-cos positions need `hidden_size` divisible by 4, got "
                             f"{config.hidden_size}")
        super().__init__(config)
        self.crate = CrateModel(config, use_mask_token=True)
        grid = config.image_size // config.patch_size
        self.register_buffer(
            "decoder_position_embeddings", sincos_position_embedding_2d(config.hidden_size, grid, grid),
            persistent=False,
        )
        self.decoder_layers = nn.ModuleList(
            [CrateMAEDecoderLayer(config, layer_idx=i) for i in range(config.decoder_num_hidden_layers)]
        )
        self.decoder_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder_pred = nn.Linear(config.hidden_size, config.patch_size**2 * config.num_channels)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.crate.embeddings.patch_embeddings

    def save_pretrained(self, save_directory, *args, save_original_format: bool = False, **kwargs):
        """`PreTrainedModel.save_pretrained`, but in the current key layout by default: transformers would
        otherwise undo the registered legacy renames (`CRATE_MAE_LEGACY_RENAMES`) and write the old layout, which
        `AutoModel` cannot read."""
        return super().save_pretrained(save_directory, *args, save_original_format=save_original_format, **kwargs)

    def patchify(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` → reconstruction targets ``(B, N, ps²·C)``."""
        return patchify(pixel_values, self.config.patch_size)

    def unpatchify(self, patches: torch.Tensor, grid_size: tuple[int, int] | None = None) -> torch.Tensor:
        """Patches ``(B, N, ps²·C)`` → images ``(B, C, H, W)`` (square grid unless ``grid_size=(h, w)``)."""
        return unpatchify(patches, self.config.patch_size, self.config.num_channels, grid_size)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        bool_masked_pos: torch.BoolTensor | None = None,
        generator: torch.Generator | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> CrateMaskedImageModelingOutput | tuple:
        r"""
        bool_masked_pos (`torch.BoolTensor` of shape `(batch, num_patches)`, *optional*):
            True for the patches to hide. When omitted, each sample hides ``int(num_patches · mask_ratio)``
            patches drawn with `generator` (torch's default generator if `None`) on the generator's device.
        generator (`torch.Generator`, *optional*):
            Source of randomness for the sampled mask.

        `loss` is `None` when the mask hides no patch. For a given mask that takes a look at its values, done on
        CPU tensors only: on an accelerator the check would stall the device, and an empty mask gives a NaN loss.
        """
        if pixel_values is None:
            raise ValueError("`pixel_values` is required")
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        backend = self._attention_backend(output_attentions)

        check_pixel_values(pixel_values, self.config.num_channels, self.config.patch_size)
        pixel_values = pixel_values.to(self.crate.embeddings.cls_token.dtype)
        batch_size = pixel_values.shape[0]
        grid_height = pixel_values.shape[-2] // self.config.patch_size
        grid_width = pixel_values.shape[-1] // self.config.patch_size
        num_patches = grid_height * grid_width
        if bool_masked_pos is None:
            bool_masked_pos = random_patch_mask(
                batch_size, num_patches, self.config.mask_ratio, generator=generator, device=pixel_values.device
            )
            hides_a_patch = int(num_patches * self.config.mask_ratio) > 0
        elif check_patch_mask(bool_masked_pos) or tuple(bool_masked_pos.shape) != (batch_size, num_patches):
            raise ValueError(
                f"`bool_masked_pos` must have shape (batch, num_patches) = {(batch_size, num_patches)}, "
                f"got {tuple(bool_masked_pos.shape)}"
            )
        else:
            hides_a_patch = bool(bool_masked_pos.any()) if bool_masked_pos.device.type == "cpu" else True
        bool_masked_pos = bool_masked_pos.to(device=pixel_values.device, dtype=torch.bool)

        # Spec §6: masked patches are replaced (not dropped), then the full sequence is encoded.
        outputs = self.crate(
            pixel_values,
            bool_masked_pos=bool_masked_pos,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        encoded = self.crate.pooler_norm(outputs.last_hidden_state)

        positions = sincos_positions(self.decoder_position_embeddings, self.crate.embeddings.grid_size,
                                     grid_height, grid_width)
        hidden_states, decoder_hidden_states, decoder_attentions = run_layers(
            self.decoder_layers, encoded + positions, output_hidden_states, output_attentions,
            attn_implementation=backend,
        )
        logits = self.decoder_pred(self.decoder_norm(hidden_states))[:, 1:]
        reconstruction = self.unpatchify(logits, (grid_height, grid_width))

        loss = None
        if hides_a_patch:
            loss = masked_patch_loss(
                logits, self.patchify(pixel_values), bool_masked_pos, normalize_target=self.config.norm_pix_loss
            )

        output = CrateMaskedImageModelingOutput(
            loss=loss,
            logits=logits,
            reconstruction=reconstruction,
            mask=bool_masked_pos,
            last_hidden_state=encoded,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            decoder_hidden_states=decoder_hidden_states,
            decoder_attentions=decoder_attentions,
        )
        return output if return_dict else output.to_tuple()


# Pre-`crate.` CRATE-MAE checkpoints kept the encoder at the root; `from_pretrained` renames their keys on load.
CRATE_MAE_LEGACY_RENAMES = (
    (r"^patch_embeddings", "crate.embeddings.patch_embeddings"),
    (r"^cls_token", "crate.embeddings.cls_token"),
    (r"^mask_token", "crate.embeddings.mask_token"),
    (r"^encoder_layers", "crate.layers"),
    (r"^encoder_norm", "crate.pooler_norm"),
)
register_checkpoint_conversion_mapping(
    CrateForMaskedImageModeling.__name__,
    [WeightRenaming(source, target) for source, target in CRATE_MAE_LEGACY_RENAMES],
    overwrite=True,
)


# ---------------------------------------- whitebox_hf.models.cupid.configuration_cupid_flow
from transformers import PreTrainedConfig

_configuration_cupid_flow_check_positive_int = _validation_check_positive_int


# A small CRATE for the 64² renders of `load_shape_renders`: 8×8 patches, so 1 + 64 image tokens of width 128.
DEFAULT_IMAGE_ENCODER_CONFIG = dict(image_size=64, patch_size=8, num_channels=3, hidden_size=128, num_hidden_layers=4,
                                    num_attention_heads=4)

CUPID_FLOW_PRESETS: dict[str, dict] = {
    # TRELLIS's stage-1 DiT-L sizes (spec §2.1: 24 blocks, width 1024, 16 heads, 16³ = 4096 tokens) on the cube
    # itself: a 64³ cube in 4³ patches gives TRELLIS's 16³ tokens without its conv VAE. Cupid conditions on DINOv2
    # ViT-L/14; a CRATE-Base-sized image encoder stands in (no pretrained DINOv2 offline).
    "cupid-flow-l": dict(
        cube_resolution=64, patch_size=4, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
        image_encoder_config=dict(image_size=224, patch_size=14, num_channels=3, hidden_size=768, num_hidden_layers=12,
                                  num_attention_heads=12),
    ),
    # Spec §4's CPU scale: a 32³ cube in 4³ patches, so 8³ = 512 tokens of width 128, 4 blocks; the 64² renders
    # read by the small CRATE of `DEFAULT_IMAGE_ENCODER_CONFIG`.
    "cupid-flow-cpu": dict(
        cube_resolution=32, patch_size=4, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
        image_encoder_config=dict(DEFAULT_IMAGE_ENCODER_CONFIG),
    ),
}


@strict_config
class CupidFlowConfig(PreTrainedConfig):
    r"""
    Configuration of a `CupidFlowModel`, Cupid's stage 1 (Huang et al., arXiv 2510.20776; book §8.9): a rectified
    flow that generates the occupancy + UV cube of `whitebox_hf.models.cupid.uv_cube` from one image, so that the
    camera follows from the generated 2D-3D correspondences by PnP.

    **What is denoised.** Cupid compresses a 64³ occupancy grid and a 64³ UV cube with two 3D-conv VAEs into a
    16³×16 latent and denoises that. Here the ``(occupancy, u, v)`` cube (mapped to [−1, 1]) is denoised *directly*
    at a coarse resolution: a 3D patch embedding (a strided ``Conv3d``) turns the ``cube_resolution³`` cube into
    ``(cube_resolution / patch_size)³`` tokens (8³ = 512 for the CPU preset's 32³ cube in 4³ patches). Why: on a
    2-core CPU, a cube VAE would be a second model to train and evaluate before the flow can start, and its
    reconstruction error would add to the pose error; the patch embedding gives the transformer the same coarse
    token grid a VAE would, and the cube's three channels need no learned compression.

    **Image condition.** The package's own CRATE image encoder (a `CrateModel` built from
    ``image_encoder_config``, kept inside the model so one folder holds everything) replaces DINOv2: its
    ``last_hidden_state`` (class token + patch tokens) goes through LayerNorm and a linear map to ``hidden_size``
    and every block cross-attends to it. Pretrain it separately (e.g. SimDINO) and copy its weights into
    ``model.image_encoder``; with ``freeze_image_encoder`` it then stays fixed, as DINOv2 does in Cupid. Tokens from
    any encoder of the same width can be passed instead as ``encoder_hidden_states``. The null condition of
    classifier-free guidance is all-zero image tokens (Cupid and TRELLIS zero the DINOv2 features).

    **Blocks.** DiT blocks with adaptive LayerNorm-zero timestep conditioning (TRELLIS's ``ModulatedTransformer
    CrossBlock``): ``x += g₁·SelfAttn(mod₁(LN x))``, ``x += CrossAttn(LN x, image tokens)``, ``x += g₂·MLP(mod₂(LN
    x))``, the shifts, scales and gates from the timestep embedding (zero-initialised, so every block starts as the
    identity). The network receives ``timestep_scale·t`` (TRELLIS: 1000·t), sinusoidally embedded. Positions are a
    learned absolute embedding of the token grid. TRELLIS's QK-RMSNorm is not used.

    **Rectified flow** (spec §2.2): ``x_t = (1 − t)·x₀ + (σ_min + (1 − σ_min)·t)·ε`` (t = 1 is noise), target
    ``v = (1 − σ_min)·ε − x₀``, MSE; training t is logit-normal, ``sigmoid(logit_normal_mean + logit_normal_std·n)``;
    the condition is dropped with probability ``condition_dropout_prob``. Sampling is Euler on
    ``linspace(1, 0, S + 1)`` warped by ``t' = s·t / (1 + (s − 1)·t)`` with ``s = time_shift``, classifier-free
    guidance applied only for t in ``guidance_interval``.

    Args:
        cube_resolution (`int`, *optional*, defaults to 32):
            Side ``R`` of the cube ``(cube_channels, R, R, R)``.
        cube_channels (`int`, *optional*, defaults to 3):
            Channels of the cube: occupancy, u, v.
        dense_uv (`bool`, *optional*, defaults to `False`):
            What the u, v channels hold at *empty* voxels. `False` (Cupid): 0, so only occupied voxels carry a
            projection. `True` (this package's variant): every voxel carries the projection of its centre, so the
            u, v channels are a smooth projective field over the whole cube, the same function of the camera
            everywhere, instead of a field cut by the shape's silhouette. PnP still reads the occupied voxels; the
            flow no longer has to learn where the projection stops.
        patch_size (`int`, *optional*, defaults to 4):
            Side of the cubic patches of the 3D patch embedding; must divide ``cube_resolution``.
        hidden_size (`int`, *optional*, defaults to 128):
            Token width of the flow transformer.
        num_hidden_layers (`int`, *optional*, defaults to 4):
            Number of DiT cross-attention blocks.
        num_attention_heads (`int`, *optional*, defaults to 4):
            Heads of the self- and cross-attention; must divide ``hidden_size``.
        mlp_ratio (`int`, *optional*, defaults to 4):
            Width of each block's GELU MLP relative to ``hidden_size``.
        image_encoder_config (`dict` or `CrateConfig`, *optional*):
            The CRATE image encoder; defaults to `DEFAULT_IMAGE_ENCODER_CONFIG` (64 px, 8×8 patches, width 128, 4
            layers).
        freeze_image_encoder (`bool`, *optional*, defaults to `True`):
            Run the image encoder without gradients and keep its parameters out of training (Cupid's frozen
            DINOv2). Set it to `False` to train the encoder jointly.
        timestep_scale (`float`, *optional*, defaults to 1000.0):
            The network receives ``timestep_scale·t`` for flow time ``t ∈ [0, 1]``.
        sigma_min (`float`, *optional*, defaults to 1e-5):
            ``σ_min`` of the rectified-flow path.
        logit_normal_mean (`float`, *optional*, defaults to 1.0):
            Mean of the normal whose sigmoid is the training time.
        logit_normal_std (`float`, *optional*, defaults to 1.0):
            Standard deviation of that normal.
        condition_dropout_prob (`float`, *optional*, defaults to 0.1):
            Probability ``p_uncond`` that a training example sees the null (all-zero) condition.
        time_shift (`float`, *optional*, defaults to 3.0):
            The sampler's time warp ``s`` (TRELLIS's ``rescale_t``; diffusers' ``shift``).
        guidance_scale (`float`, *optional*, defaults to 8.5):
            Default classifier-free guidance scale ``g`` of `CupidFlowModel.sample`, diffusers' convention
            ``v̂ = v_u + g·(v_c − v_u)``; TRELLIS writes ``(1 + w)·v_c − w·v_u``, so ``g = 1 + w`` (stage 1: w = 7.5).
        guidance_interval (`list[float]`, *optional*, defaults to `[0.5, 1.0]`):
            Flow times ``[t_low, t_high]`` where guidance is applied; elsewhere the conditional velocity is used.
        layer_norm_eps (`float`, *optional*, defaults to 1e-6):
            LayerNorm epsilon.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Std of the normal initialisation of the linear layers and the position embedding.

    Example:

    ```python
    >>> from whitebox_hf import CupidFlowConfig, CupidFlowModel

    >>> model = CupidFlowModel(CupidFlowConfig.from_preset("cupid-flow-cpu"))
    >>> model.config.num_tokens
    512
    ```"""

    model_type = "cupid_flow"
    sub_configs_defaults = {"image_encoder_config": CrateConfig}

    cube_resolution: int = 32
    cube_channels: int = 3
    dense_uv: bool = False
    patch_size: int = 4
    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    mlp_ratio: int = 4
    image_encoder_config: dict | CrateConfig | None = None
    freeze_image_encoder: bool = True
    timestep_scale: float = 1000.0
    sigma_min: float = 1e-5
    logit_normal_mean: float = 1.0
    logit_normal_std: float = 1.0
    condition_dropout_prob: float = 0.1
    time_shift: float = 3.0
    guidance_scale: float = 8.5
    guidance_interval: list[float] | None = None
    layer_norm_eps: float = 1e-6
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        _configuration_cupid_flow_check_positive_int(self, "cube_resolution", "cube_channels", "patch_size", "hidden_size", "num_hidden_layers",
                           "num_attention_heads", "mlp_ratio")
        if self.cube_resolution % self.patch_size:
            raise ValueError(f"`patch_size` ({self.patch_size}) must divide `cube_resolution` "
                             f"({self.cube_resolution})")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"`num_attention_heads` ({self.num_attention_heads}) must divide `hidden_size` "
                             f"({self.hidden_size})")
        if self.image_encoder_config is None:
            self.image_encoder_config = dict(DEFAULT_IMAGE_ENCODER_CONFIG)
        if not isinstance(self.image_encoder_config, (dict, CrateConfig)):
            raise TypeError(f"`image_encoder_config` must be a dict or a CrateConfig, got "
                            f"{type(self.image_encoder_config).__name__}")
        check_positive(self, "timestep_scale", "logit_normal_std", "time_shift", "layer_norm_eps",
                       "initializer_range")
        check_probability(self, "condition_dropout_prob")
        if not 0 <= self.sigma_min < 1:
            raise ValueError(f"`sigma_min` must lie in [0, 1), got {self.sigma_min!r}")
        if self.guidance_scale < 1:
            raise ValueError(f"`guidance_scale` must be >= 1 (1 turns guidance off), got {self.guidance_scale!r}")
        if self.guidance_interval is None:
            self.guidance_interval = [0.5, 1.0]
        interval = self.guidance_interval
        if (len(interval) != 2 or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in interval)
                or not 0 <= interval[0] <= interval[1] <= 1):
            raise ValueError(f"`guidance_interval` must be [t_low, t_high] with 0 <= t_low <= t_high <= 1, got "
                             f"{interval!r}")
        self.guidance_interval = [float(x) for x in interval]
        super().__post_init__(**kwargs)

    @property
    def tokens_per_side(self) -> int:
        """Tokens along each axis of the cube: ``cube_resolution / patch_size``."""
        return self.cube_resolution // self.patch_size

    @property
    def num_tokens(self) -> int:
        """Tokens of the flow transformer: ``tokens_per_side³``."""
        return self.tokens_per_side**3

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "CupidFlowConfig":
        """The configuration ``name`` (one of `CUPID_FLOW_PRESETS`), with any field overridden by keyword."""
        if name not in CUPID_FLOW_PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(CUPID_FLOW_PRESETS)}")
        return cls(**{**CUPID_FLOW_PRESETS[name], **overrides})


# ---------------------------------------- whitebox_hf.models.cupid.modeling_cupid_flow
from dataclasses import dataclass

import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn
from torch.nn import functional as F
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput




def sample_logit_normal_timesteps(batch_size: int, mean: float = 1.0, std: float = 1.0,
                                  generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Training times ``t = sigmoid(mean + std·n)``, ``n ~ N(0, 1)`` (TRELLIS/Cupid: mean 1, std 1, which puts
    more weight near the noise end), shape ``(batch_size,)``."""
    check_positive_int("batch_size", batch_size)
    return torch.sigmoid(mean + std * torch.randn(batch_size, generator=generator, device=device))


def shift_timesteps(t: torch.Tensor, shift: float) -> torch.Tensor:
    """The sampler's time warp ``s·t / (1 + (s − 1)·t)`` (TRELLIS ``rescale_t``; the same map as diffusers'
    ``FlowMatchEulerDiscreteScheduler(shift=s)``): fixes 0 and 1, spends more steps near the noise end for s > 1."""
    if not shift > 0:
        raise ValueError(f"`shift` must be positive, got {shift!r}")
    return shift * t / (1 + (shift - 1) * t)


def _broadcast_time(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def interpolate_flow_path(clean: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
                          sigma_min: float = 1e-5) -> torch.Tensor:
    """``x_t = (1 − t)·x₀ + (σ_min + (1 − σ_min)·t)·ε`` (spec §2.2; t = 1 is noise), ``t`` of shape ``(B,)``."""
    t = _broadcast_time(t, clean)
    return (1 - t) * clean + (sigma_min + (1 - sigma_min) * t) * noise


def flow_matching_target(clean: torch.Tensor, noise: torch.Tensor, sigma_min: float = 1e-5) -> torch.Tensor:
    """The velocity ``d x_t / dt = (1 − σ_min)·ε − x₀`` the network is trained to predict."""
    return (1 - sigma_min) * noise - clean


@dataclass
class CupidFlowOutput(ModelOutput):
    """What `CupidFlowModel.forward` returns.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): the flow-matching MSE between `velocity` and the given
            `target`.
        velocity (`torch.FloatTensor` of shape `(B, C, R, R, R)`): the predicted velocity ``v̂(x_t, t | image)``.
    """

    loss: torch.FloatTensor | None = None
    velocity: torch.FloatTensor | None = None


class _Attention(nn.Module):
    """Softmax multi-head attention of ``hidden_states`` over ``context`` (self-attention when they coincide)."""

    def __init__(self, width: int, context_width: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Linear(width, width)
        self.key_value = nn.Linear(context_width, 2 * width)
        self.output_projection = nn.Linear(width, width)

    def forward(self, hidden_states: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        batch_size, length, width = hidden_states.shape

        def heads(tensor):
            return tensor.view(batch_size, -1, self.num_heads, width // self.num_heads).transpose(1, 2)

        key, value = self.key_value(context).chunk(2, dim=-1)
        output = F.scaled_dot_product_attention(heads(self.query(hidden_states)), heads(key), heads(value))
        return self.output_projection(output.transpose(1, 2).reshape(batch_size, length, width))


class _Modulation(nn.Sequential):
    """SiLU → Linear: the timestep embedding to ``chunks`` vectors of the token width (zero-initialised)."""

    def __init__(self, width: int, chunks: int):
        super().__init__(nn.SiLU(), nn.Linear(width, chunks * width))


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class CupidFlowBlock(GradientCheckpointingLayer):
    """A DiT block with AdaLN-zero timestep modulation and an (ungated) cross-attention to the image tokens."""

    def __init__(self, config: CupidFlowConfig):
        super().__init__()
        width, eps = config.hidden_size, config.layer_norm_eps
        self.norm1 = nn.LayerNorm(width, eps=eps, elementwise_affine=False)
        self.self_attention = _Attention(width, width, config.num_attention_heads)
        self.norm2 = nn.LayerNorm(width, eps=eps)
        self.cross_attention = _Attention(width, width, config.num_attention_heads)
        self.norm3 = nn.LayerNorm(width, eps=eps, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(width, config.mlp_ratio * width), nn.GELU(approximate="tanh"),
                                 nn.Linear(config.mlp_ratio * width, width))
        self.modulation = _Modulation(width, 6)

    def forward(self, hidden_states, context, time_embedding):
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(time_embedding).chunk(6, dim=-1)
        normed = _modulate(self.norm1(hidden_states), shift1, scale1)
        hidden_states = hidden_states + gate1[:, None] * self.self_attention(normed, normed)
        hidden_states = hidden_states + self.cross_attention(self.norm2(hidden_states), context)
        normed = _modulate(self.norm3(hidden_states), shift2, scale2)
        return hidden_states + gate2[:, None] * self.mlp(normed)


class CupidFlowPreTrainedModel(WhiteboxPreTrainedModel):
    config: CupidFlowConfig
    config_class = CupidFlowConfig
    base_model_prefix = "cupid_flow"
    main_input_name = "sample"
    supports_gradient_checkpointing = True
    _no_split_modules = ["CupidFlowBlock"]

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`WhiteboxPreTrainedModel.from_pretrained`, with the image encoder frozen again when
        ``freeze_image_encoder`` (loading replaces the parameters, and with them the ``requires_grad`` flags set in
        ``__init__``)."""
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        if isinstance(model, CupidFlowModel) and model.config.freeze_image_encoder:
            model.image_encoder.requires_grad_(False)
        return loaded

    @torch.no_grad()
    def _init_weights(self, module):
        if not init_dit_weights(self, module, (nn.Linear, nn.Conv3d)):
            super()._init_weights(module)


@torch.no_grad()
def init_dit_weights(model, module, projection_types: tuple) -> bool:
    """DiT's initialisation for the Cupid flows (stage 1 and stage 2): AdaLN-zero modulation, a zero output layer
    (``model.output_projection``; with the zero modulation the velocity is 0 at init), normal(``initializer_range``)
    weights and zero biases for ``projection_types``, unit LayerNorms and a normal ``model.position_embedding``.
    Returns False for a module it leaves to the caller's default."""
    std = model.config.initializer_range
    if isinstance(module, _Modulation):
        init.zeros_(module[1].weight)  # AdaLN-zero: every block starts as the identity
        init.zeros_(module[1].bias)
    elif isinstance(module, projection_types):
        if module is getattr(model, "output_projection", None):
            init.zeros_(module.weight)
        else:
            init.normal_(module.weight, mean=0.0, std=std)
        if module.bias is not None:
            init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        if module.weight is not None:
            init.ones_(module.weight)
            init.zeros_(module.bias)
    elif module is model:
        init.normal_(module.position_embedding, mean=0.0, std=std)
    elif not isinstance(module, TimestepEmbedding):  # its Linear layers are initialised above
        return False
    return True


def _check_cube_tensor(name: str, value, config: CupidFlowConfig, batch_size: int | None = None) -> None:
    resolution, channels = config.cube_resolution, config.cube_channels
    shape_doc = f"(batch, {channels}, {resolution}, {resolution}, {resolution})"
    check_tensor(name, value, ndim=5, shape_doc=shape_doc)
    check_floating_tensor(name, value)
    if tuple(value.shape[1:]) != (channels, resolution, resolution, resolution):
        raise ValueError(f"`{name}` must have shape {shape_doc}, got {tuple(value.shape)}")
    if batch_size is not None and value.shape[0] != batch_size:
        raise ValueError(f"`{name}` must have batch size {batch_size} (that of `sample`), got {value.shape[0]}")
    check_finite_tensor(name, value)


class CupidFlowModel(CupidFlowPreTrainedModel):
    """Cupid stage 1 (see `CupidFlowConfig`): predicts the rectified-flow velocity of a noisy occupancy + UV cube
    given an image."""

    def __init__(self, config: CupidFlowConfig):
        super().__init__(config)
        width, patch = config.hidden_size, config.patch_size
        self.image_encoder = CrateModel(config.image_encoder_config)
        if config.freeze_image_encoder:
            self.image_encoder.requires_grad_(False)
        encoder_width = config.image_encoder_config.hidden_size
        self.context_norm = nn.LayerNorm(encoder_width, eps=config.layer_norm_eps)
        self.context_projection = nn.Linear(encoder_width, width)
        self.patch_embedding = nn.Conv3d(config.cube_channels, width, kernel_size=patch, stride=patch)
        self.position_embedding = nn.Parameter(torch.zeros(1, config.num_tokens, width))
        self.time_projection = Timesteps(width, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(width, width)
        self.blocks = nn.ModuleList(CupidFlowBlock(config) for _ in range(config.num_hidden_layers))
        self.output_norm = nn.LayerNorm(width, eps=config.layer_norm_eps, elementwise_affine=False)
        self.output_modulation = _Modulation(width, 2)
        self.output_projection = nn.Linear(width, patch**3 * config.cube_channels)
        self.gradient_checkpointing = False
        self.post_init()

    # -- conditioning ---------------------------------------------------------------------------------------------

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The image encoder's tokens ``(B, 1 + N, image_encoder_config.hidden_size)`` (before the projection),
        without gradients when ``freeze_image_encoder``."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_image_encoder):
            return self.image_encoder(pixel_values=pixel_values).last_hidden_state

    def _condition(self, pixel_values, encoder_hidden_states, batch_size: int) -> torch.Tensor:
        if (pixel_values is None) == (encoder_hidden_states is None):
            raise ValueError("pass exactly one of `pixel_values` (images for the CRATE encoder) and "
                             "`encoder_hidden_states` (its tokens)")
        if pixel_values is not None:
            check_tensor("pixel_values", pixel_values, ndim=4, shape_doc="(batch, channels, height, width)")
            if pixel_values.shape[0] != batch_size:
                raise ValueError(f"`pixel_values` must have batch size {batch_size} (that of `sample`), got "
                                 f"{pixel_values.shape[0]}")
            return self.encode_image(pixel_values)
        width = self.config.image_encoder_config.hidden_size
        check_tensor("encoder_hidden_states", encoder_hidden_states, ndim=3, shape_doc=f"(batch, tokens, {width})")
        check_floating_tensor("encoder_hidden_states", encoder_hidden_states)
        if encoder_hidden_states.shape[0] != batch_size or encoder_hidden_states.shape[2] != width:
            raise ValueError(f"`encoder_hidden_states` must have shape ({batch_size}, tokens, {width}), got "
                             f"{tuple(encoder_hidden_states.shape)}")
        check_finite_tensor("encoder_hidden_states", encoder_hidden_states)
        return encoder_hidden_states

    # -- the network ----------------------------------------------------------------------------------------------

    def _velocity(self, sample: torch.Tensor, timestep: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
        config = self.config
        batch_size, side, patch = sample.shape[0], config.tokens_per_side, config.patch_size
        tokens = self.patch_embedding(sample).flatten(2).transpose(1, 2) + self.position_embedding
        time_embedding = self.time_embedding(
            self.time_projection(config.timestep_scale * timestep).to(tokens.dtype))
        context = self.context_projection(self.context_norm(image_tokens.to(tokens.dtype)))
        for block in self.blocks:
            tokens = block(tokens, context, time_embedding)
        shift, scale = self.output_modulation(time_embedding).chunk(2, dim=-1)
        patches = self.output_projection(_modulate(self.output_norm(tokens), shift, scale))
        # (B, n³, C·p³) → (B, C, n·p, n·p, n·p), the inverse of the Conv3d patch embedding's layout.
        patches = patches.view(batch_size, side, side, side, config.cube_channels, patch, patch, patch)
        return patches.permute(0, 4, 1, 5, 2, 6, 3, 7).reshape(sample.shape)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        drop_condition: torch.Tensor | None = None,
        target: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> CupidFlowOutput | tuple:
        r"""
        sample (`torch.FloatTensor` of shape `(B, C, R, R, R)`): the noisy cube ``x_t`` (normalised, see
            `whitebox_hf.models.cupid.uv_cube.normalize_cube`).
        timestep (`torch.FloatTensor` of shape `(B,)`): flow times ``t ∈ [0, 1]`` (1 is noise).
        pixel_values (`torch.FloatTensor` of shape `(B, 3, H, W)`, *optional*): the condition images, encoded by the
            CRATE image encoder.
        encoder_hidden_states (`torch.FloatTensor` of shape `(B, N, D_image)`, *optional*): image tokens in place of
            `pixel_values` (exactly one of the two).
        drop_condition (`torch.BoolTensor` of shape `(B,)`, *optional*): rows that see the null condition (zero
            image tokens): classifier-free-guidance dropout in training.
        target (`torch.FloatTensor` of shape `(B, C, R, R, R)`, *optional*): the velocity target
            (`flow_matching_target`); the MSE to it is returned as `loss`.
        """
        if kwargs:
            raise TypeError(f"CupidFlowModel.forward got unexpected arguments {sorted(kwargs)}")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        _check_cube_tensor("sample", sample, self.config)
        batch_size = sample.shape[0]
        check_tensor("timestep", timestep, ndim=1, shape_doc=f"({batch_size},)")
        check_floating_tensor("timestep", timestep)
        if timestep.shape[0] != batch_size:
            raise ValueError(f"`timestep` must have shape ({batch_size},) (one time per sample), got "
                             f"{tuple(timestep.shape)}")
        check_finite_tensor("timestep", timestep)
        if not bool(((timestep >= 0) & (timestep <= 1)).all()):
            raise ValueError(f"`timestep` must lie in [0, 1] (flow time, 1 is noise), got values in "
                             f"[{timestep.min().item():.4g}, {timestep.max().item():.4g}]")
        image_tokens = self._condition(pixel_values, encoder_hidden_states, batch_size)
        if drop_condition is not None:
            check_tensor("drop_condition", drop_condition, ndim=1, shape_doc=f"({batch_size},)")
            if drop_condition.dtype != torch.bool or drop_condition.shape[0] != batch_size:
                raise ValueError(f"`drop_condition` must be a bool tensor of shape ({batch_size},), got "
                                 f"{drop_condition.dtype} {tuple(drop_condition.shape)}")
            image_tokens = image_tokens * (~drop_condition).to(image_tokens.dtype)[:, None, None]
        if target is not None:
            _check_cube_tensor("target", target, self.config, batch_size)
        velocity = self._velocity(sample, timestep, image_tokens)
        loss = F.mse_loss(velocity, target) if target is not None else None
        output = CupidFlowOutput(loss=loss, velocity=velocity)
        return output if return_dict else output.to_tuple()

    # -- training and sampling ------------------------------------------------------------------------------------

    def flow_matching_loss(self, cube: torch.Tensor, pixel_values: torch.Tensor | None = None,
                           encoder_hidden_states: torch.Tensor | None = None,
                           generator: torch.Generator | None = None, forward=None) -> torch.Tensor:
        """One training loss on clean normalised cubes ``(B, C, R, R, R)``: logit-normal times, Gaussian noise, the
        condition dropped with probability ``condition_dropout_prob``, MSE to the rectified-flow velocity.
        ``forward`` runs the network (default: this model); pass its DDP wrapper (what ``accelerator.prepare``
        returned) so that the gradients synchronise across processes."""
        _check_cube_tensor("cube", cube, self.config)
        batch_size, config = cube.shape[0], self.config
        t = sample_logit_normal_timesteps(batch_size, config.logit_normal_mean, config.logit_normal_std,
                                          generator=generator).to(cube.device)
        noise = torch.randn(cube.shape, generator=generator, dtype=cube.dtype).to(cube.device)
        drop = (torch.rand(batch_size, generator=generator) < config.condition_dropout_prob).to(cube.device)
        return (forward or self)(sample=interpolate_flow_path(cube, noise, t, config.sigma_min),
                                 timestep=t.to(cube.dtype), pixel_values=pixel_values, encoder_hidden_states=encoder_hidden_states, drop_condition=drop,
                    target=flow_matching_target(cube, noise, config.sigma_min), return_dict=True).loss

    def guided_velocity(self, sample: torch.Tensor, timestep: torch.Tensor, image_tokens: torch.Tensor,
                        guidance_scale: float, guidance_interval: tuple[float, float]) -> torch.Tensor:
        """``v̂ = v_u + g·(v_c − v_u)`` where every sample's time lies in ``guidance_interval`` (inclusive) and
        ``g ≠ 1``, else the conditional velocity ``v_c`` alone (TRELLIS's interval guidance; ``image_tokens`` are
        encoder tokens, the null condition is zeros). ``timestep`` ``(B,)`` is shared by the batch in sampling."""
        conditional = self(sample=sample, timestep=timestep, encoder_hidden_states=image_tokens,
                           return_dict=True).velocity
        low, high = guidance_interval
        inside = bool(((timestep >= low) & (timestep <= high)).all())
        if guidance_scale == 1 or not inside:
            return conditional
        unconditional = self(sample=sample, timestep=timestep, encoder_hidden_states=torch.zeros_like(image_tokens),
                             return_dict=True).velocity
        return unconditional + guidance_scale * (conditional - unconditional)

    def make_scheduler(self) -> FlowMatchEulerDiscreteScheduler:
        """diffusers' Euler flow scheduler with TRELLIS's time warp (``shift = time_shift``). It matches the
        sampler of spec §2.2 when given the grid ``linspace(1, 0, S + 1)`` (`sample` does this): its default grid
        ends at ``1/1000`` instead of 0. It knows nothing of the guidance interval or of σ_min (the path's
        ``σ_min = 1e-5`` offset is below the sampler's resolution and is ignored there), both handled in `sample`."""
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=self.config.time_shift)

    @torch.no_grad()
    def sample(self, pixel_values: torch.Tensor | None = None, encoder_hidden_states: torch.Tensor | None = None,
               num_inference_steps: int = 25, guidance_scale: float | None = None,
               guidance_interval: tuple[float, float] | None = None, generator: torch.Generator | None = None,
               latents: torch.Tensor | None = None) -> torch.Tensor:
        """Euler sampling of normalised cubes ``(B, C, R, R, R)`` given images (or their tokens): ``x_{t'} = x_t −
        (t − t')·v̂`` on the shifted grid, with interval classifier-free guidance (defaults from the config).
        `whitebox_hf.models.cupid.uv_cube.denormalize_cube` then `camera_from_uv_cube` give the camera."""
        check_positive_int("num_inference_steps", num_inference_steps)
        guidance_scale = self.config.guidance_scale if guidance_scale is None else guidance_scale
        if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)) or guidance_scale < 1:
            raise ValueError(f"`guidance_scale` must be a number >= 1 (1 turns guidance off), got {guidance_scale!r}")
        guidance_interval = tuple(self.config.guidance_interval if guidance_interval is None else guidance_interval)
        if len(guidance_interval) != 2 or not 0 <= guidance_interval[0] <= guidance_interval[1] <= 1:
            raise ValueError(f"`guidance_interval` must be (t_low, t_high) with 0 <= t_low <= t_high <= 1, got "
                             f"{guidance_interval!r}")
        reference = pixel_values if pixel_values is not None else encoder_hidden_states
        if reference is None:
            raise ValueError("pass exactly one of `pixel_values` and `encoder_hidden_states`")
        batch_size = reference.shape[0]
        image_tokens = self._condition(pixel_values, encoder_hidden_states, batch_size)
        resolution, dtype = self.config.cube_resolution, self.dtype
        shape = (batch_size, self.config.cube_channels, resolution, resolution, resolution)
        if latents is None:
            latents = torch.randn(shape, generator=generator, dtype=dtype).to(self.device)
        else:
            _check_cube_tensor("latents", latents, self.config, batch_size)
        scheduler = self.make_scheduler()
        scheduler.set_timesteps(sigmas=torch.linspace(1, 0, num_inference_steps + 1)[:-1].numpy(),
                                device=self.device)
        for timestep in scheduler.timesteps:
            t = (timestep / scheduler.config.num_train_timesteps).expand(batch_size).to(dtype)
            velocity = self.guided_velocity(latents, t, image_tokens, guidance_scale, guidance_interval)
            latents = scheduler.step(velocity, timestep, latents).prev_sample
        return latents
