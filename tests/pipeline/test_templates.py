"""Templates: placeholders, the default template, nulls, NaN, HTML entities, empty rows."""

from __future__ import annotations

import pyarrow as pa
import pytest

from featctl.errors import TemplateError, UnknownColumnError
from featctl.pipeline.templates import Template, default_template

BATCH = pa.RecordBatch.from_pydict({
    "id": ["1", "2", "3"],
    "name": ["Tom &amp; Kit", "Café", None],
    "year": [1995.0, float("nan"), None],
    "episodes": ["12", "1", ""],
    "summary": ["Two friends.", "", None],
})


def test_placeholders_are_filled_and_cleaned() -> None:
    template = Template.parse("{name} ({year}). {summary}", BATCH.schema.names)
    assert template.render(BATCH) == ["Tom & Kit (1995). Two friends.", "Café ().", ""]


def test_unknown_column_lists_the_available_ones() -> None:
    with pytest.raises(UnknownColumnError, match="'title'.*available columns: id, name, year, episodes, summary"):
        Template.parse("{title}", BATCH.schema.names)


@pytest.mark.parametrize("text", ["no placeholders", "{", "", "  "])
def test_malformed_templates_are_refused(text: str) -> None:
    with pytest.raises(TemplateError):
        Template.parse(text, BATCH.schema.names)


@pytest.mark.parametrize("text", ["{name!r}", "{name:>10}", "{}"])
def test_format_syntax_is_not_a_column(text: str) -> None:
    with pytest.raises(UnknownColumnError, match="available columns"):
        Template.parse(text, BATCH.schema.names)


def test_any_column_name_works_in_templates() -> None:
    batch = pa.RecordBatch.from_pydict({"id": ["1"], "user.name": ["Bob"], "tags[0]": ["x"], "rating:avg": ["4.5"],
                                        "0": ["zero"], "{b}": ["braced"]})
    parsed = Template.parse("{user.name} {tags[0]} {rating:avg} {0}", batch.schema.names)
    assert parsed.render(batch) == ["Bob x 4.5 zero"]
    default = default_template(batch.schema, "id", batch)
    assert default.render(batch) == ["user.name: Bob\ntags[0]: x\n0: zero\n{b}: braced"]
    assert default.text == "user.name: {user.name}\ntags[0]: {tags[0]}\n0: {0}\n{{b}}: {{{b}}}"


def test_default_template_takes_text_columns_and_skips_empty_lines() -> None:
    template = default_template(BATCH.schema, "id", BATCH)
    assert template.text == "name: {name}\nsummary: {summary}"  # episodes are numbers, year is a float column
    rendered = template.render(BATCH)
    assert rendered == ["name: Tom & Kit\nsummary: Two friends.", "name: Café", ""]


def test_default_template_needs_a_text_column() -> None:
    batch = pa.RecordBatch.from_pydict({"id": [1], "n": [2]})
    with pytest.raises(TemplateError, match="no text column"):
        default_template(batch.schema, "id", batch)


def test_lists_of_strings_are_text() -> None:
    batch = pa.RecordBatch.from_pydict({"id": ["a1", "a2"], "tags": [["space", "western"], None], "n": [3, None]})
    assert default_template(batch.schema, "id", batch).text == "tags: {tags}"
    assert Template.parse("tags: {tags} ({n})", batch.schema.names).render(batch) == ["tags: space, western (3)", ""]


def test_empty_lines_of_a_template_are_kept_between_filled_ones() -> None:
    batch = pa.record_batch({"a": ["x", ""], "b": ["y", "z"]})
    assert Template.parse("{a}\n\n{b}", ["a", "b"]).render(batch) == ["x\n\ny", "z"]
    assert Template.parse("\n{a}\n", ["a", "b"]).render(batch) == ["x", ""]
