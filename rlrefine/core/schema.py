"""The problem schema, in one place: the columns every problem has, their types, and the defaults of the optional
ones. The world writes it, data loading checks and fills it, and RL hands every column of a row (these and any a
dataset adds) to the rewards, so a plugin solver reads the same row in RL as in evaluation."""

from datasets import Features, Sequence, Value

REQUIRED = ("question", "answer")
DEFAULTS = {"context": "", "subquestions": [], "metric": "numeric", "domain": "", "graph": "", "depth": 0}
FEATURES = Features(
    {
        "id": Value("string"),
        "domain": Value("string"),
        "context": Value("string"),
        "question": Value("string"),
        "answer": Value("string"),
        "subquestions": Sequence(Value("string")),
        "depth": Value("int32"),
        "metric": Value("string"),
        "graph": Value("string"),
    }
)
assert set(FEATURES) == {"id", *REQUIRED, *DEFAULTS}  # one schema: every column typed, every optional one defaulted
