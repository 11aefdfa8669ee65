"""Registry commands of the CLI: init, push, checkout, ls, log, show, diff, tag, describe, alias, rollback,
rm and gc."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from daemon.protocol import requests as q
from daemon.protocol import results as r
from daemon.protocol.errors import EXIT_CODES, ErrorCode, ProtocolError
from daemon.protocol.names import check_alias, check_tag_key, parse_ref

from .. import format as fmt
from ..client import DaemonClient
from . import render
from .common import check_ref_arg, emit, err, fail, json_option, main, out, parse_tags, parse_time, run, validated
from .deployments import rollout_waiter
from .manifest import build_manifest, write_manifest
from .signing import find_key, key_option, say_signed, sign_version
from .transfer import checkout, push_directory


# -- init / push / checkout ----------------------------------------------------------------------------------
@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", help="model name (default: the directory's name)")
@click.option("--flavor", type=click.Choice(["sklearn", "onnx", "python"]))
@click.option("--model-file", help="the model file inside DIR (default: guessed)")
@click.option("--data", help="a CSV in DIR to take the input signature from")
@click.option("--target", help="the label column of --data (excluded from inputs)")
@click.option("--description", default="", help="one line about the model")
@click.option("--force", is_flag=True, help="overwrite an existing modeltui.toml")
def init(directory: Path, name: str | None, flavor: str | None, model_file: str | None, data: str | None,
         target: str | None, description: str, force: bool) -> None:
    """Write a modeltui.toml manifest for DIRECTORY."""
    try:
        manifest = build_manifest(directory, name=name, flavor=flavor, model_file=model_file, data=data,
                                  target=target, description=description)
        path = write_manifest(directory, manifest, force=force)
    except FileExistsError as exc:
        fail(str(exc), 5)
    except (OSError, ValueError, StopIteration) as exc:
        fail(f"cannot write the manifest: {exc}", 4)
    err.print(render.plain(f"wrote {path}; edit it, then: modeltui push {directory}"))


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", help="model name (default: from the manifest)")
@click.option("-m", "--message", default="", help="what changed")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="repeatable")
@click.option("--alias", help="also point this alias at the pushed version")
@click.option("--sign", "sign_it", is_flag=True, help="sign the version with your SSH key (see modeltui sign)")
@key_option
@json_option
@click.pass_context
def push(ctx: click.Context, directory: Path, name: str | None, message: str, tags: tuple[str, ...],
         alias: str | None, sign_it: bool, key: Path | None, as_json: bool) -> None:
    """Push DIRECTORY as a new immutable version (identical content returns the existing one)."""
    tag_map = parse_tags(tags)
    if alias is not None:
        validated(check_alias, alias)
    show_bar = not as_json and sys.stderr.isatty()
    sign_it = sign_it or key is not None
    signed: list[r.SignResult] = []

    async def body(client: DaemonClient) -> tuple[r.PushResult, int]:
        if not sign_it:
            return await pushing(client, alias)
        # Signed before the alias moves: under [signing] require = "promote" an alias moves to signed versions only.
        found = await asyncio.to_thread(find_key, key)  # no key to sign with: nothing is pushed
        pushed, copied = await pushing(client, None)
        v = pushed.version
        try:
            signed.append(await sign_version(client, v.model, v.number, v.digest, key, found))
        except ProtocolError as exc:
            raise ProtocolError(exc.code, f"pushed {v.model}:{v.number} but did not sign it: {exc.message}") from None
        if alias is not None:
            move = q.AliasSet(name=v.model, alias=alias, version=v.number, reason=f"push --sign {v.number}")
            await client.call(move)
            moved = v.model_copy(update={"aliases": sorted({*v.aliases, alias})})
            pushed = pushed.model_copy(update={"version": moved})
        return pushed, copied

    async def pushing(client: DaemonClient, alias: str | None) -> tuple[r.PushResult, int]:
        if not show_bar:
            return await push_directory(client, directory, name=name, message=message, tags=tag_map, alias=alias)
        with Progress(TextColumn("pushing"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                      console=err, transient=True) as bar:
            task = bar.add_task("push", total=None)

            def progress(done: int, total: int, _path: str) -> None:
                bar.update(task, completed=done, total=total)

            return await push_directory(client, directory, name=name, message=message, tags=tag_map, alias=alias,
                                        progress=progress)

    result, copied = run(ctx, body)
    v = result.version

    def human() -> None:
        verb = "pushed" if result.created else "unchanged, already"
        out.print(render.plain(f"{verb} {v.model}:{v.number}  {v.digest[:12]}  {v.file_count} files, "
                               f"{fmt.size(v.size)} ({fmt.size(copied)} copied)"))
        if signed:
            say_signed(signed[0])
        if alias:
            out.print(f"{v.model}@{alias} -> {v.number}")

    signature = {"signature": signed[0].signature.model_dump(mode="json")} if signed else {}
    emit({**result.model_dump(mode="json"), "bytes_copied": copied, **signature}, as_json, human)


@main.command("checkout")
@click.argument("ref", callback=check_ref_arg)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="write into a non-empty directory")
@json_option
@click.pass_context
def checkout_cmd(ctx: click.Context, ref: str, directory: Path, force: bool, as_json: bool) -> None:
    """Write the files of REF into DIRECTORY, byte-exact and sha256-verified."""
    result = run(ctx, lambda c: checkout(c, ref, directory, force=force))
    emit(result, as_json, lambda: out.print(render.plain(
        f"checked out {result.version.model}:{result.version.number} into {directory} "
        f"({len(result.files)} files, verified)")))


# -- queries ---------------------------------------------------------------------------------------------------
@main.command("ls")
@click.argument("query", required=False)
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1, 1000))
@click.option("--offset", default=0, type=click.IntRange(0))
@json_option
@click.pass_context
def ls(ctx: click.Context, query: str | None, limit: int, offset: int, as_json: bool) -> None:
    """List models (QUERY filters by name)."""
    result = run(ctx, lambda c: c.call(q.ListModels(query=query, limit=limit, offset=offset)))
    emit(result, as_json, lambda: out.print(render.models_table(result)))


@main.command()
@click.argument("name")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--offset", default=0, type=click.IntRange(0))
@json_option
@click.pass_context
def log(ctx: click.Context, name: str, limit: int, offset: int, as_json: bool) -> None:
    """The versions of model NAME, newest first."""
    result = run(ctx, lambda c: c.call(q.Log(name=name, limit=limit, offset=offset)))
    emit(result.json_items(), as_json, lambda: out.print(render.versions_table(result)))


@main.command()
@click.argument("ref", callback=check_ref_arg)
@json_option
@click.pass_context
def show(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Show a version: NAME (latest), NAME:3 or NAME@alias."""
    result = run(ctx, lambda c: c.call(q.Show(ref=ref)))
    emit(result, as_json, lambda: render.print_version(out, result))


@main.command()
@click.argument("a", callback=check_ref_arg)
@click.argument("b", callback=check_ref_arg)
@json_option
@click.pass_context
def diff(ctx: click.Context, a: str, b: str, as_json: bool) -> None:
    """Compare two versions: files, params, metrics, signature, requirements."""
    result = run(ctx, lambda c: c.call(q.Diff(a=a, b=b)))
    emit(result, as_json, lambda: render.print_diff(out, result))


@main.command()
@click.argument("ref", callback=check_ref_arg)
@click.argument("tags", nargs=-1, metavar="KEY=VALUE...")
@click.option("--rm", "unset", multiple=True, metavar="KEY", help="remove a tag (repeatable)")
@json_option
@click.pass_context
def tag(ctx: click.Context, ref: str, tags: tuple[str, ...], unset: tuple[str, ...], as_json: bool) -> None:
    """Set or remove tags on a version."""
    tag_map = parse_tags(tags)
    keys = [validated(check_tag_key, k) for k in unset]
    result = run(ctx, lambda c: c.call(q.Tag(ref=ref, set=tag_map, unset=keys)))
    shown = f"{result.model}:{result.number} tags: {fmt.tags_of(result.tags)}"
    emit(result, as_json, lambda: out.print(render.plain(shown)))


@main.command()
@click.argument("name")
@click.argument("text", required=False)
@json_option
@click.pass_context
def describe(ctx: click.Context, name: str, text: str | None, as_json: bool) -> None:
    """Show model NAME's summary; with TEXT, set its description."""
    request = q.GetModel(name=name) if text is None else q.DescribeModel(name=name, description=text)
    result = run(ctx, lambda c: c.call(request))
    emit(result, as_json, lambda: render.print_model(out, result.model))


# -- aliases ---------------------------------------------------------------------------------------------------
@main.group()
def alias() -> None:
    """Move, remove and inspect aliases (production, staging, ...)."""


@alias.command("set")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.argument("version", type=click.IntRange(1))
@click.option("--reason", default="", help="why (kept in the alias history)")
@json_option
@click.pass_context
def alias_set(ctx: click.Context, name: str, alias_name: str, version: int, reason: str, as_json: bool) -> None:
    """Point ALIAS of model NAME at VERSION."""
    result = run(ctx, lambda c: c.call(q.AliasSet(name=name, alias=alias_name, version=version, reason=reason)))
    emit(result, as_json, lambda: show_alias_set(result))


def show_alias_set(e: r.AliasEventInfo) -> None:
    """The move just made; or, when the alias was already there, that nothing changed and since when."""
    if e.changed:
        out.print(render.alias_move(e))
        return
    since = f"since {fmt.when(e.at)}, by {e.by}"
    out.print(render.plain(f"{e.model}@{e.alias} already points to {e.to_version} ({since}): nothing changed"))


@alias.command("rm")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.option("--reason", default="")
@json_option
@click.pass_context
def alias_rm(ctx: click.Context, name: str, alias_name: str, reason: str, as_json: bool) -> None:
    """Remove ALIAS from model NAME."""
    result = run(ctx, lambda c: c.call(q.AliasRemove(name=name, alias=alias_name, reason=reason)))
    emit(result, as_json, lambda: out.print(render.alias_move(result)))


@alias.command("history")
@click.argument("name")
@click.argument("alias_name", metavar="[ALIAS]", required=False)
@click.option("--at", "at", help="also say what each alias pointed to at this ISO 8601 time")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1, 10_000))
@json_option
@click.pass_context
def alias_history(ctx: click.Context, name: str, alias_name: str | None, at: str | None, limit: int,
                  as_json: bool) -> None:
    """Every move of the aliases of model NAME, newest first."""
    when = parse_time(at) if at else None
    result = run(ctx, lambda c: c.call(q.AliasHistoryRequest(name=name, alias=alias_name, at=when, limit=limit)))
    emit(result, as_json, lambda: render.print_history(out, result))


@main.command()
@click.argument("name")
@click.argument("alias_name", metavar="[ALIAS]", required=False)
@click.option("--reason", default="", help="why (kept in the alias history)")
@click.option("--timeout", default=300.0, show_default=True, type=click.FloatRange(1, 3600),
              help="with a DEPLOYMENT: seconds to wait for its rollout")
@json_option
@click.pass_context
def rollback(ctx: click.Context, name: str, alias_name: str | None, reason: str, timeout: float, as_json: bool) -> None:
    """Move ALIAS of model NAME back to its previous target. Given only a DEPLOYMENT that follows an alias,
    move that alias back and wait until the deployment has rolled out the previous version."""
    if alias_name is not None:
        result = run(ctx, lambda c: c.call(q.Rollback(name=name, alias=alias_name, reason=reason)))
        emit(result, as_json, lambda: out.print(render.alias_move(result)))
        return

    async def body(c: DaemonClient) -> tuple[r.AliasEventInfo, str]:
        dep = (await c.call(q.GetDeployment(name=name, events=0))).deployment
        if dep.ref.partition("@")[2] == "":
            raise ProtocolError(ErrorCode.INVALID, f"deployment {name} is pinned to {dep.ref}; deploy another version")
        await c.subscribe("deployments")
        waiter = rollout_waiter(c, name)
        move = await c.call(q.Rollback(name=dep.model, alias=dep.ref.partition("@")[2], reason=reason))
        try:
            return move, await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            raise ProtocolError(ErrorCode.UNAVAILABLE, f"{name} did not finish its rollout within {timeout:.0f} s; "
                                "see `modeltui ps {name}`") from None

    move, outcome = run(ctx, body)
    def human() -> None:
        out.print(render.alias_move(move))
        out.print(render.plain(f"{name}: {outcome}"))

    emit({"alias": move.model_dump(mode="json"), "rollout": outcome}, as_json, human)
    if "failed" in outcome:
        sys.exit(EXIT_CODES[ErrorCode.CONFLICT])


# -- removal ---------------------------------------------------------------------------------------------------
@main.command("rm")
@click.argument("ref", callback=check_ref_arg)
@click.option("--force", is_flag=True, help="also when an alias holds it (the alias is removed)")
@click.option("--model", "whole_model", is_flag=True, help="REF is a model name: remove the model and all versions")
@json_option
@click.pass_context
def rm(ctx: click.Context, ref: str, force: bool, whole_model: bool, as_json: bool) -> None:
    """Remove a version (NAME:3 or NAME@alias), or with --model a whole model. Files go at the next gc."""
    parsed = parse_ref(ref)
    if whole_model:
        if parsed.number is not None or parsed.alias is not None:
            raise click.BadParameter("with --model, give a model NAME")
        request: q.RemoveModel | q.RemoveVersion = q.RemoveModel(name=parsed.name, force=force)
    elif parsed.number is None and parsed.alias is None:
        raise click.BadParameter(f"give a version ({ref}:N or {ref}@ALIAS), or --model to remove the whole model")
    else:
        request = q.RemoveVersion(ref=ref, force=force)
    result = run(ctx, lambda c: c.call(request))
    emit(result, as_json, lambda: out.print(render.plain(
        f"removed {result.model} versions {', '.join(map(str, result.removed_versions)) or '(none)'}")))


@main.command()
@click.option("--dry-run", is_flag=True, help="only count what would be removed")
@click.option("--grace", type=click.IntRange(0), help="keep unreferenced files younger than this many seconds")
@json_option
@click.pass_context
def gc(ctx: click.Context, dry_run: bool, grace: int | None, as_json: bool) -> None:
    """Remove stored files no version references any more, and Docker images no deployment uses beyond the
    newest [docker] keep_images versions of each model."""
    result = run(ctx, lambda c: c.call(q.Gc(dry_run=dry_run, grace_seconds=grace)))
    images = "".join(f"\n  {tag}" for tag in result.images_removed)
    note = f"\n{result.images_note}" if result.images_note else ""
    emit(result, as_json, lambda: out.print(render.plain(
        f"{'would remove' if dry_run else 'removed'} {result.objects_removed} objects "
        f"({fmt.size(result.bytes_removed)}), {result.staging_removed} staging files and "
        f"{len(result.images_removed)} images ({fmt.size(result.image_bytes_removed)}){images}{note}",
        newlines=True)))
