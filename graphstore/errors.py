"""Errors caused by user input: the CLIs print them without a traceback and exit non-zero."""


class UserError(Exception):
    """A mistake in the user's input or arguments, with a message that says where."""


class InputRecordError(UserError):
    """A bad record in an input file; names the sample id and the field."""

    def __init__(self, sample_id: str, field: str, problem: str):
        self.sample_id, self.field, self.problem = sample_id, field, problem
        super().__init__(f"sample {sample_id}: field {field!r}: {problem}")
