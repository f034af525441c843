#!/usr/bin/env python
"""CPU benchmark: CRATE vs. an HF ViT of identical width / depth / heads / patch.

For two shape settings

  (a) ``crate-t-224``: CRATE-T shapes at 224² (d 384, L 12, K 6, patch 16, 3 channels, 1000 labels)
  (b) ``fmnist-28``:   the Fashion-MNIST shapes at 28² (d 192, L 6, K 6, patch 4, 1 channel, 10 labels)

and for fp32 and bf16 it measures, in one run,

  * inference throughput (images/s; eval mode, ``torch.inference_mode()``),
  * training step time (forward + cross-entropy + backward + AdamW step, ms),
  * parameter counts and analytic multiply-accumulates (MACs) per image,
  * achieved GFLOP/s (2·MAC/s) and the fraction of the machine's matmul peak, measured in the same run,

each eager and compiled (``torch.compile(model)``, inductor, the same call for both models so the ratio stays
fair), plus how inference time grows with the batch (log-log slope, eager fp32), and writes a markdown report
(``--output``) plus a JSON with every raw timing next to it.

CRATE and ViT repetitions are interleaved (ABAB…, order flipped every repetition) so that drift from
background load hits both models alike. Smoke test: ``--quick``. On a CPU that emulates bf16 (AVX2 only) the bf16
modes are skipped and the page says so (``--bf16 auto``, the default; ``--bf16 on`` forces them). glibc is told to
keep freed buffers for reuse (``--allocator keep``, the default; `_common.keep_freed_memory`): with its defaults every
activation above 128 KiB is a fresh mmap that page-faults on first touch, which on one host took about 15 % of
ViT's fp32 throughput and little of CRATE's, so the ratio depended on the host's allocator rather than the models.

Usage::

    .venv/bin/python benchmarks/bench_crate_vs_vit.py --output docs/results/benchmark_crate_vs_vit.md
    .venv/bin/python benchmarks/bench_crate_vs_vit.py --quick --output /tmp/smoke/bench.md
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from transformers import ViTConfig, ViTForImageClassification

from whitebox_hf import CrateConfig, CrateForImageClassification
from whitebox_hf.models.attention_interface import WHITEBOX_ATTENTION, register_whitebox_attention

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_common.py, whatever the working directory
from _common import environment_lines, goals_table, interleaved, keep_freed_memory, loadavg, now, start  # noqa: E402
from _common import summarize  # noqa: E402
from _common import add_bf16_argument, resolve_bf16, write_report  # noqa: E402
from _common import time_call as _time  # noqa: E402

# Goals of issue 19 (evaluated on inference, per execution: eager against eager, compiled against compiled).
GOAL_SPEEDUP_FP32 = 3.0
GOAL_SPEEDUP_BF16 = 2.8
GOAL_PEAK_FRACTION = 0.60  # CRATE's rate in bf16, against the measured bf16 matmul peak
EXECUTIONS = ("eager", "compiled")

MODELS = ("crate", "vit")


# --------------------------------------------------------------------------------------------------------------
# Shapes and analytic cost
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Setting:
    name: str
    description: str
    hidden_size: int
    num_layers: int
    num_heads: int
    image_size: int
    patch_size: int
    num_channels: int
    num_labels: int
    infer_batch: int
    train_batch: int

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def num_tokens(self) -> int:
        return self.num_patches + 1  # + class token


def build_crate(s: Setting) -> CrateForImageClassification:
    if s.name == "crate-t-224":
        config = CrateConfig.from_preset("crate-tiny")  # d 384, L 12, K 6, 224², patch 16, 3 ch, 1000 labels
    else:
        config = CrateConfig(
            hidden_size=s.hidden_size, num_hidden_layers=s.num_layers, num_attention_heads=s.num_heads,
            image_size=s.image_size, patch_size=s.patch_size, num_channels=s.num_channels, num_labels=s.num_labels,
        )
    got = (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.image_size,
           config.patch_size, config.num_channels, config.num_labels)
    want = (s.hidden_size, s.num_layers, s.num_heads, s.image_size, s.patch_size, s.num_channels, s.num_labels)
    assert got == want, f"CRATE config {got} does not match setting {want}"
    return CrateForImageClassification(config)


SAME_KERNEL = WHITEBOX_ATTENTION


def build_vit(s: Setting, attention: str = SAME_KERNEL) -> ViTForImageClassification:
    """``attention``: ``"whitebox_sdpa"`` (the kernel dispatch CRATE uses, so the ratio compares the models and not
    their attention kernels) or ``"sdpa"`` (transformers' stock SDPA)."""
    register_whitebox_attention()
    config = ViTConfig(
        hidden_size=s.hidden_size, num_hidden_layers=s.num_layers, num_attention_heads=s.num_heads,
        intermediate_size=4 * s.hidden_size, image_size=s.image_size, patch_size=s.patch_size,
        num_channels=s.num_channels, num_labels=s.num_labels,
    )
    model = ViTForImageClassification(config)
    model.set_attn_implementation(attention)
    return model


def macs_per_image(kind: str, s: Setting) -> dict[str, int]:
    """Analytic multiply-accumulates of one forward pass for one image.

    Counted: every linear map (patch embedding, per-layer projections, classifier) and the two attention
    matmuls QKᵀ and A·V. Not counted: LayerNorm, softmax, activations, bias adds, residual adds, ISTA's
    elementwise update (all O(N·d) per layer, not O(N·d²)).
    """
    d, L, n, K, p = s.hidden_size, s.num_layers, s.num_tokens, s.num_heads, s.head_dim
    patch_dim = s.num_channels * s.patch_size**2
    embed = s.num_patches * patch_dim * d  # CRATE: Linear(P→d) per patch; ViT: Conv2d(k = stride = patch) ≡ same
    attention = 2 * n * n * K * p  # QKᵀ (n·n·p per head) + A·V (n·n·p per head)
    if kind == "crate":
        # MSSA: U (d→K·p, shared q=k=v) + output projection (K·p→d); ISTA: one GEMM with the folded matrix
        # I + ηDᵀ − ηDᵀD (whitebox_hf.nn.ISTA), d² per token. Forming that matrix (d³ per layer per forward
        # pass, shared by the batch) is not counted: see MAC_FORMULA_MD.
        linear = n * (d * K * p + K * p * d + d * d)
    else:
        # ViT: q, k, v, o projections (4·d²) + MLP d→4d→d (8·d²).
        linear = n * (4 * d * d + 2 * d * 4 * d)
    head = d * s.num_labels
    per_layer = linear + attention
    return dict(embed=embed, per_layer_linear=linear, per_layer_attention=attention, head=head,
                total=embed + L * per_layer + head)


MAC_FORMULA_MD = r"""
With `N = (H/ps)² + 1` tokens (class token included), width `d`, `L` layers, `K` heads of width `p = d/K`,
patch vector `P = C·ps²` and `Y` labels, the multiply-accumulates per image of one forward pass are

* **CRATE**: `(N−1)·P·d + L·[ N·(d·Kp + Kp·d + d²) + 2·N²·Kp ] + d·Y`
  (MSSA's shared projection `U` and output projection; ISTA as one GEMM with the folded matrix
  `I + ηDᵀ − ηDᵀD`; QKᵀ and A·V). Forming the folded matrix costs `d³` per layer per forward pass, shared
  by the whole batch and not counted (≈ 6% of CRATE's MACs at 224², batch 32; ≈ 1.5% at 28², batch 256).
* **ViT**: `(N−1)·P·d + L·[ N·(4·d² + 8·d²) + 2·N²·d ] + d·Y`
  (q, k, v, o projections; MLP `d→4d→d`; QKᵀ and A·V)

LayerNorm, softmax, GELU/ReLU, bias and residual adds and ISTA's elementwise update are not counted
(O(N·d) per layer). Achieved GFLOP/s = 2·MACs/image × images/s. For a training step the work is taken as
3× the forward pass (forward + backward ≈ 1 + 2), i.e. 6·MACs·batch FLOPs per step.
""".strip()


# --------------------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------------------


def measure_matmul_peak(dtype: torch.dtype, size: int, warmup: int, reps: int) -> dict:
    """Rate of a large square ``torch.mm`` (size³ MACs) in ``dtype``: the machine's practical matmul peak."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=g).to(dtype)
    b = torch.randn(size, size, generator=g).to(dtype)
    out = torch.empty(size, size, dtype=dtype)
    fn = lambda: torch.mm(a, b, out=out)  # noqa: E731
    for _ in range(warmup):
        fn()
    times = [_time(fn) for _ in range(reps)]
    med = statistics.median(times)
    return dict(size=size, dtype=str(dtype).replace("torch.", ""), gflops=2 * size**3 / med / 1e9,
                best_gflops=2 * size**3 / min(times) / 1e9, **summarize(times))


def measure_linear_rate(dtype: torch.dtype, rows: int, d_in: int, d_out: int, reps: int) -> dict:
    """Rate of ``F.linear`` at a model's own GEMM shape (rows = batch·tokens): how much of the big-matmul
    peak is reachable at all at these sizes."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, d_in, generator=g).to(dtype)
    w = torch.randn(d_out, d_in, generator=g).to(dtype)
    fn = lambda: F.linear(x, w)  # noqa: E731
    fn()
    one = max(_time(fn), 1e-6)
    inner = max(1, int(0.05 / one))  # ≥ ~50 ms per timed repetition

    def block():
        for _ in range(inner):
            fn()

    times = [_time(block) / inner for _ in range(reps)]
    med = statistics.median(times)
    return dict(shape=[rows, d_in, d_out], dtype=str(dtype).replace("torch.", ""),
                gflops=2 * rows * d_in * d_out / med / 1e9, inner=inner, **summarize(times))


# --------------------------------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------------------------------


def inference_fn(model, pixel_values, autocast: bool):
    def fn():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            return model(pixel_values=pixel_values).logits

    return fn


def training_fn(model, run, pixel_values, labels, autocast: bool):
    """A training step of ``model`` whose forward is ``run`` (the model or its compiled form)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)

    def fn():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = run(pixel_values=pixel_values).logits
        loss = F.cross_entropy(logits.float(), labels)
        loss.backward()
        optimizer.step()

    return fn


INFERENCE_MODES = {
    # name: (cast model + input to bf16?, autocast?, matmul peak dtype)
    "fp32": (False, False, "float32"),
    "bf16-autocast": (False, True, "bfloat16"),
    "bf16-cast": (True, False, "bfloat16"),
}
TRAINING_MODES = {
    "fp32": (False, "float32"),
    "bf16-autocast": (True, "bfloat16"),
}


def prepare(model, execution: str):
    """The callable a workload runs: the model itself, or ``torch.compile(model)`` (inductor, default options:
    the same call for CRATE and ViT). Compilation happens on the first call, i.e. in the warm-up."""
    return model if execution == "eager" else torch.compile(model)


def run_setting(s: Setting, args, peaks: dict) -> dict:
    torch.manual_seed(0)
    models = {"crate": build_crate(s), "vit": build_vit(s, args.vit_attention)}
    for m in models.values():
        m.eval()
    assert models["crate"].config._attn_implementation == "sdpa", models["crate"].config._attn_implementation
    assert models["vit"].config._attn_implementation == args.vit_attention, models["vit"].config._attn_implementation
    macs = {k: macs_per_image(k, s) for k in MODELS}
    result = dict(
        setting=asdict(s),
        params={k: m.num_parameters() for k, m in models.items()},
        macs_per_image=macs,
        inference={},
        training={},
        batch_scaling={},
    )
    g = torch.Generator().manual_seed(1)
    x_inf = torch.randn(s.infer_batch, s.num_channels, s.image_size, s.image_size, generator=g)

    for execution in args.executions:
        for mode in args.inference_modes:
            cast, autocast, peak_dtype = INFERENCE_MODES[mode]
            if cast:
                run_models = {k: copy.deepcopy(m).to(torch.bfloat16) for k, m in models.items()}
                x = x_inf.to(torch.bfloat16)
            else:
                run_models, x = models, x_inf
            torch._dynamo.reset()
            fns = {k: inference_fn(prepare(m, execution), x, autocast) for k, m in run_models.items()}
            key = f"{execution}/{mode}"
            print(f"[{s.name}] inference {key}: batch {s.infer_batch}, {args.warmup} warm-up + {args.reps} reps",
                  flush=True)
            times = interleaved(fns, args.warmup, args.reps)
            entry = {}
            for k in MODELS:
                stats = summarize(times[k])
                ips = s.infer_batch / stats["median_s"]
                gflops = 2 * macs[k]["total"] * ips / 1e9
                entry[k] = dict(images_per_s=ips, gflops=gflops, peak_fraction=gflops / peaks[peak_dtype]["gflops"],
                                batch=s.infer_batch, **stats)
            entry["throughput_ratio_crate_over_vit"] = entry["crate"]["images_per_s"] / entry["vit"]["images_per_s"]
            result["inference"][key] = entry
            print(f"    CRATE {entry['crate']['images_per_s']:.1f} img/s, ViT {entry['vit']['images_per_s']:.1f} "
                  f"img/s, ratio {entry['throughput_ratio_crate_over_vit']:.2f}x", flush=True)
            del run_models, fns
            gc.collect()

    if not args.skip_train:
        x_tr = torch.randn(s.train_batch, s.num_channels, s.image_size, s.image_size, generator=g)
        y_tr = torch.randint(0, s.num_labels, (s.train_batch,), generator=g)
        for execution in args.executions:
            for mode in args.training_modes:
                autocast, peak_dtype = TRAINING_MODES[mode]
                torch._dynamo.reset()
                run_models = {k: copy.deepcopy(m).train() for k, m in models.items()}
                fns = {k: training_fn(m, prepare(m, execution), x_tr, y_tr, autocast) for k, m in run_models.items()}
                key = f"{execution}/{mode}"
                print(f"[{s.name}] training {key}: batch {s.train_batch}, {args.warmup} warm-up + {args.reps} reps",
                      flush=True)
                times = interleaved(fns, args.warmup, args.reps)
                entry = {}
                for k in MODELS:
                    stats = summarize(times[k])
                    gflops = 6 * macs[k]["total"] * s.train_batch / stats["median_s"] / 1e9
                    entry[k] = dict(step_ms=stats["median_s"] * 1e3, images_per_s=s.train_batch / stats["median_s"],
                                    gflops=gflops, peak_fraction=gflops / peaks[peak_dtype]["gflops"],
                                    batch=s.train_batch, **stats)
                entry["step_time_ratio_crate_over_vit"] = entry["crate"]["step_ms"] / entry["vit"]["step_ms"]
                result["training"][key] = entry
                print(f"    CRATE {entry['crate']['step_ms']:.1f} ms, ViT {entry['vit']['step_ms']:.1f} ms, "
                      f"ratio {entry['step_time_ratio_crate_over_vit']:.2f}", flush=True)
                del run_models, fns
                gc.collect()

    # Cost growth: eager fp32 inference time at fractions of the inference batch (item 6 of issue 19).
    if args.batch_scaling:
        batches = sorted({max(1, s.infer_batch // f) for f in (4, 2, 1)})
        for k in MODELS:
            medians = []
            for b in batches:
                fn = inference_fn(models[k], x_inf[:b], autocast=False)
                medians.append(summarize(interleaved({k: fn}, 1, args.reps)[k])["median_s"])
            result["batch_scaling"][k] = dict(batches=batches, median_s=medians,
                                             slope=loglog_slope(batches, medians))
        print(f"[{s.name}] batch slope: " + ", ".join(
            f"{k} {v['slope']:.2f}" for k, v in result["batch_scaling"].items()), flush=True)

    # Reachable GEMM rate at the models' own d×d linear shape (rows = inference batch × tokens).
    rows = s.infer_batch * s.num_tokens
    result["linear_shape_rate"] = {
        dt: measure_linear_rate(getattr(torch, dt), rows, s.hidden_size, s.hidden_size, max(3, args.reps))
        for dt in args.matmul_dtypes
    }
    return result


def loglog_slope(xs, ys) -> float:
    """Least-squares slope of log(y) against log(x): 1 means y grows in proportion to x."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


# --------------------------------------------------------------------------------------------------------------
# Profile (where does CRATE's time go?)
# --------------------------------------------------------------------------------------------------------------


def profile_forward(s: Setting, batch: int, row_limit: int = 22) -> dict[str, str]:
    """torch.profiler tables of one fp32 inference forward for each model, with every major submodule
    wrapped in a ``record_function`` range (named ``module:<Class>``) so time can be attributed per block."""
    from torch.autograd.profiler import record_function
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    models = {"crate": build_crate(s).eval(), "vit": build_vit(s).eval()}
    x = torch.randn(batch, s.num_channels, s.image_size, s.image_size)
    wanted = ("CrateEmbeddings", "MultiHeadSubspaceSelfAttention", "ISTA", "LayerNorm", "ViTEmbeddings",
              "ViTAttention", "ViTMLP", "Linear")
    out = {}
    for name, model in models.items():
        handles = []
        for module in model.modules():
            cls = type(module).__name__
            if cls not in wanted:
                continue

            def pre(mod, _inp, _cls=cls):
                mod._bench_rf = record_function(f"module:{_cls}")
                mod._bench_rf.__enter__()

            def post(mod, _inp, _out):
                mod._bench_rf.__exit__(None, None, None)

            handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
        fn = inference_fn(model, x, autocast=False)
        fn()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        for h in handles:
            h.remove()
        out[name] = prof.key_averages().table(sort_by="cpu_time_total", row_limit=row_limit, max_name_column_width=48)
    return out


# --------------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------------


ALLOCATOR_LINES = {
    "keep": ["* allocator: glibc keeps freed buffers for reuse (`--allocator keep`: `mallopt` M_MMAP_THRESHOLD and "
             "M_TRIM_THRESHOLD at 256 MiB), so neither model pays first-touch page faults on every activation; with "
             "glibc's defaults (`--allocator default`) those faults took about 15 % of ViT's fp32 throughput on one "
             "host and much less of CRATE's, which inflated the ratio"],
    "default": ["* allocator: glibc's defaults (`--allocator default`): every buffer above 128 KiB is a fresh mmap "
                "whose pages fault on first touch, a cost that weighs more on the model with the wider activations"],
}


def render(report: dict) -> str:
    peaks = report["matmul_peak"]
    lines = [f"# CRATE vs. ViT on CPU: throughput, step time, achieved FLOP rate", ""]
    if report["quick"]:
        lines += ["> **SMOKE RUN (`--quick`)**: tiny batches and 1–2 repetitions. The numbers below only show "
                  "that the harness works; they are not a measurement.", ""]
    lines += environment_lines(report, extra=[
        f"* warm-up iterations: {report['warmup']} (a compiled model compiles in its first one), timed repetitions: "
        f"{report['reps']} per model and mode",
        "* the machine is shared (2 logical CPUs, other agents' jobs): absolute rates on a loaded machine understate "
        "what the models reach on an idle one; the CRATE/ViT ratios are measured side by side (interleaved "
        "repetitions in one run) and stay meaningful",
        *ALLOCATOR_LINES.get(report["environment"].get("allocator"), [])])
    lines += [
        "## Matmul peak (measured in this run)", "",
        "Large square `torch.mm(a, b, out=c)`, median of the repetitions; measured at the start and again at the "
        "end of the run, the larger of the two is used as the peak (the conservative choice for the fractions).",
        "",
        "| dtype | size | start GFLOP/s | end GFLOP/s | peak used GFLOP/s |",
        "|---|---|---|---|---|",
    ]
    for dt in peaks:
        st, en = report["matmul_peak_start"][dt], report["matmul_peak_end"][dt]
        lines.append(f"| {dt} | {st['size']}³ | {st['gflops']:.1f} | {en['gflops']:.1f} | {peaks[dt]['gflops']:.1f} |")
    lines.append("")

    for res in report["settings"]:
        s = res["setting"]
        m = res["macs_per_image"]
        lines += [
            f"## Setting `{s['name']}`: {s['description']}", "",
            f"d {s['hidden_size']}, L {s['num_layers']}, K {s['num_heads']} (p {s['hidden_size'] // s['num_heads']}), "
            f"{s['image_size']}², patch {s['patch_size']}, {s['num_channels']} channel(s), {s['num_labels']} labels, "
            f"{(s['image_size'] // s['patch_size']) ** 2 + 1} tokens. Inference batch {s['infer_batch']}, "
            f"training batch {s['train_batch']}.", "",
            "| | parameters | MACs / image (fwd) | per-layer linear MACs | per-layer attention MACs |",
            "|---|---|---|---|---|",
        ]
        for k, label in (("crate", "CRATE"), ("vit", "ViT")):
            lines.append(f"| {label} | {res['params'][k]:,} | {m[k]['total'] / 1e6:,.1f} M | "
                         f"{m[k]['per_layer_linear'] / 1e6:,.1f} M | {m[k]['per_layer_attention'] / 1e6:,.1f} M |")
        mac_ratio = m["vit"]["total"] / m["crate"]["total"]
        lines += ["", f"ViT/CRATE MAC ratio: **{mac_ratio:.2f}×**: the throughput ratio CRATE would reach if both "
                  "models ran at the same FLOP rate.", ""]
        if res["inference"]:
            lines += ["**Inference** (eval, `torch.inference_mode()`, images/s = batch / median batch time):", "",
                      "| mode | CRATE img/s | ViT img/s | CRATE/ViT throughput | CRATE GFLOP/s (% peak) | "
                      "ViT GFLOP/s (% peak) | CRATE time spread (q25–q75, ms) |",
                      "|---|---|---|---|---|---|---|"]
            for mode, e in res["inference"].items():
                c, v = e["crate"], e["vit"]
                lines.append(
                    f"| {mode} | {c['images_per_s']:,.1f} | {v['images_per_s']:,.1f} | "
                    f"**{e['throughput_ratio_crate_over_vit']:.2f}×** | {c['gflops']:.1f} ({100 * c['peak_fraction']:.0f}%) | "
                    f"{v['gflops']:.1f} ({100 * v['peak_fraction']:.0f}%) | "
                    f"{1e3 * c['q25_s']:.1f}–{1e3 * c['q75_s']:.1f} |")
            lines.append("")
        if res["training"]:
            lines += ["**Training step** (forward + cross-entropy + backward + AdamW step; FLOPs taken as 3× forward):",
                      "", "| mode | CRATE ms/step | ViT ms/step | CRATE/ViT step time | CRATE GFLOP/s (% peak) | "
                      "ViT GFLOP/s (% peak) |", "|---|---|---|---|---|---|"]
            for mode, e in res["training"].items():
                c, v = e["crate"], e["vit"]
                lines.append(
                    f"| {mode} | {c['step_ms']:,.1f} | {v['step_ms']:,.1f} | **{e['step_time_ratio_crate_over_vit']:.2f}** "
                    f"({1 / e['step_time_ratio_crate_over_vit']:.2f}× faster) | "
                    f"{c['gflops']:.1f} ({100 * c['peak_fraction']:.0f}%) | {v['gflops']:.1f} ({100 * v['peak_fraction']:.0f}%) |")
            lines.append("")
        if res.get("batch_scaling"):
            lines += ["**Cost growth with the batch** (eager fp32 inference, median time per batch; slope of "
                      "log(time) against log(batch), 1 = linear):", "",
                      "| model | batches | median ms | log-log slope |", "|---|---|---|---|"]
            for k, label in (("crate", "CRATE"), ("vit", "ViT")):
                b = res["batch_scaling"][k]
                lines.append(f"| {label} | {', '.join(map(str, b['batches']))} | "
                             f"{', '.join(f'{1e3 * t:,.1f}' for t in b['median_s'])} | {b['slope']:.2f} |")
            lines.append("")
        lr = res["linear_shape_rate"]
        rows, d_in, d_out = lr["float32"]["shape"]
        rates = ", ".join(f"{DTYPE_LABELS[dt]} {lr[dt]['gflops']:.1f} GFLOP/s ({100 * lr[dt]['gflops'] / peaks[dt]['gflops']:.0f}% "
                          "of peak)" for dt in lr)
        lines += [f"Reachable GEMM rate at the models' own `d×d` linear shape (`F.linear`, {rows}×{d_in} · {d_in}×{d_out}): "
                  f"{rates}.", ""]

    lines += ["## Goals", "",
              f"Issue 19, per setting and per execution (eager against eager, compiled against compiled): inference "
              f"throughput CRATE/ViT ≥ {GOAL_SPEEDUP_FP32}× in fp32 and ≥ {GOAL_SPEEDUP_BF16}× in bf16; CRATE's "
              f"achieved bf16 FLOP rate ≥ {100 * GOAL_PEAK_FRACTION:.0f}% of the measured bf16 matmul peak; a CRATE "
              "bf16-autocast training step faster than an fp32 one (ratio < 1).", ""]
    lines += goals_table(report["goals"], ("goal", "setting", "mode", "measured", "target", "pass"),
                         quick=report["quick"])

    lines += [
        "## How measured", "",
        "* Both models are built from scratch with `torch.manual_seed(0)`: `CrateForImageClassification` "
        "(`CrateConfig.from_preset(\"crate-tiny\")` for 224², the same fields with d 192, L 6, K 6, 28², patch 4, "
        "1 channel, 10 labels for Fashion-MNIST) and `transformers.ViTForImageClassification(ViTConfig(hidden_size, "
        "num_hidden_layers, num_attention_heads, intermediate_size=4·d, image_size, patch_size, num_channels, "
        "num_labels))`. Inputs are random `N(0, 1)` pixels; labels random.",
        f"* **Attention kernel**: ViT's is `{report.get('vit_attention', 'sdpa')}`. `whitebox_sdpa` registers CRATE's "
        "own dispatch (`whitebox_hf.nn.attention.attend`) with transformers' `AttentionInterface`, so both models run "
        "the same kernel: PyTorch SDPA in fp32; in bf16 on CPU, with at most 256 keys, matmul-softmax-matmul in bf16, "
        "which is faster there than PyTorch's CPU flash kernel (`benchmarks/bench_attention_kernels.py`). `sdpa` is "
        "transformers' stock SDPA for ViT (CRATE keeps its dispatch).",
        "* **Inference**: `model.eval()`, each call in `torch.inference_mode()`; `bf16-autocast` wraps each call in "
        "`torch.autocast(\"cpu\", dtype=torch.bfloat16)` (weights fp32, matmuls bf16); `bf16-cast` runs a copy of the "
        "model cast with `.to(torch.bfloat16)` on bf16 input (everything bf16, no autocast).",
        "* **Executions**: `eager` runs the module; `compiled` runs `torch.compile(model)` (inductor, default "
        "options), the same call for CRATE and ViT, compiled afresh for every mode (`torch._dynamo.reset()`), "
        "compilation inside the warm-up and never timed. CRATE traces as one graph (tests/models/test_compile.py).",
        "* **Training**: a fresh copy of each model in `train()` mode with `torch.optim.AdamW(lr=1e-4, "
        "weight_decay=0.05)` (PyTorch's default CPU implementation); a step is `zero_grad(set_to_none=True)`, "
        "forward, `F.cross_entropy(logits.float(), labels)`, `backward()`, `optimizer.step()`. `bf16-autocast` "
        "wraps the forward in `torch.autocast(\"cpu\", dtype=torch.bfloat16)`; pure-bf16 training is not measured.",
        "* **Timing**: `time.perf_counter()` around one full batch call. Every mode runs the warm-up iterations for "
        "both models, then the timed repetitions **interleaved** (CRATE, ViT, then ViT, CRATE, …) with the Python "
        "garbage collector paused; the reported time is the **median** repetition. Ratios are CRATE/ViT "
        "(throughput: > 1 means CRATE is faster; step time: < 1 means CRATE is faster).",
        "* **Peak**: see the matmul-peak section; fraction of peak = achieved model GFLOP/s / peak GFLOP/s of the "
        "matmul dtype (fp32 peak for fp32, bf16 peak for both bf16 modes).",
        "* **MAC count**:", "", MAC_FORMULA_MD, "",
    ]
    if report.get("profile"):
        lines += [f"## Profile: fp32 inference forward, setting `{report['profile']['setting']}`, batch "
                  f"{report['profile']['batch']}", "",
                  "`torch.profiler` (CPU), one forward after one warm-up, sorted by total CPU time; `module:<Class>` "
                  "rows are ranges around the forward of every submodule of that class (summed over layers).", ""]
        for k in MODELS:
            lines += [f"### {k}", "", "```", report["profile"]["tables"][k].rstrip(), "```", ""]
    return "\n".join(lines) + "\n"


def evaluate_goals(report: dict) -> list[dict]:
    """Issue 19's targets per setting and execution (eager vs eager, compiled vs compiled)."""
    goals = []

    def add(goal, setting, mode, measured, target, value, passed):
        goals.append(dict(goal=goal, setting=setting, mode=mode, measured=measured, target=target, value=value,
                          **{"pass": bool(passed)}))

    for res in report["settings"]:
        name = res["setting"]["name"]
        inf, tr = res["inference"], res["training"]
        for key, e in inf.items():
            mode = key.split("/", 1)[1]
            r = e["throughput_ratio_crate_over_vit"]
            target = GOAL_SPEEDUP_FP32 if mode == "fp32" else GOAL_SPEEDUP_BF16
            add("inference throughput CRATE/ViT", name, key, f"{r:.2f}×", f"≥ {target}×", r, r >= target)
        for key, e in inf.items():
            if key.endswith("fp32"):
                continue
            f = e["crate"]["peak_fraction"]
            add("CRATE fraction of bf16 matmul peak", name, key, f"{100 * f:.0f}%",
                f"≥ {100 * GOAL_PEAK_FRACTION:.0f}%", f, f >= GOAL_PEAK_FRACTION)
        for execution in EXECUTIONS:
            fp32, bf16 = tr.get(f"{execution}/fp32"), tr.get(f"{execution}/bf16-autocast")
            if fp32 and bf16:
                r = bf16["crate"]["step_ms"] / fp32["crate"]["step_ms"]
                add("CRATE training step bf16 / fp32", name, execution, f"{r:.2f}", "< 1", r, r < 1)
        if bf16_skipped(report):  # the bf16 goals stay on the page, marked, instead of vanishing
            executions = sorted({key.split("/", 1)[0] for key in inf} | {key.split("/", 1)[0] for key in tr})
            for execution in executions:
                for goal, target in (
                        ("inference throughput CRATE/ViT", f"≥ {GOAL_SPEEDUP_BF16}×"),
                        ("CRATE fraction of bf16 matmul peak", f"≥ {100 * GOAL_PEAK_FRACTION:.0f}%"),
                        ("CRATE training step bf16 / fp32", "< 1")):
                    goals.append(dict(goal=goal, setting=name, mode=f"{execution}/bf16", measured="not measured",
                                      target=target, value=None, **{"pass": None}))
    return goals


DTYPE_LABELS = {"float32": "fp32", "bfloat16": "bf16"}


def bf16_skipped(report: dict) -> str | None:
    """Why this run measured no bf16 mode, or None (also for pages of runs from before the ``--bf16`` switch)."""
    bf16 = report.get("bf16")
    return None if not bf16 or bf16["enabled"] else bf16["reason"]


# --------------------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--output", default="docs/results/benchmark_crate_vs_vit.md",
                   help="markdown report path; the raw numbers go to the same name with .json")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: tiny batches, 1 warm-up, 2 reps, small peak matmul (overrides the sizes below)")
    p.add_argument("--settings", nargs="+", default=["crate-t-224", "fmnist-28"], choices=["crate-t-224", "fmnist-28"])
    p.add_argument("--inference-modes", nargs="+", default=["fp32", "bf16-autocast"], choices=list(INFERENCE_MODES))
    p.add_argument("--executions", nargs="+", default=list(EXECUTIONS), choices=list(EXECUTIONS),
                   help="eager and/or torch.compile (inductor) of both models")
    p.add_argument("--no-batch-scaling", dest="batch_scaling", action="store_false",
                   help="skip the inference-time-vs-batch measurement (log-log slope)")
    p.add_argument("--training-modes", nargs="+", default=list(TRAINING_MODES), choices=list(TRAINING_MODES))
    p.add_argument("--skip-train", action="store_true", help="measure inference only")
    add_bf16_argument(p)
    p.add_argument("--vit-attention", default=SAME_KERNEL, choices=[SAME_KERNEL, "sdpa"],
                   help="ViT's attention kernel: CRATE's own dispatch (default) or transformers' stock SDPA")
    p.add_argument("--allocator", default="keep", choices=["keep", "default"],
                   help="keep: glibc keeps freed buffers for reuse (`_common.keep_freed_memory`), so neither model "
                        "pays first-touch page faults on every activation; default: glibc's defaults")
    p.add_argument("--from-json", default=None, help="render the page again from a run's JSON, measuring nothing")
    p.add_argument("--warmup", type=int, default=2, help="warm-up iterations per model and mode")
    p.add_argument("--reps", type=int, default=7, help="timed repetitions per model and mode (median reported)")
    p.add_argument("--batch-224", type=int, default=32, help="inference batch at 224²")
    p.add_argument("--batch-28", type=int, default=256, help="inference batch at 28²")
    p.add_argument("--train-batch-224", type=int, default=32, help="training batch at 224²")
    p.add_argument("--train-batch-28", type=int, default=128, help="training batch at 28²")
    p.add_argument("--peak-size", type=int, default=4096, help="side of the square matmul for the peak")
    p.add_argument("--peak-reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    p.add_argument("--profile", action="store_true",
                   help="also profile one fp32 inference forward of both models at 224² and add the tables")
    p.add_argument("--profile-batch", type=int, default=None, help="batch for --profile (default: --batch-224)")
    args = p.parse_args(argv)
    if args.quick:
        args.warmup, args.reps = 1, 2
        args.batch_224, args.batch_28, args.train_batch_224, args.train_batch_28 = 2, 16, 2, 16
        args.peak_size, args.peak_reps = 1024, 2
        if args.profile_batch is None:
            args.profile_batch = 2
    if args.profile_batch is None:
        args.profile_batch = args.batch_224
    if "compiled" in args.executions and args.warmup < 1:
        p.error(f"--warmup must be at least 1 with the compiled execution (compilation happens in the warm-up), "
                f"got {args.warmup}")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.from_json:
        report = json.loads(Path(args.from_json).read_text())
        report["goals"] = evaluate_goals(report)
        Path(args.output).write_text(render(report))
        print(f"rendered {args.from_json} into {args.output}")
        return report
    command, env = start(args, argv, "bench_crate_vs_vit.main")
    env["allocator"] = "keep" if args.allocator == "keep" and keep_freed_memory() else "default"
    bf16 = resolve_bf16(args.bf16)
    if not bf16["enabled"]:
        print(f"bf16 modes skipped: {bf16['reason']}", flush=True)
        args.inference_modes = [m for m in args.inference_modes if INFERENCE_MODES[m][2] == "float32"]
        args.training_modes = [m for m in args.training_modes if TRAINING_MODES[m][1] == "float32"]
    args.matmul_dtypes = ("float32", "bfloat16") if bf16["enabled"] else ("float32",)

    settings = {
        "crate-t-224": Setting("crate-t-224", "CRATE-T shapes at 224²", 384, 12, 6, 224, 16, 3, 1000,
                               args.batch_224, args.train_batch_224),
        "fmnist-28": Setting("fmnist-28", "Fashion-MNIST shapes at 28²", 192, 6, 6, 28, 4, 1, 10,
                             args.batch_28, args.train_batch_28),
    }

    print(f"matmul peak ({args.peak_size}³) ...", flush=True)
    peak_start = {dt: measure_matmul_peak(getattr(torch, dt), args.peak_size, 1, args.peak_reps)
                  for dt in args.matmul_dtypes}
    print("    " + ", ".join(f"{dt} {v['gflops']:.1f} GFLOP/s" for dt, v in peak_start.items()), flush=True)

    results = [run_setting(settings[name], args, peak_start) for name in args.settings]

    profile = None
    if args.profile:
        print(f"profiling fp32 inference at 224², batch {args.profile_batch} ...", flush=True)
        profile = dict(setting="crate-t-224", batch=args.profile_batch,
                       tables=profile_forward(settings["crate-t-224"], args.profile_batch))

    peak_end = {dt: measure_matmul_peak(getattr(torch, dt), args.peak_size, 1, args.peak_reps)
                for dt in args.matmul_dtypes}
    peaks = {dt: max(peak_start[dt], peak_end[dt], key=lambda v: v["gflops"]) for dt in peak_start}
    # Recompute the fractions against the final (max of start/end) peak.
    for res in results:
        for section in ("inference", "training"):
            for key, e in res[section].items():
                mode = key.split("/", 1)[1]
                dt = INFERENCE_MODES[mode][2] if section == "inference" else TRAINING_MODES[mode][1]
                for k in MODELS:
                    e[k]["peak_fraction"] = e[k]["gflops"] / peaks[dt]["gflops"]
    env["loadavg_end"] = loadavg()

    report = dict(
        command=command, date=now(), quick=args.quick, vit_attention=args.vit_attention,
        warmup=args.warmup, reps=args.reps, environment=env, bf16=bf16, matmul_peak_start=peak_start,
        matmul_peak_end=peak_end, matmul_peak=peaks, settings=results, profile=profile,
        goals_definition=dict(speedup_fp32=GOAL_SPEEDUP_FP32, speedup_bf16=GOAL_SPEEDUP_BF16,
                              peak_fraction=GOAL_PEAK_FRACTION),
    )
    report["goals"] = evaluate_goals(report)
    write_report(args.output, report, lambda: render(report))
    return report


if __name__ == "__main__":
    main()
