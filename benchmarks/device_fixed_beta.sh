#!/usr/bin/env bash
# The small-scale equal-steps comparison of benchmarks.fixed_beta (docs/equal-steps.md) at lengths this CPU cannot
# reach, in one call on a lent GPU machine: one process per model and length, side by side on the one GPU, each
# training the small architecture of benchmarks.fixed_beta with its recipe (batch 8 x 128^2, lr 3e-4 divided by 3
# after 80 % of its own steps, learned bin widths, the same seed) to that length. Each model's last checkpoint is
# exported as fp16 and packed, with its logs, in $OUT/models-STEPS.tar; they are measured on this CPU (real bytes):
#
#   carry: [".whl", ".carry"]    command: DEADLINE=540 LENGTHS="24000" bash benchmarks/device_fixed_beta.sh
#                                (timeout_s ~ DEADLINE + 30)
#   then here: mkdir -p runs/gpu-fixed && tar xf FILES_AT/models-24000.tar -C runs/gpu-fixed &&
#     python -m benchmarks.fixed_beta --out benchmarks/results/fixed-beta-24k-gpu \
#       --model mix=runs/gpu-fixed/24000/mix.pt --model fixed-0.2=runs/gpu-fixed/24000/fixed-0.2.pt \
#       --model fixed-1=runs/gpu-fixed/24000/fixed-1.pt --model fixed-5=runs/gpu-fixed/24000/fixed-5.pt
#
# Speed (H100, 2026-11-27): six processes at once, 64 channels, each ~38 s to compile, then ~60 steps/s at batch 8
# and ~46 at batch 32, so six 12 000-step models took 423 s (benchmarks/results/fixed-beta-12k-gpu-batch; two runs of
# this script side by side, after one `source benchmarks/device_env.sh`). At that speed, four 24 000-step models at
# batch 8 need ~440 s of the 495 that DEADLINE=540 leaves them. If the deadline comes first every process is stopped
# and each keeps its last evaluated checkpoint (every EVAL_EVERY steps), whose step the summary prints; compare only
# models stopped at the same step (and a stopped run has not had its learning-rate drop). Settings (environment):
# DEADLINE (540), LENGTHS ("24000": --steps values, separated by spaces), NAMES ("mix fixed-0.2 fixed-1 fixed-5":
# benchmarks.fixed_beta --names), SEED (0), DEVICE (cuda), EVAL_EVERY (2000), FAST (1: --fast, bf16 autocast,
# channels_last and CUDA graphs; 0: eager fp32), EXTRA (more flags for benchmarks.fixed_beta, e.g.
# "--cond-kernels 2"), OUT (set by the device tool; /tmp/device-out otherwise).
set -uo pipefail
T0=$SECONDS
DEADLINE=${DEADLINE:-540} LENGTHS=${LENGTHS:-24000} NAMES=${NAMES:-mix fixed-0.2 fixed-1 fixed-5} SEED=${SEED:-0}
DEVICE=${DEVICE:-cuda} EVAL_EVERY=${EVAL_EVERY:-2000} FAST=${FAST:-1} EXTRA=${EXTRA:-}
OUT=${OUT:-/tmp/device-out} RUNS=${RUNS:-/tmp/hitcodec-fixed-beta}
mkdir -p "$OUT" "$RUNS"
source benchmarks/device_env.sh || exit 1
train() {  # STEPS NAME [--fast]: one model to one length
    # shellcheck disable=SC2086  # EXTRA holds several flags
    timeout $(($(left) - 45)) python3 -m benchmarks.fixed_beta --data .carry/train --runs "$RUNS/$1" --names "$2" \
        --train-only --steps "$1" --eval-every "$EVAL_EVERY" --seed "$SEED" --latent-bins --device "$DEVICE" \
        --threads 1 "${@:3}" $EXTRA >> "$RUNS/train-$1-$2.log" 2>&1
}
pids=()
for steps in $LENGTHS; do
    for name in $NAMES; do
        if [ "$FAST" = 1 ]; then  # a run that fails with --fast before its first checkpoint: again without it
            ( train "$steps" "$name" --fast || [ -f "$RUNS/$steps/$name/last.pt" ] || [ "$(left)" -lt 120 ] ||
                { echo "== failed with --fast; again without it"; train "$steps" "$name"; } ) &
        else
            train "$steps" "$name" &
        fi
        pids+=($!)
    done
done
wait "${pids[@]}"
for steps in $LENGTHS; do
    mkdir -p "$RUNS/export/$steps"
    for name in $NAMES; do
        run=$RUNS/$steps/$name
        if [ -f "$run/last.pt" ]; then
            python3 -m hitcodec export "$run/last.pt" "$RUNS/export/$steps/$name.pt" --force > /dev/null
            cp "$run/log.jsonl" "$RUNS/export/$steps/$name-log.jsonl"
            python3 -c "import json, sys; r = [json.loads(l) for l in open(sys.argv[1])][-1]
print(f'{sys.argv[2]} {sys.argv[3]}: step {r[\"step\"]}, dev score {r[\"score\"]:.4f}')" \
                "$run/log.jsonl" "$steps" "$name"
        else
            echo "$steps $name: no checkpoint"; tail -3 "$RUNS/train-$steps-$name.log"
        fi
        cp "$RUNS/train-$steps-$name.log" "$RUNS/export/$steps/"
    done
    tar cf "$OUT/models-$steps.tar" -C "$RUNS/export" "$steps"
done
ls -la "$OUT"
echo "done after $((SECONDS - T0)) s"
