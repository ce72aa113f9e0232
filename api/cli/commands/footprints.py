"""``carbon-risk footprints``: what the pine wilt footprint store on disk holds; prune or clear it."""

from __future__ import annotations

import click

from api.cli.common import echo_json, format_option


@click.command("footprints")
@click.option("--prune", "do_prune", is_flag=True,
              help="Drop the least recently used blocks down to CRE_FOOTPRINT_STORE_MB.")
@click.option("--clear", "do_clear", is_flag=True, help="Delete every stored block.")
@format_option
def footprints(do_prune, do_clear, fmt):
    """Show the store of pine wilt landscape footprints on disk; prune or clear it.

    Runs keep the epidemic's footprint (the year each landscape cell is infected, per path) in
    CRE_FOOTPRINT_STORE (default ~/.cache/carbon-risk-engine/footprints; `off`: none), so the next
    process reads it instead of simulating it again. Blocks are named by the code that computed them:
    an edit or an upgrade leaves old ones unread until they are pruned. Clearing only costs time.

    \b
    Examples:
      carbon-risk footprints
      carbon-risk footprints --clear
    """
    from models.perils import footprint_store as store

    freed = store.clear() if do_clear else 0
    if do_prune and not do_clear:
        store.prune()
    u = store.usage()
    if fmt == "json":
        echo_json({**u, "freed_bytes": freed})
        return
    if not u["enabled"]:
        click.echo("the footprint store is off (CRE_FOOTPRINT_STORE=off)")
        return
    if do_clear:
        click.echo(f"cleared {freed / 2**20:,.1f} MiB")
    click.echo(f"{u['folder']}: {u['blocks']:,} blocks, {u['bytes'] / 2**20:,.1f} MiB "
               f"(at most {u['max_bytes'] / 2**20:,.0f} MiB, CRE_FOOTPRINT_STORE_MB)")


COMMANDS = [footprints]
