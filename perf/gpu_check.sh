#!/usr/bin/env bash
# The ten-minute end-to-end GPU check: what a person with one CUDA GPU runs first.
#
#   bash perf/gpu_check.sh             # run it (about ten minutes on an L4 / A100 / H100)
#   bash perf/gpu_check.sh --dry-run   # print every command it would run, run nothing
#
# Steps: the doctor (capability, dtype, memory); the smoke profile on CUDA with a 4-bit base
# (every notebook); then the gpu-small profile cut short: SFT ~20 steps, DPO ~4 steps, GRPO ~4
# steps; then `eval` of the SFT run on 100 XSTest rows with each backend (transformers, and vLLM
# where installed). nvidia-smi samples the GPU's memory once a second. Each step's exit code,
# seconds and peak memory go to one summary JSON ($OUT/summary.json); the logs beside it.
#
# Settings (environment): MODEL (default Qwen/Qwen3-0.6B, gpu-small's; on a machine without the
# hub: a local model folder, or tiny-random), DATA (default: the kit's teaching sample, which
# needs no hub; Jazhyc/aims-safety-intents for the real data), OUT (default
# outputs/gpu-check-<time>). A failing step is recorded and the next one still runs.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
MODEL="${MODEL:-Qwen/Qwen3-0.6B}"
DATA="${DATA:-}"
OUT="${OUT:-outputs/gpu-check-$(date +%Y%m%d-%H%M%S)}"
PY="${PYTHON:-python}"
GPU=(--profile gpu-small -p "model=\"$MODEL\"" -p "data_source=\"$DATA\"" --out "$OUT/gpu")

STEPS=()
declare -A CMD
step() {  # step NAME COMMAND...: register a step (its command as one shell-quoted line)
  local name=$1; shift
  STEPS+=("$name")
  CMD[$name]=$(printf '%q ' "$@")
}

step doctor        "$PY" -m aims_kit doctor
step smoke_cuda_4bit "$PY" -m aims_kit run --profile smoke -p quantize=true --out "$OUT/smoke"
step sft_20        "$PY" -m aims_kit train sft "${GPU[@]}" -p max_steps=20 -p eval_steps=10 -p 'conditions=["intent_label"]'
step dpo_4         "$PY" -m aims_kit train dpo "${GPU[@]}" -p dpo_max_steps=4 -p dpo_max_prompts=32 -p dpo_k=4 -p eval_steps=2
step grpo_4        "$PY" -m aims_kit train grpo "${GPU[@]}" -p grpo_steps=4 -p grpo_eval_steps=2 -p grpo_val_limit=32 \
                   -p 'grpo_lr_candidates=[]' -p 'reward_sets=["label_intent"]'
for backend in transformers vllm; do
  step "eval_xstest_$backend" sh -c "\"$PY\" -m aims_kit eval --run \"\$(ls -d \"$OUT\"/gpu/runs/sft-intent_label-* | tail -n 1)\" --benchmark xstest --limit 100 --backend $backend --replace"
done

if (( DRY )); then
  for name in "${STEPS[@]}"; do echo "[$name] ${CMD[$name]}"; done
  echo "[memory] nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -l 1 > $OUT/<step>.mem"
  echo "[summary] $OUT/summary.json"
  exit 0
fi

command -v nvidia-smi >/dev/null || { echo "error: no nvidia-smi: this check needs a CUDA GPU" >&2; exit 2; }
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
: > "$OUT/steps.tsv"
for name in "${STEPS[@]}"; do
  if [[ $name == eval_xstest_vllm ]] && ! "$PY" -c "import vllm" 2>/dev/null; then
    printf '%s\tskipped\t0\t0\n' "$name" >> "$OUT/steps.tsv"; echo "[$name] skipped: vllm is not installed"; continue
  fi
  echo "[$name] ${CMD[$name]}"
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -l 1 > "$OUT/$name.mem" 2>/dev/null &
  sampler=$!
  start=$(date +%s)
  eval "${CMD[$name]}" > "$OUT/$name.log" 2>&1
  rc=$?
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null
  peak=$(sort -n "$OUT/$name.mem" | tail -n 1)
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - start ))" "${peak:-0}" >> "$OUT/steps.tsv"
  echo "[$name] exit $rc, peak ${peak:-?} MiB"; (( rc )) && tail -n 20 "$OUT/$name.log"
done

"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
steps = []
for line in (out / "steps.tsv").read_text().splitlines():
    name, rc, seconds, peak = line.split("\t")
    steps.append({"step": name, "exit": rc, "seconds": int(seconds), "peak_gpu_mib": int(peak or 0)})
doctor = (out / "doctor.log").read_text() if (out / "doctor.log").exists() else ""
summary = {"doctor": doctor.splitlines(), "steps": steps, "passed": all(s["exit"] in ("0", "skipped") for s in steps)}
(out / "summary.json").write_text(json.dumps(summary, indent=2))
print(json.dumps(summary, indent=2))
EOF
