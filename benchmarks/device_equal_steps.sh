#!/usr/bin/env bash
# The full-size equal-budget baseline in one call on a lent GPU machine (docs/training.md): two models of the
# shipped architecture trained from scratch side by side on the one GPU, with the same recipe, crops, seed and
# steps, one with the shipped β sampling (--betas mix) and one as the conventional β-VAE (--betas diagonal); then,
# in the time left, the speed table of benchmarks.train_speed. Leaves in $OUT, per model, the fp16 weights of
# the last checkpoint, the log (dev eval every EVAL_EVERY steps) and the training output, and the speed table.
#
#   carry: [".whl", ".carry"]    command: DEADLINE=550 STEPS=12000 bash benchmarks/device_equal_steps.sh
#                                (timeout_s ~ DEADLINE + 30)
#
# The two runs share the GPU (the step is bound by kernel launches, so two processes use it better than one).
# Both stop at STEPS; if the deadline comes first both are stopped and each keeps its last evaluated checkpoint,
# so log.jsonl compares them at equal steps either way. MODES="fixed:0.2,0.2 fixed:1,1 fixed:5,5" trains one
# model per β instead, the reference of `python -m benchmarks.fixed_beta --model NAME=PATH ...` (NAME = the file
# name's first part: mix, diagonal, fixed-0.2, ...). Settings (environment): DEADLINE (550), STEPS (12000),
# MODES ("mix diagonal": --betas modes, separated by spaces), DEVICE (cuda), BATCH (16), PATCH (256), LR (3e-4), Z2_WARMUP (1500), EVAL_EVERY (1000),
# SPEED_VARIANTS (eager,all,graphs; "" skips), SPEED_WARMUP (50), EXTRA (more flags for hitcodec train),
# OUT (set by the device tool; /tmp/device-out otherwise).
set -uo pipefail
T0=$SECONDS
DEADLINE=${DEADLINE:-550} STEPS=${STEPS:-12000} MODES=${MODES:-mix diagonal} DEVICE=${DEVICE:-cuda}
BATCH=${BATCH:-16} PATCH=${PATCH:-256} LR=${LR:-3e-4} Z2_WARMUP=${Z2_WARMUP:-1500} EVAL_EVERY=${EVAL_EVERY:-1000}
SPEED_VARIANTS=${SPEED_VARIANTS-eager,all,graphs} SPEED_WARMUP=${SPEED_WARMUP:-50} EXTRA=${EXTRA:-}
OUT=${OUT:-/tmp/device-out} RUNS=${RUNS:-/tmp/hitcodec-equal}
mkdir -p "$OUT"
source benchmarks/device_env.sh || exit 1
name() {  # file name of a --betas mode: fixed:1,1 -> fixed-1, fixed:2,0.5 -> fixed-2-0.5
    local b=${1#fixed:}
    if [ "$b" = "$1" ]; then echo "$1"; elif [ "${b%,*}" = "${b#*,}" ]; then echo "fixed-${b%,*}"
    else echo "fixed-${b%,*}-${b#*,}"; fi
}
pids=()
for mode in $MODES; do
    # shellcheck disable=SC2086  # EXTRA holds several flags
    timeout $(($(left) - 30)) python3 -m hitcodec train --data .carry/train --out "$RUNS/$(name "$mode")" \
        --device "$DEVICE" \
        --betas "$mode" --steps "$STEPS" --lr "$LR" --z2-warmup "$Z2_WARMUP" --batch "$BATCH" --patch "$PATCH" \
        --eval-every "$EVAL_EVERY" --amp --channels-last --compile $EXTRA 2>&1 | tr '\r' '\n' | grep -v '^ *$' \
        > "$OUT/train-$(name "$mode").log" &
    pids+=($!)
done
wait "${pids[@]}"
for mode in $MODES; do
    n=$(name "$mode")
    echo "== $mode"; grep "dev score" "$OUT/train-$n.log" | tail -3
    [ -f "$RUNS/$n/last.pt" ] && python3 -m hitcodec export "$RUNS/$n/last.pt" "$OUT/$n-last-fp16.pt" --force
    cp "$RUNS/$n/log.jsonl" "$OUT/$n-log.jsonl" 2>/dev/null
done
if [ -n "$SPEED_VARIANTS" ] && [ "$(left)" -gt 40 ]; then
    timeout $(($(left) - 5)) python3 -m benchmarks.train_speed --data .carry/train --device "$DEVICE" --batch "$BATCH" \
        --patch "$PATCH" --steps 30 --warmup "$SPEED_WARMUP" --variants "$SPEED_VARIANTS" \
        --out "$OUT/train-speed.json" || echo "speed table failed or ran out of time"
fi
ls -la "$OUT"
echo "done after $((SECONDS - T0)) s"
