#!/usr/bin/python3
"""Write a configured copy of the migrationd test guest image, or compute
the checksum the guest will report, on the host and independently of it.

  mkguest.py --base testguest.img --out X.img --mode fill --size-mib 48 --seed 7
  mkguest.py --print-sum --seed 7 --start-mib 2 --size-mib 48

The guest reads a config block at image offset 512 (see README.md):
  0  magic "MDCF"     4  mode (1 = fill-verify, 2 = dirty)
  8  start MiB       12  size MiB      16  seed
 20  pace (dirty mode: busy-loop turns after each page; 0 = none)  (all u32 LE)
Options that are not given keep the value in the base image. The output is
always padded to 1 MiB because SeaBIOS does not boot a 512-byte disk.

Standard library only, so it runs under any python3.
"""

import argparse
import array
import os
import struct
import sys
import tempfile
import zlib

CFG_OFFSET = 512
CFG_FORMAT = "<4sIIIII"
CFG_MAGIC = b"MDCF"
MODES = {"fill": 1, "dirty": 2}
MODE_NAMES = {v: k for k, v in MODES.items()}
IMAGE_SIZE = 1 << 20
MIB = 1 << 20
GOLDEN = 0x9E3779B1

# The pattern word at address a is xorshift32((seed ^ a) * GOLDEN), computed
# for many words at once: each word sits in its own 64-bit lane of one big
# Python integer, so a 32x32-bit product or a shift never reaches the next
# lane's low 32 bits and masking keeps every lane independent.
_CHUNK_WORDS = 1 << 16
_lanes_cache = {}


def _lanes(n):
    """(unit, mask, offsets) for n lanes: 1, 0xffffffff and 4*i in lane i."""
    got = _lanes_cache.get(n)
    if got is None:
        unit = int.from_bytes((b"\x01" + b"\x00" * 7) * n, "little")
        offsets = int.from_bytes(
            b"".join(struct.pack("<Q", 4 * i) for i in range(n)), "little")
        got = (unit, 0xFFFFFFFF * unit, offsets)
        _lanes_cache[n] = got
    return got


def pattern_bytes(seed, start, length):
    """The bytes the guest writes to [start, start + length), start and
    length multiples of 4."""
    if start % 4 or length % 4:
        raise ValueError("start and length must be multiples of 4")
    out = bytearray()
    end = start + length
    addr = start
    while addr < end:
        n = min(_CHUNK_WORDS, (end - addr) // 4)
        unit, mask, offsets = _lanes(n)
        x = (addr * unit + offsets) ^ ((seed & 0xFFFFFFFF) * unit)
        x = (x * GOLDEN) & mask
        x ^= (x << 13) & mask
        x ^= x >> 17  # bits pulled down from the next lane land above bit 31
        x &= mask
        x ^= (x << 5) & mask
        # Raw bytes 8i..8i+3 are lane i's word in little endian; the array
        # only slices raw 4-byte items, so host byte order does not matter.
        words = array.array("I")
        words.frombytes(x.to_bytes(n * 8, "little"))
        out += words[0::2].tobytes()
        addr += 4 * n
    return bytes(out)


def pattern_word(seed, addr):
    """One pattern word, the plain way; used to cross-check pattern_bytes."""
    x = (((seed ^ addr) & 0xFFFFFFFF) * GOLDEN) & 0xFFFFFFFF
    x ^= (x << 13) & 0xFFFFFFFF
    x ^= x >> 17
    x ^= (x << 5) & 0xFFFFFFFF
    return x


def expected_sum(seed, start_mib, size_mib):
    """The zlib CRC-32 the guest prints as sum=, over the filled range."""
    crc = 0
    start = start_mib * MIB
    for off in range(0, size_mib * MIB, MIB):
        crc = zlib.crc32(pattern_bytes(seed, start + off, MIB), crc)
    return crc


def read_config(image):
    with open(image, "rb") as f:
        f.seek(CFG_OFFSET)
        raw = f.read(struct.calcsize(CFG_FORMAT))
    if len(raw) != struct.calcsize(CFG_FORMAT):
        raise SystemExit(f"mkguest: {image}: too short to hold a config block "
                         f"at offset {CFG_OFFSET}; is it the built testguest image?")
    magic, mode, start, size, seed, pace = struct.unpack(CFG_FORMAT, raw)
    if magic != CFG_MAGIC:
        raise SystemExit(f"mkguest: {image}: no MDCF config block at offset "
                         f"{CFG_OFFSET}; pass the testguest.img from the build dir")
    return {"mode": mode, "start": start, "size": size, "seed": seed, "pace": pace}


def write_image(base, out, cfg):
    with open(base, "rb") as f:
        data = bytearray(f.read())
    if len(data) > IMAGE_SIZE:
        raise SystemExit(f"mkguest: {base}: {len(data)} bytes, more than the "
                         f"{IMAGE_SIZE}-byte image; not a testguest image")
    if data[510:512] != b"\x55\xaa":
        raise SystemExit(f"mkguest: {base}: no boot signature at offset 510")
    data += b"\x00" * (IMAGE_SIZE - len(data))
    struct.pack_into(CFG_FORMAT, data, CFG_OFFSET, CFG_MAGIC, cfg["mode"],
                     cfg["start"], cfg["size"], cfg["seed"], cfg.get("pace", 0))
    # Write then rename, so a reader (or a build) never sees half an image.
    outdir = os.path.dirname(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(prefix=".mkguest-", dir=outdir)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0o22)
        os.umask(umask)
        os.chmod(tmp, 0o644 & ~umask)
        os.replace(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise


def u32(text):
    value = int(text, 0)
    if not 0 <= value <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError(f"{text} is not a 32-bit unsigned value")
    return value


def mib(text):
    value = int(text, 0)
    if not 1 <= value < 4096:
        raise argparse.ArgumentTypeError(f"{text}: MiB must be in 1..4095")
    return value


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", help="built testguest image (or .bin) to copy")
    p.add_argument("--out", help="image to write")
    p.add_argument("--mode", choices=sorted(MODES))
    p.add_argument("--start-mib", type=mib, help="range start (default 2)")
    p.add_argument("--size-mib", type=mib, help="range length (default 16)")
    p.add_argument("--seed", type=u32)
    p.add_argument("--pace", type=u32,
                   help="dirty mode: CPU work between page writes, so CPU throttling slows it")
    p.add_argument("--print-sum", action="store_true",
                   help="print the 8-hex-digit sum a fill guest reports "
                        "(for --base's config, or the options), then exit")
    p.add_argument("--print-config", action="store_true",
                   help="print the config block of --base, then exit")
    args = p.parse_args(argv)

    if args.print_sum:
        # Unset values come from --base if given, else the built defaults.
        cfg = read_config(args.base) if args.base else \
            {"start": 2, "size": 16, "seed": 1}
        seed = cfg["seed"] if args.seed is None else args.seed
        start = cfg["start"] if args.start_mib is None else args.start_mib
        size = cfg["size"] if args.size_mib is None else args.size_mib
        print(f"{expected_sum(seed, start, size):08x}")
        return 0
    if not args.base:
        p.error("--base is required (unless --print-sum)")
    cfg = read_config(args.base)
    if args.print_config:
        print(f"mode={MODE_NAMES.get(cfg['mode'], cfg['mode'])} "
              f"start={cfg['start']} size={cfg['size']} seed={cfg['seed']}")
        return 0
    if not args.out:
        p.error("--out is required")
    if args.mode is not None:
        cfg["mode"] = MODES[args.mode]
    if args.start_mib is not None:
        cfg["start"] = args.start_mib
    if args.size_mib is not None:
        cfg["size"] = args.size_mib
    if args.seed is not None:
        cfg["seed"] = args.seed
    if args.pace is not None:
        cfg["pace"] = args.pace
    if cfg["start"] + cfg["size"] > 4095:
        p.error("the range must end below 4095 MiB")
    write_image(args.base, args.out, cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
