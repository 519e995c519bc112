"""Durations and sizes: Go-style durations, Kubernetes quantities, and the CRD patterns that mirror them."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node_janitor.api.units import (
    DURATION_PATTERN,
    QUANTITY_PATTERN,
    format_bytes,
    format_duration,
    format_quantity,
    parse_duration,
    parse_quantity,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", timedelta(0)),
        ("0s", timedelta(0)),
        ("90s", timedelta(seconds=90)),
        ("2m", timedelta(minutes=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("168h", timedelta(days=7)),
        ("1.5h", timedelta(minutes=90)),
        (".5s", timedelta(milliseconds=500)),
        ("1.s", timedelta(seconds=1)),
        ("300ms", timedelta(milliseconds=300)),
        ("10us", timedelta(microseconds=10)),
        ("10µs", timedelta(microseconds=10)),  # micro sign
        ("10μs", timedelta(microseconds=10)),  # greek mu
        ("1500ns", timedelta(microseconds=1)),  # below a microsecond: truncated
        ("2h45m30.5s", timedelta(hours=2, minutes=45, seconds=30.5)),
        ("1m1m", timedelta(minutes=2)),  # Go adds repeated units too
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "invalid duration"),
        ("1", "invalid duration"),
        ("-1s", "negative"),
        ("+1s", "invalid duration"),
        ("1d", "invalid duration"),
        ("1 h", "invalid duration"),
        (" 1h", "invalid duration"),
        ("1h\n", "invalid duration"),
        ("h", "invalid duration"),
        ("1e3s", "invalid duration"),
        ("2 minutes", "invalid duration"),
        ("3000000h", "out of range"),
    ],
)
def test_parse_duration_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0"),
        (timedelta(minutes=2), "2m"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(days=7), "168h"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(milliseconds=1500), "1.5s"),
        (timedelta(milliseconds=300), "300ms"),
        (timedelta(microseconds=7), "7us"),
        (timedelta(hours=1, microseconds=5), "1h0.000005s"),
    ],
)
def test_format_duration(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=100_000)))
def test_format_duration_round_trips(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("1024", 1024),
        (1024, 1024),
        ("1Ki", 1024),
        ("50Mi", 50 * 2**20),
        ("1.5Gi", 3 * 2**29),
        (".5Ki", 512),
        ("1Ei", 2**60),
        ("1k", 1000),
        ("10M", 10_000_000),
        ("2G", 2 * 10**9),
        ("1T", 10**12),
        ("1e3", 1000),
        ("1E6", 10**6),
        ("1.5e3", 1500),
        ("1e+3", 1000),
        ("1e-3", 1),  # a thousandth of a byte rounds up, as Quantity.Value() does
        ("0.5", 1),
    ],
)
def test_parse_quantity(text: str | int, expected: int) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "negative"),
        ("-10Mi", "negative"),
        (-5, "negative"),
        ("10m", "'m' means milli"),
        ("1KB", "invalid size"),
        ("1K", "invalid size"),
        ("1 Mi", "invalid size"),
        ("Mi", "invalid size"),
        ("", "invalid size"),
        ("1.2.3", "invalid size"),
        ("1e", "invalid size"),
        ("1e40", "too large"),
        (True, "boolean"),
        (1.5, "float"),
    ],
)
def test_parse_quantity_refuses(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_quantity(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0"), (1000, "1k"), (1024, "1Ki"), (10 * 2**20, "10Mi"), (5 * 10**9, "5G"), (1023, "1023"), (2**60, "1Ei")],
)
def test_format_quantity(n: int, text: str) -> None:
    assert format_quantity(n) == text


@given(st.integers(min_value=0, max_value=2**70))
def test_format_quantity_round_trips(n: int) -> None:
    assert parse_quantity(format_quantity(n)) == n


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0"),
        (512, "512"),
        (1024, "1Ki"),
        (1536, "1.5Ki"),
        (3 * 2**29, "1.5Gi"),
        (10 * 2**20, "10Mi"),
        (int(150.55 * 2**20), "151Mi"),
        (2**20 - 24, "1Mi"),  # 1023.98Ki rounds to the next unit, not to "1024Ki"
        (-2 * 2**20, "-2Mi"),
        (2**70, "1024Ei"),
    ],
)
def test_format_bytes(n: int, text: str) -> None:
    assert format_bytes(n) == text


_DURATION_ALPHABET = "0123456789.nsuµμmh -+d"
_QUANTITY_ALPHABET = "0123456789.eEkKMGTPi-+m "


@given(st.text(alphabet=_DURATION_ALPHABET, max_size=8))
def test_duration_pattern_accepts_what_parse_duration_accepts(text: str) -> None:
    """The CRD's pattern (checked by the apiserver) and the model's parser agree on every string."""
    try:
        parse_duration(text)
        parsed = True
    except ValueError as exc:
        parsed = "out of range" in str(exc)  # the only refusal a pattern cannot express
    assert (re.fullmatch(DURATION_PATTERN, text) is not None) == parsed


@given(st.text(alphabet=_QUANTITY_ALPHABET, max_size=8))
def test_quantity_pattern_accepts_what_parse_quantity_accepts(text: str) -> None:
    try:
        parse_quantity(text)
        parsed = True
    except ValueError as exc:
        parsed = "too large" in str(exc)
    assert (re.fullmatch(QUANTITY_PATTERN, text) is not None) == parsed


# parse_quantity computes what kubernetes.utils.parse_quantity computes (without importing the kubernetes package,
# which the node agent must not: see api/units.py): the same value for every quantity our pattern accepts.
_QUANTITY_EDGES = [
    "0", "1", "1023", "1024", "0.5", ".5", "5.", "1.0000000001", "123456789012345678901234567890",
    "1.23456789012345678901234567890123Ei", "99999999999999999999999999999Ki", "0.000000000000000000001Mi",
    "7Ki", "1.5Gi", "3Ti", "2.25Pi", "1Ei", "12k", "1.5M", "2G", "7T", "3P", "1E", "0.001k",
    "1e3", "1E6", "1.5e3", "1e+3", "1e-3", "5e30", "1.7e-30", "12345.6789e-2",
]  # fmt: skip


def _upstream_bytes(text: str) -> int:
    from decimal import ROUND_CEILING

    from kubernetes.utils import parse_quantity as upstream

    return int(upstream(text).to_integral_value(rounding=ROUND_CEILING))


@pytest.mark.parametrize("text", _QUANTITY_EDGES)
def test_parse_quantity_equals_the_kubernetes_clients(text: str) -> None:
    assert parse_quantity(text) == _upstream_bytes(text)


_DIGITS = st.text(alphabet="0123456789", min_size=1, max_size=34)


@given(
    whole=_DIGITS,
    fraction=st.one_of(st.none(), st.text(alphabet="0123456789", max_size=34)),
    suffix=st.sampled_from(["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E", "e<n>", "E<n>"]),
    exponent=st.integers(min_value=-30, max_value=30),
    sign=st.sampled_from(["", "+", "-"]),
)
def test_parse_quantity_equals_the_kubernetes_clients_for_generated_values(
    whole: str, fraction: str | None, suffix: str, exponent: int, sign: str
) -> None:
    text = whole + ("" if fraction is None else "." + fraction)
    if suffix.endswith("<n>"):  # the exponent form
        text += f"{suffix[0]}{sign if exponent >= 0 else ''}{exponent}"
    else:
        text += suffix
    assert parse_quantity(text) == _upstream_bytes(text)
