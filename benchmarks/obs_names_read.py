"""Resident memory that reading an h5ad file's obs names adds, by way of reading (diagnostic).

    python benchmarks/obs_names_read.py /tmp/samsvae-ooc/synthetic_1000000.h5ad

Each way runs in a fresh process and prints the resident size it adds (VmRSS after minus before,
in MB). ``slices of 4096`` is what ``samsvae.data.streaming.read_backed`` does. ``python`` makes
the strings "0" to "n-1" (the names of ``benchmarks/out_of_core.py``'s files) in Python, without
HDF5: the floor for an index of Python strings. ``read and drop`` reads the names in slices and
drops them, then closes the file and calls glibc's ``malloc_trim(0)``: what HDF5 keeps.
"""

from __future__ import annotations

import ctypes
import subprocess
import sys

import h5py
import numpy as np
from out_of_core import status_mb

SLICED = ("slices of 4096", "slices of 512", "slices of 65536", "StringDType slices of 65536")
WHOLE = ("whole", "StringDType whole", "fixed-width U")
WAYS = (*SLICED, *WHOLE, "python", "read and drop")


def read(dataset: h5py.Dataset, way: str) -> np.ndarray:
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


def child(path: str, way: str) -> None:
    """Read the names of ``path`` one way and print the resident size that added."""
    before = status_mb("VmRSS")
    with h5py.File(path, "r") as file:
        names = read(file["obs/_index"], way)
        line = f"{way:<28} {status_mb('VmRSS') - before:7.1f} MB"
    if way == "read and drop":
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        line += f"   file closed, malloc_trim(0): {status_mb('VmRSS') - before:.1f} MB"
    print(line, f"({names[-1]!r} last)" if way != "read and drop" else "", flush=True)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[2] == "--child":
        child(sys.argv[1], sys.argv[3])
        return
    for way in WAYS:
        subprocess.run([sys.executable, __file__, sys.argv[1], "--child", way], check=True)


if __name__ == "__main__":
    main()
