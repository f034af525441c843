"""docs/results: every number a discussion quotes is one of the tables it discusses, and every verdict in a
targets table follows from its threshold and measured value.

A *discussion* is a hand-written `docs/results/<page>_discussion.md` (checked against `<page>.md`), or a part of
a generated page between `<!-- discussion ... -->` and `<!-- /discussion -->` (checked against the same page's
tables outside those parts). A quoted number matches a table number when they agree to the quoted number's
printed precision (`86.3%` quotes `86.32%`, `6.8 M` quotes `6,836,224`, `0.44` quotes `+0.44`). Not checked,
on purpose and only these:

- text in backticks, code blocks, HTML comments and link targets (settings such as `lr=3e-4`, file names);
- numbers that are part of a name or a formula: glued to a letter or `@`/`/`/`-` before them (`GPT-2`,
  `CRATE-B/16`, `R@5`) or to a letter, a superscript or `-letter` after them (`8k`, `12d²`, `10⁵`, `4-layer`);
- references: a number after `Table`, `Tables`, `§`, `Eq.`, `Fig.` or `Figure` (`Table 8.18`, `§8.4`);
- quotations of the book: a parenthesis that opens with `book` (`(book: GPT-2-base 2.85 < CRATE-base 3.37)`),
  the rest of a `;`-separated part that opens with `book` (`(gap 0.32; book 0.36)`), and
  table columns whose header starts with `book`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
DISCUSSION_START = re.compile(r"<!--\s*discussion\b.*?-->")
DISCUSSION_END = "<!-- /discussion -->"
NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")
REFERENCE = re.compile(r"(?:\bTables?|\btables?|§|\bEq\.|\bFig\.|\bFigure)\s*\d+(?:\.\d+)*"
                       r"(?:\s*(?:,|and|–|-)\s*\d+(?:\.\d+)*)*")
SUPERSCRIPTS = "⁰¹²³⁴⁵⁶⁷⁸⁹"
SCALES = {"M": 1e6, "k": 1e3, "B": 1e9}
HINT = ("write each number as a table of the page prints it (any coarser rounding is fine), add the value to the "
        "report's tables, or, for a name, reference or quotation of the book, use one of the exemptions listed "
        "in tests/test_results_pages.py's docstring")


@dataclass(frozen=True)
class Number:
    text: str
    value: float  # absolute value, scale applied
    resolution: float  # one unit of the last printed digit, scale applied
    line: int


def _blank(text: str, pattern: str | re.Pattern, flags: int = 0) -> str:
    """Replace each match by spaces of the same length, keeping line numbers and offsets."""
    return re.sub(pattern, lambda m: re.sub(r"[^\n]", " ", m.group()), text, flags=flags)


def _strip_non_prose(text: str) -> str:
    text = _blank(text, r"```.*?```", re.S)
    text = _blank(text, r"<!--.*?-->", re.S)
    text = _blank(text, r"`[^`\n]*`")
    return _blank(text, r"\]\([^)\n]*\)")


def _strip_book_quotes(text: str) -> str:
    out = list(text)
    for match in re.finditer(r"\(\s*book\b", text):  # "(book ...)", with nested parentheses
        depth, end = 0, match.start()
        for end in range(match.start(), len(text)):
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            if depth == 0:
                break
        out[match.start():end + 1] = re.sub(r"[^\n]", " ", text[match.start():end + 1])
    return _blank("".join(out), r"(?<=;)\s*book\b[^;)\n]*")


def _numbers(text: str, skip_names: bool = True) -> list[Number]:
    found = []
    for match in NUMBER.finditer(text):
        start, end = match.span()
        before, after = text[start - 1] if start else " ", text[end:end + 2] + "  "  # never empty: "" is in any str
        if skip_names:
            glued_before = before.isalpha() or before in "@/_" or (
                before == "-" and start >= 2 and text[start - 2].isalnum())
            glued_after = after[:1].isalpha() or after[:1] in SUPERSCRIPTS + "_" or (
                after[:1] == "-" and after[1:2].isalpha())
            if glued_before or glued_after:
                continue
        digits = match.group().replace(",", "")
        decimals = len(digits.split(".")[1]) if "." in digits else 0
        scale_match = re.match(r" ?([MkB])\b", text[end:end + 3])
        scale = SCALES[scale_match.group(1)] if scale_match else 1.0
        found.append(Number(match.group(), float(digits) * scale, 10.0**-decimals * scale,
                            text.count("\n", 0, start) + 1))
    return found


def _tables(text: str) -> list[tuple[list[str], list[list[str]], int]]:
    """Markdown tables of ``text``: (header cells, body rows, line number of the header)."""
    tables, lines = [], text.split("\n")
    i = 0
    while i < len(lines) - 1:
        if lines[i].lstrip().startswith("|") and re.match(r"^\s*\|[\s:|-]+\|\s*$", lines[i + 1]):
            split = lambda line: [cell.strip() for cell in line.strip().strip("|").split("|")]  # noqa: E731
            header, rows, j = split(lines[i]), [], i + 2
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                rows.append(split(lines[j]))
                j += 1
            tables.append((header, rows, i + 1))
            i = j
        else:
            i += 1
    return tables


def split_discussions(text: str) -> tuple[str, str]:
    """``(source, discussion)``: the page with its discussion parts blanked, and only those parts (both keep
    the page's line numbers)."""
    source, discussion, position = [], [], 0
    for start in DISCUSSION_START.finditer(text):
        if start.start() < position:
            continue
        stop = text.find(DISCUSSION_END, start.end())
        assert stop >= 0, f"a discussion opened at line {text.count(chr(10), 0, start.start()) + 1} is never closed"
        source += [text[position:start.start()], _blank(text[start.start():stop], r"[^\n]+")]
        discussion += [_blank(text[position:start.end()], r"[^\n]+"), text[start.end():stop]]
        position = stop
    source.append(text[position:])
    discussion.append(_blank(text[position:], r"[^\n]+"))
    return "".join(source), "".join(discussion)


def table_numbers(text: str) -> list[Number]:
    numbers = []
    for header, rows, _ in _tables(_strip_non_prose(text)):
        for cells in [header, *rows]:
            numbers += _numbers(" | ".join(cells))
    return numbers


def discussed_numbers(text: str) -> list[Number]:
    """The numbers a discussion quotes, less the exemptions of the module docstring."""
    text = _strip_non_prose(text)
    lines = text.split("\n")
    for header, rows, line in _tables(text):  # blank the cells of "book ..." columns
        book = [i for i, name in enumerate(header) if name.lower().startswith("book")]
        for offset, cells in enumerate(rows):
            kept = ["" if i in book else cell for i, cell in enumerate(cells)]
            lines[line + 1 + offset] = "| " + " | ".join(kept) + " |"
        lines[line - 1] = ""  # the header names the columns
    text = _blank(_strip_book_quotes("\n".join(lines)), REFERENCE)
    return _numbers(text)


def unquoted(discussed: list[Number], tables: list[Number]) -> list[Number]:
    def quotes(number: Number, table: Number) -> bool:
        return (table.resolution <= number.resolution * (1 + 1e-9)
                and abs(table.value - number.value) <= number.resolution / 2 * (1 + 1e-9) + 1e-12)

    return [number for number in discussed if not any(quotes(number, table) for table in tables)]


def _report(path: Path, text: str, missing: list[Number], against: str) -> str:
    lines = text.split("\n")
    listed = "\n".join(f"  {path.name}:{n.line}: {n.text!r} in: {lines[n.line - 1].strip()[:160]}" for n in missing)
    return f"{len(missing)} number(s) of {path.name} appear in no table of {against}:\n{listed}\nFix: {HINT}."


# --- the checker itself can fail -------------------------------------------------------------------------------

TABLE = """| model | parameters | loss | loss − GPT-2 | tokens/s vs GPT-2 |
|---|---:|---:|---:|---:|
| GPT-2 | 6,836,224 | 4.9478 | +0.00 | 1.00× |
| ToST | 6,048,048 | 5.2699 | +0.32 | 1.53× |
"""


@pytest.mark.parametrize("sentence, bad", [
    ("ToST reaches 5.27, 0.32 nats behind GPT-2, 1.5× faster, with 6.0 M parameters.", []),
    ("ToST reaches 5.28.", ["5.28"]),
    ("ToST has 6.1 M parameters and 6,048,048 weights.", ["6.1"]),
    ("A loss of 5.26990.", ["5.26990"]),  # more precise than the table
    ("GPT-2, CRATE-B/16, R@5, an 8k tokenizer, 12d² weights, 10⁵ steps and a 4-layer model.", []),
    ("As in Table 8.22 and §8.4 (Eq. 8.3), with `lr=3e-4`, see [plot](fig_2.png).", []),
    ("Gap 0.32 (book: ToST-B 3.20 vs GPT-2-base 2.84 (OWT)); ours 0.32 (gap 0.32; book 0.36).", []),
    ("Gap 0.36 nats (book 0.36).", ["0.36"]),  # outside the quotation, 0.36 is ours: not in the table
])
def test_the_checker_flags_exactly_the_unquoted_numbers(sentence, bad):
    assert [n.text for n in unquoted(discussed_numbers(sentence), table_numbers(TABLE))] == bad


def test_book_columns_of_a_discussion_table_are_quotations():
    discussion = ("| book table | book's ordering | ours | agrees? |\n|---|---|---|---|\n"
                  "| 8.22 | GPT-2 2.84 < ToST 3.20 | GPT-2 4.95 < ToST 5.27 | yes (gap 0.32; book 0.36) |\n"
                  "| 8.24 | GPT-2 4.32 | ToST 5.29 | no |\n")
    assert [n.text for n in unquoted(discussed_numbers(discussion), table_numbers(TABLE))] == ["5.29"]


def test_discussion_parts_are_split_from_the_tables_they_discuss():
    page = TABLE + "\n<!-- discussion: x -->\nToST: 5.27 and 9.99.\n| a | b |\n|---|---|\n| 9.99 | 77 |\n" \
        + DISCUSSION_END + "\nAfter: 7.77\n"
    source, discussion = split_discussions(page)
    assert "9.99" not in source and "7.77" in source and "7.77" not in discussion
    # A table inside the discussion is not a source: 9.99 is reported twice (prose and its own table).
    assert [n.text for n in unquoted(discussed_numbers(discussion), table_numbers(source))] == ["9.99", "9.99", "77"]


# --- the committed pages ---------------------------------------------------------------------------------------

DISCUSSION_FILES = sorted(RESULTS.glob("*_discussion.md"))
PAGES = sorted(path for path in RESULTS.glob("*.md") if path not in DISCUSSION_FILES)


def test_there_are_discussions_to_check():
    assert DISCUSSION_FILES, "docs/results has no *_discussion.md"
    pages_with_parts = [path.name for path in PAGES if DISCUSSION_START.search(path.read_text())]
    assert {"fashion_mnist.md", "language.md"} <= set(pages_with_parts)


@pytest.mark.parametrize("discussion", DISCUSSION_FILES, ids=lambda p: p.name)
def test_every_number_of_a_discussion_file_is_in_the_tables_of_its_page(discussion):
    page = discussion.with_name(discussion.name.replace("_discussion.md", ".md"))
    assert page.is_file(), f"{discussion.name} discusses {page.name}, which does not exist"
    text = discussion.read_text()
    source, _ = split_discussions(page.read_text())
    numbers = discussed_numbers(text)
    assert len(numbers) >= 10, f"{discussion.name}: only {len(numbers)} checked numbers; is the parser broken?"
    missing = unquoted(numbers, table_numbers(source))
    assert not missing, _report(discussion, text, missing, page.name + " (outside its discussion parts)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_number_of_a_discussion_part_is_in_the_tables_of_its_page(page):
    text = page.read_text()
    source, discussion = split_discussions(text)
    missing = unquoted(discussed_numbers(discussion), table_numbers(source))
    assert not missing, _report(page, text, missing, page.name + " (outside its discussion parts)")


@pytest.mark.parametrize("discussion", DISCUSSION_FILES, ids=lambda p: p.name)
def test_a_generated_page_embeds_its_current_discussion(discussion):
    page = discussion.with_name(discussion.name.replace("_discussion.md", ".md"))
    assert discussion.read_text().strip() in split_discussions(page.read_text())[1], (
        f"{page.name} does not hold the current {discussion.name}: rerun its training/report_*.py script")


def _threshold(cell: str) -> tuple[str, float]:
    match = re.match(r"^\s*([≥≤])\s*([-+−]?[\d.,]+)", cell)
    assert match, f"threshold {cell!r} is not '≥ value' or '≤ value'"
    return match.group(1), float(match.group(2).replace(",", "").replace("−", "-"))


def _value(cell: str) -> float:
    match = re.search(r"[-+−]?\d[\d,]*(?:\.\d+)?", cell)
    assert match, f"no value in {cell!r}"
    return float(match.group().replace(",", "").replace("−", "-"))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_target_verdicts_follow_from_the_values(page):
    for header, rows, line in _tables(page.read_text()):
        names = [name.lower() for name in header]
        if not {"threshold", "measured", "verdict"} <= set(names):
            continue
        for cells in rows:
            row = dict(zip(names, cells))
            sign, threshold = _threshold(row["threshold"])
            measured = _value(row["measured"])
            holds = measured >= threshold if sign == "≥" else measured <= threshold
            assert math.isfinite(measured)
            verdict = row["verdict"].strip("* ")
            assert verdict == ("met" if holds else "missed"), f"{page.name}:{line}: {cells}"
