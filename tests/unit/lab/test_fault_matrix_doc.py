"""docs/fault-matrix.md is the table a real run of the fault matrix produced, for exactly the
cells the test covers: a cell added to or dropped from the test without regenerating the
table fails here."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
DOC = REPO / "docs" / "fault-matrix.md"


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


MATRIX = load(REPO / "tests" / "integration" / "test_fault_matrix.py", "fault_matrix_cells")
RENDER = load(REPO / "scripts" / "fault_matrix.py", "fault_matrix_render")


def table() -> tuple[list[str], dict[str, list[str]]]:
    """The phase titles of the header and, per fault, the row's cells."""
    rows = [line for line in DOC.read_text().splitlines() if line.startswith("| ")]
    header = [c.strip() for c in rows[0].strip("|").split("|")][1:]
    body = {}
    for line in rows[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        fault = re.match(r"`([a-z_]+)`", cells[0]).group(1)
        body[fault] = cells[1:]
    return header, body


def test_the_table_covers_exactly_the_cells_of_the_test():
    header, body = table()
    assert header == list(MATRIX.PHASES.values())
    assert list(body) == list(MATRIX.FAULTS)
    for fault, cells in body.items():
        for phase, text in zip(MATRIX.PHASES, cells, strict=True):
            if (phase, fault) in MATRIX.NOT_APPLICABLE:
                assert text == f"n/a: {MATRIX.NOT_APPLICABLE[(phase, fault)]}", (phase, fault)
            else:
                assert text.startswith(("**success**", "**stop**")), (phase, fault, text)


def test_the_table_shows_the_outcomes_the_design_asks_for():
    _, body = table()
    for fault, cells in body.items():
        for phase, text in zip(MATRIX.PHASES, cells, strict=True):
            if (phase, fault) in MATRIX.SUCCESS:
                assert text.startswith("**success**"), (phase, fault, text)
            elif (phase, fault) not in MATRIX.NOT_APPLICABLE:
                assert text.startswith("**stop**"), (phase, fault, text)


def test_the_table_is_what_the_renderer_makes_of_a_run():
    # The committed table was rendered, not edited: render a results file built from it and
    # compare the header lines (the renderer's wording).
    text = DOC.read_text()
    assert "never edited by hand" in text
    sample = RENDER.render({"mode": "default", "seconds": 1, "phases": MATRIX.PHASES, "faults": MATRIX.FAULTS,
                            "cells": []})
    def header(markdown: str) -> str:
        return next(line for line in markdown.splitlines() if line.startswith("| fault |"))

    assert header(sample) == header(text)
