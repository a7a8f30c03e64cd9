#!/usr/bin/env python3
"""make_pngs.py: reference PNG files for tests/lua/image_spec.lua, written by a
small independent encoder (zlib + struct, standard library only) so that every
colour type, bit depth, palette/tRNS combination and Adam7 interlacing can be
produced on purpose -- ffmpeg and PIL cannot write them all.

    make_pngs.py make DIR SEED   writes DIR/<case>.png and DIR/<case>.txt, plus
                                 broken files (bad CRCs, corrupt IDAT data, cut
                                 short, no IEND, not a PNG, empty); prints the case names
    make_pngs.py decode FILE     decodes a non-interlaced PNG (colour types
                                 0, 2, 4, 6; 8 or 16 bits) and prints it

A .txt file (and decode's output) is "C H W MAX" on the first line, then the
C*H*W samples in (C, H, W) order: the tensor dd.image.load must return is
exactly sample / MAX in float32. It spells out what libpng's expansion gives:
palettes become RGB (RGBA with tRNS, missing tRNS entries opaque), a tRNS
colour key adds an alpha channel (0 where the pixel equals the key), 1/2/4-bit
grey keeps k / (2^bits - 1)."""
import random
import struct
import sys
import zlib

ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def pack_row(samples, depth):
    """Samples of one row (ints) as the bytes of that row, MSB first below 8 bits."""
    if depth == 16:
        return b"".join(struct.pack(">H", s) for s in samples)
    if depth == 8:
        return bytes(samples)
    out, acc, nbits = bytearray(), 0, 0
    for s in samples:
        acc = (acc << depth) | s
        nbits += depth
        if nbits == 8:
            out.append(acc)
            acc, nbits = 0, 0
    if nbits:
        out.append(acc << (8 - nbits))
    return bytes(out)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def filter_row(kind, row, prev, bpp):
    out = bytearray([kind])
    for i, x in enumerate(row):
        a = row[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        pred = [0, a, b, (a + b) // 2, paeth(a, b, c)][kind]
        out.append((x - pred) & 0xFF)
    return bytes(out)


def encode(width, height, color_type, depth, pixels, palette=None, trns=None, interlace=False, idat_size=64):
    """pixels[y][x] is a tuple of samples (a palette index for colour type 3)."""
    nch = CHANNELS[color_type]
    bpp = max(1, nch * depth // 8)
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    raw = bytearray()
    nrow = 0
    for x0, y0, dx, dy in passes:
        xs = list(range(x0, width, dx))
        ys = list(range(y0, height, dy))
        if not xs or not ys:
            continue  # empty passes have no rows at all, not even filter bytes
        prev = bytes(len(pack_row([0] * (len(xs) * nch), depth)))
        for y in ys:
            row = pack_row([s for x in xs for s in pixels[y][x]], depth)
            raw += filter_row(nrow % 5, row, prev, bpp)  # every filter type in turn
            prev = row
            nrow += 1
    data = zlib.compress(bytes(raw), 9)
    out = b"\x89PNG\r\n\x1a\n"
    out += chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 1 if interlace else 0))
    if palette is not None:
        out += chunk(b"PLTE", bytes(v for entry in palette for v in entry))
    if trns is not None:
        out += chunk(b"tRNS", trns)
    for i in range(0, len(data), idat_size):  # several IDAT chunks
        out += chunk(b"IDAT", data[i:i + idat_size])
    return out + chunk(b"IEND", b"")


def expected(width, height, color_type, depth, pixels, palette=None, trns=None):
    """(C, MAX, planes) of what dd.image.load returns."""
    top = (1 << depth) - 1
    if color_type == 3:
        alpha = None
        if trns is not None:
            alpha = [trns[i] if i < len(trns) else 255 for i in range(len(palette))]
        planes = [[[palette[pixels[y][x][0]][c] for x in range(width)] for y in range(height)] for c in range(3)]
        if alpha is not None:
            planes.append([[alpha[pixels[y][x][0]] for x in range(width)] for y in range(height)])
        return len(planes), 255, planes
    nch = CHANNELS[color_type]
    planes = [[[pixels[y][x][c] for x in range(width)] for y in range(height)] for c in range(nch)]
    if trns is not None:  # a colour key (grey: 1 sample, RGB: 3), 16-bit each in the chunk
        key = tuple(struct.unpack(">%dH" % nch, trns))
        planes.append([[0 if pixels[y][x] == key else top for x in range(width)] for y in range(height)])
    return len(planes), top, planes


def write_case(directory, name, width, height, color_type, depth, pixels, palette=None, trns=None, interlace=False):
    with open("%s/%s.png" % (directory, name), "wb") as f:
        f.write(encode(width, height, color_type, depth, pixels, palette, trns, interlace))
    c, top, planes = expected(width, height, color_type, depth, pixels, palette, trns)
    with open("%s/%s.txt" % (directory, name), "w") as f:
        f.write("%d %d %d %d\n" % (c, height, width, top))
        f.write(" ".join(str(v) for plane in planes for row in plane for v in row))
        f.write("\n")
    print(name)


def make(directory, seed):
    rng = random.Random(seed)
    cases = []
    # (name, colour type, depth, width, height, interlace, palette size, tRNS)
    for depth in (1, 2, 4, 8, 16):
        cases.append(("grey%d" % depth, 0, depth, 13, 7, False, 0, False))
    cases += [
        ("grey_alpha8", 4, 8, 9, 6, False, 0, False),
        ("grey_alpha16", 4, 16, 9, 6, False, 0, False),
        ("rgb8", 2, 8, 11, 5, False, 0, False),
        ("rgb16", 2, 16, 11, 5, False, 0, False),
        ("rgba8", 6, 8, 10, 7, False, 0, False),
        ("rgba16", 6, 16, 10, 7, False, 0, False),
        ("palette1", 3, 1, 17, 3, False, 2, False),
        ("palette2", 3, 2, 15, 4, False, 4, False),
        ("palette4", 3, 4, 9, 9, False, 16, False),
        ("palette8", 3, 8, 12, 8, False, 200, False),
        ("palette8_trns", 3, 8, 12, 8, False, 40, True),
        ("palette2_trns", 3, 2, 7, 5, False, 4, True),
        ("grey8_trns", 0, 8, 8, 8, False, 0, True),
        ("grey2_trns", 0, 2, 9, 5, False, 0, True),
        ("grey16_trns", 0, 16, 6, 5, False, 0, True),
        ("rgb8_trns", 2, 8, 8, 6, False, 0, True),
        ("grey1_interlaced", 0, 1, 19, 13, True, 0, False),
        ("grey8_interlaced", 0, 8, 21, 17, True, 0, False),
        ("rgb8_interlaced", 2, 8, 23, 11, True, 0, False),
        ("rgba16_interlaced", 6, 16, 10, 9, True, 0, False),
        ("palette4_interlaced", 3, 4, 13, 10, True, 12, True),
        ("tiny_interlaced", 6, 8, 3, 2, True, 0, False),  # several Adam7 passes are empty
        ("one_pixel", 2, 16, 1, 1, True, 0, False),
    ]
    for name, ct, depth, w, h, interlace, npal, with_trns in cases:
        top = (1 << depth) - 1
        palette = trns = None
        if ct == 3:
            palette = [tuple(rng.randrange(256) for _ in range(3)) for _ in range(npal)]
            pixels = [[(rng.randrange(npal),) for _ in range(w)] for _ in range(h)]
            if with_trns:  # shorter than the palette: the rest stays opaque
                trns = bytes(rng.randrange(256) for _ in range(max(1, npal // 2)))
        else:
            nch = CHANNELS[ct]
            # the extremes 0 and top always appear
            pixels = [[tuple(rng.randrange(top + 1) for _ in range(nch)) for _ in range(w)] for _ in range(h)]
            pixels[0][0] = tuple([0] * nch)
            pixels[h - 1][w - 1] = tuple([top] * nch)
            if with_trns:
                key = pixels[h // 2][w // 2]
                pixels[0][w - 1] = key  # the key appears at least twice
                trns = struct.pack(">%dH" % nch, *key)
        write_case(directory, name, w, h, ct, depth, pixels, palette, trns, interlace)

    # broken files, from one RGB image of incompressible noise
    w, h = 24, 16
    pixels = [[tuple(rng.randrange(256) for _ in range(3)) for _ in range(w)] for _ in range(h)]
    good = encode(w, h, 2, 8, pixels, idat_size=1 << 20)
    idat = good.index(b"IDAT")
    length = struct.unpack(">I", good[idat - 4:idat])[0]
    bad = bytearray(good)
    bad[idat + 4 + length // 2] ^= 0x55  # inside the IDAT data, CRC left as it was
    with open(directory + "/bad_idat.png", "wb") as f:  # zlib's checksum notices first
        f.write(bytes(bad))
    bad = bytearray(good)
    bad[idat + 4 + length] ^= 0x01  # the IDAT CRC itself: the data decodes, the CRC check fails
    with open(directory + "/bad_crc.png", "wb") as f:
        f.write(bytes(bad))
    bad = bytearray(good)
    bad[8 + 8 + 13] ^= 0x80  # the IHDR CRC: fails while reading the header
    with open(directory + "/bad_ihdr_crc.png", "wb") as f:
        f.write(bytes(bad))
    # corrupt the zlib stream but fix the CRC, so that zlib (not the CRC) complains
    data = bytearray(good[idat + 4:idat + 4 + length])
    data[0] = 0x78
    data[1] = 0x00  # an invalid zlib header check
    fixed = good[:idat - 4] + chunk(b"IDAT", bytes(data)) + good[idat + 8 + length:]
    with open(directory + "/bad_zlib.png", "wb") as f:
        f.write(fixed)
    with open(directory + "/truncated.png", "wb") as f:
        f.write(good[:idat + 4 + length // 2])
    with open(directory + "/no_iend.png", "wb") as f:
        f.write(good[:-12])
    with open(directory + "/not_png.png", "wb") as f:
        f.write(b"GIF89a: certainly not a PNG file\n")
    with open(directory + "/empty.png", "wb") as f:
        pass


def decode(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, "bad CRC in " + kind.decode()
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, ct, _, _, interlace = ihdr
    assert interlace == 0 and ct in (0, 2, 4, 6) and depth in (8, 16), "unsupported by this decoder"
    nch = CHANNELS[ct]
    bpp = nch * depth // 8
    stride = width * bpp
    raw = zlib.decompress(idat)
    prev = bytearray(stride)
    samples = []
    for y in range(height):
        kind = raw[y * (stride + 1)]
        row = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = row[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            row[i] = (row[i] + [0, a, b, (a + b) // 2, paeth(a, b, c)][kind]) & 0xFF
        if depth == 8:
            samples.append(list(row))
        else:
            samples.append([row[2 * i] << 8 | row[2 * i + 1] for i in range(stride // 2)])
        prev = row
    print("%d %d %d %d" % (nch, height, width, (1 << depth) - 1))
    print(" ".join(str(samples[y][x * nch + c]) for c in range(nch) for y in range(height) for x in range(width)))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "make":
        make(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 3 and sys.argv[1] == "decode":
        decode(sys.argv[2])
    else:
        sys.exit("usage: make_pngs.py make DIR SEED | make_pngs.py decode FILE")
