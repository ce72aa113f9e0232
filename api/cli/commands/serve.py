"""``carbon-risk serve``: the HTTP API (uvicorn), optionally with the demo tenants and portfolio."""

from __future__ import annotations

import click

from api.cli.common import CLIError, note


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--database-url", default=None, metavar="URL",
              help="SQLAlchemy URL (default: $DATABASE_URL, else sqlite:///var/carbon_risk.sqlite).")
@click.option("--demo", is_flag=True, help="Create demo tenants (one per role) with fixed demo keys and load the "
                                           "demo portfolio; prints the keys. For trying it out, not production.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
def serve_cmd(host, port, database_url, demo, log_level):
    """Serve the HTTP API (OpenAPI at /openapi.json, docs at /docs).

    \b
    Examples:
      carbon-risk serve --demo                      # http://127.0.0.1:8000 with demo keys
      carbon-risk serve --port 9000 --database-url postgresql+psycopg://u:p@db/carbon
    """
    import uvicorn

    from api.app import create_app
    from api.settings import Settings

    try:
        settings = Settings.from_env(log_level=log_level.upper(),
                                     **({"database_url": database_url} if database_url else {}))
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    app = create_app(settings)
    if demo:
        from api.bootstrap import ensure_demo

        db = app.state.db
        try:
            db.upgrade()
        except Exception as exc:  # noqa: BLE001 - one line for an unreachable database
            raise CLIError(f"cannot prepare the database {db.engine.url.render_as_string()}: {exc}") from exc
        keys = ensure_demo(db, app.state.models)
        note("demo API keys (demo only; use `carbon-risk admin` for real tenants):")
        for role, key in keys.items():
            note(f"  {role:8s} {key}")
        note(f"try: curl -H 'Authorization: Bearer {keys.get('bank', '')}' http://{host}:{port}/v1/portfolios")
    note(f"serving on http://{host}:{port} (dashboard at /ui, API docs at /docs), database {app.state.db.engine.url.render_as_string()}")
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, timeout_graceful_shutdown=10)


COMMANDS = [serve_cmd]
