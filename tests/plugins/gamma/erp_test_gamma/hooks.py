from erp_core import hookimpl
from erp_test_gamma.models import GammaItem


@hookimpl
def erp_tenant_plugin_enabled(session, tenant, plugin):  # type: ignore[no-untyped-def]
    if plugin == "test_gamma":
        session.add(GammaItem(tenant_id=tenant.id, name="first"))


@hookimpl(optionalhook=True)  # test_alpha may not be installed; gamma does not need it
def erp_test_alpha_note_created(session, note):  # type: ignore[no-untyped-def]
    return ["gamma"]


#: Audit events this plugin observed (tenant id, action): the audit hook test reads it.
AUDIT_SEEN: list[tuple[int | None, str]] = []


@hookimpl
def erp_audit_event(tenant_id, action, details):  # type: ignore[no-untyped-def]
    AUDIT_SEEN.append((tenant_id, action))
