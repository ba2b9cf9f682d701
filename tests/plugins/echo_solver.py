"""A solver for data without a world graph: it states the gold answer the way a wordy model would, and its reply is
read as every free-text solver's is. What the pipeline then grades is known in advance for each metric: numeric
(said with a thousands separator) and acc are right; f1 names only the first of the gold spans."""

from rlrefine.solvers.model import text_result


class Echo:
    name, price_key = "echo", "solver"

    def solve(self, rows, subquestions):
        replies = []
        for row in rows:
            gold = row["answer"]
            if row["metric"] == "numeric":
                said = f"{int(gold):,} in all"
            elif row["metric"] == "f1":
                said = gold.split(", ")[0]
            else:
                said = f"it was {gold}"
            replies.append(f"Let me think.\nThe answer is: {said}.")
        return [text_result(reply, sq, 10, 5) for reply, sq in zip(replies, subquestions)]
