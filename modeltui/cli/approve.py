"""``modeltui approve-code REF``: an admin approves running one version's code (docs/security.md,
"Code-running manifests and pickle files")."""

from __future__ import annotations

import click

from daemon.protocol import requests as q
from daemon.protocol import results as r

from ..client import DaemonClient
from .common import check_ref_arg, emit, json_option, main, out, run
from .render import plain


@main.command("approve-code")
@click.argument("ref", callback=check_ref_arg)
@click.option("--reason", default="", help="why (kept with the approval and in the audit trail)")
@json_option
@click.pass_context
def approve_code(ctx: click.Context, ref: str, reason: str, as_json: bool) -> None:
    """Approve running the code of version REF (python flavour, a pickle the scan refused, trusted = true,
    a training command), so operators may deploy and roll it out under [policy] run_code = "admin".
    Admins only; the version shown is the one approved (its digest is pinned)."""

    async def body(client: DaemonClient) -> r.CodeApprovalInfo:
        shown = await client.call(q.Show(ref=ref))
        v = shown.version
        return await client.call(q.ApproveCode(ref=f"{v.model}:{v.number}", digest=v.digest, reason=reason))

    result = run(ctx, body)

    def say() -> None:
        what = "; ".join(result.runs_code) or "nothing that runs code"
        out.print(plain(f"approved {result.model}:{result.version} ({what}) as {result.approved_by}"))

    emit(result, as_json, say)
