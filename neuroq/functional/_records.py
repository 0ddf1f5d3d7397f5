"""Shared machinery of the neuron parameter records (``IFParameters``, ``LIFParameters``, ...).

Each record is a frozen, keyword-only dataclass that checks itself in ``__post_init__`` (every error
names the field), normalises numbers to ``float``/``int``, and documents each field in
``field(metadata={"help": ...})`` -- the text a command line shows for ``--<field>``.
"""
from __future__ import annotations

import dataclasses

from .._validate import check_bool, check_int


def param(default, help: str):
    """A record field with its one-line help text (``metadata['help']``)."""
    return dataclasses.field(default=default, metadata={"help": help})


def set_field(record, name: str, value) -> None:
    """Assign a validated, normalised value in ``__post_init__`` of a frozen record."""
    object.__setattr__(record, name, value)


def check_record_bool(record, name: str) -> None:
    set_field(record, name, check_bool(name, getattr(record, name)))


def check_record_int(record, name: str, **bounds) -> None:
    set_field(record, name, check_int(name, getattr(record, name), **bounds))


def field_help(record_type) -> dict:
    """``{field name: (default, help)}`` of a record class, e.g. to build ``--tau`` options."""
    return {f.name: (f.default, f.metadata.get("help", "")) for f in dataclasses.fields(record_type)}
