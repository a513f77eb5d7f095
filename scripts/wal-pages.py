#!/usr/bin/env python3
"""Which B-trees a durable command writes: WAL frames per command, by table/index.

Runs each step of a scenario script as its own `provledger run --file`
process against a SQLite ledger, while this script holds a connection open
so the WAL survives the process. After each step it reads the WAL's frame
headers (one frame = one page written by the commit) and maps every page to
the B-tree that owns it (SQLite's `dbstat`). Prints the average frames per
step for each B-tree, largest first, as a Markdown table.

    scripts/wal-pages.py LEDGER.db STEPS.jsonl path/to/provledger

The ledger is changed (the steps are applied). Used for the page profile in
docs/performance.md.
"""
import collections
import sqlite3
import struct
import subprocess
import sys
import tempfile


def frames(wal_path):
    data = open(wal_path, "rb").read()
    if len(data) < 32:
        return []
    page_size = struct.unpack(">I", data[8:12])[0]
    out, off = [], 32
    while off + 24 + page_size <= len(data):
        out.append(struct.unpack(">I", data[off : off + 4])[0])
        off += 24 + page_size
    return out


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    db, steps_path, exe = sys.argv[1:]
    steps = [l for l in open(steps_path) if l.strip() and not l.startswith("#")]
    total, counted, failed = collections.Counter(), 0, 0
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl") as one:
        for line in steps:
            hold = sqlite3.connect(db)
            hold.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            one.seek(0)
            one.truncate()
            one.write(line)
            one.flush()
            run = subprocess.run([exe, "--db", db, "run", "--file", one.name], capture_output=True)
            if run.returncode != 0:
                failed += 1
            owner = dict(hold.execute("SELECT pageno, name FROM dbstat"))
            pages = frames(db + "-wal")
            hold.close()
            if not pages:
                continue
            counted += 1
            total.update(owner.get(p, "(free or new page)") for p in pages)
    n = max(counted, 1)
    print(f"steps that wrote: {counted} (refused or rejected, non-zero exit: {failed}); frames per step: {sum(total.values()) / n:.1f}\n")
    print("| B-tree | frames per step |\n|---|---:|")
    for name, count in total.most_common():
        label = "sqlite_schema (page 1: file header)" if name == "sqlite_schema" else name
        print(f"| `{label}` | {count / n:.2f} |")


if __name__ == "__main__":
    main()
