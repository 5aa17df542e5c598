"""Write the seed corpus of the fuzz targets, fuzz/corpus/<target>/, from the captured vectors.

    .venv/bin/python fuzz/make_corpus.py [--vectors DIR]

The vectors are ``tests/data/vectors/*.json`` (or ``--vectors DIR``): sessions captured from
the official clients, one hex frame per entry. The seeds are:

* ``legacy`` / ``iotmp``: a seed byte (see fuzz_wire.py) followed by one captured frame, and each
  whole captured session fed as one stream, in one, two and three chunks.
* ``pson1`` / ``pson2``: every field value of the captured frames, in both PSON versions, plus a
  few hand-written values that reach the corners (floats of both widths, NaN, the 64-bit integer
  limits, bytes, nesting, long strings), and arrays nested 33 and 1100 levels deep (past the
  depth limit and past Python's recursion limit: the only seeds that do not decode).

Existing seed files are replaced; the output is deterministic.
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from roost.errors import DecodeError  # noqa: E402
from roost.wire import iotmp, legacy, pson, pson2  # noqa: E402

MAX = 2**64 - 1

# Hand-written values that reach corners the captures do not.
EXTRA_VALUES: list[object] = [
    None,
    True,
    False,
    0,
    1,
    30,
    31,
    300,
    -1,
    -31,
    MAX,
    -MAX,
    "",
    "x" * 31,
    "é",
    b"",
    b"\x01\x02",
    [],
    {},
    23.5,
    0.1,
    1234567.891,
    2.0000001,
    float("inf"),
    float("nan"),
    1e300,
    {"lat": 40.4168, "lon": -3.7038},
    [[[1, "a"]], {"k": [None, b"\x00"]}],
]

# Raw PSON bytes the encoders never write but the decoders accept.
EXTRA_PSON1 = ["78", "08 00", "1d ce aa 21 42", "1d 01 24 74 49", "6a 07 01 61 40 01 61 08 02"]
EXTRA_PSON2 = ["40 ce aa 21 42", "1f 05", "c2 81 61 01 81 61 02"]


def vectors_dir(arg: str | None) -> Path:
    return Path(arg) if arg else HERE.parent / "tests" / "data" / "vectors"


def load(path: Path) -> list[bytes]:
    frames = json.loads(path.read_text())["frames"]
    return [bytes.fromhex(f["hex"]) for f in frames]


def write(out: dict[str, dict[bytes, str]], target: str, data: bytes, name: str) -> None:
    out.setdefault(target, {}).setdefault(data, name)  # first name wins for duplicate bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", help="directory of the captured *.json vectors")
    args = parser.parse_args()
    vdir = vectors_dir(args.vectors)
    files = sorted(vdir.glob("*.json"))
    if not files:
        sys.exit(f"no vectors in {vdir}")

    out: dict[str, dict[bytes, str]] = {}
    values: list[object] = []
    for path in files:
        stem = path.stem
        target = "iotmp" if stem.startswith("iotmp") else "legacy"
        module = iotmp if target == "iotmp" else legacy
        frames = load(path)
        for i, frame in enumerate(frames):
            write(out, target, b"\x00" + frame, f"{stem}-frame{i:02d}")  # 1 chunk, default limits
            for decoded in module.Decoder().feed(frame):
                if target == "iotmp":
                    fields = (decoded.parameters, decoded.payload, decoded.resource)
                elif isinstance(decoded, legacy.Message):
                    fields = (decoded.identifier, decoded.resource, decoded.payload)
                else:
                    fields = ()
                values += [v for v in fields if v is not None]
        stream = b"".join(frames)
        for seed in (0x00, 0x01, 0x02):  # the whole session in 1, 2 and 3 chunks
            write(out, target, bytes([seed]) + stream, f"{stem}-stream-{seed + 1}chunks")

    for i, value in enumerate(values + EXTRA_VALUES):
        kind = "vector" if i < len(values) else "extra"
        write(out, "pson1", pson.encode(value), f"{kind}-{i:02d}")
        write(out, "pson2", pson2.encode(value), f"{kind}-{i:02d}")
    for i, text in enumerate(EXTRA_PSON1):
        write(out, "pson1", bytes.fromhex(text), f"raw-{i:02d}")
    for i, text in enumerate(EXTRA_PSON2):
        write(out, "pson2", bytes.fromhex(text), f"raw-{i:02d}")
    write(out, "pson1", b"\x21" + struct.pack("<d", 3.0), "raw-double-3")
    # Nesting past the default depth limit and past Python's recursion limit (the decoders turn a
    # RecursionError into a DecodeError; the target also decodes with max_depth=10**9).
    invalid = set()
    for levels in (33, 1100):
        deep1 = b"\x72\x00"
        for _ in range(levels - 1):
            head = bytearray(b"\x72")
            pson.encode_varint(len(deep1), head)
            deep1 = bytes(head) + deep1
        deep2 = b"\xe1" * (levels - 1) + b"\xe0"
        for target, data in (("pson1", deep1), ("pson2", deep2)):
            write(out, target, data, f"deep-{levels}")
            invalid.add(data)

    for target, seeds in sorted(out.items()):
        for data in seeds:  # every seed must be valid input for its own decoder
            if data in invalid:
                continue
            try:
                if target == "pson1":
                    pson.decode(data)
                elif target == "pson2":
                    pson2.decode(data)
                else:
                    (iotmp if target == "iotmp" else legacy).Decoder().feed(data[1:])
            except DecodeError as exc:
                sys.exit(f"seed {seeds[data]} of {target} does not decode: {exc}")
        folder = HERE / "corpus" / target
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        for data, name in seeds.items():
            (folder / name).write_bytes(data)
        print(f"{target}: {len(seeds)} seeds, {sum(map(len, seeds))} bytes -> {folder}")


if __name__ == "__main__":
    main()
