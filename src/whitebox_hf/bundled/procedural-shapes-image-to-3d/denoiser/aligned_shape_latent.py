# Bundled from `whitebox_hf.models.denoisers.aligned_shape_latent` by whitebox_hf 0.1.0, with the whitebox_hf modules it imports (whitebox_hf.utils.validation, whitebox_hf.nn.sparse_coding, whitebox_hf.nn.attention, whitebox_hf.models.safe_loading).
# Only import statements were edited (the package's own imports removed), so this file needs no whitebox_hf
# install. Do not edit by hand.
"""`AlignedShapeLatentDenoiser`: Michelangelo's ASLDM (book §8.8; spec ``threed_and_motion.md`` §1.4), the
ε-predictor of diffusion in the SITA-VAE's local-latent space, conditioned on text or image tokens.

Layout (``conditioning="in_context"``, the one that matches the released weights)::

    t token   = MLP(sinusoid(t))                                   (B, 1, w)
    condition = Linear(LN(c))                                      (B, Lc, w)
    latents   = Linear(z)                                          (B, L, w)
    x = [t; condition; latents]
    encoder:  x ← block_i(x), pushing each output                  i = 1..num_layers
    middle:   x ← block(x)
    decoder:  x ← block_j(LN(Linear([x, popped skip])))            j = 1..num_layers   (Linear: 2w → w)
    ε̂ = Linear(LN(x))[:, −L:]

With ``conditioning="cross_attention"`` the sequence is ``[t; latents]`` and every block attends to the projected
condition tokens after its self-attention (the unused alternative of the authors' repository).

``block_type="transformer"`` is a pre-LN transformer block (softmax attention + GELU MLP); ``block_type="crate"`` is
the white-box block of this package: compression by MSSA (`whitebox_hf.nn.MultiHeadSubspaceSelfAttention`, one
subspace basis ``U`` shared by query, key and value) then sparsification by one ISTA step (`whitebox_hf.nn.ISTA`),
both residual as in `CrateDenoiserBlock` (a replacing ISTA step would make the long skips the only path for the
latents). Its cross-attention variant uses the same subspace bases for the latent queries and the condition keys
(= values), i.e. MSSA's compression of the latents against the condition tokens.

Condition padding: ``encoder_attention_mask`` (``(B, Lc)``, 1 = keep) masks padded condition tokens as keys; they
still flow through the network as queries (in-context) but no other token reads them.
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


# ---------------------------------------- whitebox_hf.models.safe_loading
import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path


# Weight files that torch reads by unpickling.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")

CONVERSION_HINT = (
    "convert it once, in a process you trust, with `from safetensors.torch import save_file; import torch; "
    "save_file(torch.load(PATH, weights_only=True), PATH.replace('.bin', '.safetensors'))` (or load the model "
    "and call `save_pretrained(folder)`, which writes safetensors)"
)


def check_no_pickle_only(folder: str | os.PathLike, argument: str = "pretrained_model_name_or_path") -> None:
    """Refuse a local folder whose weights exist only as pickle files (``.bin``…): `OSError` naming them, saying
    why they are refused and how to convert them. A folder with a ``.safetensors`` file, or without any weights
    (a scheduler), passes."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    files = [p for p in folder.iterdir() if p.is_file()]
    if any(p.suffix == ".safetensors" for p in files):
        return
    pickles = sorted(p.name for p in files if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise OSError(
            f"`{argument}`: {folder} holds weights only as {pickles} (pickle), which whitebox_hf refuses on purpose: "
            f"unpickling a file can run arbitrary code. Expected a .safetensors file; {CONVERSION_HINT}"
        )


def first_broken_file(folder: str | os.PathLike) -> tuple[Path, str] | None:
    """The first ``*.json`` that is not a JSON object or ``*.safetensors`` whose header cannot be read in
    ``folder``, with the reason; None if all are readable."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob("*.json")):
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            return path, f"not valid JSON ({error})"
        if not isinstance(value, dict):
            return path, f"expected a JSON object, got a {type(value).__name__}"
    for path in sorted(folder.glob("*.safetensors")):
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 - safe_open is not a dict; a truncated file fails here or when the tensor is read
                    handle.get_slice(key)
        except Exception as error:  # noqa: BLE001 - safetensors raises its own SafetensorError, and OSError
            return path, f"not a readable safetensors file ({' '.join(str(error).split())})"
    return None


@contextlib.contextmanager
def file_errors(folder: str | os.PathLike, what: str) -> Iterator[None]:
    """Turn a failure while loading ``what`` from ``folder`` caused by a broken file into `OSError` naming the
    file; errors not explained by a broken file pass through unchanged."""
    try:
        yield
    except Exception as error:
        broken = first_broken_file(folder)
        if broken is None:
            raise
        path, reason = broken
        raise OSError(f"cannot load {what}: {path} is {reason}") from error


class SafetensorsOnlyModelMixin:
    """Put before `ModelMixin` in the bases: ``from_pretrained`` loads safetensors only (``use_safetensors=False``
    is refused, and a folder holding only pickled ``.bin`` weights is refused before anything reads them), and a
    broken file of the folder raises `OSError` naming it."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        if kwargs.get("use_safetensors") is False:
            raise ValueError(f"`use_safetensors` must be True or unset for {cls.__name__}: pickled weights are "
                             f"refused on purpose (unpickling can run code), got False; {CONVERSION_HINT}")
        kwargs["use_safetensors"] = True
        folder = Path(str(pretrained_model_name_or_path)) / (kwargs.get("subfolder") or "")
        check_no_pickle_only(folder)
        with file_errors(folder, f"{cls.__name__} from {folder}"):
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)


# ---------------------------------------- whitebox_hf.models.denoisers.aligned_shape_latent
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_outputs import Transformer2DModelOutput

# diffusers resolves a custom pipeline component by importing its module path and looking `ModelMixin` up in that
# module's namespace: this import must stay at module level.
from diffusers.models.modeling_utils import ModelMixin
from torch import nn



CONDITIONING_MODES = ("in_context", "cross_attention")
DENOISER_BLOCK_TYPES = ("transformer", "crate")
ATTENTION_BACKENDS = ("sdpa", "eager")


def _additive_key_mask(keep: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """``(B, N)`` 1 = keep → additive ``(B, 1, 1, N)`` mask (0 or the dtype's minimum) for `attend`."""
    if keep is None:
        return None
    return ((1.0 - keep.to(dtype)) * torch.finfo(dtype).min)[:, None, None, :]


class _SoftmaxAttention(nn.Module):
    """Multi-head attention with separate query / key / value projections (self-attention when ``context`` is
    None)."""

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.output_projection = nn.Linear(hidden_size, hidden_size)

    def _heads(self, tensor: torch.Tensor) -> torch.Tensor:
        batch_size, num_tokens, _ = tensor.shape
        return tensor.view(batch_size, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, hidden_states, context=None, attention_mask=None, attn_implementation="sdpa"):
        context = hidden_states if context is None else context
        query, key, value = self._heads(self.query(hidden_states)), self._heads(self.key(context)), \
            self._heads(self.value(context))
        output, _ = attend(query, key, value, attention_mask, self.head_dim**-0.5, 0.0, False, attn_implementation,
                           False)
        batch_size, _, num_tokens, _ = query.shape
        return self.output_projection(output.transpose(1, 2).reshape(batch_size, num_tokens, -1))


class _SubspaceCrossAttention(nn.Module):
    """MSSA's operator with the keys (= values) taken from the condition tokens: ``U_kᵀ z`` queries against
    ``U_kᵀ c`` for the shared bases ``U_k`` of this module."""

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.subspace_projection = nn.Linear(hidden_size, hidden_size, bias=False)
        self.output_projection = nn.Linear(hidden_size, hidden_size)

    def _coordinates(self, tensor: torch.Tensor) -> torch.Tensor:
        batch_size, num_tokens, _ = tensor.shape
        return self.subspace_projection(tensor).view(batch_size, num_tokens, self.num_heads,
                                                     self.head_dim).transpose(1, 2)

    def forward(self, hidden_states, context, attention_mask=None, attn_implementation="sdpa"):
        query, key = self._coordinates(hidden_states), self._coordinates(context)
        output, _ = attend(query, key, key, attention_mask, self.head_dim**-0.5, 0.0, False, attn_implementation,
                           False)
        batch_size, _, num_tokens, _ = query.shape
        return self.output_projection(output.transpose(1, 2).reshape(batch_size, num_tokens, -1))


class AlignedShapeLatentBlock(nn.Module):
    """One residual block: self-attention (softmax or MSSA), optional cross-attention to the condition, then an
    MLP (transformer) or one ISTA step (crate); every sub-layer is pre-LayerNorm and residual."""

    def __init__(self, hidden_size: int, num_heads: int, block_type: str, cross_attention: bool, mlp_ratio: float,
                 ista_step_size: float, ista_lambda: float, norm_eps: float):
        super().__init__()
        self.block_type = block_type
        self.attention_norm = nn.LayerNorm(hidden_size, eps=norm_eps)
        if block_type == "crate":
            self.attention = MultiHeadSubspaceSelfAttention(hidden_size, num_heads, hidden_size // num_heads)
        else:
            self.attention = _SoftmaxAttention(hidden_size, num_heads)
        self.cross_attention_norm = nn.LayerNorm(hidden_size, eps=norm_eps) if cross_attention else None
        if not cross_attention:
            self.cross_attention = None
        elif block_type == "crate":
            self.cross_attention = _SubspaceCrossAttention(hidden_size, num_heads)
        else:
            self.cross_attention = _SoftmaxAttention(hidden_size, num_heads)
        self.feed_forward_norm = nn.LayerNorm(hidden_size, eps=norm_eps)
        if block_type == "crate":
            self.feed_forward = ISTA(hidden_size, ista_step_size, ista_lambda)
        else:
            inner = int(hidden_size * mlp_ratio)
            self.feed_forward = nn.Sequential(nn.Linear(hidden_size, inner), nn.GELU(approximate="tanh"),
                                              nn.Linear(inner, hidden_size))

    def forward(self, hidden_states, self_mask=None, context=None, context_mask=None, attn_implementation="sdpa"):
        normed = self.attention_norm(hidden_states)
        if self.block_type == "crate":
            attended, _ = self.attention(normed, attention_mask=self_mask, attn_implementation=attn_implementation)
        else:
            attended = self.attention(normed, attention_mask=self_mask, attn_implementation=attn_implementation)
        hidden_states = hidden_states + attended
        if self.cross_attention is not None:
            hidden_states = hidden_states + self.cross_attention(
                self.cross_attention_norm(hidden_states), context, attention_mask=context_mask,
                attn_implementation=attn_implementation)
        return hidden_states + self.feed_forward(self.feed_forward_norm(hidden_states))


class AlignedShapeLatentDenoiser(SafetensorsOnlyModelMixin, ModelMixin, ConfigMixin):
    """ε-predictor on SITA-VAE latents ``(B, L, d₀)`` conditioned on condition tokens ``(B, Lc, d_c)`` (see the
    module docstring). Michelangelo's sizes: ``num_latents=256, latent_channels=64, hidden_size=768,
    num_attention_heads=12, num_layers=6`` (image) or ``8`` (text), ``condition_dim=1024`` (CLIP ViT-L/14 image
    tokens) or ``768`` (CLIP text).

    ``from_pretrained`` loads safetensors weights only (`SafetensorsOnlyModelMixin`).

    Args:
        num_latents (`int`, defaults to 256): number of latent tokens ``L`` (the SITA-VAE's ``num_latents``).
        latent_channels (`int`, defaults to 64): latent width ``d₀`` (the SITA-VAE's ``latent_channels``).
        condition_dim (`int`, defaults to 768): width of the condition tokens (384 for MiniLM text tokens, the
            CRATE image tower's ``hidden_size`` for image tokens).
        hidden_size (`int`, defaults to 768): token width ``w`` of the transformer.
        num_layers (`int`, defaults to 6): encoder blocks, and as many decoder blocks (plus one middle block).
        num_attention_heads (`int`, defaults to 12): attention heads (MSSA subspaces for ``block_type="crate"``);
            must divide ``hidden_size``.
        mlp_ratio (`float`, defaults to 4.0): MLP inner width / ``hidden_size`` (transformer blocks only).
        conditioning (`str`, defaults to `"in_context"`): ``"in_context"`` (condition tokens concatenated into the
            self-attention sequence) or ``"cross_attention"`` (blocks cross-attend to them).
        block_type (`str`, defaults to `"transformer"`): ``"transformer"`` or the white-box ``"crate"``
            (MSSA + ISTA).
        timestep_channels (`int`, defaults to 256): sinusoidal timestep features fed to the timestep MLP.
        ista_step_size (`float`, defaults to 0.1): ISTA's ``η`` (crate blocks only).
        ista_lambda (`float`, defaults to 0.1): ISTA's ``λ`` (crate blocks only).
        norm_eps (`float`, defaults to 1e-6): LayerNorm epsilon.
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        num_latents: int = 256,
        latent_channels: int = 64,
        condition_dim: int = 768,
        hidden_size: int = 768,
        num_layers: int = 6,
        num_attention_heads: int = 12,
        mlp_ratio: float = 4.0,
        conditioning: str = "in_context",
        block_type: str = "transformer",
        timestep_channels: int = 256,
        ista_step_size: float = 0.1,
        ista_lambda: float = 0.1,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        for name, value in (("num_latents", num_latents), ("latent_channels", latent_channels),
                            ("condition_dim", condition_dim), ("hidden_size", hidden_size),
                            ("num_layers", num_layers), ("num_attention_heads", num_attention_heads),
                            ("timestep_channels", timestep_channels)):
            check_positive_int(name, value)
        if hidden_size % num_attention_heads:
            raise ValueError(f"`num_attention_heads` ({num_attention_heads}) must divide `hidden_size` "
                             f"({hidden_size})")
        if conditioning not in CONDITIONING_MODES:
            raise ValueError(f"`conditioning` must be one of {CONDITIONING_MODES}, got {conditioning!r}")
        if block_type not in DENOISER_BLOCK_TYPES:
            raise ValueError(f"`block_type` must be one of {DENOISER_BLOCK_TYPES}, got {block_type!r}")
        if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, (int, float)) or not mlp_ratio > 0:
            raise ValueError(f"`mlp_ratio` must be a positive number, got {mlp_ratio!r}")
        self.latent_projection = nn.Linear(latent_channels, hidden_size)
        self.time_proj = Timesteps(num_channels=timestep_channels, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.timestep_embedder = TimestepEmbedding(in_channels=timestep_channels, time_embed_dim=hidden_size)
        self.condition_norm = nn.LayerNorm(condition_dim, eps=norm_eps)
        self.condition_projection = nn.Linear(condition_dim, hidden_size)
        cross = conditioning == "cross_attention"

        def block():
            return AlignedShapeLatentBlock(hidden_size, num_attention_heads, block_type, cross, mlp_ratio,
                                           ista_step_size, ista_lambda, norm_eps)

        self.encoder_blocks = nn.ModuleList(block() for _ in range(num_layers))
        self.middle_block = block()
        self.decoder_blocks = nn.ModuleList(block() for _ in range(num_layers))
        # The long skips: Linear(2w → w) then LayerNorm on [decoder input, popped encoder output].
        self.skip_projections = nn.ModuleList(nn.Linear(2 * hidden_size, hidden_size) for _ in range(num_layers))
        self.skip_norms = nn.ModuleList(nn.LayerNorm(hidden_size, eps=norm_eps) for _ in range(num_layers))
        self.norm_out = nn.LayerNorm(hidden_size, eps=norm_eps)
        self.proj_out = nn.Linear(hidden_size, latent_channels)

    def _check_inputs(self, sample, timestep, encoder_hidden_states, encoder_attention_mask, attn_implementation):
        config = self.config
        check_tensor("sample", sample, ndim=3, shape_doc=f"(batch_size, {config.num_latents}, "
                                                         f"{config.latent_channels})")
        check_floating_tensor("sample", sample)
        if tuple(sample.shape[1:]) != (config.num_latents, config.latent_channels):
            raise ValueError(f"`sample` must have shape (batch_size, {config.num_latents}, {config.latent_channels}), "
                             f"got {tuple(sample.shape)}")
        check_finite_tensor("sample", sample)
        batch_size = sample.shape[0]
        if isinstance(timestep, bool) or not isinstance(timestep, (int, float, torch.Tensor)):
            raise TypeError(f"`timestep` must be a number or a tensor, got {type(timestep).__name__}")
        if isinstance(timestep, torch.Tensor) and not (timestep.ndim == 0 or tuple(timestep.shape) == (batch_size,)):
            raise ValueError(f"`timestep` must be a scalar or of shape ({batch_size},), got {tuple(timestep.shape)}")
        check_tensor("encoder_hidden_states", encoder_hidden_states, ndim=3,
                     shape_doc=f"(batch_size, num_condition_tokens, {config.condition_dim})")
        check_floating_tensor("encoder_hidden_states", encoder_hidden_states)
        if encoder_hidden_states.shape[0] != batch_size or encoder_hidden_states.shape[2] != config.condition_dim:
            raise ValueError(f"`encoder_hidden_states` must have shape ({batch_size}, num_condition_tokens, "
                             f"{config.condition_dim}), got {tuple(encoder_hidden_states.shape)}")
        check_finite_tensor("encoder_hidden_states", encoder_hidden_states)
        if encoder_attention_mask is not None:
            check_tensor("encoder_attention_mask", encoder_attention_mask)
            if encoder_attention_mask.shape != encoder_hidden_states.shape[:2]:
                raise ValueError(f"`encoder_attention_mask` must have shape {tuple(encoder_hidden_states.shape[:2])} "
                                 f"(batch_size, num_condition_tokens), got {tuple(encoder_attention_mask.shape)}")
            check_binary_mask("encoder_attention_mask", encoder_attention_mask)
        if attn_implementation not in ATTENTION_BACKENDS:
            raise ValueError(f"`attn_implementation` must be one of {ATTENTION_BACKENDS}, got {attn_implementation!r}")

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        attn_implementation: str = "sdpa",
        return_dict: bool = True,
    ) -> Transformer2DModelOutput | tuple[torch.Tensor]:
        """Predict the noise ε in ``sample`` ``(B, L, d₀)`` at ``timestep`` (a scalar or ``(B,)``, in the
        scheduler's units 0..T−1) given the condition tokens ``encoder_hidden_states`` ``(B, Lc, condition_dim)``
        with the optional key mask ``encoder_attention_mask`` ``(B, Lc)`` (1 = a real token, 0 = padding).
        ``attn_implementation`` picks the attention kernel (``"sdpa"`` or ``"eager"``; both give the same output).

        Raises:
            TypeError, ValueError: a bad input, naming it (wrong shape or dtype, NaN/inf, a non-0/1 mask, an
                unknown ``attn_implementation``).
        """
        self._check_inputs(sample, timestep, encoder_hidden_states, encoder_attention_mask, attn_implementation)
        batch_size = sample.shape[0]
        timestep = torch.as_tensor(timestep, device=sample.device)
        if timestep.ndim == 0:
            timestep = timestep.expand(batch_size)
        time_token = self.timestep_embedder(self.time_proj(timestep).to(sample.dtype))[:, None]
        condition = self.condition_projection(self.condition_norm(encoder_hidden_states.to(sample.dtype)))
        latents = self.latent_projection(sample)
        condition_keep = None if encoder_attention_mask is None else encoder_attention_mask.to(sample.dtype)
        if self.config.conditioning == "in_context":
            tokens = torch.cat([time_token, condition, latents], dim=1)
            self_mask = None
            if condition_keep is not None:
                ones = condition_keep.new_ones(batch_size, 1)
                keep = torch.cat([ones, condition_keep, ones.expand(batch_size, latents.shape[1])], dim=1)
                self_mask = _additive_key_mask(keep, sample.dtype)
            context, context_mask = None, None
        else:
            tokens = torch.cat([time_token, latents], dim=1)
            self_mask, context = None, condition
            context_mask = _additive_key_mask(condition_keep, sample.dtype)
        options = dict(self_mask=self_mask, context=context, context_mask=context_mask,
                       attn_implementation=attn_implementation)
        skips = []
        for block in self.encoder_blocks:
            tokens = block(tokens, **options)
            skips.append(tokens)
        tokens = self.middle_block(tokens, **options)
        for block, projection, norm in zip(self.decoder_blocks, self.skip_projections, self.skip_norms):
            tokens = norm(projection(torch.cat([tokens, skips.pop()], dim=-1)))
            tokens = block(tokens, **options)
        output = self.proj_out(self.norm_out(tokens))[:, -self.config.num_latents:]
        if not return_dict:
            return (output,)
        return Transformer2DModelOutput(sample=output)
