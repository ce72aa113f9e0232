"""``carbon-risk admin``: tenants and keys from the command line; bad input is one line and exit 2."""

from __future__ import annotations

from api.cli import main
from api.db import Database
from api.security import verify_key


def test_admin_tenant_key_revoke(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'a.sqlite'}"
    assert main(["admin", "tenant", "create", "Lishui Bank", "--role", "bank", "--database-url", url]) == 0
    assert main(["admin", "tenant", "create", "Lishui Bank", "--role", "bank", "--database-url", url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err
    assert main(["admin", "key", "create", "--tenant", "Lishui Bank", "--expires-days", "30",
                 "--database-url", url]) == 0
    key = capsys.readouterr().out.strip()
    db = Database(url)
    with db.session() as s:
        p = verify_key(s, key)
    assert p is not None and p.role == "bank" and p.tenant_name == "Lishui Bank"
    assert main(["admin", "key", "create", "--tenant", "nobody", "--database-url", url]) == 2
    assert main(["admin", "key", "revoke", p.key_id, "--database-url", url]) == 0
    with db.session() as s:
        assert verify_key(s, key) is None
    assert main(["admin", "key", "revoke", "ffffffffffff", "--database-url", url]) == 2
    assert main(["admin", "tenant", "list", "--format", "json", "--database-url", url]) == 0
    assert '"active_keys": 0' in capsys.readouterr().out
    db.dispose()
