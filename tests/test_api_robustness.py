"""No route answers 500 to malformed input, and every API error is a problem document.

Every operation of the OpenAPI document (kernel and plugin routes alike, so routes added later
are covered) gets malformed JSON, wrong types, huge and odd strings, out-of-range and
non-numeric path ids, unknown and ill-typed query parameters and wrong content types, with a
valid owner token. Also: every route declares a permission or is public, and a plugin whose
router has an undeclared route is reported broken while the application still starts.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import APIRouter, Depends
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Mount, Route

from erp_core.app import create_app, route_permission
from erp_core.auth.deps import public, require
from erp_core.plugins.manifest import Permission, PluginManifest, RouterMount
from erp_core.plugins.registry import PluginRegistry
from erp_core.testing.fixtures import PASSWORD
from erp_core.testing.fixtures import TenantFixture as Tenant

API = "/api/v1"
PLUGINS = ("test_alpha", "test_beta", "test_gamma")
PARAM_RE = re.compile(r"{(\w+)(?::\w+)?}")

BIG = "x" * 100_000
DEEP: Any = []
for _ in range(200):
    DEEP = [DEEP]

INT_PATH_VALUES = [
    "abc",
    "-1",
    "0",
    "-0",
    "1.5",
    "1e3",
    "0x1F",
    "nan",
    "inf",
    "true",
    "null",
    str(2**63 - 1),
    str(2**63),
    str(-(2**63) - 1),
    "99999999999999999999999999999",
    "%00",
    "%20",
    "%ff",
    "\u0661\u0662",  # Arabic-Indic digits
    "1;DROP TABLE core_tenant",
]
STR_PATH_VALUES = ["x" * 3000, "%00", "..%2F..%2Fetc", "名字", "a%20b", "-1", "%ff", "' OR '1'='1"]
QUERY_VALUES = [
    "abc",
    "-1",
    "0",
    "1.5",
    "nan",
    str(2**63),
    "99999999999999999999999999999",
    "x" * 5000,
    "\x00",
    "",
    "true",
    "名字",
]
JSON_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    2**63,
    -(2**63) - 1,
    10**40,
    1.5,
    1e308,
    "",
    "   ",
    BIG,
    "a\x00b",
    "\ud800",
    "名字",
    "9999-12-31T23:59:59-10:00",
    "0001-01-01T00:00:00+14:00",
    [],
    [1, "a", None],
    [BIG],
    ["a\x00b"],
    {},
    {"a": {"b": [1]}},
    DEEP,
]
MALFORMED_BODIES: list[bytes] = [
    b"",
    b"{",
    b"[",
    b'{"a":',
    b"nul",
    b"\xff\xfe\x00",
    b'{"a": 1}}',
    b'"just a string"',
    b"123",
    b"null",
    b"[{}]",
    b'{"x": NaN, "y": Infinity}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"' + b"k" * 100_000 + b'": 1}',
    b'{"\\ud800": 1, "text": "\\udfff"}',
]
CONTENT_TYPES: list[tuple[str | None, bytes]] = [
    ("text/plain", b'{"text": "x"}'),
    ("application/x-www-form-urlencoded", b"text=x&name=y"),
    ("multipart/form-data; boundary=zz", b'--zz\r\nContent-Disposition: form-data; name="a"'),
    ("multipart/form-data", b"no boundary"),
    ("application/xml", b"<a>1</a>"),
    (None, b'{"text": "x"}'),
    ("application/json; charset=utf-16", '{"text": "x"}'.encode("utf-16")),
    ("application/json; charset=no-such-charset", b'{"text": "x"}'),
    ("application/vnd.api+json", b'{"text": "x"}'),
    ("application/json", "名字".encode("gb18030")),
    ("garbage", b"{}"),
]

# plausible values for well-known body fields; ``{n}`` makes a field unique per request
FIELD_VALUES: dict[str, Any] = {
    "email": "staff@acme.test",
    "password": PASSWORD,
    "role": "viewer",
    "name": "fz{n}",
    "title": "Fuzz",
    "text": "fuzz",
    "permissions": ["*.read"],
    "scopes": ["*.read"],
    "currency": "CNY",
    "timezone": "Asia/Shanghai",
    "locale": "en",
    "is_active": True,
}


# --- the operations of the OpenAPI document ------------------------------------------------------


@dataclass
class Op:
    method: str
    path: str
    params: list[dict[str, Any]]
    body_schema: dict[str, Any] | None

    def where(self, detail: str) -> str:
        return f"{self.method} {self.path} [{detail}]"


def operations(doc: dict[str, Any]) -> list[Op]:
    out = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            schema = _resolve(body["schema"], doc) if body else None
            out.append(Op(method.upper(), path, op.get("parameters", []), schema))
    return out


def _resolve(schema: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return _resolve(doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]], doc)
    return schema


#: Fields that only matter for a new row (a new user's name and password): when one of them is
#: fuzzed, the e-mail is made unique so that the request creates a user.
FRESH_FOR = {"name", "password"}

_counter = itertools.count()


def base_body(op: Op, doc: dict[str, Any], fuzzed: set[str] | None = None) -> dict[str, Any]:
    """A body with every known field plausibly filled (unique where it must be)."""
    assert op.body_schema is not None
    n = next(_counter)
    out: dict[str, Any] = {}
    props = op.body_schema.get("properties", {})
    for key, prop in props.items():
        if key == "email" and FRESH_FOR & (fuzzed or set()):
            out[key] = f"fuzz{n}@acme.test"
        elif key in FIELD_VALUES:
            value = FIELD_VALUES[key]
            out[key] = value.format(n=n) if isinstance(value, str) else value
        elif key in op.body_schema.get("required", []):
            kind = _resolve(prop, doc).get("type")
            out[key] = {"integer": 1, "number": 1, "boolean": False, "array": []}.get(
                str(kind), f"v{n}"
            )
    return out


@dataclass
class Problems:
    """Collects every violation, so one run reports them all."""

    found: list[str]

    def check(self, r: Any, where: str) -> None:
        status = r.status_code
        if status >= 500:
            self.found.append(f"{where}: {status} {r.text[:200]}")
            return
        if not r.request.url.path.startswith(API) or not 400 <= status < 500:
            return
        ctype = r.headers.get("content-type", "")
        if not ctype.startswith("application/problem+json"):
            self.found.append(f"{where}: {status} is {ctype!r}, not problem+json")
            return
        body = r.json()
        missing = [k for k in ("type", "title", "status", "detail") if k not in body]
        if missing or body["status"] != status:
            self.found.append(f"{where}: problem lacks {missing} or has the wrong status")
        if status == 422 and not (isinstance(body.get("errors"), list) and body["errors"]):
            self.found.append(f"{where}: 422 without an errors list: {str(body)[:200]}")

    def assert_none(self) -> None:
        unique = sorted(set(self.found))
        assert unique == [], f"{len(unique)} problems:\n" + "\n".join(unique[:60])


@dataclass
class World:
    client: TestClient
    doc: dict[str, Any]
    tenant: Tenant
    ids: dict[str, int]

    @property
    def auth(self) -> dict[str, str]:
        return self.tenant.auth

    def url(self, op: Op, **given: str) -> str:
        def fill(m: re.Match[str]) -> str:
            name = m.group(1)
            if name in given:
                return given[name]
            return str(self.ids.get(name, 987654321))

        return PARAM_RE.sub(fill, op.path)


@pytest.fixture
def world(client: TestClient, make_tenant: Any) -> World:
    t = make_tenant("acme", plugins=PLUGINS)
    h = t.auth
    staff = client.post(
        f"{API}/users",
        json={"email": "staff@acme.test", "role": "staff", "password": PASSWORD},
        headers=h,
    ).json()
    role = client.post(
        f"{API}/roles", json={"name": "target", "permissions": ["*.read"]}, headers=h
    ).json()
    token = client.post(f"{API}/tokens", json={"name": "target"}, headers=h).json()
    note = client.post(f"{API}/alpha/notes", json={"text": "target"}, headers=h).json()
    item = client.get(f"{API}/gamma/items", headers=h).json()[0]
    ids = {
        "user_id": staff["id"],
        "role_id": role["id"],
        "token_id": token["id"],
        "note_id": note["id"],
        "item_id": item["id"],
    }
    doc = client.get("/openapi.json").json()
    return World(client, doc, t, ids)


def _send(
    w: World,
    op: Op,
    url: str,
    *,
    body: Any = None,
    raw: bytes | None = None,
    ctype: str | None = "application/json",
    params: dict[str, str] | None = None,
) -> Any:
    headers = dict(w.auth)
    content = raw
    if content is None and body is not None:
        content = json.dumps(body).encode()
    if content is not None and ctype is not None:
        headers["content-type"] = ctype
    return w.client.request(op.method, url, content=content, headers=headers, params=params)


# --- the OpenAPI document ----------------------------------------------------------------------


def test_openapi_document_is_served(client):
    r = client.get("/openapi.json")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    paths = set(doc["paths"])
    assert {f"{API}/tenants/current", f"{API}/users/{{user_id}}", f"{API}/tokens"} <= paths
    assert {f"{API}/alpha/notes/{{note_id}}", f"{API}/gamma/items/{{item_id}}"} <= paths


# --- malformed input ---------------------------------------------------------------------------


def _params_in(op: Op, where: str) -> Iterator[dict[str, Any]]:
    for p in op.params:
        if p.get("in") == where:
            yield p


def test_malformed_path_ids_never_500(world):
    problems = Problems([])
    for op in operations(world.doc):
        for p in _params_in(op, "path"):
            kind = _resolve(p.get("schema", {}), world.doc).get("type")
            values = INT_PATH_VALUES if kind == "integer" else STR_PATH_VALUES
            for value in values:
                url = world.url(op, **{p["name"]: value})
                body = base_body(op, world.doc) if op.body_schema else None
                r = _send(world, op, url, body=body)
                problems.check(r, op.where(f"{p['name']}={value[:20]!r}"))
    problems.assert_none()


def test_malformed_query_parameters_never_500(world):
    problems = Problems([])
    for op in operations(world.doc):
        # a path id that names nothing: unknown parameters must not change a real row
        url = world.url(op, **{n: "987654321" for n in PARAM_RE.findall(op.path)})
        if op.method == "GET":
            url = world.url(op)
        r = _send(world, op, url, params={"no_such_param": "1", "x" * 300: "y" * 300})
        problems.check(r, op.where("unknown query parameters"))
        for p in _params_in(op, "query"):
            for value in QUERY_VALUES:
                r = _send(world, op, url, params={p["name"]: value})
                problems.check(r, op.where(f"?{p['name']}={value[:20]!r}"))
    problems.assert_none()


def test_malformed_bodies_never_500(world):
    problems = Problems([])
    body_ops = [op for op in operations(world.doc) if op.body_schema is not None]
    assert len(body_ops) >= 5
    for op in body_ops:
        url = world.url(op)
        for raw in MALFORMED_BODIES:
            r = _send(world, op, url, raw=raw)
            problems.check(r, op.where(f"body {raw[:20]!r}"))
        for value in JSON_VALUES:
            r = _send(world, op, url, body=value)
            problems.check(r, op.where(f"body is {type(value).__name__}"))
        for ctype, raw in CONTENT_TYPES:
            r = _send(world, op, url, raw=raw, ctype=ctype)
            problems.check(r, op.where(f"content-type {ctype}"))
        base = base_body(op, world.doc)
        extra = {**base, "no_such_field": 1}
        problems.check(_send(world, op, url, body=extra), op.where("unknown field"))
        for key in op.body_schema.get("properties", {}):
            for value in JSON_VALUES:
                body = {**base_body(op, world.doc, {key}), key: value}
                r = _send(world, op, url, body=body)
                problems.check(r, op.where(f"{key}={str(value)[:20]!r}"))
    problems.assert_none()


JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=300)
    | st.binary(max_size=40).map(lambda b: b.decode("latin-1"))
)
JSON_ANY = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_json_in_body_fields_never_500(world, data):
    # operations whose body is an object with fields (optional bodies are `anyOf [X, null]`
    # and are fuzzed as whole bodies by test_malformed_bodies_never_500)
    body_ops = [
        op
        for op in operations(world.doc)
        if op.body_schema is not None and op.body_schema.get("properties")
    ]
    op = data.draw(st.sampled_from(body_ops), label="operation")
    keys = sorted(op.body_schema.get("properties", {}))
    fuzzed = data.draw(st.lists(st.sampled_from(keys), max_size=3, unique=True), label="keys")
    body = base_body(op, world.doc, set(fuzzed))
    for key in fuzzed:
        body[key] = data.draw(JSON_ANY, label=key)
    problems = Problems([])
    r = _send(world, op, world.url(op), raw=json.dumps(body).encode())
    problems.check(r, op.where(f"{body!r:.200}"))
    problems.assert_none()


def test_unknown_routes_and_methods_are_problems(world):
    problems = Problems([])
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        r = world.client.request(method, f"{API}/no/such/route", headers=world.auth)
        problems.check(r, f"{method} unknown route")
        assert r.status_code in (404, 405)
    r = world.client.request("PUT", f"{API}/users", headers=world.auth)
    assert r.status_code == 405
    problems.check(r, "PUT /users")
    problems.assert_none()


# --- every route declares a permission -----------------------------------------------------------


def _contexts(app: Any) -> list[Any]:
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before lazy router inclusion: app.routes is already flat
        return list(app.routes)
    return list(iter_route_contexts(app.routes))


def test_every_route_declares_a_permission_or_is_public(erp_app, erp_registry):
    docs = {erp_app.openapi_url, erp_app.docs_url, erp_app.swagger_ui_oauth2_redirect_url}
    undeclared, plugin_perms = [], set()
    known = {p.name for p in erp_registry.permissions()} | {"public", "authenticated"}
    for ctx in _contexts(erp_app):
        route = getattr(ctx, "original_route", ctx)
        if isinstance(route, APIRoute):
            perm = route_permission(route)
            if perm is None:
                undeclared.append(f"{sorted(ctx.methods)} {ctx.path}")
            else:
                assert perm in known, (ctx.path, perm)
                if perm.startswith("test_"):
                    plugin_perms.add(perm)
        elif isinstance(route, Mount):
            assert route.path.startswith("/static/"), route.path
        else:
            assert isinstance(route, Route) and route.path in docs, route
    assert undeclared == []
    assert {"test_alpha.note.read", "test_alpha.note.write", "test_gamma.item.read"} <= (
        plugin_perms
    )


# --- a plugin router with an undeclared route -----------------------------------------------------


@pytest.fixture
def fake_plugin_modules() -> Iterator[tuple[str, str]]:
    """Two router modules made in the test: one with an undeclared route, one without."""
    bad, good = "erp_test_robust_bad_api", "erp_test_robust_good_api"

    bad_mod = types.ModuleType(bad)
    bad_router = APIRouter()

    @bad_router.get("/things", dependencies=[Depends(require("test_robust_bad.thing.read"))])
    def things() -> list[str]:
        return []

    @bad_router.get("/leak")
    def leak() -> dict[str, str]:
        return {"secret": "no permission declared"}

    bad_mod.router = bad_router  # type: ignore[attr-defined]

    good_mod = types.ModuleType(good)
    good_router = APIRouter()

    @good_router.get("/things", dependencies=[Depends(require("test_robust_good.thing.read"))])
    def good_things() -> list[str]:
        return ["ok"]

    @good_router.get("/about", dependencies=[Depends(public)])
    def about() -> dict[str, str]:
        return {"about": "public"}

    good_mod.router = good_router  # type: ignore[attr-defined]
    sys.modules[bad], sys.modules[good] = bad_mod, good_mod
    try:
        yield bad, good
    finally:
        del sys.modules[bad], sys.modules[good]


def test_plugin_with_an_undeclared_route_is_broken_and_the_app_starts(
    erp_settings, erp_db, fake_plugin_modules
):
    from erp_core.tenancy.service import create_tenant, enable_plugin
    from erp_core.tenancy.service import enabled_plugins as enabled_for

    bad, good = fake_plugin_modules
    manifests = [
        PluginManifest(
            name="test_robust_bad",
            version="1.0",
            title="Bad",
            permissions=(Permission(name="test_robust_bad.thing.read", title="Read"),),
            routers=(RouterMount(target=f"{bad}:router", prefix="/robust-bad"),),
        ),
        PluginManifest(
            name="test_robust_good",
            version="1.0",
            title="Good",
            permissions=(Permission(name="test_robust_good.thing.read", title="Read"),),
            routers=(RouterMount(target=f"{good}:router", prefix="/robust-good"),),
        ),
    ]
    registry = PluginRegistry.from_manifests(manifests)
    app = create_app(erp_settings, registry=registry, db=erp_db)

    broken = {b.name: b.error for b in registry.broken}
    assert "test_robust_bad" in broken and "/leak" in broken["test_robust_bad"]
    assert "test_robust_good" not in broken
    assert "test_robust_bad" not in registry.plugins
    assert "test_robust_bad.thing.read" not in app.state.known_permissions

    from erp_core.auth import service

    with erp_db.session() as s, s.begin():
        tenant = create_tenant(s, "robust", "Robust", registry=registry)
        user = service.create_user(s, "owner@robust.test", PASSWORD)
        service.add_member(s, tenant, user, "owner")
        enable_plugin(s, registry, tenant, "test_robust_good")
        from erp_core.plugins.registry import DependencyError

        with pytest.raises(DependencyError):
            enable_plugin(s, registry, tenant, "test_robust_bad")
        _, secret = service.create_token(
            s,
            tenant,
            user,
            name="t",
            scopes=["*"],
            known_permissions=app.state.known_permissions,
        )
        assert enabled_for(s, tenant.id) == frozenset({"test_robust_good"})
    auth = {"Authorization": f"Bearer {secret}"}
    with TestClient(app, raise_server_exceptions=False) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get(f"{API}/robust-good/things", headers=auth).json() == ["ok"]
        assert c.get(f"{API}/robust-good/about", headers=auth).status_code == 200
        for path in ("/leak", "/things"):
            r = c.get(f"{API}/robust-bad{path}", headers=auth)
            assert r.status_code == 404
            assert r.headers["content-type"].startswith("application/problem+json")
        listed = c.get(f"{API}/plugins", headers=auth).json()
        assert [p["state"] for p in listed if p["name"] == "test_robust_bad"] == ["broken"]
        assert [p["state"] for p in listed if p["name"] == "test_robust_good"] == ["enabled"]
        r = c.post(f"{API}/plugins/test_robust_bad/enable", headers=auth)
        assert r.status_code == 409
