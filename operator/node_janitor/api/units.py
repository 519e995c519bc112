"""Durations and sizes as Kubernetes manifests write them.

- Durations are Go `time.ParseDuration` strings without a sign: "90s", "1h30m", "1.5h", "300ms", "0".
- Sizes are Kubernetes quantities: "1048576", "50Mi", "1.5Gi", "10M", "1e6". A size is a number of bytes,
  so the milli suffix ("10m" = 0.01 byte) is refused as the mistake it always is; fractions of a byte
  round up, as `resource.Quantity.Value()` does.

The regular expressions are exported because the CRD carries them as `pattern`s: the apiserver and these
parsers accept the same strings.

Quantities are computed as the Kubernetes client's `kubernetes.utils.parse_quantity` computes them (the same
Decimal operations, so the same results: tests/api/test_api_units.py compares both over many values), behind our
pattern (which refuses what a size must not be: negatives, milli, `NaN`, `1_000`, surrounding blanks, all of which
it takes) and our errors. Not the function itself: importing `kubernetes.utils` imports the whole `kubernetes`
package (every generated API model, ~17 MiB), and the node agent parses quantities too.
Durations stay ours: durationpy, which the Kubernetes client brings, is measurably worse for Go's durations. It
takes "7d", "1y" and "3000000h", all refused by Go (and the first two by the CRD's pattern), and computes in
floats: "1500ns" becomes 2us (Go truncates: 1us) and Go's largest duration rounds past Go's range; ours is exact
(Decimal) and refuses what `time.ParseDuration` refuses.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import ROUND_CEILING, Decimal

__all__ = [
    "DURATION_PATTERN",
    "QUANTITY_PATTERN",
    "format_bytes",
    "format_duration",
    "format_quantity",
    "parse_duration",
    "parse_quantity",
]

_DURATION_UNITS_NS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 MICRO SIGN
    "μs": 1_000,  # U+03BC GREEK SMALL LETTER MU
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_DURATION_UNIT = r"(?:ns|us|µs|μs|ms|s|m|h)"
DURATION_PATTERN = rf"^(?:0|(?:{_NUMBER}{_DURATION_UNIT})+)$"
"""A Go duration without a sign ("0", "90s", "1h30m", "1.5h"); RE2- and Python-compatible."""
_DURATION_RE = re.compile(DURATION_PATTERN)
_DURATION_PART_RE = re.compile(rf"({_NUMBER})({_DURATION_UNIT})")
_MAX_DURATION_NS = 2**63 - 1  # Go's time.Duration is an int64 of nanoseconds

_BINARY_SUFFIXES: dict[str, int] = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL_SUFFIXES: dict[str, int] = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_SUFFIX_POWERS: dict[str, tuple[int, int]] = {
    **{suffix: (1024, power) for power, suffix in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"), 1)},
    **{suffix: (1000, power) for power, suffix in enumerate(("k", "M", "G", "T", "P", "E"), 1)},
}
"""suffix -> (base, power), as kubernetes.utils.quantity has them (base ** Decimal(power), in Decimal)."""
QUANTITY_PATTERN = r"^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[KMGTPE]i|[kMGTPE]|[eE][+-]?[0-9]+)?$"
"""A non-negative Kubernetes quantity without the milli suffix; RE2- and Python-compatible."""
_QUANTITY_RE = re.compile(r"^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[kMGTPE]|[eE][+-]?[0-9]+)?$")
_MAX_EXPONENT = 30  # 1e30 bytes is already absurd; refuse before Decimal builds a giant integer


def parse_duration(text: str) -> timedelta:
    """Parses a Go-style duration ("1h30m", "90s", "1.5h", "0") into a timedelta.

    Nanoseconds below a microsecond are truncated (timedelta's resolution). Raises ValueError for
    anything Go's `time.ParseDuration` refuses, and for negative durations.
    """
    if not isinstance(text, str):
        raise ValueError(f"a duration must be a string like '90s' or '1h30m', not {type(text).__name__}")
    if text.startswith("-"):
        raise ValueError(f"invalid duration {text!r}: negative durations are not allowed")
    if not _DURATION_RE.fullmatch(text):
        raise ValueError(
            f"invalid duration {text!r}: use a number and a unit (ns, us, ms, s, m, h), "
            "optionally combined, e.g. '90s', '10m', '1h30m'"
        )
    total_ns = Decimal(0)
    for number, unit in _DURATION_PART_RE.findall(text):
        total_ns += Decimal(number) * _DURATION_UNITS_NS[unit]
    if total_ns > _MAX_DURATION_NS:
        raise ValueError(f"invalid duration {text!r}: out of range (at most about 2562047h)")
    return timedelta(microseconds=int(total_ns) // 1000)


def format_duration(value: timedelta) -> str:
    """Formats a timedelta as a compact Go-style duration that parse_duration reads back exactly.

    timedelta(minutes=2) -> "2m", timedelta(hours=1, minutes=30) -> "1h30m", timedelta(0) -> "0",
    timedelta(milliseconds=1500) -> "1.5s".
    """
    if value < timedelta(0):
        raise ValueError(f"negative duration {value!r}")
    micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    if micros == 0:
        return "0"
    hours, micros = divmod(micros, 3_600_000_000)
    minutes, micros = divmod(micros, 60_000_000)
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if micros:
        if hours or minutes or micros >= 1_000_000:
            parts.append(f"{_plain(Decimal(micros) / 1_000_000)}s")
        elif micros % 1000:
            parts.append(f"{micros}us")
        else:
            parts.append(f"{micros // 1000}ms")
    return "".join(parts)


def parse_quantity(text: str | int) -> int:
    """Parses a Kubernetes quantity ("50Mi", "1.5Gi", "10M", "1e6", "1024") into bytes.

    Integers are taken as bytes. Fractions of a byte round up. Raises ValueError for negatives, the milli
    suffix and anything else that is not a quantity.
    """
    if isinstance(text, bool):
        raise ValueError("a size must be a quantity like '50Mi' or a number of bytes, not a boolean")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"invalid size {text}: negative sizes are not allowed")
        return text
    if not isinstance(text, str):
        raise ValueError(f"a size must be a quantity like '50Mi' or a number of bytes, not {type(text).__name__}")
    if text.startswith("-"):
        raise ValueError(f"invalid size {text!r}: negative sizes are not allowed")
    match = _QUANTITY_RE.fullmatch(text)
    if match is None:
        hint = " ('m' means milli; use 'M' or 'Mi')" if text.endswith("m") else ""
        raise ValueError(
            f"invalid size {text!r}{hint}: use a Kubernetes quantity such as '1024', '50Mi', '1.5Gi' or '10M'"
        )
    number, suffix = match.group(1), match.group(2) or ""
    if suffix in _SUFFIX_POWERS:
        base, power = _SUFFIX_POWERS[suffix]
        value = Decimal(number) * (base ** Decimal(power))  # kubernetes.utils.parse_quantity's very operations
    else:  # no suffix, or the exponent form: the whole text is one Decimal literal, exact
        if suffix and int(suffix[1:]) > _MAX_EXPONENT:
            raise ValueError(f"invalid size {text!r}: too large")
        value = Decimal(text)
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def format_quantity(n: int) -> str:
    """Formats bytes as the exact, shortest-suffixed quantity: 10485760 -> "10Mi", 5000 -> "5k".

    Unlike format_bytes, nothing is rounded: parse_quantity(format_quantity(n)) == n.
    """
    if n < 0:
        raise ValueError(f"negative size {n}")
    if n == 0:
        return "0"
    for suffix, factor in reversed(_BINARY_SUFFIXES.items()):
        if n % factor == 0:
            return f"{n // factor}{suffix}"
    for suffix, factor in reversed(_DECIMAL_SUFFIXES.items()):
        if factor > 1 and n % factor == 0:
            return f"{n // factor}{suffix}"
    return str(n)


def format_bytes(n: int) -> str:
    """Formats bytes for people, in binary units with at most one decimal: 1610612736 -> "1.5Gi".

    Below 1Ki the plain number is shown ("512"); negative values keep their sign ("-2Mi").
    """
    if n < 0:
        return "-" + format_bytes(-n)
    if n < 1024:
        return str(n)
    units = list(_BINARY_SUFFIXES.items())
    for index, (suffix, factor) in enumerate(units):
        scaled = Decimal(n) / factor
        rounded = scaled.quantize(Decimal("1") if scaled >= 100 else Decimal("0.1"))
        if rounded < 1024 or index == len(units) - 1:
            return f"{_plain(rounded)}{suffix}"
    raise AssertionError("unreachable")  # pragma: no cover


def _plain(value: Decimal) -> str:
    """A Decimal without exponent or trailing zeros: 1.50 -> "1.5", 2.0 -> "2"."""
    text = format(value.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
