"""Pillow plugin: after ``import hitcodec``, ``Image.open("x.hit")`` decodes and ``im.save("x.hit", beta2=...,
beta1=...)`` encodes, like Pillow's built-in formats. Save options: beta2, beta1 (default 1), verify, model."""

from __future__ import annotations

from typing import IO

from PIL import Image, ImageFile

from hitcodec import bitstream


def _accept(prefix: bytes) -> bool:
    return prefix[:4] == bitstream.MAGIC


class HitImageFile(ImageFile.ImageFile):
    format = "HIT"
    format_description = "hitcodec learned lossy image"

    def _open(self) -> None:
        data = self.fp.read()
        header, _ = bitstream.unpack(data)  # a corrupt file fails here with a BitstreamError
        self._size = (header.width, header.height)
        self._mode = header.mode
        self.info["beta2"], self.info["beta1"] = header.beta2, header.beta1
        self.info["model_id"] = header.model_id_hex
        self._hit_data: bytes | None = data
        self.tile = []

    def load(self):
        if self._hit_data is not None:
            from hitcodec.api import decompress

            decoded = decompress(self._hit_data)
            self.im = decoded.im
            self._hit_data = None
        return Image.Image.load(self)


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    """Pillow save hook: beta2, beta1 (default 1), or target_bpp / target_size (bytes) searched along the ratio
    beta2/beta1; model, device and verify as in `hitcodec.compress`."""
    from hitcodec import targets
    from hitcodec.api import compress_image, resolve_model, to_codec_image, verify_coded

    opts = im.encoderinfo
    beta2, beta1 = float(opts.get("beta2", 1.0)), float(opts.get("beta1", 1.0))
    device, verify = opts.get("device", "cpu"), bool(opts.get("verify", False))
    loaded = resolve_model(opts.get("model"))
    image = to_codec_image(im)
    size = opts.get("target_size")
    if opts.get("target_bpp") is not None:
        size = targets.bytes_for_bpp(float(opts["target_bpp"]), im.width * im.height)
    if size is not None:
        coded = targets.compress_to_size(loaded, image, int(size), ratio=beta2 / beta1, device=device).coded
        if verify:
            verify_coded(loaded, coded, device=device)
    else:
        coded = compress_image(image, beta2, beta1, model=loaded, verify=verify, device=device)
    fp.write(coded.data)


def register() -> None:
    Image.register_open(HitImageFile.format, HitImageFile, _accept)
    Image.register_save(HitImageFile.format, _save)
    Image.register_extension(HitImageFile.format, ".hit")
    Image.register_mime(HitImageFile.format, "image/x-hitcodec")
