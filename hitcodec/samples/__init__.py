"""Bundled sample photo: NASA's portrait of astronaut Eileen Collins (public domain), as shipped by scikit-image."""

from pathlib import Path

SAMPLE_PHOTO = Path(__file__).parent / "astronaut.png"
