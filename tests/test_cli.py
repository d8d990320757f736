import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from hitcodec.cli import main


@pytest.fixture()
def png(tmp_path, photo):
    path = tmp_path / "photo.png"
    Image.fromarray(photo[:40, :50]).save(path)
    return path


def run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def test_compress_decompress_info(png, tiny_path, tmp_path):
    r = run("compress", png, "--beta2", 2, "--beta1", 0.5, "--verify", "--model", tiny_path)
    assert r.exit_code == 0, r.output
    hit = tmp_path / "photo.hit"
    assert hit.exists() and "bpp" in r.output and "PSNR" in r.output
    out = tmp_path / "back.png"
    r = run("decompress", hit, "-o", out, "--model", tiny_path)
    assert r.exit_code == 0, r.output
    assert Image.open(out).size == (50, 40)
    r = run("info", hit, "--json", "--model", tiny_path)
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["beta2"] == 2.0 and report["beta1"] == 0.5 and report["width"] == 50
    assert [layer["name"] for layer in report["layers"]] == ["z2", "z1"]
    assert all("estimated_bits" in layer for layer in report["layers"])
    assert run("info", hit, "--model", tiny_path).exit_code == 0
    r = run("info", hit, "--max-pixels", 100, "--model", tiny_path)  # as decompress: refused before decoding
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and "100" in r.stderr, r.stderr
    import dataclasses

    from hitcodec import bitstream

    header, parts = bitstream.unpack(hit.read_bytes())  # a crafted header with a nan beta: still JSON
    odd = tmp_path / "odd.hit"
    odd.write_bytes(bitstream.pack(dataclasses.replace(header, beta2=float("nan"), model_id=b"\1" * 8), parts))
    r = run("info", odd, "--json", "--model", tiny_path)
    assert r.exit_code == 0 and json.loads(r.stdout, parse_constant=pytest.fail)["beta2"] is None


def test_verify_reports_the_psnr_of_the_written_gray_image(png, tiny_path, tmp_path):
    """For a gray image --verify measured the synthesis's three channels, not the gray that decompress writes."""
    import re

    from hitcodec import codec

    gray = tmp_path / "gray.png"
    Image.open(png).convert("L").save(gray)
    r = run("compress", gray, "--verify", "--model", tiny_path)
    assert r.exit_code == 0, r.output
    reported = float(re.search(r"PSNR ([0-9.]+) dB", r.output).group(1))
    out = tmp_path / "back.png"
    assert run("decompress", tmp_path / "gray.hit", "-o", out, "--model", tiny_path).exit_code == 0
    back = Image.open(out)
    assert back.mode == "L"
    assert reported == round(codec.psnr(np.asarray(back), np.asarray(Image.open(gray))), 2)


def test_existing_output_needs_force(png, tiny_path, tmp_path):
    assert run("compress", png, "--model", tiny_path).exit_code == 0
    before = (tmp_path / "photo.hit").read_bytes()
    r = run("compress", png, "--beta1", 3, "--model", tiny_path)
    assert r.exit_code == 1 and "--force" in r.stderr
    assert (tmp_path / "photo.hit").read_bytes() == before
    assert run("compress", png, "--beta1", 3, "--force", "--model", tiny_path).exit_code == 0
    assert (tmp_path / "photo.hit").read_bytes() != before


@pytest.mark.parametrize("beta", ["0", "-1", "nan", "inf", "11", "0.05", "abc"])
def test_bad_beta_is_a_usage_error(png, tiny_path, beta):
    r = run("compress", png, "--beta2", beta, "--model", tiny_path)
    assert r.exit_code == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("hitcodec: error:")
    assert not (png.parent / "photo.hit").exists()


def test_click_usage_errors_read_like_hitcodec_errors(png, tmp_path):
    """click's messages ("Invalid value for ...: ... x>0.") in hitcodec's style: lower case, no final full stop."""
    for args, expected in ((["compress", png, "--beta2", "0"],
                            "hitcodec: error: invalid value for '--beta2': 0.0 is not in the range x>0\n"),
                           (["compress"], "hitcodec: error: missing argument 'INPUTS...'\n"),
                           (["info", tmp_path], f"hitcodec: error: invalid value for 'INPUT': File '{tmp_path}' is a "
                                                "directory\n"),
                           (["decompress", "--zzz"], "hitcodec: error: no such option '--zzz'\n")):
        r = run(*args)
        assert (r.exit_code, r.stderr) == (2, expected)


@pytest.mark.parametrize("args", [["compress", "--target-bpp", "inf"], ["compress", "--target-bpp", "nan"],
                                  ["compress", "--target-rates", "inf,0.1"], ["compare", "--bpp", "nan"],
                                  ["compress", "--target-rates", "1e-320,1e308"],
                                  ["compress", "--target-rates", "0.1,0.2", "--beta2", "3"], ["compress", "-", "-"],
                                  ["compress", "--refine", "-1"], ["compress", "--refine", "5", "--target-bpp", "0.3"],
                                  ["train", "--lr", "nan"], ["train", "--minutes", "inf"], ["train", "--steps", "0"],
                                  ["train", "--lr-drop", "1.5"], ["train", "--batch", "0"], ["train", "--patch", "32"],
                                  ["compress", "-o", ""], ["decompress", "-o", ""], ["compare", "-o", ""],
                                  ["export", ""]])
def test_non_finite_or_out_of_range_numbers_are_usage_errors(png, tmp_path, args):
    command, *options = args
    inputs = ["--data", tmp_path, "--out", tmp_path / "run"] if command == "train" else [png]
    r = run(command, *inputs, *options)
    assert r.exit_code == 2, r.output
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("hitcodec: error:")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]  # nothing written


def test_refine_writes_a_file_that_decodes(tmp_path, tiny_path, png):
    r = run("compress", png, "-o", tmp_path / "r.hit", "--refine", "3", "--verify", "--model", tiny_path)
    assert r.exit_code == 0 and "verified" in r.output, r.output


def test_bad_data_exits_1_in_one_line(tmp_path, tiny_path, png):
    junk = tmp_path / "junk.hit"
    junk.write_bytes(b"HITC" + bytes(60))
    for args in (["decompress", junk], ["info", junk], ["compress", junk], ["decompress", tmp_path / "missing.hit"]):
        r = run(*args, "--model", tiny_path)
        assert r.exit_code == 1, (args, r.output)
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.output
    assert not (tmp_path / "junk.png").exists()
    for args in (["decompress", tmp_path / "missing.png"], ["compress", tmp_path / "missing.hit"]):
        r = run(*args, "--model", tiny_path)  # a missing file whose output would bear its own name
        assert r.exit_code == 1 and r.stderr == f"hitcodec: error: no such file: {args[1]}\n", r.stderr
    # a truncated .hit
    assert run("compress", png, "--model", tiny_path).exit_code == 0
    hit = tmp_path / "photo.hit"
    hit.write_bytes(hit.read_bytes()[:-5])
    r = run("decompress", hit, "-o", tmp_path / "out.png", "--model", tiny_path)
    assert r.exit_code == 1 and "truncated" in r.stderr
    assert not (tmp_path / "out.png").exists()


def test_stdin_stdout(png, tiny_path):
    r = CliRunner().invoke(main, ["compress", "-", "--model", str(tiny_path)], input=png.read_bytes())
    assert r.exit_code == 0, r.output
    data = r.stdout_bytes
    assert data[:4] == b"HITC"
    r = CliRunner().invoke(main, ["decompress", "-", "--model", str(tiny_path)], input=data)
    assert r.exit_code == 0
    assert r.stdout_bytes[:8] == b"\x89PNG\r\n\x1a\n"


def test_endless_or_huge_inputs_are_not_read_until_memory_runs_out(png, tiny_path, tmp_path):
    """/dev/zero, or a pipe that never ends, used to be read whole: until memory ran out. An image is read up to 16
    bytes per allowed pixel (a larger regular file is refused unread), a .hit file as far as its header says."""
    from hitcodec import bitstream

    huge = tmp_path / "huge.png"
    with open(huge, "wb") as f:  # sparse: 2 MiB that are never read
        f.write(png.read_bytes())
        f.truncate(1 << 21)
    for source, stdin in ((huge, None), ("-", huge.read_bytes())):
        r = run("compress", source, "-o", tmp_path / "out.hit", "--max-pixels", 1000, "--model", tiny_path, input=stdin)
        assert r.exit_code == 1 and r.stderr.count("\n") == 1, r.output
        assert "more than 1064576 bytes" in r.stderr and "--max-pixels" in r.stderr, r.stderr
    assert not (tmp_path / "out.hit").exists()
    r = run("compress", png, "-o", tmp_path / "out.hit", "--max-pixels", 2000, "--model", tiny_path)
    assert r.exit_code == 0, r.output  # 50x40 pixels: the file itself is well within the limit
    hit = (tmp_path / "out.hit").read_bytes()
    if os.path.exists("/dev/zero"):
        r = run("compress", "/dev/zero", "-o", tmp_path / "zero.hit", "--max-pixels", 1000, "--model", tiny_path)
        assert r.exit_code == 1 and "cannot read image: more than 1064576" in r.stderr, r.output
        for command in ("decompress", "info"):
            r = run(command, "/dev/zero", "--model", tiny_path)
            assert r.exit_code == 1 and "not a hitcodec file" in r.stderr, r.output
    r = run("decompress", "-", "-o", tmp_path / "back.png", "--model", tiny_path, input=hit + b"xyz")
    body = sum(len(part) for part in bitstream.unpack(hit)[1])
    assert r.exit_code == 1 and f"{body + 3} payload bytes, header declares {body}" in r.stderr, r.stderr  # as before
    r = run("info", "-", "--model", tiny_path, input=hit + bytes(3 << 20))
    assert r.exit_code == 1 and "more than 1048576 after the" in r.stderr, r.stderr
    r = run("decompress", "-", "-o", tmp_path / "back.png", "--model", tiny_path, input=hit)
    assert r.exit_code == 0 and Image.open(tmp_path / "back.png").size == (50, 40), r.output


def test_stdout_as_a_file_name_and_a_reader_that_goes_away(png, tiny_path, tmp_path, photo):
    """-o /dev/stdout is standard output (data alone there, status to stderr); a pipe closed by its reader before
    all the data is written is an error, not a success with a cut stream (BufferedWriter.write returns a short
    count then, without an exception)."""
    import subprocess

    cli = [sys.executable, "-m", "hitcodec.cli"]
    assert run("compress", png, "--model", tiny_path).exit_code == 0
    hit = (tmp_path / "photo.hit").read_bytes()
    if os.path.exists("/dev/stdout"):
        r = subprocess.run(cli + ["compress", png, "-o", "/dev/stdout", "--model", tiny_path], capture_output=True,
                           timeout=120)
        assert r.returncode == 0 and r.stdout == hit and b"photo.png -> -:" in r.stderr, r.stderr
    big = tmp_path / "big.png"
    Image.fromarray(np.tile(photo, (2, 2, 1))).save(big)  # 192x256: 147 kB as BMP, more than a pipe's buffer
    assert run("compress", big, "--model", tiny_path).exit_code == 0
    child = subprocess.Popen(cli + ["decompress", tmp_path / "big.hit", "-o", "-", "--format", "bmp", "--model",
                                    tiny_path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout.read(10)[:2] == b"BM"
    child.stdout.close()  # as `| head -c 10` does
    err = child.stderr.read().decode()
    assert child.wait(timeout=120) == 1
    assert err == "hitcodec: error: cannot write to standard output: Broken pipe\n", err


def test_several_inputs_continue_after_a_failure(tmp_path, tiny_path, photo):
    paths = []
    for i in range(3):
        p = tmp_path / f"im{i}.png"
        Image.fromarray(photo[: 20 + i, :30]).save(p)
        paths.append(p)
    paths[1].write_bytes(b"broken")
    r = run("compress", *paths, "--model", tiny_path)
    assert r.exit_code == 1 and "im1.png" in r.stderr and "1 of 3 files failed" in r.stderr
    assert "2 files," in r.stderr and "mean" in r.stderr
    assert (tmp_path / "im0.hit").exists() and (tmp_path / "im2.hit").exists()
    assert not (tmp_path / "im1.hit").exists()
    assert run("compress", *paths, "-o", tmp_path / "x.hit", "--model", tiny_path).exit_code == 2
    r = run("compress", *paths, "-f", "--quiet", "--model", tiny_path)  # errors only: no line per file, no summary
    assert r.exit_code == 1 and r.stdout == "" and r.stderr.count("\n") == 2 and "1 of 3 files failed" in r.stderr
    r = run("decompress", tmp_path / "im0.hit", "-o", tmp_path / "back.png", "-q", "--model", tiny_path)
    assert r.exit_code == 0 and r.output == "" and (tmp_path / "back.png").exists()


def test_wrong_model_is_reported(png, tiny_path, tmp_path):
    import torch

    from conftest import TINY, make_tiny

    other = tmp_path / "other.pt"
    torch.save({"model_config": TINY.to_dict(), "model": make_tiny(seed=5).state_dict(), "step": 0}, other)
    assert run("compress", png, "--model", tiny_path).exit_code == 0
    r = run("decompress", tmp_path / "photo.hit", "--model", other)
    assert r.exit_code == 1 and "model" in r.stderr


def test_output_that_cannot_be_written_is_refused_up_front(png, tiny_path, tmp_path):
    assert run("compress", png, "--model", tiny_path).exit_code == 0
    hit = tmp_path / "photo.hit"
    for command, src in (("compress", png), ("decompress", hit), ("compare", png)):
        for out, message in ((tmp_path, "is a folder"), (tmp_path / "missing" / "x.png", "missing does not exist")):
            if command != "compare" and out == tmp_path:
                out = tmp_path / "sub" / ("photo.hit" if command == "compress" else "photo.png")
                out.mkdir(parents=True, exist_ok=True)  # -o sub: the output's name in the folder is taken by one
                out = out.parent
            r = run(command, src, "-o", out, "--force", "--model", tiny_path)
            if command == "compare" and out == tmp_path:  # a folder where a file is needed: usage, as for export
                code, message = 2, "is a directory"
            else:
                code = 1
            assert r.exit_code == code and message in r.stderr, (command, out, r.output)
            assert r.stderr.count("\n") == 1 and ".tmp" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.hit", "photo.png", "sub"]


def test_an_output_never_replaces_an_input(png, tiny_path, tmp_path):
    assert run("compress", png, "-o", tmp_path / "coded.png", "--model", tiny_path).exit_code == 0  # .hit bytes
    data = (tmp_path / "coded.png").read_bytes()
    r = run("decompress", tmp_path / "coded.png", "-f", "--model", tiny_path)  # the default name is coded.png
    assert r.exit_code == 1 and "would replace the input" in r.stderr and (tmp_path / "coded.png").read_bytes() == data
    r = run("compress", png, "-o", png, "-f", "--model", tiny_path)
    assert r.exit_code == 1 and "would replace the input" in r.stderr and png.read_bytes()[:4] == b"\x89PNG"


def test_output_folder_takes_any_number_of_inputs_and_refuses_clashing_names(png, tiny_path, tmp_path, photo):
    Image.fromarray(photo[:30, :40]).save(tmp_path / "other.png")
    Image.fromarray(photo[:30, :40]).save(tmp_path / "photo.jpg")
    coded, decoded = tmp_path / "coded", tmp_path / "decoded"
    coded.mkdir(), decoded.mkdir()
    r = run("compress", png, tmp_path / "other.png", "-o", coded, "--model", tiny_path)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in coded.iterdir()) == ["other.hit", "photo.hit"]
    r = run("decompress", coded, "-o", decoded, "--model", tiny_path)
    assert r.exit_code == 0 and sorted(p.name for p in decoded.iterdir()) == ["other.png", "photo.png"]
    # photo.png and photo.jpg both map to photo.hit: the second is refused, not written over the first
    before = (coded / "photo.hit").read_bytes()
    r = run("compress", png, tmp_path / "photo.jpg", "-o", coded, "--force", "--model", tiny_path)
    assert r.exit_code == 1 and "is the output of" in r.stderr and "1 of 2 files failed" in r.stderr
    assert (coded / "photo.hit").read_bytes() == before
    # the same file under another name: photo.hit and coded/../photo.hit, next to their inputs
    r = run("compress", png, coded / ".." / "photo.jpg", "--force", "--model", tiny_path)
    assert r.exit_code == 1 and "is the output of" in r.stderr and "1 of 2 files failed" in r.stderr
    r = run("compress", "-", "-o", coded, "--model", tiny_path, input=png.read_bytes())
    assert r.exit_code == 2 and "standard input" in r.stderr


def test_the_same_file_twice_is_coded_once_with_a_warning(png, tiny_path, tmp_path):
    r = run("compress", png, png.parent / "." / png.name, png, "--model", tiny_path)  # was "1 of 3 files failed"
    assert r.exit_code == 0, r.output
    assert r.stderr.count("the same file as") == 2 and r.stdout.count("photo.hit") == 1
    (tmp_path / "link.png").symlink_to(png)  # a link is an input of its own: its output is link.hit
    r = run("compress", png, tmp_path / "link.png", tmp_path / "gone.png", tmp_path / "gone.png", "--force",
            "--model", tiny_path)
    assert (tmp_path / "link.hit").read_bytes() == (tmp_path / "photo.hit").read_bytes()
    assert r.stderr.count("no such file") == 2 and "the same file" not in r.stderr, r.stderr


def test_names_with_control_characters_keep_each_message_one_line(photo, tiny_path, tmp_path):
    odd = tmp_path / "a\nb.png"
    Image.fromarray(photo[:16, :16]).save(odd)
    r = run("compress", odd, tmp_path / "gone\n.png", "--model", tiny_path)
    assert r.exit_code == 1
    assert "a\\nb.png -> " in r.stdout and len(r.stdout.splitlines()) == 1, r.stdout
    assert "hitcodec: error: " + str(tmp_path / "gone\\n.png") + ": no such file" in r.stderr.splitlines()


def test_os_errors_are_named_in_words(png, tiny_path, tmp_path):
    from hitcodec.cli import _one_line

    assert _one_line(PermissionError(13, "Permission denied", "x\ny.png")) == "permission denied: x\\ny.png"
    long = "n" * 300 + ".hit"
    r = run("info", long)  # click checked readability itself: exit 2
    assert r.exit_code == 1 and r.stderr.startswith("hitcodec: error: file name too long: nnnn"), r.stderr
    assert len(r.stderr) < 120
    r = run("compress", png, "-o", png / "out.hit", "--model", tiny_path)
    assert r.exit_code == 1 and f"{png} is not a folder" in r.stderr, r.stderr  # was "no folder {png}"


@pytest.mark.parametrize("suffix, side", [(".gif", 65536), (".tga", 70000), (".jpg", 65501), (".webp", 16384)])
def test_a_size_the_output_format_cannot_hold_is_refused_before_decoding(png, tiny_path, tmp_path, monkeypatch,
                                                                        suffix, side):
    import dataclasses

    from hitcodec import bitstream, codec

    assert run("compress", png, "--model", tiny_path).exit_code == 0
    header, parts = bitstream.unpack((tmp_path / "photo.hit").read_bytes())
    wide = tmp_path / "wide.hit"
    wide.write_bytes(bitstream.pack(dataclasses.replace(header, width=side, height=1), parts))
    monkeypatch.setattr(codec, "decode", lambda *a, **k: pytest.fail("decoded first"))
    r = run("decompress", wide, "-o", tmp_path / f"wide{suffix}", "--model", tiny_path)
    assert r.exit_code == 1 and "holds at most" in r.stderr and f"not {side}x1 (use .png)" in r.stderr, r.output
    assert len(r.stderr.splitlines()) == 1  # GIF and TGA were a traceback (OverflowError)


def test_no_leftover_temp_files(png, tiny_path, tmp_path):
    assert run("compress", png, "--model", tiny_path).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.hit", "photo.png"]


def test_outputs_get_the_permissions_of_a_new_file_or_of_the_file_they_replace(png, tiny_path, tmp_path):
    umask = os.umask(0o022)
    try:
        assert run("compress", png, "--model", tiny_path).exit_code == 0
        hit = tmp_path / "photo.hit"
        assert stat.S_IMODE(hit.stat().st_mode) == 0o644  # not the temporary file's 0600
        assert run("decompress", hit, "-o", tmp_path / "back.png", "--model", tiny_path).exit_code == 0
        assert stat.S_IMODE((tmp_path / "back.png").stat().st_mode) == 0o644
        hit.chmod(0o640)
        assert run("compress", png, "--force", "--model", tiny_path).exit_code == 0
        assert stat.S_IMODE(hit.stat().st_mode) == 0o640
    finally:
        os.umask(umask)


def test_compare_writes_a_figure(png, tiny_path, tmp_path):
    out = tmp_path / "cmp.png"
    r = run("compare", png, "--bpp", 1.0, "-o", out, "--model", tiny_path)
    assert r.exit_code == 0, r.output
    assert out.exists() and "JPEG" in r.output and "WebP" in r.output
    assert run("compare", png, "-o", out, "--model", tiny_path).exit_code == 1  # exists, no --force
    r = run("compare", png, "--bpp", 1e-6, "-o", tmp_path / "cmp.jpg", "--model", tiny_path)
    assert r.exit_code == 0 and "not every codec reaches 1e-06 bpp" in r.stderr, r.output
    assert Image.open(tmp_path / "cmp.jpg").format == "JPEG"  # the format the name asks for
    r = run("compare", png, "-o", tmp_path / "cmp.xyz", "--model", tiny_path)
    assert r.exit_code == 2 and "cannot draw a figure as .xyz" in r.stderr and "jpg" in r.stderr
    before = Path(png).read_bytes()
    (tmp_path / "link.png").symlink_to(png)
    for same in (png, tmp_path / "link.png"):  # the figure never replaces its photo, even with --force
        r = run("compare", png, "-o", same, "--force", "--model", tiny_path)
        assert r.exit_code == 1 and "would replace the input" in r.stderr and Path(png).read_bytes() == before


def test_verbose_is_taken_after_the_subcommand_too(png, tmp_path):
    import logging

    root = logging.getLogger()
    level = root.level
    try:
        root.setLevel(logging.WARNING)
        r = run("train", "-v", "--data", tmp_path / "none", "--out", tmp_path / "o")
        assert r.exit_code == 1 and "no folder of training photos" in r.stderr and root.level == logging.INFO
        r = run("fetch-data", "-v", png)  # a file, not a folder: refused, but -v is an option of fetch-data
        assert r.exit_code == 2 and "No such option" not in r.stderr and "is a file" in r.stderr, r.stderr
    finally:
        root.setLevel(level)


def test_compare_shows_a_gray_image_as_written(tiny, photo, tiny_path, tmp_path, monkeypatch):
    """A gray photo's hitcodec panels show (and measure) the gray that decompress writes; JPEG codes it as gray
    too (WebP has no gray mode: Pillow codes it as colour)."""
    from hitcodec.compare import panels_at
    from hitcodec.image import from_pil

    image = from_pil(Image.fromarray(photo[:40, :50]).convert("L"))
    for panel in panels_at(tiny, image, 1.0)[1:4]:  # hitcodec at its best split, on the diagonal, JPEG
        assert (panel.rgb == panel.rgb[:, :, :1]).all(), panel.label
    from hitcodec import compare

    modes = []
    monkeypatch.setattr(compare, "panels_at", lambda loaded, image, bpp: modes.append(image.mode) or panels_at(
        loaded, image, bpp))
    gray = tmp_path / "gray.png"
    Image.fromarray(photo[:40, :50]).convert("L").save(gray)
    r = run("compare", gray, "-o", tmp_path / "cmp.png", "--model", tiny_path)
    assert r.exit_code == 0 and modes == ["L"], r.output  # the command passes the image's gray on


def test_compare_without_matplotlib_is_a_one_line_error(png, tiny_path, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as after a plain `pip install hitcodec`
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    r = run("compare", png, "-o", tmp_path / "cmp.png", "--model", tiny_path)
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and "matplotlib, which is not installed" in r.stderr
    assert not (tmp_path / "cmp.png").exists()


def test_pixel_limits(png, tiny_path, tmp_path):
    r = run("compress", png, "--max-pixels", 100, "--model", tiny_path)
    assert r.exit_code == 1 and "--max-pixels" in r.stderr
    assert run("compress", png, "--model", tiny_path).exit_code == 0
    r = run("decompress", tmp_path / "photo.hit", "-o", tmp_path / "d.png", "--max-pixels", 100, "--model", tiny_path)
    assert r.exit_code == 1 and "outside the allowed range" in r.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the signal mask from /proc")
def test_worker_processes_start_with_ctrl_c_blocked():
    """A Ctrl-C while `--jobs` workers import must not print their tracebacks: they start with SIGINT blocked,
    and one that comes meanwhile reaches the main process when the block ends."""
    import signal
    import subprocess
    import threading

    from hitcodec.cli import _ctrl_c_held

    def sigint_blocked(status: str) -> bool:
        mask = next(line for line in status.splitlines() if line.startswith("SigBlk:")).split()[1]
        return bool(int(mask, 16) & (1 << (signal.SIGINT - 1)))

    child = [sys.executable, "-c", "print(open('/proc/self/status').read())"]
    with _ctrl_c_held():
        assert sigint_blocked(subprocess.run(child, capture_output=True, text=True, check=True).stdout)
    assert not sigint_blocked(subprocess.run(child, capture_output=True, text=True, check=True).stdout)
    with pytest.raises(KeyboardInterrupt):
        with _ctrl_c_held():
            # to this thread: a process-wide one may go to a thread with SIGINT open (OpenBLAS's), raising at once
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)
            arrived = True  # not raised inside the block
    assert arrived


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads a process's children from /proc")
def test_sigterm_stops_the_workers_and_ends_in_one_line(tiny_path, tmp_path, photo):
    """SIGTERM to the main process alone (`kill PID`) with --jobs 2: it ends with one line and exit 143, its
    workers stop at once without writing (they went on writing files, then waited forever, orphaned), and no
    temporary file is left."""
    import signal
    import subprocess
    import time

    for i in range(4):
        Image.fromarray(np.roll(photo, 7 * i, axis=1)).save(tmp_path / f"{i}.png")
    child = subprocess.Popen([sys.executable, "-m", "hitcodec.cli", "compress", *sorted(tmp_path.glob("*.png")),
                              "-j", "2", "--refine", "100000", "-q", "--model", tiny_path],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    children = Path(f"/proc/{child.pid}/task/{child.pid}/children")
    deadline = time.monotonic() + 60
    while len(children.read_text().split()) < 2 and time.monotonic() < deadline:  # the two workers (and the
        time.sleep(0.2)  # resource tracker) started
    time.sleep(3)  # the workers are refining
    workers = [int(pid) for pid in children.read_text().split()]
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=60) == 143
    assert child.stderr.read().decode() == "hitcodec: terminated\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{i}.png" for i in range(4)]  # nothing written
    time.sleep(1)
    alive = [pid for pid in workers if Path(f"/proc/{pid}").exists()
             and "spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")]
    assert not alive


def test_ctrl_c_while_the_command_line_imports_is_one_line():
    """A Ctrl-C that comes while `hitcodec.cli` imports click and numpy exits 130 with one line, no traceback, and
    importing it leaves the caller's SIGINT handler as it was."""
    import signal
    import subprocess

    # an import hook sends the Ctrl-C when click is looked for, as a user's early Ctrl-C would
    code = """if True:
        import os, signal, sys

        class CtrlC:
            @staticmethod
            def find_spec(name, path=None, target=None):
                if name == "click":
                    os.kill(os.getpid(), signal.SIGINT)

        sys.meta_path.insert(0, CtrlC)
        from hitcodec.cli import main
        main()
    """
    r = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stderr, r.stdout) == (130, "hitcodec: interrupted\n", "")
    import hitcodec.cli

    assert signal.getsignal(signal.SIGINT) is not hitcodec.cli._interrupted_while_starting


def test_ctrl_c_while_a_command_runs_is_one_line(png, tiny_path, tmp_path):
    """A Ctrl-C while a command runs ended with a blank line and "hitcodec: aborted" (click's handling of a
    KeyboardInterrupt): now "hitcodec: interrupted" alone, exit 130, and no file written."""
    import subprocess

    # the Ctrl-C comes when the command reads its input, as a user's would while it works
    code = """if True:
        import os, signal, sys
        import hitcodec.cli as cli

        read = cli._read_input
        def interrupted(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGINT)
            return read(*args, **kwargs)

        cli._read_input = interrupted
        cli.main()
    """
    r = subprocess.run([sys.executable, "-c", code, "compress", png, "-o", tmp_path / "out.hit", "--model",
                        tiny_path], capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stderr, r.stdout) == (130, "hitcodec: interrupted\n", "")
    assert not (tmp_path / "out.hit").exists()


def test_folder_inputs_and_worker_processes(tmp_path, tiny_path, photo):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(photo[: 30 + i, :40]).save(folder / f"im{i}.png")
    (folder / "notes.txt").write_text("not an image")
    r = run("compress", folder, "--jobs", 2, "--model", tiny_path)
    assert r.exit_code == 0, r.output
    assert "3 files," in r.stderr
    hits = sorted(folder.glob("*.hit"))
    assert [p.name for p in hits] == ["im0.hit", "im1.hit", "im2.hit"]
    single = tmp_path / "single.hit"
    assert run("compress", folder / "im1.png", "-o", single, "--model", tiny_path).exit_code == 0
    assert single.read_bytes() == hits[1].read_bytes()  # worker processes give the same bytes
    r = run("decompress", folder, "--model", tiny_path)
    assert r.exit_code == 1 and "3 of 3 files failed" in r.stderr and "exists" in r.stderr  # the PNGs are there
    assert "bytes in" not in r.stderr  # no "0 files ... mean 0.0000 bpp" summary when every file failed
    coded = tmp_path / "coded"
    coded.mkdir()
    for p in hits:
        p.rename(coded / p.name)
    r = run("decompress", coded, "--model", tiny_path)
    assert r.exit_code == 0 and "3 files," in r.stderr
    assert Image.open(coded / "im2.png").size == (40, 32)
    r = run("decompress", str(coded / "*.hit"), "--force", "--model", tiny_path)  # a glob the shell left alone
    assert r.exit_code == 0 and "3 files," in r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run("decompress", empty, "--model", tiny_path)
    assert r.exit_code == 1 and "no .hit files" in r.stderr
    # an empty folder or a glob without match among other inputs fails alone; any format Pillow reads is taken
    Image.fromarray(photo[:20, :20]).save(folder / "anim.gif")
    r = run("compress", empty, folder, str(tmp_path / "nothing*.png"), "--model", tiny_path)
    assert r.exit_code == 1 and "2 of 6 files failed" in r.stderr and "4 files," in r.stderr, r.output
    assert (folder / "anim.hit").exists()


def test_outputs_through_links_to_devices_and_with_long_names(png, tiny_path, tmp_path):
    target = tmp_path / "real.hit"
    target.write_bytes(b"old")
    link = tmp_path / "link.hit"
    link.symlink_to(target)
    assert run("compress", png, "-o", link, "--model", tiny_path).exit_code == 1  # an existing file: --force
    assert run("compress", png, "-o", link, "-f", "--model", tiny_path).exit_code == 0
    assert link.is_symlink() and target.read_bytes()[:4] == b"HITC"  # the link stays; its file is replaced
    dangling = tmp_path / "dangling.hit"
    dangling.symlink_to(tmp_path / "made.hit")
    assert run("compress", png, "-o", dangling, "--model", tiny_path).exit_code == 0
    assert dangling.is_symlink() and (tmp_path / "made.hit").read_bytes()[:4] == b"HITC"
    r = run("compress", png, "-o", os.devnull, "--model", tiny_path)  # a device: written as it is, no --force
    assert r.exit_code == 0 and os.path.exists(os.devnull) and not os.path.isfile(os.devnull), r.output
    long = tmp_path / ("L" * 251 + ".png")  # a 255-byte output name
    long.write_bytes(png.read_bytes())
    assert run("compress", long, "--model", tiny_path).exit_code == 0, "long name"
    r = run("compress", png, "-o", f"{tmp_path / 'newdir'}/", "--model", tiny_path)
    assert r.exit_code == 1 and "no folder" in r.stderr and not (tmp_path / "newdir").exists()
    r = run("compress", png, "-o", f"{tmp_path / 'made.hit'}/", "--model", tiny_path)  # a file, named as a folder
    assert r.exit_code == 1 and "made.hit is not a folder" in r.stderr, r.stderr
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_name_that_is_not_utf8_is_shown_as_its_bytes(png, tiny_path, tmp_path):
    odd = tmp_path / os.fsdecode(b"caf\xe9.png")  # a Latin-1 name; the runner's streams are strict UTF-8
    odd.write_bytes(png.read_bytes())
    r = run("compress", odd, "--model", tiny_path)
    assert r.exit_code == 0 and b"caf\xe9.png -> " in r.stdout_bytes, r.output
    r = run("compress", odd, "--model", tiny_path)
    assert r.exit_code == 1 and b"caf\xe9.hit exists" in r.stderr_bytes, r.stderr_bytes


def test_a_folder_that_is_not_writable_is_refused_before_coding(png, tiny_path, tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    if os.geteuid() == 0:  # root may write there all the same: make the check say no
        monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != folder)
    try:
        r = run("compress", png, "-o", folder / "x.hit", "--model", tiny_path)
    finally:
        folder.chmod(0o755)
    assert r.exit_code == 1 and "not writable" in r.stderr and "bpp" not in r.output


def test_standard_output_carries_only_data_when_mixed_with_files(png, tiny_path, tmp_path):
    r = run("compress", "-", png, "--model", tiny_path, input=png.read_bytes())
    assert r.exit_code == 0, r.output
    assert r.stdout_bytes == (tmp_path / "photo.hit").read_bytes()  # the status lines went to stderr
    assert "photo.png -> " in r.stderr


def test_a_stopped_worker_writes_nothing(tmp_path, monkeypatch):
    import multiprocessing

    from hitcodec import cli

    stop = multiprocessing.get_context("spawn").Event()
    stop.set()
    monkeypatch.setattr(cli, "_STOP", stop)
    with pytest.raises(cli.CLIError, match="interrupted"):
        cli._unless_stopped(lambda src, dst: cli.write_atomic(dst, b"data", False), "in", tmp_path / "out")
    with pytest.raises(cli.CLIError, match="interrupted"):
        cli.write_atomic(tmp_path / "out", b"data", False)
    assert list(tmp_path.iterdir()) == []


def test_huge_size_targets_give_the_closest_file(png, tiny_path, tmp_path):
    for option, value in (("--target-bpp", "1e308"), ("--target-size", "1" + "0" * 400)):
        r = run("compress", png, option, value, "-f", "--model", tiny_path)
        assert r.exit_code == 0 and "the target: 2^53 or more" in r.stderr, r.output
        assert "Traceback" not in r.output


def test_decompressed_formats_keep_the_image_or_say_what_they_lose(png, tiny_path, tmp_path, photo):
    rgba = tmp_path / "rgba.png"
    Image.fromarray(photo[:40, :50]).convert("RGBA").save(rgba)
    alpha = Image.open(rgba)
    alpha.putalpha(Image.fromarray(photo[:40, :50, 0]))
    alpha.save(rgba)
    assert run("compress", rgba, "--model", tiny_path).exit_code == 0
    hit = tmp_path / "rgba.hit"
    assert run("decompress", hit, "-o", tmp_path / "ref.png", "--model", tiny_path).exit_code == 0
    ref = np.asarray(Image.open(tmp_path / "ref.png"))
    for suffix in (".webp", ".tif", ".ico"):
        r = run("decompress", hit, "-o", tmp_path / f"out{suffix}", "--model", tiny_path)
        assert r.exit_code == 0 and "warning" not in r.stderr, (suffix, r.output)
        assert np.array_equal(np.asarray(Image.open(tmp_path / f"out{suffix}").convert("RGBA")), ref), suffix
    for fmt in ("bmp", "jpg"):
        r = run("decompress", hit, "-o", tmp_path / f"out.{fmt}", "--model", tiny_path)
        assert r.exit_code == 0 and "drops the alpha plane" in r.stderr, r.output
    gray = tmp_path / "la.png"
    Image.fromarray(np.dstack([photo[:40, :50, 0], photo[:40, :50, 1]]), "LA").save(gray)
    assert run("compress", gray, "--model", tiny_path).exit_code == 0
    for fmt in ("bmp", "ppm", "jpg", "eps"):  # Pillow cannot write LA there: gray without alpha, with the warning
        r = run("decompress", tmp_path / "la.hit", "-o", tmp_path / f"la.{fmt}", "--model", tiny_path)  # (EPS:
        assert r.exit_code == 0 and "drops the alpha plane" in r.stderr, (fmt, r.output)  # not read back)
        if fmt != "eps":
            assert Image.open(tmp_path / f"la.{fmt}").mode == "L", fmt
    assert run("decompress", tmp_path / "la.hit", "-o", tmp_path / "la_ref.png", "--model", tiny_path).exit_code == 0
    la_ref = np.asarray(Image.open(tmp_path / "la_ref.png"))
    for fmt in ("qoi",):  # neither LA nor L: LA as RGBA, no warning, alpha and gray kept
        r = run("decompress", tmp_path / "la.hit", "-o", tmp_path / f"la.{fmt}", "--model", tiny_path)
        assert r.exit_code == 0 and "warning" not in r.stderr, (fmt, r.output)
        assert np.array_equal(np.asarray(Image.open(tmp_path / f"la.{fmt}").convert("LA")), la_ref), fmt
    big = tmp_path / "big.png"
    Image.fromarray(np.tile(photo[:40, :50], (1, 6, 1))).save(big)  # 300 pixels wide
    assert run("compress", big, "--model", tiny_path).exit_code == 0
    r = run("decompress", tmp_path / "big.hit", "-o", tmp_path / "big.ico", "--model", tiny_path)
    assert r.exit_code == 1 and "ICO holds at most 256x256 pixels, not 300x40" in r.stderr, r.output
    assert not (tmp_path / "big.ico").exists()
    r = run("decompress", hit, "-o", tmp_path / "out.pdf", "--model", tiny_path)  # Pillow cannot read PDF back
    assert r.exit_code == 0 and (tmp_path / "out.pdf").read_bytes()[:5] == b"%PDF-", r.output
    assert "warning" not in r.stderr, r.stderr  # with alpha: lossless JPEG 2000
    assert run("compress", png, "--model", tiny_path).exit_code == 0
    r = run("decompress", tmp_path / "photo.hit", "-o", tmp_path / "rgb.pdf", "--model", tiny_path)
    assert r.exit_code == 0 and "PDF holds the image as a JPEG of quality 95" in r.stderr  # not read back: said


def test_format_option_names_the_outputs_that_hitcodec_names(png, tiny_path, tmp_path):
    assert run("compress", png, "--model", tiny_path).exit_code == 0
    hit = tmp_path / "photo.hit"
    assert run("decompress", hit, "-o", tmp_path / "ref.png", "--model", tiny_path).exit_code == 0
    ref = np.asarray(Image.open(tmp_path / "ref.png"))
    r = run("decompress", hit, "--format", "webp", "--model", tiny_path)  # next to the input
    assert r.exit_code == 0 and np.array_equal(np.asarray(Image.open(tmp_path / "photo.webp")), ref), r.output
    folder = tmp_path / "out"
    folder.mkdir()
    r = run("decompress", hit, "-o", f"{folder}/", "--format", ".JPG", "--model", tiny_path)
    assert r.exit_code == 0 and Image.open(folder / "photo.jpg").format == "JPEG", r.output
    r = run("decompress", hit, "-o", "-", "--format", "webp", "--model", tiny_path)
    assert r.exit_code == 0 and r.stdout_bytes[:4] == b"RIFF" and r.stdout_bytes[8:12] == b"WEBP"
    assert run("decompress", hit, "-o", tmp_path / "x.jpeg", "--format", "jpg", "--model", tiny_path).exit_code == 0
    r = run("decompress", hit, "-o", tmp_path / "photo.final", "--format", "png", "--model", tiny_path)
    assert r.exit_code == 0 and Image.open(tmp_path / "photo.final").format == "PNG", r.output  # unknown suffix
    for bad in (("--format", "psd"), ("--format", "xyz"), ("--format", "wmf"), ("--format", "hit"),
                ("--format", "webp", "-o", tmp_path / "x.png"), ("-o", tmp_path / "x.psd"),
                ("-o", tmp_path / "x.wmf"), ("-o", tmp_path / "x.hit"), ("-o", tmp_path / "x.final"),
                ("-o", tmp_path / "x.xbm"), ("--format", "palm")):  # XBM, Palm: 1-bit or palette images only
        r = run("decompress", hit, *bad, "--model", tiny_path)  # read-only, stub or unknown; disagrees with the name
        assert r.exit_code == 2 and "Traceback" not in r.output, (bad, r.output)
    assert not [p for p in tmp_path.glob("x.*") if p.suffix != ".jpeg"] and hit.read_bytes()[:4] == b"HITC"
    (tmp_path / "copy.hit").write_bytes(hit.read_bytes())
    r = run("decompress", hit, tmp_path / "copy.hit", "-o", f"{folder}/", "--format", "ico", "--model", tiny_path)
    size = sum((folder / f"{name}.ico").stat().st_size for name in ("photo", "copy"))
    assert r.exit_code == 0 and f"{size} bytes out" in r.stderr, r.output  # ICO leaves its buffer mid-way


def test_device_option(png, tiny_path, tmp_path):
    import torch

    r = run("compress", png, "--device", "auto", "-o", tmp_path / "a.hit", "--model", tiny_path)
    assert r.exit_code == 0, r.output
    assert run("compress", png, "--device", "tpu", "--model", tiny_path).exit_code == 2
    if not torch.cuda.is_available():
        r = run("compress", png, "--device", "cuda", "--model", tiny_path)
        assert r.exit_code == 2 and "no usable CUDA" in r.stderr and "Traceback" not in r.output
    r = run("decompress", tmp_path / "a.hit", "--device", "auto", "-o", tmp_path / "a.png", "--model", tiny_path)
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("content", [b"garbage", bytes(range(256)) * 20, b"PK\x03\x04 not a zip", b"junk",
                                     b"\x80\x02.\x82", b"\x80\x09."])  # struct.error, IndexError, protocol 9
def test_a_file_that_is_not_a_model_is_a_one_line_error(tmp_path, png, content):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(content)
    r = run("compress", png, "-o", tmp_path / "out.hit", "--model", bad)
    assert r.exit_code == 1 and "is not a hitcodec model file (" in r.output
    assert r.output.count("\n") == 1 and len(r.output) < 250, r.output  # one short line: no torch boilerplate
    assert "Traceback" not in r.output and not (tmp_path / "out.hit").exists()


def test_damaged_empty_or_odd_model_paths_are_one_line_errors(tmp_path, png, tiny_path):
    import os

    import torch

    state = torch.load(tiny_path, weights_only=True)
    name = sorted(state["model"])[3]
    state["model"][name] = state["model"][name] * float("nan")  # as flipped bytes in a weight can make them
    damaged = tmp_path / "damaged.pt"
    torch.save(state, damaged)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    fifo = tmp_path / "fifo.pt"
    os.mkfifo(fifo)
    state = torch.load(tiny_path, weights_only=True)
    state["model"]["g_a.0.weight"] = state["model"]["g_a.0.weight"] * 1e37  # finite, but the latents overflow
    huge = tmp_path / "huge.pt"
    torch.save(state, huge)
    for model, message in ((damaged, f"is damaged: {name} holds nan"), (empty, "(the file is empty)"),
                           (fifo, "not a regular file"), (huge, "non-finite z2 latents")):
        r = run("compress", png, "-o", tmp_path / "out.hit", "--model", model)
        assert r.exit_code == 1 and message in r.stderr and r.stderr.count("\n") == 1, r.output
    r = run("compress", png, "-o", tmp_path / "out.hit", "--model", "")  # a usage error
    assert r.exit_code == 2 and "the model path is empty" in r.stderr and r.stderr.count("\n") == 1, r.output
    assert not (tmp_path / "out.hit").exists()


def test_a_model_whose_weights_do_not_fit_its_config_is_a_one_line_error(tmp_path, png, tiny_path):
    import torch

    state = torch.load(tiny_path, weights_only=True)
    state["model_config"]["n"] += 8
    bad = tmp_path / "mismatch.pt"
    torch.save(state, bad)
    r = run("compress", png, "-o", tmp_path / "out.hit", "--model", bad)
    assert r.exit_code == 1 and "weights do not fit its config" in r.output and len(r.output) < 300
    state["model_config"]["n"] = 0  # a config no network can have: refused in one line, without torch's warnings
    torch.save(state, bad)
    r = run("compress", png, "-o", tmp_path / "out.hit", "--model", bad)
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and "n must be a whole number >= 1" in r.stderr, r.stderr


def test_multi_frame_input_warns_that_only_its_first_frame_is_coded(tmp_path, tiny_path, photo):
    frames = [Image.fromarray(photo[:40, :50]), Image.fromarray(photo[40:80, :50])]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    r = run("compress", gif, "--model", tiny_path)
    assert r.exit_code == 0, r.output
    assert "warning" in r.stderr and "first of the image's 2 frames" in r.stderr and (tmp_path / "anim.hit").exists()
    r = run("compare", gif, "-o", tmp_path / "cmp.png", "--model", tiny_path)  # compare codes it too
    assert r.exit_code == 0 and "first of the image's 2 frames" in r.stderr, r.output
    r = run("info", tmp_path, "--model", tiny_path)  # a folder: a usage error, as for compare, export, --model
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "is a directory" in r.stderr, r.stderr


def test_api_warns_that_only_the_first_frame_is_coded(tmp_path, tiny_path, photo):
    from hitcodec.api import compress

    gif = tmp_path / "anim.gif"
    Image.fromarray(photo[:40, :50]).save(gif, save_all=True, append_images=[Image.fromarray(photo[40:80, :50])])
    with pytest.warns(UserWarning, match="first of the image's 2 frames") as caught:
        assert compress(gif, model=tiny_path)[:4] == b"HITC"
    assert caught[0].filename == __file__  # the caller's line, not one inside hitcodec
    from hitcodec.api import compress_image

    with pytest.warns(UserWarning, match="first of the image's 2 frames") as caught:
        compress_image(gif, model=tiny_path)
    assert caught[0].filename == __file__


def test_a_fifo_is_written_in_place(png, tiny_path, tmp_path):
    import threading

    fifo = tmp_path / "out.hit"
    os.mkfifo(fifo)
    got = {}

    def reader():
        with open(fifo, "rb") as f:
            got["data"] = f.read()

    thread = threading.Thread(target=reader)
    thread.start()
    r = run("compress", png, "-o", fifo, "--model", tiny_path)  # exists, but no file to overwrite: no --force
    thread.join(10)
    assert r.exit_code == 0 and got["data"][:4] == b"HITC" and stat.S_ISFIFO(fifo.stat().st_mode), r.output


def test_running_out_of_memory_is_a_one_line_error(tmp_path, png, tiny_path, monkeypatch):
    from hitcodec import codec

    assert run("compress", png, "-o", tmp_path / "a.hit", "--model", tiny_path).exit_code == 0

    def alloc_fails(*args, **kwargs):  # what torch's CPU allocator raises for a file declaring a huge image
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                           "memory: you tried to allocate 9663676416 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(codec, "decode", alloc_fails)
    r = run("decompress", tmp_path / "a.hit", "--model", tiny_path)
    assert r.exit_code == 1 and r.stderr == "hitcodec: error: out of memory (an allocation of 9.0 GiB failed)\n"
    assert not (tmp_path / "a.png").exists()


def test_compress_to_an_image_name_warns(tmp_path, png, tiny_path):
    r = run("compress", png, "-o", tmp_path / "out.jpg", "--model", tiny_path)
    assert r.exit_code == 0 and "out.jpg holds a hitcodec stream" in r.stderr
    assert (tmp_path / "out.jpg").read_bytes()[:4] == b"HITC"
    r = run("compress", png, "-o", tmp_path / "out.hit", "--model", tiny_path)
    assert r.exit_code == 0 and "warning" not in r.stderr


def test_fetch_data_reports_a_failing_apt_in_one_line(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "apt-get"
    fake.write_text("#!/bin/sh\n[ \"$1\" = update ] && exit 0\necho 'E: Unable to locate package gcompris-qt-data' >&2"
                    "\nexit 100\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    r = run("fetch-data", tmp_path / "photos")  # was a CalledProcessError traceback, apt's words thrown away
    assert r.exit_code == 1 and r.stderr == ("hitcodec: error: apt-get download gcompris-qt-data failed: E: Unable to "
                                             "locate package gcompris-qt-data\n"), r.output
    assert not (tmp_path / "photos").exists()


def test_fetch_data_checks_its_folder_before_apt(tmp_path, monkeypatch):
    """A folder that cannot be written was found only after apt-get update and a 44 MB download."""
    import hitcodec.data

    monkeypatch.setattr(hitcodec.data, "fetch_training_photos", lambda out: pytest.fail("fetched"))
    (tmp_path / "afile").write_bytes(b"")
    r = run("fetch-data", tmp_path / "afile" / "photos")
    assert r.exit_code == 1 and r.stderr == (f"hitcodec: error: cannot write in {tmp_path / 'afile' / 'photos'}: "
                                             f"{tmp_path / 'afile'} is not a folder\n"), r.output
    r = run("fetch-data", "")
    assert r.exit_code == 2 and "an empty name; give a folder name" in r.stderr, r.output


def test_hitcodec_alone_shows_its_help_without_calling_it_an_error():
    r = run()
    assert r.exit_code == 2 and r.stderr.startswith("Usage: "), r.stderr  # was "hitcodec: error: Usage: ..."
