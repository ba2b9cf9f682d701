"""A teacher that counts: the world's flawed teacher, appending to ``log`` one line per problem it is asked to
decompose and the process asking (how many teacher requests a multi-process run sends)."""

import os

from rlrefine.decomposers.teacher import FlawedTeacher


class Counting(FlawedTeacher):
    def __init__(self, log: str) -> None:
        super().__init__()
        self.log, self.name = log, "counting-teacher"

    def decompose(self, rows):
        with open(self.log, "a") as f:
            f.write("".join(f"{os.environ.get('RANK', '0')} {row['id']}\n" for row in rows))
        return super().decompose(rows)
