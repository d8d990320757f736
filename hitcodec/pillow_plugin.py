"""Pillow plugin: after ``import hitcodec``, ``Image.open("x.hit")`` decodes and ``im.save("x.hit", beta2=...,
beta1=...)`` encodes, like Pillow's built-in formats. Save options: beta2, beta1 (default 1), the targets, verify,
model, device, refine_steps.

As with Pillow's own formats, a corrupt file raises OSError (from ``Image.open`` or ``load``) and a bad save
option ValueError; a .hit file holds one image, so ``save_all`` codes the current frame with a warning."""

from __future__ import annotations

import math
import warnings
from typing import IO

from PIL import Image, ImageFile

from hitcodec import bitstream


def _accept(prefix: bytes) -> bool:
    return prefix[:4] == bitstream.MAGIC


# Pillow's own check of the declared size (Image.MAX_IMAGE_PIXELS: DecompressionBombWarning, then Error) applies
# after _open, as for its formats, in place of hitcodec's default max_pixels
_ANY_SIZE = 1 << 64


class HitImageFile(ImageFile.ImageFile):
    format = "HIT"
    format_description = "hitcodec learned lossy image"
    _hit_data: bytes | None = None  # the file until it is decoded (not there in an unpickled or copied image)

    def _open(self) -> None:
        try:
            data = bitstream.read(self.fp)
            header, _ = bitstream.unpack(data, max_pixels=_ANY_SIZE)  # checks the CRC of the whole file
        except bitstream.BitstreamError as exc:
            raise OSError(str(exc)) from exc
        self._size = (header.width, header.height)
        self._mode = header.mode
        self.info["beta2"], self.info["beta1"] = header.beta2, header.beta1
        self.info["model_id"] = header.model_id_hex
        self._hit_data = data
        self.tile = []

    def load(self):
        if self._hit_data is not None:
            from hitcodec.api import decompress

            try:
                decoded = decompress(self._hit_data, max_pixels=_ANY_SIZE)
            except ValueError as exc:  # a corrupt payload, another model's file
                raise OSError(f"cannot decode hitcodec image: {exc}") from exc
            self.im = decoded.im
            self.readonly = 0  # (as ImageFile.load leaves an image it did not map)
            self._hit_data = None
            if self._exclusive_fp and self.fp is not None and getattr(self, "_close_exclusive_fp_after_loading",
                                                                      True):
                self.fp.close()  # as ImageFile.load does: all bytes were read in _open (verify() closed it)
            self.fp = None
        return Image.Image.load(self)

    def close(self) -> None:
        self._hit_data = None  # not decoded once closed: Pillow's "Operation on closed image", as for its formats
        super().close()


def _number(value, name: str) -> float:
    """``value`` as a finite positive float: TypeError naming the option unless it is a number, ValueError unless it
    is finite and positive."""
    from hitcodec.codec import check_real

    number = check_real(name, value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return number


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    """Pillow save hook: beta2, beta1 (default 1), or target_bpp / target_size (bytes) searched along the ratio
    beta2/beta1, or target_rates = (bpp of z2, bpp of z1) as the CLI's --target-rates; model, device, verify and
    refine_steps as in `hitcodec.compress`."""
    from hitcodec import codec, targets
    from hitcodec.api import compress_image, resolve_model, to_codec_image, verify_coded

    opts = im.encoderinfo
    device, verify = opts.get("device", "cpu"), codec.check_bool("verify", opts.get("verify", False))
    loaded = resolve_model(opts.get("model"))
    beta2, beta1 = codec.check_betas(opts.get("beta2", 1.0), opts.get("beta1", 1.0), loaded.model.config)
    size, bpp, rates = opts.get("target_size"), opts.get("target_bpp"), opts.get("target_rates")
    if sum(t is not None for t in (size, bpp, rates)) > 1:
        raise ValueError("give one of target_size, target_bpp and target_rates")
    if rates is not None:
        if isinstance(rates, (str, bytes)) or not hasattr(rates, "__getitem__") or not hasattr(rates, "__len__"):
            # (a set has a length, but no order)
            raise TypeError(f"target_rates must be two numbers (bpp of z2, bpp of z1), not {type(rates).__name__}")
        if len(rates) != 2:
            raise ValueError(f"target_rates must be two numbers (bpp of z2, bpp of z1), got {rates!r}")
        rates = tuple(_number(r, "target_rates") for r in rates)
        if "beta2" in opts or "beta1" in opts:
            raise ValueError("target_rates chooses beta2 and beta1; leave them out")
    if size is not None:
        size = _number(size, "target_size")
        if size != int(size):
            raise ValueError(f"target_size must be a whole number of bytes, got {opts['target_size']!r}")
    if bpp is not None:
        size = targets.bytes_for_bpp(_number(bpp, "target_bpp"), im.width * im.height)
    refine_steps = codec.check_whole("refine_steps", opts.get("refine_steps", 0), 0)
    if refine_steps and (size is not None or rates is not None):  # as --refine with the --target-* options
        raise ValueError("refine_steps does not combine with target_size, target_bpp or target_rates")
    image = to_codec_image(im)
    if size is not None or rates is not None:
        result = (targets.compress_to_size(loaded, image, int(size), ratio=beta2 / beta1, device=device)
                  if rates is None else targets.compress_to_layer_rates(loaded, image, *rates, device=device))
        if not result.reached:
            warnings.warn(result.message, stacklevel=3)
        coded = result.coded
        if verify:
            verify_coded(loaded, coded, device=device)
    else:
        coded = compress_image(image, beta2, beta1, model=loaded, verify=verify, device=device,
                               refine_steps=refine_steps)
    fp.write(coded.data)


def _save_all(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    frames = getattr(im, "n_frames", 1) + len(im.encoderinfo.get("append_images") or ())
    if frames > 1:
        warnings.warn(f"a .hit file holds one image: only frame {im.tell()} of the {frames} given is coded",
                      stacklevel=3)
    _save(im, fp, filename)


def register() -> None:
    Image.register_open(HitImageFile.format, HitImageFile, _accept)
    Image.register_save(HitImageFile.format, _save)
    Image.register_save_all(HitImageFile.format, _save_all)
    Image.register_extension(HitImageFile.format, ".hit")
    Image.register_mime(HitImageFile.format, "image/x-hitcodec")
