"""What the Models screen shows when the registry has no model yet."""

from __future__ import annotations

from textual.widgets import Static

from ..hints import push_example

#: What the hint always contains, whatever the program path.
PUSH_EXAMPLE = "examples/breast_cancer --alias production"


class EmptyRegistry(Static):
    """A centered hint saying how to push the bundled example."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(
            "The registry is empty.\n\nPush the bundled example with:\n\n"
            f"[b]{push_example()}[/b]",
            id=id,
        )
