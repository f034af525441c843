# Bundled from `whitebox_hf.models.sita_vae.modeling_sita_vae` by whitebox_hf 0.1.0, with the whitebox_hf modules it imports (whitebox_hf.utils.validation, whitebox_hf.nn.sparse_coding, whitebox_hf.nn.attention, whitebox_hf.models.modeling_utils, whitebox_hf.models.validation, whitebox_hf.models.sita_vae.configuration_sita_vae, whitebox_hf.models.sita_vae.mesh_extraction).
# Only import statements were edited (the package's own imports removed), so this file needs no whitebox_hf
# install. Do not edit by hand.
"""PyTorch SITA-VAE: Michelangelo's shape-image-text-aligned variational autoencoder (spec
``threed_and_motion.md`` §1.1-1.2; NeuralCarver/Michelangelo ``sal_perceiver.py``, ``tsal/loss.py``).

    surface points (B, N, 6) ─Fourier + normals → Linear→ point tokens
    1 + L learned queries ─cross-attention(point tokens)→ self-attention ×E → LN → [global | local tokens]
    global token ─W_align→ shape embedding (L2-normalised, image/text space)
    local tokens ─Linear→ (mean, logvar) of N(·) (B, L, d₀) ─sample / mean→ latents ─Linear→ width
    ─self-attention ×D→ ; query points (B, M, 3) ─Fourier → Linear→ cross-attention(latents) → LN → Linear → logit

With ``block_type="crate"`` every self-attention block is a CRATE layer (`whitebox_hf.nn.MultiHeadSubspaceSelfAttention`
then `whitebox_hf.nn.ISTA`) and the cross-attention blocks sparsify with ISTA in place of their MLP.
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


# ---------------------------------------- whitebox_hf.models.sita_vae.configuration_sita_vae
from transformers import PreTrainedConfig

_configuration_sita_vae_check_positive_int = _validation_check_positive_int


_BLOCK_TYPES = ("transformer", "crate")

SITA_VAE_PRESETS: dict[str, dict] = {
    # NeuralCarver/Michelangelo configs/aligned_shape_latents/shapevae-256.yaml (spec threed_and_motion.md §1.1):
    # 1 + 256 queries of width 768, 12 heads, 8 encoder and 16 decoder layers, d0 = 64, CLIP ViT-L/14 space (768).
    "sita-vae-256": dict(
        num_latents=256, hidden_size=768, num_attention_heads=12, num_encoder_layers=8, num_decoder_layers=16,
        latent_channels=64, num_fourier_frequencies=8, alignment_dim=768, qkv_bias=False, init_scale=0.25,
    ),
    # Spec §4's tiny SITA-VAE, sized for a 2-core CPU: 1 + 32 latents, width 128, 4 heads, 2 + 4 layers, d0 = 16.
    # init_scale 1 (std width^-½), not the authors' 0.25: with 0.25 the attention logits start near zero, every
    # query reads the same average of the points, and in a CPU budget the decoder stays on the average shape (64
    # shapes, 500 steps: training-shape IoU 0.10 with 0.25, 0.42 with 1; single shapes fit either way).
    # initial_posterior_logvar −4 (posterior std ≈ 0.14 at the start), not the authors' 0 (std 1): with std 1 and a
    # 3,500-step budget the decoder learned to expect the sampling noise, and decoding the posterior mean scored
    # validation IoU 0.13 where decoding samples scored 0.47 (32 shapes, docs/results/shapes.md's first run).
    "sita-vae-cpu": dict(
        num_latents=32, hidden_size=128, num_attention_heads=4, num_encoder_layers=2, num_decoder_layers=4,
        latent_channels=16, num_fourier_frequencies=8, alignment_dim=128, qkv_bias=False, init_scale=1.0,
        initial_posterior_logvar=-4.0,
    ),
}


@strict_config
class SitaVaeConfig(PreTrainedConfig):
    r"""
    Configuration of a SITA-VAE, the shape-image-text-aligned variational autoencoder of Michelangelo (Zhao et
    al., NeurIPS 2023; book Chapter 8).

    Surface points with normals ``(B, N, 6)`` are Fourier-embedded and read by ``1 + num_latents`` learned queries
    through one cross-attention block, followed by ``num_encoder_layers`` self-attention blocks. Token 0 is the
    global shape embedding, projected into the image/text alignment space; tokens ``1..num_latents`` go through a
    diagonal-Gaussian (KL) bottleneck of ``latent_channels`` channels. The decoder runs ``num_decoder_layers``
    self-attention blocks on the latents, then one cross-attention from Fourier-embedded query points to an
    occupancy logit. The training loss is ``BCE_vol + near_loss_weight·BCE_near + kl_loss_weight·KL +
    contrastive_loss_weight·L_con``.

    Defaults give the authors' 256-latent model (``SitaVaeConfig.from_preset("sita-vae-256")``: 185,249,409
    parameters; ``"sita-vae-cpu"`` is a 2-core CPU size).

    Args:
        num_latents (`int`, *optional*, defaults to 256):
            Number ``L`` of local latent tokens (the encoder has ``1 + L`` queries; the first is the global token).
        hidden_size (`int`, *optional*, defaults to 768):
            Token width of the encoder and decoder.
        num_attention_heads (`int`, *optional*, defaults to 12):
            Attention heads (MSSA subspaces for ``block_type="crate"``); must divide ``hidden_size``.
        head_dim (`int`, *optional*):
            MSSA subspace dimension for ``block_type="crate"``; defaults to ``hidden_size // num_attention_heads``.
            The softmax attention blocks always use ``hidden_size // num_attention_heads``.
        num_encoder_layers (`int`, *optional*, defaults to 8):
            Self-attention blocks after the encoder's cross-attention.
        num_decoder_layers (`int`, *optional*, defaults to 16):
            Self-attention blocks of the decoder, on the local latents.
        latent_channels (`int`, *optional*, defaults to 64):
            Channels ``d₀`` of each local latent token (the diffusion latent is ``(L, d₀)``).
        num_fourier_frequencies (`int`, *optional*, defaults to 8):
            Frequencies ``2⁰ … 2^(F−1)`` of the Fourier point embedding (no π factor, the raw coordinates kept):
            ``3·(2F + 1)`` features per point, plus the 3 normal components in the encoder.
        mlp_ratio (`int`, *optional*, defaults to 4):
            Width of each block's GELU MLP relative to ``hidden_size`` (unused by ``block_type="crate"``).
        qkv_bias (`bool`, *optional*, defaults to `False`):
            Biases on the query/key/value projections (the output projections always have one).
        alignment_dim (`int`, *optional*, defaults to 768):
            Width of the image/text alignment space (CLIP ViT-L/14's 768 in the paper) the global token is
            projected into.
        block_type (`str`, *optional*, defaults to `"transformer"`):
            `"transformer"`: the authors' pre-LN softmax attention + GELU MLP blocks. `"crate"`: the white-box
            variant, whose self-attention blocks are CRATE layers (``Z½ = Z + MSSA(LN Z)``, ``Z⁺ = ISTA(LN Z½)``)
            and whose cross-attention blocks sparsify with ISTA in place of the MLP.
        ista_step_size (`float`, *optional*, defaults to 0.1):
            ISTA step size ``η`` (``block_type="crate"`` only).
        ista_lambda (`float`, *optional*, defaults to 0.1):
            ISTA ℓ₁ weight ``λ`` (``block_type="crate"`` only).
        layer_norm_eps (`float`, *optional*, defaults to 1e-5):
            LayerNorm epsilon.
        init_scale (`float`, *optional*, defaults to 0.25):
            Linear weights are initialised normal with std ``init_scale·hidden_size^-½`` (the authors' scheme);
            the queries use std 0.02 and the alignment projection std ``hidden_size^-½``.
        initial_posterior_logvar (`float`, *optional*, defaults to 0.0):
            Initial bias of the posterior log-variance (the authors' zero bias: posterior std 1 at the start); within
            the clamp range [−30, 20]. A negative value starts training with little sampling noise on the latents.
        near_loss_weight (`float`, *optional*, defaults to 0.1):
            Weight of the BCE on the near-surface half of the query points.
        kl_loss_weight (`float`, *optional*, defaults to 0.001):
            Weight of the KL to ``N(0, I)``, averaged over tokens and channels.
        contrastive_loss_weight (`float`, *optional*, defaults to 0.1):
            Weight of ``L_con``, the symmetric InfoNCE between the shape embedding and the given image and/or text
            embeddings.
        contrastive_logit_scale (`float`, *optional*, defaults to 100.0):
            Fixed scale of the InfoNCE logits (the frozen CLIP's ``logit_scale.exp()``, i.e. τ = 0.01).

    Example:

    ```python
    >>> from whitebox_hf import SitaVaeConfig, SitaVaeModel

    >>> model = SitaVaeModel(SitaVaeConfig.from_preset("sita-vae-cpu"))
    >>> model.num_parameters()
    1624865
    ```"""

    model_type = "sita_vae"

    num_latents: int = 256
    hidden_size: int = 768
    num_attention_heads: int = 12
    head_dim: int | None = None
    num_encoder_layers: int = 8
    num_decoder_layers: int = 16
    latent_channels: int = 64
    num_fourier_frequencies: int = 8
    mlp_ratio: int = 4
    qkv_bias: bool = False
    alignment_dim: int = 768
    block_type: str = "transformer"
    ista_step_size: float = 0.1
    ista_lambda: float = 0.1
    layer_norm_eps: float = 1e-5
    init_scale: float = 0.25
    initial_posterior_logvar: float = 0.0
    near_loss_weight: float = 0.1
    kl_loss_weight: float = 0.001
    contrastive_loss_weight: float = 0.1
    contrastive_logit_scale: float = 100.0

    def __post_init__(self, **kwargs):
        _configuration_sita_vae_check_positive_int(self, "num_latents", "hidden_size", "num_attention_heads", "num_encoder_layers",
                           "num_decoder_layers", "latent_channels", "num_fourier_frequencies", "mlp_ratio",
                           "alignment_dim")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"`num_attention_heads` ({self.num_attention_heads}) must divide `hidden_size` "
                             f"({self.hidden_size})")
        resolve_head_dim(self)
        check_choice(self, "block_type", _BLOCK_TYPES)
        check_positive(self, "ista_step_size", "layer_norm_eps", "init_scale", "contrastive_logit_scale")
        if not isinstance(self.initial_posterior_logvar, (int, float)) or isinstance(self.initial_posterior_logvar, bool) \
                or not -30.0 <= self.initial_posterior_logvar <= 20.0:
            raise ValueError("`initial_posterior_logvar` must be a number in the log-variance clamp range [-30, 20], "
                             f"got {self.initial_posterior_logvar!r}")
        for name in ("ista_lambda", "near_loss_weight", "kl_loss_weight", "contrastive_loss_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be non-negative, got {getattr(self, name)!r}")
        super().__post_init__(**kwargs)

    @property
    def point_embedding_dim(self) -> int:
        """Features of one Fourier-embedded coordinate triple: the raw xyz plus a sine and cosine per frequency."""
        return 3 * (2 * self.num_fourier_frequencies + 1)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "SitaVaeConfig":
        """The configuration ``name`` (one of `SITA_VAE_PRESETS`), with any field overridden by keyword."""
        if name not in SITA_VAE_PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(SITA_VAE_PRESETS)}")
        return cls(**{**SITA_VAE_PRESETS[name], **overrides})


# ---------------------------------------- whitebox_hf.models.sita_vae.mesh_extraction
import os
from pathlib import Path

import numpy as np
import torch




def _check_bound(bound) -> None:
    if isinstance(bound, bool) or not isinstance(bound, (int, float)):
        raise TypeError(f"`bound` must be a number, got {type(bound).__name__}")
    check_finite_float("bound", float(bound))
    if bound <= 0:
        raise ValueError(f"`bound` must be positive (the grid spans [-bound, bound]³), got {bound!r}")


def dense_query_grid(octree_depth: int, bound: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """The ``(G, G, G, 3)`` grid of points spanning ``[−bound, bound]³``, ``G = 2^octree_depth + 1`` (the authors
    call the depth "octree" but evaluate every point: there is no octree). Axis order ``x, y, z`` (``ij`` indexing),
    so a mesh's vertex in index space maps straight to coordinates."""
    check_positive_int("octree_depth", octree_depth)
    _check_bound(bound)
    axis = torch.linspace(-bound, bound, 2**octree_depth + 1, device=device, dtype=dtype)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1)


def meshes_from_occupancy_grid(grid_logits: torch.Tensor, bound: float, level: float = 0.0):
    """Marching cubes (Lewiner) on each ``(G, G, G)`` logit grid of ``grid_logits`` ``(B, G, G, G)`` at ``level``.

    Returns one ``(vertices (V, 3) float32, faces (F, 3) int64)`` pair of NumPy arrays per item, vertices in the
    coordinates of `dense_query_grid`, or ``None`` for an item whose logits never cross ``level`` (an empty or
    full grid has no surface)."""
    from skimage.measure import marching_cubes

    check_tensor("grid_logits", grid_logits, ndim=4, shape_doc="(batch_size, G, G, G)")
    if len(set(grid_logits.shape[1:])) != 1 or grid_logits.shape[1] < 2:
        raise ValueError(f"`grid_logits` must hold cubic grids of side >= 2, got shape {tuple(grid_logits.shape)}")
    _check_bound(bound)
    check_finite_float("level", float(level))
    grid_size = grid_logits.shape[1]
    spacing = 2.0 * bound / (grid_size - 1)
    meshes = []
    for volume in grid_logits.detach().float().cpu().numpy():
        if not np.isfinite(volume).all():
            raise ValueError("`grid_logits` must be finite")
        if not volume.min() < level < volume.max():
            meshes.append(None)
            continue
        vertices, faces, _, _ = marching_cubes(volume, level=level, method="lewiner")
        meshes.append(((vertices * spacing - bound).astype(np.float32), faces.astype(np.int64)))
    return meshes


MESH_SUFFIXES = (".glb", ".obj", ".ply")


def export_mesh(vertices, faces, path) -> Path:
    """Write the triangle mesh ``vertices`` ``(V, 3)`` / ``faces`` ``(F, 3)`` (NumPy arrays or tensors, e.g. one
    item of `meshes_from_occupancy_grid`) to ``path``, in the format its suffix names: ``.glb`` (binary glTF, what
    viewers such as Gradio's ``Model3D`` load), ``.obj`` or ``.ply`` (trimesh's exporters). Returns the path.

    The mesh is written as given (``process=False``): no vertex merging or face removal, so the file holds exactly
    the marching-cubes output."""
    import trimesh

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise ValueError(f"`path` must end in one of {MESH_SUFFIXES} (the mesh format), got {str(path)!r}")
    if isinstance(vertices, torch.Tensor):
        vertices = vertices.detach().cpu().numpy()
    if isinstance(faces, torch.Tensor):
        faces = faces.detach().cpu().numpy()
    vertices, faces = np.asarray(vertices), np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) == 0:
        raise ValueError(f"`vertices` must have shape (V, 3) with V >= 1, got {vertices.shape}")
    if not np.issubdtype(vertices.dtype, np.floating):
        raise TypeError(f"`vertices` must be floating point, got dtype {vertices.dtype}")
    if not np.isfinite(vertices).all():
        raise ValueError("`vertices` must be finite, got NaN or inf")
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise ValueError(f"`faces` must have shape (F, 3) with F >= 1, got {faces.shape}")
    if not np.issubdtype(faces.dtype, np.integer):
        raise TypeError(f"`faces` must hold integer vertex indices, got dtype {faces.dtype}")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise ValueError(f"`faces` must index vertices in [0, {len(vertices) - 1}], got indices in "
                         f"[{faces.min()}, {faces.max()}]")
    if not path.parent.is_dir():
        raise OSError(f"`path`'s folder {str(path.parent)!r} does not exist")
    trimesh.Trimesh(vertices=vertices, faces=faces, process=False).export(path, file_type=suffix[1:])
    return path


def _decode_in_chunks(decode_fn, points: torch.Tensor, chunk_size: int) -> torch.Tensor:
    logits = []
    for start in range(0, len(points), chunk_size):
        chunk = points[start:start + chunk_size]
        out = decode_fn(chunk)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(chunk),):
            raise ValueError(f"`decode_fn` must map (N, 3) points to a (N,) tensor of logits, got "
                             f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__} for "
                             f"N = {len(chunk)}")
        logits.append(out.detach().to(torch.float32).cpu())
    return torch.cat(logits)


def coarse_to_fine_occupancy(decode_fn, octree_depth: int = 7, bound: float = 1.25, coarse_depth: int = 5,
                             level: float = 0.0, dilation: int = 1, margin: float = 0.0, chunk_size: int = 10_000,
                             device=None, dtype=torch.float32) -> tuple[torch.Tensor, int]:
    """The ``(G, G, G)`` logit grid of `dense_query_grid` (``G = 2^octree_depth + 1``), decoding only near the
    surface. Returns ``(logits, num_queries)``, ``num_queries`` being the number of points given to ``decode_fn``
    (the dense grid needs ``G³``).

    ``decode_fn`` maps query points ``(N, 3)`` (on ``device``, ``dtype``) to logits ``(N,)``, e.g.
    ``lambda p: model.decode(latents[:1], p[None])[0]``. Steps:

    1. decode the coarse grid ``2^coarse_depth + 1`` per side (its points are fine-grid points);
    2. mark the coarse cells whose 8 corners are not all on one side of ``level`` (the surface crosses them) or
       where any corner's ``|logit − level| < margin``, grown by ``dilation`` cells in every direction, because a
       cell whose corners agree can still hold a piece of surface next to a crossed cell;
    3. decode every fine point in a marked cell (closed cells, so shared faces agree) not already decoded;
    4. fill every other fine point by trilinear interpolation of the coarse logits. An unmarked cell's corners
       share one side of ``level``, so its interpolated logits do too: the occupancy there equals the coarse one
       and marching cubes finds no surface in it.

    What it can miss: a part of the shape thinner than a coarse cell whose corners all lie outside it (a chair leg
    between coarse points), which the dense grid would resolve. For a signed-distance-like field (1-Lipschitz,
    e.g. ``-sdf``) ``margin = √3/2 · h``, ``h = 2·bound / 2^coarse_depth`` the coarse spacing, rules this out: a
    point of an unmarked cell lies within ``√3/2 · h`` of a corner, so its value keeps that corner's side. A
    decoder's occupancy logits have no such bound; there the tolerance is measured (IoU against the dense grid,
    ``benchmarks/bench_mesh_extraction.py``)."""
    if not callable(decode_fn):
        raise TypeError(f"`decode_fn` must be callable, got {type(decode_fn).__name__}")
    check_positive_int("octree_depth", octree_depth)
    check_positive_int("coarse_depth", coarse_depth)
    if coarse_depth >= octree_depth:
        raise ValueError(f"`coarse_depth` must be smaller than `octree_depth` ({octree_depth}), got {coarse_depth}")
    if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 0:
        raise ValueError(f"`dilation` must be an integer >= 0, got {dilation!r}")
    check_positive_int("chunk_size", chunk_size)
    _check_bound(bound)
    check_finite_float("level", float(level))
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0 or margin == float("inf"):
        raise ValueError(f"`margin` must be a finite number >= 0, got {margin!r}")
    from scipy.ndimage import binary_dilation

    ratio = 2 ** (octree_depth - coarse_depth)
    fine_points = dense_query_grid(octree_depth, bound, device=device, dtype=dtype)
    size = fine_points.shape[0]
    coarse_points = fine_points[::ratio, ::ratio, ::ratio]
    coarse_size = coarse_points.shape[0]
    coarse = _decode_in_chunks(decode_fn, coarse_points.reshape(-1, 3), chunk_size).view(*coarse_points.shape[:3])
    if not torch.isfinite(coarse).all():
        raise ValueError("`decode_fn` returned non-finite logits on the coarse grid")

    inside = (coarse > level).numpy()
    corners = [inside[i:coarse_size - 1 + i, j:coarse_size - 1 + j, k:coarse_size - 1 + k]
               for i in (0, 1) for j in (0, 1) for k in (0, 1)]
    crossed = np.logical_or.reduce(corners) & ~np.logical_and.reduce(corners)
    if margin > 0:
        near = (coarse - level).abs().numpy() < margin
        crossed |= np.logical_or.reduce([near[i:coarse_size - 1 + i, j:coarse_size - 1 + j, k:coarse_size - 1 + k]
                                         for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    if dilation:
        crossed = binary_dilation(crossed, structure=np.ones((3, 3, 3), dtype=bool), iterations=dilation)

    # Fine cells of the marked coarse cells, then the fine points at their corners.
    fine_cells = crossed.repeat(ratio, 0).repeat(ratio, 1).repeat(ratio, 2)
    refine = np.zeros((size, size, size), dtype=bool)
    for i in (0, 1):
        for j in (0, 1):
            for k in (0, 1):
                refine[i:size - 1 + i, j:size - 1 + j, k:size - 1 + k] |= fine_cells
    refine[::ratio, ::ratio, ::ratio] = False  # decoded already
    refine = torch.from_numpy(refine)

    logits = torch.nn.functional.interpolate(coarse[None, None], size=(size,) * 3, mode="trilinear",
                                             align_corners=True)[0, 0]
    logits[::ratio, ::ratio, ::ratio] = coarse  # exact, not re-rounded by the interpolation
    num_refined = int(refine.sum())
    if num_refined:
        refine_device = refine.to(fine_points.device)
        logits[refine] = _decode_in_chunks(decode_fn, fine_points[refine_device], chunk_size)
    return logits, coarse_size**3 + num_refined


# ---------------------------------------- whitebox_hf.models.sita_vae.modeling_sita_vae
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Normal, kl_divergence
from torch.nn import functional as F
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput



# The authors clamp the posterior's log-variance to this range before exponentiating it.
_LOGVAR_RANGE = (-30.0, 20.0)
# Std of the learned encoder queries (the authors' init, independent of the width).
_QUERY_INIT_STD = 0.02


class FourierPointEmbedding(nn.Module):
    """``[x, sin(2^k x), cos(2^k x)]`` for ``k = 0 … F−1`` on each coordinate (no π factor, as the authors):
    ``(..., 3) → (..., 3·(2F + 1))``."""

    def __init__(self, num_frequencies: int):
        super().__init__()
        # A constant of the architecture, rebuilt from the configuration: not saved.
        self.register_buffer("frequencies", 2.0 ** torch.arange(num_frequencies, dtype=torch.float32),
                             persistent=False)

    def forward(self, coordinates: torch.Tensor) -> torch.Tensor:
        angles = (coordinates[..., None] * self.frequencies.to(coordinates.dtype)).flatten(-2)
        return torch.cat([coordinates, angles.sin(), angles.cos()], dim=-1)


class _Attention(nn.Module):
    """Softmax multi-head attention of ``query`` tokens over ``context`` tokens (self-attention when they are the
    same tensor): the authors' ``c_qkv`` / ``c_q`` + ``c_kv`` projections and ``c_proj``."""

    def __init__(self, config: SitaVaeConfig):
        super().__init__()
        width = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = width // self.num_heads
        self.query = nn.Linear(width, width, bias=config.qkv_bias)
        self.key_value = nn.Linear(width, 2 * width, bias=config.qkv_bias)
        self.output_projection = nn.Linear(width, width)

    def forward(self, hidden_states, context, output_attentions=False, attn_implementation="sdpa"):
        batch_size, num_queries, width = hidden_states.shape

        def heads(tensor):
            return tensor.view(batch_size, -1, self.num_heads, self.head_dim).transpose(1, 2)

        key, value = self.key_value(context).chunk(2, dim=-1)
        output, weights = attend(heads(self.query(hidden_states)), heads(key), heads(value), None,
                                 self.head_dim**-0.5, 0.0, False, attn_implementation, output_attentions)
        return self.output_projection(output.transpose(1, 2).reshape(batch_size, num_queries, width)), weights


class _Mlp(nn.Sequential):
    def __init__(self, config: SitaVaeConfig):
        width = config.hidden_size
        super().__init__(nn.Linear(width, config.mlp_ratio * width), nn.GELU(),
                         nn.Linear(config.mlp_ratio * width, width))


class SitaVaeSelfAttentionLayer(GradientCheckpointingLayer):
    """``"transformer"``: ``Z + Attn(LN Z)`` then ``+ MLP(LN ·)``. ``"crate"``: a CRATE layer,
    ``Z½ = Z + MSSA(LN Z)``, ``Z⁺ = ISTA(LN Z½)`` (the sparse code replaces the token, no residual)."""

    def __init__(self, config: SitaVaeConfig):
        super().__init__()
        width, eps = config.hidden_size, config.layer_norm_eps
        self.crate = config.block_type == "crate"
        self.attention_norm = nn.LayerNorm(width, eps=eps)
        if self.crate:
            self.attention = MultiHeadSubspaceSelfAttention(width, config.num_attention_heads, config.head_dim)
            self.sparse_coding = ISTA(width, config.ista_step_size, config.ista_lambda)
        else:
            self.attention = _Attention(config)
            self.mlp = _Mlp(config)
        self.mlp_norm = nn.LayerNorm(width, eps=eps)

    def forward(self, hidden_states, output_attentions=False, attn_implementation="sdpa"):
        normed = self.attention_norm(hidden_states)
        if self.crate:
            update, weights = self.attention(normed, output_attentions=output_attentions,
                                             attn_implementation=attn_implementation)
            return self.sparse_coding(self.mlp_norm(hidden_states + update)), weights
        update, weights = self.attention(normed, normed, output_attentions, attn_implementation)
        hidden_states = hidden_states + update
        return hidden_states + self.mlp(self.mlp_norm(hidden_states)), weights


class SitaVaeCrossAttentionLayer(GradientCheckpointingLayer):
    """``X + Attn(LN₁ X, LN₂ C)`` then ``+ MLP(LN₃ ·)`` (``"crate"``: ``ISTA(LN₃ ·)``, no residual)."""

    def __init__(self, config: SitaVaeConfig):
        super().__init__()
        width, eps = config.hidden_size, config.layer_norm_eps
        self.crate = config.block_type == "crate"
        self.query_norm = nn.LayerNorm(width, eps=eps)
        self.context_norm = nn.LayerNorm(width, eps=eps)
        self.attention = _Attention(config)
        self.mlp_norm = nn.LayerNorm(width, eps=eps)
        if self.crate:
            self.sparse_coding = ISTA(width, config.ista_step_size, config.ista_lambda)
        else:
            self.mlp = _Mlp(config)

    def forward(self, hidden_states, context, output_attentions=False, attn_implementation="sdpa"):
        update, weights = self.attention(self.query_norm(hidden_states), self.context_norm(context),
                                         output_attentions, attn_implementation)
        hidden_states = hidden_states + update
        if self.crate:
            return self.sparse_coding(self.mlp_norm(hidden_states)), weights
        return hidden_states + self.mlp(self.mlp_norm(hidden_states)), weights


@dataclass
class SitaVaeEncoderOutput(ModelOutput):
    """What `SitaVaeModel.encode` returns.

    Args:
        latent_dist (`torch.distributions.Normal`): the diagonal-Gaussian posterior over the local latents,
            batch shape ``(B, L, d₀)``.
        latents (`torch.FloatTensor` of shape `(B, L, d₀)`): a sample of it (training, or ``sample_posterior``) or
            its mean.
        shape_embeds (`torch.FloatTensor` of shape `(B, alignment_dim)`): the global token projected into the
            alignment space, L2-normalised.
    """

    latent_dist: Normal | None = None
    latents: torch.FloatTensor | None = None
    shape_embeds: torch.FloatTensor | None = None


@dataclass
class SitaVaeOutput(ModelOutput):
    """What `SitaVaeModel.forward` returns.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): ``volume_loss + near_loss_weight·near_loss +
            kl_loss_weight·kl_loss + contrastive_loss_weight·contrastive_loss`` over the terms available (returned
            when `occupancy_labels` or an image/text embedding is given).
        logits (`torch.FloatTensor` of shape `(B, M)`, *optional*): occupancy logits at the query points.
        volume_loss, near_loss (`torch.FloatTensor` of shape `()`, *optional*): BCE-with-logits on the first
            (uniform volume) and second (near-surface) half of the query points, given `occupancy_labels`.
        kl_loss (`torch.FloatTensor` of shape `()`): KL of the posterior to ``N(0, I)``, averaged over tokens and
            channels, then over the batch.
        contrastive_loss (`torch.FloatTensor` of shape `()`, *optional*): sum of the symmetric InfoNCE losses of the
            shape embedding against each embedding given.
        latents (`torch.FloatTensor` of shape `(B, L, d₀)`): the latents decoded.
        latent_mean, latent_logvar (`torch.FloatTensor` of shape `(B, L, d₀)`): the posterior's parameters (log-variance
            clamped).
        shape_embeds (`torch.FloatTensor` of shape `(B, alignment_dim)`): the normalised shape embedding.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    volume_loss: torch.FloatTensor | None = None
    near_loss: torch.FloatTensor | None = None
    kl_loss: torch.FloatTensor | None = None
    contrastive_loss: torch.FloatTensor | None = None
    latents: torch.FloatTensor | None = None
    latent_mean: torch.FloatTensor | None = None
    latent_logvar: torch.FloatTensor | None = None
    shape_embeds: torch.FloatTensor | None = None


class SitaVaePreTrainedModel(WhiteboxPreTrainedModel):
    config: SitaVaeConfig
    config_class = SitaVaeConfig
    base_model_prefix = "sita_vae"
    main_input_name = "surface_points"
    supports_gradient_checkpointing = True
    _no_split_modules = ["SitaVaeSelfAttentionLayer", "SitaVaeCrossAttentionLayer"]

    @torch.no_grad()
    def _init_weights(self, module):
        # The authors' scheme (Michelangelo ``init_linear``): every Linear normal(init_scale·width^-½), zero bias.
        std = self.config.init_scale * self.config.hidden_size**-0.5
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, SitaVaeModel):
            init.normal_(module.queries, mean=0.0, std=_QUERY_INIT_STD)
            # The second half of pre_kl's outputs is the log-variance (encode's chunk order).
            init.constant_(module.pre_kl.bias[module.config.latent_channels:], module.config.initial_posterior_logvar)
            init.normal_(module.shape_projection, mean=0.0, std=self.config.hidden_size**-0.5)
        elif isinstance(module, FourierPointEmbedding):
            init.copy_(module.frequencies, 2.0 ** torch.arange(module.frequencies.numel(), dtype=torch.float32))
        else:
            super()._init_weights(module)
            if isinstance(module, ISTA):
                # The dictionaries keep CRATE's kaiming-uniform init (Ma-Lab-Berkeley/CRATE).
                module.reset_parameters()


def _check_points(name: str, value, columns: int, shape_doc: str, batch_size: int | None = None) -> None:
    check_tensor(name, value, ndim=3, shape_doc=shape_doc)
    check_floating_tensor(name, value)
    if value.shape[-1] != columns:
        raise ValueError(f"`{name}` must have shape {shape_doc}, got {tuple(value.shape)}")
    if batch_size is not None and value.shape[0] != batch_size:
        raise ValueError(f"`{name}` must hold {batch_size} items (the batch of `surface_points`), got "
                         f"{value.shape[0]}")
    check_finite_tensor(name, value)


def _check_embeddings(name: str, value, batch_size: int, dim: int) -> None:
    check_tensor(name, value, ndim=2, shape_doc=f"(batch_size, alignment_dim) = ({batch_size}, {dim})")
    check_floating_tensor(name, value)
    if tuple(value.shape) != (batch_size, dim):
        raise ValueError(f"`{name}` must have shape ({batch_size}, {dim}) (batch_size, alignment_dim), got "
                         f"{tuple(value.shape)}")
    check_finite_tensor(name, value)


def symmetric_info_nce(first: torch.Tensor, second: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """CLIP's symmetric InfoNCE between two batches of embeddings (row ``i`` of each is a positive pair; the other
    rows of the batch are the negatives), on L2-normalised embeddings with logits scaled by ``logit_scale``."""
    logits = logit_scale * F.normalize(first, dim=-1) @ F.normalize(second, dim=-1).T
    targets = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


class SitaVaeModel(SitaVaePreTrainedModel):
    """The SITA-VAE: `encode` surface points to a posterior over local latents and a global shape embedding,
    `decode` latents to occupancy logits at query points, and `forward` for both and the training loss."""

    def __init__(self, config: SitaVaeConfig):
        super().__init__(config)
        width = config.hidden_size
        self.fourier = FourierPointEmbedding(config.num_fourier_frequencies)
        self.point_projection = nn.Linear(config.point_embedding_dim + 3, width)  # + the normals
        self.queries = nn.Parameter(torch.zeros(1 + config.num_latents, width))
        self.encoder_cross_attention = SitaVaeCrossAttentionLayer(config)
        self.encoder_layers = nn.ModuleList(SitaVaeSelfAttentionLayer(config) for _ in range(config.num_encoder_layers))
        self.encoder_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.shape_projection = nn.Parameter(torch.zeros(width, config.alignment_dim))
        self.pre_kl = nn.Linear(width, 2 * config.latent_channels)
        self.post_kl = nn.Linear(config.latent_channels, width)
        self.decoder_layers = nn.ModuleList(SitaVaeSelfAttentionLayer(config) for _ in range(config.num_decoder_layers))
        self.query_projection = nn.Linear(config.point_embedding_dim, width)
        self.decoder_cross_attention = SitaVaeCrossAttentionLayer(config)
        self.decoder_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.occupancy_head = nn.Linear(width, 1)
        self.gradient_checkpointing = False
        self.post_init()

    def encode(self, surface_points: torch.Tensor, sample_posterior: bool | None = None,
               generator: torch.Generator | None = None) -> SitaVaeEncoderOutput:
        """Encode ``surface_points`` ``(B, N, 6)`` (xyz then unit normals) to the posterior over the local latents
        and the normalised shape embedding. ``latents`` is a sample when ``sample_posterior`` (default: in training
        mode), else the posterior mean."""
        _check_points("surface_points", surface_points, 6, "(batch_size, num_points, 6): xyz then normals")
        attn_implementation = self._attention_backend(False)
        xyz, normals = surface_points[..., :3], surface_points[..., 3:]
        points = self.point_projection(torch.cat([self.fourier(xyz), normals], dim=-1))
        tokens = self.queries.to(points.dtype).expand(points.shape[0], -1, -1)
        tokens, _ = self.encoder_cross_attention(tokens, points, attn_implementation=attn_implementation)
        for layer in self.encoder_layers:
            tokens, _ = layer(tokens, attn_implementation=attn_implementation)
        tokens = self.encoder_norm(tokens)
        shape_embeds = F.normalize(tokens[:, 0] @ self.shape_projection, dim=-1)
        mean, logvar = self.pre_kl(tokens[:, 1:]).chunk(2, dim=-1)
        logvar = logvar.clamp(*_LOGVAR_RANGE)
        latent_dist = Normal(mean, torch.exp(0.5 * logvar), validate_args=False)
        if sample_posterior is None:
            sample_posterior = self.training
        if sample_posterior:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            latents = mean + latent_dist.stddev * noise
        else:
            latents = mean
        return SitaVaeEncoderOutput(latent_dist=latent_dist, latents=latents, shape_embeds=shape_embeds)

    def decode(self, latents: torch.Tensor, query_points: torch.Tensor) -> torch.Tensor:
        """Occupancy logits ``(B, M)`` at ``query_points`` ``(B, M, 3)`` of the shapes whose local latents are
        ``latents`` ``(B, L, d₀)``."""
        config = self.config
        check_tensor("latents", latents, ndim=3, shape_doc=f"(batch_size, {config.num_latents}, "
                                                          f"{config.latent_channels})")
        check_floating_tensor("latents", latents)
        if tuple(latents.shape[1:]) != (config.num_latents, config.latent_channels):
            raise ValueError(f"`latents` must have shape (batch_size, {config.num_latents}, {config.latent_channels}), "
                             f"got {tuple(latents.shape)}")
        check_finite_tensor("latents", latents)
        _check_points("query_points", query_points, 3, "(batch_size, num_queries, 3)", batch_size=latents.shape[0])
        attn_implementation = self._attention_backend(False)
        tokens = self.post_kl(latents)
        for layer in self.decoder_layers:
            tokens, _ = layer(tokens, attn_implementation=attn_implementation)
        queries = self.query_projection(self.fourier(query_points))
        queries, _ = self.decoder_cross_attention(queries, tokens, attn_implementation=attn_implementation)
        return self.occupancy_head(self.decoder_norm(queries)).squeeze(-1)

    def occupancy_grid(self, latents: torch.Tensor, octree_depth: int = 7, bound: float = 1.25,
                       chunk_size: int = 10_000) -> torch.Tensor:
        """Occupancy logits ``(B, G, G, G)`` on `dense_query_grid` (``G = 2^octree_depth + 1``, spanning
        ``[−bound, bound]³``: the authors use depth 7, ±1.25 to reconstruct and ±1.1 for generated shapes), decoded
        ``chunk_size`` query points at a time."""
        check_positive_int("chunk_size", chunk_size)
        grid = dense_query_grid(octree_depth, bound, device=latents.device, dtype=latents.dtype)
        points = grid.reshape(1, -1, 3).expand(latents.shape[0], -1, -1)
        logits = torch.cat([self.decode(latents, points[:, start:start + chunk_size])
                            for start in range(0, points.shape[1], chunk_size)], dim=1)
        return logits.view(latents.shape[0], *grid.shape[:3])

    def extract_meshes(self, latents: torch.Tensor, octree_depth: int = 7, bound: float = 1.25,
                       chunk_size: int = 10_000, level: float = 0.0):
        """Marching-cubes meshes of the shapes ``latents`` ``(B, L, d₀)``: `occupancy_grid`, then
        `meshes_from_occupancy_grid` (one ``(vertices, faces)`` NumPy pair per shape, ``None`` where the decoded
        field has no surface)."""
        return meshes_from_occupancy_grid(self.occupancy_grid(latents, octree_depth, bound, chunk_size), bound, level)

    def forward(
        self,
        surface_points: torch.Tensor,
        query_points: torch.Tensor | None = None,
        occupancy_labels: torch.Tensor | None = None,
        image_embeds: torch.Tensor | None = None,
        text_embeds: torch.Tensor | None = None,
        sample_posterior: bool | None = None,
        generator: torch.Generator | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SitaVaeOutput | tuple:
        r"""
        surface_points (`torch.FloatTensor` of shape `(B, N, 6)`): surface samples, xyz then normals.
        query_points (`torch.FloatTensor` of shape `(B, M, 3)`, *optional*): where to predict occupancy; with
            `occupancy_labels` the first ``M/2`` are uniform volume points and the rest near-surface points.
        occupancy_labels (`torch.FloatTensor` of shape `(B, M)`, *optional*): 0/1 (or soft, in [0, 1]) occupancy
            at the query points.
        image_embeds, text_embeds (`torch.FloatTensor` of shape `(B, alignment_dim)`, *optional*): embeddings of
            the same shapes from a frozen image/text model, for the contrastive term.
        sample_posterior (`bool`, *optional*): decode a posterior sample (default: in training mode) or its mean.
        generator (`torch.Generator`, *optional*): the randomness of the sample.
        """
        if kwargs:
            raise TypeError(f"SitaVaeModel.forward got unexpected arguments {sorted(kwargs)}")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        encoded = self.encode(surface_points, sample_posterior=sample_posterior, generator=generator)
        batch_size = surface_points.shape[0]
        if occupancy_labels is not None and query_points is None:
            raise ValueError("`occupancy_labels` needs the `query_points` they label")
        logits = self.decode(encoded.latents, query_points) if query_points is not None else None
        posterior = encoded.latent_dist
        prior = Normal(torch.zeros_like(posterior.loc), torch.ones_like(posterior.scale), validate_args=False)
        kl_loss = kl_divergence(posterior, prior).mean(dim=(1, 2)).mean()
        volume_loss = near_loss = contrastive_loss = None
        if occupancy_labels is not None:
            num_queries = query_points.shape[1]
            check_tensor("occupancy_labels", occupancy_labels, ndim=2, shape_doc=f"({batch_size}, {num_queries})")
            check_floating_tensor("occupancy_labels", occupancy_labels)
            if tuple(occupancy_labels.shape) != (batch_size, num_queries):
                raise ValueError(f"`occupancy_labels` must have shape ({batch_size}, {num_queries}) (one per query "
                                 f"point), got {tuple(occupancy_labels.shape)}")
            check_finite_tensor("occupancy_labels", occupancy_labels)
            if reads_values(occupancy_labels) and not bool(((occupancy_labels >= 0) & (occupancy_labels <= 1)).all()):
                raise ValueError("`occupancy_labels` must lie in [0, 1] (occupancy probabilities)")
            if num_queries % 2:
                raise ValueError(f"`query_points` must hold an even number of points with `occupancy_labels` (first "
                                 f"half volume, second half near-surface), got {num_queries}")
            half = num_queries // 2
            volume_loss = F.binary_cross_entropy_with_logits(logits[:, :half], occupancy_labels[:, :half])
            near_loss = F.binary_cross_entropy_with_logits(logits[:, half:], occupancy_labels[:, half:])
        for name, embeds in (("image_embeds", image_embeds), ("text_embeds", text_embeds)):
            if embeds is None:
                continue
            _check_embeddings(name, embeds, batch_size, self.config.alignment_dim)
            term = symmetric_info_nce(encoded.shape_embeds, embeds, self.config.contrastive_logit_scale)
            contrastive_loss = term if contrastive_loss is None else contrastive_loss + term
        loss = None
        if volume_loss is not None or contrastive_loss is not None:
            loss = self.config.kl_loss_weight * kl_loss
            if volume_loss is not None:
                loss = loss + volume_loss + self.config.near_loss_weight * near_loss
            if contrastive_loss is not None:
                loss = loss + self.config.contrastive_loss_weight * contrastive_loss
        output = SitaVaeOutput(
            loss=loss, logits=logits, volume_loss=volume_loss, near_loss=near_loss, kl_loss=kl_loss,
            contrastive_loss=contrastive_loss, latents=encoded.latents, latent_mean=posterior.loc,
            latent_logvar=2 * posterior.scale.log(), shape_embeds=encoded.shape_embeds,
        )
        return output if return_dict else output.to_tuple()
