"""CSV that a spreadsheet opens as data, never as formulas (CSV or "formula" injection).

Spreadsheets run a cell that starts with =, +, - or @ as a formula (and strip a leading tab
or carriage return before looking), so a model output such as `=HYPERLINK("http://x", "y")`
in an export would become a live link or a command once opened. Following OWASP's CSV
injection advice, such a cell is written with a leading single quote: the spreadsheet then
shows the text as typed, and the quote is visible in any other reader, so nothing is hidden.

Numbers stay numbers. The decision: a value that *is* a number (int, float or Decimal; not
bool) is written unchanged, and so is text that is exactly a plain decimal number ("-0.5",
"+3", "1e-4"): a spreadsheet reads that as the number, it cannot hold a formula, and a
metric or "change" column (-0.1) must stay numeric. Everything else that starts with one
of the trigger characters gets the quote, e.g. "-1+1", "+cmd|' /C calc'!A0", "@SUM(A1)".

Every CSV the web app writes goes through `safe_cell` (directly or through `DictWriter`).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def safe_cell(value: Any) -> Any:
    """The value to hand to csv.writer: None as an empty cell, numbers unchanged, text that
    a spreadsheet would run as a formula prefixed with a single quote."""
    if value is None:
        return ""
    if isinstance(value, bool | int | float | Decimal):
        return value
    text = str(value)
    if text.startswith(TRIGGERS) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


class DictWriter(csv.DictWriter):  # type: ignore[type-arg]
    """csv.DictWriter whose every cell (header included) passes through `safe_cell`."""

    def writerow(self, rowdict: Mapping[str, Any]) -> Any:
        return super().writerow({k: safe_cell(v) for k, v in rowdict.items()})

    def writerows(self, rowdicts: Iterable[Mapping[str, Any]]) -> None:
        # csv.DictWriter.writerows does not go through writerow: route it there.
        for rowdict in rowdicts:
            self.writerow(rowdict)
