"""Authentication at the gateway: identity headers (X-Consumer-*, X-Access-Token) are the
gateway's alone, so a client's own never reach an upstream; API keys, JWTs (RS/PS/ES/EdDSA/HS
against JWKS files of configured issuers), Basic passwords (PBKDF2) and mTLS client certificates
name a consumer (401 with one challenge per method without a valid one), the route's groups and
scopes let it in or not (403), and the upstream is told who called: X-Consumer-* headers and an
ES256 identity token that PyJWT verifies against the JWKS the gateway publishes (admin listener
and jwks_path), also across a reload. Configuration mistakes are refused by `ringway check` with
FILE:LINE:COL."""
import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, HMACAlgorithm, OKPAlgorithm, RSAAlgorithm

from conftest import (RINGWAY, Gateway, Upstream, free_port, make_config, position, ringway_check,
                      wait_port)


def key_hash(key):
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture(scope="module")
def auth_gateway(tmp_path_factory):
    up = Upstream("a1")
    port = free_port()
    routes = (
        "      - name: open\n        match: { path_prefix: /open }\n        upstream: app\n"
        "      - name: keyed\n        match: { path_prefix: /keyed }\n        upstream: app\n"
        "        auth: [api_key]\n"
        "      - name: query\n        match: { path_prefix: /query }\n        upstream: app\n"
        "        auth: [api_key]\n        api_key: { header: X-Key, query: api_key }\n"
        "      - name: partners\n        match: { path_prefix: /partners }\n        upstream: app\n"
        "        auth: [api_key]\n        allow_groups: [partners]\n"
        "      - name: nobanned\n        match: { path_prefix: /nobanned }\n        upstream: app\n"
        "        auth: [api_key]\n        deny_groups: [banned]\n"
        "      - name: shown\n        match: { path_prefix: /shown }\n        upstream: app\n"
        "        auth: [api_key]\n        hide_credentials: false\n")
    consumers = (
        "consumers:\n"
        "  - name: mobile-app\n    groups: [mobile]\n"
        f"    api_keys: [\"{key_hash('key-mobile')}\"]\n"
        "  - name: partner\n    groups: [partners, banned]\n"
        f"    api_keys: [\"{key_hash('key-partner')}\"]\n")
    cfg = make_config(port, [("app", [up.addr], "10s")], routes, extra=consumers)
    internal_port = free_port()  # a frontend whose auth keys are its routes' defaults
    cfg += (f"  - name: internal\n    listen: ['127.0.0.1:{internal_port}']\n"
            "    auth: [api_key]\n    allow_groups: [mobile]\n    routes:\n"
            "      - name: all\n        match: { path_prefix: / }\n        upstream: app\n")
    gw = Gateway(str(tmp_path_factory.mktemp("gw")), cfg, port)
    gw.internal_port = internal_port
    yield gw
    assert gw.stop() == 0, gw.logs()[-4000:]
    up.stop()


def request(gw, path, headers=None, port=None):
    c = http.client.HTTPConnection("127.0.0.1", port or gw.port, timeout=10)
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r, body


def upstream_echo(gw, path, headers, port=None):
    r, body = request(gw, path, headers, port)
    assert r.status == 200, body
    echo = json.loads(body)
    echo["headers"] = [(k.lower(), v) for k, v in echo["headers"]]
    return echo


def access_record(gw, path):
    """The access-log record of path (written asynchronously: waited for)."""
    deadline = time.time() + 10
    while time.time() < deadline:
        recs = [r for r in gw.access_records() if r["path"] == path]
        if recs:
            return recs[-1]
        time.sleep(0.05)
    raise AssertionError(f"no access log record of {path}")


def upstream_headers(gw, path, headers):
    return upstream_echo(gw, path, headers)["headers"]


def test_forged_identity_headers_are_dropped(auth_gateway):
    """A client's own X-Consumer-* and X-Access-Token never reach an upstream; look-alikes do."""
    seen = upstream_headers(auth_gateway, "/open/x", {
        "X-Consumer-Id": "admin", "x-consumer-groups": "root", "X-CONSUMER-NAME": "admin",
        "X-Access-Token": "forged", "X-Consumer": "kept", "X-Access-Tokens": "kept",
        "X-Other": "kept"})
    names = [k for k, _ in seen]
    for forged in ("x-consumer-id", "x-consumer-groups", "x-consumer-name", "x-access-token"):
        assert forged not in names, forged
    assert ("x-consumer", "kept") in seen
    assert ("x-access-tokens", "kept") in seen
    assert ("x-other", "kept") in seen


def test_forged_identity_headers_are_dropped_on_an_auth_route(auth_gateway):
    """On an API-key route the upstream sees the gateway's identity headers, not the client's."""
    seen = upstream_headers(auth_gateway, "/keyed/x", {
        "X-API-Key": "key-mobile", "X-Consumer-Id": "admin", "X-Consumer-Groups": "root",
        "X-Access-Token": "forged"})
    assert ("x-consumer-id", "mobile-app") in seen
    assert ("x-consumer-groups", "mobile") in seen
    assert ("x-consumer-id", "admin") not in seen
    assert ("x-consumer-groups", "root") not in seen
    assert "x-access-token" not in [k for k, _ in seen]


def test_key_in_header_names_the_consumer_and_is_hidden(auth_gateway):
    """A key in X-API-Key names its consumer and groups and is not forwarded; the log names it."""
    seen = upstream_headers(auth_gateway, "/keyed/logged", {"x-api-key": "key-partner"})
    assert ("x-consumer-id", "partner") in seen
    assert ("x-consumer-name", "partner") in seen
    assert ("x-consumer-groups", "partners,banned") in seen
    assert "x-api-key" not in [k for k, _ in seen]
    assert access_record(auth_gateway, "/keyed/logged")["consumer"] == "partner"


def test_key_in_query_parameter_when_configured(auth_gateway):
    """With api_key.query the key may come in the query string, which loses it upstream."""
    echo = upstream_echo(auth_gateway, "/query/x?a=1&api_key=key-mobile&b=2", {})
    assert echo["query"] == "a=1&b=2"
    assert ("x-consumer-id", "mobile-app") in echo["headers"]
    echo = upstream_echo(auth_gateway, "/query/x?api_key=key-mobile", {})
    assert echo["query"] == ""
    seen = upstream_headers(auth_gateway, "/query/x", {"X-Key": "key-mobile"})
    assert ("x-consumer-id", "mobile-app") in seen
    assert "x-key" not in [k for k, _ in seen]
    r, _ = request(auth_gateway, "/keyed/x?api_key=key-mobile")  # no query on that route
    assert r.status == 401


def assert_refused(r, body, status, reason):
    assert r.status == status, body
    err = json.loads(body)["error"]
    assert err["status"] == status and err["reason"] == reason
    if status == 401:
        assert r.getheader("WWW-Authenticate") == 'ApiKey realm="ringway"'
    else:
        assert r.getheader("WWW-Authenticate") is None


def test_missing_key_is_401_with_a_challenge(auth_gateway):
    """No key: 401 auth_missing with an ApiKey challenge, logged without a consumer."""
    r, body = request(auth_gateway, "/keyed/refused")
    assert_refused(r, body, 401, "auth_missing")
    assert json.loads(body)["error"]["message"] == "credentials required"
    rec = access_record(auth_gateway, "/keyed/refused")
    assert rec["status"] == 401 and rec["reason"] == "auth_missing" and rec["consumer"] is None


def test_wrong_key_is_401(auth_gateway):
    """An unknown key: 401 auth_failed."""
    r, body = request(auth_gateway, "/keyed/x", {"X-API-Key": "key-unknown"})
    assert_refused(r, body, 401, "auth_failed")


def test_acl_allow_and_deny_groups(auth_gateway):
    """allow_groups lets only its groups in, deny_groups keeps its groups out (403)."""
    assert upstream_headers(auth_gateway, "/partners/x", {"X-API-Key": "key-partner"})
    r, body = request(auth_gateway, "/partners/x", {"X-API-Key": "key-mobile"})
    assert_refused(r, body, 403, "acl_denied")
    assert upstream_headers(auth_gateway, "/nobanned/x", {"X-API-Key": "key-mobile"})
    r, body = request(auth_gateway, "/nobanned/x", {"X-API-Key": "key-partner"})
    assert_refused(r, body, 403, "acl_denied")


def test_hide_credentials_false_keeps_the_key(auth_gateway):
    """hide_credentials: false forwards the key along with the identity headers."""
    seen = upstream_headers(auth_gateway, "/shown/x", {"X-API-Key": "key-mobile"})
    assert ("x-api-key", "key-mobile") in seen
    assert ("x-consumer-id", "mobile-app") in seen


def test_frontend_defaults_apply_to_its_routes(auth_gateway):
    """A frontend's auth and groups are the defaults of its routes."""
    port = auth_gateway.internal_port
    r, body = request(auth_gateway, "/x", port=port)
    assert_refused(r, body, 401, "auth_missing")
    r, body = request(auth_gateway, "/x", {"X-API-Key": "key-partner"}, port=port)
    assert_refused(r, body, 403, "acl_denied")
    seen = upstream_echo(auth_gateway, "/x", {"X-API-Key": "key-mobile"}, port=port)["headers"]
    assert ("x-consumer-id", "mobile-app") in seen


def test_route_without_auth_needs_nothing(auth_gateway):
    """A route without auth passes everything through and names no consumer."""
    seen = upstream_headers(auth_gateway, "/open/x", {"X-API-Key": "anything"})
    assert ("x-api-key", "anything") in seen
    assert "x-consumer-id" not in [k for k, _ in seen]


# ---- JWT, Basic, mTLS and the identity token -------------------------------------------------------

ISS = "https://id.example.test"          # audiences [api, api2], leeway 30s, groups claim "groups"
STRICT = "https://strict.example.test"   # algorithms [RS256], leeway 0, client_id, roles
BASIC_PASSWORD = "correct horse:battery-\u00fc"  # a ':' and UTF-8 in the password
BANNED_PASSWORD = "mallory-pw"
API_KEY = "key-partner-a"
SLOW_PASSWORD = "slow-pw"  # 200,000 PBKDF2 iterations: a check that takes a while


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header, payload, sign=None):
    """A JWS compact token made by hand (for what PyJWT refuses to make): sign(signing input)
    gives the signature bytes; None leaves the signature empty."""
    h = b64u(json.dumps(header, separators=(",", ":")).encode())
    p = b64u(json.dumps(payload, separators=(",", ":")).encode())
    sig = sign(f"{h}.{p}".encode()) if sign else b""
    return f"{h}.{p}.{b64u(sig)}"


def pbkdf2_hash(password, iterations=1000, salt=None):
    salt = salt if salt is not None else os.urandom(16)
    dk = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return (f"pbkdf2-sha256:{iterations}:{base64.b64encode(salt).decode()}:"
            f"{base64.b64encode(dk).decode()}")


SLOW_HASH = pbkdf2_hash(SLOW_PASSWORD, 200_000)


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def jwk_of(alg_cls, key, kid, **extra):
    d = json.loads(alg_cls.to_jwk(key))
    d.update(kid=kid, **extra)
    return d


class Idp:
    """The identity providers' keys: issuer ISS's JWKS (RSA, EC P-256, EC P-384, Ed25519, a 64-byte
    HMAC secret) and STRICT's (RSA, EC P-256), and an attacker's RSA key in neither."""

    def __init__(self, directory):
        self.dir = str(directory)
        self.keys = {
            "rsa1": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ec256": ec.generate_private_key(ec.SECP256R1()),
            "ec384": ec.generate_private_key(ec.SECP384R1()),
            "ed1": ed25519.Ed25519PrivateKey.generate(),
            "hs1": os.urandom(64),
            "rsa-b": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ec-b": ec.generate_private_key(ec.SECP256R1()),
        }
        self.attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        k = self.keys
        self.jwks_a = {"keys": [
            jwk_of(RSAAlgorithm, k["rsa1"].public_key(), "rsa1", use="sig"),
            jwk_of(ECAlgorithm, k["ec256"].public_key(), "ec256"),
            jwk_of(ECAlgorithm, k["ec384"].public_key(), "ec384", use="sig"),
            jwk_of(OKPAlgorithm, k["ed1"].public_key(), "ed1"),
            jwk_of(HMACAlgorithm, k["hs1"], "hs1"),
        ]}
        self.jwks_b = {"keys": [
            jwk_of(RSAAlgorithm, k["rsa-b"].public_key(), "rsa-b"),
            jwk_of(ECAlgorithm, k["ec-b"].public_key(), "ec-b"),
        ]}
        self.jwks_a_path = os.path.join(self.dir, "idp-jwks.json")
        self.jwks_b_path = os.path.join(self.dir, "strict-jwks.json")
        with open(self.jwks_a_path, "w") as f:
            json.dump(self.jwks_a, f)
        with open(self.jwks_b_path, "w") as f:
            json.dump(self.jwks_b, f)

    def rsa_public_pem(self):
        return self.keys["rsa1"].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def token(self, alg="RS256", kid="rsa1", key=None, headers=None, **claims):
        """A token of ISS for audience api, subject alice, groups [staff, dev], valid for 5
        minutes, signed with kid's key (or `key`); claims override those (None removes one)."""
        now = int(time.time())
        payload = {"iss": ISS, "aud": "api", "sub": "alice", "iat": now, "exp": now + 300,
                   "groups": ["staff", "dev"], "scope": "orders:read profile"}
        payload.update(claims)
        payload = {n: v for n, v in payload.items() if v is not None}
        hdr = {"kid": kid} if kid is not None else {}
        hdr.update(headers or {})
        return jwt.encode(payload, key if key is not None else self.keys[kid], algorithm=alg,
                          headers=hdr)

    def strict_token(self, alg="RS256", kid="rsa-b", **claims):
        """A token of STRICT (consumer claim client_id, groups in roles as a string)."""
        now = int(time.time())
        payload = {"iss": STRICT, "client_id": "batch-job", "roles": "reader writer",
                   "iat": now, "exp": now + 300}
        payload.update(claims)
        payload = {n: v for n, v in payload.items() if v is not None}
        return jwt.encode(payload, self.keys[kid], algorithm=alg, headers={"kid": kid})


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    return Idp(tmp_path_factory.mktemp("idp"))


def jwt_config(port, secure_port, admin_port, up, idp, pki):
    routes = "".join(
        f"      - name: {name}\n        match: {{ path_prefix: /{name} }}\n"
        f"        upstream: {ups}\n        auth: [{methods}]\n{more}"
        for name, ups, methods, more in (
            ("jwt", "orders", "jwt", ""),
            ("jwt2", "billing", "jwt", ""),
            ("shown", "orders", "jwt", "        hide_credentials: false\n"),
            ("basic", "billing", "basic", ""),
            ("multi", "orders", "api_key, jwt, basic", ""),
            ("scoped", "orders", "jwt, basic", "        scopes: [orders:read, orders:write]\n"),
            ("partners", "orders", "jwt, basic", "        allow_groups: [partners]\n"),
            ("nobanned", "orders", "jwt, basic", "        deny_groups: [banned]\n"),
        ))
    routes += ("      - name: open\n        match: { path_prefix: /open }\n"
               "        upstream: orders\n")
    extra = (
        "consumers:\n"
        "  - name: partner-a\n    groups: [partners]\n"
        f"    api_keys: [\"{key_hash(API_KEY)}\"]\n"
        "  - name: billing\n    groups: [finance]\n"
        f"    basic: {{ user: billing-svc, password_hash: \"{pbkdf2_hash(BASIC_PASSWORD)}\" }}\n"
        "  - name: mallory\n    groups: [banned]\n"
        f"    basic: {{ user: mallory, password_hash: \"{pbkdf2_hash(BANNED_PASSWORD)}\" }}\n"
        "  - name: client-1\n    groups: [machines]\n"
        "  - name: slowpoke\n"
        f"    basic: {{ user: slowpoke, password_hash: \"{SLOW_HASH}\" }}\n"
        "jwt_issuers:\n"
        f"  - issuer: {ISS}\n    jwks_file: {idp.jwks_a_path}\n    audiences: [api, api2]\n"
        "    groups_claim: groups\n    leeway: 30s\n"
        f"  - issuer: {STRICT}\n    jwks_file: {idp.jwks_b_path}\n    algorithms: [RS256]\n"
        "    consumer_claim: client_id\n    groups_claim: roles\n    cache: true\n"
        "identity_token:\n  ttl: 60s\n  jwks_path: /.well-known/jwks.json\n"
        f"admin:\n  listen: 127.0.0.1:{admin_port}\n")
    cfg = make_config(port, [("orders", [up.addr], "10s"), ("billing", [up.addr], "10s")],
                      routes, extra=extra)
    cfg += (f"  - name: secure\n    listen:\n      - address: '127.0.0.1:{secure_port}'\n"
            f"        tls:\n          certs: [{{cert: '{pki.path('a.pem')}', "
            f"key: '{pki.path('a.key')}'}}]\n          client_ca: '{pki.path('ca.pem')}'\n"
            "    routes:\n"
            "      - name: mtls\n        match: { path_prefix: /mtls }\n        upstream: orders\n"
            "        auth: [mtls]\n"
            "      - name: mixed\n        match: { path_prefix: /mixed }\n"
            "        upstream: billing\n        auth: [jwt, mtls]\n")
    return cfg


def assert_no_sanitizer_report(gw):
    logs = gw.logs()
    assert "AddressSanitizer" not in logs and "LeakSanitizer" not in logs, logs[-8000:]


def startup_log(directory):
    try:
        with open(os.path.join(directory, "ringway.log"), errors="replace") as f:
            return f.read()[-3000:]
    except OSError:
        return "(no log)"


@pytest.fixture(scope="module")
def jgw(tmp_path_factory, idp, pki):
    """The gateway with consumers, two JWT issuers, an identity token with a generated key
    (published on the admin listener and on /.well-known/jwks.json), a plain frontend and an
    mTLS one."""
    pki.issue("nobody", "/CN=nobody-here/O=ringway-tests", client=True)
    up = Upstream("idapp")
    port, secure_port, admin_port = free_port(), free_port(), free_port()
    d = str(tmp_path_factory.mktemp("jgw"))
    try:
        gw = Gateway(d, jwt_config(port, secure_port, admin_port, up, idp, pki), port)
    except Exception as e:
        up.stop()
        raise RuntimeError(f"{e}: {startup_log(d)}") from e
    gw.secure_port, gw.admin_port, gw.pki = secure_port, admin_port, pki
    try:
        wait_port(secure_port, gw.proc)
        wait_port(admin_port, gw.proc)
    except Exception:
        gw.stop()
        up.stop()
        raise
    yield gw
    code = gw.stop()
    up.stop()
    assert code == 0, gw.logs()[-4000:]
    assert_no_sanitizer_report(gw)


def call(port, path, headers=None, method="GET", conn=None):
    """(response, body, headers as [(lowercase name, value)] the upstream saw or None)."""
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    if conn is None:
        c.close()
    seen = None
    if r.status == 200 and body[:1] == b"{" and r.getheader("X-Upstream"):
        seen = [(k.lower(), v) for k, v in json.loads(body)["headers"]]
    return r, body, seen


def tls_call(gw, cert, path, headers=None):
    ctx = ssl.create_default_context(cafile=gw.pki.path("ca.pem"))
    ctx.check_hostname = False
    if cert:
        ctx.load_cert_chain(gw.pki.path(cert + ".pem"), gw.pki.path(cert + ".key"))
    c = http.client.HTTPSConnection("127.0.0.1", gw.secure_port, context=ctx, timeout=10)
    try:
        return call(gw.secure_port, path, headers, conn=c)
    finally:
        c.close()


def hdr(seen, name):
    """The values of header `name` the upstream saw."""
    return [v for k, v in seen if k == name.lower()]


def ok(res):
    """The upstream's view of a request that must have passed: its headers."""
    r, body, seen = res
    assert r.status == 200, (r.status, body)
    assert seen is not None, body
    return seen


def challenges(r):
    return r.msg.get_all("WWW-Authenticate") or []


def assert_error(res, status, reason):
    r, body, _ = res
    assert r.status == status, (r.status, body)
    err = json.loads(body)["error"]
    assert err["status"] == status and err["reason"] == reason, err
    return r


def assert_invalid_token(res, reason="auth_failed"):
    """401 whose Bearer challenge says error="invalid_token" with an error_description."""
    r = assert_error(res, 401, reason)
    bearer = [c for c in challenges(r) if c.startswith("Bearer ")]
    assert len(bearer) == 1, challenges(r)
    assert bearer[0].startswith('Bearer realm="ringway", error="invalid_token", '
                                'error_description="'), bearer[0]
    assert bearer[0].endswith('"'), bearer[0]
    return bearer[0]


def groups_of(seen):
    values = hdr(seen, "x-consumer-groups")
    assert len(values) == 1, seen
    return set(values[0].split(",")) if values[0] else set()


def consumer_of(seen):
    ids, names = hdr(seen, "x-consumer-id"), hdr(seen, "x-consumer-name")
    assert len(ids) == 1 and ids == names, seen
    return ids[0]


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


# ---- JWT accepted ----------------------------------------------------------------------------------

@pytest.mark.parametrize("alg,kid", [
    ("RS256", "rsa1"), ("RS384", "rsa1"), ("RS512", "rsa1"), ("PS256", "rsa1"),
    ("ES256", "ec256"), ("ES384", "ec384"), ("EdDSA", "ed1"),
    ("HS256", "hs1"), ("HS384", "hs1"), ("HS512", "hs1")])
def test_jwt_accepted_for_every_algorithm(jgw, idp, alg, kid):
    """A token signed with any key of the issuer's JWKS, in that key's algorithm, gets through
    and names its consumer and groups to the upstream."""
    seen = ok(call(jgw.port, f"/jwt/{alg}", bearer(idp.token(alg, kid))))
    assert consumer_of(seen) == "alice"
    assert groups_of(seen) == {"staff", "dev"}
    assert hdr(seen, "authorization") == []  # hidden by default


def test_jwt_consumer_and_groups_claims_of_a_second_issuer(jgw, idp):
    """consumer_claim and a space-separated groups claim are what the issuer says they are."""
    seen = ok(call(jgw.port, "/jwt/strict", bearer(idp.strict_token())))
    assert consumer_of(seen) == "batch-job"
    assert groups_of(seen) == {"reader", "writer"}


def test_jwt_groups_merge_with_a_configured_consumer(jgw, idp):
    """A token whose subject is a configured consumer gets that consumer's groups too."""
    seen = ok(call(jgw.port, "/jwt/merge", bearer(idp.token(sub="partner-a", groups=["beta"]))))
    assert consumer_of(seen) == "partner-a"
    assert groups_of(seen) == {"beta", "partners"}


def test_jwt_audience_list_and_leeway_accept(jgw, idp):
    """aud may be a list holding one of the audiences; exp and nbf within the leeway pass."""
    now = int(time.time())
    ok(call(jgw.port, "/jwt/aud", bearer(idp.token(aud=["other", "api2"]))))
    ok(call(jgw.port, "/jwt/leeway", bearer(idp.token(exp=now - 10, iat=now - 300))))
    ok(call(jgw.port, "/jwt/nbf", bearer(idp.token(nbf=now + 10))))


@pytest.mark.parametrize("sub", ["auth0|5f7c8ec7c33c6c004bbafe82", "bob@example.com",
                                 "3f0b7a52-9d1e-4c43-8a8e-2f1c3b6f0d11", "service-account.ci_42"])
def test_jwt_common_subject_forms(jgw, idp, sub):
    """Subjects as identity providers issue them (ids with '|', e-mail addresses, UUIDs) name
    the consumer unchanged."""
    seen = ok(call(jgw.port, "/jwt/sub", bearer(idp.token(sub=sub))))
    assert consumer_of(seen) == sub
    assert verify_identity(identity_token(seen), admin_jwks(jgw), "orders")["sub"] == sub


@pytest.mark.parametrize("claims", [
    {"sub": "alice\r\nX-Injected: 1"}, {"groups": ["ok\r\nX-Injected: 1"]},
    {"groups": ["x,partners"]}, {"sub": "alice,partner-a"}],
    ids=["crlf_in_sub", "crlf_in_group", "comma_in_group", "comma_in_sub"])
def test_jwt_claims_cannot_inject_headers_or_groups(jgw, idp, claims):
    """Claims with CR/LF or commas never turn into extra headers or extra groups upstream (the
    gateway refuses such a token or keeps the value whole)."""
    r, body, seen = call(jgw.port, "/partners/inject", bearer(idp.token(**claims)))
    if r.status == 401:
        assert_invalid_token((r, body, seen))
        return
    assert r.status in (200, 403), body
    if seen is not None:
        assert "x-injected" not in [k for k, _ in seen]
        assert "partners" not in groups_of(seen)
        assert consumer_of(seen) in ("alice", claims.get("sub"))


def test_bearer_scheme_is_case_insensitive(jgw, idp):
    """Authentication schemes are case-insensitive (RFC 9110 11.1): "bearer" and "basic" work."""
    ok(call(jgw.port, "/jwt/lower", {"Authorization": "bearer " + idp.token()}))
    ok(call(jgw.port, "/basic/lower",
            {"Authorization": "basic " + basic("billing-svc", BASIC_PASSWORD)[6:]}))


# ---- JWT refused -----------------------------------------------------------------------------------

def _tampered(idp):
    h, p, s = idp.token().split(".")
    other = idp.token(sub="admin").split(".")[1]
    return f"{h}.{other}.{s}"


def _confusion(idp):
    """HS256 signed with the bytes of the RSA public key the JWKS publishes under kid rsa1."""
    pem = idp.rsa_public_pem()
    now = int(time.time())
    return compact({"alg": "HS256", "typ": "JWT", "kid": "rsa1"},
                   {"iss": ISS, "aud": "api", "sub": "alice", "iat": now, "exp": now + 300},
                   lambda data: hmac.new(pem, data, hashlib.sha256).digest())


def _none(idp, kid="rsa1"):
    now = int(time.time())
    return compact({"alg": "none", "typ": "JWT", **({"kid": kid} if kid else {})},
                   {"iss": ISS, "aud": "api", "sub": "alice", "iat": now, "exp": now + 300})


REFUSED = {
    "expired": lambda idp: idp.token(exp=int(time.time()) - 120, iat=int(time.time()) - 600),
    "expired_no_leeway": lambda idp: idp.strict_token(exp=int(time.time()) - 5,
                                                      iat=int(time.time()) - 60),
    "nbf_in_future": lambda idp: idp.token(nbf=int(time.time()) + 120),
    "iat_in_future": lambda idp: idp.token(iat=int(time.time()) + 120,
                                           exp=int(time.time()) + 600),
    "bad_signature": lambda idp: idp.token(key=idp.attacker),
    "tampered_payload": _tampered,
    "wrong_issuer": lambda idp: idp.token(iss="https://evil.example.test"),
    "wrong_audience": lambda idp: idp.token(aud="other"),
    "no_audience": lambda idp: idp.token(aud=None),
    "unknown_kid": lambda idp: idp.token(kid="rsa9", key=idp.keys["rsa1"]),
    "alg_none": _none,
    "alg_none_without_kid": lambda idp: _none(idp, None),
    "alg_not_in_algorithms": lambda idp: idp.strict_token("ES256", "ec-b"),
    "alg_confusion_hs256_with_rsa_key": _confusion,
    "alg_not_fitting_key": lambda idp: idp.token("RS256", kid="ec256", key=idp.keys["rsa1"]),
    "malformed_garbage": lambda idp: "not-a-jwt",
    "malformed_two_parts": lambda idp: ".".join(idp.token().split(".")[:2]),
    "malformed_four_parts": lambda idp: idp.token() + ".e30",
    "malformed_header_not_json": lambda idp: b64u(b"{alg") + "." + idp.token().split(".", 1)[1],
    "malformed_bad_base64": lambda idp: idp.token().replace(".", ".!!", 1),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_jwt_refused(jgw, idp, case):
    """A token that is expired, not yet valid, not signed by the issuer's key, for another issuer
    or audience, of a refused algorithm or malformed gets 401 with error="invalid_token"."""
    token = REFUSED[case](idp)
    res = call(jgw.port, f"/jwt/{case}", bearer(token))
    assert_invalid_token(res)
    assert challenges(res[0]) == [challenges(res[0])[0]]  # jwt only: one challenge


WHY = {"expired": "expired", "nbf_in_future": "valid", "bad_signature": "signature",
       "wrong_issuer": "issuer", "wrong_audience": "audience", "unknown_kid": "kid",
       "alg_none": "alg", "alg_confusion_hs256_with_rsa_key": "alg",
       "malformed_garbage": "malformed", "malformed_two_parts": "malformed",
       "malformed_header_not_json": "malformed", "malformed_bad_base64": "malformed"}


@pytest.mark.parametrize("case", list(WHY))
def test_refused_token_error_description_says_why(jgw, idp, case):
    """error_description names the reason a token was refused (a malformed token is called
    malformed, not something else)."""
    challenge = assert_invalid_token(call(jgw.port, f"/jwt/why-{case}", bearer(REFUSED[case](idp))))
    description = challenge.split('error_description="', 1)[1].rstrip('"')
    assert WHY[case] in description.lower(), challenge


# ---- several methods, missing credentials ---------------------------------------------------------

def test_missing_credentials_get_one_challenge_per_method(jgw):
    """No credential: 401 auth_missing with ApiKey, Bearer and Basic challenges (no error)."""
    r = assert_error(call(jgw.port, "/multi/none"), 401, "auth_missing")
    assert sorted(challenges(r)) == sorted(['ApiKey realm="ringway"', 'Bearer realm="ringway"',
                                            'Basic realm="ringway", charset="UTF-8"'])
    r = assert_error(call(jgw.port, "/jwt/none"), 401, "auth_missing")
    assert challenges(r) == ['Bearer realm="ringway"']
    r = assert_error(call(jgw.port, "/basic/none"), 401, "auth_missing")
    assert challenges(r) == ['Basic realm="ringway", charset="UTF-8"']


def test_any_one_method_suffices(jgw, idp):
    """On a route with api_key, jwt and basic each credential alone gets through."""
    assert consumer_of(ok(call(jgw.port, "/multi/k", {"X-API-Key": API_KEY}))) == "partner-a"
    assert consumer_of(ok(call(jgw.port, "/multi/j", bearer(idp.token())))) == "alice"
    assert consumer_of(ok(call(jgw.port, "/multi/b", {
        "Authorization": basic("billing-svc", BASIC_PASSWORD)}))) == "billing"


def test_first_valid_credential_wins(jgw, idp):
    """A wrong API key next to a valid token still authenticates (by the token); a valid key
    with a refused token authenticates by the key."""
    seen = ok(call(jgw.port, "/multi/w1", {"X-API-Key": "wrong", **bearer(idp.token())}))
    assert consumer_of(seen) == "alice"
    seen = ok(call(jgw.port, "/multi/w2", {"X-API-Key": API_KEY, **bearer("not-a-jwt")}))
    assert consumer_of(seen) == "partner-a"
    assert hdr(seen, "authorization") == [] and hdr(seen, "x-api-key") == []


def test_several_methods_all_refused(jgw, idp):
    """Wrong credentials only: 401 auth_failed, every challenge, the Bearer one with the error."""
    res = call(jgw.port, "/multi/bad", {"X-API-Key": "wrong", **bearer(idp.token(aud="other"))})
    assert_invalid_token(res)
    assert len(challenges(res[0])) == 3, challenges(res[0])
    res = call(jgw.port, "/multi/badpw", {"Authorization": basic("billing-svc", "nope")})
    r = assert_error(res, 401, "auth_failed")
    assert sorted(challenges(r)) == sorted(['ApiKey realm="ringway"', 'Bearer realm="ringway"',
                                            'Basic realm="ringway", charset="UTF-8"'])


# ---- Basic -----------------------------------------------------------------------------------------

def test_basic_accepted(jgw):
    """The right password (with ':' and UTF-8 in it) names the consumer, not the user name."""
    seen = ok(call(jgw.port, "/basic/ok", {"Authorization": basic("billing-svc", BASIC_PASSWORD)}))
    assert consumer_of(seen) == "billing"
    assert groups_of(seen) == {"finance"}
    assert hdr(seen, "authorization") == []


@pytest.mark.parametrize("authorization", [
    basic("billing-svc", "wrong"), basic("billing-svc", BASIC_PASSWORD + "x"),
    basic("billing-svc", ""), basic("nobody", BASIC_PASSWORD), basic("billing", BASIC_PASSWORD),
    "Basic !!!notbase64", "Basic " + base64.b64encode(b"no-colon").decode()],
    ids=["wrong_password", "longer_password", "empty_password", "unknown_user",
         "consumer_name_is_not_the_user", "not_base64", "no_colon"])
def test_basic_refused(jgw, authorization):
    """A wrong password, an unknown user or a malformed Basic header gets 401 auth_failed."""
    r = assert_error(call(jgw.port, "/basic/no", {"Authorization": authorization}), 401,
                     "auth_failed")
    assert challenges(r) == ['Basic realm="ringway", charset="UTF-8"']


def test_basic_checks_answer_each_request_under_concurrency(jgw):
    """Password checks run off the worker: many at once, slow and fast, right and wrong, each
    request gets its own answer."""
    cases = [("billing-svc", BASIC_PASSWORD, "billing"), ("billing-svc", "wrong", None),
             ("mallory", BANNED_PASSWORD, "mallory"), ("slowpoke", SLOW_PASSWORD, "slowpoke"),
             ("slowpoke", "wrong", None), ("nobody", "x", None)] * 4

    def one(i):
        user, pw, want = cases[i]
        r, body, seen = call(jgw.port, f"/basic/conc{i}", {"Authorization": basic(user, pw)})
        return i, r.status, (consumer_of(seen) if seen else None), body

    with ThreadPoolExecutor(len(cases)) as pool:
        results = list(pool.map(one, range(len(cases))))
    for i, status, consumer, body in results:
        want = cases[i][2]
        assert (status, consumer) == ((200, want) if want else (401, None)), (cases[i], body)


class _Unclosable:
    """One buffered reader shared by successive http.client responses of a connection."""

    def __init__(self, f):
        self.f = f

    def __getattr__(self, name):
        return getattr(self.f, name)

    def close(self):
        pass


def test_basic_pipelined_answers_keep_their_order(jgw):
    """Pipelined requests whose passwords are checked off the worker are answered in order."""
    reqs = [("slowpoke", SLOW_PASSWORD), ("billing-svc", "wrong"), ("billing-svc", BASIC_PASSWORD),
            ("slowpoke", "wrong"), ("mallory", BANNED_PASSWORD)]
    data = b"".join(
        f"GET /basic/pipe{i} HTTP/1.1\r\nHost: x\r\nAuthorization: {basic(u, p)}\r\n\r\n".encode()
        for i, (u, p) in enumerate(reqs))
    with socket.create_connection(("127.0.0.1", jgw.port), timeout=15) as sock:
        sock.sendall(data)
        f = _Unclosable(sock.makefile("rb"))

        class _Sock:
            def makefile(self, *a, **k):
                return f
        got = []
        for _ in reqs:
            r = http.client.HTTPResponse(_Sock())
            r.begin()
            body = r.read()
            got.append((r.status, json.loads(body)["path"] if r.status == 200 else None))
    assert got == [(200, "/basic/pipe0"), (401, None), (200, "/basic/pipe2"), (401, None),
                   (200, "/basic/pipe4")], got


def test_basic_client_gone_during_the_check(jgw):
    """A client that leaves while its password is being checked harms nothing."""
    req = (f"GET /basic/gone HTTP/1.1\r\nHost: x\r\n"
           f"Authorization: {basic('slowpoke', SLOW_PASSWORD)}\r\n\r\n").encode()
    for i in range(6):
        sock = socket.create_connection(("127.0.0.1", jgw.port), timeout=5)
        sock.sendall(req)
        if i % 2:  # reset, else a plain close
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    time.sleep(0.5)
    seen = ok(call(jgw.port, "/basic/after-gone", {"Authorization": basic("slowpoke",
                                                                          SLOW_PASSWORD)}))
    assert consumer_of(seen) == "slowpoke"
    assert jgw.proc.poll() is None


def test_hash_password_command(tmp_path):
    """`ringway hash-password` turns a password from stdin into a password_hash that checks."""
    r = subprocess.run([RINGWAY, "hash-password"], input="s3cret pw\n", capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    m = re.fullmatch(r"pbkdf2-sha256:(\d+):([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)", line)
    assert m, line
    it, salt, dk = int(m[1]), base64.b64decode(m[2]), base64.b64decode(m[3])
    assert 1000 <= it <= 10_000_000
    assert hashlib.pbkdf2_hmac("sha256", b"s3cret pw", salt, it) == dk


# ---- mTLS ------------------------------------------------------------------------------------------

def test_mtls_consumer_by_certificate_cn(jgw):
    """A verified client certificate whose CN is a consumer's name authenticates as it."""
    seen = ok(tls_call(jgw, "client", "/mtls/ok"))
    assert consumer_of(seen) == "client-1"
    assert groups_of(seen) == {"machines"}


def test_mtls_cn_not_a_consumer_is_401(jgw):
    """A certificate the CA signed but whose CN names no consumer gets 401."""
    r = assert_error(tls_call(jgw, "nobody", "/mtls/no"), 401, "auth_failed")
    assert "Bearer" not in " ".join(challenges(r))


def test_mtls_with_jwt_route(jgw, idp):
    """On a route with jwt and mtls a token wins (tried first), the certificate is enough."""
    assert consumer_of(ok(tls_call(jgw, "client", "/mixed/c"))) == "client-1"
    assert consumer_of(ok(tls_call(jgw, "client", "/mixed/t", bearer(idp.token())))) == "alice"
    seen = ok(tls_call(jgw, "nobody", "/mixed/n", bearer(idp.token())))
    assert consumer_of(seen) == "alice"


# ---- scopes and groups -----------------------------------------------------------------------------

def test_scopes_all_required(jgw, idp):
    """Every scope of the route in the token's scope claim: through; one missing: 403
    insufficient_scope with a Bearer challenge naming the route's scopes."""
    ok(call(jgw.port, "/scoped/all", bearer(idp.token(scope="profile orders:write orders:read"))))
    for scope in ("orders:read", "orders:read orders:writer", None):
        res = call(jgw.port, "/scoped/one", bearer(idp.token(scope=scope)))
        r = assert_error(res, 403, "insufficient_scope")
        assert challenges(r) == ['Bearer realm="ringway", error="insufficient_scope", '
                                 'scope="orders:read orders:write"'], (scope, challenges(r))


def test_scopes_refuse_a_request_without_a_jwt(jgw):
    """Authenticated by Basic there are no scopes: a route with scopes says 403."""
    res = call(jgw.port, "/scoped/basic", {"Authorization": basic("billing-svc", BASIC_PASSWORD)})
    assert_error(res, 403, "insufficient_scope")


def test_allow_and_deny_groups_with_jwt_groups(jgw, idp):
    """allow_groups and deny_groups see the token's groups and the consumer's configured ones."""
    ok(call(jgw.port, "/partners/a", bearer(idp.token(groups=["partners"]))))
    ok(call(jgw.port, "/partners/b", bearer(idp.token(sub="partner-a", groups=None))))
    assert_error(call(jgw.port, "/partners/c", bearer(idp.token())), 403, "acl_denied")
    ok(call(jgw.port, "/nobanned/a", bearer(idp.token())))
    assert_error(call(jgw.port, "/nobanned/b", bearer(idp.token(groups=["dev", "banned"]))),
                 403, "acl_denied")
    assert_error(call(jgw.port, "/nobanned/c", bearer(idp.token(sub="mallory", groups=[]))),
                 403, "acl_denied")
    assert_error(call(jgw.port, "/nobanned/d", {"Authorization": basic("mallory",
                                                                       BANNED_PASSWORD)}),
                 403, "acl_denied")


# ---- what the upstream sees ------------------------------------------------------------------------

def test_hide_credentials(jgw, idp):
    """The Authorization header is removed by default and kept with hide_credentials: false."""
    token = idp.token()
    assert hdr(ok(call(jgw.port, "/jwt/hidden", bearer(token))), "authorization") == []
    assert hdr(ok(call(jgw.port, "/shown/kept", bearer(token))), "authorization") == [
        f"Bearer {token}"]


def test_forged_identity_headers_dropped_on_jwt_and_basic_routes(jgw, idp):
    """A client's own X-Consumer-* and X-Access-Token never reach the upstream."""
    forged = {"X-Consumer-Id": "admin", "X-Consumer-Name": "admin", "X-Consumer-Groups": "root",
              "X-Access-Token": "forged"}
    for path, auth in (("/jwt/f", bearer(idp.token())),
                       ("/basic/f", {"Authorization": basic("billing-svc", BASIC_PASSWORD)}),
                       ("/open/f", {})):
        seen = ok(call(jgw.port, path, {**forged, **auth}))
        for name in forged:
            assert forged[name] not in hdr(seen, name), (path, seen)
        if path == "/open/f":
            assert not [k for k, _ in seen if k.startswith("x-consumer") or k == "x-access-token"]


def test_access_log_consumer_of_a_jwt(jgw, idp):
    """The access log names the consumer a token, a password or a certificate authenticated."""
    ok(call(jgw.port, "/jwt/logged-consumer", bearer(idp.token(sub="carol"))))
    assert access_record(jgw, "/jwt/logged-consumer")["consumer"] == "carol"
    ok(call(jgw.port, "/basic/logged-consumer", {"Authorization": basic("billing-svc",
                                                                        BASIC_PASSWORD)}))
    assert access_record(jgw, "/basic/logged-consumer")["consumer"] == "billing"
    ok(tls_call(jgw, "client", "/mtls/logged-consumer"))
    assert access_record(jgw, "/mtls/logged-consumer")["consumer"] == "client-1"
    assert_invalid_token(call(jgw.port, "/jwt/logged-refused", bearer("x.y.z")))
    rec = access_record(jgw, "/jwt/logged-refused")
    assert rec["status"] == 401 and rec["consumer"] is None


# ---- identity token --------------------------------------------------------------------------------

def fetch(port, path, method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r, body


def admin_jwks(gw):
    r, body = fetch(gw.admin_port, "/.well-known/jwks.json")
    assert r.status == 200, body
    return json.loads(body)


def admin_status(gw):
    r, body = fetch(gw.admin_port, "/status")
    assert r.status == 200, body
    return json.loads(body)


def check_published_jwks(jwks):
    assert len(jwks["keys"]) >= 1, jwks
    for k in jwks["keys"]:
        assert {k["kty"], k["crv"], k["alg"], k["use"]} == {"EC", "P-256", "ES256", "sig"}, k
        assert k["kid"] and k["x"] and k["y"], k
        assert "d" not in k, "the private key is published"


def verify_identity(token, jwks, aud, iss="ringway", ttl=60):
    """The identity token checked like an upstream would, with PyJWT; its claims."""
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256" and header["typ"] == "JWT" and header["kid"], header
    keys = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    assert len(keys) == 1, (header, jwks)
    claims = jwt.decode(token, jwt.PyJWK(keys[0]).key, algorithms=["ES256"], audience=aud,
                        issuer=iss, options={"require": ["iss", "sub", "aud", "iat", "exp",
                                                         "jti"]})
    assert claims["exp"] - claims["iat"] == ttl, claims
    now = time.time()  # a reused token may be up to ttl/2 old
    assert now - ttl / 2 - 5 <= claims["iat"] <= now + 5, claims
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16, claims
    assert isinstance(claims["groups"], list), claims
    return claims


def identity_token(seen, header="x-access-token"):
    values = hdr(seen, header)
    assert len(values) == 1, seen
    return values[0]


def test_identity_token_of_a_jwt_consumer(jgw, idp):
    """The upstream gets an ES256 token verifiable with the admin listener's JWKS: iss ringway,
    aud = the route's upstream, sub, groups, scope, exp = iat + ttl, a jti."""
    jwks = admin_jwks(jgw)
    check_published_jwks(jwks)
    seen = ok(call(jgw.port, "/jwt/minted", bearer(idp.token(sub="partner-a",
                                                             groups=["beta"]))))
    claims = verify_identity(identity_token(seen), jwks, "orders")
    assert claims["sub"] == "partner-a"
    assert set(claims["groups"]) == {"beta", "partners"}
    assert claims["scope"] == "orders:read profile"


def test_identity_token_of_basic_api_key_and_mtls_consumers(jgw):
    """Every method gets a token: aud follows the route's upstream, no scope without a JWT."""
    jwks = admin_jwks(jgw)
    seen = ok(call(jgw.port, "/basic/minted", {"Authorization": basic("billing-svc",
                                                                      BASIC_PASSWORD)}))
    claims = verify_identity(identity_token(seen), jwks, "billing")
    assert claims["sub"] == "billing" and claims["groups"] == ["finance"]
    assert "scope" not in claims
    claims = verify_identity(identity_token(ok(call(jgw.port, "/multi/minted",
                                                    {"X-API-Key": API_KEY}))), jwks, "orders")
    assert claims["sub"] == "partner-a" and claims["groups"] == ["partners"]
    claims = verify_identity(identity_token(ok(tls_call(jgw, "client", "/mtls/minted"))), jwks,
                             "orders")
    assert claims["sub"] == "client-1" and claims["groups"] == ["machines"]


def test_no_identity_token_without_authentication(jgw):
    """A route without auth sends no identity token."""
    assert hdr(ok(call(jgw.port, "/open/none")), "x-access-token") == []


def test_identity_token_is_not_accepted_by_pyjwt_for_another_audience(jgw, idp):
    """An upstream checking its own name as audience refuses a token minted for another one."""
    jwks = admin_jwks(jgw)
    token = identity_token(ok(call(jgw.port, "/jwt/aud-check", bearer(idp.token()))))
    with pytest.raises(jwt.InvalidAudienceError):
        verify_identity(token, jwks, "billing")


def test_jwks_on_the_frontend_path(jgw):
    """identity_token.jwks_path answers GET and HEAD on every frontend with the same JWKS."""
    want = admin_jwks(jgw)
    r, body = fetch(jgw.port, "/.well-known/jwks.json")
    assert r.status == 200, body
    assert json.loads(body) == want
    assert r.getheader("Content-Type", "").split(";")[0] in ("application/json",
                                                            "application/jwk-set+json")
    r, body = fetch(jgw.port, "/.well-known/jwks.json", "HEAD")
    assert r.status == 200 and body == b""
    res = tls_call(jgw, "client", "/.well-known/jwks.json")
    assert res[0].status == 200 and json.loads(res[1]) == want


def test_token_reused_per_worker_when_not_per_request(jgw, idp):
    """per_request: false: one connection (one worker) gets the same token for the same identity
    and upstream; another upstream or identity gets another."""
    c = http.client.HTTPConnection("127.0.0.1", jgw.port, timeout=10)
    try:
        auth = bearer(idp.token())
        tokens = [identity_token(ok(call(jgw.port, f"/jwt/reuse{i}", auth, conn=c)))
                  for i in range(4)]
        assert len(set(tokens)) == 1, tokens
        same = identity_token(ok(call(jgw.port, "/multi/reuse", auth, conn=c)))
        assert same == tokens[0]  # same identity, same upstream orders
        billing_aud = identity_token(ok(call(jgw.port, "/jwt2/reuse", auth, conn=c)))
        assert billing_aud != tokens[0]
        assert jwt.decode(billing_aud, options={"verify_signature": False})["aud"] == "billing"
        carol = identity_token(ok(call(jgw.port, "/jwt/carol", bearer(idp.token(sub="carol")),
                                       conn=c)))
        assert carol != tokens[0]
        billing = identity_token(ok(call(jgw.port, "/basic/r1", {
            "Authorization": basic("billing-svc", BASIC_PASSWORD)}, conn=c)))
        again = identity_token(ok(call(jgw.port, "/basic/r2", {
            "Authorization": basic("billing-svc", BASIC_PASSWORD)}, conn=c)))
        assert billing == again
    finally:
        c.close()


def test_generated_key_is_logged(jgw):
    """Without key_file the log says that a key was generated, and its kid."""
    kid = admin_jwks(jgw)["keys"][0]["kid"]
    lines = [ln for ln in jgw.logs().splitlines() if kid in ln]
    assert any("generat" in ln.lower() for ln in lines), jgw.logs()[-3000:]


# ---- cache -----------------------------------------------------------------------------------------

def test_cached_token_is_not_served_past_exp(jgw, idp):
    """cache: true accepts a token many times, but never after its exp (leeway 0)."""
    exp = int(time.time()) + 3
    token = idp.strict_token(exp=exp)
    conns = [http.client.HTTPConnection("127.0.0.1", jgw.port, timeout=10) for _ in range(4)]
    try:
        for i in range(40):
            ok(call(jgw.port, f"/jwt/cached{i}", bearer(token), conn=conns[i % 4]))
        assert time.time() < exp, "the requests took too long for this test"
        while time.time() < exp + 1.05:
            time.sleep(0.05)
        for i in range(8):
            assert_invalid_token(call(jgw.port, f"/jwt/cached-late{i}", bearer(token),
                                      conn=conns[i % 4]))
        for i in range(4):  # new connections, on any worker
            assert_invalid_token(call(jgw.port, f"/jwt/cached-new{i}", bearer(token)))
    finally:
        for c in conns:
            c.close()


def test_cache_is_keyed_by_the_whole_token(jgw, idp):
    """A cached token's header and payload with another signature are refused; a cached token
    still meets each route's scopes and groups."""
    token = idp.token(scope="orders:read", groups=["dev"])
    c = http.client.HTTPConnection("127.0.0.1", jgw.port, timeout=10)
    try:
        for i in range(3):
            ok(call(jgw.port, f"/jwt/whole{i}", bearer(token), conn=c))
        head_payload = token.rsplit(".", 1)[0]
        forged_sig = idp.token(scope="orders:read", groups=["dev"],
                               key=idp.attacker).rsplit(".", 1)[1]
        assert_invalid_token(call(jgw.port, "/jwt/whole-forged",
                                  bearer(f"{head_payload}.{forged_sig}"), conn=c))
        assert_invalid_token(call(jgw.port, "/jwt/whole-nosig", bearer(f"{head_payload}."),
                                  conn=c))
        assert_error(call(jgw.port, "/scoped/whole", bearer(token), conn=c), 403,
                     "insufficient_scope")
        assert_error(call(jgw.port, "/partners/whole", bearer(token), conn=c), 403, "acl_denied")
        ok(call(jgw.port, "/jwt/whole-again", bearer(token), conn=c))
    finally:
        c.close()


# ---- reload ----------------------------------------------------------------------------------------

def test_reload_keeps_the_generated_key(jgw, idp):
    """After POST /reload and SIGHUP a token minted before still verifies with the JWKS."""
    before_jwks = admin_jwks(jgw)
    token = identity_token(ok(call(jgw.port, "/jwt/before-reload", bearer(idp.token()))))
    c = http.client.HTTPConnection("127.0.0.1", jgw.admin_port, timeout=20)
    c.request("POST", "/reload")
    r = c.getresponse()
    body = r.read()
    c.close()
    assert r.status == 200, body
    after = admin_jwks(jgw)
    assert after == before_jwks
    verify_identity(token, after, "orders")
    new = identity_token(ok(call(jgw.port, "/jwt/after-reload", bearer(idp.token(sub="dave")))))
    verify_identity(new, after, "orders")
    reloads = admin_status(jgw)["config"]["reloads"]["ok"]
    jgw.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while admin_status(jgw)["config"]["reloads"]["ok"] == reloads:
        assert time.time() < deadline, "SIGHUP: no reload within 10s"
        time.sleep(0.05)
    assert admin_jwks(jgw) == before_jwks
    verify_identity(token, admin_jwks(jgw), "orders")
    _, body = fetch(jgw.port, "/.well-known/jwks.json")
    assert json.loads(body) == before_jwks


# ---- identity token with key_file, per_request, custom header and issuer ---------------------------

def write_p256_pem(path):
    key = ec.generate_private_key(ec.SECP256R1())
    tmp = path + ".new"
    with open(tmp, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    os.replace(tmp, path)
    return key


@pytest.fixture(scope="module")
def kgw(tmp_path_factory):
    """A gateway signing identity tokens with a key_file, one per request, in X-Identity, with
    issuer edge-gw and ttl 120s; API keys only."""
    d = str(tmp_path_factory.mktemp("kgw"))
    key_path = os.path.join(d, "signing.pem")
    key = write_p256_pem(key_path)
    up = Upstream("kapp")
    port, admin_port = free_port(), free_port()
    routes = ("      - name: k\n        match: { path_prefix: /k }\n        upstream: inventory\n"
              "        auth: [api_key]\n")
    extra = ("consumers:\n  - name: partner-a\n    groups: [partners, beta]\n"
             f"    api_keys: [\"{key_hash(API_KEY)}\"]\n"
             f"identity_token:\n  key_file: {key_path}\n  alg: ES256\n  header: X-Identity\n"
             "  ttl: 120s\n  issuer: edge-gw\n  per_request: true\n"
             f"admin:\n  listen: 127.0.0.1:{admin_port}\n")
    try:
        gw = Gateway(d, make_config(port, [("inventory", [up.addr], "10s")], routes, extra=extra),
                     port)
    except Exception as e:
        up.stop()
        raise RuntimeError(f"{e}: {startup_log(d)}") from e
    gw.admin_port, gw.key_path, gw.key = admin_port, key_path, key
    try:
        wait_port(admin_port, gw.proc)
    except Exception:
        gw.stop()
        up.stop()
        raise
    yield gw
    code = gw.stop()
    up.stop()
    assert code == 0, gw.logs()[-4000:]
    assert_no_sanitizer_report(gw)


def test_key_file_signs_the_identity_tokens(kgw):
    """With key_file the tokens verify with that key's public half, which the JWKS publishes."""
    seen = ok(call(kgw.port, "/k/a", {"X-API-Key": API_KEY}))
    token = identity_token(seen, "x-identity")
    assert hdr(seen, "x-access-token") == []
    claims = jwt.decode(token, kgw.key.public_key(), algorithms=["ES256"], audience="inventory",
                        issuer="edge-gw")
    assert claims["exp"] - claims["iat"] == 120
    assert claims["sub"] == "partner-a" and set(claims["groups"]) == {"partners", "beta"}
    jwks = admin_jwks(kgw)
    check_published_jwks(jwks)
    assert len(jwks["keys"]) == 1
    pub = kgw.key.public_key().public_numbers()
    k = jwks["keys"][0]
    assert base64.urlsafe_b64decode(k["x"] + "==") == pub.x.to_bytes(32, "big")
    assert base64.urlsafe_b64decode(k["y"] + "==") == pub.y.to_bytes(32, "big")
    verify_identity(token, jwks, "inventory", iss="edge-gw", ttl=120)


def test_per_request_token_has_a_new_jti_each_time(kgw):
    """per_request: true: every request on the same connection gets its own token (jti)."""
    c = http.client.HTTPConnection("127.0.0.1", kgw.port, timeout=10)
    try:
        tokens = [identity_token(ok(call(kgw.port, f"/k/{i}", {"X-API-Key": API_KEY}, conn=c)),
                                 "x-identity") for i in range(5)]
    finally:
        c.close()
    jtis = {jwt.decode(t, options={"verify_signature": False})["jti"] for t in tokens}
    assert len(jtis) == 5, tokens


def test_custom_token_header_forged_by_the_client_is_dropped(kgw):
    """The configured token header is the gateway's alone, like X-Access-Token."""
    seen = ok(call(kgw.port, "/k/forged", {"X-API-Key": API_KEY, "X-Identity": "forged"}))
    assert "forged" not in hdr(seen, "x-identity")
    assert len(hdr(seen, "x-identity")) == 1


def test_reload_reads_the_key_file_again(kgw):
    """A reload after the key file changed signs with the new key and publishes it."""
    new_key = write_p256_pem(kgw.key_path)
    c = http.client.HTTPConnection("127.0.0.1", kgw.admin_port, timeout=20)
    c.request("POST", "/reload")
    r = c.getresponse()
    body = r.read()
    c.close()
    assert r.status == 200, body
    token = identity_token(ok(call(kgw.port, "/k/newkey", {"X-API-Key": API_KEY})), "x-identity")
    jwt.decode(token, new_key.public_key(), algorithms=["ES256"], audience="inventory",
               issuer="edge-gw")
    verify_identity(token, admin_jwks(kgw), "inventory", iss="edge-gw", ttl=120)
    kgw.key = new_key


# ---- configuration errors --------------------------------------------------------------------------

check = ringway_check  # (tmp_path, text): path, exit code, output


def assert_check_error(tmp_path, text, markers, words):
    """`ringway check` refuses text with an error at one of the markers' positions, whose
    message mentions every one of words."""
    path, rc, out = check(tmp_path, text)
    assert rc == 1, out
    places = [f"{path}:{position(text, m)}:" for m in markers]
    lines = [ln for ln in out.splitlines() if any(ln.startswith(p) for p in places)]
    assert lines, f"no error at {places}:\n{out}"
    assert any(all(w.lower() in ln.lower() for w in words) for ln in lines), (words, out)


def check_config(auth="[jwt]", route_more="", extra="", listen=None):
    listen = listen or f"['127.0.0.1:{free_port()}']"
    return ("workers: 1\nupstreams:\n  u:\n    targets: ['127.0.0.1:9']\n" + extra +
            f"frontends:\n  - name: public\n    listen: {listen}\n    routes:\n"
            "      - name: r\n        match: { path_prefix: / }\n        upstream: u\n"
            f"        auth: {auth}\n" + route_more)


def issuers(jwks_file):
    return f"jwt_issuers:\n  - issuer: {ISS}\n    jwks_file: {jwks_file}\n"


def test_check_accepts_a_full_auth_config(tmp_path, idp):
    """The keys of this spec together pass `ringway check` (the error tests differ by one)."""
    text = check_config(
        "[api_key, jwt, basic]", "        scopes: [orders:read]\n",
        "consumers:\n  - name: a\n    groups: [g]\n"
        f"    basic: {{ user: a, password_hash: \"{pbkdf2_hash('pw')}\" }}\n"
        + issuers(idp.jwks_a_path) + "    audiences: [api]\n    algorithms: [RS256, ES256]\n"
        "    consumer_claim: sub\n    groups_claim: groups\n    leeway: 30s\n    cache: false\n"
        "identity_token:\n  alg: ES256\n  header: X-Access-Token\n  ttl: 60s\n"
        "  issuer: ringway\n  per_request: false\n  jwks_path: /.well-known/jwks.json\n")
    path, rc, out = check(tmp_path, text)
    assert rc == 0, out


def test_check_jwks_file_missing(tmp_path):
    """A jwks_file that does not exist is an error at its value."""
    missing = str(tmp_path / "no-such-jwks.json")
    assert_check_error(tmp_path, check_config(extra=issuers(missing)), [missing], ["jwks_file"])


@pytest.mark.parametrize("content", ['{"keys": [{"kty": "RSA"', '{"keys": [{"kty": "RSA", '
                                     '"n": "AQAB", "e": "AQAB"}]}', "not json at all"],
                         ids=["truncated", "bad_rsa_key", "not_json"])
def test_check_jwks_file_invalid(tmp_path, content):
    """A jwks_file that is not a usable JWKS is an error at its value."""
    bad = tmp_path / "bad-jwks.json"
    bad.write_text(content)
    assert_check_error(tmp_path, check_config(extra=issuers(str(bad))), [str(bad)],
                       ["jwks_file"])


def test_check_unknown_auth_method(tmp_path, idp):
    """An auth method the gateway does not know is an error at that method."""
    text = check_config("[jwt, oauth2]", extra=issuers(idp.jwks_a_path))
    assert_check_error(tmp_path, text, ["oauth2"], ["oauth2"])


@pytest.mark.parametrize("value", [
    "sha256:" + "0" * 64,
    "pbkdf2-sha256:999:" + base64.b64encode(b"salt").decode() + ":" +
    base64.b64encode(b"x" * 32).decode(),
    "pbkdf2-sha256:1000:!!!:" + base64.b64encode(b"x" * 32).decode(),
    "pbkdf2-sha256:1000:" + base64.b64encode(b"salt").decode() + ":" +
    base64.b64encode(b"x" * 16).decode(),
    "pbkdf2-sha256:10000001:" + base64.b64encode(b"salt").decode() + ":" +
    base64.b64encode(b"x" * 32).decode()],
    ids=["other_scheme", "too_few_iterations", "bad_base64_salt", "short_hash",
         "too_many_iterations"])
def test_check_bad_password_hash(tmp_path, value):
    """A password_hash that is not pbkdf2-sha256:ITER:SALT:HASH within limits is an error there."""
    consumer = f"consumers:\n  - name: a\n    basic: {{ user: a, password_hash: \"{value}\" }}\n"
    text = check_config("[basic]", extra=consumer)
    assert_check_error(tmp_path, text, [f'"{value}"'], ["password_hash"])


def test_check_identity_token_alg_other_than_es256(tmp_path):
    """identity_token.alg accepts ES256 only."""
    text = check_config("[api_key]", extra=("consumers:\n  - name: a\n"
                                            f"    api_keys: [\"{key_hash('k')}\"]\n"
                                            "identity_token:\n  alg: RS256\n"))
    assert_check_error(tmp_path, text, ["RS256"], ["alg"])


def test_check_mtls_needs_a_client_ca(tmp_path):
    """A route with mtls on a frontend whose listener has no client_ca is an error."""
    listen = f"'127.0.0.1:{free_port()}'"
    text = check_config("[mtls]", extra="consumers:\n  - name: client-1\n",
                        listen=f"[{listen}]")
    assert_check_error(tmp_path, text, ["mtls]", "[mtls]", listen, "[" + listen], ["client_ca"])


def test_check_scopes_without_jwt(tmp_path):
    """scopes on a route whose auth has no jwt can never be met: an error."""
    text = check_config("[api_key, basic]", "        scopes: [orders:read]\n")
    # at the scopes key or its value, or (like allow_groups without auth) at the route
    assert_check_error(tmp_path, text, ["scopes:", "[orders:read]", "orders:read]", "name: r"],
                       ["scopes", "jwt"])


# ---- key rotation by reload, token reuse for ttl/2 -------------------------------------------------

@pytest.fixture()
def rgw(tmp_path, idp):
    """A gateway whose issuer's JWKS file the test rewrites, with identity tokens of ttl 2s."""
    jwks_path = str(tmp_path / "rotating-jwks.json")
    write_json(jwks_path, {"keys": [k for k in idp.jwks_a["keys"] if k["kid"] == "rsa1"]})
    up = Upstream("rapp")
    port, admin_port = free_port(), free_port()
    routes = ("      - name: jwt\n        match: { path_prefix: /jwt }\n        upstream: orders\n"
              "        auth: [jwt]\n")
    extra = (f"jwt_issuers:\n  - issuer: {ISS}\n    jwks_file: {jwks_path}\n"
             "    audiences: [api]\n    cache: true\n"
             "identity_token:\n  ttl: 2s\n"
             f"admin:\n  listen: 127.0.0.1:{admin_port}\n")
    try:
        gw = Gateway(str(tmp_path), make_config(port, [("orders", [up.addr], "10s")], routes,
                                                extra=extra), port)
    except Exception as e:
        up.stop()
        raise RuntimeError(f"{e}: {startup_log(str(tmp_path))}") from e
    gw.admin_port, gw.jwks_path = admin_port, jwks_path
    try:
        wait_port(admin_port, gw.proc)
    except Exception:
        gw.stop()
        up.stop()
        raise
    yield gw
    code = gw.stop()
    up.stop()
    assert code == 0, gw.logs()[-4000:]
    assert_no_sanitizer_report(gw)


def write_json(path, obj):
    tmp = path + ".new"
    with open(tmp, "w") as f:
        json.dump(obj, f) if not isinstance(obj, str) else f.write(obj)
    os.replace(tmp, path)


def post_reload(gw):
    c = http.client.HTTPConnection("127.0.0.1", gw.admin_port, timeout=20)
    c.request("POST", "/reload")
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def test_reload_rotates_the_issuer_keys_and_drops_cached_tokens(rgw, idp):
    """A reload with a broken JWKS is refused and changes nothing; a reload without a key makes
    the tokens it signed fail at once, even those cached, and a new key works."""
    old = idp.token()
    for i in range(4):  # cached on both workers
        ok(call(rgw.port, f"/jwt/old{i}", bearer(old)))
    write_json(rgw.jwks_path, '{"keys": [')
    status, body = post_reload(rgw)
    assert status != 200, body
    ok(call(rgw.port, "/jwt/still-old", bearer(old)))
    write_json(rgw.jwks_path, {"keys": [k for k in idp.jwks_a["keys"] if k["kid"] == "ec256"]})
    status, body = post_reload(rgw)
    assert status == 200, body
    for i in range(4):
        assert_invalid_token(call(rgw.port, f"/jwt/rotated{i}", bearer(old)))
    ok(call(rgw.port, "/jwt/new", bearer(idp.token("ES256", "ec256"))))


def test_reused_identity_token_is_replaced_after_half_its_ttl(rgw, idp):
    """per_request: false with ttl 2s: the same token within a second, a new one after."""
    auth = bearer(idp.token())
    c = http.client.HTTPConnection("127.0.0.1", rgw.port, timeout=10)
    try:
        first = identity_token(ok(call(rgw.port, "/jwt/t1", auth, conn=c)))
        assert identity_token(ok(call(rgw.port, "/jwt/t2", auth, conn=c))) == first
        time.sleep(1.3)
        later = identity_token(ok(call(rgw.port, "/jwt/t3", auth, conn=c)))
    finally:
        c.close()
    assert later != first
    claims = jwt.decode(later, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 2
    assert claims["exp"] - time.time() > 0.5  # a reused token keeps at least ttl/2 of life
