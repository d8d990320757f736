#!/usr/bin/env bash
# One call on a lent GPU machine (docs/training.md): install the carried wheels, time the training step's speed
# options, continue training from .carry/start.pt until a deadline, and leave in $OUT the fp16 weights of the last
# and best checkpoints, the training log and the speed figures (each file well under the 16 MiB that may come back).
#
#   carry: [".whl", ".carry"]    command: DEADLINE=540 bash benchmarks/device_run.sh    (timeout_s ~ DEADLINE + 50)
#
# Every step is bounded so that the weights come back even when one fails: the speed table gets at most SPEED_MAX
# seconds, training gets what is left before DEADLINE (seconds after this script starts) less a minute for its
# last evaluation and the export, and a training run that fails with --compile is retried once without it.
# Called again while the machine is still warm (within 30 s; carry the same paths), it continues the full
# checkpoint left in $RUN (Adam's state included) instead of .carry/start.pt, and skips the speed table.
# Settings (environment): DEADLINE (540), DEVICE (cuda), BATCH (16), PATCH (256), LR (6e-5), EVAL_EVERY (500),
# SPEED_STEPS (30, more until each variant is timed for 5 s; 0 skips the speed tables), SPEED_WARMUP (50),
# SPEED_MAX (150), VARIANTS (eager,all,graphs), SPEED_BATCH2 (0; e.g. 64: eager and all three options again at
# this batch into train-speed-b$SPEED_BATCH2.json; at most SPEED_MAX/2 s and only while 300 s are left),
# COMPILE_MODE (reduce-overhead: the step replayed as CUDA graphs, 2.5x plain eager on an H200; "default" without),
# EXTRA (more flags for hitcodec train, e.g. "--steps 200000"), OUT (set by the device tool; /tmp/device-out otherwise).
set -uo pipefail
T0=$SECONDS
DEADLINE=${DEADLINE:-540} DEVICE=${DEVICE:-cuda} BATCH=${BATCH:-16} PATCH=${PATCH:-256} LR=${LR:-6e-5}
EVAL_EVERY=${EVAL_EVERY:-500} SPEED_STEPS=${SPEED_STEPS:-30} SPEED_WARMUP=${SPEED_WARMUP:-50}
SPEED_MAX=${SPEED_MAX:-150} VARIANTS=${VARIANTS:-eager,all,graphs} SPEED_BATCH2=${SPEED_BATCH2:-0}
COMPILE_MODE=${COMPILE_MODE:-reduce-overhead} EXTRA=${EXTRA:-}
OUT=${OUT:-/tmp/device-out} RUN=${RUN:-/tmp/hitcodec-run}
mkdir -p "$OUT"
START=.carry/start.pt
if [ -f "$RUN/last.pt" ]; then
    START=$RUN/last.pt SPEED_STEPS=0
    echo "continuing $START"
fi
source benchmarks/device_env.sh || exit 1
if [ "$SPEED_STEPS" -gt 0 ]; then
    timeout "$SPEED_MAX" python3 -m benchmarks.train_speed --data .carry/train --device "$DEVICE" --batch "$BATCH" \
        --patch "$PATCH" --steps "$SPEED_STEPS" --warmup "$SPEED_WARMUP" --variants "$VARIANTS" \
        --out "$OUT/train-speed.json" \
        || echo "speed table failed or ran out of time (exit $?); training anyway"
    if [ "$SPEED_BATCH2" -gt 0 ] && [ "$(left)" -gt 300 ]; then
        timeout $((SPEED_MAX / 2)) python3 -m benchmarks.train_speed --data .carry/train --device "$DEVICE" \
            --batch "$SPEED_BATCH2" --patch "$PATCH" --steps "$SPEED_STEPS" --warmup "$SPEED_WARMUP" \
            --variants eager,all --out "$OUT/train-speed-b$SPEED_BATCH2.json" || echo "second speed table failed"
    fi
fi
train() {  # extra flags; trains until a minute before the deadline
    local minutes
    if [ "$(left)" -lt 90 ]; then echo "no time left to train"; return 1; fi
    minutes=$(python3 -c "print(max(0.5, ($(left) - 60) / 60))")
    echo "training for $minutes min $*"
    timeout $(($(left) - 20)) python3 -m hitcodec train --resume "$START" --data .carry/train --out "$RUN" \
        --device "$DEVICE" --minutes "$minutes" --amp --channels-last --betas mix --lr "$LR" --lr-drop 0.6 \
        --batch "$BATCH" --patch "$PATCH" --eval-every "$EVAL_EVERY" --compile-mode "$COMPILE_MODE" $EXTRA "$@" \
        2>&1 | tr '\r' '\n' | grep -v '^ *$' \
        | tee -a "$OUT/train.log"
}
train --compile
if [ ! -f "$RUN/last.pt" ] && [ "$(left)" -gt 120 ]; then
    echo "training with --compile left no checkpoint; again without it"
    train --no-compile
fi
for name in last best; do
    [ -f "$RUN/$name.pt" ] && python3 -m hitcodec export "$RUN/$name.pt" "$OUT/$name-fp16.pt" --force
done
cp "$RUN/log.jsonl" "$OUT/log.jsonl" 2>/dev/null
ls -la "$OUT"
echo "done after $((SECONDS - T0)) s"
