#!/usr/bin/env python3
"""interop_safetensors.py: an independent safetensors reader and writer for
tests/lua/io_spec.lua, using only json and struct (no safetensors library), so
that deepdance is checked against the format, not against itself.

  write PATH   writes the fixture below (F32 F64 F16 BF16 I64 I32 I16 I8 U8
               BOOL, a scalar, an empty tensor, metadata) laid out like the
               reference writer; io_spec.lua checks that dd.load reads it exactly.
  read PATH    reads the file io_spec.lua wrote with dd.save and checks the
               layout rules of the reference reader (8-byte padded header, no
               gaps or overlaps, buffer fully used) and every value. Prints
               "ok" and exits 0, or prints each mismatch and exits 1.
"""
import json
import struct
import sys

# dtype -> (struct code, bytes); BF16 is handled by hand (struct has no code).
DTYPES = {
    "F64": ("d", 8), "F32": ("f", 4), "F16": ("e", 2), "BF16": (None, 2),
    "I64": ("q", 8), "I32": ("i", 4), "I16": ("h", 2), "I8": ("b", 1),
    "U8": ("B", 1), "BOOL": ("?", 1),
}
# The reference writer lays out larger dtypes first (its Dtype enum order), then by name.
RANK = {"BOOL": 0, "U8": 1, "I8": 2, "I16": 3, "F16": 4, "BF16": 5, "I32": 6,
        "F32": 7, "F64": 8, "I64": 9}

# name -> (dtype, shape, values in row-major order). io_spec.lua holds the
# float32 values dd.load must return for these; keep the two in step.
FIXTURE = {
    "f32": ("F32", [2, 3], [0.0, 1.5, -2.25, 1024.125, 2.0 ** -20, -3.0]),
    "f64": ("F64", [3], [0.1, -1e10, 1.0 / 3.0]),
    "f16": ("F16", [2, 2], [1.0, -2.0, 0.5, 65504.0]),
    "bf16": ("BF16", [3], [1.0, -3.5, 256.0]),
    "i64": ("I64", [4], [-3, 0, 2 ** 40, 123456789]),
    "i32": ("I32", [2], [-7, 2147483647]),
    "i16": ("I16", [2], [-32768, 32767]),
    "i8": ("I8", [3], [-128, 127, -1]),
    "u8": ("U8", [2, 2], [0, 255, 128, 7]),
    "bool": ("BOOL", [3], [True, False, True]),
    "scalar": ("F32", [], [7.0]),
    "empty": ("F32", [0, 2], []),
}
FIXTURE_METADATA = {"format": "pt", "source": "python ✓"}

# What io_spec.lua saves with dd.save (all float32):
#   a = dd.arange(12):view(3, 4):transpose(1, 2)   (non-contiguous)
#   b = dd.tensor{{1.5, -2}, {0.25, 0.001}}
#   s = dd.tensor(42)
#   metadata {step = 7, lr = 0.5, name = "interop ✓"}
EXPECTED = {
    "a": ([4, 3], [float(r + 4 * c) for r in range(4) for c in range(3)]),
    "b": ([2, 2], [1.5, -2.0, 0.25, struct.unpack("<f", struct.pack("<f", 0.001))[0]]),
    "s": ([], [42.0]),
}
EXPECTED_METADATA = {"step": "7", "lr": "0.5", "name": "interop ✓"}


def pack(dtype, values):
    if dtype == "BF16":
        return b"".join(struct.pack("<f", v)[2:] for v in values)
    code, _ = DTYPES[dtype]
    return struct.pack("<%d%s" % (len(values), code), *values)


def write(path):
    order = sorted(FIXTURE, key=lambda n: (-RANK[FIXTURE[n][0]], n))
    header = {"__metadata__": FIXTURE_METADATA}
    chunks, offset = [], 0
    for name in order:
        dtype, shape, values = FIXTURE[name]
        data = pack(dtype, values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def read(path):
    errors = []
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    raw = blob[8:8 + n]
    if n % 8:
        errors.append("header length %d is not a multiple of 8" % n)
    if raw.rstrip(b" ") != raw.rstrip():
        errors.append("header padding is not spaces")
    header = json.loads(raw.decode("utf-8"))
    buf = blob[8 + n:]

    meta = header.pop("__metadata__", None)
    if meta != EXPECTED_METADATA:
        errors.append("metadata: got %r, expected %r" % (meta, EXPECTED_METADATA))
    if set(header) != set(EXPECTED):
        errors.append("tensor names: got %s, expected %s" % (sorted(header), sorted(EXPECTED)))

    # The reference reader's layout rule: ranges tile the buffer exactly.
    end = 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
        begin, stop = info["data_offsets"]
        if begin != end:
            errors.append("%s: data starts at %d, expected %d (gap or overlap)" % (name, begin, end))
        end = stop
    if end != len(buf):
        errors.append("tensors end at byte %d of a %d-byte buffer" % (end, len(buf)))

    for name, (shape, values) in EXPECTED.items():
        info = header.get(name)
        if info is None:
            continue
        if info["dtype"] != "F32" or info["shape"] != shape:
            errors.append("%s: got %s %s, expected F32 %s" % (name, info["dtype"], info["shape"], shape))
            continue
        begin, stop = info["data_offsets"]
        got = list(struct.unpack("<%df" % ((stop - begin) // 4), buf[begin:stop]))
        if got != values:
            errors.append("%s: got %s, expected %s" % (name, got, values))

    for e in errors:
        print("mismatch: " + e)
    if errors:
        sys.exit(1)
    print("ok")


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "read"):
        sys.exit("usage: interop_safetensors.py write|read PATH")
    (write if sys.argv[1] == "write" else read)(sys.argv[2])


if __name__ == "__main__":
    main()
