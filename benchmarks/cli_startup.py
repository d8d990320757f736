"""Wall time of whole `hitcodec` command-line calls, start-up included: what a user waits for per call.

    python -m benchmarks.cli_startup [--image hitcodec/samples/astronaut.png] [--repeats 5] [--out FILE.json]

Each command runs ``--repeats`` times as a fresh process after one untimed warm-up call (file caches); the
median wall time is reported next to the coding time the command prints itself, so the difference is start-up
(imports, model loading) and writing.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.args import output_file, whole

SAMPLE = Path(__file__).resolve().parents[1] / "hitcodec" / "samples" / "astronaut.png"


def timed(args: list[str], repeats: int) -> dict:
    command = [sys.executable, "-m", "hitcodec", *args]
    warm_up = subprocess.run(command, capture_output=True, text=True)
    if warm_up.returncode:
        sys.exit(f"benchmarks.cli_startup: `hitcodec {' '.join(args)}` failed: {warm_up.stderr.strip()}")
    walls, coding = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        walls.append(time.perf_counter() - start)
        printed = re.findall(r", ([0-9.]+) s$", (done.stderr + done.stdout).strip())
        coding += [float(printed[-1])] if printed else []
    result = {"command": "hitcodec " + " ".join(args), "wall_s": statistics.median(walls)}
    if coding:
        result["coding_s"] = statistics.median(coding)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=SAMPLE)
    parser.add_argument("--repeats", type=whole(1), default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.out is not None:
        output_file(parser, args.out)
        if not args.out.parent.is_dir():
            parser.error(f"--out: no folder {args.out.parent}")
    with tempfile.TemporaryDirectory() as tmp:
        hit, png = str(Path(tmp) / "x.hit"), str(Path(tmp) / "x.png")
        rows = [timed(["--version"], args.repeats),
                timed(["compress", str(args.image), "-o", hit, "-f"], args.repeats),
                timed(["decompress", hit, "-o", png, "-f"], args.repeats)]
    for row in rows:
        row["command"] = row["command"].replace(tmp, "$TMP")
        extra = f" (coding {row['coding_s']:.2f} s)" if "coding_s" in row else ""
        print(f"{row['command']}: {row['wall_s']:.2f} s{extra}")
    if args.out:
        args.out.write_text(json.dumps({"name": "cli-startup", "repeats": args.repeats, "results": rows}, indent=1))


if __name__ == "__main__":
    main()
