"""Command lines the node commands refuse before they start anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard import cli


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["agent", "--node-name", "n1", "--node-ip", "10.0.0.1", "--netns", "sb-none"],
            "switchboard agent: forwarding DNS to upstreams is not supported with --netns yet; "
            "drop --dns-upstreams-from",
        ),
        (
            ["dns", "--netns", "sb-none", "--listen", "10.0.0.1:53"],
            "switchboard dns: forwarding to upstreams is not supported with --netns yet; "
            "drop --upstream and --upstreams-from",
        ),
    ],
)
def test_forwarding_from_a_node_namespace_is_refused_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 192.0.2.53\n")
    kubeconfig = tmp_path / "kubeconfig"  # never read: the refusal comes first
    flag = "--dns-upstreams-from" if argv[0] == "agent" else "--upstreams-from"
    code = cli.main([*argv, "--kubeconfig", str(kubeconfig), flag, str(resolv)])
    assert code == 2
    assert capsys.readouterr().err.strip() == message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resolv.conf"]
