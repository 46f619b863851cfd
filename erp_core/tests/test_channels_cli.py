"""``erp channels accounts add`` / ``list``: secrets from stdin or a hidden prompt, never echoed."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from erp_core.channels import service as svc

SECRET = "cli-s3cr3t-77d0e2"


@pytest.fixture
def cli(erp_cli: Any) -> Any:
    return erp_cli


ADD = ("channels", "accounts", "add", "--tenant", "acme", "--connector", "test_beta")


def test_add_from_stdin_and_list(cli, make_tenant, erp_db, erp_settings, caplog):
    caplog.set_level(logging.DEBUG)
    t = make_tenant("acme", plugins=("test_beta",))
    r = cli(
        *ADD,
        "--shop-id",
        "shop-1",
        "--name",
        "Flagship",
        "--config",
        '{"region": "cn"}',
        "--secrets-stdin",
        input=json.dumps({"app_secret": SECRET}),
    )
    assert r.exit_code == 0, r.output
    assert "added to acme; secret fields set: app_secret" in r.output
    listed = cli("channels", "accounts", "list", "--tenant", "acme")
    assert listed.exit_code == 0 and "shop-1" in listed.output and "Flagship" in listed.output
    assert "[secrets: app_secret]" in listed.output
    assert SECRET not in r.output + listed.output + caplog.text
    with erp_db.tenant_session(t.id) as s:
        (acc,) = svc.list_accounts(s)
        assert svc.account_secrets(s, acc, erp_settings) == {"app_secret": SECRET}


def test_add_prompts_without_echo(cli, make_tenant):
    make_tenant("acme", plugins=("test_beta",))
    r = cli(*ADD, "--shop-id", "shop-2", "--name", "Outlet", input=f"{SECRET}\n\n")
    assert r.exit_code == 0, r.output
    assert "App secret" in r.output and SECRET not in r.output
    assert "secret fields set: app_secret" in r.output


def test_errors_are_one_line_and_exit_1(cli, make_tenant):
    make_tenant("acme", plugins=("test_beta",))
    cases = [
        (("--connector", "nope"), '{"app_secret": "x"}', "unknown connector 'nope'"),
        ((), "{}", "missing required secret field(s): app_secret"),
        ((), f'{{"app_secret": "{SECRET}"', "not valid JSON"),
        ((), f'["{SECRET}"]', "must be a JSON object"),
    ]
    for extra, stdin, message in cases:
        args = [*ADD, "--shop-id", "s", "--name", "n", "--secrets-stdin", *extra]
        r = cli(*args, input=stdin)
        assert r.exit_code == 1, r.output
        assert message in r.output and SECRET not in r.output
        assert r.output.count("\n") == 1
    assert (
        cli(
            *ADD, "--shop-id", "s", "--name", "n", "--secrets-stdin", input='{"app_secret": "x"}'
        ).exit_code
        == 0
    )
    r = cli(*ADD, "--shop-id", "s", "--name", "n", "--secrets-stdin", input='{"app_secret": "x"}')
    assert r.exit_code == 1 and "already has a test_beta account" in r.output
    r = cli("channels", "accounts", "list", "--tenant", "nobody")
    assert r.exit_code == 1 and r.output.startswith("Error:")


def test_empty_list(cli, make_tenant):
    make_tenant("acme")
    r = cli("channels", "accounts", "list", "--tenant", "acme")
    assert r.exit_code == 0 and "(no channel accounts)" in r.output


def test_tokens_from_stdin_and_prompt(cli, make_tenant, erp_db, erp_settings):
    t = make_tenant("acme", plugins=("test_beta",))
    r = cli(*ADD, "--shop-id", "s1", "--name", "N", "--secrets-stdin", input='{"app_secret":"x1"}')
    assert r.exit_code == 0, r.output
    with erp_db.tenant_session(t.id) as s:
        (acc,) = svc.list_accounts(s)
        account_id = acc.id
    tok = ("channels", "accounts", "tokens", str(account_id), "--tenant", "acme")
    r = cli(
        *tok,
        "--stdin",
        input=json.dumps({"access_token": SECRET, "expires_at": "2026-12-01T08:00:00+08:00"}),
    )
    assert r.exit_code == 0, r.output
    assert "expires 2026-12-01T00:00:00+00:00" in r.output and SECRET not in r.output
    with erp_db.tenant_session(t.id) as s:
        acc = svc.get_account(s, account_id)
        assert svc.account_context(s, acc, erp_settings).access_token == SECRET
    r = cli(*tok, input=f"{SECRET}-2\n\n\n")
    assert r.exit_code == 0 and "unknown time" in r.output and SECRET not in r.output
    for bad, message in (
        ('{"access_token": ""}', "non-empty"),
        ('{"access_token": "a", "expires_at": "2026-12-01T08:00"}', "UTC offset"),
        ('{"access_token": "a", "colour": 1}', "unknown field"),
        ("[1]", "JSON object"),
    ):
        r = cli(*tok, "--stdin", input=bad)
        assert r.exit_code == 1 and message in r.output, r.output
    with erp_db.tenant_session(t.id) as s:
        acc = svc.get_account(s, account_id)
        assert svc.account_context(s, acc, erp_settings).access_token == f"{SECRET}-2"
    r = cli("channels", "accounts", "refresh", str(account_id), "--tenant", "acme")
    assert r.exit_code == 1 and "no refresh token" in r.output
