"""The footer of every screen: ``? help`` first, then at most the three most useful keys of the view.

Textual's Footer lists every binding, focused widget's first and the App's last, so at 80 columns the help
key fell off the end. This one keeps ``?`` and the first three bindings the screen itself declares as shown
(its binding list is ordered by use; ``escape`` is left to the help); every other key stays in ``?`` help.
``? help`` shows even while a text field that takes ``?`` has focus (the ``/`` filter line: Textual drops the
keys such a field consumes from the active bindings): a click on it opens help, and ``?`` does once the
field is left.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

#: How many of the view's own keys the footer shows after ``? help``.
FOOTER_KEYS = 3
HELP_ACTION = "help"


def footer_bindings(bindings: list[tuple[object, Binding, bool]], screen: object,
                    app_bindings: Sequence[Binding] = ()) -> list[tuple[Binding, bool]]:
    """``? help`` (from the App; from ``app_bindings`` when a focused field took its key) then the screen's
    first three shown bindings other than escape, one per action, in the screen's own order. ``bindings`` is
    (namespace, binding, enabled) as Textual lists them."""
    is_help = (HELP_ACTION, f"app.{HELP_ACTION}").__contains__
    help_key = [(b, e) for _ns, b, e in bindings if is_help(b.action)][:1]
    if not help_key:
        help_key = [(b, True) for b in app_bindings if is_help(b.action)][:1]
    own: list[tuple[Binding, bool]] = []
    seen: set[str] = set()
    for namespace, binding, enabled in bindings:
        if namespace is not screen or not binding.show or binding.key == "escape" or binding.action in seen:
            continue
        seen.add(binding.action)
        own.append((binding, enabled))
    return help_key + own[:FOOTER_KEYS]


class ShellFooter(Footer):
    """``? help`` and the view's three most useful keys, whatever the width."""

    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            return
        active = self.screen.active_bindings
        app_bindings = [binding for _key, binding in self.app._bindings]
        chosen = footer_bindings([(a.node, a.binding, a.enabled) for a in active.values()], self.screen, app_bindings)
        for binding, enabled in chosen:
            yield FooterKey(
                binding.key,
                self.app.get_key_display(binding),
                binding.description,
                binding.action,
                disabled=not enabled,
                tooltip=binding.tooltip or binding.description,
            ).data_bind(compact=Footer.compact)
