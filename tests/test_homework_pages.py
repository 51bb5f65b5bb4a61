"""examples/homework: the pages are what the commands print today (golden files).

A change in cnncalc's output shows up here; refresh the pages with
``python examples/homework/make_pages.py`` and read the diff.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "homework" / "make_pages.py"


@pytest.fixture(scope="module")
def pages():
    spec = importlib.util.spec_from_file_location("make_pages", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_pages"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.build()


PAGE_OF_SEED = {"002": "convolutional-networks.md", "003": "correlation-and-normalization.md",
                "004": "backpropagation.md"}  # the homework sets, by their file names upstream


def test_every_homework_set_has_a_page(pages):
    seeds = Path(__file__).resolve().parents[2] / "shared" / "seeds"
    if seeds.is_dir():  # beside a checkout, shared/ holds the homework files themselves
        numbers = {p.name.split("_")[0] for p in seeds.glob("*.txt")}
        assert numbers <= set(PAGE_OF_SEED)
    assert set(pages) == set(PAGE_OF_SEED.values())


def test_every_section_states_its_problem(pages):
    for name, text in pages.items():
        sections = text.split("\n## ")[1:]
        assert sections, name
        for section in sections:
            assert "**The problem.**" in section, (name, section.splitlines()[0])


def test_pages_are_up_to_date(pages):
    for name, text in pages.items():
        on_disk = (SCRIPT.parent / name).read_text(encoding="utf-8")
        assert on_disk == text, f"{name} is stale: run python examples/homework/make_pages.py"


def test_pages_show_only_successful_runs_except_the_epsilon_demo(pages):
    failing = [line for text in pages.values() for line in text.splitlines()
               if line.startswith("$ cnncalc") and "# exits" in line]
    assert failing == ["$ cnncalc norm --kind batch '[[1,1,1],[0,2,4]]' --eps 0   # exits 2"]


def test_pages_carry_the_corrected_answers(pages):
    p2, p3, p4 = (pages[PAGE_OF_SEED[n]] for n in ("002", "003", "004"))
    assert "⌊(64 - 1·(3 - 1) + 2·1 - 1)/2⌋ + 1 = 32" in p2
    assert "X ⋆ Y = (4, 14, 27, 33, 27, 27)" in p3
    assert "18,624" in p4 and "17,984" in p4
    assert "-1.35026609251538" in p4  # δ⁽²⁾, not the seed's -1.368
