"""The plugin registry: validation, dependency order, failure isolation, per-tenant hooks."""

from __future__ import annotations

import sys
import types

import pytest

from erp_core import MenuItem, Permission, PluginManifest, RouterMount, hookimpl, hookspec
from erp_core.plugins.registry import PluginRegistry


def _m(name: str, **kw: object) -> PluginManifest:
    return PluginManifest(name=name, version="1.0", title=name.title(), **kw)  # type: ignore[arg-type]


def _module(name: str, **attrs: object) -> str:
    mod = types.ModuleType(name)
    for k, v in attrs.items():
        setattr(mod, k, v)
    sys.modules[name] = mod
    return name


def test_discovery_reports_broken_and_invalid_plugins(erp_registry):
    assert {"test_alpha", "test_beta", "test_gamma"} <= set(erp_registry.plugins)
    broken = {b.name: b.error for b in erp_registry.broken}
    assert "broken on purpose" in broken["test_broken"]
    assert "invalid manifest" in broken["test_invalid"]
    assert "stage 9" in broken["test_invalid"]
    assert "must look like 'test_invalid.<thing>.<verb>'" in broken["test_invalid"]


def test_dependency_order(erp_registry):
    order = erp_registry.order
    assert order.index("test_alpha") < order.index("test_beta")
    assert erp_registry.requirements("test_beta") == ["test_alpha"]
    assert erp_registry.dependents("test_alpha", ["test_beta", "test_gamma"]) == ["test_beta"]


def test_missing_dependency_breaks_plugin_and_its_dependents():
    reg = PluginRegistry.from_manifests(
        [
            _m("aaa"),
            _m("bbb", depends=("zzz",)),
            _m("ccc", depends=("bbb",)),
        ]
    )
    assert reg.order == ["aaa"]
    errors = {b.name: b.error for b in reg.broken}
    assert errors["bbb"] == "missing dependency: zzz"
    assert "missing dependency: bbb" in errors["ccc"]


def test_dependency_cycle_is_reported():
    reg = PluginRegistry.from_manifests(
        [
            _m("aaa"),
            _m("bbb", depends=("ccc",)),
            _m("ccc", depends=("bbb",)),
        ]
    )
    assert reg.order == ["aaa"]
    assert all("dependency cycle" in b.error for b in reg.broken)
    assert {b.name for b in reg.broken} == {"bbb", "ccc"}


def test_hooks_module_that_raises_is_isolated():
    reg = PluginRegistry.from_manifests(
        [
            _m("aaa", hooks=("erp_tests_no_such_module_xyz",)),
            _m("bbb"),
        ]
    )
    assert reg.order == ["bbb"]
    assert "hooks failed to load" in reg.broken[0].error


def test_unknown_hook_implementation_is_reported():
    @hookimpl
    def erp_no_such_hook() -> None:
        """Typo'd hook name."""

    mod = _module("erp_tests_typo_hooks", erp_no_such_hook=erp_no_such_hook)
    reg = PluginRegistry.from_manifests([_m("aaa", hooks=(mod,)), _m("bbb")])
    assert reg.order == ["bbb"]
    assert "unknown hook" in reg.broken[0].error


def test_plugin_hookspecs_and_per_tenant_subsets():
    class Specs:
        @hookspec
        def erp_owner_collect(self, value: int) -> list[int]:  # type: ignore[empty-body]
            """Collect numbers."""

    @hookimpl
    def erp_owner_collect(value: int) -> int:
        return value + 1

    @hookimpl(optionalhook=True)
    def erp_owner_collect_other(value: int) -> int:
        return value

    specs = _module("erp_tests_owner_specs", erp_owner_collect=Specs.erp_owner_collect)
    owner_hooks = _module("erp_tests_owner_hooks", erp_owner_collect=erp_owner_collect)

    @hookimpl
    def user_impl(value: int) -> int:
        return value * 10

    user_hooks = _module("erp_tests_user_hooks", erp_owner_collect=user_impl)
    reg = PluginRegistry.from_manifests(
        [
            _m("owner", hookspecs=(specs,), hooks=(owner_hooks,)),
            _m("user", depends=("owner",), hooks=(user_hooks,)),
        ]
    )
    assert reg.broken == []
    assert sorted(reg.hooks_for({"owner", "user"}).erp_owner_collect(value=2)) == [3, 20]
    assert reg.hooks_for({"owner"}).erp_owner_collect(value=2) == [3]
    assert reg.hooks_for(set()).erp_owner_collect(value=2) == []
    # the same enabled set shares one cached hook view
    assert reg.hooks_for({"owner"}) is reg.hooks_for(frozenset({"owner"}))


def test_manifest_problems():
    bad = PluginManifest(
        name="Bad Name",
        version="",
        title="",
        stage=7,
        depends=("Bad Name",),
        permissions=(Permission(name="x", title="x"),),
        menus=(MenuItem(id="m", title="M", href="/m", permission=""),),
        routers=(RouterMount(target="nocolon", prefix="x"),),
        migrations="no-colon",
    )
    text = "; ".join(bad.problems())
    for fragment in (
        "name 'Bad Name'",
        "version is empty",
        "title is empty",
        "stage 7",
        "invalid dependency",
        "permission 'x'",
        "menu 'm' declares no permission",
        "router",
        "migrations must be",
    ):
        assert fragment in text
    assert _m("good", permissions=(Permission(name="good.thing.read", title="t"),)).problems() == []
    assert "reserved" in "; ".join(_m("core").problems())


@pytest.mark.parametrize(
    "enabled,tags",
    [
        (("test_alpha",), ""),
        (("test_alpha", "test_beta"), "beta"),
        (("test_alpha", "test_beta", "test_gamma"), "beta,gamma"),
    ],
)
def test_alpha_extension_point_sees_only_enabled_implementers(client, make_tenant, enabled, tags):
    t = make_tenant("acme", plugins=enabled)
    r = client.post("/api/v1/alpha/notes", json={"text": "hello"}, headers=t.auth)
    assert r.status_code == 201, r.text
    assert r.json()["tags"] == tags


def test_manifest_sandbox_needs_a_channel_and_a_target():
    assert "a sandbox needs a channel" in "; ".join(_m("shop", sandbox="m.sandbox:Box").problems())
    assert "sandbox must be 'module:Class'" in "; ".join(
        _m("shop", channel="m.channel:Shop", sandbox="nocolon").problems()
    )
    assert _m("shop", kind="connector", channel="m.c:Shop", sandbox="m.s:Box").problems() == []
