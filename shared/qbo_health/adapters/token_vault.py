"""Envelope encryption of token pairs under a KMS key.

A data key from KMS encrypts many token pairs (AES-256-GCM), so a healthy check costs a small fraction of a
KMS call. Each pair is bound to its connection and realm through the GCM associated data: a ciphertext copied
onto another connection fails to open. Data keys are cached for a bounded time and number of uses; decrypted
keys are cached by their encrypted form, so every pair sealed under one key opens with one KMS call.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from qbo_health.clock import Clock
from qbo_health.domain.model import SealedTokens, TokenPair
from qbo_health.errors import TokenDecryptionFailed

KMS_CONTEXT = {"service": "qbo-connection-health", "purpose": "oauth-tokens"}
_NONCE_BYTES = 12
_FORMAT = 2


class KmsClient(Protocol):
    def generate_data_key(self, **kwargs: Any) -> dict[str, Any]: ...

    def decrypt(self, **kwargs: Any) -> dict[str, Any]: ...


@dataclass
class _DataKey:
    plaintext: bytes
    encrypted: bytes
    key_id: str
    created_at: datetime
    uses: int = 0


class TokenVault:
    def __init__(
        self,
        kms: KmsClient,
        key_id: str,
        clock: Clock,
        *,
        max_age_seconds: int = 300,
        max_uses: int = 10_000,
        decrypted_cache_size: int = 256,
    ) -> None:
        self._kms = kms
        self._key_id = key_id
        self._clock = clock
        self._max_age_seconds = max_age_seconds
        self._max_uses = max_uses
        self._cache_size = decrypted_cache_size
        self._current: _DataKey | None = None
        self._decrypted: OrderedDict[bytes, tuple[bytes, datetime]] = OrderedDict()
        self._lock = threading.Lock()
        self._kms_lock = threading.Lock()

    def seal(self, pair: TokenPair, *, connection_id: str, realm_id: str) -> SealedTokens:
        return self._seal(_serialize(pair), _binding(connection_id, realm_id))

    def open(self, sealed: SealedTokens, *, connection_id: str, realm_id: str) -> TokenPair:
        return _deserialize(self._open(sealed, _binding(connection_id, realm_id), connection_id))

    def seal_access(self, access_token: str, *, connection_id: str, realm_id: str) -> SealedTokens:
        """An access token alone, bound so that it never opens as (or in place of) a token pair."""
        return self._seal(access_token.encode(), _binding(connection_id, realm_id, kind="access"))

    def open_access(self, sealed: SealedTokens, *, connection_id: str, realm_id: str) -> str:
        return self._open(sealed, _binding(connection_id, realm_id, kind="access"), connection_id).decode()

    def _seal(self, clear: bytes, binding: bytes) -> SealedTokens:
        key = self._encryption_key()
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(key.plaintext).encrypt(nonce, clear, binding)
        return SealedTokens(ciphertext=nonce + sealed, encrypted_data_key=key.encrypted, key_id=key.key_id)

    def _open(self, sealed: SealedTokens, binding: bytes, connection_id: str) -> bytes:
        plaintext_key = self._decryption_key(sealed.encrypted_data_key)
        nonce, body = sealed.ciphertext[:_NONCE_BYTES], sealed.ciphertext[_NONCE_BYTES:]
        try:
            return AESGCM(plaintext_key).decrypt(nonce, body, binding)
        except InvalidTag as error:
            raise TokenDecryptionFailed(f"tokens of {connection_id} do not open here") from error

    def _encryption_key(self) -> _DataKey:
        now = self._clock.now()
        with self._lock:
            key = self._current
            if key is None or key.uses >= self._max_uses or self._expired(key.created_at, now):
                response = self._kms.generate_data_key(
                    KeyId=self._key_id, KeySpec="AES_256", EncryptionContext=KMS_CONTEXT
                )
                key = _DataKey(response["Plaintext"], response["CiphertextBlob"], response["KeyId"], now)
                self._current = key
                self._remember(key.encrypted, key.plaintext, now)
            key.uses += 1
            return key

    def _decryption_key(self, encrypted: bytes) -> bytes:
        now = self._clock.now()
        cached = self._cached(encrypted, now)
        if cached is not None:
            return cached
        with self._kms_lock:  # threads missing the same key at once make one KMS call, not one each
            cached = self._cached(encrypted, now)
            return cached if cached is not None else self._decrypt_with_kms(encrypted, now)

    def _cached(self, encrypted: bytes, now: datetime) -> bytes | None:
        with self._lock:
            cached = self._decrypted.get(encrypted)
            if cached and not self._expired(cached[1], now):
                self._decrypted.move_to_end(encrypted)
                return cached[0]
        return None

    def _decrypt_with_kms(self, encrypted: bytes, now: datetime) -> bytes:
        try:
            response = self._kms.decrypt(
                CiphertextBlob=encrypted, EncryptionContext=KMS_CONTEXT, KeyId=self._key_id
            )
        except Exception as error:  # the KMS client's error types belong to botocore
            raise TokenDecryptionFailed("the data key could not be decrypted") from error
        plaintext: bytes = response["Plaintext"]
        with self._lock:
            self._remember(encrypted, plaintext, now)
        return plaintext

    def _remember(self, encrypted: bytes, plaintext: bytes, now: datetime) -> None:
        self._decrypted[encrypted] = (plaintext, now)
        self._decrypted.move_to_end(encrypted)
        while len(self._decrypted) > self._cache_size:
            self._decrypted.popitem(last=False)

    def _expired(self, since: datetime, now: datetime) -> bool:
        return (now - since).total_seconds() >= self._max_age_seconds


def _binding(connection_id: str, realm_id: str, *, kind: str | None = None) -> bytes:
    bound = {"connection_id": connection_id, "realm_id": realm_id}
    if kind is not None:  # token pairs predate kinds: their binding stays as it was
        bound["kind"] = kind
    return json.dumps(bound, sort_keys=True).encode()


def _serialize(pair: TokenPair) -> bytes:
    """Compact (epoch seconds, short keys): the sealed pair is most of the connection item, which must stay
    under 1 KB for each write to cost one write unit."""
    compact: dict[str, object] = {
        "v": _FORMAT,
        "r": pair.refresh_token,
        "ae": _epoch(pair.access_expires_at),
        "re": _epoch(pair.refresh_expires_at),
    }
    if pair.access_token:
        compact["a"] = pair.access_token
    if pair.hard_expires_at is not None:
        compact["he"] = _epoch(pair.hard_expires_at)
    return json.dumps(compact, separators=(",", ":")).encode()


def _deserialize(clear: bytes) -> TokenPair:
    data = json.loads(clear)
    if data.get("v") == 1:  # the first, verbose format
        hard = data.get("hard_expires_at")
        return TokenPair(
            access_token=data["access_token"],
            refresh_token=data["refresh_token"],
            access_expires_at=datetime.fromisoformat(data["access_expires_at"]),
            refresh_expires_at=datetime.fromisoformat(data["refresh_expires_at"]),
            hard_expires_at=datetime.fromisoformat(hard) if hard else None,
        )
    return TokenPair(
        access_token=data.get("a", ""),
        refresh_token=data["r"],
        access_expires_at=_moment(data["ae"]),
        refresh_expires_at=_moment(data["re"]),
        hard_expires_at=_moment(data["he"]) if "he" in data else None,
    )


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _moment(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
