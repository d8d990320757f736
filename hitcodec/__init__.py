"""hitcodec: a learned lossy image codec with per-layer control of the bitrate split (GHVAE, Xiao & Bamler 2023)."""

from hitcodec import pillow_plugin

__version__ = "0.1.0"
__all__ = ["compress", "decompress", "__version__"]

pillow_plugin.register()


def __getattr__(name: str):
    """``compress`` and ``decompress`` from `hitcodec.api`, imported on first use: importing torch takes seconds,
    which `hitcodec --help` and the Pillow plugin's registration need not wait for."""
    if name in ("compress", "decompress"):
        from hitcodec import api

        return getattr(api, name)
    raise AttributeError(f"module 'hitcodec' has no attribute {name!r}")
