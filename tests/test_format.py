import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rlrefine.core.format import (
    MAX_CHARS,
    MAX_SUBQUESTIONS,
    NO_DECOMPOSITION,
    Decomposition,
    completion_text,
    decomposer_messages,
    dynamic_messages,
    parse,
    prompt_key,
    render,
    solver_messages,
)

question = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="?"), min_size=1, max_size=60
).map(lambda s: s.strip().replace("\n", " ") + " ?")


@given(st.lists(question, max_size=3, unique=True))
def test_render_parse_round_trip(questions):
    questions = [q for q in questions if q.strip(" ?") and q.strip()[0] not in ":.)"]  # those start with junk
    parsed = parse(render(questions))
    assert list(parsed.subquestions) == [q.strip() for q in questions]
    assert parsed.valid


@settings(max_examples=300)
@given(st.one_of(st.text(), st.binary().map(lambda b: b.decode("latin-1")), st.none(), st.integers()))
@example("a\nb\nc\nd")
def test_parse_never_raises(text):
    parsed = parse(text)
    assert isinstance(parsed.subquestions, tuple) and isinstance(parsed.problems, tuple)
    assert (parsed.count > MAX_SUBQUESTIONS) == ("too_many_subquestions" in parsed.problems)  # named, never cut
    assert parsed.parseable or not parsed.valid  # what parses exactly holds a decomposition
    assert parsed.problems != ("no_subquestions",)  # never alone: the format reward's validity is unchanged by it


def test_problems_are_named():
    assert parse("").problems == ("empty",)
    assert parse("   \n ").problems == ("empty",)
    assert parse(NO_DECOMPOSITION).valid and parse(NO_DECOMPOSITION).count == 0
    assert "unnumbered_line" in parse("How many marbles does Ben have ?").problems
    assert "not_a_question" in parse("Q1: Ben Ben Ben").problems
    assert "misnumbered_line" in parse("Q2: How many ?").problems
    many = parse("\n".join(f"Q{i}: q{i} ?" for i in range(1, 6)))
    assert "too_many_subquestions" in many.problems and many.count == 5  # over the prompt's cap: named, kept
    assert "repeated_subquestion" in parse("Q1: a ?\nQ2: a ?").problems
    assert "overlong_line" in parse("Q1: " + "x" * 1000 + " ?").problems
    assert parse("1. How many ?\n2) What ?").subquestions == ("How many ?", "What ?")
    assert parse("No decomposition .\nQ1: a ?").problems == ("text_after_no_decomposition",)


def test_text_without_a_subquestion_line_is_not_parseable():
    """Prose, refusals and restated problems hold no decomposition; a decomposition with flaws does."""
    for text in (
        "",
        "To solve this problem, we first find how many eggs she lays.\nThen we multiply by $2.",
        "I'm sorry, I cannot help with that.",
        "1. Janet's ducks lay 16 eggs per day.\n2. She eats three for breakfast.",  # numbered facts, not questions
        "Q1:\nQ2:",
    ):
        assert not parse(text).parseable, text
    for text in (
        NO_DECOMPOSITION,
        "No decomposition .\nThe answer is 4.",
        "Q1: How many eggs ?\nQ2: How many eggs ?",  # repeated: flawed, parseable
        "Q1: Compute the eggs per day.",  # a Q line that is not a question
        "Here are the steps:\n1. How many eggs are left?",
        "- How many eggs are left?",
    ):
        assert parse(text).parseable, text
    assert parse("Sure! Janet sells 9 eggs.").problems == ("unnumbered_line", "not_a_question", "no_subquestions")


def test_completion_text_handles_trl_shapes():
    assert completion_text("Q1: a ?") == "Q1: a ?"
    assert completion_text([{"role": "assistant", "content": "Q1: a ?"}]) == "Q1: a ?"
    assert completion_text(None) == ""


def test_prompts_without_context_or_subquestions_have_no_blank_lines():
    """GSM8K-style rows carry everything in the question: the prompt must not start with an empty line."""
    assert decomposer_messages("", "How many ?", "")[-1]["content"] == "Question: How many ?"
    assert solver_messages("", "How many ?", [], "")[-1]["content"] == "Question: How many ?"
    story, subs = "Ava has 3 marbles .", ["How many marbles does Ava have ?"]
    assert (
        solver_messages(story, "How many ?", subs, None)[-1]["content"]
        == f"{story}\n{render(subs)}\nQuestion: How many ?"
    )
    assert decomposer_messages(story, "How many ?", None)[0]["role"] == "system"


def test_padding_with_question_marks_is_a_format_problem():
    padded = parse("Q1: How many cards does Pia have ?\nQ2: How many cards does Ada have ? ? ?")
    assert padded.subquestions[1] == "How many cards does Ada have ? ? ?"
    assert padded.problems == ("several_questions_in_one",) and not padded.valid


def test_stray_punctuation_after_the_number_is_named_and_dropped():
    parsed = parse("Q1: How many cards does Pia have ?\nQ2::: How many cards does Ada have ?")
    assert parsed.subquestions == ("How many cards does Pia have ?", "How many cards does Ada have ?")
    assert parsed.problems == ("stray_punctuation",)


def test_parse_reads_none_as_empty_and_any_other_object_as_its_text():
    assert parse(None) == Decomposition((), ("empty",))
    assert parse(42) == Decomposition(("42",), ("unnumbered_line", "not_a_question", "no_subquestions"))


@pytest.mark.parametrize("newline", ["\n", "\r", "\r\n", "\n\n  \n"])
def test_every_newline_convention_splits_lines_and_blank_lines_are_skipped(newline):
    parsed = parse(f"Q1: How many has Ava ?{newline}Q2: How many has Ben ?")
    assert parsed == Decomposition(("How many has Ava ?", "How many has Ben ?"))


@pytest.mark.parametrize("mark", [":", ".", ")"])
def test_stray_punctuation_after_the_number_is_named_and_dropped_for_each_mark(mark):
    parsed = parse(f"Q1{mark}{mark}{mark} How many has Ava ?")
    problems = ("stray_punctuation",) if mark == ":" else ("misnumbered_line", "stray_punctuation")  # Q1: is the form
    assert parsed == Decomposition(("How many has Ava ?",), problems)


def test_dropping_stray_punctuation_keeps_the_subquestions_own_first_letters():
    parsed = parse("Q1:: Xavier has how many ?\nQ2:.) X marks how many ?")
    assert parsed == Decomposition(("Xavier has how many ?", "X marks how many ?"), ("stray_punctuation",))


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        (MAX_CHARS - 1, ("x" * (MAX_CHARS - 2) + "?", ())),
        (MAX_CHARS, ("x" * (MAX_CHARS - 1) + "?", ())),  # at the limit: kept whole
        (MAX_CHARS + 1, ("x" * MAX_CHARS, ("overlong_line", "not_a_question"))),  # cut to the limit: its "?" is lost
    ],
)
def test_a_subquestion_over_max_chars_is_named_and_cut_to_max_chars(length, expected):
    subquestion, problems = expected
    assert MAX_CHARS == 300
    assert parse("Q1: " + "x" * (length - 1) + "?") == Decomposition((subquestion,), problems)


def test_an_empty_subquestion_line_is_named_and_the_lines_after_it_still_count():
    assert parse("Q1: How many has Ava ?\nQ2:\nQ3: How many has Ben ?") == Decomposition(
        ("How many has Ava ?", "How many has Ben ?"), ("empty_line",)
    )


@pytest.mark.parametrize(
    ("subquestion", "problems"),
    [
        ("How many has Ava ?", ()),
        ("How many has Ava ? Ben ?", ("several_questions_in_one",)),  # two question marks are already two
        ("How many ? has Ava ? ?", ("several_questions_in_one",)),
        ("How many has Ava", ("not_a_question",)),
    ],
)
def test_one_question_mark_per_subquestion(subquestion, problems):
    assert parse(f"Q1: {subquestion}").problems == problems


def test_prompt_key_is_twelve_hex_digits_that_change_with_the_prompt():
    user = [{"role": "user", "content": "Question: How many ?"}]
    key = prompt_key(user)
    assert re.fullmatch(r"[0-9a-f]{12}", key) and prompt_key([dict(user[0])]) == key  # stable for equal prompts
    others = {
        prompt_key([{"role": "user", "content": "Question: How many more ?"}]),
        prompt_key([{"role": "system", "content": "Question: How many ?"}]),
        prompt_key([{"role": "system", "content": ""}, *user]),
        prompt_key([]),
    }
    assert len(others) == 4 and key not in others


@pytest.mark.parametrize(
    ("completion", "text"),
    [
        ("Q1: a ?", "Q1: a ?"),
        ([{"role": "user", "content": "x"}, {"role": "assistant", "content": "Q1: a ?"}], "Q1: a ?"),  # the last one
        ([{"role": "assistant"}], ""),  # a message without content is empty, not "None"
        ([{"role": "assistant", "content": None}], ""),
        (None, ""),
        (42, "42"),
        ([], ""),  # no message: nothing written, not the text "[]" (which would parse as a sub-question)
        (["Q1: b ?", "Q1: a ?"], "Q1: a ?"),  # a list of texts: the last, as of messages
    ],
)
def test_completion_text_of_each_shape(completion, text):
    assert completion_text(completion) == text


PAPER_INSTRUCTION = (
    "Break the question into at most 3 sub-questions that a solver answers one by one before the question. "
    "Write them as Q1: ... , Q2: ... , or write No decomposition . if none is needed."
)
SHOWN = [  # the demonstration, as a teacher LLM sees it
    {
        "role": "user",
        "content": "Question: A shop sells pens at $2 each. Tom buys 3 pens and pays with a $10 bill. How much change "
        "does he get?",
    },
    {"role": "assistant", "content": "Q1: How much do 3 pens cost?\nQ2: How much is $10 minus the cost of the pens?"},
]
STORY_USER = {"role": "user", "content": "Ava has 3 marbles .\nQuestion: How many ?"}


def test_decomposer_messages_exactly():
    system = {"role": "system", "content": PAPER_INSTRUCTION}
    assert decomposer_messages("Ava has 3 marbles .", "How many ?") == [system, STORY_USER]  # no demonstration
    assert decomposer_messages("Ava has 3 marbles .", "How many ?", None, True) == [system, *SHOWN, STORY_USER]
    mine = {"role": "system", "content": "Decompose."}
    assert decomposer_messages("Ava has 3 marbles .", "How many ?", "Decompose.", True) == [mine, *SHOWN, STORY_USER]
    assert decomposer_messages("Ava has 3 marbles .", "How many ?", "") == [STORY_USER]


def test_dynamic_messages_exactly():
    history = [("How many has Ava ?", "3"), ("How many has Ben ?", None)]
    assert dynamic_messages("Ava has 3 marbles .", "How many ?", history, "Decompose.", True) == [
        {"role": "system", "content": "Decompose."},
        *SHOWN,
        STORY_USER,
        {"role": "assistant", "content": "Q1: How many has Ava ?"},
        {
            "role": "user",
            "content": "A1: 3\nWrite Q2: the next sub-question, or write No decomposition . if none is needed.",
        },
        {"role": "assistant", "content": "Q2: How many has Ben ?"},
        {
            "role": "user",
            "content": "A2: unknown\nWrite Q3: the next sub-question, or write No decomposition . if none is needed.",
        },
    ]
    assert dynamic_messages("", "How many ?", [], None) == decomposer_messages("", "How many ?", None)


def test_solver_messages_exactly():
    user = {"role": "user", "content": "Ava has 3 marbles .\nQ1: How many has Ava ?\nQuestion: How many ?"}
    paper = (
        "Answer the sub-questions in order, one line each as A1: ... , A2: ... , then answer the question on a last "
        "line that starts with: The answer is:"
    )
    subquestions = ["How many has Ava ?"]
    assert solver_messages("Ava has 3 marbles .", "How many ?", subquestions) == [
        {"role": "system", "content": paper},
        user,
    ]
    assert solver_messages("Ava has 3 marbles .", "How many ?", subquestions, "Solve.") == [
        {"role": "system", "content": "Solve."},
        user,
    ]
    assert solver_messages("Ava has 3 marbles .", "How many ?", subquestions, "") == [user]
