"""Pack what an offline GPU machine needs to continue `hitcodec train`, within what may travel there.

    python -m benchmarks.device_kit [--checkpoint runs/main/last.pt] [--data data/train] [--out .carry]
                                    [--budget-mb 64] [--jpeg-quality 95]

Writes OUT/start.pt, the checkpoint's weights as an fp16 file without optimiser state (~12 MB; the checkpoint
itself, with Adam's moments, is ~73 MB), and OUT/train/, the training photos as 4:4:4 JPEGs of quality 95 (all
268 fit: 26 MiB, 44 dB mean PSNR; as PNGs only 108 did), taken in seeded random order while they fit in the
budget once the tracked working tree, the wheels in .whl/ and start.pt are counted. Then
`benchmarks/device_run.sh` runs there (docs/training.md).
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
from pathlib import Path

from PIL import Image

from hitcodec.codec import psnr
from hitcodec.data import list_images, load_rgb_uint8
from hitcodec.train import export_weights

MARGIN = 2 * 2**20  # bytes kept free under the budget


def tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def tracked_bytes(repo: Path) -> int:
    """Bytes of the files git tracks in ``repo`` (they travel with every call)."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True, check=True).stdout
    return sum((repo / n).stat().st_size for n in names.decode().split("\0") if n and (repo / n).is_file())


def write_jpeg(photo: Path, dest: Path, quality: int) -> float:
    """Re-encode ``photo`` as a 4:4:4 JPEG at ``quality`` into ``dest``; return the PSNR (dB) of the copy."""
    rgb = load_rgb_uint8(photo)
    Image.fromarray(rgb).save(dest, "JPEG", quality=quality, subsampling=0)
    return psnr(rgb, load_rgb_uint8(dest))


def pack(checkpoint: Path, data: Path, out: Path, budget: int, seed: int = 0, jpeg_quality: int = 0) -> dict:
    """Fill ``out`` with start.pt and train/ in at most ``budget`` bytes; return what was packed.

    With ``jpeg_quality`` > 0 the photos travel as 4:4:4 JPEGs of that quality (at 95 all 268 training photos
    take 26 MiB instead of 86 MiB as PNG, at 44 dB mean PSNR, far above what the codec reconstructs); else as
    they are."""
    if out.exists():  # an earlier kit is replaced; nothing else is deleted
        if not out.is_dir() or set(p.name for p in out.iterdir()) - {"start.pt", "train"} or \
                data.resolve().is_relative_to(out.resolve()):
            raise SystemExit(f"{out} exists and is not a kit of benchmarks.device_kit (start.pt and train/ only), or "
                             f"holds the photos: give another --out")
        shutil.rmtree(out)
    (out / "train").mkdir(parents=True)
    export_weights(checkpoint, out / "start.pt")
    left = budget - (out / "start.pt").stat().st_size
    photos = list_images(data)
    if not photos:
        raise SystemExit(f"no training photos in {data}")
    random.Random(seed).shuffle(photos)
    taken, psnrs = 0, []
    for i, photo in enumerate(photos):
        if jpeg_quality > 0:
            dest = out / "train" / f"{i:04d}.jpg"
            copy_psnr = write_jpeg(photo, dest, jpeg_quality)
        else:
            dest = out / "train" / f"{i:04d}{photo.suffix.lower()}"
            shutil.copyfile(photo, dest)
        size = dest.stat().st_size
        if size > left:
            dest.unlink()
            continue
        left -= size
        taken += 1
        if jpeg_quality > 0:
            psnrs.append(copy_psnr)
    result = {"photos": taken, "of": len(photos), "bytes": tree_bytes(out),
              "photo_bytes": tree_bytes(out / "train"), "all_photo_bytes": sum(p.stat().st_size for p in photos)}
    if psnrs:
        result["jpeg_psnr_mean"], result["jpeg_psnr_min"] = sum(psnrs) / len(psnrs), min(psnrs)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="runs/main/last.pt")
    parser.add_argument("--data", default="data/train")
    parser.add_argument("--out", default=".carry")
    parser.add_argument("--budget-mb", type=float, default=64, help="MiB that may travel in all (the tool's limit)")
    parser.add_argument("--jpeg-quality", type=int, default=95,
                        help="photos travel as 4:4:4 JPEGs of this quality (default 95); 0 copies them as they are")
    args = parser.parse_args(argv)
    repo = Path.cwd()
    fixed = tracked_bytes(repo) + tree_bytes(repo / ".whl")
    budget = int(args.budget_mb * 2**20) - fixed - MARGIN
    result = pack(Path(args.checkpoint), Path(args.data), Path(args.out), budget, jpeg_quality=args.jpeg_quality)
    print(f"{args.out}: start.pt and {result['photos']} of {result['of']} photos "
          f"({result['photo_bytes'] / 2**20:.1f} of {result['all_photo_bytes'] / 2**20:.1f} MiB); "
          f"with the tracked tree and .whl/: {(fixed + result['bytes']) / 2**20:.1f} MiB"
          + (f"; JPEG copies at {result['jpeg_psnr_mean']:.1f} dB mean PSNR (min {result['jpeg_psnr_min']:.1f})"
             if "jpeg_psnr_mean" in result else ""))


if __name__ == "__main__":
    main()
