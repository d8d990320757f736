"""hitcodec: a learned lossy image codec with per-layer control of the bitrate split (GHVAE, Xiao & Bamler 2023)."""

from hitcodec import pillow_plugin
from hitcodec.api import compress, decompress

__version__ = "0.1.0"
__all__ = ["compress", "decompress", "__version__"]

pillow_plugin.register()
