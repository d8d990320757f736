"""The shipped model on the bundled photo: the only test that uses real weights."""

import numpy as np
import pytest

from hitcodec import codec, compress, decompress
from hitcodec.image import CodecImage, read_image
from hitcodec.samples import SAMPLE_PHOTO
from hitcodec.weights import DEFAULT_WEIGHTS, load_model

PSNR_FLOOR_DB = 25.0  # at beta2 = beta1 = 1; the shipped model measures 30.82 dB


@pytest.fixture(scope="module")
def shipped():
    return load_model()


@pytest.fixture(scope="module")
def sample():
    return read_image(SAMPLE_PHOTO)


# tests/data/golden.hit (format version 1) and golden-v2.hit (version 2, written since 2026-12-06): the 256² centre
# of the sample photo at beta2 = beta1 = 0.5, coded by the shipped model (`codec.encode`); the SHA-256 of their
# decoded symbols per layer (the same for both). A file must decode to the same latents on every machine and after
# every update of torch or constriction: a change in the priors' numerics or in the entropy model fails here. A new
# shipped model needs new golden files: `python tests/make_golden.py` (docs/training.md, "On this machine").
GOLDEN_SYMBOLS = {"z2": "cdc3a7643437153deca8785848598fb99c8528549fa04f2fa41b86a8f7f1341f",
                  "z1": "caa95a4430589c48ce32a375f42d576494fc807f2cd5606a911d16b7c21564d6"}


@pytest.mark.parametrize("name, version", [("golden.hit", 1), ("golden-v2.hit", 2)])
def test_a_stored_file_decodes_to_the_same_latents(shipped, sample, name, version):
    import hashlib
    from pathlib import Path

    decoded = codec.decode(shipped, (Path(__file__).parent / "data" / name).read_bytes())
    assert decoded.header.version == version
    for layer in codec.LAYERS:
        symbols = np.ascontiguousarray(decoded.symbols[layer], dtype="<i4").tobytes()
        assert hashlib.sha256(symbols).hexdigest() == GOLDEN_SYMBOLS[layer], layer
    h, w = sample.rgb.shape[:2]
    centre = sample.rgb[(h - 256) // 2:(h + 256) // 2, (w - 256) // 2:(w + 256) // 2]
    assert codec.psnr(centre, decoded.image.rgb) > 29.0  # 29.50 dB on this machine


def test_a_file_made_with_other_blas_kernels_decodes_here(shipped, sample):
    """MKL_CBWR=AVX2 makes MKL take the kernels of an AVX2 machine. In float32, the priors of the sample at
    (1, 1) came out with one scale of 196 608 across a table boundary, and the file decoded to garbage
    (4.7 dB) here; in float64 (format version 2) the latents match (the decoder checks their CRC-32)."""
    import os
    import subprocess
    import sys

    script = ("import sys; from hitcodec import compress; from hitcodec.samples import SAMPLE_PHOTO; "
              "sys.stdout.write(compress(SAMPLE_PHOTO, beta2=1.0, beta1=1.0).hex())")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={**os.environ, "MKL_CBWR": "AVX2"})
    decoded = codec.decode(shipped, bytes.fromhex(out.stdout))
    assert codec.psnr(sample.rgb, decoded.image.rgb) > PSNR_FLOOR_DB


def test_weights_are_small_and_load_offline(shipped):
    assert DEFAULT_WEIGHTS.stat().st_size <= 40e6
    assert len(shipped.model_id) == 8


def test_round_trip_above_psnr_floor(shipped, sample):
    data = compress(SAMPLE_PHOTO, beta2=1.0, beta1=1.0, verify=True)
    assert compress(SAMPLE_PHOTO, beta2=1.0, beta1=1.0) == data  # deterministic
    out = np.asarray(decompress(data))
    assert out.shape == sample.rgb.shape
    bpp = 8 * len(data) / (out.shape[0] * out.shape[1])
    assert 0.05 < bpp < 2.0
    assert codec.psnr(sample.rgb, out) > PSNR_FLOOR_DB


def test_estimated_bits_match_actual(shipped, sample):
    coded = codec.encode(shipped, sample, 1.0, 1.0)
    for layer in coded.layers:
        assert abs(8 * layer.payload_bytes - layer.estimated_bits) <= 0.02 * layer.estimated_bits + 64


def test_lower_beta2_moves_bits_into_z2(shipped, sample):
    def z2_share(beta2, beta1):
        z2, z1 = codec.encode(shipped, sample, beta2, beta1).layers
        return z2.payload_bytes / (z2.payload_bytes + z1.payload_bytes)

    assert z2_share(0.3, 3.0) > z2_share(1.0, 1.0) > z2_share(3.0, 0.3)


def test_rate_falls_as_beta_grows(shipped, sample):
    sizes = [len(codec.encode(shipped, sample, b, b).data) for b in (0.2, 1.0, 5.0)]
    assert sizes[0] > sizes[1] > sizes[2]


def test_target_size_within_two_percent(shipped, sample):
    from hitcodec.targets import compress_to_size

    target = int(len(codec.encode(shipped, sample, 2.4, 0.6).data) * 1.05)  # reachable at ratio 4 by construction
    result = compress_to_size(shipped, sample, target, ratio=4.0)
    assert result.reached, result.message
    assert abs(len(result.coded.data) / target - 1) <= 0.02 and result.encodes <= 8
    assert abs(result.coded.header.beta2 / result.coded.header.beta1 - 4.0) < 1e-3


def test_an_unreachable_target_gives_the_closest_file_and_says_why(shipped, sample):
    from hitcodec.targets import compress_to_size

    crop = CodecImage(sample.rgb[:128, :128].copy(), None, "RGB")
    small = compress_to_size(shipped, crop, 10)
    assert not small.reached and small.coded.header.beta1 == pytest.approx(10)  # the square's edge: the fewest bits
    assert "smallest file the model made at this beta2/beta1 ratio is" in small.message
    large = compress_to_size(shipped, crop, 10**6)
    assert not large.reached and large.coded.header.beta1 == pytest.approx(0.1)
    assert "largest file the model made at this beta2/beta1 ratio is" in large.message


def test_cli_target_bpp(tmp_path):
    from click.testing import CliRunner

    from hitcodec.cli import main

    out = tmp_path / "t.hit"
    bpp = 8 * len(compress(SAMPLE_PHOTO, beta2=3.0, beta1=3.0)) / (512 * 512)  # reachable by construction
    r = CliRunner().invoke(main, ["compress", str(SAMPLE_PHOTO), "-o", str(out), "--target-bpp", f"{bpp:.4f}"])
    assert r.exit_code == 0, r.output
    assert abs(8 * out.stat().st_size / (512 * 512) / bpp - 1) <= 0.02
    r = CliRunner().invoke(main, ["compress", str(SAMPLE_PHOTO), "-o", str(out), "--target-bpp", "0.3",
                                  "--target-size", "100"])
    assert r.exit_code == 2


def test_compressing_a_hit_file_again_warns(tmp_path):
    """Pillow reads .hit files through the plugin, so compress and compare take one; they say that this codes a
    second loss."""
    from pathlib import Path

    from click.testing import CliRunner

    from hitcodec.cli import main

    golden = Path(__file__).parent / "data" / "golden-v2.hit"
    r = CliRunner().invoke(main, ["compress", str(golden), "-o", str(tmp_path / "again.hit")])
    assert r.exit_code == 0 and (tmp_path / "again.hit").exists(), r.output
    assert "a hitcodec file already: its decoded pixels are coded again" in r.stderr
    r = CliRunner().invoke(main, ["compare", str(golden), "--crop", "32", "-o", str(tmp_path / "cmp.png")])
    assert r.exit_code == 0 and "a hitcodec file already" in r.stderr and "compare the original" in r.stderr, r.output


def test_compare_best_split_is_the_smallest_file_where_none_reaches_the_size(shipped, sample):
    """Where every split's file overshoots the size, the "best split" panel is the one closest to it (it was the
    largest file, whose PSNR is highest; in the audit 0.650 bpp against the diagonal's 0.400)."""
    from hitcodec.compare import panels_at

    crop = CodecImage(np.ascontiguousarray(sample.rgb[224:288, 224:288]), None, "RGB")
    panels = panels_at(shipped, crop, 0.01)  # (the 49-byte header alone is 0.096 bpp here)
    best, diagonal = panels[1], panels[2]
    assert diagonal.bpp > 0.01 * 1.02  # the premise: no split reaches the size
    assert best.bytes <= diagonal.bytes, (best.label, best.bpp, diagonal.bpp)
