"""Writes the wide table of docs/benchmarks-notes.md ("Wide tables"): one partition of Parquet
files of 800 columns (64-bit ints, floats rounded to 2 places, strings of five values and
booleans, in turn), 2,000 rows each, zstd.

Usage: gen_wide_table.py OUT_DIR [FILES]   (default 50 files, about 200 MiB, one merged file)
Run it with the benchmark venv's Python (target/benchenv, made by scripts/bench), then e.g.
`target/dist/compactor merge OUT_DIR MERGED_DIR`.
"""
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

out = os.path.join(sys.argv[1], "p")
files = int(sys.argv[2]) if len(sys.argv) > 2 else 50
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(1)
words = np.array(["alpha", "beta", "gamma", "delta", "epsilon"])
rows = 2000
for f in range(files):
    columns = {}
    for c in range(800):
        kind = c % 4
        if kind == 0:
            columns[f"i{c}"] = pa.array(rng.integers(0, 1_000_000, rows))
        elif kind == 1:
            columns[f"f{c}"] = pa.array(np.round(rng.uniform(0, 1000, rows), 2))
        elif kind == 2:
            columns[f"s{c}"] = pa.array(words[rng.integers(0, 5, rows)])
        else:
            columns[f"b{c}"] = pa.array(rng.integers(0, 2, rows).astype(bool))
    pq.write_table(pa.table(columns), os.path.join(out, f"part-{f:05}.parquet"), compression="zstd")
