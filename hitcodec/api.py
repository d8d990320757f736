"""The Python API: ``compress(image, beta2=..., beta1=...) -> bytes`` and ``decompress(data) -> PIL.Image``."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image

from hitcodec import bitstream, codec
from hitcodec.image import DEFAULT_MAX_PIXELS, CodecImage, from_pil, read_image, to_pil
from hitcodec.weights import LoadedModel, load_model

ModelArg = Union[LoadedModel, str, Path, None]
ImageArg = Union[Image.Image, np.ndarray, str, Path, BinaryIO, bytes]
DataArg = Union[bytes, bytearray, memoryview, str, Path, BinaryIO]


class VerificationError(RuntimeError):
    """The freshly written bitstream did not decode to the latents that were coded."""


def resolve_model(model: ModelArg) -> LoadedModel:
    """A LoadedModel from a LoadedModel, a model file path, or None for the shipped default model."""
    if isinstance(model, LoadedModel):
        return model
    if model is not None and not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be a LoadedModel, the path of a model file or None, not {type(model).__name__}")
    return load_model(str(model) if model is not None else None)


def to_codec_image(image: ImageArg, max_pixels: int = DEFAULT_MAX_PIXELS) -> CodecImage:
    max_pixels = codec.check_whole("max_pixels", max_pixels, 1)
    if isinstance(image, CodecImage):
        return image
    if isinstance(image, Image.Image):
        return from_pil(image)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or not (image.ndim == 2 or image.ndim == 3 and image.shape[2] in (2, 3, 4)):
            raise ValueError("arrays must be uint8 of shape (H, W), (H, W, 2), (H, W, 3) or (H, W, 4)")
        return from_pil(Image.fromarray(image))
    if isinstance(image, (bytearray, memoryview)):
        image = bytes(image)
    if not isinstance(image, (str, os.PathLike, bytes)) and not hasattr(image, "read"):
        raise TypeError(f"cannot compress an object of type {type(image).__name__}: give a Pillow image, a uint8 "
                        "array, a path, a binary file or the bytes of an image file")
    if isinstance(image, io.TextIOBase):  # Pillow would read text from it, and call the image corrupt
        raise TypeError("cannot compress a file opened as text: open it in binary mode ('rb')")
    return read_image(image, max_pixels)


def compress_image(image: ImageArg, beta2: float = 1.0, beta1: float = 1.0, *, model: ModelArg = None,
                   verify: bool = False, device: str = "cpu", refine_steps: int = 0,
                   max_pixels: int = DEFAULT_MAX_PIXELS, _stacklevel: int = 2) -> codec.Coded:
    """Like `compress`, but returns the bytes with per-layer statistics and the coded latents."""
    verify = codec.check_bool("verify", verify)
    loaded = resolve_model(model)
    read = not isinstance(image, CodecImage)
    image = to_codec_image(image, max_pixels)
    if read and image.frames_warning():  # read here from a file: warned of at the caller's line
        warnings.warn(image.frames_warning(), stacklevel=_stacklevel)
    coded = codec.encode(loaded, image, beta2, beta1, device=device, refine_steps=refine_steps)
    if verify:
        verify_coded(loaded, coded, device=device)
    return coded


def verify_coded(loaded: LoadedModel, coded: codec.Coded, device: str = "cpu") -> codec.Decoded:
    """Decode freshly coded bytes and check that every layer's latents come back; returns the decoded image."""
    decoded = codec.decode(loaded, coded.data, device=device)
    for name in codec.LAYERS:
        if not np.array_equal(decoded.symbols[name], coded.symbols[name]):
            raise VerificationError(f"verification failed: latents of {name} do not round-trip")
    return decoded


def compress(image: ImageArg, beta2: float = 1.0, beta1: float = 1.0, *, model: ModelArg = None,
             verify: bool = False, device: str = "cpu", refine_steps: int = 0,
             max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """Compress an image (Pillow image, uint8 array, path, file or bytes) to .hit bytes.

    beta2 and beta1, in the model's range ([0.1, 10] for the shipped model), weigh the rates of z2 and of z1
    against distortion: larger means fewer bits in that layer. beta2 == beta1 is the conventional beta-VAE; about
    0.3 bpp at 1, 1 with the shipped model. ``refine_steps`` > 0 refines z1 for this image by that many gradient
    steps on the objective: a better rate/distortion trade-off at the same betas, for a much slower encode
    (README, `--refine`). Image files of more than ``max_pixels`` pixels are refused before their pixels are
    decoded (as `decompress`; Pillow images and arrays are taken as they are).
    """
    return compress_image(image, beta2, beta1, model=model, verify=verify, device=device,
                          refine_steps=refine_steps, max_pixels=max_pixels, _stacklevel=3).data


def hit_bytes(data: DataArg) -> bytes:
    """The bytes of a .hit file from bytes-like data, a path or a binary file."""
    if isinstance(data, (str, os.PathLike)):
        with open(data, "rb") as stream:
            return bitstream.read(stream)
    if isinstance(data, io.TextIOBase):  # its read() would decode the bytes as text first
        raise TypeError("cannot decompress a file opened as text: open it in binary mode ('rb')")
    if hasattr(data, "read"):
        data = bitstream.read(data)
    if isinstance(data, (bytes, bytearray, memoryview, np.ndarray)):  # not bytes(int): that many zero bytes
        return bytes(memoryview(data))
    raise TypeError(f"cannot decompress an object of type {type(data).__name__}: give the bytes of a .hit file, a "
                    "path or a binary file")


def decompress(data: DataArg, *, model: ModelArg = None, device: str = "cpu",
               max_pixels: int = bitstream.DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode a .hit file (bytes, path or binary file) to a Pillow image of the stored mode (L, RGB, LA or RGBA).

    ``device`` runs the synthesis transform, as in `compress`. Files declaring more than ``max_pixels`` pixels are
    refused before any decoding (lower it where files come from untrusted sources: decoding time and memory grow
    with the declared size)."""
    max_pixels = codec.check_whole("max_pixels", max_pixels, 1)
    decoded = codec.decode(resolve_model(model), hit_bytes(data), max_pixels=max_pixels, device=device)
    return to_pil(decoded.image.rgb, decoded.image.alpha, decoded.image.mode)
