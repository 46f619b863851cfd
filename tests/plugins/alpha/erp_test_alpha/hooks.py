from erp_core import hookimpl
from erp_core.plugins.manifest import MenuItem
from erp_test_alpha.models import AlphaNote


@hookimpl
def erp_tenant_plugin_enabled(session, tenant, plugin):  # type: ignore[no-untyped-def]
    if plugin == "test_alpha":
        session.add(AlphaNote(tenant_id=tenant.id, text="welcome"))
        session.flush()


@hookimpl
def erp_menu_items(tenant, principal):  # type: ignore[no-untyped-def]
    return [
        MenuItem(
            id="test_alpha.dynamic",
            title="Alpha dynamic",
            href="/alpha?dyn=1",
            permission="test_alpha.note.read",
            order=11,
        )
    ]


@hookimpl
def erp_ledger_validate(session, draft):  # type: ignore[no-untyped-def]
    """Refuses journal entries whose narration asks for it (ledger tests)."""
    if "alpha refuses" in draft.narration:
        return ["test_alpha refuses this entry"]
    return []
