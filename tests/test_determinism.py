"""Same input, same bytes and same latents across processes and torch thread counts."""

import subprocess
import sys

import numpy as np
import torch
from PIL import Image

from hitcodec import codec
from hitcodec.api import resolve_model
from hitcodec.image import read_image

SCRIPT = """
import sys, torch
torch.set_num_threads(int(sys.argv[3]))
from hitcodec import codec
from hitcodec.api import resolve_model
from hitcodec.image import read_image
sys.stdout.write(codec.encode(resolve_model(sys.argv[1]), read_image(sys.argv[2]), 0.5, 2.0).data.hex())
"""


def test_bytes_and_latents_identical_across_processes_and_threads(tmp_path, tiny_path, photo):
    path = tmp_path / "p.png"
    Image.fromarray(photo).save(path)
    loaded = resolve_model(str(tiny_path))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        here = codec.encode(loaded, read_image(path), 0.5, 2.0)
        for n in (1, 2):
            out = subprocess.run([sys.executable, "-c", SCRIPT, str(tiny_path), str(path), str(n)],
                                 capture_output=True, text=True, check=True)
            assert bytes.fromhex(out.stdout) == here.data
        torch.set_num_threads(1)
        decoded = codec.decode(loaded, here.data)
    finally:
        torch.set_num_threads(threads)
    assert all(np.array_equal(decoded.symbols[n], here.symbols[n]) for n in codec.LAYERS)
