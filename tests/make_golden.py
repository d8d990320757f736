"""Write the golden files of `tests/test_shipped.py` for the shipped model, and print their `GOLDEN_SYMBOLS`.

    python tests/make_golden.py          # writes tests/data/golden.hit (format version 1) and golden-v2.hit

Both code the 256² centre of the sample photo at beta2 = beta1 = 0.5 to the same symbols: golden-v2.hit is what
`codec.encode` writes; golden.hit codes those symbols again under version 1's float32 priors, as the encoder of
that format did, so that the decoder's version-1 path stays tested with every new shipped model.
"""

import hashlib
from pathlib import Path

import numpy as np
import torch

from hitcodec import bitstream, codec, coding
from hitcodec.image import CodecImage, read_image
from hitcodec.samples import SAMPLE_PHOTO
from hitcodec.weights import load_model

BETA = 0.5
DATA = Path(__file__).parent / "data"


def version_1(loaded, coded: codec.Coded) -> bytes:
    """The symbols of a version-2 file, coded again under the float32 priors of format version 1."""
    payloads = {}

    def take(name, mean, scale, ctx):
        sym = coded.symbols[name]
        payloads[name] = coding.encode_symbols(sym, coding.scale_index(scale.numpy()))
        return torch.from_numpy(sym).to(mean.dtype).view(mean.shape)

    h = coded.header
    z2_height, z2_width = -(-h.height // codec.STRIDE), -(-h.width // codec.STRIDE)
    codec.walk_layers(*codec.prior_networks(loaded, BETA, BETA, version=1), z2_height, z2_width, take)
    header = bitstream.Header(h.model_id, h.beta2, h.beta1, h.width, h.height, h.mode, None, version=1)
    return bitstream.pack(header, [payloads[name] for name in codec.LAYERS])


def main() -> None:
    loaded = load_model()
    rgb = read_image(SAMPLE_PHOTO).rgb
    h, w = rgb.shape[:2]
    centre = np.ascontiguousarray(rgb[(h - 256) // 2:(h + 256) // 2, (w - 256) // 2:(w + 256) // 2])
    coded = codec.encode(loaded, CodecImage(centre, None, "RGB"), BETA, BETA)
    files = {"golden-v2.hit": coded.data, "golden.hit": version_1(loaded, coded)}
    for name, data in files.items():
        decoded = codec.decode(loaded, data)  # both decode, to the coded symbols
        assert all(np.array_equal(decoded.symbols[n], coded.symbols[n]) for n in codec.LAYERS), name
        (DATA / name).write_bytes(data)
        print(f"wrote {DATA / name}: {len(data)} bytes, format version {decoded.header.version}")
    print("GOLDEN_SYMBOLS = {" + ",\n                  ".join(
        f'"{n}": "{hashlib.sha256(np.ascontiguousarray(coded.symbols[n], dtype="<i4").tobytes()).hexdigest()}"'
        for n in codec.LAYERS) + "}")


if __name__ == "__main__":
    main()
