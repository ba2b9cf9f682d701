"""A dataset in one file: a function that returns a DatasetDict in any shape the schema can complete."""

from datasets import Dataset, DatasetDict


def problems(size: int = 3) -> DatasetDict:
    rows = [{"question": f"What is {i} + 5 ?", "answer": str(i + 5), "difficulty": i % 2} for i in range(size)]
    return DatasetDict({"train": Dataset.from_list(rows), "test": Dataset.from_list(rows)})
