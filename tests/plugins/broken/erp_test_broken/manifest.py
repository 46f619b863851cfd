"""A plugin whose manifest module raises on import."""

raise RuntimeError("erp_test_broken is broken on purpose")
