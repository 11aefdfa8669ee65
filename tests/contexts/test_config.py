"""The client config: contexts, the current one, and errors that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from modeltui.contexts import Context, ContextError, current_context_name, find_context, load_contexts


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_contexts_parse_with_local_first_and_prod_in_red(tmp_path: Path) -> None:
    path = write(tmp_path, """
current = "prod-b"
[contexts.prod-b]
ssh = "ops@host-b"
remote_socket = "/run/modeltui/modeltuid.sock"
ssh_args = ["-F", "/etc/ssh/work", "-vv", "-p2222", "-o", "ServerAliveInterval=10", "-Ci", "/k"]
readonly = true
[contexts.staging]
socket = "/srv/staging.sock"
color = "#00ff00"
""")
    contexts = load_contexts(path)
    assert [c.name for c in contexts] == ["local", "prod-b", "staging"]
    prod = find_context(contexts, "prod-b", path)
    assert prod == Context(name="prod-b", ssh="ops@host-b", remote_socket="/run/modeltui/modeltuid.sock",
                           ssh_args=("-F", "/etc/ssh/work", "-vv", "-p2222", "-o", "ServerAliveInterval=10", "-Ci",
                                     "/k"), color="red", readonly=True)
    assert prod.remote
    assert prod.bridge == "modeltui-bridge"
    assert find_context(contexts, "staging").socket == Path("/srv/staging.sock")
    assert not contexts[0].remote
    assert contexts[0].socket is None
    assert current_context_name(None, path) == "prod-b"
    assert current_context_name("staging", path) == "staging"


def test_no_config_is_just_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELTUI_CLIENT_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("MODELTUI_CONTEXT", raising=False)
    assert load_contexts() == [Context(name="local")]
    assert current_context_name() == "local"
    monkeypatch.setenv("MODELTUI_CONTEXT", "other")
    assert current_context_name() == "other"
    assert current_context_name("flag") == "flag"


@pytest.mark.parametrize(("text", "says"), [
    ('[contexts.a]\nssh = "h"\nsocket = "/s"\n', "contexts.a has both socket and ssh"),
    ('[contexts.a]\nsshh = "h"\n', "contexts.a.sshh is not a known key"),
    ('[contexts."a b"]\nssh = "h"\n', "a context name is"),
    ('[contexts.a]\nremote_socket = "/s"\n', "contexts.a.remote_socket needs ssh"),
    ('[contexts.a]\nssh = "-oProxyCommand=x"\n', "contexts.a.ssh must be a destination"),
    ('[contexts.a]\nssh = "h"\nssh_args = "-v"\n', "contexts.a.ssh_args must be a list of strings"),
    ('[contexts.a]\nssh = "h"\nssh_args = ["-t"]\n', "contexts.a.ssh_args: -t would break"),
    ('[contexts.a]\nssh = "h"\nssh_args = ["-vN"]\n', "contexts.a.ssh_args: -N would break"),
    ('[contexts.a]\nssh = "h"\nssh_args = ["-W", "h:22"]\n', "contexts.a.ssh_args: -W would break"),
    ('[contexts.a]\nssh = "h"\nssh_args = ["--", "x"]\n', "contexts.a.ssh_args: '--' is not"),
    ('[contexts.a]\nssh = "h"\nssh_args = ["-F", "/c", "ls"]\n', "contexts.a.ssh_args: 'ls' is not"),
    ('[contexts.a]\nssh = "h"\nssh_args = ["-p"]\n', "contexts.a.ssh_args: -p needs a value"),
    ('[contexts.a]\nssh = "h"\nssh_args = ["-Z"]\n', "contexts.a.ssh_args: -Z is not an ssh option"),
    ('[contexts.a]\nssh = "h"\nssh_args = ["-o", "RequestTTY=yes"]\n', "ssh_args: -o RequestTTY=yes would break"),
    ('[contexts.a]\nssh = "h"\nreadonly = "yes"\n', "contexts.a.readonly must be true or false"),
    ('[contexts.a]\nssh = "h"\ncolor = "red; x"\n', "contexts.a.color must be"),
    ('current = "nope"\n', "current = 'nope' names no context (local)"),
    ('colour = "red"\n', "colour is not a known key"),
    ('[contexts\n', "not valid TOML"),
])  # fmt: skip
def test_bad_configs_name_the_file_and_the_key(tmp_path: Path, text: str, says: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ContextError) as caught:
        load_contexts(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert says in str(caught.value)


def test_an_unknown_context_lists_the_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path, '[contexts.b]\nssh = "h"\n')
    with pytest.raises(ContextError, match=r"no context 'c' \(local, b\)"):
        find_context(load_contexts(path), "c", path)
