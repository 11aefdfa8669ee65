"""The command line's parser and completion (pure: no App, no daemon)."""

from __future__ import annotations

import pytest

from modeltui.commands import Command, CommandError, parse_command
from modeltui.commands.complete import candidates, complete

NAMES = {"deployments": ["fraud-prod", "fraud-canary", "iris-production"], "contexts": ["local", "prod-eu"],
         "hosts": ["local", "host-b"]}


def names(kind: str) -> list[str]:
    return NAMES.get(kind, [])


@pytest.mark.parametrize(("text", "expected"), [
    ("models", Command("models")),
    (":models", Command("models")),
    ("  deploy  ", Command("deployments")),
    ("dp", Command("deployments")),
    ("deployments", Command("deployments")),
    ("DEPLOY", Command("deployments")),
    ("alerts", Command("alerts")),
    ("maint", Command("maint")),
    ("fleet", Command("fleet")),
    ("hosts", Command("hosts")),
    ("home", Command("home")),
    ("help", Command("help")),
    ("q", Command("quit")),
    ("quit", Command("quit")),
    ("deploy /fraud", Command("deployments", filter="fraud")),
    ("deploy /!fraud", Command("deployments", filter="!fraud")),
    ("deploy state=crashloop", Command("deployments", state="crashloop")),
    ("deploy State=CrashLoop", Command("deployments", state="crashloop")),
    ("deploy @host-b", Command("deployments", host="host-b")),
    ("deploy @host-b state=running /^fr.*d$", Command("deployments", filter="^fr.*d$", state="running",
                                                       host="host-b")),
    ("deploy /fraud @host-b state=failed", Command("deployments", filter="fraud", state="failed", host="host-b")),
    ("hosts /fraud state=failed", Command("hosts", filter="fraud", state="failed")),
    ("maint state=awaiting_approval", Command("maint", state="awaiting_approval")),
    ("alerts state=firing", Command("alerts", state="firing")),
    ("models /a|b", Command("models", filter="a|b")),
    ("logs fraud-prod", Command("logs", name="fraud-prod")),
    ("logs fraud-prod /error", Command("logs", filter="error", name="fraud-prod")),
    ("ctx prod-eu", Command("ctx", name="prod-eu")),
    ("context local", Command("ctx", name="local")),
])
def test_parse(text: str, expected: Command) -> None:
    assert parse_command(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("", "type a command"),
    (":", "type a command"),
    ("deplyo", "did you mean :deploy"),
    ("xyzzy", "unknown command 'xyzzy': commands: models deploy"),
    ("deploy /fr(aud", "bad regex 'fr(aud': missing ), unterminated subpattern at 2"),
    ("deploy /!(", "bad regex '('"),
    ("deploy state=sleeping", "no state 'sleeping' in deployments: pending, building"),
    ("models state=running", ":models takes no state="),
    ("models @host-b", "@HOST applies to :deploy and :hosts (not :models)"),
    ("alerts @host-b", "@HOST applies to :deploy and :hosts (not :alerts)"),
    ("home @host-b", "@HOST applies to :deploy and :hosts"),
    ("fleet @host-b", "@HOST applies to :deploy and :hosts"),
    ("deploy /fraud state=running", ":deploy applies /REGEX and state= together only with @HOST"),
    ("alerts state=firing /cpu", ":alerts applies /REGEX and state= together only"),
    ("deploy @", "@ needs a host name"),
    ("deploy fraud", "unexpected 'fraud': did you mean /fraud?"),
    ("deploy color=red", "unexpected 'color=red': options are /REGEX"),
    ("deploy /a /b", "the filter given twice ('a' and 'b')"),
    ("deploy state=running state=failed", "state= given twice"),
    ("logs", ":logs needs a deployment name"),
    ("logs /x", ":logs needs a deployment name"),
    ("ctx", ":ctx needs a context name"),
    ("ctx a b", ":ctx takes no more arguments (got 'b')"),
    ("help me", ":help takes no arguments"),
    ("q now", ":quit takes no arguments"),
])
def test_errors_say_what_to_type(text: str, message: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_command(text)
    assert message in str(caught.value)


@pytest.mark.parametrize(("text", "expected"), [
    ("", ["models", "deploy", "alerts", "maint", "fleet", "hosts", "home", "logs", "ctx", "help", "quit"]),
    ("de", ["deploy"]),
    ("h", ["hosts", "home", "help"]),
    ("deploy", []),  # complete already
    ("logs ", ["fraud-prod", "fraud-canary", "iris-production"]),
    ("logs fr", ["fraud-prod", "fraud-canary"]),
    ("log fraud-c", ["fraud-canary"]),
    ("ctx p", ["prod-eu"]),
    ("deploy @", ["@local", "@host-b"]),
    ("deploy @h", ["@host-b"]),
    ("models @", []),  # models have no hosts
    ("deploy st", ["state="]),
    ("deploy state=cr", ["state=crashloop"]),
    ("maint state=aw", ["state=awaiting_approval"]),
    ("deploy /fr", []),
    ("nope x", []),
])
def test_candidates(text: str, expected: list[str]) -> None:
    assert candidates(text, names) == expected


def test_complete_keeps_what_was_typed_before_the_last_word() -> None:
    assert complete(":de", names) == ":deploy"
    assert complete("deploy /x state=cr", names) == "deploy /x state=crashloop"
    assert complete("logs iris", names) == "logs iris-production"
    assert complete("logs zzz", names) is None
