#!/usr/bin/python3
"""Writes tests/unit/jwt_vectors.h: a JWKS with one key of every kind and tokens for test_jwt.c,
signed by PyJWT and python3-cryptography (an implementation independent of wolfCrypt). Keys are
fresh on every run; the tests depend only on the claims and on NOW below.
Usage: /usr/bin/python3 tests/unit/gen_jwt_vectors.py > tests/unit/jwt_vectors.h"""
import base64, hashlib, hmac, json, os

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

NOW = 1700001000
ISS = "https://issuer.example"
AUD = "ringway"


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def uint(n, size=None):
    size = size or (n.bit_length() + 7) // 8
    return b64(n.to_bytes(size, "big"))


hs_secret = os.urandom(64)
rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ec256 = ec.generate_private_key(ec.SECP256R1())
ec384 = ec.generate_private_key(ec.SECP384R1())
ed = ed25519.Ed25519PrivateKey.generate()


def ec_jwk(key, crv, size, kid):
    n = key.public_key().public_numbers()
    return {"kty": "EC", "crv": crv, "x": uint(n.x, size), "y": uint(n.y, size), "kid": kid}


rn = rsa_key.public_key().public_numbers()
rsa_jwk = {"kty": "RSA", "n": uint(rn.n), "e": uint(rn.e)}
ed_raw = ed.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
jwks = {"keys": [
    {"kty": "oct", "k": b64(hs_secret), "kid": "hs"},
    dict(rsa_jwk, kid="rsa"),
    dict(rsa_jwk, kid="rsa-rs256", alg="RS256", use="sig"),
    ec_jwk(ec256, "P-256", 32, "ec256"),
    ec_jwk(ec384, "P-384", 48, "ec384"),
    {"kty": "OKP", "crv": "Ed25519", "x": b64(ed_raw), "kid": "ed"},
    {"kty": "RSA", "n": rsa_jwk["n"], "e": rsa_jwk["e"], "kid": "rsa-enc", "use": "enc"},
]}
single_jwks = {"keys": [ec_jwk(ec256, "P-256", 32, "only")]}
del single_jwks["keys"][0]["kid"]

KEYS = {"HS": (hs_secret, "hs"), "RS": (rsa_key, "rsa"), "PS": (rsa_key, "rsa"),
        "ES256": (ec256, "ec256"), "ES384": (ec384, "ec384"), "EdDSA": (ed, "ed")}


def key_for(alg):
    return KEYS.get(alg) or KEYS[alg[:2]]


CLAIMS = {"iss": ISS, "aud": AUD, "sub": "alice", "groups": ["admin", "ops"],
          "scope": "read write", "iat": NOW - 1000, "nbf": NOW - 1000, "exp": NOW + 2600}


def pyjwt(alg, claims=None, **headers):
    key, kid = key_for(alg)
    headers.setdefault("kid", kid)
    return jwt.encode(claims or CLAIMS, key, algorithm=alg, headers=headers)


def raw_sign(alg, key, signing_input):
    """Signs by hand (for what PyJWT refuses to make): returns the raw JOSE signature."""
    hname = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}
    if alg.startswith("HS"):
        return hmac.new(key, signing_input, getattr(hashlib, "sha" + alg[2:])).digest()
    if alg.startswith("RS"):
        return key.sign(signing_input, padding.PKCS1v15(), hname[alg[2:]])
    if alg.startswith("PS"):
        return key.sign(signing_input, padding.PSS(padding.MGF1(hashes.SHA256()),
                                                   padding.PSS.MAX_LENGTH), hashes.SHA256())
    if alg.startswith("ES"):
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hname[alg[2:]])))
        size = 32 if alg == "ES256" else 48
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    raise ValueError(alg)


def manual(alg, key, header, payload_bytes, sig_bytes_cut=0):
    head = b64(json.dumps(header, separators=(",", ":")).encode())
    signing_input = (head + "." + b64(payload_bytes)).encode()
    sig = raw_sign(alg, key, signing_input)
    return signing_input.decode() + "." + b64(sig[:len(sig) - sig_bytes_cut])


def claims(**changes):
    c = dict(CLAIMS)
    for k, v in changes.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


rsa_pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
body = json.dumps(CLAIMS).encode()
ok_hs = pyjwt("HS256")
parts = ok_hs.split(".")
other = pyjwt("HS256", claims(sub="mallory")).split(".")

vectors = [("ok_" + a.lower(), pyjwt(a)) for a in
           ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "ES256", "ES384",
            "EdDSA"]]
vectors += [
    ("ok_groups_string", pyjwt("ES256", claims(groups="admin ops"))),
    ("ok_aud_array", pyjwt("ES256", claims(aud=["other", AUD]))),
    ("ok_pinned_rs256", pyjwt("RS256", kid="rsa-rs256")),
    ("expired", pyjwt("ES256", claims(exp=NOW - 30))),
    ("not_yet_valid", pyjwt("ES256", claims(nbf=NOW + 30))),
    ("issued_in_future", pyjwt("ES256", claims(iat=NOW + 30, nbf=None))),
    ("no_exp", pyjwt("ES256", claims(exp=None))),
    ("wrong_iss", pyjwt("ES256", claims(iss="https://evil.example"))),
    ("no_iss", pyjwt("ES256", claims(iss=None))),
    ("no_aud", pyjwt("ES256", claims(aud=None))),
    ("wrong_aud", pyjwt("ES256", claims(aud="other"))),
    ("wrong_aud_array", pyjwt("ES256", claims(aud=["other", "another"]))),
    ("unknown_kid", pyjwt("ES256", kid="nope")),
    ("enc_key_kid", pyjwt("RS256", kid="rsa-enc")),
    ("pinned_key_other_alg", pyjwt("RS384", kid="rsa-rs256")),
    ("alg_none", b64(b'{"alg":"none","typ":"JWT"}') + "." + b64(body) + "."),
    ("alg_none_kid", b64(b'{"alg":"none","kid":"hs"}') + "." + b64(body) + "."),
    ("alg_unknown", manual("HS256", hs_secret, {"alg": "HS1024", "kid": "hs"}, body)),
    ("hs256_with_rsa_key", manual("HS256", rsa_pem, {"alg": "HS256", "kid": "rsa"}, body)),
    ("rs256_with_ec_kid", manual("RS256", rsa_key, {"alg": "RS256", "kid": "ec256"}, body)),
    ("es256_with_p384_kid", manual("ES256", ec256, {"alg": "ES256", "kid": "ec384"}, body)),
    ("ps256_long_salt", manual("PS256", rsa_key, {"alg": "PS256", "kid": "rsa"}, body)),
    ("tampered_payload", parts[0] + "." + other[1] + "." + parts[2]),
    ("tampered_signature", parts[0] + "." + parts[1] + "." +
     ("B" if parts[2][0] == "A" else "A") + parts[2][1:]),
    ("truncated", ok_hs[:-10]),
    ("two_parts", parts[0] + "." + parts[1]),
    ("four_parts", ok_hs + ".AAAA"),
    ("bad_base64", parts[0] + "." + parts[1][:10] + "*" + parts[1][11:] + "." + parts[2]),
    ("padded_base64", b64(b'{"alg":"HS256","kid":"hs"}') + "=." + parts[1] + "." + parts[2]),
    ("payload_not_object", manual("HS256", hs_secret, {"alg": "HS256", "kid": "hs"}, b"[1,2]")),
    ("payload_not_json", manual("HS256", hs_secret, {"alg": "HS256", "kid": "hs"}, b"{sub:1}")),
    ("header_not_object", b64(b'"HS256"') + "." + parts[1] + "." + parts[2]),
    ("duplicate_claim", manual("HS256", hs_secret, {"alg": "HS256", "kid": "hs"},
                               body[:-1] + b',"sub":"root"}')),
    ("deep_payload", manual("HS256", hs_secret, {"alg": "HS256", "kid": "hs"},
                            b'{"x":' + b"[" * 40 + b"]" * 40 + b"}")),
    ("crit_header", manual("HS256", hs_secret, {"alg": "HS256", "kid": "hs", "crit": ["exp"]},
                           body)),
    ("es256_sig_short", manual("ES256", ec256, {"alg": "ES256", "kid": "ec256"}, body, 1)),
    ("single_key_no_kid", jwt.encode(CLAIMS, ec256, algorithm="ES256")),
    ("too_many_groups", pyjwt("ES256", claims(groups=["g%d" % i for i in range(65)]))),
    ("long_sub", pyjwt("ES256", claims(sub="a" * 200))),
    ("sub_not_string", pyjwt("ES256", claims(sub=42))),
    ("exp_not_number", pyjwt("ES256", claims(exp="tomorrow"))),
]

# The signer's key, in both PEM forms, and its RFC 7638 thumbprint.
signer = ec.generate_private_key(ec.SECP256R1())
sn = signer.public_key().public_numbers()
thumb = json.dumps({"crv": "P-256", "kty": "EC", "x": uint(sn.x, 32), "y": uint(sn.y, 32)},
                   separators=(",", ":"))
pems = [("signer_pem_sec1", serialization.PrivateFormat.TraditionalOpenSSL),
        ("signer_pem_pkcs8", serialization.PrivateFormat.PKCS8)]
vectors += [(name, signer.private_bytes(serialization.Encoding.PEM, fmt,
                                        serialization.NoEncryption()).decode())
            for name, fmt in pems]
vectors.append(("signer_kid", b64(hashlib.sha256(thumb.encode()).digest())))
vectors.append(("rsa_pem", rsa_key.private_bytes(serialization.Encoding.PEM,
                                                 serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()).decode()))


def c_string(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def c_lines(s, width=96):
    return "\n\t".join(c_string(s[i:i + width]) for i in range(0, len(s), width))


print("/* jwt_vectors.h — fixtures of test_jwt.c: a JWKS and tokens signed by PyJWT and")
print(" * python3-cryptography. Generated by tests/unit/gen_jwt_vectors.py; do not edit. */")
print("#ifndef RINGWAY_JWT_VECTORS_H\n#define RINGWAY_JWT_VECTORS_H\n")
print(f"#define JV_NOW {NOW}")
print(f"#define JV_ISS {c_string(ISS)}")
print(f"#define JV_AUD {c_string(AUD)}\n")
print(f"static const char JV_JWKS[] =\n\t{c_lines(json.dumps(jwks))};\n")
print(f"static const char JV_SINGLE_JWKS[] =\n\t{c_lines(json.dumps(single_jwks))};\n")
for name, token in vectors:
    print(f"static const char JV_{name.upper()}[] =\n\t{c_lines(token)};")
print("\n#endif")
