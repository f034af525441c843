"""Loss curves of a training run, drawn from its JSONL log."""

from __future__ import annotations

import os

__all__ = ["plot_training_curves"]


def plot_training_curves(
    log_path: str | os.PathLike,
    png_path: str | os.PathLike,
    train_key: str = "train_loss",
    train_label: str = "train loss",
    eval_key: str | None = None,
    eval_label: str | None = None,
    same_axis: bool = False,
    x_key: str = "step",
    x_label: str = "step",
    title: str | None = None,
) -> None:
    """Plot the training curve ``train_key`` (and the evaluation curve ``eval_key``, on the same axis or on
    a second y axis) of a JSONL log written by `whitebox_hf.utils.JSONLTracker`, against ``x_key``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..utils.tracking import read_jsonl

    records = [r for r in read_jsonl(str(log_path)) if r.get("type") == "metrics" and x_key in r]
    train = [(r[x_key], r[train_key]) for r in records if train_key in r]
    evals = [(r[x_key], r[eval_key]) for r in records if eval_key and eval_key in r]
    fig, train_axis = plt.subplots(figsize=(6, 3.5))
    if train:
        train_axis.plot(*zip(*train), label=train_label, color="tab:blue")
    train_axis.set_xlabel(x_label)
    train_axis.set_ylabel(train_label)
    if evals:
        eval_axis = train_axis if same_axis else train_axis.twinx()
        eval_axis.plot(*zip(*evals), "o-", color="tab:orange", label=eval_label or eval_key)
        if same_axis:
            train_axis.set_ylabel(f"{train_label} / {eval_label or eval_key}")
            train_axis.legend()
        else:
            eval_axis.set_ylabel(eval_label or eval_key)
    if title:
        train_axis.set_title(title)
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
