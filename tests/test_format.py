from hypothesis import example, given, settings
from hypothesis import strategies as st

from rlrefine.core.format import (
    MAX_SUBQUESTIONS,
    NO_DECOMPOSITION,
    completion_text,
    decomposer_messages,
    parse,
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
