"""status.imageRefsPacked: a node's image references, packed so that one status patch at 200 images stays under
16 KiB (issue 21). 200 images with a tag and a digest reference each are about 34 KB of JSON as a list; sorted,
newline-joined, gzipped and base64-encoded they are about 13 KB (the digests' 32 random bytes each are most of it).

Lossless: the operator unpacks exactly the list the agent had. An operator of an older release does not know the
field: the agent then leaves imageRefs empty and counts every packed reference in imageRefsOmitted, which such an
operator reads as "any workload image may be here" and protects them all on that node (fail closed).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import zlib
from collections.abc import Iterable
from typing import Final

__all__ = ["MAX_UNPACKED", "PACK_PREFIX", "PackedRefsError", "pack_refs", "unpack_refs"]

PACK_PREFIX: Final = "gzip+base64:"
MAX_UNPACKED: Final = 1 << 20
"""Bytes a packed list may unpack to (1000 refs of 512 characters at most: ~0.5 MiB); more is refused."""


class PackedRefsError(ValueError):
    """Not a packed list of references."""


def pack_refs(refs: Iterable[str]) -> str:
    text = "\n".join(sorted(set(refs))).encode()
    return PACK_PREFIX + base64.b64encode(gzip.compress(text, compresslevel=9, mtime=0)).decode("ascii")


def unpack_refs(packed: str) -> list[str]:
    if not packed.startswith(PACK_PREFIX):
        raise PackedRefsError(f"packed image refs start with {PACK_PREFIX!r}")
    try:
        compressed = base64.b64decode(packed[len(PACK_PREFIX) :], validate=True)
        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip
        text = decompressor.decompress(compressed, MAX_UNPACKED)
    except (binascii.Error, zlib.error) as exc:
        raise PackedRefsError(f"packed image refs: {exc}") from None
    if decompressor.unconsumed_tail:
        raise PackedRefsError(f"packed image refs unpack to more than {MAX_UNPACKED} bytes")
    try:
        return [line for line in text.decode().split("\n") if line]
    except UnicodeDecodeError as exc:
        raise PackedRefsError(f"packed image refs: {exc}") from None
