"""Code the tests share, one module per thing it holds; fixtures stay in the conftest files and build on it.

A test module never imports another test module or a conftest (tests/test_test_imports.py checks it).

- ``daemon``: a real ``modeltuid`` process on its own socket, the CLI run against it
- ``models``: small model directories to push; ``example_data``: the bundled example's labelled rows
- ``endpoints``: a deployment's HTTP endpoint; ``prometheus``: reading a /metrics exposition
- ``serving``: a serving runtime process; ``rawsock``: raw frames on the daemon's socket
- ``tui``: driving the real TUI with Pilot; ``fake_client``: the TUI against canned answers, no daemon;
  ``snapshots``: the screen as text, compared with stored files; ``pty_terminal``: the TUI in a real pty
- ``sshd``: a real OpenSSH sshd on 127.0.0.1 with keys it makes (the ``sshd`` fixture), for remote contexts
- ``docker_engine``, ``zookeeper``: the real services; ``fresh_clone``, ``readme_blocks``: the README's tests
- ``paths``, ``prerequisites``, ``waiting``, ``protocol_samples``: small shared facts
"""
