"""Image references, normalised as Docker and containerd's CRI plugin do (distribution/reference rules).

One normaliser for every place that compares names: `images.keep` patterns, the sandbox image, the operator's
protected set, the executor's last re-check. `pause:3.6`, `library/pause:3.6` and `docker.io/library/pause:3.6`
are one image; so are `nginx` and `docker.io/library/nginx:latest`.

- The first path component is a registry ("domain") when it contains a `.` or a `:`, or is `localhost`;
  otherwise the registry is `docker.io`. Docker Hub's legacy names `index.docker.io` and `registry-1.docker.io`
  are `docker.io`.
- On `docker.io`, a one-component path gets `library/`.
- A reference with neither tag nor digest gets `:latest`.
- A digest wins: `repo:tag@sha256:…` is `repo@sha256:…`, as containerd and the kubelet resolve it (containerd's
  `ParseDockerRef` drops the tag, so a pull of it is recorded under `repo@sha256:…` and the tag never reaches
  the node's names). `forms` still offers the tagged spelling to patterns.
- An image ID (`sha256:<64 hex>`) is not a name; it is returned unchanged.
"""

from __future__ import annotations

import fnmatch
import re
import sys
from collections.abc import Iterable
from functools import lru_cache

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAINS = frozenset({"index.docker.io", "registry-1.docker.io"})
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"

_ID = re.compile(r"^sha256:[0-9a-f]{64}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = re.compile(rf"^(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$")
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")


class InvalidReference(ValueError):
    """A string that is not an image reference."""


def is_image_id(value: str) -> bool:
    return bool(_ID.match(value))


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        domain = DEFAULT_DOMAIN if first in LEGACY_DOMAINS else first
        return domain, rest
    return DEFAULT_DOMAIN, name


def _parse(ref: str) -> tuple[str, str, str, str]:
    """(domain, path, tag, digest) of `ref`, domain and path normalised; raises InvalidReference."""
    ref = ref.strip()
    if not ref or any(c.isspace() for c in ref):
        raise InvalidReference(f"invalid image reference {ref!r}")
    name, digest = ref, ""
    if "@" in ref:
        name, _, digest = ref.partition("@")
        if not _DIGEST.match(digest):
            raise InvalidReference(f"invalid digest in image reference {ref!r}")
    tag = ""
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, _, tag = name.rpartition(":")
        if not _TAG.match(tag):
            raise InvalidReference(f"invalid tag in image reference {ref!r}")
    domain, path = _split_domain(name)
    if not _DOMAIN.match(domain):
        raise InvalidReference(f"invalid registry in image reference {ref!r}")
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_PREFIX + path
    if not path or not all(_PATH_COMPONENT.match(part) for part in path.split("/")):
        raise InvalidReference(f"invalid repository name in image reference {ref!r}")
    return domain, path, tag, digest


def normalize(ref: str) -> str:
    """The fully qualified form of `ref` (see the module docstring); raises InvalidReference if it is not one."""
    if is_image_id(ref.strip()):
        return ref.strip()
    domain, path, tag, digest = _parse(ref)
    if digest:
        return f"{domain}/{path}@{digest}"  # the digest wins (a tag beside it names nothing more)
    return f"{domain}/{path}:{tag or DEFAULT_TAG}"


def normalize_or_none(ref: str) -> str | None:
    try:
        return normalize(ref)
    except InvalidReference:
        return None


def familiar(ref: str) -> str:
    """The short form people type: `docker.io/library/nginx:1.25` -> `nginx:1.25` (ID and bad input unchanged)."""
    full = normalize_or_none(ref)
    if full is None or is_image_id(full):
        return ref
    if full.startswith(f"{DEFAULT_DOMAIN}/"):
        full = full.removeprefix(f"{DEFAULT_DOMAIN}/").removeprefix(OFFICIAL_PREFIX)
    return full


def forms(ref: str) -> frozenset[str]:
    """Every spelling a pattern may be written against: the reference as given, its full and familiar forms (and,
    for `repo:tag@digest`, both of those with the tag too)."""
    full = normalize_or_none(ref)
    if full is None:
        return frozenset({ref})
    out = {ref, full, familiar(full)}
    if not is_image_id(full):
        domain, path, tag, digest = _parse(ref)
        if tag and digest:
            out.add(f"{domain}/{path}:{tag}@{digest}")
            if domain == DEFAULT_DOMAIN:
                out.add(f"{path.removeprefix(OFFICIAL_PREFIX)}:{tag}@{digest}")
    return frozenset(out)


def same_image_name(a: str, b: str) -> bool:
    """Whether two references name the same thing (after normalisation; IDs compare as they are)."""
    na, nb = normalize_or_none(a), normalize_or_none(b)
    return (na or a) == (nb or b)


def matches_pattern(ref: str, pattern: str) -> bool:
    """Whether glob `pattern` matches `ref` in its given, full or familiar form (`nginx:*` matches
    `docker.io/library/nginx:1.25`; `docker.io/library/nginx:*` matches `nginx:1.25`)."""
    return any(fnmatch.fnmatchcase(form, pattern) for form in forms(ref))


@lru_cache(maxsize=1 << 14)
def _canonical(ref: str) -> str:
    return sys.intern(normalize_or_none(ref) or ref)


def normalize_all(refs: Iterable[str]) -> frozenset[str]:
    """The normalised forms of `refs`, those that are not references kept as they are. Interned and remembered
    (the last 16,384 spellings): the operator holds the references of 5,000 nodes and 15,000 pod templates, mostly
    the same few thousand images (issue 21), and the agent normalises the same names on every check."""
    return frozenset(_canonical(r) for r in refs)
