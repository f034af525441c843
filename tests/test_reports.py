"""The verdicts of the training/report_*.py scripts are computed from the values: each one, both ways."""

import json
import importlib.util
from pathlib import Path

import pytest

TRAINING = Path(__file__).resolve().parents[1] / "training"


def load(name):
    spec = importlib.util.spec_from_file_location(name, TRAINING / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- Fashion-MNIST ---------------------------------------------------------------------------------------------

def fashion_rows(crate=0.8632, vit=0.8336, crate_long=0.8864, crate_parameters=685_098, vit_knn=0.8484):
    row = lambda key, model, accuracy, parameters, epochs, knn, probe: dict(  # noqa: E731
        key=key, model=model, test_accuracy=accuracy, parameters=parameters, epochs=epochs, knn=knn, probe=probe)
    return [row("crate", "CRATE", crate, crate_parameters, 5.0, 0.8742, 0.8745),
            row("vit", "ViT (transformers)", vit, 2_684_554, 5.0, vit_knn, 0.8520),
            row("crate_long", "CRATE, 2× longer schedule", crate_long, crate_parameters, 10.0, 0.8918, 0.8918)]


def test_fashion_mnist_targets_missed_and_met_as_measured():
    report = load("report_fashion_mnist")
    text = "\n".join(report.targets_section(fashion_rows()))
    assert "| best test accuracy (CRATE, 2× longer schedule) | ≥ 91.00% | 88.64% | **missed** |" in text
    assert "| ViT − CRATE test accuracy (book Table 8.5) | ≤ 2.00 points | -2.96 points | **met** |" in text
    assert "| 26% | **met** |" in text
    assert "The 91% target is missed: the best model, CRATE, 2× longer schedule, reaches 88.64%." in text
    assert "raised its test accuracy (86.32% → 88.64%)" in text
    assert "CRATE beats the same-shape ViT in test accuracy, 20-NN and linear probe, with 26% of its parameters" in text

    # The other way: the target met, the longer schedule not helping, CRATE behind ViT by more than 2 points and
    # with more than 60% of its parameters.
    text = "\n".join(report.targets_section(fashion_rows(crate=0.90, vit=0.925, crate_long=0.89,
                                                         crate_parameters=2_000_000, vit_knn=0.95)))
    assert "| best test accuracy (ViT (transformers)) | ≥ 91.00% | 92.50% | **met** |" in text
    assert "| +2.50 points | **missed** |" in text and "| 75% | **missed** |" in text
    assert "The 91% target is met: the best model, ViT (transformers), reaches 92.50%." in text
    assert "did not raise its test accuracy (90.00% → 89.00%)" in text
    assert "beats the same-shape ViT only in linear probe, not in test accuracy and 20-NN" in text
    assert "missed" not in report.targets_section(fashion_rows(crate_long=0.9100))[4]  # ≥ is inclusive


def test_fashion_mnist_targets_without_the_pair_still_judge_the_best_model():
    report = load("report_fashion_mnist")
    text = "\n".join(report.targets_section(fashion_rows()[2:]))
    assert "**missed**" in text and "ViT" not in text and "Training CRATE" not in text


# --- language --------------------------------------------------------------------------------------------------

def language_runs(tost_loss=5.2699):
    config = dict(hidden_size=256, num_hidden_layers=6, num_attention_heads=8, context_length=256, batch_size=8,
                  learning_rate=0.001, warmup_steps=30)
    run = lambda parameters, loss, speed: dict(  # noqa: E731
        parameters=parameters, tokens_seen=2_048_000, wall_seconds=600.0, train_seconds=540.0,
        tokens_per_second=speed, val_loss=loss, val_perplexity=2.718281828**loss, config=config)
    return {"gpt2": run(6_836_224, 4.9478, 2744.0), "tost": run(6_048_048, tost_loss, 4186.0),
            "aot-mssa": run(2_888_704, 5.4629, 3323.0)}


def test_language_ranking_and_verdicts_follow_the_losses():
    report = load("report_language")
    lines = report.ranking(language_runs())
    assert lines[0] == ("Ordering by validation loss (lower is better): GPT-2 (transformers) 4.9478 < "
                        "ToST (causal TSSA) 5.2699 < AoT-MSSA 5.4629.")
    assert "- ToST (causal TSSA) does not beat GPT-2 (transformers) (5.2699 vs 4.9478 nats)." in lines
    lines = report.ranking(language_runs(tost_loss=4.9))
    assert lines[0].startswith("Ordering by validation loss (lower is better): ToST (causal TSSA) 4.9000 < GPT-2")
    assert "- ToST (causal TSSA) beats GPT-2 (transformers) (4.9000 vs 4.9478 nats)." in lines
    assert report.beats(language_runs(), "gpt2", "aot-mssa").startswith("GPT-2 (transformers) beats AoT-MSSA")


def test_language_tables_hold_the_numbers_a_discussion_quotes():
    report = load("report_language")
    table = "\n".join(report.results_table(language_runs()))
    assert "| ToST (causal TSSA) | 6,048,048 | 2,048,000 | 10.0 min | 9.0 min | 4186 | 5.2699 |" in table
    assert table.splitlines()[3].endswith("| 88% | +0.32 | 1.53× |")
    settings = "\n".join(report.settings_table(language_runs()))
    assert "| optimiser steps | 1,000 |" in settings and "| tokens per step | 2,048 |" in settings
    # Without the GPT-2 run there is nothing to compare with: no relative columns, no verdicts.
    runs = language_runs()
    del runs["gpt2"]
    assert "vs GPT-2" not in report.results_table(runs)[0] and len(report.ranking(runs)) == 1


# --- multimodal ------------------------------------------------------------------------------------------------

def arm(r5=0.246, balanced=0.09, wins=False, loss=2.9):
    value = 0.5 if wins else 0.1
    return {"image_to_text_R@1": value, "image_to_text_R@5": r5, "text_to_image_R@1": value,
            "text_to_image_R@5": r5, "zero_shot_balanced_accuracy": balanced, "zero_shot_accuracy": 0.13,
            "retrieval_chance_R@5": 0.012, "zero_shot_chance_uniform": 0.045, "zero_shot_majority_class_rate": 0.286,
            "zero_shot_classes": 22, "trainable_parameters": 410_000, "train_seconds": 351.0, "steps": 560,
            "text_embedding_seconds": 71.0, "final_train_loss": loss}


@pytest.mark.parametrize("lift_wins, verdict", [(True, "held at equal steps"), (False, "did not hold")])
def test_multimodal_book_target_both_ways(lift_wins, verdict):
    report = load("report_multimodal")
    lift = arm(r5=0.40 if lift_wins else 0.20, balanced=0.2 if lift_wins else 0.05, wins=lift_wins)
    clip = arm(r5=0.30, balanced=0.1, wins=not lift_wins, loss=2.4)
    text = "\n".join(report.reading({"lift": lift, "clip": clip}))
    assert f"LIFT ≥ CLIP — {verdict}" in text
    assert "CLIP reaches a lower training loss (2.40 vs 2.90)" in text


def test_multimodal_chance_verdicts_both_ways():
    report = load("report_multimodal")
    assert report.above_chance(arm(), arm(r5=0.323)).startswith("is far above chance for both arms")
    assert report.above_chance(arm(r5=0.05), arm()).startswith("is not far above chance for both arms (the lowest "
                                                               "R@5 is 4.2× chance)")
    assert report.zero_shot_strength(arm(), arm(balanced=0.076)).startswith("stays weak for both")
    assert report.zero_shot_strength(arm(balanced=0.20), arm()).startswith("is well above chance for at least one")


# --- self-supervised -------------------------------------------------------------------------------------------

def ssl_results(dino_vit_knn=0.5495):
    pair = lambda simdino, dino: (dict(knn20_accuracy=simdino), dict(knn20_accuracy=dino))  # noqa: E731
    results = {}
    for key, (simdino, dino) in {"crate": pair(0.5879, 0.5665), "vit": pair(0.6056, dino_vit_knn),
                                 "crate-deep": pair(0.5555, 0.5076)}.items():
        results[f"ssl-simdino-{key}"], results[f"ssl-dino-{key}"] = simdino, dino
    return results


def test_ssl_target_per_backbone_both_ways():
    report = load("report_ssl")
    assert "**held for all 3 backbones**" in report.ssl_target(ssl_results())
    assert "**held for 2 of 3 backbones (CRATE, 4 layers, CRATE, 8 layers; not for ViT, 4 layers)**" in (
        report.ssl_target(ssl_results(dino_vit_knn=0.61)))
    assert "no complete pair" in report.ssl_target({"ssl-simdino-crate": {"knn20_accuracy": 0.5}})


def test_mae_reading_names_the_better_model_from_the_values():
    report = load("report_ssl")
    crate = dict(num_parameters=172_528, reconstruction_loss=0.4179, linear_probe_accuracy=0.7784, epochs=6.0,
                 train_loss_curve=[(0.1, 0.9), (6.0, 0.45)])
    vit = dict(num_parameters=684_112, reconstruction_loss=0.9150, linear_probe_accuracy=0.6675, epochs=6.0,
               train_loss_curve=[])
    text = "\n".join(report.mae_reading(crate, vit))
    assert "uses 25% of ViT-MAE's" in text and "CRATE-MAE reconstructs the hidden patches better" in text
    assert "CRATE-MAE has the better linear probe (77.84 % vs 66.75 %)" in text
    assert "CRATE-MAE 0.90 → 0.45 (50% lower)" in text and "ViT-MAE 0" not in text and "these are 6." in text
    text = "\n".join(report.mae_reading({**crate, "reconstruction_loss": 0.95, "linear_probe_accuracy": 0.6}, vit))
    assert "ViT-MAE reconstructs the hidden patches better" in text and "ViT-MAE has the better linear probe" in text
    assert "A likely reason for ViT-MAE's weaker reconstruction" not in text


# --- generation and autoencoders -------------------------------------------------------------------------------

def test_guidance_finding_says_rises_only_when_it_does():
    report = load("report_generation")
    score = lambda accuracy, fd: {"class_accuracy": accuracy, "fd_effnet": fd}  # noqa: E731
    rising = report.guidance_finding("DiT", [1, 2, 4], [score(0.284, 73.8), score(0.502, 68.6), score(0.644, 77.0)])
    assert rising == ("- DiT: class accuracy rises with guidance from 28.4 % (g = 1) to 64.4 % (g = 4); "
                      "FD-EffNet along the sweep: 73.8 → 68.6 → 77.0.")
    peaked = report.guidance_finding("U-Net", [1, 2, 4], [score(0.366, 80.7), score(0.592, 83.9), score(0.316, 127)])
    assert "rises with guidance from 36.6 % (g = 1) to 59.2 % (g = 2), then falls to 31.6 % at g = 4" in peaked
    falling = report.guidance_finding("X", [1, 2], [score(0.5, 10.0), score(0.4, 12.0)])
    assert "is highest at the smallest guidance, 50.0 % (g = 1), and does not rise" in falling
    assert "rises" not in falling and "then falls to 40.0 % at g = 2" in falling


def test_rae_encoder_note_compares_the_two_scores():
    report = load("report_autoencoders")
    assert "the supervised one is the stronger of the two trained here (88.6 % test accuracy vs the SimDINO " \
           "teacher's 58.8 % 20-NN)" in report.encoder_note(0.8864, 0.5879)
    assert "although the SimDINO one scores at least as high here (50.0 %" in report.encoder_note(0.5, 0.6)
    assert "the scores are missing" in report.encoder_note(None, 0.6)


def test_fashion_mnist_precision_note_is_measured():
    report = load("report_fashion_mnist")
    rows = fashion_rows()
    assert report.precision_note(rows) == "Test accuracy here is measured in fp32 after reloading."
    rows[0]["log_test_accuracy"], rows[1]["log_test_accuracy"] = 0.8636, 0.8330
    assert report.precision_note(rows).endswith("differs by at most 0.06 points.")


def test_multimodal_seed_intervals_and_verdicts():
    report = load("report_multimodal")
    mean, half = report.mean_interval([0.1, 0.2, 0.3])
    assert mean == pytest.approx(0.2) and half == pytest.approx(4.302653 * 0.1 / 3 ** 0.5, rel=1e-5)
    assert report.mean_interval([0.4]) == (pytest.approx(0.4), 0.0)
    difference, low, high = report.difference_interval([0.5, 0.52, 0.54], [0.1, 0.12, 0.14])
    assert difference == pytest.approx(0.4) and low > 0.3 and high < 0.5
    assert report.verdict_of(low, high) == "LIFT better"
    assert report.verdict_of(-0.2, -0.1) == "CLIP better" and report.verdict_of(-0.1, 0.1) == "no clear difference"


def test_multimodal_seeds_section_reads_runs(tmp_path):
    report = load("report_multimodal")
    for seed, (lift_r1, clip_r1) in enumerate([(0.50, 0.10), (0.52, 0.12), (0.54, 0.14)]):
        for name, value in (("lift", lift_r1), ("clip", clip_r1)):
            run_dir = tmp_path / f"{name}-s{seed}"
            run_dir.mkdir()
            (run_dir / "metrics.json").write_text(json.dumps({**arm(), "image_to_text_R@1": value}))
    lines = "\n".join(report.seeds_section(tmp_path, "Openclipart"))
    assert "| LIFT (frozen all-MiniLM-L6-v2, cached) | 3 | 560 |" in lines
    assert "+40.0 [" in lines and "(LIFT better)" in lines
    assert "LIFT's claim (as good or better) **holds** here" in lines
    assert "No finished seed runs" in "\n".join(report.seeds_section(tmp_path / "missing", "Emoji"))


# --- emergent segmentation -------------------------------------------------------------------------------------

def segmentation_scores(share, iou, ncut):
    return {"share_mean_head": [0.4, share], "iou_mean_head": [iou, 0.1], "ncut_iou": [0.2, ncut]}


def test_segmentation_verdict_follows_the_values_both_ways():
    report = load("report_segmentation")
    better, worse = segmentation_scores(0.6, 0.5, 0.7), segmentation_scores(0.5, 0.4, 0.6)
    models = {"crate": better, "vit": worse, "simdino-crate": better, "simdino-vit": worse}
    text = report.crate_vs_vit(models)
    assert "**holds**: CRATE above ViT on all 6 comparisons" in text
    assert "attention share (last layer) CRATE 0.600 > ViT 0.500" in text
    text = report.crate_vs_vit({**models, "crate": worse, "vit": better, "simdino-crate": worse, "simdino-vit": better})
    assert "**does not hold**: CRATE above ViT on none of the 6 comparisons" in text
    text = report.crate_vs_vit({**models, "simdino-vit": None})
    assert "**holds**: CRATE above ViT on all 3 comparisons" in text and "SimDINO: not compared" in text
    mixed = segmentation_scores(0.6, 0.3, 0.7)  # wins share and cut, loses the top-60% IoU (best layer 0.4)
    assert "**holds in part**: CRATE above ViT on 2 of 3" in report.crate_vs_vit({"crate": mixed, "vit": worse})


def test_fashion_mnist_xl_reads_the_epoch_curve_from_the_log(tmp_path):
    report = load("report_fashion_mnist_xl")
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in (
        {"type": "config", "config": {}}, {"type": "metrics", "step": 20, "train_loss": 2.0},
        {"type": "metrics", "step": 468, "eval_accuracy": 0.646}, {"type": "metrics", "step": 936, "eval_accuracy": 0.75},
    )))
    assert report.epoch_curve(log, 468) == [(1.0, 0.646), (2.0, 0.75)]


def test_fashion_mnist_xl_times_the_evaluations_from_the_run_start(tmp_path):
    report = load("report_fashion_mnist_xl")
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in (
        {"type": "config", "config": {}}, {"type": "metrics", "step": 20, "time": 1000.0, "elapsed_s": 40.0},
        {"type": "metrics", "step": 468, "time": 1560.0, "eval_accuracy": 0.646},
        {"type": "metrics", "step": 936, "time": 2160.0, "eval_accuracy": 0.75},
    )))
    assert report.timed_curve(log) == [(10.0, 0.646), (20.0, 0.75)]  # the run started at 960 s


def test_fashion_mnist_xl_equal_budget_names_the_better_model_both_ways():
    report = load("report_fashion_mnist_xl")

    def row(model, accuracy, minutes, curve):
        return {"model": model, "parameters": 100, "epochs": 10, "steps": 1000, "wall_minutes": minutes,
                "test_accuracy": accuracy, "test_images": 10_000, "timed_curve": curve}

    crate = row("CRATE", 0.905, 60.0, [(30.0, 0.88), (60.0, 0.905)])
    vit = row("ViT", 0.90, 62.0, [(31.0, 0.87), (61.0, 0.895), (62.0, 0.90)])
    text = "\n".join(report.equal_budget_lines({"crate_xl": crate, "vit_xl": vit}))
    assert "**CRATE** ends higher: CRATE 90.50%" in text
    assert "| 89.50% (at 61.0 min) |" not in text and "within 60.0 min" in text  # ViT's last evaluation inside 60 min
    assert "| 87.00% (at 31.0 min) |" in text
    flipped = "\n".join(report.equal_budget_lines({"crate_xl": crate, "vit_xl": {**vit, "test_accuracy": 0.91}}))
    assert "**ViT** ends higher" in flipped
    # the standard error of the difference comes from the two accuracies: √(.905·.095 + .9·.1) / 100 ≈ 0.42 %
    assert "0.42%" in text


def test_segmentation_keeps_the_committed_scores_of_a_run_that_is_gone(tmp_path, monkeypatch):
    report = load("report_segmentation")
    monkeypatch.setattr(report, "MODELS", [("crate", "CRATE, supervised", "CRATE", "supervised", "seg-crate/model")])
    previous = {"num_images": 4, "models": {"crate": {"label": "old", "facts": {}, **segmentation_scores(0.6, 0.5, 0.7)}}}
    kept = report.score_models(tmp_path, 4, previous)["models"]["crate"]
    assert kept["cached"] and kept["share_mean_head"] == [0.4, 0.6] and kept["label"] == "CRATE, supervised"
    # scores of another image count are not comparable: not kept
    assert report.score_models(tmp_path, 3, previous)["models"]["crate"] is None
    assert report.score_models(tmp_path, 4, None)["models"]["crate"] is None


def write_resumed_log(path, first_threads=1, second_threads=2):
    """A first process logging steps 20-60 (started at t = 1000), stopped; a second one resumed at its step-40
    checkpoint, logging 60-100 and ending at t = 1500."""
    records = [{"type": "config", "config": {"num_threads": first_threads}}]
    records += [{"type": "metrics", "step": step, "time": 1000 + step, "elapsed_s": float(step), "epoch": step / 40}
                for step in (20, 40, 60)]
    records += [{"type": "eval", "step": 40, "eval_accuracy": 0.81, "time": 1041}]
    records += [{"type": "config", "config": {"num_threads": second_threads}}]
    records += [{"type": "metrics", "step": step, "time": 1400 + step, "elapsed_s": float(step - 40),
                 "epoch": step / 40} for step in (60, 80, 100)]
    path.write_text("\n".join(json.dumps(record) for record in records) + "\n")


def test_fashion_mnist_xl_reads_a_resumed_run_from_its_log(tmp_path):
    report = load("report_fashion_mnist_xl")
    log = tmp_path / "log.jsonl"
    write_resumed_log(log)
    segments = report.run_segments(log)
    assert [(s["first_step"], s["last_step"], s["num_threads"]) for s in segments] == [(20, 60, 1), (60, 100, 2)]
    # From the first process's start to the second's last record: the redone steps and the restart count.
    assert report.log_wall_seconds(log) == pytest.approx(1500 - 1000)
    text = report.segments_text("CRATE", log)
    assert "on 1 thread logged steps 20–60" in text and "on 2 threads, logging from step 60" in text
    single = tmp_path / "single.jsonl"
    single.write_text("\n".join(log.read_text().splitlines()[:5]) + "\n")
    assert report.segments_text("CRATE", single) == "" and len(report.run_segments(single)) == 1


def test_fashion_mnist_xl_names_a_run_that_stopped_before_saving(tmp_path):
    report = load("report_fashion_mnist_xl")
    run = tmp_path / "fashion_mnist_vit_xl"
    run.mkdir()
    write_resumed_log(run / "log.jsonl")
    text = report.unfinished_run_text("vit_xl", run)
    assert "stopped at step 100 (epoch 2.5)" in text and "after 40 steps, was 81.00%" in text


# --- SSL on all 60,000 images ----------------------------------------------------------------------------------

def ssl_full_row(knn, probe, steps=7020, mse=None):
    return dict(knn20_accuracy=knn, linear_probe_accuracy=probe, feature_std=0.05, effective_rank=40.0,
                feature_dim=96, reconstruction_loss=mse, num_masked_patches=37, num_patches=49,
                num_parameters=300_000, num_backbone_parameters=None, steps=steps, epochs=steps / 468,
                num_train_images=60_000, batch_size=128, wall_seconds=3600.0)


SSL_PIXELS = dict(knn20_accuracy=0.8569, linear_probe_accuracy=0.8397, feature_std=0.03, effective_rank=378.0,
                  feature_dim=784, num_train_images=60_000, num_test_images=10_000)


def test_ssl_full_targets_against_pixels_both_ways():
    report = load("report_ssl_full")
    rows = {"ssl-simdino-crate-60k": ssl_full_row(0.87, 0.80), "mae-vit": ssl_full_row(0.83, 0.85, mse=0.3)}
    text = report.render(rows, set(), SSL_PIXELS)
    label = "SimDINO-CRATE (mean pooling, teacher EMA 0.99)"
    assert f"| {label}: 20-NN ≥ 86 % (issue 18.1) | ≥ 86.00 % | 87.00 % | **met** |" in text
    assert f"| {label}: linear probe ≥ raw pixels' probe | ≥ 83.97 % | 80.00 % | **missed** |" in text
    vit = "ViT-MAE (transformers, MAE init restored), stopped"
    assert f"| {vit}: linear probe ≥ raw pixels' probe | ≥ 83.97 % | 85.00 % | **met** |" in text
    assert f"| {vit}: 20-NN ≥ raw pixels' 20-NN | ≥ 85.69 % | 83.00 % | **missed** |" in text
    assert "| CRATE-MAE, stopped | mae | not run |" in text and "the pair is not complete" in text
    assert text.count("the pair is not complete") == 2  # one line per budget


def test_ssl_full_mae_comparison_names_the_better_model_and_needs_one_budget():
    report = load("report_ssl_full")
    crate, vit = ssl_full_row(0.80, 0.82, mse=0.40), ssl_full_row(0.78, 0.84, mse=0.35)
    crate["num_parameters"] = 150_000
    (line,) = report.mae_comparison(crate, vit)
    assert "ViT-MAE has the better linear probe (82.00 % vs 84.00 %)" in line
    assert "CRATE-MAE the better 20-NN" in line and "ViT-MAE the lower masked-patch MSE" in line
    assert "50% of ViT-MAE's trainable parameters" in line
    (line,) = report.mae_comparison(crate, ssl_full_row(0.78, 0.84, steps=100, mse=0.35))
    assert "not the same budget" in line


def test_ssl_full_compares_crate_and_vit_mae_at_each_budget_where_both_ran():
    report = load("report_ssl_full")
    rows = {"mae-crate": ssl_full_row(0.77, 0.78, steps=2340, mse=0.35),
            "mae-vit": ssl_full_row(0.77, 0.81, steps=2340, mse=0.29),
            "mae-crate-12ep": ssl_full_row(0.80, 0.80, steps=5616, mse=0.33),
            "mae-vit-12ep": ssl_full_row(0.79, 0.84, steps=5616, mse=0.27)}
    text = report.render(rows, set(), SSL_PIXELS)
    assert "CRATE-MAE vs ViT-MAE at 2,340 steps each: ViT-MAE has the better linear probe (78.00 % vs 81.00 %)" in text
    assert "CRATE-MAE vs ViT-MAE at 5,616 steps each: ViT-MAE has the better linear probe (80.00 % vs 84.00 %)" in text
    assert "| ViT-MAE (transformers, MAE init restored): linear probe ≥ raw pixels' probe | ≥ 83.97 % | 84.00 % | **met** |" in text
    del rows["mae-crate-12ep"]
    assert "the pair is not complete" in report.render(rows, set(), SSL_PIXELS)


def test_ssl_full_keeps_the_committed_row_of_a_run_that_is_gone(tmp_path):
    report = load("report_ssl_full")
    runs, output = tmp_path / "runs", tmp_path / "ssl_full.md"
    (runs / "mae-vit").mkdir(parents=True)
    (runs / "mae-vit" / "evaluation.json").write_text(json.dumps(ssl_full_row(0.8, 0.85, mse=0.3)))
    (runs / "mae-vit" / "wall_time.json").write_text(json.dumps({"wall_seconds": 600}))
    output.with_suffix(".json").write_text(json.dumps(
        {"pixels": SSL_PIXELS, "runs": {"mae-crate": ssl_full_row(0.81, 0.86, mse=0.4)}}))
    assert report.main(["--runs", str(runs), "--output", str(output)]) == 0
    text = output.read_text()
    assert "| CRATE-MAE, stopped† | MAE | 7,020 × 128 | 15.0 | 81.00 % | 86.00 % |" in text
    assert "| 10.0 min |" in text  # mae-vit's own wall time
    stored = json.loads(output.with_suffix(".json").read_text())
    assert set(stored["runs"]) == {"mae-crate", "mae-vit"} and stored["pixels"] == SSL_PIXELS


def test_ssl_full_reads_a_stopped_run_from_its_log(tmp_path):
    """A run stopped and scored from a checkpoint has no wall_time.json: its time is the log's up to that step, and
    the page shows the planned schedule it did not finish."""
    report = load("report_ssl_full")
    folder = tmp_path / "mae-vit"
    folder.mkdir()
    (folder / "evaluation.json").write_text(json.dumps(ssl_full_row(0.8, 0.85, steps=40, mse=0.3)))
    records = [{"type": "config", "config": {"epochs": 15}}] + [
        {"type": "metrics", "step": step, "elapsed_s": 1.5 * step} for step in (20, 40, 60)]
    (folder / "log.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    row = report.read_run(tmp_path, "mae-vit")
    assert row["wall_seconds"] == 60.0 and row["planned_epochs"] == 15
    assert report.epochs_text(row) == f"{40 / 468:.1f} of 15"
    assert report.epochs_text({**row, "planned_epochs": None}) == f"{40 / 468:.1f}"


def test_ssl_full_sums_the_training_time_of_a_killed_and_resumed_run():
    """Each launch restarts `elapsed_s`; a run killed after step 30 and resumed from its step-20 checkpoint trained
    steps 21-30 twice, and the machine's time counts both."""
    report = load("report_ssl_full")
    records = [{"type": "config", "config": {"epochs": 2}},
               *({"type": "metrics", "step": step, "elapsed_s": 2.0 * step} for step in (10, 20, 30)),
               {"type": "config", "config": {"epochs": 2}},
               *({"type": "metrics", "step": step, "elapsed_s": 1.0 * (step - 20)} for step in (30, 40, 50))]
    assert report.logged_training_seconds(records, 50) == 60.0 + 30.0
    assert report.logged_training_seconds(records, 20) == 40.0  # the second launch logged nothing up to step 20
    assert report.logged_training_seconds([{"type": "config"}], 50) is None
