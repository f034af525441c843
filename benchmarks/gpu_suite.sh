#!/usr/bin/env bash
# GPU readiness suite: on one CUDA machine, in under five minutes, the three GPU measurements of issue 19:
#   1. CRATE-B vs ViT-B inference and training throughput, bf16 autocast        (bench_gpu.py vision)
#   2. ToST vs FlashAttention-backed SDPA at 4k-64k tokens, time and peak memory (bench_gpu.py long-context)
#   3. greedy decode, CausalCRATE vs GPT-2 with dynamic and static caches, ToST  (bench_gpu.py decode)
# Results: <part>.md and <part>.json in $OUT if set, else docs/results/gpu/. Each part has its own time limit
# (PART_TIMEOUT_S, default 90 s) so that one slow part cannot take the whole budget; a part that fails or times
# out is reported and the others still run. Exit status: 0 if every part wrote its page, 1 if any failed, 2
# without CUDA.
#
#   bash benchmarks/gpu_suite.sh                 # from the repository root, with the project's Python
#   PYTHON=.venv/bin/python OUT=/tmp/gpu bash benchmarks/gpu_suite.sh
#   bash benchmarks/gpu_suite.sh --dry-run       # tiny sizes on the CPU: checks the entry points only
set -u -o pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
python="${PYTHON:-python}"
out="${OUT:-$root/docs/results/gpu}"
part_timeout="${PART_TIMEOUT_S:-90}"
dry_run=()
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry_run=(--dry-run) ;;
    *) echo "gpu_suite.sh: unknown argument '$arg' (expected: --dry-run)" >&2; exit 64 ;;
  esac
done

if [ ${#dry_run[@]} -eq 0 ]; then
  if ! "$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_suite.sh: no CUDA device is visible to $python (torch.cuda.is_available() is False)." >&2
    echo "Run it on a machine with an NVIDIA GPU, or pass --dry-run to check the entry points on the CPU." >&2
    exit 2
  fi
  "$python" -c 'import torch; print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__)'
fi

mkdir -p "$out"
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"
failed=()
start=$SECONDS
for part in vision long-context decode; do
  echo "== $part (limit ${part_timeout} s)"
  if ! timeout "$part_timeout" "$python" "$here/bench_gpu.py" "$part" --out "$out" "${dry_run[@]}"; then
    echo "gpu_suite.sh: part '$part' failed or ran past ${part_timeout} s" >&2
    failed+=("$part")
  fi
done
echo "== done in $((SECONDS - start)) s; results in $out"
if [ ${#failed[@]} -gt 0 ]; then
  echo "gpu_suite.sh: failed parts: ${failed[*]}" >&2
  exit 1
fi
