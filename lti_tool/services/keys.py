"""The tool's RSA signing keys: creation, rotation, retirement and the public JWKS."""

import base64
import hashlib
import logging
from datetime import UTC, datetime

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from jwcrypto.jwk import JWK
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from ..errors import KeyUnavailableError, ValidationError
from ..extensions import db
from ..models import ToolKey

log = logging.getLogger(__name__)

KEY_SIZE = 2048
# Decrypted private keys by kid and a digest of ciphertext and secret: decrypting once per
# process keeps key handling off the launch's hot path; a retired key is no longer asked for.
_pem_cache: dict[tuple[str, str], str] = {}
_public_pem_cache: dict[str, str] = {}


def _fernet() -> Fernet:
    secret = current_app.config["SECRET_KEY"].encode()
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"lti-tool private key encryption"
    ).derive(secret)
    return Fernet(base64.urlsafe_b64encode(derived))


def _new_key_values() -> dict:
    """A fresh RSA key as the columns of a ToolKey: kid, public JWK, encrypted private PEM."""
    while True:
        private = rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        jwk = JWK.from_pem(pem)
        kid = jwk.thumbprint()
        # One key in 64 has a thumbprint starting with "-", which a command line would read
        # as an option (`keys retire KID`): make another.
        if not kid.startswith("-"):
            break
    public_jwk = jwk.export_public(as_dict=True) | {"kid": kid, "alg": "RS256", "use": "sig"}
    return {"kid": kid, "public_jwk": public_jwk, "private_key": _fernet().encrypt(pem)}


def current_key() -> ToolKey | None:
    """The key that signs the tool's messages now, if there is one."""
    return db.session.scalar(select(ToolKey).where(ToolKey.current.is_(True)))


def ensure_current_key() -> ToolKey:
    """The current key; when the tool has none, the first one, committed before it is returned.

    A key made on demand must be published (in /lti/jwks) before anything is signed with it,
    whatever the caller does with its own transaction afterwards. So it is inserted and
    committed on a connection of its own; a concurrent first key (another worker) makes the
    insert fail on the unique `current` flag, and both then read back the one that won. The
    caller's session is left alone, so call this before the request's own writes (on SQLite
    the insert would otherwise wait for the caller's write lock).
    """
    key = current_key()
    if key is not None:
        return key
    values = _new_key_values()
    try:
        with db.engine.begin() as conn:
            conn.execute(insert(ToolKey).values(current=True, **values))
    except IntegrityError:
        log.info("Another process created the first tool key at the same moment; using it")
    else:
        log.info("Created tool key %s", values["kid"])
    key = current_key()
    if key is None:  # pragma: no cover - the winner's key was rotated away at once
        raise KeyUnavailableError("the tool's first key could not be created; retry")
    return key


def rotate_key() -> ToolKey:
    """Make a new current key; the old one stays published until it is retired."""
    old = current_key()
    if old is not None:
        old.current = None
        db.session.flush()
    key = ToolKey(current=True, **_new_key_values())
    db.session.add(key)
    db.session.flush()
    log.info("Rotated tool key: %s is current, %s still published", key.kid, old and old.kid)
    return key


def retire_key(kid: str) -> ToolKey:
    """Stop publishing a previous key and destroy its private half."""
    key = db.session.scalar(select(ToolKey).where(ToolKey.kid == kid))
    if key is None:
        raise ValidationError("kid", f"no tool key with kid {kid!r}")
    if key.current:
        raise ValidationError("kid", f"{kid} is the current signing key: rotate first")
    if key.retired_at is not None:
        raise ValidationError("kid", f"{kid} is already retired")
    key.retired_at = datetime.now(UTC)
    key.private_key = None
    db.session.flush()
    log.info("Retired tool key %s", kid)
    return key


def list_keys() -> list[ToolKey]:
    """Every key, newest first."""
    return list(db.session.scalars(select(ToolKey).order_by(ToolKey.id.desc())))


def public_jwks() -> dict:
    """The JWKS the tool publishes: the current key first, then keys not yet retired."""
    keys = db.session.scalars(
        select(ToolKey)
        .where(ToolKey.retired_at.is_(None))
        .order_by(ToolKey.current.is_(True).desc(), ToolKey.id.desc())
    )
    return {"keys": [key.public_jwk for key in keys]}


def public_key_pem(key: ToolKey) -> str:
    """The PEM of a key's public half (PyLTI1p3 derives the kid of its JWT headers from it)."""
    pem = _public_pem_cache.get(key.kid)
    if pem is None:
        pem = JWK(**key.public_jwk).export_to_pem().decode()
        _public_pem_cache[key.kid] = pem
    return pem


def private_key_pem(key: ToolKey) -> str:
    """The decrypted PEM of a key, cached per process."""
    if key.private_key is None:
        raise KeyUnavailableError(f"tool key {key.kid} is retired")
    secret = current_app.config["SECRET_KEY"].encode()
    cache_key = (key.kid, hashlib.sha256(secret + b"\0" + key.private_key).hexdigest())
    pem = _pem_cache.get(cache_key)
    if pem is None:
        try:
            pem = _fernet().decrypt(key.private_key).decode()
        except InvalidToken:
            raise KeyUnavailableError(
                f"tool key {key.kid} cannot be decrypted: SECRET_KEY changed since it was "
                "made; run 'flask keys rotate' to make a new one"
            ) from None
        _pem_cache[cache_key] = pem
    return pem
