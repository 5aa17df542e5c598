"""A plain random/mutation driver for the targets of fuzz_wire.py, for machines without atheris.

    .venv/bin/python fuzz/driver.py TARGET [--seconds S] [--runs N] [--seed K] [--max-len L]
                                           [--corpus DIR ...] [--keep-going]
    .venv/bin/python fuzz/driver.py TARGET FILE ...        # replay files (e.g. a crash reproducer)

No coverage feedback: inputs are the seeds of fuzz/corpus/TARGET (and any --corpus dirs)
mutated at random (bit flips, interesting bytes, varint-ish runs, inserts, deletes, duplicated
and spliced ranges, truncation), plus purely random inputs. An input that makes the target raise
is saved as fuzz/crashes/TARGET/crash-<sha1> (or under --crash-dir) with its traceback printed;
without --keep-going the driver stops at the first one and exits 1.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
sys.modules.setdefault("atheris", None)  # type: ignore[arg-type]  # plain run: no instrumentation

from fuzz_wire import TARGETS  # noqa: E402

INTERESTING = [
    0x00, 0x01, 0x02, 0x05, 0x07, 0x08, 0x10, 0x1D, 0x1E, 0x1F, 0x20, 0x21, 0x26, 0x36, 0x3F,
    0x40, 0x41, 0x42, 0x4A, 0x5A, 0x60, 0x61, 0x62, 0x6A, 0x72, 0x78, 0x7F, 0x80, 0x9F, 0xBF,
    0xC0, 0xDF, 0xE0, 0xFF,
]  # fmt: skip


def mutate(data: bytes, rng: random.Random, pool: list[bytes], max_len: int) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 5))):
        op = rng.randrange(10)
        n = len(buf)
        if op == 0 and n:  # flip a bit
            buf[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # set an interesting byte
            buf[rng.randrange(n)] = rng.choice(INTERESTING)
        elif op == 2 and n:  # set a random byte
            buf[rng.randrange(n)] = rng.randrange(256)
        elif op == 3:  # insert random or interesting bytes
            at = rng.randrange(n + 1)
            k = rng.randrange(1, 9)
            if rng.random() < 0.5:
                ins = bytes(rng.randrange(256) for _ in range(k))
            else:
                ins = bytes(rng.choice(INTERESTING) for _ in range(k))
            buf[at:at] = ins
        elif op == 4:  # insert a varint-looking run (continuation bytes, then a terminator)
            at = rng.randrange(n + 1)
            run = bytes(0x80 | rng.randrange(128) for _ in range(rng.randrange(1, 12)))
            buf[at:at] = run + bytes([rng.randrange(128)])
        elif op == 5 and n:  # delete a range
            a = rng.randrange(n)
            del buf[a : a + rng.randrange(1, 9)]
        elif op == 6 and n:  # duplicate a range somewhere else
            a = rng.randrange(n)
            piece = buf[a : a + rng.randrange(1, 33)]
            at = rng.randrange(n + 1)
            buf[at:at] = piece
        elif op == 7 and pool:  # splice with another input
            other = rng.choice(pool)
            if other:
                a = rng.randrange(len(other))
                piece = other[a : a + rng.randrange(1, 65)]
                at = rng.randrange(n + 1)
                if rng.random() < 0.5:
                    buf[at:] = piece
                else:
                    buf[at:at] = piece
        elif op == 8 and n:  # truncate
            del buf[rng.randrange(n) :]
        elif op == 9 and n:  # add or subtract a small number to a byte (lengths, counts)
            i = rng.randrange(n)
            buf[i] = (buf[i] + rng.choice((-2, -1, 1, 2, 31, -31))) & 0xFF
    return bytes(buf[:max_len])


def load_seeds(target: str, dirs: list[Path]) -> list[bytes]:
    seeds = []
    for folder in [HERE / "corpus" / target, *dirs]:
        if folder.is_dir():
            seeds += [p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()]
    return seeds or [b""]


def save_crash(crash_dir: Path, data: bytes) -> Path:
    crash_dir.mkdir(parents=True, exist_ok=True)
    path = crash_dir / f"crash-{hashlib.sha1(data).hexdigest()}"
    path.write_bytes(data)
    return path


def replay(target_fn, files: list[str]) -> int:
    failed = 0
    for name in files:
        data = Path(name).read_bytes()
        try:
            target_fn(data)
        except Exception:
            failed += 1
            print(f"{name}: FAILS (input {data.hex()})")
            traceback.print_exc()
        else:
            print(f"{name}: ok")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description="plain mutation driver for fuzz_wire targets")
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("files", nargs="*", help="replay these inputs instead of fuzzing")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=0, help="stop after N inputs (0: no limit)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--max-len", type=int, default=4096)
    parser.add_argument("--corpus", type=Path, action="append", default=[])
    parser.add_argument("--crash-dir", type=Path, default=None)
    parser.add_argument("--keep-going", action="store_true")
    args = parser.parse_args()

    target_fn = TARGETS[args.target]
    if args.files:
        return replay(target_fn, args.files)

    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    seeds = load_seeds(args.target, args.corpus)
    crash_dir = args.crash_dir or HERE / "crashes" / args.target
    print(f"driver: target={args.target} seed={seed} seeds={len(seeds)}", flush=True)

    runs = crashes = 0
    start = time.monotonic()
    last_report = start
    while True:
        now = time.monotonic()
        if (args.runs and runs >= args.runs) or now - start >= args.seconds:
            break
        if runs < len(seeds):
            data = seeds[runs]  # every seed once, unmutated
        elif rng.random() < 0.05:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        else:
            data = mutate(rng.choice(seeds), rng, seeds, args.max_len)
        runs += 1
        try:
            target_fn(data)
        except Exception:
            crashes += 1
            path = save_crash(crash_dir, data)
            print(f"driver: CRASH on run {runs}, input {data.hex()} saved as {path}")
            traceback.print_exc()
            if not args.keep_going:
                break
        if now - last_report >= 10:
            last_report = now
            rate = runs / (now - start)
            print(f"driver: {runs} runs, {rate:.0f}/s, {crashes} crashes", flush=True)
    elapsed = time.monotonic() - start
    print(
        f"driver: done: {runs} runs in {elapsed:.1f}s ({runs / max(elapsed, 1e-9):.0f}/s), "
        f"{crashes} crashes, seed {seed}"
    )
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
