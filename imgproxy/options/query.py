"""Pilbox's query string -> options: {name: last value, stripped}, as its get_argument."""

from __future__ import annotations

from urllib.parse import parse_qsl


def parse_query(raw_query: str) -> dict[str, str]:
    args: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True, errors="replace"):
        args[name] = value.strip()
    return args
