"""YAML loading with positions (runner.spec.yamlpos) and error rendering (runner.spec.errors)."""

from __future__ import annotations

import textwrap

import pytest

from runner.spec.errors import SpecError, SpecInvalid, format_path
from runner.spec.yamlpos import LoadedYaml, Positions, load_yaml

FILE = "specs/demo.yaml"


def load(text: str) -> LoadedYaml:
    return load_yaml(textwrap.dedent(text), FILE)


def load_errors(text: str) -> list[SpecError]:
    with pytest.raises(SpecInvalid) as info:
        load(text)
    return info.value.errors


# --- errors.py: rendering -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ((), ""),
        (("assistant",), "assistant"),
        (("assistant", "model"), "assistant.model"),
        (("conversation", 1, "expect", 0), "conversation[1].expect[0]"),
        (("conversation", 0, "tool_outputs", "get_weather", "template"),
         "conversation[0].tool_outputs.get_weather.template"),
        ((2, "bogus"), "[2].bogus"),
        ((0, 1), "[0][1]"),
    ],
)
def test_format_path(path, text):
    assert format_path(path) == text


def test_spec_error_str_with_and_without_path():
    assert str(SpecError("a.yaml", 3, 7, "conversation[1].expect[0]", "boom")) == (
        "a.yaml:3:7: conversation[1].expect[0]: boom"
    )
    assert str(SpecError("a.yaml", 1, 1, "", "the file is empty")) == "a.yaml:1:1: the file is empty"


def test_spec_invalid_sorts_errors_and_joins_messages():
    errors = [
        SpecError("b.yaml", 1, 1, "", "third"),
        SpecError("a.yaml", 9, 2, "x", "second"),
        SpecError("a.yaml", 2, 5, "y", "first"),
        SpecError("a.yaml", 2, 1, "z", "zeroth"),
    ]
    exc = SpecInvalid(errors)
    assert [e.message for e in exc.errors] == ["zeroth", "first", "second", "third"]
    assert str(exc).splitlines() == [
        "a.yaml:2:1: z: zeroth",
        "a.yaml:2:5: y: first",
        "a.yaml:9:2: x: second",
        "b.yaml:1:1: third",
    ]


# --- positions ------------------------------------------------------------------------------------

NESTED = """\
name: demo
assistant:
  model: echo
  tools:
    - name: get_weather
      parameters:
        type: object
conversation:
  - user: hi
  - user: "quoted {{ who }}"
    expect:
      - contains: x
      - regex: '^a'
      - {status: completed}
    instructions: |
      line one
      line two
"""


def test_data_is_plain_python():
    doc = load(NESTED)
    assert doc.file == FILE
    assert doc.data["assistant"]["tools"][0]["parameters"] == {"type": "object"}
    assert doc.data["conversation"][1]["expect"] == [{"contains": "x"}, {"regex": "^a"}, {"status": "completed"}]
    assert doc.data["conversation"][1]["instructions"] == "line one\nline two\n"


@pytest.mark.parametrize(
    ("path", "pos"),
    [
        ((), (1, 1)),
        (("name",), (1, 7)),
        (("assistant",), (3, 3)),  # a block mapping starts at its first key
        (("assistant", "model"), (3, 10)),
        (("assistant", "tools"), (5, 5)),  # a block sequence starts at its first dash
        (("assistant", "tools", 0), (5, 7)),
        (("assistant", "tools", 0, "name"), (5, 13)),
        (("assistant", "tools", 0, "parameters", "type"), (7, 15)),
        (("conversation", 0, "user"), (9, 11)),
        (("conversation", 1, "user"), (10, 11)),  # the opening quote
        (("conversation", 1, "expect", 0), (12, 9)),
        (("conversation", 1, "expect", 0, "contains"), (12, 19)),
        (("conversation", 1, "expect", 1, "regex"), (13, 16)),
        (("conversation", 1, "expect", 2), (14, 9)),  # a flow mapping starts at its brace
        (("conversation", 1, "expect", 2, "status"), (14, 18)),
        (("conversation", 1, "instructions"), (15, 19)),  # the block scalar indicator
    ],
)
def test_value_positions(path, pos):
    assert load(NESTED).positions.of_value(path) == pos


@pytest.mark.parametrize(
    ("path", "pos"),
    [
        (("name",), (1, 1)),
        (("assistant",), (2, 1)),
        (("assistant", "model"), (3, 3)),
        (("assistant", "tools", 0, "name"), (5, 7)),
        (("assistant", "tools", 0, "parameters", "type"), (7, 9)),
        (("conversation", 1, "expect"), (11, 5)),
        (("conversation", 1, "expect", 0, "contains"), (12, 9)),
        (("conversation", 1, "expect", 2, "status"), (14, 10)),
        (("conversation", 1, "instructions"), (15, 5)),
    ],
)
def test_key_positions(path, pos):
    assert load(NESTED).positions.of_key(path) == pos


def test_list_items_have_no_key_position_and_fall_back_to_the_value():
    doc = load(NESTED)
    assert ("conversation", 1) not in doc.positions.keys
    assert doc.positions.of_key(("conversation", 1)) == (10, 5)


def test_unknown_path_falls_back_to_nearest_located_ancestor():
    doc = load(NESTED)
    assert doc.positions.of_value(("conversation", 1, "expect", 0, "contains", "deeper", 3)) == (12, 19)
    assert doc.positions.of_value(("conversation", 7, "user")) == (9, 3)  # the conversation list
    assert doc.positions.of_value(("nothing", "here")) == (1, 1)


def test_empty_positions_default_to_line_one():
    assert Positions().of_value(("a", 1)) == (1, 1)
    assert Positions().of_key(("a",)) == (1, 1)


def test_error_points_at_value_or_key():
    doc = load(NESTED)
    at_value = doc.error(("conversation", 1, "expect", 0, "contains"), "bad")
    assert str(at_value) == f"{FILE}:12:19: conversation[1].expect[0].contains: bad"
    at_key = doc.error(("conversation", 1, "expect", 0, "contains"), "bad", at_key=True)
    assert (at_key.line, at_key.column) == (12, 9)
    assert at_key.path == "conversation[1].expect[0].contains"


def test_positions_with_crlf_line_endings_and_unicode():
    doc = load_yaml("a: 1\r\nb:\r\n  c: \"你好呀\"\r\n  d: 2\r\n", FILE)
    assert doc.data == {"a": 1, "b": {"c": "你好呀", "d": 2}}
    assert doc.positions.of_value(("b", "d")) == (4, 6)
    # columns count characters, not bytes
    assert doc.positions.of_key(("b", "d")) == (4, 3)


# --- scalar values --------------------------------------------------------------------------------


def test_scalar_types():
    doc = load("""\
        i: 42
        f: 1.5
        t: true
        n: null
        tilde: ~
        s: "42"
        """)
    assert doc.data == {"i": 42, "f": 1.5, "t": True, "n": None, "tilde": None, "s": "42"}
    assert type(doc.data["i"]) is int


def test_dates_and_binary_keep_the_text_that_was_written():
    doc = load("""\
        day: 2024-01-31
        stamp: 2024-01-31T10:00:00Z
        blob: !!binary aGVsbG8=
        """)
    assert doc.data == {"day": "2024-01-31", "stamp": "2024-01-31T10:00:00Z", "blob": "aGVsbG8="}


def test_scalar_keys_become_strings():
    doc = load("""\
        1: one
        2.5: two
        """)
    assert doc.data == {"1": "one", "2.5": "two"}
    assert doc.positions.of_key(("1",)) == (1, 1)
    assert doc.positions.of_value(("2.5",)) == (2, 6)


def test_aliases_reuse_the_anchored_value():
    doc = load("""\
        greeting: &hello "hi there"
        conversation:
          - user: *hello
          - user: *hello
        """)
    assert [t["user"] for t in doc.data["conversation"]] == ["hi there", "hi there"]
    # an alias is located where its anchor's value is
    assert doc.positions.of_value(("conversation", 1, "user")) == (1, 11)


# --- duplicate keys -------------------------------------------------------------------------------


def test_duplicate_top_level_key():
    errors = load_errors("""\
        name: one
        assistant:
          model: echo
        name: two
        """)
    assert [str(e) for e in errors] == [
        f"{FILE}:4:1: name: duplicate key 'name' (first defined on line 1)"
    ]


def test_duplicate_nested_key_in_list_item():
    errors = load_errors("""\
        conversation:
          - user: hi
          - user: hello
            expect:
              - contains: a
            user: again
        """)
    assert len(errors) == 1
    (err,) = errors
    assert (err.line, err.column) == (6, 5)
    assert err.path == "conversation[1].user"
    assert err.message == "duplicate key 'user' (first defined on line 3)"


def test_every_duplicate_is_reported_and_the_first_value_is_kept_for_the_message():
    errors = load_errors("""\
        a: 1
        b:
          c: 1
          c: 2
          c: 3
        a: 3
        """)
    assert [(e.line, e.column, e.path) for e in errors] == [(4, 3, "b.c"), (5, 3, "b.c"), (6, 1, "a")]
    assert [e.message for e in errors] == [
        "duplicate key 'c' (first defined on line 3)",
        "duplicate key 'c' (first defined on line 3)",
        "duplicate key 'a' (first defined on line 1)",
    ]


def test_duplicate_in_flow_mapping():
    errors = load_errors("check: {contains: a, contains: b}\n")
    assert [str(e) for e in errors] == [
        f"{FILE}:1:22: check.contains: duplicate key 'contains' (first defined on line 1)"
    ]


def test_same_key_in_different_mappings_is_fine():
    doc = load("""\
        conversation:
          - user: a
          - user: b
        user: c
        """)
    assert doc.data["user"] == "c"


# --- YAML syntax errors ---------------------------------------------------------------------------


def test_syntax_error_bad_indentation():
    errors = load_errors("""\
        a: 1
          b: 2
        """)
    assert [str(e) for e in errors] == [f"{FILE}:2:4: YAML syntax error: mapping values are not allowed here"]


def test_syntax_error_unterminated_quote_reports_where_the_problem_was_found():
    errors = load_errors("""\
        conversation:
          - user: "unterminated
            expect: []
        """)
    assert len(errors) == 1
    err = errors[0]
    assert (err.file, err.line, err.column) == (FILE, 4, 1)
    assert err.message.startswith("YAML syntax error: while scanning a quoted scalar")
    assert "found unexpected end of stream" in err.message


def test_syntax_error_tab_indentation():
    errors = load_errors("a:\n\tb: 1\n")
    assert (errors[0].line, errors[0].column) == (2, 1)
    assert errors[0].message.startswith("YAML syntax error:")
    assert "'\\t'" in errors[0].message


def test_syntax_error_unclosed_flow_sequence():
    errors = load_errors("""\
        name: x
        tags: [a, b
        other: 1
        """)
    assert (errors[0].line, errors[0].column) == (3, 6)
    assert str(errors[0]).startswith(f"{FILE}:3:6: YAML syntax error: while parsing a flow sequence")


def test_several_documents_are_rejected():
    errors = load_errors("""\
        a: 1
        ---
        b: 2
        """)
    assert [str(e) for e in errors] == [
        f"{FILE}:2:1: YAML syntax error: expected a single document in the stream but found another document"
    ]


def test_python_tags_are_refused_safely():
    errors = load_errors("run: !!python/object:os.system echo\n")
    assert (errors[0].line, errors[0].column) == (1, 6)
    assert errors[0].message.startswith("YAML syntax error:")
    assert "could not determine a constructor for the tag 'tag:yaml.org,2002:python/object:os.system'" in (
        errors[0].message
    )


def test_python_tags_on_collections_never_construct_objects():
    try:
        data = load("run: !!python/object/apply:os.system [echo hi]\n").data
    except SpecInvalid:
        return
    assert data == {"run": ["echo hi"]}  # the tag is ignored, never constructed


def test_undefined_alias():
    errors = load_errors("a: *nowhere\n")
    assert (errors[0].line, errors[0].column) == (1, 4)
    assert "found undefined alias 'nowhere'" in errors[0].message


# --- empty documents ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "   \n# x\n"])
def test_empty_file(text):
    with pytest.raises(SpecInvalid) as info:
        load_yaml(text, FILE)
    assert [str(e) for e in info.value.errors] == [f"{FILE}:1:1: the file is empty"]


def test_explicit_empty_document_is_null_not_an_error():
    assert load_yaml("---\n", FILE).data is None


# --- merge keys -----------------------------------------------------------------------------------


def test_merge_key_copies_the_anchored_mapping():
    doc = load("""\
        defaults: &defaults
          model: echo
          temperature: 0.2
        assistant:
          <<: *defaults
          name: Merged
        """)
    assert doc.data["assistant"] == {"model": "echo", "temperature": 0.2, "name": "Merged"}
    assert "<<" not in doc.data["assistant"]
    # merged values are located where they were written
    assert doc.positions.of_value(("assistant", "temperature")) == (3, 16)
    assert doc.positions.of_key(("assistant", "model")) == (2, 3)
    assert doc.positions.of_value(("assistant", "name")) == (6, 9)


def test_merge_key_with_a_list_of_mappings():
    doc = load("""\
        a: &a {x: 1}
        b: &b {y: 2}
        c:
          <<: [*a, *b]
          z: 3
        """)
    assert doc.data["c"] == {"x": 1, "y": 2, "z": 3}


def test_merge_key_needs_a_mapping():
    errors = load_errors("""\
        a: &a plain
        b:
          <<: *a
        """)
    assert errors[0].message.startswith("YAML syntax error:")
    assert "expected a mapping or list of mappings for merging" in errors[0].message


def test_explicit_key_overrides_a_merged_key():
    doc = load("""\
        defaults: &defaults
          model: echo
          name: Default
        assistant:
          <<: *defaults
          name: Override
        """)
    assert doc.data["assistant"] == {"model": "echo", "name": "Override"}


def test_keys_shared_by_merged_mappings_are_not_duplicates():
    doc = load("""\
        fast: &fast {temperature: 0.1, model: echo}
        named: &named {temperature: 0.9, name: Bot}
        assistant:
          <<: [*fast, *named]
        """)
    assert set(doc.data["assistant"]) == {"temperature", "model", "name"}


# --- keys that are not plain scalars --------------------------------------------------------------


def test_sequence_key_is_rejected():
    errors = load_errors("""\
        ok: 1
        ? [a, b]
        : 1
        """)
    assert [str(e) for e in errors] == [f"{FILE}:2:3: mapping keys must be plain scalars"]


def test_mapping_key_is_rejected_with_its_parent_path():
    errors = load_errors("""\
        outer:
          {a: 1}: x
        """)
    assert len(errors) == 1
    assert (errors[0].line, errors[0].column, errors[0].path) == (2, 3, "outer")
    assert errors[0].message == "mapping keys must be plain scalars"


def test_null_key_is_rejected():
    errors = load_errors("""\
        a: 1
        ~: 2
        """)
    assert [(e.line, e.column, e.message) for e in errors] == [(2, 1, "mapping keys must be plain scalars")]


def test_bad_keys_and_duplicates_are_all_reported_together():
    errors = load_errors("""\
        a: 1
        ? [x]
        : 2
        b:
          c: 1
          c: 2
        a: 3
        """)
    assert [(e.line, e.message) for e in errors] == [
        (2, "mapping keys must be plain scalars"),
        (6, "duplicate key 'c' (first defined on line 5)"),
        (7, "duplicate key 'a' (first defined on line 1)"),
    ]


# --- robustness -----------------------------------------------------------------------------------


def test_recursive_alias_is_a_spec_error():
    with pytest.raises(SpecInvalid):
        load("a: &x [1, *x]\n")


# --- hostile documents: limits and values that cannot be read ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "pos", "what"),
    [
        ("a: b\x00\n", (1, 5), 'U+0000 (NUL) is not allowed in a spec file: write it as an escape in a '
                               'double-quoted string ("\\x00")'),
        ("a: 1\n# \x1b[1m\n", (2, 3), "U+001B (ESC) is not allowed"),
        ("a: \"\x7f\"\n", (1, 5), "U+007F (DEL) is not allowed"),
        ("x:\n  - 你好\x85 \x9f\n", (2, 9), "U+009F (a control character) is not allowed"),  # NEL is YAML's
        ("a: \ufffe\n", (1, 4), "U+FFFE (a non-character) is not allowed"),
    ],
)
def test_a_control_character_is_reported_where_it_is(text, pos, what):
    (err,) = load_errors(text)
    assert (err.line, err.column) == pos and err.message.startswith(what)


def test_tab_newline_and_carriage_return_are_allowed():
    assert load_yaml("a:\t1\r\nb: \"x\\0y\"\n", FILE).data == {"a": 1, "b": "x\x00y"}


def test_nesting_is_refused_past_the_limit_where_it_passes_it():
    from runner.spec.limits import MAX_DEPTH

    assert load_yaml("[" * MAX_DEPTH + "]" * MAX_DEPTH, FILE).data is not None
    (err,) = load_errors("a: " + "[" * 5000 + "]" * 5000)
    assert (err.line, err.column) == (1, 4 + MAX_DEPTH - 1)
    assert err.message == f"mappings and lists nest more than {MAX_DEPTH} deep, the limit of a spec file"


def test_nesting_through_aliases_is_refused_too():
    text = "a0: &a0 " + "[" * 60 + "]" * 60 + "\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 10))
    (err,) = load_errors(text)
    assert err.message.startswith("aliases nest mappings and lists more than 64 deep")


def test_the_node_limit_stops_composing_and_says_so():
    from runner.spec.limits import MAX_NODES

    (err,) = load_errors("[" + "1, " * MAX_NODES + "]")
    assert err.message == f"the document has more than {MAX_NODES:,} keys and values, the limit of a spec file"
    assert err.line == 1 and err.column > 1


def test_aliases_repeating_aliases_are_refused_with_their_own_message():
    text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, n in zip("abcdefg", "bcdefgh", strict=True))
    (err,) = load_errors(text)
    assert err.message.startswith("aliases expand the document to more than 100,000 values")


def test_merges_that_double_at_each_level_are_refused_before_they_grow():
    text = "m0: &m0 {k: 1}\n" + "".join(f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], k{i}: 1}}\n" for i in range(1, 60))
    (err,) = load_errors(text)
    assert err.message.startswith("aliases expand the document")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: !!float hello\n", "'hello' cannot be read as !!float"),
        ("a: !!int x\n", "'x' cannot be read as !!int"),
        ("a: !!timestamp x\n", "'x' cannot be read as !!timestamp"),
        ("a: !!int\n", "'' cannot be read as !!int"),
        ("a: !!bool maybe\n", "'maybe' cannot be read as !!bool"),
        ("a: " + "1" * 5000 + "\n", "an integer of 5,000 digits is longer than the 4,300 digits allowed: quote it to "
                                    "keep it as text"),
        ("a: !!int 0b" + "1" * 20000 + "\n", "an integer longer than the 4,300 digits allowed"),
        ("a: !mine x\n", "YAML syntax error: could not determine a constructor for the tag '!mine'"),
    ],
)
def test_a_value_that_cannot_be_read_is_an_error_at_its_position(text, message):
    (err,) = load_errors(text)
    assert (err.line, err.column, err.path) == (1, 4, "a")
    assert err.message.startswith(message)


def test_a_key_that_cannot_be_read_is_an_error_and_the_others_are_still_checked():
    errors = load_errors("? !!float x\n: 1\nb: !!int y\n")
    assert [(e.line, e.message) for e in errors] == [(1, "'x' cannot be read as !!float"),
                                                      (3, "'y' cannot be read as !!int")]


def test_an_equals_sign_is_the_text_it_is():
    assert load_yaml("=: =\nb: [=]\n", FILE).data == {"=": "=", "b": ["="]}


def test_a_merge_of_a_list_item_that_is_not_a_mapping():
    (err,) = load_errors("a: &a [1]\nb: {<<: [*a]}\n")
    assert err.message == ("YAML syntax error: while constructing a mapping expected a mapping for merging, "
                           "but found sequence")


def test_duplicate_anchors_and_a_second_document_are_syntax_errors():
    (err,) = load_errors("a: &x 1\nb: &x 2\n")
    assert (err.line, err.column) == (2, 4) and "found duplicate anchor 'x'" in err.message


def test_an_alias_of_an_unreadable_value_is_reported_once():
    (err,) = load_errors("a: &x !!float nope\nb: *x\nc: [*x]\n")
    assert (err.line, err.column, err.message) == (1, 4, "'nope' cannot be read as !!float")
