"""The optimiser side of the training scripts: one update step, the optimiser and the weight-decay groups."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["NO_DECAY_SUFFIXES", "build_optimizer", "causal_lm_parameter_groups", "optimizer_step"]


def optimizer_step(accelerator, loss, parameters, optimizer, scheduler, max_grad_norm: float, step: int) -> None:
    """One update as every training script does it: refuse a non-finite loss (naming the step), backward through
    the Accelerator, clip the gradient norm (``max_grad_norm`` > 0), step the optimiser and the LR schedule (if
    any: ``scheduler=None`` keeps the learning rate constant), and clear the gradients.

    Raises:
        FloatingPointError: the loss is NaN or infinite.
    """
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite loss {loss.item()} at step {step}")
    accelerator.backward(loss)
    if max_grad_norm > 0:
        accelerator.clip_grad_norm_(parameters, max_grad_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def build_optimizer(name: str, parameter_groups: list[dict], learning_rate: float, betas: tuple[float, float]):
    """``torch.optim.AdamW`` (``name="adamw"``) or Lion (``"lion"``, needs ``pip install lion-pytorch``) over
    ``parameter_groups`` (each with its own ``weight_decay``).

    Raises:
        ValueError: an unknown ``name``.
        ImportError: ``"lion"`` without lion-pytorch installed.
    """
    if name == "adamw":
        return torch.optim.AdamW(parameter_groups, lr=learning_rate, betas=betas)
    if name == "lion":
        try:
            from lion_pytorch import Lion
        except ImportError as error:
            raise ImportError("optimizer=lion needs `pip install lion-pytorch`") from error
        return Lion(parameter_groups, lr=learning_rate, betas=betas)
    raise ValueError(f"`optimizer` must be 'adamw' or 'lion', got {name!r}")


# ≥2-D parameters that are biases in role: ToST's per-head, per-position score bias β (heads × positions).
# Decaying it would pull the learned position prior towards zero; nanoGPT's rule (decay every ≥2-D tensor)
# only reasons about matrices and embeddings.
NO_DECAY_SUFFIXES = ("position_bias",)


def causal_lm_parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """nanoGPT's two AdamW groups: weight decay on every parameter with ≥ 2 dimensions (matrices, dictionaries,
    embeddings), none on biases, LayerNorms, layer scales, temperatures — and none on the ≥2-D tensors named in
    `NO_DECAY_SUFFIXES`. Tied tensors appear once."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():  # yields a shared (tied) tensor once
        if not parameter.requires_grad:
            continue
        if parameter.ndim >= 2 and not name.endswith(NO_DECAY_SUFFIXES):
            decay.append(parameter)
        else:
            no_decay.append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
