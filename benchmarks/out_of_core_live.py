"""Which live Python allocations grow with the number of cells after an out-of-core epoch
(diagnostic; prints only):

    python benchmarks/out_of_core_live.py /tmp/samsvae-ooc/synthetic_250000.h5ad \
        /tmp/samsvae-ooc/synthetic_1000000.h5ad

Trains the model of ``benchmarks/out_of_core.py`` for one epoch on each file, in a fresh process
each, under ``tracemalloc``; then prints the source lines whose live memory at the end differs
most between the two files. tracemalloc counts the bytes asked for, not the allocator's blocks
(a six-character str asks for 55 bytes and takes 64), and it slows training about twofold.
"""

from __future__ import annotations

import json
import sys
import tracemalloc

from out_of_core import open_and_train, run_child


def live_by_line(path: str) -> dict[str, int]:
    """Run in the child: live bytes per allocating source line after one epoch on ``path``."""
    tracemalloc.start()
    held = open_and_train(path)  # the AnnData and the model: their memory is the question
    snapshot = tracemalloc.take_snapshot()
    del held
    return {str(s.traceback[0]): s.size for s in snapshot.statistics("lineno")}


def main() -> None:
    if sys.argv[1] == "--child":
        print(json.dumps(live_by_line(sys.argv[2])))
        return
    small, large = (run_child(__file__, path) for path in sys.argv[1:3])
    growth = {line: large.get(line, 0) - small.get(line, 0) for line in {*small, *large}}
    print(f"live growth, all lines: {sum(growth.values()) / 1e6:.1f} MB")
    for line, size in sorted(growth.items(), key=lambda item: -item[1])[:10]:
        print(f"{size / 1e6:8.2f} MB  {line}")


if __name__ == "__main__":
    main()
