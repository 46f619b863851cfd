"""Channel accounts: validation, write-only encrypted secrets, tokens, isolation, no leaks."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from erp_test_beta.channel import BetaChannel
from sqlalchemy import select, text, update

from erp_core.audit.models import AuditEvent
from erp_core.channels import TokenSet
from erp_core.channels import service as svc
from erp_core.channels.errors import AccountConflict, AccountError, AccountNotFound
from erp_core.channels.models import ChannelAccount
from erp_core.plugins.manifest import PluginManifest

SECRET = "s3cr3t-Value-9f27"  # a string that must never leave the encrypted column
TOKEN = "acc3ss-Token-71ac"
REFRESH = "r3fresh-Token-c01d"


@pytest.fixture
def acme(make_tenant: Any) -> Any:
    return make_tenant("acme", plugins=("test_beta",))


def create(s: Any, registry: Any, settings: Any, **kw: Any) -> ChannelAccount:
    base: dict[str, Any] = dict(
        connector="test_beta",
        shop_id="shop-1",
        name="Flagship",
        app_key="12345",
        secrets={"app_secret": SECRET},
    )
    base.update(kw)
    return svc.create_account(s, registry, settings, **base)


def test_installed_connectors_come_from_manifests(erp_registry):
    assert BetaChannel.kind == "sales" and BetaChannel.max_window == timedelta(hours=12)
    assert svc.connectors(erp_registry)["test_beta"] is BetaChannel
    with pytest.raises(AccountError, match=r"unknown connector 'nope'.*installed.*test_beta"):
        svc.connector_class(erp_registry, "nope")


def test_manifest_channel_is_validated():
    ok = PluginManifest(name="x_conn", version="1", title="X", kind="connector", channel="a.b:C")
    assert ok.problems() == []
    bad = PluginManifest(name="x_conn", version="1", title="X", kind="connector", channel="a.b")
    assert any("module:Class" in p for p in bad.problems())
    theme = PluginManifest(name="x_theme", version="1", title="X", kind="theme", channel="a:B")
    assert any("theme cannot declare a channel" in p for p in theme.problems())


def test_create_stores_secrets_encrypted_and_write_only(erp_db, erp_registry, erp_settings, acme):
    with erp_db.tenant_session(acme.id) as s:
        acc = create(s, erp_registry, erp_settings, config={"region": "cn"})
        assert acc.kind == "sales" and acc.secret_names == ["app_secret"]
        assert acc.active and acc.config == {"region": "cn"}
        account_id = acc.id
    with erp_db.engine.begin() as conn:
        if erp_db.is_postgres:
            conn.execute(text("SELECT set_config('erp.all_tenants', 'on', true)"))
        raw = conn.execute(
            text("SELECT secrets FROM core_channel_account WHERE id = :i"), {"i": account_id}
        ).scalar_one()
    assert raw.startswith("erpenc1.") and SECRET not in raw
    with erp_db.tenant_session(acme.id) as s:
        acc = svc.get_account(s, account_id)
        assert svc.account_secrets(s, acc, erp_settings) == {"app_secret": SECRET}
        ctx = svc.account_context(s, acc, erp_settings)
        assert ctx.secrets["app_secret"] == SECRET and ctx.shop_id == "shop-1"
        assert SECRET not in repr(ctx) and SECRET not in repr(acc)
        event = s.scalars(
            select(AuditEvent).where(AuditEvent.action == "channel_account.created")
        ).one()
        assert event.details["secret_fields"] == ["app_secret"]


def test_validation_errors_are_clear(erp_db, erp_registry, erp_settings, acme, make_tenant):
    with erp_db.tenant_session(acme.id) as s:
        with pytest.raises(AccountError, match=r"missing required secret field.*app_secret"):
            create(s, erp_registry, erp_settings, secrets={})
        with pytest.raises(AccountError, match=r"unknown secret field\(s\) password.*app_secret"):
            create(s, erp_registry, erp_settings, secrets={"app_secret": "x", "password": "y"})
        with pytest.raises(AccountError, match="secret field app_secret must be non-empty"):
            create(s, erp_registry, erp_settings, secrets={"app_secret": "  "})
        with pytest.raises(AccountError, match=r"unknown config field\(s\) colour"):
            create(s, erp_registry, erp_settings, config={"colour": "red"})
        with pytest.raises(AccountError, match="shop_id must not be empty"):
            create(s, erp_registry, erp_settings, shop_id=" ")
        create(s, erp_registry, erp_settings)
        with pytest.raises(AccountConflict, match="already has a test_beta account for shop"):
            create(s, erp_registry, erp_settings)
        create(s, erp_registry, erp_settings, shop_id="shop-2")
    other = make_tenant("bolt")  # test_beta not enabled there
    with (
        erp_db.tenant_session(other.id) as s,
        pytest.raises(AccountError, match="not enabled for this tenant"),
    ):
        create(s, erp_registry, erp_settings)


def test_the_same_shop_in_two_tenants_is_fine(
    erp_db, erp_registry, erp_settings, acme, make_tenant
):
    bolt = make_tenant("bolt", plugins=("test_beta",))
    with erp_db.tenant_session(acme.id) as s:
        create(s, erp_registry, erp_settings)
    with erp_db.tenant_session(bolt.id) as s:
        create(s, erp_registry, erp_settings, secrets={"app_secret": "bolt-secret"})
        assert [a.shop_id for a in svc.list_accounts(s)] == ["shop-1"]


def test_update_merges_secrets_and_config(erp_db, erp_registry, erp_settings, acme):
    with erp_db.tenant_session(acme.id) as s:
        acc = create(s, erp_registry, erp_settings)
        svc.update_account(
            s, erp_registry, erp_settings, acc, secrets={"session_key": "sk"}, name="Renamed"
        )
        assert svc.account_secrets(s, acc, erp_settings) == {
            "app_secret": SECRET,
            "session_key": "sk",
        }
        assert acc.secret_names == ["app_secret", "session_key"] and acc.name == "Renamed"
        svc.update_account(s, erp_registry, erp_settings, acc, secrets={"session_key": None})
        assert acc.secret_names == ["app_secret"]
        with pytest.raises(AccountError, match=r"missing required secret field.*app_secret"):
            svc.update_account(s, erp_registry, erp_settings, acc, secrets={"app_secret": None})
        svc.update_account(s, erp_registry, erp_settings, acc, config={"region": "hk"})
        svc.update_account(s, erp_registry, erp_settings, acc, config={"region": None})
        assert acc.config == {}
        assert svc.deactivate_account(s, acc) is True
        assert svc.deactivate_account(s, acc) is False
        assert svc.list_accounts(s, active=True) == []
        svc.update_account(s, erp_registry, erp_settings, acc, active=True)
        assert [a.id for a in svc.list_accounts(s, active=True)] == [acc.id]


def test_secrets_can_be_entered_again_after_a_key_change(erp_db, erp_registry, erp_settings, acme):
    rotated = erp_settings.model_copy(update={"secret_key": "another-secret"})
    with erp_db.tenant_session(acme.id) as s:
        acc = create(s, erp_registry, erp_settings)
        with pytest.raises(AccountError, match=r"cannot be decrypted.*Enter the"):
            svc.account_secrets(s, acc, rotated)
        with pytest.raises(AccountError, match="missing required secret field"):
            svc.update_account(s, erp_registry, rotated, acc, secrets={"session_key": "sk"})
        svc.update_account(s, erp_registry, rotated, acc, secrets={"app_secret": "fresh"})
        assert svc.account_secrets(s, acc, rotated) == {"app_secret": "fresh"}


def test_tokens_are_encrypted_with_expiry(erp_db, erp_registry, erp_settings, acme):
    exp = datetime(2026, 12, 1, tzinfo=UTC)
    with erp_db.tenant_session(acme.id) as s:
        acc = create(s, erp_registry, erp_settings)
        assert svc.token_status(acc)["access_token_set"] is False
        svc.set_tokens(
            s,
            erp_settings,
            acc,
            TokenSet(access_token=TOKEN, expires_at=exp, refresh_token=REFRESH),
        )
        assert TOKEN not in (acc.access_token or "") and REFRESH not in (acc.refresh_token or "")
        assert svc.account_context(s, acc, erp_settings).access_token == TOKEN
        assert svc.account_refresh_token(s, acc, erp_settings) == REFRESH
        status = svc.token_status(acc, now=exp - timedelta(seconds=1))
        assert status["access_token_set"] and not status["access_token_expired"]
        assert svc.token_status(acc, now=exp)["access_token_expired"]
        svc.set_tokens(s, erp_settings, acc, TokenSet(access_token="new"))  # keeps the refresh
        assert svc.account_refresh_token(s, acc, erp_settings) == REFRESH
        with pytest.raises(AccountError, match="timezone-aware"):
            svc.set_tokens(
                s, erp_settings, acc, TokenSet(access_token="x", expires_at=datetime(2026, 1, 1))
            )


def test_a_ciphertext_copied_to_another_row_or_tenant_fails(
    erp_db, erp_registry, erp_settings, acme, make_tenant
):
    bolt = make_tenant("bolt", plugins=("test_beta",))
    with erp_db.tenant_session(acme.id) as s:
        a1 = create(s, erp_registry, erp_settings)
        a2 = create(s, erp_registry, erp_settings, shop_id="shop-2", secrets={"app_secret": "two"})
        a1_id, a2_id, blob = a1.id, a2.id, a1.secrets
    with erp_db.tenant_session(bolt.id) as s:
        b1_id = create(s, erp_registry, erp_settings, secrets={"app_secret": "bolt"}).id
    with erp_db.engine.begin() as conn:
        if erp_db.is_postgres:
            conn.execute(text("SELECT set_config('erp.all_tenants', 'on', true)"))
        for target in (a2_id, b1_id):
            conn.execute(
                update(ChannelAccount.__table__)  # type: ignore[arg-type]
                .where(ChannelAccount.__table__.c.id == target)
                .values(secrets=blob)
            )
    with erp_db.tenant_session(acme.id) as s:
        assert svc.account_secrets(s, svc.get_account(s, a1_id), erp_settings)
        with pytest.raises(AccountError, match="cannot be decrypted"):
            svc.account_secrets(s, svc.get_account(s, a2_id), erp_settings)
        with pytest.raises(AccountNotFound):
            svc.get_account(s, b1_id)  # another tenant's row is not even visible
    with (
        erp_db.tenant_session(bolt.id) as s,
        pytest.raises(AccountError, match="cannot be decrypted"),
    ):
        svc.account_secrets(s, svc.get_account(s, b1_id), erp_settings)


def test_secrets_never_appear_in_logs_reprs_errors_or_audit(
    erp_db, erp_registry, erp_settings, acme, caplog
):
    seen: list[str] = []
    caplog.set_level(logging.DEBUG)
    with erp_db.tenant_session(acme.id) as s:
        acc = create(s, erp_registry, erp_settings)
        seen += [repr(acc), str(acc.__dict__.get("secrets"))]
        svc.update_account(s, erp_registry, erp_settings, acc, secrets={"session_key": SECRET})
        svc.set_tokens(s, erp_settings, acc, TokenSet(access_token=SECRET, refresh_token=SECRET))
        seen.append(repr(TokenSet(access_token=SECRET, refresh_token=SECRET)))
        seen.append(repr(svc.account_context(s, acc, erp_settings)))
        failures: list[dict[str, Any]] = [
            {"secrets": {"app_secret": SECRET, SECRET[:5]: SECRET}},
            {"secrets": {"app_secret": 12345}},
            {"secrets": {"app_secret": SECRET * 2000}},
            {"secrets": {"app_secret": SECRET}},  # duplicate shop
            {"secrets": {"app_secret": SECRET}, "connector": "nope"},
            {"secrets": {"app_secret": SECRET}, "config": {"region": 1.5}},
        ]
        for kw in failures:
            with pytest.raises(AccountError) as info:
                create(s, erp_registry, erp_settings, **kw)
            seen += [str(info.value), repr(info.value)]
        with pytest.raises(AccountError) as info:
            svc.update_account(s, erp_registry, erp_settings, acc, secrets={"bogus": SECRET})
        seen.append(str(info.value))
        details = [repr(e.details) for e in s.scalars(select(AuditEvent))]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for text_ in (*seen, logged, *details):
        assert SECRET not in text_
    with erp_db.engine.begin() as conn:
        if erp_db.is_postgres:
            conn.execute(text("SELECT set_config('erp.all_tenants', 'on', true)"))
        rows = conn.execute(text("SELECT * FROM core_channel_account")).all()
    assert rows and all(SECRET not in repr(r) for r in rows)


def test_a_connector_that_fails_to_load_is_left_out(caplog):
    class FakeRegistry:
        def manifests(self) -> list[PluginManifest]:
            def m(name: str, channel: str | None) -> PluginManifest:
                return PluginManifest(name=name, version="1", title=name, channel=channel)

            return [
                m("good", "erp_test_beta.channel:BetaChannel"),
                m("missing", "erp_test_beta.channel:Nope"),
                m("wrong", "erp_core.channels.types:Address"),
                m("plain", None),
            ]

    with caplog.at_level(logging.ERROR):
        found = svc.connectors(FakeRegistry())  # type: ignore[arg-type]
    assert found == {"good": BetaChannel}
    assert "connector missing failed to load" in caplog.text
    assert "not a SalesChannel or PaymentChannel subclass" in caplog.text


def test_an_incomplete_connector_cannot_be_instantiated():
    from erp_core.channels import ChannelContext, SalesChannel

    class Half(SalesChannel):
        def get_order(self, order_id: str) -> Any:
            raise KeyError(order_id)

    with pytest.raises(TypeError, match="abstract"):
        Half(ChannelContext(account_id=None, tenant_id=None, shop_id="x"))  # type: ignore[abstract]
    beta = BetaChannel(
        ChannelContext(account_id=1, tenant_id=1, shop_id="s", secrets={"k": SECRET})
    )
    assert SECRET not in repr(beta) and SECRET not in repr(beta.context)


def test_migration_keeps_channel_secrets_from_older_tenants_staff(erp_db, make_tenant):
    """Tenants created before channel accounts existed: an untouched built-in staff role loses
    core.channels.manage like new tenants' staff; a customised one is left alone."""
    import importlib

    from alembic.migration import MigrationContext
    from alembic.operations import Operations
    from sqlalchemy import select

    from erp_core.auth.models import Role

    module = importlib.import_module("erp_core.db.migrations.versions.0007_core_channels")
    old, custom = make_tenant("old-shop"), make_tenant("custom-shop")
    for tid, patterns in ((old.id, module.OLD_STAFF), (custom.id, ["*", "!core.users.*"])):
        with erp_db.tenant_session(tid) as s:
            role = s.scalar(select(Role).where(Role.name == "staff"))
            assert role is not None
            role.permissions = list(patterns)
    with erp_db.engine.begin() as conn, Operations.context(MigrationContext.configure(conn)):
        module._restrict_staff()
    with erp_db.system_session() as s:
        got = {
            r.tenant_id: r.permissions
            for r in s.scalars(select(Role).where(Role.name == "staff"))
            if r.tenant_id in (old.id, custom.id)
        }
    assert got[old.id] == [*module.OLD_STAFF, "!core.channels.manage"]
    assert got[custom.id] == ["*", "!core.users.*"]
