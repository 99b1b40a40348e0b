"""How resident memory moves with the training steps (diagnostic; prints only).

    python benchmarks/out_of_core_steps.py /tmp/samsvae-ooc/synthetic_250000.h5ad --epochs 12
    python benchmarks/out_of_core_steps.py FILE --epochs 4 --in-memory
    python benchmarks/out_of_core_steps.py FILE --epochs 4 --trim-every 50
    python benchmarks/out_of_core_steps.py FILE --tracemalloc
    python benchmarks/out_of_core_steps.py FILE --epochs 4 --low-memory
    python benchmarks/out_of_core_steps.py FILE --epochs 4 --malloc-threshold 16777216

Trains the model of ``benchmarks/out_of_core.py`` (the file opened backed, or read whole with
``--in-memory``) and every ``--every`` steps prints the resident size, its peak so far and, on
glibc, what ``mallinfo2`` says of the main heap: bytes in use and bytes free. ``--trim-every N``
calls ``malloc_trim(0)`` every N steps; ``--tracemalloc`` prints how much Python's own live
allocations grew between the second sample and the last; ``--low-memory`` trains with
``low_memory=True``; ``--malloc-threshold BYTES`` trains with glibc's mmap and trim thresholds
at BYTES instead of the default 1 GiB. Reaches into ``samsvae.inference.training`` (``_trainer``
to add its callback, ``_TRAINING_THRESHOLD``), so it may need updating with it.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import time
import tracemalloc
from typing import Any

from lightning.pytorch.callbacks import Callback
from out_of_core import small_model, status_mb, train

_MALLINFO2 = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO2.split()]


def _libc() -> Any:
    """glibc, or None elsewhere (no ``mallinfo2``)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not hasattr(libc, "mallinfo2"):
        return None
    libc.mallinfo2.restype = _MallInfo2
    return libc


class MemorySamples(Callback):
    """Prints resident memory (and glibc's heap) every ``every`` training steps."""

    def __init__(self, every: int, trim_every: int | None) -> None:
        self.every, self.trim_every, self.libc = every, trim_every, _libc()
        self.traced: list[int] = []

    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        step = trainer.global_step
        if self.trim_every and step % self.trim_every == 0 and self.libc is not None:
            self.libc.malloc_trim(0)
        if step % self.every != 1:
            return
        line = f"step {step:6d}  rss {status_mb('VmRSS'):7.1f}  peak {status_mb('VmHWM'):7.1f} MB"
        if self.libc is not None:
            heap = self.libc.mallinfo2()  # the main heap: bytes handed out, bytes kept free
            line += f"  heap in use {heap.uordblks / 2**20:6.1f}"
            line += f"  free {heap.fordblks / 2**20:6.1f}"
        if tracemalloc.is_tracing():
            self.traced.append(tracemalloc.get_traced_memory()[0])
        print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--every", type=int, default=150)
    parser.add_argument("--in-memory", action="store_true")
    parser.add_argument("--trim-every", type=int)
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--low-memory", action="store_true")
    parser.add_argument("--malloc-threshold", type=int)
    args = parser.parse_args()

    import anndata as ad

    import samsvae
    import samsvae.inference.training as training
    from samsvae.data.streaming import read_backed

    samples = MemorySamples(args.every, args.trim_every)
    make_trainer = training._trainer

    def with_samples(*options: Any, **named: Any) -> Any:
        trainer, *rest = make_trainer(*options, **named)
        trainer.callbacks.append(samples)
        return trainer, *rest

    training._trainer = with_samples
    if args.malloc_threshold:
        training._TRAINING_THRESHOLD = args.malloc_threshold
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


if __name__ == "__main__":
    main()
