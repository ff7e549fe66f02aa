"""The tool's signing keys: the published JWKS, rotation, retirement, safe storage."""

import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from lti_tool.errors import KeyUnavailableError
from lti_tool.models import ToolKey
from lti_tool.services import keys

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi"}


def kids(client) -> list[str]:
    response = client.get("/lti/jwks")
    assert response.status_code == 200
    return [key["kid"] for key in response.json["keys"]]


def test_jwks_publishes_an_rsa_key_made_on_first_use(client):
    response = client.get("/lti/jwks")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    [key] = response.json["keys"]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig"
    assert key["kid"] and key["n"] and key["e"] == "AQAB"
    assert not PRIVATE_MEMBERS & set(key)
    assert kids(client) == [key["kid"]], "the key is made once, then reused"


def test_kid_matches_what_pylti1p3_computes_for_the_same_key(client, app):
    """PyLTI1p3 derives the kid it puts in JWT headers from the public key: ours must agree."""
    from pylti1p3.registration import Registration

    [key] = client.get("/lti/jwks").json["keys"]
    public_pem = jwt.PyJWK(key).key.public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
    ).decode()
    assert Registration.get_jwk(public_pem)["kid"] == key["kid"]


def test_a_token_signed_with_the_current_key_verifies_against_the_published_jwks(client, app):
    key = keys.ensure_current_key()
    token = jwt.encode(
        {"iss": "tool", "aud": "platform"},
        keys.private_key_pem(key),
        algorithm="RS256",
        headers={"kid": key.kid},
    )
    jwks = jwt.PyJWKSet.from_dict(client.get("/lti/jwks").json)
    public = jwks[jwt.get_unverified_header(token)["kid"]]
    assert jwt.decode(token, public.key, algorithms=["RS256"], audience="platform")["iss"] == "tool"


def test_rotation_keeps_the_previous_key_published_until_it_is_retired(runner, client):
    first = runner.invoke(args=["keys", "ensure"]).output.strip()
    result = runner.invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    second = result.stdout.strip()
    assert second != first
    assert kids(client) == [second, first], "current key first, previous still published"

    listing = runner.invoke(args=["keys", "list"]).output
    assert f"{second}  current" in listing and f"{first}  published" in listing

    result = runner.invoke(args=["keys", "retire", first])
    assert result.exit_code == 0, result.output
    assert kids(client) == [second]
    assert f"{first}  retired" in runner.invoke(args=["keys", "list"]).output


def test_signing_uses_the_new_key_right_after_rotation(runner, app):
    runner.invoke(args=["keys", "ensure"])
    new_kid = runner.invoke(args=["keys", "rotate"]).stdout.strip()
    assert keys.current_key().kid == new_kid


def test_retiring_destroys_the_private_key(runner, db):
    old = runner.invoke(args=["keys", "ensure"]).stdout.strip()
    runner.invoke(args=["keys", "rotate"])
    runner.invoke(args=["keys", "retire", old])
    key = db.session.scalar(sa.select(ToolKey).where(ToolKey.kid == old))
    assert key.private_key is None and key.retired_at is not None
    with pytest.raises(KeyUnavailableError):
        keys.private_key_pem(key)


@pytest.mark.parametrize("which, fragment", [
    ("current", "is the current signing key"),
    ("unknown", "no tool key with kid"),
    ("retired", "already retired"),
])
def test_retire_refuses_what_cannot_be_retired(runner, which, fragment):
    old = runner.invoke(args=["keys", "ensure"]).stdout.strip()
    current = runner.invoke(args=["keys", "rotate"]).stdout.strip()
    runner.invoke(args=["keys", "retire", old])
    kid = {"current": current, "unknown": "no-such-kid", "retired": old}[which]
    result = runner.invoke(args=["keys", "retire", kid])
    assert result.exit_code == 2
    assert fragment in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_kids_never_start_with_a_dash(app, db, monkeypatch):
    """A kid is typed as a command argument (`keys retire KID`): "-x…" would read as an option.

    Key generation is fed a key whose thumbprint starts with "-" first (found among quick
    1024-bit keys), then an ordinary one: the dashed one must be passed over.
    """
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwcrypto.jwk import JWK

    def thumbprint(key) -> str:
        return JWK.from_pyca(key).thumbprint()

    quick_keys = iter(lambda: rsa.generate_private_key(65537, 1024), None)
    dashed = next(k for k in quick_keys if thumbprint(k).startswith("-"))
    # one thumbprint in 64 starts with "-": the ordinary key must not be such a one too
    plain = next(k for k in quick_keys if not thumbprint(k).startswith("-"))
    supply = iter([dashed, plain])
    monkeypatch.setattr(keys.rsa, "generate_private_key", lambda **kwargs: next(supply))
    assert keys.rotate_key().kid == thumbprint(plain)
    db.session.rollback()


def test_keys_list_when_there_are_none(runner):
    result = runner.invoke(args=["keys", "list"])
    assert result.exit_code == 0
    assert "No tool keys yet" in result.output


def test_the_private_key_is_encrypted_at_rest(db, app):
    key = keys.ensure_current_key()
    db.session.commit()
    stored = db.session.execute(sa.text("SELECT private_key FROM tool_key")).scalar_one()
    assert b"PRIVATE KEY" not in bytes(stored)
    assert keys.private_key_pem(key).startswith("-----BEGIN PRIVATE KEY-----")


def test_a_changed_secret_key_gives_a_clear_error_not_a_bad_signature(db, app):
    key = keys.ensure_current_key()
    db.session.commit()
    app.config["SECRET_KEY"] = "a-different-secret"
    with pytest.raises(KeyUnavailableError, match="SECRET_KEY changed"):
        keys.private_key_pem(key)


def test_the_private_key_is_never_logged(runner, caplog):
    caplog.set_level("DEBUG")
    runner.invoke(args=["keys", "ensure"])
    runner.invoke(args=["keys", "rotate"])
    assert "PRIVATE KEY" not in caplog.text
    assert "Rotated tool key" in caplog.text
