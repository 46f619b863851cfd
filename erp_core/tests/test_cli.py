"""The ``erp`` command line: happy paths, and one-line errors with a non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from erp_core.cli import main


@pytest.fixture
def cli(erp_cli):
    return erp_cli


def test_tenant_user_token_round_trip(cli, client):
    r = cli("migrate")
    assert r.exit_code == 0 and "up to date" in r.output
    r = cli("tenants", "create", "acme", "--name", "Acme 商贸")
    assert r.exit_code == 0, r.output
    r = cli(
        "users",
        "create",
        "Boss@Acme.test",
        "--tenant",
        "acme",
        "--role",
        "owner",
        "--password-stdin",
        input="a-long-password\n",
    )
    assert r.exit_code == 0, r.output
    r = cli("tokens", "create", "--tenant", "acme", "--user", "boss@acme.test", "--scope", "core.*")
    assert r.exit_code == 0, r.output
    token = r.output.strip()
    assert token.startswith("erp_")
    me = client.get("/api/v1/tenants/current", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["name"] == "Acme 商贸"
    assert me.json()["currency"] == "CNY" and me.json()["timezone"] == "Asia/Shanghai"
    r = cli("tenants", "list")
    assert "acme" in r.output


def test_password_prompt(cli):
    cli("tenants", "create", "acme", "--name", "Acme")
    r = cli(
        "users",
        "create",
        "x@acme.test",
        "--tenant",
        "acme",
        input="prompted-password\nprompted-password\n",
    )
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize(
    "args,stdin,message",
    [
        (("tenants", "create", "Bad Slug!", "--name", "x"), None, "slug 'Bad Slug!'"),
        (("tenants", "create", "zz", "--name", "x", "--currency", "yuan"), None, "currency"),
        (("tenants", "create", "zz", "--name", "x", "--timezone", "Mars/Base"), None, "time zone"),
        (
            ("users", "create", "a@b.test", "--tenant", "nope", "--password-stdin"),
            "pw-123456789\n",
            "no tenant 'nope'",
        ),
        (
            ("users", "create", "not-an-email", "--tenant", "acme", "--password-stdin"),
            "pw-123456789\n",
            "not a valid e-mail",
        ),
        (
            ("users", "create", "a@acme.test", "--tenant", "acme", "--password-stdin"),
            "short\n",
            "at least 10 characters",
        ),
        (
            (
                "users",
                "create",
                "a@acme.test",
                "--tenant",
                "acme",
                "--role",
                "king",
                "--password-stdin",
            ),
            "pw-123456789\n",
            "no role 'king'",
        ),
        (
            ("tokens", "create", "--tenant", "acme", "--user", "ghost@acme.test"),
            None,
            "no user ghost@acme.test",
        ),
        (("plugins", "enable", "test_beta", "--tenant", "acme"), None, "needs test_alpha"),
        (("plugins", "enable", "nope", "--tenant", "acme"), None, "not installed"),
        (("plugins", "enable", "test_broken", "--tenant", "acme"), None, "broken on purpose"),
    ],
)
def test_errors_are_one_line_and_exit_non_zero(cli, args, stdin, message):
    cli("tenants", "create", "acme", "--name", "Acme")
    r = cli(*args, input=stdin)
    assert r.exit_code != 0
    err = r.output.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("Error: "), r.output
    assert message in err[0]


def test_duplicate_tenant_is_refused(cli):
    assert cli("tenants", "create", "acme", "--name", "Acme").exit_code == 0
    r = cli("tenants", "create", "acme", "--name", "Again")
    assert r.exit_code == 1 and "already exists" in r.output


def test_plugins_list_enable_disable(cli):
    cli("tenants", "create", "acme", "--name", "Acme")
    cli("tenants", "create", "bolt", "--name", "Bolt")
    r = cli("plugins", "enable", "test_beta", "--tenant", "acme", "--with-deps")
    assert r.exit_code == 0 and "test_alpha, test_beta" in r.output
    cli("plugins", "enable", "test_alpha", "--tenant", "bolt")
    out = cli("plugins", "list").output
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "enabled" in rows["test_alpha"] and "acme,bolt" in rows["test_alpha"]
    assert "0.2.0" in rows["test_beta"] and rows["test_beta"].rstrip().endswith("acme")
    assert "ready" in rows["test_gamma"]
    assert "broken" in rows["test_broken"] and "broken on purpose" in rows["test_broken"]
    assert "broken" in rows["test_invalid"] and "invalid manifest" in rows["test_invalid"]
    r = cli("plugins", "disable", "test_alpha", "--tenant", "acme")
    assert r.exit_code == 1 and "test_beta needs it" in r.output
    assert cli("plugins", "disable", "test_beta", "--tenant", "acme").exit_code == 0
    assert cli("plugins", "disable", "test_alpha", "--tenant", "acme").exit_code == 0


def test_migrate_downgrade_refuses_enabled_plugin(cli):
    cli("tenants", "create", "acme", "--name", "Acme")
    cli("plugins", "enable", "test_gamma", "--tenant", "acme")
    r = cli("migrate", "downgrade", "test_gamma")
    assert r.exit_code == 1 and "enabled for acme" in r.output


def test_console_script_exit_status(erp_settings, erp_db):
    env = {
        **os.environ,
        "ERP_DATABASE_URL": erp_settings.resolved_database_url(),
        "ERP_VAR_DIR": str(erp_settings.var_path),
    }
    r = subprocess.run(
        [sys.executable, "-m", "erp_core.cli", "plugins", "enable", "x", "--tenant", "missing"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == "Error: no tenant 'missing'"
    bad = {**env, "ERP_PORT": "not-a-port"}
    r = subprocess.run(
        [sys.executable, "-m", "erp_core.cli", "tenants", "list"],
        env=bad,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and "invalid setting 'port'" in r.stderr


def test_demo_setup_is_idempotent_and_login_works(erp_db, erp_registry, erp_settings, client):
    from erp_core.demo import DEMO_EMAIL, ensure_demo
    from erp_core.testing.fixtures import login

    first = ensure_demo(erp_db, erp_registry, erp_settings)
    second = ensure_demo(erp_db, erp_registry, erp_settings)
    assert first == second
    password = first[-1].rsplit(" ", 1)[-1]
    r = login(client, DEMO_EMAIL, password)
    assert r.status_code == 303
    assert client.get("/api/v1/alpha/notes").status_code == 200  # every plugin enabled
    # opening stock, received once however often the demo starts, valued in the ledger
    stock = client.get("/api/v1/inventory/stock", params={"sku": "CUP-GL-300"}).json()
    assert sorted((x["warehouse"], x["on_hand"]) for x in stock) == [("HZ", "300"), ("SH", "150")]
    tb = client.get("/api/v1/ledger/trial-balance").json()
    inventory = {r["account"]: r["balance"] for r in tb["rows"]}["1405"]
    assert inventory == "32752.00"  # what DEMO_SKUS' opening stock cost


def test_migrate_with_a_plugin_missing_explains_what_to_do(cli, monkeypatch):
    # the allow-list hides test_gamma, as if its distribution had been uninstalled
    monkeypatch.setenv("ERP_PLUGINS", "test_alpha,test_beta")
    r = cli("migrate")
    assert r.exit_code == 1
    assert "reinstall it, run 'erp migrate downgrade PLUGIN'" in r.output


def test_commands_on_an_unmigrated_database_say_so(tmp_path, monkeypatch):
    monkeypatch.setenv("ERP_DATABASE_URL", f"sqlite:///{tmp_path}/empty.sqlite")
    r = CliRunner().invoke(main, ["plugins", "list"])
    assert r.exit_code == 1
    assert "run 'erp migrate' first" in r.output
