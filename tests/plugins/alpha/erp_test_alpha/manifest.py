"""Test plugin 'test_alpha': a model with a migration branch, API and UI routes, a menu,
permissions, hook implementations, a hookspec of its own, a task and a periodic task."""

from erp_core import MenuItem, PeriodicTask, Permission, PluginManifest, RouterMount

MANIFEST = PluginManifest(
    name="test_alpha",
    version="0.1.0",
    title="Alpha (test)",
    description="Notes; exercises every part of a manifest.",
    stage=1,
    permissions=(
        Permission(name="test_alpha.note.read", title="Read notes"),
        Permission(name="test_alpha.note.write", title="Write notes"),
    ),
    menus=(
        MenuItem(
            id="test_alpha.notes",
            title="Alpha notes",
            href="/alpha",
            permission="test_alpha.note.read",
            order=10,
        ),
    ),
    routers=(
        RouterMount(target="erp_test_alpha.api:router", prefix="/alpha"),
        RouterMount(target="erp_test_alpha.views:router", prefix="/alpha", kind="ui"),
    ),
    hooks=("erp_test_alpha.hooks",),
    hookspecs=("erp_test_alpha.hookspecs",),
    models="erp_test_alpha.models",
    migrations="erp_test_alpha:migrations/versions",
    tasks=("erp_test_alpha.tasks",),
    periodic=(PeriodicTask(name="tick", task="test_alpha.tick", every_seconds=1.0),),
    templates="erp_test_alpha:templates",
)
