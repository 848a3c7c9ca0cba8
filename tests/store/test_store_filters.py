"""The filter language: parsing, errors, parameters only, and fuzzing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite
from store_helpers import create_schema, drop_schema, schema_url, span

from traceway.store import FilterError, Store, open_store
from traceway.store.filters import Condition, compile_filter, parse_filter

FUZZ = settings(
    derandomize=True,  # the same examples on every run
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_conditions_are_parsed_and_normalised() -> None:
    text = (
        "status = 'error' and tags.`my key` != \"it's\" AND duration_ms >= 1.5e3 "
        "AND span_type NOT IN ('llm', 'Tool') AND start_time < '2025-01-01T00:00:00+01:00' "
        "AND metadata.user.id LIKE 'a\\_b%' AND span.name ILIKE 'X'"
    )
    at = text.index
    assert parse_filter(text) == [
        Condition("status", None, "=", "ERROR", 0),
        Condition("tags", "my key", "!=", "it's", at("tags")),
        Condition("duration_ms", None, ">=", 1500.0, at("duration_ms")),
        Condition("span_type", None, "NOT IN", ("LLM", "TOOL"), at("span_type")),
        Condition("start_time", None, "<", 1_735_686_000_000, at("start_time")),
        Condition("metadata", "user.id", "LIKE", "a\\_b%", at("metadata")),
        Condition("span.name", None, "ILIKE", "X", at("span.name")),
    ]


@pytest.mark.parametrize("text", [None, "", "   \n\t "])
def test_an_empty_filter_has_no_conditions(text: str | None) -> None:
    assert parse_filter(text) == []
    assert compile_filter(text) is None


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("'plain'", "plain"),
        ('"double"', "double"),
        (r"'it\'s'", "it's"),
        (r'"say \"hi\""', 'say "hi"'),
        (r"'back\\slash'", "back\\slash"),
        (r"'tab\tnew\nline\r'", "tab\tnew\nline\r"),
        (r"'100\%'", "100\\%"),  # unknown escapes keep their backslash (LIKE escapes)
        ("'ünïcødé ✓'", "ünïcødé ✓"),
    ],
)
def test_string_literals(literal: str, value: str) -> None:
    assert parse_filter(f"name = {literal}")[0].value == value


@pytest.mark.parametrize(
    ("literal", "value"),
    [("0", 0), ("-12", -12), ("3.25", 3.25), ("1e3", 1000.0), (".5", 0.5), ("2.", 2.0)],
)
def test_number_literals(literal: str, value: float) -> None:
    assert parse_filter(f"duration_ms > {literal}")[0].value == value


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("name =", "expected a value after '=' at position 6, but the filter ends there", 6),
        ("name = )", "expected a value after '=', got ')' at position 7", 7),
        ("duration_ms > > 5", "expected a value after '>', got '>' at position 14", 14),
        (
            "name = 'a' duration_ms > 1",
            "expected AND or the end of the filter, got 'duration_ms'",
            11,
        ),
        ("name = 'a' AND", "expected a field name at position 14, but the filter ends there", 14),
        ("AND name = 'a'", "expected a field name, got 'AND' at position 0", 0),
        ("bogus = 1", "unknown field 'bogus' at position 0; known fields: trace_id,", 0),
        ("span.kind = 'x'", "unknown field 'span.kind' at position 0", 0),
        ("tags = 'x'", "field 'tags' needs a key, as in tags.env at position 0", 0),
        ("tags. = 'x'", "missing key after 'tags.' at position 0", 0),
        ("name 'x'", "expected an operator (= != < <= > >= LIKE ILIKE IN NOT IN), got", 5),
        ("name NOT LIKE 'x'", "expected IN after NOT, got 'LIKE' at position 9", 9),
        ("name IN 'x'", "expected '(' after IN, got 'x' at position 8", 8),
        ("name IN ('x' 'y')", "expected ',' or ')' in the IN list, got 'y' at position 13", 13),
        ("name IN ()", "expected a value after '(', got ')' at position 9", 9),
        ("name = 'open", "unterminated string at position 7; it needs a closing '", 7),
        ("tags.`open = 'x'", "unterminated quoted key at position 5", 5),
        ("name = 5", "field 'name' takes a string, not the number 5 at position 7", 7),
        (
            "cost_usd = 'x'",
            "field 'cost_usd' takes a number, not the string 'x' at position 11",
            11,
        ),
        ("name > 'a'", "operator > does not apply to string field 'name' at position 5", 5),
        ("duration_ms LIKE 5", "operator LIKE does not apply to number field 'duration_ms'", 12),
        (
            "start_time > 'soon'",
            "cannot read 'soon' as a time at position 13; use milliseconds",
            13,
        ),
        ("name ! 'a'", "unexpected '!' at position 5; the not-equal operator is '!='", 5),
        ("name = 'a' ; drop", "unexpected character ';' at position 11", 11),
        ("duration_ms > 5ms", "invalid number '5m' at position 14", 14),
        ("duration_ms > 99999999999999999999", "number 99999999999999999999 is out of range", 14),
        ("cost_usd > 1e400", "number 1e400 is out of range at position 11", 11),
        ("name LIKE 'a\\\\'", "LIKE pattern 'a\\\\' ends with a lone backslash at position 10", 10),
        ("name = 'a\x00b'", "invalid character '\\x00' in string at position 9", 9),
        ("name = 'a\ud800'", "invalid character '\\ud800' in string at position 9", 9),
    ],
)
def test_errors_say_what_and_where(text: str, message: str, position: int) -> None:
    with pytest.raises(FilterError) as caught:
        parse_filter(text)
    assert str(caught.value).startswith(message)
    assert caught.value.position == position
    assert "\n" not in str(caught.value)


def test_too_many_values_are_refused() -> None:
    values = ", ".join(str(n) for n in range(1_001))
    with pytest.raises(FilterError, match="too many values"):
        parse_filter(f"duration_ms IN ({values})")


def test_very_long_filters_are_refused() -> None:
    with pytest.raises(FilterError, match="filter is too long"):
        parse_filter("name = '" + "x" * 30_000 + "'")


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()])
def test_values_reach_sql_only_as_parameters(dialect: object) -> None:
    sneaky = "x' OR '1'='1"
    expression = compile_filter(
        f"name = \"{sneaky}\" AND tags.`k'` = 'v' AND span_type IN ('LLM') AND duration_ms > 77"
    )
    assert expression is not None
    compiled = expression.compile(dialect=dialect)  # type: ignore[arg-type]
    sql = str(compiled)
    for value in (sneaky, "k'", "'v'", "LLM", "77"):
        assert value not in sql
    assert list(compiled.params.values()) == [sneaky, "k'", "v", ["LLM"], 77]


# --- fuzzing -------------------------------------------------------------------

_STRING_FIELDS = ["trace_id", "name", "status", "request_preview", "response_preview"]
_NUMBER_FIELDS = ["duration_ms", "span_count", "input_tokens", "output_tokens", "total_tokens"]
_SPAN_FIELDS = ["span_type", "span.name"]
_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12)
_spaces = st.sampled_from([" ", "  ", "\t", "\n "])


def _quoted(value: str, quote: str) -> str:
    escaped = value.replace("\\", "\\\\").replace(quote, "\\" + quote)
    return f"{quote}{escaped}{quote}"


_string_literal = st.builds(_quoted, _text, st.sampled_from(["'", '"']))
# A LIKE pattern cannot end in its escape character.
_like_literal = st.builds(
    _quoted, _text.map(lambda text: text.rstrip("\\")), st.sampled_from(["'", '"'])
)
_number_literal = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)
_time_literal = st.one_of(
    st.integers(0, 4_000_000_000_000).map(str),
    st.datetimes().map(lambda moment: f"'{moment.isoformat()}'"),
)
_key = st.one_of(
    st.from_regex(r"[A-Za-z0-9_.:/\-]{1,10}", fullmatch=True),
    st.builds(
        lambda key: "`" + key.replace("\\", "\\\\").replace("`", "\\`") + "`",
        _text.filter(bool),
    ),
)


@st.composite
def _condition(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["string", "keyed", "span", "number", "time"]))
    if kind in ("number", "time"):
        field = draw(
            st.sampled_from(
                ["start_time", "end_time"] if kind == "time" else [*_NUMBER_FIELDS, "cost_usd"]
            )
        )
        op = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">=", "IN", "NOT IN"]))
        value = _time_literal if kind == "time" else _number_literal
    else:
        if kind == "keyed":
            field = draw(st.sampled_from(["tags", "metadata"])) + "." + draw(_key)
        else:
            field = draw(st.sampled_from(_STRING_FIELDS if kind == "string" else _SPAN_FIELDS))
        op = draw(st.sampled_from(["=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"]))
        value = _like_literal if op in ("LIKE", "ILIKE") else _string_literal
    op = draw(st.sampled_from([op, op.lower(), op.title()]))
    if op.upper() in ("IN", "NOT IN"):
        values = draw(st.lists(value, min_size=1, max_size=4))
        rendered = "(" + ", ".join(values) + ")"
    else:
        rendered = draw(value)
    return f"{field}{draw(_spaces)}{op}{draw(_spaces)}{rendered}"


@st.composite
def valid_filters(draw: st.DrawFn) -> str:
    conditions = draw(st.lists(_condition(), min_size=1, max_size=4))
    joiner = draw(st.sampled_from([" AND ", " and ", "\nAnd\t"]))
    return joiner.join(conditions)


def _parses_or_filter_error(text: str) -> bool:
    """Compile; True if it compiled.  Any error but FilterError fails the test."""
    try:
        compile_filter(text)
    except FilterError as error:
        assert 0 <= error.position <= len(text)
        assert "\n" not in str(error)
        return False
    return True


@settings(FUZZ, max_examples=1_000)
@given(st.text(max_size=60))
def test_random_text_is_a_filter_or_a_filter_error(text: str) -> None:
    _parses_or_filter_error(text)


@settings(FUZZ, max_examples=400)
@given(
    st.text(
        st.sampled_from(list("()=!<>,'\"`.\\- _aeINOTANDLIKEtagsmetdurion_ms0123456789")),
        max_size=40,
    )
)
def test_filter_like_noise_is_a_filter_or_a_filter_error(text: str) -> None:
    _parses_or_filter_error(text)


@settings(FUZZ, max_examples=400)
@given(valid_filters(), st.data())
def test_truncated_filters_are_filters_or_filter_errors(text: str, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(text)))
    _parses_or_filter_error(text[:cut])


@settings(FUZZ, max_examples=400)
@given(valid_filters(), st.data())
def test_mutated_filters_are_filters_or_filter_errors(text: str, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(text)))
    junk = data.draw(st.sampled_from(["(", ")", "'", '"', "`", "=", "!", ",", "AND", "IN", "é"]))
    mutated = data.draw(
        st.sampled_from(
            [
                text[:position] + junk + text[position:],  # insert
                text[:position] + text[position + 1 :],  # delete
                text[:position] + junk + text[position + 1 :],  # replace
            ]
        )
    )
    _parses_or_filter_error(mutated)


@settings(FUZZ, max_examples=300)
@given(
    valid_filters(),
    st.sampled_from([" AND", " OR name = 'x'", " =", " (", " 'open", " AND bogus = 1", " ,"]),
)
def test_broken_filters_raise_filter_error(text: str, suffix: str) -> None:
    with pytest.raises(FilterError):
        compile_filter(text + suffix)


@settings(FUZZ, max_examples=300)
@given(_text, st.sampled_from(["'", '"']))
def test_string_values_round_trip(value: str, quote: str) -> None:
    (condition,) = parse_filter(f"request_preview = {_quoted(value, quote)}")
    assert condition.value == value


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def fuzz_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}"
    else:
        schema = create_schema()
        url = schema_url(schema)
    store = open_store(url)
    experiment = store.get_or_create_experiment("app").experiment_id
    store.write_spans(
        experiment,
        [span(1, 1, trace_tags={"env": "prod"}), span(1, 2, 1, span_type="LLM", cost_usd=0.1)],
    )
    yield store
    store.close()
    if schema is not None:
        drop_schema(schema)


@settings(FUZZ, max_examples=200)
@given(valid_filters())
def test_valid_filters_run_against_the_database(fuzz_store: Store, text: str) -> None:
    page, _ = fuzz_store.search_traces(filter=text)
    assert len(page) <= 1
