#!/usr/bin/env bash
# One call on a lent GPU machine (docs/training.md): install the carried wheels, time the training step's speed
# options, continue training from .carry/start.pt for $MINUTES, and leave in $OUT the fp16 weights of the last and
# best checkpoints, the training log and the speed figures (each file well under the 16 MiB that may come back).
#
#   carry: [".whl", ".carry"]    command: MINUTES=6 bash benchmarks/device_run.sh
#
# Settings (environment): MINUTES (6), DEVICE (cuda), BATCH (16), PATCH (256), LR (1e-4), EVAL_EVERY (1000),
# SPEED_STEPS (30; 0 skips the speed table), OUT (set by the device tool; /tmp/device-out otherwise).
set -euo pipefail
MINUTES=${MINUTES:-6} DEVICE=${DEVICE:-cuda} BATCH=${BATCH:-16} PATCH=${PATCH:-256} LR=${LR:-1e-4}
EVAL_EVERY=${EVAL_EVERY:-1000} SPEED_STEPS=${SPEED_STEPS:-30} OUT=${OUT:-/tmp/device-out}
RUN=${RUN:-/tmp/hitcodec-run}
mkdir -p "$OUT"
if [ -d .whl ] && ! python3 -c "import compressai, constriction" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=30
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"
if [ "$SPEED_STEPS" -gt 0 ]; then
    python3 -m benchmarks.train_speed --data .carry/train --device "$DEVICE" --batch "$BATCH" --patch "$PATCH" \
        --steps "$SPEED_STEPS" --warmup 10 --out "$OUT/train-speed.json"
fi
python3 -m hitcodec train --resume .carry/start.pt --data .carry/train --out "$RUN" --device "$DEVICE" \
    --minutes "$MINUTES" --amp --channels-last --compile --betas mix --lr "$LR" --lr-drop 0.6 \
    --batch "$BATCH" --patch "$PATCH" --eval-every "$EVAL_EVERY" 2>&1 | tr '\r' '\n' | grep -v '^ *$'
python3 -m hitcodec export "$RUN/last.pt" "$OUT/last-fp16.pt" --force
python3 -m hitcodec export "$RUN/best.pt" "$OUT/best-fp16.pt" --force
cp "$RUN/log.jsonl" "$OUT/log.jsonl"
ls -la "$OUT"
