"""Diagnostics of the out-of-core path's memory (they print only, and read Linux's /proc).

    python benchmarks/memory_diagnostics.py live FILE_250k FILE_1M
    python benchmarks/memory_diagnostics.py stages FILE
    python benchmarks/memory_diagnostics.py steps FILE --epochs 12
    python benchmarks/memory_diagnostics.py obs-names FILE

- live: which live Python allocations grow with the number of cells after an epoch;
- stages: the resident size and the peak of each stage of setup and of 30 training steps;
- steps: resident memory and glibc's heap as the training steps go;
- obs-names: the resident memory that reading the obs names adds, by way of reading.

The files are the synthetic h5ad files benchmarks/out_of_core.py writes (FILE_250k:
/tmp/samsvae-ooc/synthetic_250000.h5ad, FILE_1M: /tmp/samsvae-ooc/synthetic_1000000.h5ad), and
the model is its model. SUBCOMMAND --help describes each subcommand and its options. samsvae
and Lightning are imported inside the subcommands that use them, so that they are not in the
other subcommands' readings.
"""

from __future__ import annotations

import argparse
import ctypes
import inspect
import json
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from out_of_core import open_and_train, run_child, small_model, status_mb, train

# --- shared ---


_MALLINFO2 = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO2.split()]


def glibc() -> Any:
    """glibc, or None under another C library."""
    try:
        # By soname: ctypes.util.find_library would run ldconfig inside the process measured.
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    if hasattr(libc, "mallinfo2"):  # glibc 2.33 and later
        libc.mallinfo2.restype = _MallInfo2
    return libc


# --- live ---


def run_live(args: argparse.Namespace) -> None:
    """Which live Python allocations grow with the number of cells after an out-of-core epoch.

    Trains the model of benchmarks/out_of_core.py for one epoch on each file, in a fresh
    process each, under tracemalloc; then prints the source lines whose live memory at the
    end differs most between the two files. tracemalloc counts the bytes asked for, not the
    allocator's blocks (a six-character str asks for 55 bytes and takes 64), and it slows
    training about twofold.
    """
    small, large = (run_child(__file__, path, "live") for path in (args.small, args.large))
    growth = {line: large.get(line, 0) - small.get(line, 0) for line in {*small, *large}}
    print(f"live growth, all lines: {sum(growth.values()) / 1e6:.1f} MB")
    for line, size in sorted(growth.items(), key=lambda item: -item[1])[:10]:
        print(f"{size / 1e6:8.2f} MB  {line}")


def live_by_line(path: str) -> dict[str, int]:
    """Run in the child: live bytes per allocating source line after one epoch on ``path``."""
    tracemalloc.start()
    held = open_and_train(path)  # the AnnData and the model: their memory is the question
    snapshot = tracemalloc.take_snapshot()
    del held
    return {str(s.traceback[0]): s.size for s in snapshot.statistics("lineno")}


# --- stages ---


def run_stages(args: argparse.Namespace) -> None:
    """Resident memory at each stage of out-of-core setup and a few training steps.

    Prints VmRSS after the imports, opening the file, setup_anndata, building the model (one
    checking pass over the file) and 30 training steps, with the peak within each stage (the peak
    is reset between stages through /proc/self/clear_refs), to see which stage grows with the
    number of cells.
    """
    import samsvae
    from samsvae.data.streaming import read_backed

    print_stage_memory("imports")
    adata = read_backed(args.path)
    print_stage_memory("file opened")
    samsvae.SAMSVAE.setup_anndata(adata)
    print_stage_memory("setup_anndata")
    model = small_model(adata)
    print_stage_memory("model built")
    train(model, max_steps=30)
    print_stage_memory("30 training steps")


def print_stage_memory(stage: str) -> None:
    """Print the current resident size and the peak since the last call, then reset the peak."""
    rss, peak = status_mb("VmRSS"), status_mb("VmHWM")
    print(f"{stage:<24} rss {rss:8.1f} MB   stage peak {peak:8.1f} MB")
    Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak (VmHWM) to the current RSS


# --- steps ---


def run_steps(args: argparse.Namespace) -> None:
    """How resident memory moves with the training steps.

    Trains the model of benchmarks/out_of_core.py (the file opened backed, or read whole with
    --in-memory) and every --every steps prints the resident size, its peak so far and, on glibc,
    what mallinfo2 says of the main heap: bytes in use and bytes free. --trim-every N calls
    malloc_trim(0) every N steps; --tracemalloc prints how much Python's own live allocations
    grew between the second sample and the last; --low-memory trains with low_memory=True;
    --malloc-threshold BYTES trains with glibc's mmap and trim thresholds at BYTES instead of the
    default 1 GiB. Reaches into samsvae.inference.training (_trainer to add its callback,
    _TRAINING_THRESHOLD), so it may need updating with it. For example:

        steps FILE --epochs 4 --in-memory
        steps FILE --epochs 4 --trim-every 50
        steps FILE --tracemalloc
        steps FILE --epochs 4 --low-memory
        steps FILE --epochs 4 --malloc-threshold 16777216
    """
    import anndata as ad

    import samsvae
    from samsvae.data.streaming import read_backed

    samples = memory_samples(args.every, args.trim_every)
    patch_training(samples, args.malloc_threshold)
    adata = ad.read_h5ad(args.path) if args.in_memory else read_backed(args.path)
    samsvae.SAMSVAE.setup_anndata(adata)
    model = small_model(adata)
    if args.tracemalloc:
        tracemalloc.start()
    start = time.perf_counter()
    train(model, args.low_memory, max_epochs=args.epochs)
    print(f"training took {time.perf_counter() - start:.1f} s, peak {status_mb('VmHWM'):.1f} MB")
    if len(samples.traced) > 2:
        growth = (samples.traced[-1] - samples.traced[1]) / 1e3
        print(f"Python's live allocations, second sample to last: {growth:+.1f} kB")


def add_steps_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``steps``, which ``run_steps``'s docstring describes."""
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--every", type=int, default=150)
    parser.add_argument("--in-memory", action="store_true")
    parser.add_argument("--trim-every", type=int)
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--low-memory", action="store_true")
    parser.add_argument("--malloc-threshold", type=int)


def memory_samples(every: int, trim_every: int | None) -> Any:
    """A Lightning callback that prints a memory line every ``every`` training steps and calls
    ``malloc_trim(0)`` every ``trim_every``; its ``traced`` keeps tracemalloc's live bytes at
    each line while tracing."""
    from lightning.pytorch.callbacks import Callback  # here, so only ``steps`` imports it

    libc = glibc()
    # Without mallinfo2 (glibc before 2.33) neither heap figures nor trims.
    heap = libc if hasattr(libc, "mallinfo2") else None

    class MemorySamples(Callback):
        def __init__(self) -> None:
            self.traced: list[int] = []

        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            step = trainer.global_step
            if trim_every and step % trim_every == 0 and heap is not None:
                heap.malloc_trim(0)
            if step % every != 1:
                return
            if tracemalloc.is_tracing():
                self.traced.append(tracemalloc.get_traced_memory()[0])
            print(memory_line(step, heap), flush=True)

    return MemorySamples()


def memory_line(step: int, heap: Any) -> str:
    """Resident size, its peak and, given glibc with mallinfo2, the main heap's bytes."""
    line = f"step {step:6d}  rss {status_mb('VmRSS'):7.1f}  peak {status_mb('VmHWM'):7.1f} MB"
    if heap is not None:
        info = heap.mallinfo2()  # the main heap: bytes handed out, bytes kept free
        line += f"  heap in use {info.uordblks / 2**20:6.1f}"
        line += f"  free {info.fordblks / 2**20:6.1f}"
    return line


def patch_training(samples: Any, malloc_threshold: int | None) -> None:
    """Add ``samples`` to every trainer samsvae builds; train under ``malloc_threshold``."""
    import samsvae.inference.training as training

    make_trainer = training._trainer

    def with_samples(*options: Any, **named: Any) -> Any:
        trainer, *rest = make_trainer(*options, **named)
        trainer.callbacks.append(samples)
        return trainer, *rest

    training._trainer = with_samples
    if malloc_threshold:
        training._TRAINING_THRESHOLD = malloc_threshold


# --- obs-names ---

SLICED = ("slices of 4096", "slices of 512", "slices of 65536", "StringDType slices of 65536")
WHOLE = ("whole", "StringDType whole", "fixed-width U")
WAYS = (*SLICED, *WHOLE, "python", "read and drop")


def run_obs_names(args: argparse.Namespace) -> None:
    """Resident memory that reading an h5ad file's obs names adds, by way of reading.

    Each way runs in a fresh process and prints the resident size it adds (VmRSS after minus
    before, in MB). "slices of 4096" is what samsvae.data.streaming.read_backed does. "python"
    makes the strings "0" to "n-1" (the names of benchmarks/out_of_core.py's files) in Python,
    without HDF5: the floor for an index of Python strings. "read and drop" reads the names in
    slices and drops them, then closes the file and calls glibc's malloc_trim(0): what HDF5 keeps.
    """
    for way in WAYS:
        child = [sys.executable, __file__, "--child", args.path, "obs-names", way]
        subprocess.run(child, check=True)


def print_names_read(path: str, way: str) -> None:
    """Run in the child: read the names of ``path`` one way and print the resident size added."""
    before = status_mb("VmRSS")
    with h5py.File(path, "r") as file:
        names = read_names(file["obs/_index"], way)
        line = f"{way:<28} {status_mb('VmRSS') - before:7.1f} MB"
    if way == "read and drop":
        glibc().malloc_trim(0)
        line += f"   file closed, malloc_trim(0): {status_mb('VmRSS') - before:.1f} MB"
    print(line, f"({names[-1]!r} last)" if way != "read and drop" else "", flush=True)


def read_names(dataset: h5py.Dataset, way: str) -> np.ndarray:
    """The names in ``dataset`` as an object array of str, read the given way."""
    if way == "whole":
        return dataset.asstr()[:]
    if way == "StringDType whole":
        return dataset.astype(np.dtypes.StringDType())[:].astype(object)
    if way == "fixed-width U":
        return dataset[:].astype("U").astype(object)
    size = int(way.rsplit(" ", 1)[1]) if way in SLICED else 4096
    source = dataset.astype(np.dtypes.StringDType()) if "StringDType" in way else dataset.asstr()
    dropped = way == "read and drop"  # no array to keep them in
    names = np.empty(0 if dropped else len(dataset), dtype=object)
    for start in range(0, len(dataset), size):
        stop = min(start + size, len(dataset))
        if way == "python":
            names[start:stop] = [str(i) for i in range(start, stop)]
        elif dropped:
            dataset[start:stop]
        else:
            names[start:stop] = source[start:stop]
    return names


# --- command line ---


def run_as_child(path: str, subcommand: str, *options: str) -> None:
    """One measurement in a fresh process that ``live`` or ``obs-names`` started."""
    if subcommand == "live":
        print(json.dumps(live_by_line(path)))  # run_child reads the last line
    else:
        print_names_read(path, *options)


def command_line() -> argparse.ArgumentParser:
    """The parser: one subcommand per diagnostic."""
    top = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    subcommands = top.add_subparsers(dest="subcommand", required=True)
    add_subcommand(subcommands, "live", run_live, "small", "large")
    add_subcommand(subcommands, "stages", run_stages, "path")
    add_steps_options(add_subcommand(subcommands, "steps", run_steps, "path"))
    add_subcommand(subcommands, "obs-names", run_obs_names, "path")
    return top


def add_subcommand(
    subcommands: Any, name: str, run: Callable[[argparse.Namespace], None], *paths: str
) -> argparse.ArgumentParser:
    """Subcommand ``name``: ``run(args)`` on the h5ad files ``paths``, with ``run``'s docstring
    for its help."""
    description = inspect.cleandoc(run.__doc__ or "")
    parser = subcommands.add_parser(
        name,
        help=description.splitlines()[0],
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for path in paths:
        parser.add_argument(path)
    parser.set_defaults(run=run)
    return parser


def main() -> None:
    if sys.argv[1:2] == ["--child"]:  # before argparse: the children's arguments are internal
        run_as_child(*sys.argv[2:])
        return
    args = command_line().parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
