#!/usr/bin/env python
"""The ControlNet and personalisation parts of the conditional-generation results (book §8.7), from the run folders
that ``training/run_control_comparison.sh`` writes:

    python training/report_control.py --runs runs/control-v2     # -> docs/results/conditional_control.md

``control_section(runs_dir)`` and ``personalization_section(runs_dir)`` return the markdown of each part (tables,
verdicts computed from the values, pictures copied next to the page), so that ``training/report_conditional.py``
can put them into ``docs/results/conditional.md``; ``main`` writes them on their own page. Expected layout:
``<runs>/controlnet/{results.json,log.jsonl,triples.png,curve.png}`` and
``<runs>/personalization/<method>/{results.json,samples.png}`` for ``dreambooth`` and ``custom_diffusion``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
PAGE = "conditional_control.md"
METHODS = {"dreambooth": "DreamBooth", "custom_diffusion": "Custom Diffusion"}
# A rise of the held-out edge F1 counts as "sudden" when one interval between evaluations holds at least this share
# of the whole rise, and the whole rise is at least `MIN_RISE` (below it there is no convergence to speak of).
SUDDEN_SHARE = 0.5
MIN_RISE = 0.05


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except OSError as error:
        raise OSError(f"cannot read {path}: {error.strerror or error}") from None


def edge_curve(log_path: Path) -> list[tuple[int, float]]:
    """``(step, edge_f1)`` of every evaluation in a ``train_controlnet.py`` log, in step order (a resumed run
    appends: the last value of a step wins)."""
    values = {}
    for line in Path(log_path).read_text().splitlines():
        record = json.loads(line)
        if "edge_f1" in record and "step" in record:
            values[int(record["step"])] = float(record["edge_f1"])
    return sorted(values.items())


def sudden_convergence(curve: list[tuple[int, float]]) -> dict:
    """Whether the edge F1 curve rises suddenly: the interval with the largest rise, its share of the rise from the
    first to the best evaluation, and the verdict (`SUDDEN_SHARE`, `MIN_RISE`).

    Raises:
        ValueError: fewer than three evaluations (no shape to judge).
    """
    if len(curve) < 3:
        raise ValueError(f"`curve` must hold at least 3 evaluations to judge its shape, got {len(curve)}")
    first = curve[0][1]
    best_index = max(range(len(curve)), key=lambda i: curve[i][1])
    rise = curve[best_index][1] - first
    jumps = [(curve[i + 1][1] - curve[i][1], curve[i][0], curve[i + 1][0]) for i in range(best_index)]
    jump, start, end = max(jumps) if jumps else (0.0, curve[0][0], curve[0][0])
    share = jump / rise if rise > 0 else 0.0
    if rise < MIN_RISE:
        verdict = "no convergence"
    elif share >= SUDDEN_SHARE:
        verdict = "sudden"
    else:
        verdict = "gradual"
    return {"rise": rise, "jump": jump, "jump_start": start, "jump_end": end, "share": share, "verdict": verdict,
            "best_step": curve[best_index][0], "best_f1": curve[best_index][1], "first_f1": first}


def _copy_picture(source: Path, pictures_dir: Path | None, name: str) -> str | None:
    if pictures_dir is None or not source.is_file():
        return None
    pictures_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, pictures_dir / name)
    return name


def control_section(runs_dir, pictures_dir: Path | None = RESULTS) -> str:
    """Markdown: edge agreement with and without the ControlNet, the training curve and its verdict on the
    "sudden convergence", and the control/edge/result picture."""
    run = Path(runs_dir) / "controlnet"
    results = _read_json(run / "results.json")
    lines = ["## ControlNet on Canny edges", "",
             (f"A ControlNet (`ControlNetModel.from_unet`, zero convolutions) trained on the frozen base for "
             f"{results['steps']:,} steps of batch {results['batch_size']} "
             f"({results['train_seconds_total'] / 60:.1f} min, {results['num_trainable_parameters']:,} trainable "
             f"parameters). Edge agreement on {results['final_eval_num_images']} held-out test drawings: F1 between "
             "their Canny edges (the control) and the Canny edges of the generated image."), "",
             "| pipeline | edge F1 | precision | recall |", "|---|---|---|---|"]
    for label, suffix in (("with ControlNet", "with_control"), ("base, no control", "without_control")):
        lines.append(f"| {label} | {results[f'edge_f1_{suffix}']:.3f} | {results[f'edge_precision_{suffix}']:.3f} | "
                     f"{results[f'edge_recall_{suffix}']:.3f} |")
    gain = results["edge_f1_with_control"] - results["edge_f1_without_control"]
    lines += ["", (f"The control {'raises' if gain > 0 else 'does not raise'} the edge F1 "
                   f"({'+' if gain >= 0 else ''}{gain:.3f}).")]
    curve = edge_curve(run / "log.jsonl")
    if curve:
        lines += ["", "### Training curve", "", "| step | held-out edge F1 |", "|---|---|",
                  *[f"| {step:,} | {value:.3f} |" for step, value in curve]]
        if len(curve) >= 3:
            judged = sudden_convergence(curve)
            if judged["verdict"] == "no convergence":
                reading = (f"No convergence to judge: the edge F1 rises by only {judged['rise']:.3f} at most "
                           f"(under {MIN_RISE}).")
            else:
                reading = (f"The largest rise between two evaluations (steps {judged['jump_start']:,} to "
                           f"{judged['jump_end']:,}) is {judged['share']:.0%} of the whole rise from "
                           f"{judged['first_f1']:.3f} to {judged['best_f1']:.3f}: "
                           + ("a sudden convergence, as the ControlNet paper reports."
                              if judged["verdict"] == "sudden" else
                              "a gradual rise; the book's sudden convergence is not seen at this scale."))
            lines += ["", reading]
        picture = _copy_picture(run / "curve.png", pictures_dir, "conditional_control_curve.png")
        if picture:
            lines += ["", f"![training loss and held-out edge F1]({picture})"]
    picture = _copy_picture(run / "triples.png", pictures_dir, "conditional_control_triples.png")
    if picture:
        lines += ["", "Rows: test drawing, its Canny control, generated with the ControlNet, the base without it.",
                  "", f"![control/edge/result triples]({picture})"]
    return "\n".join(lines) + "\n"


def personalization_section(runs_dir, pictures_dir: Path | None = RESULTS) -> str:
    """Markdown: subject and prompt fidelity of DreamBooth and Custom Diffusion against the base, and the
    subject samples."""
    root = Path(runs_dir) / "personalization"
    runs = {m: _read_json(root / m / "results.json") for m in METHODS if (root / m / "results.json").is_file()}
    if not runs:
        raise OSError(f"no personalisation results under {root} (expected {', '.join(METHODS)}/results.json)")
    first = next(iter(runs.values()))
    columns = [("subject_fidelity_effnet", "subject fidelity (EffNet)"),
               ("subject_fidelity_lift", "subject fidelity (LIFT)"), ("prompt_fidelity_lift", "prompt fidelity (LIFT)")]
    columns = [(k, label) for k, label in columns if k in first.get("base_scores", {})]
    lines = ["## Personalisation", "",
             (f"{first['num_instance_images']} drawings of the test-split series `{first['subject']}` (held out from "
             f"the base's training split, which holds {first['series_in_train_split']} other drawings of the "
             f"series), instance prompt `{first['instance_prompt']}`, class prompt "
             f"`{first['class_prompt']}`. Subject fidelity: mean cosine between image features of generated and "
             "subject drawings (a DINO-score analogue); prompt fidelity: LIFT image–text cosine, the identifier "
             "removed from the prompt. The base is prompted with the class noun."), "",
             ("| model | trained modules | LoRA parameters | steps | min | "
              + " | ".join(label for _, label in columns) + " |"),
             "|---|---|---|---|---|" + "---|" * len(columns),
             "| base | - | - | - | - | " + " | ".join(f"{first['base_scores'][k]:.3f}" for k, _ in columns) + " |"]
    for method, results in runs.items():
        modules = ", ".join(f"`{m}`" for m in results["target_modules"])
        lines.append(f"| {METHODS[method]} | {modules} | {results['num_lora_parameters']:,} | {results['steps']:,} | "
                     f"{results['train_seconds'] / 60:.1f} | "
                     + " | ".join(f"{results['scores'][k]:.3f}" for k, _ in columns) + " |")
    if columns:
        key, label = columns[0]
        base = round(first["base_scores"][key], 3)
        readings = []
        for method, results in runs.items():
            value = round(results["scores"][key], 3)
            relation = "above" if value > base else ("equal to" if value == base else "below")
            readings.append(f"{METHODS[method]} {value:.3f}, {relation} the base's {base:.3f}")
        lines += ["", f"{label[0].upper() + label[1:]}: " + "; ".join(readings) + "."]
    for method in runs:
        picture = _copy_picture(root / method / "samples.png", pictures_dir, f"conditional_control_{method}.png")
        if picture:
            lines += ["", f"{METHODS[method]}: row 1 the subject; then per prompt the base, then the adapted model.",
                      "", f"![{METHODS[method]} samples]({picture})"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs/control-v2", help="the folder run_control_comparison.sh wrote")
    parser.add_argument("--output", default=str(RESULTS / PAGE))
    args = parser.parse_args(argv)
    output = Path(args.output)
    body = ["# Conditional generation: ControlNet and personalisation (book §8.7)", "",
            "Written by `training/report_control.py` from the runs of `training/run_control_comparison.sh`.", "",
            control_section(args.runs, output.parent), personalization_section(args.runs, output.parent)]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(body))
    print(f"wrote {output}")
    return output


if __name__ == "__main__":
    main()
