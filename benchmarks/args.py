"""Argument checks shared by the benchmark scripts: bad values are one-line argparse errors before any work,
not tracebacks after it (argparse `type=` functions, and checks of output paths and NAME=PATH models)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def whole(minimum: int):
    """An argparse type: a whole number >= ``minimum``."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    return convert


def _values(text: str, convert, what: str, ok, condition: str) -> list:
    try:
        values = [convert(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated {what}, not {text!r}") from None
    if not all(ok(v) for v in values):
        raise argparse.ArgumentTypeError(f"every value must be {condition}, not {text!r}")
    return values


def positive_floats(text: str) -> list[float]:
    """An argparse type: comma-separated finite numbers > 0 (betas)."""
    return _values(text, float, "numbers", lambda v: math.isfinite(v) and v > 0, "a finite number > 0")


def whole_numbers(text: str) -> list[int]:
    """An argparse type: comma-separated whole numbers >= 0 (step counts)."""
    return _values(text, int, "whole numbers", lambda v: v >= 0, "at least 0")


def models(parser: argparse.ArgumentParser, specs: list[str]):
    """NAME=PATH options as {name: LoadedModel}, in order, each loaded before any work: a name, a model file, and
    no name twice."""
    from hitcodec.weights import load_model

    out = {}
    for spec in specs:
        name, eq, path = spec.partition("=")
        if not (eq and name and path):
            parser.error(f"--model takes NAME=PATH, not {spec!r}")
        if name in out:
            parser.error(f"--model: the name {name} is given twice")
        if not Path(path).is_file():
            parser.error(f"--model {spec}: no such file {path}")
        try:
            out[name] = load_model(path)
        except (ValueError, OSError) as exc:
            parser.error(f"--model {spec}: {exc}")
    return out


def betas_in_squares(parser: argparse.ArgumentParser, betas: list[float], models: dict) -> None:
    """Refuse diagonal points beta2 = beta1 outside a model's trained square ({name: LoadedModel}): the codec
    refuses them, and a network would only extrapolate there."""
    from hitcodec.codec import check_betas

    for name, loaded in models.items():
        try:
            for beta in betas:
                check_betas(beta, beta, loaded.model.config)
        except ValueError as exc:
            parser.error(f"--betas for {name}: {exc}")


def output_folder(parser: argparse.ArgumentParser, folder: str | Path, option: str = "--out",
                  given: str | Path | None = None) -> None:
    """Refuse an output folder that is a file or lies in one (before the work, not after it)."""
    path = Path(folder)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                parser.error(f"{option} {given or folder}: {p} is a file, not a folder")
            return


def output_file(parser: argparse.ArgumentParser, file: str | Path, option: str = "--out") -> None:
    """Refuse an output file that is a folder, or whose folder is a file or lies in one."""
    if Path(file).is_dir():
        parser.error(f"{option} {file} is a folder; give a file name")
    output_folder(parser, Path(file).parent, option, file)
