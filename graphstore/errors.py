"""Errors caused by user input: the CLIs print them without a traceback and exit non-zero."""


class UserError(Exception):
    """A mistake in the user's input or arguments, with a message that says where."""


class InputRecordError(UserError):
    """A bad record in an input file; names the sample id and the field."""

    def __init__(self, sample_id: str, field: str, problem: str):
        self.sample_id, self.field, self.problem = sample_id, field, problem
        super().__init__(f"sample {sample_id}: field {field!r}: {problem}")


class SamplerError(UserError, ValueError):
    """A bad sampler argument (fanouts, relations, backend, seed ids) or relation array; a UserError and a ValueError."""


class NodeIdError(UserError, ValueError, IndexError):
    """A node id that is not an integer in 0..count-1 of its type (also a ValueError and an IndexError)."""


def check_node_id(v: object, node_type: str, count: int) -> int:
    """`v` as an int; NodeIdError naming it and the valid range when it is not an id of `node_type`."""
    if isinstance(v, bool) or not hasattr(v, "__index__"):
        raise NodeIdError(f"{node_type} id {v!r} is not an integer")
    i = v.__index__()
    if not 0 <= i < count:
        valid = f"0..{count - 1}" if count else "none: there are no nodes of this type"
        raise NodeIdError(f"{node_type} id {i} is out of range (valid ids: {valid})")
    return i
