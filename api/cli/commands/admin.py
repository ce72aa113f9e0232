"""``carbon-risk admin``: tenants and API keys of the HTTP service, and the data deleted portfolios left
for the memos of their valuations."""

from __future__ import annotations

import click

from api.cli.common import CLIError, echo_json, format_option
from api.cli.tables import render_table


def _db(database_url: str | None):
    from api.db import Database
    from api.settings import Settings

    try:
        settings = Settings.from_env(**({"database_url": database_url} if database_url else {}))
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    db = Database(settings.database_url)
    try:
        db.upgrade()
    except Exception as exc:  # noqa: BLE001
        raise CLIError(f"cannot open the database {db.engine.url.render_as_string()}: {exc}") from exc
    return db


db_option = click.option("--database-url", default=None, metavar="URL",
                         help="SQLAlchemy URL (default: $DATABASE_URL, else sqlite:///var/carbon_risk.sqlite).")


@click.group("admin")
def admin_cmd():
    """Manage tenants and API keys, and the data kept of deleted portfolios.

    \b
    Examples:
      carbon-risk admin tenant create "Lishui Rural Bank" --role bank
      carbon-risk admin key create --tenant "Lishui Rural Bank" --expires-days 90
      carbon-risk admin key revoke 3f9a0c1d2e4b
      carbon-risk admin tenant list
      carbon-risk admin retained list
      carbon-risk admin retained purge
    """


@admin_cmd.group("tenant")
def tenant_grp():
    """Tenants (a bank, an insurer, the bureau, an administrator)."""


@tenant_grp.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(["bank", "insurer", "bureau", "admin"]), required=True)
@db_option
@format_option
def tenant_create(name, role, database_url, fmt):
    """Create a tenant NAME with a role."""
    from api.security import SecurityError, create_tenant

    db = _db(database_url)
    try:
        with db.session() as s:
            t = create_tenant(s, name, role)
            out = {"id": t.id, "name": t.name, "role": t.role}
    except SecurityError as exc:
        raise CLIError(str(exc)) from exc
    if fmt == "json":
        echo_json(out)
    else:
        click.echo(f"created tenant {out['name']} ({out['role']}), id {out['id']}")


@tenant_grp.command("list")
@db_option
@format_option
def tenant_list(database_url, fmt):
    """List tenants with their number of active keys."""
    import pandas as pd
    from sqlalchemy import select

    from api.db.models import ApiKey, Tenant, utcnow

    db = _db(database_url)
    now = utcnow()
    with db.session() as s:
        rows = []
        for t in s.scalars(select(Tenant).order_by(Tenant.name)):
            keys = s.scalars(select(ApiKey).where(ApiKey.tenant_id == t.id)).all()
            active = sum(1 for k in keys if k.revoked_at is None and (k.expires_at is None or k.expires_at > now))
            rows.append({"id": t.id, "name": t.name, "role": t.role, "active_keys": active,
                         "created_at": t.created_at.isoformat()})
    _echo_rows(rows, fmt, "no tenants")


def _echo_rows(rows: list[dict], fmt: str, empty: str) -> None:
    """A listing as JSON, or as a table (``empty`` when there is nothing to list)."""
    if fmt == "json":
        echo_json(rows)
    elif not rows:
        click.echo(empty)
    else:
        click.echo(render_table(pd.DataFrame(rows)))


@admin_cmd.group("key")
def key_grp():
    """API keys (shown once when created; stored hashed)."""


@key_grp.command("create")
@click.option("--tenant", "tenant", required=True, help="Tenant name or id.")
@click.option("--expires-days", type=click.FloatRange(0, 3650, min_open=True), default=None,
              help="Expire after this many days (default: never).")
@click.option("--label", default="", help="A note shown in key listings.")
@db_option
@format_option
def key_create(tenant, expires_days, label, database_url, fmt):
    """Create an API key for a tenant and print it (the only time it is shown)."""
    from api.security import SecurityError, create_key, get_tenant

    db = _db(database_url)
    try:
        with db.session() as s:
            t = get_tenant(s, tenant)
            row, key = create_key(s, t, expires_days=expires_days, label=label)
            out = {"key_id": row.id, "tenant": t.name, "role": t.role, "key": key,
                   "expires_at": row.expires_at.isoformat() if row.expires_at else None}
    except SecurityError as exc:
        raise CLIError(str(exc)) from exc
    if fmt == "json":
        echo_json(out)
    else:
        click.echo(out["key"])
        click.echo(f"key id {out['key_id']} for {out['tenant']} ({out['role']}), expires "
                   f"{out['expires_at'] or 'never'}; store it now, it is not shown again", err=True)


@key_grp.command("revoke")
@click.argument("key_id")
@db_option
def key_revoke(key_id, database_url):
    """Revoke the key KEY_ID (the 12 hex digits after ``cre_``)."""
    from api.security import SecurityError, revoke_key

    db = _db(database_url)
    try:
        with db.session() as s:
            revoke_key(s, key_id)
    except SecurityError as exc:
        raise CLIError(str(exc)) from exc
    click.echo(f"revoked key {key_id}")


@admin_cmd.group("retained")
def retained_grp():
    """The data of deleted portfolios kept for the memos of their valuations not rendered yet (for
    CRE_RETAINED_DATA_DAYS after the delete; the server purges what expired at each portfolio delete and memo
    request)."""


@retained_grp.command("list")
@db_option
@format_option
def retained_list(database_url, fmt):
    """List the kept data: portfolio id, tenant, deleted and expiry times, size."""
    import pandas as pd
    from sqlalchemy import func, select

    from api.db.models import RetainedPortfolio, Tenant

    db = _db(database_url)
    with db.session() as s:
        rows = [{"portfolio_id": r.id, "tenant": name, "deleted_at": r.deleted_at.isoformat(),
                 "expires_at": r.expires_at.isoformat(), "bytes": size}
                for r, name, size in s.execute(
                    select(RetainedPortfolio, Tenant.name, func.length(RetainedPortfolio.data_parquet))
                    .join(Tenant, Tenant.id == RetainedPortfolio.tenant_id)
                    .order_by(RetainedPortfolio.expires_at, RetainedPortfolio.id)).all()]
    _echo_rows(rows, fmt, "no data of deleted portfolios is kept")


@retained_grp.command("purge")
@click.argument("portfolio_ids", nargs=-1)
@db_option
@format_option
def retained_purge(portfolio_ids, database_url, fmt):
    """Drop the kept data that expired; with PORTFOLIO_IDS, those portfolios' now, whatever their expiry (their
    valuations' memos not rendered yet then answer 404). Each drop is audited in its tenant
    (portfolio.data_dropped)."""
    from api.services import purge_retained_data

    db = _db(database_url)
    with db.session() as s:
        gone = purge_retained_data(s, ids=list(portfolio_ids) if portfolio_ids else None)
    missing = sorted(set(portfolio_ids) - {g["portfolio_id"] for g in gone})
    if fmt == "json":
        echo_json({"purged": gone, "not_kept": missing})
    else:
        for g in gone:
            click.echo(f"purged the data of deleted portfolio {g['portfolio_id']} (kept until {g['expires_at']})")
        if not gone:
            click.echo("nothing to purge")
    if missing:
        raise CLIError(f"no data is kept of {len(missing)} of the portfolios named: {', '.join(missing[:10])}")


COMMANDS = [admin_cmd]
