"""The standard workload through the interpreted core, in its own process (the core build is
chosen when ``openbell`` is imported): ``python -m bench.engine_pure OPS`` prints flat JSON."""

from __future__ import annotations

import json
import os
import sys

os.environ["OPENBELL_PURE_PYTHON"] = "1"

from bench.engine_bench import bench_engine
from bench.workload_cache import load
from openbell._build import core_build


def main() -> None:
    setup, work = load(int(sys.argv[1]))
    if core_build() != "interpreted":
        sys.exit("the interpreted core did not load")
    out = bench_engine("engine.standard_pure", False, setup, work, latency=False)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
