"""Plugin manifest of the order management system."""

from erp_core import MenuItem, PeriodicTask, Permission, PluginManifest, RouterMount

MANIFEST = PluginManifest(
    name="oms",
    version="0.1.0",
    title="Orders",
    description="The unified order pool of every shop: review, routing, shipping and write-back.",
    stage=1,
    permissions=(
        Permission(name="oms.order.read", title="See orders"),
        Permission(name="oms.order.write", title="Handle orders: review, release, route, ship"),
        Permission(name="oms.settings.manage", title="Change review rules, routing and allocation"),
    ),
    menus=(
        MenuItem(
            id="oms.orders",
            title="Orders",
            href="/oms/orders",
            permission="oms.order.read",
            order=5,
        ),
        MenuItem(
            id="oms.exceptions",
            title="Exceptions",
            href="/oms/exceptions",
            permission="oms.order.read",
            order=6,
        ),
        MenuItem(
            id="oms.settings",
            title="Order settings",
            href="/oms/settings",
            permission="oms.settings.manage",
            order=8,
        ),
        MenuItem(
            id="oms.rules",
            title="Review rules",
            href="/oms/rules",
            permission="oms.settings.manage",
            order=7,
        ),
    ),
    routers=(
        RouterMount(target="erp_oms.api:router", prefix="/oms"),
        RouterMount(target="erp_oms.views:router", prefix="/oms", kind="ui"),
    ),
    hooks=("erp_oms.hooks",),
    hookspecs=("erp_oms.hookspecs",),
    models="erp_oms.models",
    migrations="erp_oms:migrations/versions",
    tasks=("erp_oms.tasks",),
    periodic=(
        PeriodicTask(name="process", task="oms.process", every_seconds=10.0),
        PeriodicTask(name="writeback", task="oms.writeback", every_seconds=30.0),
        PeriodicTask(name="trails", task="oms.trails", every_seconds=60.0),
        PeriodicTask(name="stock_push", task="oms.stock_push", every_seconds=15.0),
        PeriodicTask(name="stock_push_full", task="oms.stock_push_full", every_seconds=3600.0),
    ),
    templates="erp_oms:templates",
    translations="erp_oms:locale",
)
