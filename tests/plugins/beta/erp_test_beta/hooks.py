from erp_core import hookimpl


@hookimpl
def erp_test_alpha_note_created(session, note):  # type: ignore[no-untyped-def]
    return ["beta"]
