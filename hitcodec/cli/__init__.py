"""The ``hitcodec`` command line: a thin layer that turns options into library calls and prints one line each.

Exit status: 0 success, 1 bad data (unreadable image, corrupt bitstream, existing output, ...), 2 bad usage.
Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import glob
import io
import json
import logging
import math
import os
import re
import signal
import stat
import struct
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path


def _interrupted_while_starting(signum, frame):
    sys.stderr.write("hitcodec: interrupted\n")
    raise SystemExit(130)


# A Ctrl-C while click and numpy import (most of the ~0.3 s before `HitGroup.main` catches it) is one line, not a
# traceback; the previous handler is restored at the end of this module. Not in another thread: not ours to set.
_OWN_SIGINT = threading.current_thread() is threading.main_thread()
_sigint_before = signal.signal(signal.SIGINT, _interrupted_while_starting) if _OWN_SIGINT else None

import click  # noqa: E402
import numpy as np  # noqa: E402

EXIT_DATA, EXIT_USAGE = 1, 2
LOSS_NORMS = ("none", "sqrt-beta", "root8-beta", "times-root8-beta")  # hitcodec.models.ghvae.LOSS_NORMS, whose
# module is not imported here: torch takes seconds to import, which `hitcodec --help` need not wait for


class CLIError(Exception):
    """A failure to report in one line with exit status 1."""


class _Terminated(KeyboardInterrupt):
    """SIGTERM in the main process: raised where it runs, so that it unwinds like Ctrl-C (a temporary file is
    removed, no further file is written), then ends the command with exit status 143."""


class _TerminatedExit(Exception):
    """`_Terminated` once out of the command, as an exception that click passes on (a KeyboardInterrupt would make
    it print a blank line and call the command aborted)."""


class _InterruptedExit(Exception):
    """A Ctrl-C (KeyboardInterrupt) once out of the command, passed on by click as `_TerminatedExit` is."""


def _on_sigterm(signum, frame):
    raise _Terminated


def _quiet_pillow() -> None:
    """Pillow's "Corrupt EXIF data" UserWarning (when it opens such a JPEG, and in exif_transpose) is not shown:
    hitcodec ignores an unreadable EXIF block, and a Python warning with Pillow's source line is no one-line
    message. Set for the command line's process and its workers only (a library leaves the filters to its
    caller)."""
    import warnings

    warnings.filterwarnings("ignore", "Corrupt EXIF data", UserWarning)
    # other libraries' warnings (Pillow's "Truncated File Read", ...) as one line, not with their source line
    warnings.formatwarning = lambda message, category, filename, lineno, line=None: \
        f"hitcodec: warning: {_printable(' '.join(str(message).split()))}\n"


class HitGroup(click.Group):
    """A click group whose errors are one line on stderr: exit 2 for usage, 1 for bad data."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # type: ignore[override]
        for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 is shown as its bytes, the same in
            if isinstance(stream, io.TextIOWrapper):  # status lines and errors, whatever the locale's error handler
                stream.reconfigure(errors="surrogateescape")
        formatwarning = warnings.formatwarning  # (restored below: _quiet_pillow's is for this command only)
        _quiet_pillow()
        own = threading.current_thread() is threading.main_thread()  # (signal handlers: the main thread's only)
        sigterm_before = signal.signal(signal.SIGTERM, _on_sigterm) if own else None
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except (_TerminatedExit, _Terminated):
            click.echo("hitcodec: terminated", err=True)
            sys.exit(128 + signal.SIGTERM)
        except _InterruptedExit:
            click.echo("hitcodec: interrupted", err=True)
            sys.exit(130)
        except click.UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # `hitcodec` alone (click >= 8.2): the help, not an error
                click.echo(exc.format_message(), err=True)
            else:
                click.echo(f"hitcodec: error: {_as_ours(exc.format_message())}", err=True)
            sys.exit(EXIT_USAGE)
        except click.exceptions.Abort:
            click.echo("hitcodec: aborted", err=True)
            sys.exit(130)
        except click.ClickException as exc:
            click.echo(f"hitcodec: error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except (CLIError, ValueError, OSError, RuntimeError, MemoryError) as exc:
            click.echo(f"hitcodec: error: {_one_line(exc)}", err=True)
            sys.exit(EXIT_DATA)
        except KeyboardInterrupt:
            click.echo("hitcodec: interrupted", err=True)
            sys.exit(130)
        finally:
            warnings.formatwarning = formatwarning
            if own:
                signal.signal(signal.SIGTERM, signal.SIG_DFL if sigterm_before is None else sigterm_before)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except _Terminated:
            raise _TerminatedExit from None
        except KeyboardInterrupt:
            raise _InterruptedExit from None


_CONTROL = {c: f"\\x{c:02x}" for c in [*range(32), 127]} | {9: "\\t", 10: "\\n", 13: "\\r"}


def _printable(text: str) -> str:
    """``text`` with control characters escaped (a file name with a newline keeps its line one line)."""
    return text.translate(_CONTROL)


def _as_ours(message: str) -> str:
    """A message of click's in the style of hitcodec's own: "Invalid value for '--beta2': ... x>0." becomes
    "invalid value for '--beta2': ... x>0" (a first word in capitals, such as 'INPUT', is kept)."""
    if message[:2].isupper() or not message[:1].isupper():
        return message
    return message[0].lower() + message[1:].removesuffix(".")


def _one_line(exc: BaseException) -> str:
    """An error as one line: the command line's own messages as they are (names escaped), those of libraries with
    their line breaks and runs of spaces made one space, and the usual OS errors in words."""
    if isinstance(exc, CLIError):
        return _printable(str(exc))
    text = str(exc) or type(exc).__name__
    name = exc.filename if isinstance(exc, OSError) and isinstance(exc.filename, (str, bytes)) else None
    name = _printable(os.fsdecode(name)) if name else None
    if isinstance(exc, FileNotFoundError) and name:
        return f"no such file: {name}"
    if isinstance(exc, PermissionError) and name:
        return f"permission denied: {name}"
    if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG and name:
        return f"file name too long: {name[:40]}...{name[-20:]}" if len(name) > 80 else f"file name too long: {name}"
    if isinstance(exc, MemoryError) or "can't allocate memory" in text or "out of memory" in text.lower():
        asked = re.search(r"allocate ([0-9]+) bytes", text)  # torch's CPU allocator says how much
        text = "out of memory" + (f" (an allocation of {int(asked[1]) / 2**30:.1f} GiB failed)" if asked else "")
    return " ".join(text.split())


class FiniteFloat(click.FloatRange):
    """click.FloatRange that also refuses nan and inf (which FloatRange's comparisons let through)."""

    name = "float"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"must be a finite number, got {value}", param, ctx)
        return number


POSITIVE = FiniteFloat(min=0, min_open=True)  # e.g. beta2, beta1: their model's own range is checked once it is loaded


def _parse_rates(text: str) -> tuple[float, float]:
    from hitcodec.targets import MAX_RATE, MIN_RATE

    try:
        r2, r1 = (float(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter("expected two numbers R2,R1 (bits per pixel of z2 and of z1)",
                                 param_hint="--target-rates") from None
    if not (MIN_RATE <= r2 <= MAX_RATE and MIN_RATE <= r1 <= MAX_RATE):  # also refuses nan
        raise click.BadParameter(f"both rates must lie in [{MIN_RATE:g}, {MAX_RATE:g}] bits per pixel",
                                 param_hint="--target-rates")
    return r2, r1


def _not_empty(ctx, param, value: str | None) -> str | None:
    if value == "":
        argument = isinstance(param, click.Argument)
        if not getattr(param.type, "file_okay", True):
            what = "folder"
        elif argument or not getattr(param.type, "dir_okay", True):
            what = "file"
        else:
            what = "file or folder"
        raise click.BadParameter(f"an empty name; give a {what} name" + ("" if argument else
                                                                          ", or leave the option out"))
    return value


def _check_output(path: Path | str, force: bool) -> Path:
    """``path`` as a Path, if a file may be written there: refused if it is a file that exists (without
    ``force``), a folder, or lies in a folder that does not exist or is not writable. A device or FIFO that
    exists (/dev/null) is written as it is and needs no ``force``."""
    path = Path(path)
    if path.is_dir():
        raise CLIError(f"{path} is a folder; give a file name")
    if path.is_file() and not force:
        raise CLIError(f"{path} exists (use --force to overwrite)")
    if path.exists() and not path.is_file():
        return path
    target = Path(os.path.realpath(path))  # through a link: where the file is written
    if not target.parent.is_dir():
        what = "is not a folder" if target.parent.exists() else "does not exist"
        shown = target.parent if path.is_symlink() else path.parent  # the folder as the user named it
        raise CLIError(f"cannot write {path}: {shown} {what}")
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise CLIError(f"cannot write {path}: the folder {target.parent} is not writable")
    return path


def _check_writable_folder(folder: Path) -> None:
    """Refuse a folder that cannot be made or written to (by trying: root passes os.access, a read-only mount
    does not). Where it does not exist yet, its nearest existing parent is tried; nothing is left behind."""
    existing = folder
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise CLIError(f"cannot write in {folder}: {existing} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise CLIError(f"cannot write in {folder}: {(exc.strerror or str(exc)).lower()}") from None


def _file_mode(path: Path) -> int:
    """Permissions for a file written at ``path``: those of the file it replaces, else what open() would give a
    new file (0666 less the umask), as cwebp's and cjpeg's outputs get."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


_STOP = None  # in worker processes: an Event that the main process sets on Ctrl-C
_WRITING: str | None = None  # the temporary file being written, if any


def _terminated(signum, frame) -> None:
    """SIGTERM in a worker process: remove the temporary file it is writing, and exit at once."""
    if _WRITING is not None:
        Path(_WRITING).unlink(missing_ok=True)
    os._exit(128 + signum)


def _check_not_stopped() -> None:
    if _STOP is not None and _STOP.is_set():
        raise CLIError("interrupted")


def _check_not_input(output: str, *inputs: str) -> None:
    """Refuse an output that is one of the inputs, however named (a/../x, a link to it), even with --force."""
    if output != "-":
        for src in inputs:
            if src != "-" and os.path.realpath(output) == os.path.realpath(src):
                raise CLIError(f"the output {output} would replace the input {src}: give another output")


def write_atomic(path: Path | str, data: bytes, force: bool) -> None:
    """Write a file via a temporary file in its folder and a rename (through a link: its target is replaced, the
    link stays); write an existing device or FIFO (/dev/null) as it is; '-' writes to stdout."""
    if str(path) == "-":
        _write_stdout(data)
        return
    path = _check_output(path, force)
    _check_not_stopped()
    if path.exists() and not path.is_file():
        try:
            with open(path, "wb") as f:
                f.write(data)
        except OSError as exc:  # e.g. a FIFO whose reader went away (which click would end silently)
            raise CLIError(f"cannot write {path}: {exc.strerror or exc}") from None
        return
    target = Path(os.path.realpath(path))
    global _WRITING
    try:  # a short temporary name: a 255-byte output name must still fit beside it
        fd, tmp = tempfile.mkstemp(prefix=".hitcodec-", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise CLIError(f"cannot write {path}: {exc.strerror or exc}") from None
    _WRITING = tmp
    try:
        os.chmod(tmp, _file_mode(target))  # mkstemp's 0600 would otherwise stay with the file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _check_not_stopped()
        os.replace(tmp, target)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise CLIError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    finally:
        _WRITING = None


def _write_stdout(data: bytes) -> None:
    """Write all of ``data`` to stdout, or fail: a reader that went away (``| head -c 10``) is an error, as a
    short count from BufferedWriter.write, which gives one without an exception when the pipe closes mid-write."""
    if sys.stdout is None:
        raise CLIError("standard output is closed")
    out, rest = sys.stdout.buffer, memoryview(data)
    try:
        while rest:
            written = out.write(rest)
            if not written:
                raise CLIError("cannot write to standard output")
            rest = rest[written:]
        out.flush()
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):  # so that the interpreter's own flush at exit stays silent
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        raise CLIError(f"cannot write to standard output: {exc.strerror or exc}") from None


def _as_stdout(output: str) -> str:
    """'-' for an output that is this process's standard output however named (/dev/stdout, /dev/fd/1, the file
    that stdout is redirected to) where stdout is a pipe or a file, so that the data is written there alone and
    the status lines go to stderr; else ``output`` (a terminal or /dev/null as stdout: as before)."""
    try:
        out = os.fstat(sys.stdout.fileno())
        if not (stat.S_ISFIFO(out.st_mode) or stat.S_ISREG(out.st_mode) or stat.S_ISSOCK(out.st_mode)):
            return output
        return "-" if os.path.samestat(os.stat(output), out) else output
    except (OSError, ValueError, AttributeError):  # no such file; stdout closed or not a real file
        return output


def _read_input(path: str, max_pixels: int | None = None) -> bytes:
    """The bytes of ``path`` ('-': standard input): an image (``max_pixels`` given) as far as `image.read_stream`
    reads one, a .hit file as far as its header says (`bitstream.read`). Either way a stream that never ends
    (/dev/zero, a pipe) is not read until memory runs out, nor a huge file in full."""
    from hitcodec import bitstream
    from hitcodec.image import read_stream

    with contextlib.nullcontext(sys.stdin.buffer) if path == "-" else open(path, "rb") as stream:
        return bitstream.read(stream) if max_pixels is None else read_stream(stream, max_pixels)


def _expand_inputs(inputs: tuple[str, ...], suffixes: set[str], what: str) -> tuple[tuple[str, ...], list[str]]:
    """Folders become their files with one of ``suffixes`` (not recursive); unexpanded globs are expanded.

    Returns the files and the problems ("emptyd: no images in this folder"); a lone problem is raised."""
    if inputs.count("-") > 1:
        raise click.UsageError("'-' (standard input) can be read once only")
    out: list[str] = []
    problems: list[str] = []
    for item in inputs:
        path = Path(item)
        if item != "-" and path.is_dir():
            found = sorted(str(f) for f in path.iterdir() if f.is_file() and f.suffix.lower() in suffixes)
            out += found
            if not found:
                problems.append(f"{item}: no {what} in this folder")
        elif item != "-" and not path.exists() and any(c in item for c in "*?["):
            found = sorted(f for f in glob.glob(item) if Path(f).is_file())
            out += found
            if not found:
                problems.append(f"{item}: no file matches")
        else:
            out.append(item)
    if problems and not out and len(problems) == 1:
        raise CLIError(problems[0])
    return tuple(out), problems


def _outputs(inputs: tuple[str, ...], output: str | None, suffix: str) -> list[str]:
    """Each input's output: ``output`` for one input; in the folder ``output`` names; else next to the input."""
    if output is not None and output.endswith(("/", os.sep)) and not Path(output).is_dir():
        stem = output.rstrip("/" + os.sep)
        raise CLIError(f"{stem} is not a folder" if os.path.lexists(stem) else f"no folder {output}")
    if output is not None and output != "-" and Path(output).is_dir():
        if "-" in inputs:
            raise click.UsageError("-o/--output is a folder; standard input needs a file name")
        return [str(Path(output) / Path(i).with_suffix(suffix).name) for i in inputs]
    if output is not None:
        if len(inputs) != 1:
            raise click.UsageError("-o/--output takes one input only unless it is a folder; without it outputs go "
                                   "next to the inputs")
        return [_as_stdout(output)]
    return ["-" if i == "-" else str(Path(i).with_suffix(suffix)) for i in inputs]


def _unless_stopped(job, src: str, dst: str):
    """``job(src, dst)`` in a worker process, unless Ctrl-C came first."""
    _check_not_stopped()
    return job(src, dst)


@contextlib.contextmanager
def _ctrl_c_held():
    """Block SIGINT in this thread for the block, so that the processes it starts inherit it blocked (their
    `_worker_init` then ignores it: the main process handles Ctrl-C); a Ctrl-C meanwhile is raised in the main
    process when the block ends (the thread's mask is then as before), or at once where another of its threads
    (OpenBLAS's) takes the signal. Where signals cannot be blocked (Windows) a no-op."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _worker_init(threads: int, stop) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process handles Ctrl-C and sets ``stop``
    signal.signal(signal.SIGTERM, _terminated)  # a second Ctrl-C
    _quiet_pillow()
    global _STOP
    _STOP = stop
    import torch

    torch.set_num_threads(threads)


def _run_many(inputs: tuple[str, ...], outputs: list[str], force: bool, job, hit_is_output: bool,
              jobs: int = 1, problems: list[str] = (), quiet: bool = False) -> None:
    """Run job(input, output) -> (summary line, warnings, bytes in, bytes out, pixels) for each input; a failure
    is reported and the rest continue. Several inputs end with a summary line. With ``jobs`` > 1 the files are
    spread over that many processes (``job`` must be picklable), each with its share of the CPU threads; after
    Ctrl-C they write nothing more. ``problems`` (e.g. an empty folder) are reported as failed inputs. ``quiet``
    leaves out the status and summary lines (warnings and errors remain)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    for problem in problems:
        click.echo(f"hitcodec: error: {_printable(problem)}", err=True)
    failed = len(problems)
    many = len(inputs) + len(problems) > 1
    to_stderr = "-" in outputs  # stdout carries data: every status line goes to stderr
    start = time.perf_counter()
    totals = [0, 0, 0, 0]  # files, bytes in, bytes out, pixels
    todo = []
    first_with = {}  # real path of an output -> the input that writes it
    sources = {os.path.realpath(src): src for src in inputs if src != "-"}
    given = {}  # real paths of an input and its output -> the name the input was first given as
    for src, dst in zip(inputs, outputs):
        same = (os.path.realpath(src), os.path.realpath(dst)) if src != "-" and os.path.lexists(src) else None
        if same in given:  # x.png x.png, x.png ./x.png (not a link to x.png: its output is another file)
            click.echo(f"hitcodec: warning: {_printable(src)}: the same file as {_printable(given[same])}, coded "
                       "once", err=True)
            continue
        if same is not None:
            given[same] = src
        try:
            if src != "-" and not os.path.lexists(src):  # said so, not as a clash with its output of the same name
                raise CLIError("no such file" if many else f"no such file: {src}")
            if dst != "-":
                key = os.path.realpath(dst)  # one file, however named: a/../photo.hit, a link to it
                if key in sources:  # e.g. a .hit file named photo.png, decompressed to photo.png
                    raise CLIError(f"the output {dst} would replace the input {sources[key]}: give another -o")
                if key in first_with:  # e.g. photo.png and photo.jpg, or one name from two folders
                    raise CLIError(f"{dst} is the output of {first_with[key]} already")
                _check_output(dst, force)
                first_with[key] = src  # (after the check: an input whose output cannot be written has none)
        except CLIError as exc:
            if not many:
                raise
            click.echo(f"hitcodec: error: {_printable(src)}: {_one_line(exc)}", err=True)
            failed += 1
        else:
            todo.append((src, dst))
    jobs = max(1, min(jobs, len(todo)))
    if "-" in inputs:
        jobs = 1
    pool = stop = None
    results = [None] * len(todo)
    try:
        if jobs > 1:
            import torch

            # spawn, not fork: forking a process whose OpenMP thread pool is running can deadlock the child
            context = multiprocessing.get_context("spawn")
            stop = context.Event()
            with _ctrl_c_held():  # the workers start with Ctrl-C blocked, so that one while they import is no traceback
                pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_init,
                                           initargs=(max(1, torch.get_num_threads() // jobs), stop))
                results = [pool.submit(_unless_stopped, job, src, dst) for src, dst in todo]
        for (src, dst), future in tqdm(list(zip(todo, results)), disable=quiet or not many or not sys.stderr.isatty(),
                                       unit="file", file=sys.stderr, leave=False):
            try:
                line, warnings, bytes_in, bytes_out, pixels = future.result() if future else job(src, dst)
                totals = [totals[0] + 1, totals[1] + bytes_in, totals[2] + bytes_out, totals[3] + pixels]
            except (CLIError, ValueError, OSError, RuntimeError, MemoryError) as exc:
                if not many:
                    raise
                click.echo(f"hitcodec: error: {_printable(src)}: {_one_line(exc)}", err=True)
                failed += 1
                continue
            for warning in warnings:
                click.echo(f"hitcodec: warning: {_printable(src)}: {_printable(warning)}", err=True)
            if not quiet:
                click.echo(_printable(line), err=to_stderr)
    finally:
        if pool is not None:
            stop.set()  # on Ctrl-C or an error: the running files are not written, the queued ones not started
            if isinstance(sys.exc_info()[1], _Terminated):  # SIGTERM: the workers stop now (and remove their
                for worker in multiprocessing.active_children():  # temporary files, `_terminated`)
                    worker.terminate()
            try:
                pool.shutdown(cancel_futures=True)  # waits for the running encodes
            except KeyboardInterrupt:  # a second Ctrl-C: stop them now
                for worker in multiprocessing.active_children():
                    worker.terminate()
                raise
    if many and totals[0] and not quiet:  # no summary when every file failed: the error below says so
        files, bytes_in, bytes_out, pixels = totals
        bpp = 8 * (bytes_out if hit_is_output else bytes_in) / max(pixels, 1)
        click.echo(f"{files} file{'' if files == 1 else 's'}, {bytes_in} bytes in, {bytes_out} bytes out, "
                   f"mean {bpp:.4f} bpp, {time.perf_counter() - start:.1f} s", err=True)
    if failed:
        raise CLIError(f"{failed} of {len(inputs) + len(problems)} files failed")


@click.group(cls=HitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hitcodec")
@click.option("-v", "--verbose", is_flag=True, help="Log details of train and fetch-data (data found, resumed state).")
def main(verbose: bool) -> None:
    """hitcodec: learned lossy image compression with per-layer control of the bitrate split."""
    handler = logging.StreamHandler()
    handler.setFormatter(_LogFormat("%(message)s"))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])


class _LogFormat(logging.Formatter):
    """Log lines of train and fetch-data: warnings and errors as hitcodec's own ("hitcodec: warning: ..."), the
    details of -v as they are."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return f"hitcodec: {record.levelname.lower()}: {text}" if record.levelno >= logging.WARNING else text


def _verbose(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:  # after main's basicConfig: the subcommand's options are parsed once the group's callback has run
        logging.getLogger().setLevel(logging.INFO)


verbose_option = click.option("-v", "--verbose", is_flag=True, expose_value=False, callback=_verbose,
                              help="Log details (data found, resumed state), as hitcodec -v does.")

# what compress and compare say of an input that is a .hit file (read by the Pillow plugin with the shipped model)
_HIT_INPUT = "a hitcodec file already: its decoded pixels are coded again, with a second loss"


def _model_path(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value == "":  # a usage error, not a file to read (it had been taken as the shipped model)
        raise click.BadParameter("the model path is empty (leave the option out for the shipped model)")
    return value


model_option = click.option("--model", "model_path", type=click.Path(dir_okay=False, readable=False),
                            callback=_model_path,
                            help="Model file (shipped-model file or training checkpoint); default: the shipped model.")


def _device(ctx: click.Context, param: click.Parameter, value: str, resolved: bool = False) -> str:
    """``value`` if torch can use that device (``resolved``: the device itself, e.g. auto -> cpu); else a usage
    error."""
    from hitcodec.weights import resolve_device

    try:
        device = resolve_device(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return str(device) if resolved else value


device_option = click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="cpu",
                             show_default=True, callback=_device,
                             help="Where the image-side networks run (auto: CUDA when available). Files decode "
                                  "to the same latents on every device (pixels may differ by 1 in a few places).")
quiet_option = click.option("-q", "--quiet", is_flag=True,
                            help="Print only warnings and errors: no line per file, no summary.")
jobs_option = click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
                           help="Process this many files at once, in separate processes sharing the CPU threads.")


def compress_one(src: str, dst: str, *, beta2: float, beta1: float, target_bpp: float | None,
                 target_size: int | None, layer_targets: tuple[float, float] | None, verify: bool, force: bool,
                 max_pixels: int, model_path: str | None, device: str,
                 refine_steps: int = 0) -> tuple[str, list[str], int, int, int]:
    """One file of `compress` (module level, so that worker processes can run it)."""
    from hitcodec import bitstream, codec, targets
    from hitcodec.api import compress_image, resolve_model, verify_coded
    from hitcodec.image import read_image, written_rgb

    loaded = resolve_model(model_path)
    raw = _read_input(src, max_pixels)
    image = read_image(raw, max_pixels=max_pixels)
    pixels = image.rgb.shape[0] * image.rgb.shape[1]
    start = time.perf_counter()
    note, warnings = "", [image.frames_warning()] if image.frames_warning() else []
    if raw[:4] == bitstream.MAGIC:
        warnings.append(f"{_HIT_INPUT} (decompress it to get the image)")
    if target_bpp is not None or target_size is not None:
        size = target_size if target_size is not None else targets.bytes_for_bpp(target_bpp, pixels)
        result = targets.compress_to_size(loaded, image, size, ratio=beta2 / beta1, device=device)
    elif layer_targets is not None:
        result = targets.compress_to_layer_rates(loaded, image, *layer_targets, device=device)
    else:
        result = None
    if result is not None:
        coded = result.coded
        note = f", beta2 {coded.header.beta2:.4g}, beta1 {coded.header.beta1:.4g}, {result.encodes} encodes"
        if not result.reached:
            warnings.append(result.message)
    else:
        coded = compress_image(image, beta2, beta1, model=loaded, device=device, refine_steps=refine_steps)
    seconds = time.perf_counter() - start
    split = ", ".join(f"{s.name} {8 * s.payload_bytes / pixels:.4f}" for s in coded.layers)
    line = f"{src} -> {dst}: {len(coded.data)} bytes, {coded.bpp:.4f} bpp ({split}){note}, {seconds:.2f} s"
    if verify:
        decoded = verify_coded(loaded, coded, device=device)
        line += f", verified, PSNR {codec.psnr(written_rgb(decoded.image), image.rgb):.2f} dB"
    write_atomic(dst, coded.data, force)
    if Path(dst).suffix.lower() in _readable_suffixes():  # only an -o NAME gives one
        warnings.append(f"{dst} holds a hitcodec stream, not an image in the format its name says (name it .hit)")
    return line, warnings, len(raw), len(coded.data), pixels


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", callback=_not_empty,
              help="Output file ('-' for stdout), or an existing folder for the outputs of any number of inputs; "
                   "default: each input with suffix .hit.")
@click.option("--beta2", type=POSITIVE, default=1.0, show_default=True,
              help="Rate multiplier of the coarse layer z2, in the model's range ([0.1, 10] for the shipped "
                   "model); larger means fewer bits in z2.")
@click.option("--beta1", type=POSITIVE, default=1.0, show_default=True,
              help="Rate multiplier of the refinement layer z1 given z2, in the model's range.")
@click.option("--target-bpp", type=POSITIVE,
              help="Search the rate (keeping beta2/beta1) until the file is within 2 % of this many bits per pixel.")
@click.option("--target-size", type=click.IntRange(min=1),
              help="Like --target-bpp, for a file size in bytes.")
@click.option("--target-rates", metavar="R2,R1",
              help="Search (beta2, beta1) until z2 and z1 each take this many bits per pixel (within 5 %).")
@click.option("--refine", "refine_steps", type=click.IntRange(min=0), default=0, show_default=True, metavar="N",
              help="Refine z1 for each image by N gradient steps on the objective (e.g. 100): a better "
                   "rate/distortion trade-off at the same betas, for a much slower encode (in tiles of 1024x1024 "
                   "pixels on larger images).")
@click.option("--verify", is_flag=True, help="Decode the result, check its latents and report PSNR before writing.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=89_478_485, show_default=True,
              help="Refuse larger input images (decompression-bomb guard).")
@device_option
@jobs_option
@quiet_option
@model_option
def compress(inputs, output, beta2, beta1, target_bpp, target_size, target_rates, refine_steps, verify, force,
             max_pixels, device, jobs, quiet, model_path):
    """Compress images (anything Pillow reads; a folder for its images; '-' for stdin) to .hit files."""
    from hitcodec import codec
    from hitcodec.api import resolve_model

    if sum(v is not None for v in (target_bpp, target_size, target_rates)) > 1:
        raise click.UsageError("give at most one of --target-bpp, --target-size and --target-rates")
    if refine_steps and any(t is not None for t in (target_bpp, target_size, target_rates)):
        raise click.UsageError("--refine works with --beta2 and --beta1, not with a target (each of its encodes "
                               "would be refined)")
    source = click.get_current_context().get_parameter_source
    if target_rates is not None and any(source(b) != click.core.ParameterSource.DEFAULT for b in ("beta2", "beta1")):
        raise click.UsageError("--target-rates chooses beta2 and beta1 itself; leave out --beta2 and --beta1")
    layer_targets = _parse_rates(target_rates) if target_rates is not None else None
    loaded = resolve_model(model_path)  # a bad model file fails once, before any input
    try:
        codec.check_betas(beta2, beta1, loaded.model.config)
    except ValueError as exc:
        raise click.UsageError(f"{exc} (the range of model {loaded.model_id_hex})") from None
    inputs, problems = _expand_inputs(inputs, _readable_suffixes(), "images")
    job = functools.partial(compress_one, beta2=beta2, beta1=beta1, target_bpp=target_bpp, target_size=target_size,
                            layer_targets=layer_targets, verify=verify, force=force, max_pixels=max_pixels,
                            model_path=model_path, device=device, refine_steps=refine_steps)
    _run_many(inputs, _outputs(inputs, output, ".hit"), force, job, hit_is_output=True, jobs=jobs, problems=problems,
              quiet=quiet)


def decompress_one(src: str, dst: str, *, force: bool, max_pixels: int, model_path: str | None,
                   device: str, fmt: str | None = None) -> tuple[str, list[str], int, int, int]:
    """One file of `decompress` (module level, so that worker processes can run it); ``fmt`` (a Pillow format
    name, --format) for stdout and names without a known suffix, else PNG there."""
    import io

    from hitcodec import bitstream, codec
    from hitcodec.api import resolve_model
    from hitcodec.image import to_pil

    loaded = resolve_model(model_path)
    data = _read_input(src)
    fmt = _output_format(dst, fmt)
    header, _ = bitstream.unpack(data, max_pixels=max_pixels)  # (decode checks it again: it is cheap)
    limit = _MAX_SIDE.get(fmt if fmt != "PDF" or header.mode in ("L", "RGB") else "", 0)
    if limit and max(header.width, header.height) > limit:  # before decoding, not in Pillow's writer
        raise CLIError(f"cannot write {dst}: {fmt} holds at most {limit}x{limit} pixels, not "
                       f"{header.width}x{header.height} (use .png)")
    start = time.perf_counter()
    decoded = codec.decode(loaded, data, max_pixels=max_pixels, device=device)
    seconds = time.perf_counter() - start
    im = to_pil(decoded.image.rgb, decoded.image.alpha, decoded.image.mode)
    options = {"WEBP": {"lossless": True, "exact": True}, "JPEG": {"quality": 95}, "MPO": {"quality": 95},
               "PDF": {"quality": 95}, "ICO": {"sizes": [im.size]}}  # (PDF holds RGB and gray as JPEG)
    # where a format cannot hold the mode: without alpha (JPEG; LA in BMP or PPM), gray as RGB(A) (QOI)
    errors = []
    for mode in [im.mode] + {"L": ["RGB"], "LA": ["L", "RGBA", "RGB"], "RGBA": ["RGB"]}.get(im.mode, []):
        buf = io.BytesIO()
        try:
            (im if mode == im.mode else im.convert(mode)).save(buf, format=fmt, **options.get(fmt, {}))
            break
        except (KeyError, ValueError, OSError, ArithmeticError, struct.error) as exc:  # (a size no field holds)
            errors.append(exc)
    else:  # the image's own mode's error
        raise CLIError(f"cannot write {dst}: {_one_line(errors[0])}")
    out = buf.getvalue()  # (not buf.tell(): the ICO writer leaves the position after its header)
    changes = [] if fmt == "PNG" else _what_the_format_changes(im, out, fmt)  # PNG holds every image
    if "A" in im.mode and "A" not in mode and not any("alpha" in c for c in changes):  # not read back (EPS)
        changes.insert(0, f"{fmt} drops the alpha plane (use .png to keep it)")
    write_atomic(dst, out, force)
    h = decoded.header
    line = (f"{src} -> {dst}: {h.width}x{h.height} {h.mode}, {8 * len(data) / (h.width * h.height):.4f} bpp, "
            f"{seconds:.2f} s")
    return line, changes, len(data), len(out), h.width * h.height


# the largest side each format holds (ICO: Pillow says "All sizes too large for image"; GIF, TGA, PCX and SGI store
# 16-bit sizes, and Pillow's writers fail with a traceback's OverflowError; libjpeg, also in PDF without alpha,
# refuses more than 65500, libwebp more than 16383, after the whole decode)
_MAX_SIDE = {"ICO": 256, "WEBP": 16383, "JPEG": 65500, "MPO": 65500, "PDF": 65500, "GIF": 65535, "TGA": 65535,
             "PCX": 65534, "SGI": 65535}  # (PCX pads a row to an even number of bytes: 65535 wide overflows too)


def _writable_format(suffix: str) -> str | None:
    """The Pillow format that writes files with ``suffix`` (".webp" -> "WEBP"); None for an unknown suffix, for a
    format that Pillow only reads or only has a stub for (PSD, WMF, ...), for one that holds neither colour nor
    gray images (XBM, ...), and for .hit (decompress writes images)."""
    from PIL import Image, ImageFile

    fmt = Image.registered_extensions().get(suffix.lower())
    factory = Image.OPEN.get(fmt, (None, None))[0]
    stub = isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile)
    return fmt if fmt in Image.SAVE and fmt != "HIT" and not stub and _holds_colour_or_gray(fmt) else None


@functools.lru_cache(maxsize=None)
def _holds_colour_or_gray(fmt: str) -> bool:
    """Whether Pillow writes an RGB or a gray image as ``fmt``: not XBM, MSP, Palm or BLP (1-bit or palette
    images only), which would otherwise fail only after decoding."""
    import io

    from PIL import Image

    for mode in ("RGB", "L"):
        try:
            Image.new(mode, (1, 1)).save(io.BytesIO(), format=fmt)
            return True
        except (KeyError, ValueError, OSError):
            pass
    return False


def _output_format(dst: str, fmt: str | None) -> str:
    """The format to write ``dst`` in: its suffix's, else ``fmt`` (--format), else PNG. CLIError for a suffix of a
    format that cannot be written, an unknown one without ``fmt``, or one that disagrees with ``fmt``."""
    from PIL import Image

    suffix = Path(dst).suffix if dst != "-" else ""
    known = Image.registered_extensions().get(suffix.lower()) if suffix else None
    if known is None:
        if suffix and fmt is None:
            raise CLIError(f"unknown image format for output {dst} (use .png, .webp, ... or --format)")
        return fmt or "PNG"
    if fmt is not None and known != fmt:
        raise CLIError(f"--format and the output name {dst} disagree: give one of them")
    if _writable_format(suffix) is None:
        raise CLIError(f"decompress cannot write {suffix} files ({known}): use .png, .webp, .jpg, .tif, ...")
    return known


def _what_the_format_changes(im, data: bytes, fmt: str) -> list[str]:
    """What writing ``im`` as ``fmt`` (``data``) lost, read back: size, alpha or, but for JPEG, colours. For a
    format that Pillow writes but cannot read back, what is known: PDF holds colour or gray as a JPEG (with alpha
    as lossless JPEG 2000); EPS (without Ghostscript) nothing."""
    import io

    from PIL import Image

    try:
        back = Image.open(io.BytesIO(data))
        back.load()
    except (OSError, ValueError, SyntaxError):
        return ["PDF holds the image as a JPEG of quality 95: its colours are not kept exactly (use .png for that)"
                ] if fmt == "PDF" and "A" not in im.mode else []  # (with alpha: JPEG 2000, lossless)
    with back:
        if back.size != im.size:
            return [f"{fmt} holds this image as {back.width}x{back.height}, not {im.width}x{im.height}"]
        changes, colour = [], {"RGBA": "RGB", "LA": "L"}.get(im.mode, im.mode)
        if "A" in im.mode:
            alpha = np.asarray(back.convert(im.mode).getchannel("A"))
            if (alpha == 255).all():
                changes.append(f"{fmt} drops the alpha plane (use .png to keep it)")
            elif not np.array_equal(alpha, np.asarray(im.getchannel("A"))):
                changes.append(f"{fmt} does not keep the alpha plane exactly (use .png for that)")
        if fmt not in ("JPEG", "MPO") and not np.array_equal(np.asarray(back.convert(colour)),
                                                             np.asarray(im.convert(colour))):
            changes.append(f"{fmt} does not keep the decoded colours exactly (use .png for that)")
    return changes


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", callback=_not_empty,
              help="Output image ('-' for stdout), or an existing folder for the outputs of any number of inputs; "
                   "default: each input with the suffix of --format.")
@click.option("--format", "suffix", metavar="EXT",
              help="Format of the outputs whose names hitcodec makes (in a folder, next to the inputs, stdout) "
                   "and of an -o name without a known suffix: png (default), webp, jpg, tiff, bmp, ... (any that "
                   "Pillow writes).")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=1 << 28, show_default=True,
              help="Refuse files that declare a larger image.")
@device_option
@jobs_option
@quiet_option
@model_option
def decompress(inputs, output, suffix, force, max_pixels, device, jobs, quiet, model_path):
    """Decompress .hit files (a folder for its .hit files) to PNG, or any format Pillow writes, by the output's
    suffix or --format (WebP lossless, JPEG at quality 95; a warning says what else a format loses: alpha, colours
    beyond GIF's 256, ...)."""
    from hitcodec.api import resolve_model

    fmt = None
    if suffix is not None:
        suffix = "." + suffix.lower().lstrip(".")
        fmt = _writable_format(suffix)
        if fmt is None:
            raise click.BadParameter(f"{suffix[1:]!r} is not an image format that decompress writes (png, webp, jpg, "
                                     "tif, ...)", param_hint="--format")
    if output is not None and output != "-" and not output.endswith(("/", os.sep)) and not Path(output).is_dir():
        try:
            _output_format(output, fmt)  # before any decoding
        except CLIError as exc:
            raise click.UsageError(str(exc)) from None
    suffix = suffix or ".png"
    resolve_model(model_path)
    inputs, problems = _expand_inputs(inputs, {".hit"}, ".hit files")
    job = functools.partial(decompress_one, force=force, max_pixels=max_pixels, model_path=model_path, device=device,
                            fmt=fmt)
    _run_many(inputs, _outputs(inputs, output, suffix), force, job, hit_is_output=False, jobs=jobs,
              problems=problems, quiet=quiet)


def json_safe(value):
    """``value`` with nan and inf as null (json.dumps would write NaN, which is not JSON): a crafted header's
    betas, a benchmark's undefined means."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


@functools.lru_cache(maxsize=1)
def _readable_suffixes() -> frozenset[str]:
    """The suffixes of the formats whose pixels Pillow reads (a folder's images); not .hit, already coded."""
    from PIL import Image, ImageFile

    Image.init()
    readable = {fmt for fmt, (factory, _) in Image.OPEN.items() if fmt not in ("HIT", "MPEG")  # MPEG: identified only
                and not (isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile))}
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in readable)


@main.command()
@click.argument("image_path", metavar="IMG", type=click.Path(dir_okay=False, readable=False))
@click.option("--bpp", type=POSITIVE, default=0.3, show_default=True,
              help="Bits per pixel at which all codecs are compared (matched file size).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="compare.png", show_default=True,
              callback=_not_empty,
              help="Figure to write, in the format of its suffix (.png, .pdf, .svg, ...).")
@click.option("--crop", type=click.IntRange(min=1), default=512, show_default=True,
              help="Compare a centre crop of at most this side.")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing figure.")
@model_option
def compare(image_path, bpp, output, crop, force, model_path):
    """Picture of hitcodec (best split and beta2 = beta1) next to JPEG, WebP and AVIF at the same file size."""
    import io

    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise CLIError("compare draws its figure with matplotlib, which is not installed "
                       "(pip install matplotlib, or the bench extra)") from None

    from hitcodec import bitstream, targets
    from hitcodec.api import resolve_model
    from hitcodec.compare import panels_at, render
    from hitcodec.image import DEFAULT_MAX_PIXELS, CodecImage, read_image

    output = _as_stdout(output)
    _check_output(output, force)
    _check_not_input(output, image_path)
    fmt = Path(output).suffix.lower().lstrip(".") or "png"
    drawn = set(Figure().canvas.get_supported_filetypes())
    if fmt not in drawn:
        raise click.UsageError(f"cannot draw a figure as .{fmt}; name the output .png, .pdf, .svg or one of "
                               f"{', '.join(sorted(drawn - {'png', 'pdf', 'svg'}))}")
    raw = _read_input(image_path, DEFAULT_MAX_PIXELS)
    image = read_image(raw)
    warnings = [image.frames_warning()] if image.frames_warning() else []
    if raw[:4] == bitstream.MAGIC:
        warnings.append(f"{_HIT_INPUT} by every codec (compare the original image)")
    for warning in warnings:
        click.echo(f"hitcodec: warning: {warning}", err=True)
    h, w = image.rgb.shape[:2]
    top, left = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
    rgb = np.ascontiguousarray(image.rgb[top:top + crop, left:left + crop])
    gray = image.mode in ("L", "LA")  # shown and measured as decompress writes it (alpha is not compared)
    panels = panels_at(resolve_model(model_path), CodecImage(rgb, None, "L" if gray else "RGB"), bpp)
    target = 8 * targets.bytes_for_bpp(bpp, rgb.shape[0] * rgb.shape[1]) / (rgb.shape[0] * rgb.shape[1])
    off = [f"{p.label.split(' (')[0]} {p.bpp:.3f} bpp" for p in panels[1:] if abs(p.bpp / target - 1) > 0.1]
    if off:
        click.echo(f"hitcodec: warning: not every codec reaches {bpp:g} bpp on this image: {', '.join(off)}", err=True)
    figure = io.BytesIO()
    render(panels, figure, fmt=fmt)
    write_atomic(output, figure.getvalue(), force)
    click.echo(f"wrote {output}: " + ", ".join(f"{p.label.split(' (')[0]} {p.bpp:.3f} bpp {p.psnr:.2f} dB"
                                                 for p in panels[1:]), err=output == "-")


@main.command()
@click.argument("input", type=click.Path(dir_okay=False, readable=False, allow_dash=True))  # unreadable: exit 1
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=1 << 28, show_default=True,
              help="Refuse files that declare a larger image (the estimates decode every latent).")
@model_option
def info(input, as_json, max_pixels, model_path):
    """Show the header of a .hit file and, when its model is at hand, estimated vs actual bits per layer."""
    from hitcodec import bitstream, codec
    from hitcodec.api import resolve_model

    data = _read_input(input)
    header, parts = bitstream.unpack(data, max_pixels=max_pixels)
    pixels = header.width * header.height
    report = {"file": input, "bytes": len(data), "bpp": 8 * len(data) / pixels, "format_version": header.version,
              "model_id": header.model_id_hex, "beta2": header.beta2, "beta1": header.beta1,
              "width": header.width, "height": header.height, "mode": header.mode,
              "header_bytes": len(data) - sum(len(p) for p in parts), "layers": []}
    names = list(codec.LAYERS) + (["alpha"] if len(parts) > len(codec.LAYERS) else [])
    layers = {n: {"name": n, "payload_bytes": len(p), "actual_bits": 8 * len(p), "bpp": 8 * len(p) / pixels}
              for n, p in zip(names, parts)}
    loaded = resolve_model(model_path)
    if loaded.model_id == header.model_id:
        for s in codec.decode(loaded, data, max_pixels=max_pixels, pixels=False).layers:
            layers[s.name].update(symbols=s.symbols, estimated_bits=round(s.estimated_bits, 1))
    else:
        report["note"] = f"model {header.model_id_hex} not loaded ({loaded.model_id_hex} is): no estimates"
    report["layers"] = list(layers.values())
    coded_bits = sum(8 * len(p) for p in parts[:len(codec.LAYERS)])
    for layer in report["layers"][:len(codec.LAYERS)]:
        layer["share"] = layer["actual_bits"] / coded_bits if coded_bits else 0.0
    if as_json:
        click.echo(json.dumps(json_safe(report), indent=2))
        return
    click.echo(f"{_printable(input)}: hitcodec v{header.version}, {header.width}x{header.height} {header.mode}, "
               f"{len(data)} bytes, {report['bpp']:.4f} bpp")
    click.echo(f"  model {header.model_id_hex}, beta2 {header.beta2:g}, beta1 {header.beta1:g}, "
               f"header {report['header_bytes']} bytes")
    for layer in report["layers"]:
        est = f", estimated {layer['estimated_bits']:.0f} bits" if "estimated_bits" in layer else ""
        share = f" ({100 * layer['share']:.1f} % of latent bits)" if "share" in layer else ""
        click.echo(f"  {layer['name']}: {layer['payload_bytes']} bytes = {layer['actual_bits']} bits, "
                   f"{layer['bpp']:.4f} bpp{share}{est}")
    if "note" in report:
        click.echo(f"  note: {report['note']}")


def _parse_beta_range(ctx, param, value):
    if value is None:
        return None
    from hitcodec.train import parse_beta_range

    try:
        return parse_beta_range(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _check_betas_mode(ctx, param, value):
    from hitcodec.train import BETA_MODES, parse_beta_points

    if value is None or value in BETA_MODES[:-2]:
        return value
    try:
        if parse_beta_points(value, (0.0, math.inf)) is not None:  # the model's range is checked in the command
            return value
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    raise click.BadParameter(f"must be one of {', '.join(BETA_MODES)}, not {value!r}")


@main.command()
@click.option("--data", "data_dir", type=click.Path(file_okay=False), callback=_not_empty,
              help="Folder of training images.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), callback=_not_empty,
              help="Folder for checkpoints and the log.")
@click.option("--resume", type=click.Path(dir_okay=False, readable=False), callback=_not_empty,
              help="Continue from this checkpoint (its config is used), or from an exported weights file.")
@click.option("--steps", type=click.IntRange(min=1), help="Total steps to reach (across resumes); default 1000000.")
@click.option("--minutes", type=POSITIVE, help="Wall-clock budget of this run (a resumed run has none unless given "
              "again).")
@click.option("--batch", type=click.IntRange(min=1), help="Crops per step (per process under torchrun); default 8.")
@click.option("--patch", type=click.IntRange(min=64), help="Side of the square training crops, a multiple of 64; "
                                                          "default 192.")
@click.option("--lr", type=POSITIVE, help="Adam learning rate; default 2e-4.")
@click.option("--lr-drop", type=FiniteFloat(min=0, max=1),
              help="Fraction of the run after which the lr is divided by --lr-drop-factor (1 = never; default "
                   "0.75). A run resumed with its own --steps (interrupted) keeps its schedule, unless it or the "
                   "resume has --minutes.")
@click.option("--lr-drop-factor", type=FiniteFloat(min=1),
              help="The lr after the drop is this many times smaller (default 3).")
@click.option("--z2-warmup", type=click.IntRange(min=0),
              help="Steps over which the weight of R(z2) in the loss ramps up from 0; default 1500.")
@click.option("--betas", callback=_check_betas_mode,
              help="mix (default for a new run): half square, half corner; square: GHVAE; diagonal: beta-VAE "
                   "baseline; z2-heavy: corner beta2 <= 0.5, beta1 >= 2; mix-diagonal: a third each from square, "
                   "corner and diagonal; fixed:BETA2,BETA1: one point only; points:BETA2,BETA1/BETA2,BETA1/...: "
                   "a few points, each image at one of them.")
@click.option("--eval-every", type=click.IntRange(min=1), help="Steps between dev evaluations and checkpoints; "
                                                               "default 500.")
@click.option("--device", type=str, callback=lambda ctx, param, value: None if value is None else _device(
              ctx, param, value, resolved=True),
              help="cpu (default; a resumed run keeps its checkpoint's), cuda, cuda:N or auto (under torchrun: "
                   "cuda:LOCAL_RANK per process)")
@click.option("--amp/--no-amp", default=None, help="bf16 autocast of the transforms; rates stay fp32 (off for a new "
              "run; a resumed run keeps its checkpoint's setting, as for the two below).")
@click.option("--channels-last/--no-channels-last", default=None, help="NHWC memory layout for the convolutions.")
@click.option("--compile/--no-compile", "compile_", default=None, help="torch.compile the training pass.")
@click.option("--compile-mode", type=click.Choice(["default", "reduce-overhead"]),
              help="torch.compile mode; reduce-overhead replays the step as CUDA graphs (GPU only).")
@click.option("--beta-range", metavar="MIN,MAX", callback=_parse_beta_range,
              help="The square [MIN, MAX]^2 of (beta2, beta1) to train on, stored in the model, which then accepts "
                   "it (default: the model's own, [0.1, 10] for a new one).")
@click.option("--loss-norm", type=click.Choice(list(LOSS_NORMS)),
              help="none (default for a new run): train on each image's D + beta2 R2 + beta1 R1 as it is; "
                   "sqrt-beta: divide it by sqrt(beta2 beta1), as models before 2026-11-26 were trained; "
                   "root8-beta: by (beta2 beta1)^(1/8), about the objective's own growth with beta; "
                   "times-root8-beta: multiply it by that, weighting high betas more; all three did worse "
                   "than none at small scale "
                   "(how the network's capacity is shared between betas; docs/training.md).")
@click.option("--latent-bins", is_flag=True, default=None,
              help="Give the model a learned bin width per latent channel and beta (GHVAEConfig.latent_bins); "
                   "added to trained weights, they start as the identity.")
@click.option("--bins-lr", type=FiniteFloat(min=0),
              help="Learning rate of the bin widths (default or 0: --lr); e.g. --lr 2e-5 --bins-lr 5e-4 when adding "
                   "them to a trained model.")
@click.option("--bins-init", type=click.Choice(["zero", "sqrt-beta"]),
              help="How a new model's learned bin widths start: zero (width 1, the default) or sqrt-beta (the "
                   "square root of their layer's beta; worse at small scale, docs/equal-steps.md).")
@click.option("--lr-warmup", type=click.IntRange(min=0),
              help="Steps over which a fresh Adam's learning rates ramp up from 0, e.g. when continuing exported "
                   "weights (a run that loads Adam's state has none); 0 = none.")
@click.option("--ema", type=FiniteFloat(min=0, max=1, max_open=True), metavar="DECAY",
              help="Also keep an exponential moving average of the weights with this decay per step, e.g. 0.99; "
                   "dev-eval, best.pt and export use it (0 = none, the default; a resumed run keeps its "
                   "checkpoint's).")
@verbose_option
def train(data_dir, out_dir, resume, steps, minutes, batch, patch, lr, lr_drop, lr_drop_factor, z2_warmup, betas,
          eval_every, device, amp, channels_last, compile_, compile_mode, beta_range, loss_norm, latent_bins, bins_lr,
          bins_init, lr_warmup, ema):
    """Train the beta-conditioned GHVAE (resumable; keeps last.pt and best.pt by dev-eval)."""
    from hitcodec.models.ghvae import GHVAEConfig
    from hitcodec.train import TrainConfig, load_checkpoint, parse_beta_points, train as run_training, with_overrides

    state = load_checkpoint(resume) if resume else {}
    try:  # a checkpoint of another (newer) version, or not one of ours
        model_cfg = GHVAEConfig(**state["model_config"]) if "model_config" in state else GHVAEConfig()
        cfg = TrainConfig.from_checkpoint(state["train_config"]) if "train_config" in state else None
        int(state.get("step", 0)), float(state.get("best_score", 0)), list(state.get("history", []))
    except (TypeError, ValueError, KeyError) as exc:
        raise CLIError(f"{resume} is not a checkpoint this version of hitcodec can resume ({_one_line(exc)})") from None
    if cfg is None and (data_dir is None or out_dir is None):
        raise click.UsageError("--data and --out are required unless --resume gives a training checkpoint")
    if data_dir is not None:  # stored as an absolute path: a resume from another folder trains on the same photos
        data_dir = os.path.abspath(data_dir)
    if cfg is None:
        cfg = TrainConfig(data=data_dir, out=out_dir)
    elif out_dir is None:  # a run continues in its own folder, wherever it was moved or copied to
        out_dir = str(Path(resume).parent)
    del state
    cfg = with_overrides(cfg, data=data_dir, out=out_dir, steps=steps, minutes=minutes or 0.0,  # (this run's only)
                         batch=batch, patch=patch,
                         lr=lr, lr_drop=lr_drop, lr_drop_factor=lr_drop_factor, z2_warmup=z2_warmup, betas=betas,
                         eval_every=eval_every, device=device, amp=amp, channels_last=channels_last,
                         compile=compile_, compile_mode=compile_mode, beta_range=beta_range, loss_norm=loss_norm,
                         latent_bins=latent_bins, bins_lr=bins_lr, bins_init=bins_init, lr_warmup=lr_warmup,
                         ema=ema)
    if cfg.patch % 64:
        raise click.UsageError("--patch must be a multiple of 64")
    if resume and bins_init is not None:  # (bin widths added to resumed weights start as the identity)
        raise click.UsageError("--bins-init is for a new model's bin widths, not with --resume")
    if not resume and cfg.bins_init == "sqrt-beta" and not cfg.latent_bins:
        raise click.UsageError("--bins-init sqrt-beta needs --latent-bins (a new model's learned bin widths)")
    try:
        parse_beta_points(cfg.betas, cfg.beta_range or (model_cfg.beta_min, model_cfg.beta_max))
    except ValueError as exc:
        raise click.UsageError(f"--betas: {exc}") from None
    if not Path(cfg.data).is_dir():
        raise CLIError(f"no folder of training photos at {cfg.data} (give --data)")
    out = Path(cfg.out)
    own_folder = resume is not None and out.resolve() == Path(resume).resolve().parent
    taken = [name for name in ("last.pt", "best.pt") if (out / name).exists()]
    if taken and not own_folder:
        raise CLIError(f"{out} holds another run ({', '.join(taken)}): continue it with --resume {out / taken[0]}, "
                       "or give another --out")
    _check_writable_folder(out)  # now, not at the first checkpoint, after minutes of training
    result = run_training(cfg, resume=resume)
    click.echo(f"done: dev score {result.get('score', float('nan')):.4f}, checkpoints in {cfg.out}")


@main.command("fetch-data")
@click.argument("out_dir", type=click.Path(file_okay=False), callback=_not_empty)
@verbose_option
def fetch_data(out_dir):
    """Fetch and prepare the offline training photos (Debian packages, no root install needed)."""
    from hitcodec.data import fetch_training_photos

    _check_writable_folder(Path(out_dir))  # before apt-get's update and a 44 MB download
    count = fetch_training_photos(Path(out_dir))
    click.echo(f"wrote {count} training photos to {out_dir}")


@main.command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False, readable=False))
@click.argument("output", type=click.Path(dir_okay=False), callback=_not_empty)
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output.")
def export(checkpoint, output, force):
    """Export a training checkpoint as a small fp16 model file (what ships in the package); OUTPUT '-' writes it
    to standard output."""
    import io

    import torch

    from hitcodec.train import exported_weights
    from hitcodec.weights import model_from_state, model_id

    output = _as_stdout(output)
    _check_output(output, force)
    _check_not_input(output, checkpoint)
    state = exported_weights(checkpoint)
    data = io.BytesIO()
    torch.save(state, data)
    write_atomic(output, data.getvalue(), force)  # as every output: a device, FIFO or link is written, not replaced
    click.echo(f"wrote {output}: model id {model_id(model_from_state(state)).hex()}, "
               f"{len(data.getvalue()) / 1e6:.1f} MB", err=output == "-")


if _OWN_SIGINT:  # (None: a handler not set from Python, taken as the default)
    signal.signal(signal.SIGINT, signal.SIG_DFL if _sigint_before is None else _sigint_before)
