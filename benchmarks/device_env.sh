# Sourced by the device_*.sh scripts on a lent GPU machine: installs the carried wheels (.whl, compressai without
# its numpy < 2 pin) where the image lacks them, and prints the versions. Returns non-zero when that fails.
# Defines left: the seconds left before the caller's DEADLINE, counted from its T0 (both set before sourcing this).
left() { echo $((DEADLINE - (SECONDS - T0))); }
if [ -d .whl ] && ! python3 -c "import compressai, constriction" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || return 1
    export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=30
python3 -c "import torch, numpy, compressai, hitcodec.train
print('torch', torch.__version__, 'numpy', numpy.__version__,
      torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')" || return 1
