"""The token vault against the embedded stack's KMS: sealed tokens open only where they belong, cheaply."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta

import pytest

from qbo_health import wiring
from qbo_health.adapters.token_vault import TokenVault
from qbo_health.domain.model import Connection, ConnectionState, TokenPair
from qbo_health.errors import TokenDecryptionFailed

CONNECTION_ID = "conn-1"
REALM_ID = "9130350000000001"


def kms_calls(client) -> Counter[str]:
    """Count every KMS operation the real boto3 client sends (GenerateDataKey, Decrypt, ...)."""
    calls: Counter[str] = Counter()

    def count(model, **_kwargs):
        calls[model.name] += 1

    client.meta.events.register("before-call.kms.*", count)
    return calls


@pytest.fixture
def kms(stack):
    client = stack.client("kms")
    client.calls = kms_calls(client)
    return client


@pytest.fixture
def key_id(stack):
    return stack.resources["TokenKey"].ref


def vault(stack, kms, key_id, **limits) -> TokenVault:
    """A new vault instance: what a cold Lambda container starts with."""
    return TokenVault(kms, key_id, stack.clock, **limits)


def pair(stack, n: int = 0, *, hard: bool = True) -> TokenPair:
    now = stack.clock.now()
    return TokenPair(
        access_token=f"eyJhbGciOiJkaXIi.access-{n:04d}.QBO-ACCESS-SECRET",
        refresh_token=f"RT1-{n:04d}-H0-1780000000QBOREFRESHSECRET",
        access_expires_at=now + timedelta(hours=1),
        refresh_expires_at=now + timedelta(days=100),
        hard_expires_at=now + timedelta(days=5 * 365) if hard else None,
    )


# ---------------------------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("hard", [True, False], ids=["with-hard-expiry", "without-hard-expiry"])
def test_sealed_tokens_open_to_the_same_pair(stack, hard):
    tokens = pair(stack, hard=hard)
    sealer, opener = wiring.token_vault(), wiring.token_vault()

    sealed = sealer.seal(tokens, connection_id=CONNECTION_ID, realm_id=REALM_ID)
    opened = opener.open(sealed, connection_id=CONNECTION_ID, realm_id=REALM_ID)

    assert opened == tokens
    assert opened.access_token == tokens.access_token
    assert opened.refresh_token == tokens.refresh_token
    assert opened.hard_expires_at == tokens.hard_expires_at


def test_a_cold_vault_opens_what_another_instance_sealed(stack, kms, key_id):
    tokens = pair(stack)
    sealed = vault(stack, kms, key_id).seal(tokens, connection_id=CONNECTION_ID, realm_id=REALM_ID)

    assert vault(stack, kms, key_id).open(sealed, connection_id=CONNECTION_ID, realm_id=REALM_ID) == tokens


def test_sealed_tokens_record_which_kms_key_protects_them(stack, kms, key_id):
    sealed = vault(stack, kms, key_id).seal(pair(stack), connection_id=CONNECTION_ID, realm_id=REALM_ID)

    assert sealed.key_id.endswith(key_id)


# ---------------------------------------------------------------------------------------------- binding


@pytest.mark.parametrize(
    ("connection_id", "realm_id"),
    [("conn-2", REALM_ID), (CONNECTION_ID, "9130350000000002"), ("conn-2", "9130350000000002")],
    ids=["other-connection", "other-realm", "other-both"],
)
def test_a_ciphertext_copied_onto_another_connection_does_not_open(
    stack, kms, key_id, connection_id, realm_id
):
    box = vault(stack, kms, key_id)
    sealed = box.seal(pair(stack), connection_id=CONNECTION_ID, realm_id=REALM_ID)

    with pytest.raises(TokenDecryptionFailed):
        box.open(sealed, connection_id=connection_id, realm_id=realm_id)
    assert box.open(sealed, connection_id=CONNECTION_ID, realm_id=REALM_ID) == pair(stack)


def test_a_tampered_ciphertext_does_not_open(stack, kms, key_id):
    box = vault(stack, kms, key_id)
    sealed = box.seal(pair(stack), connection_id=CONNECTION_ID, realm_id=REALM_ID)
    flipped = bytearray(sealed.ciphertext)
    flipped[-1] ^= 0x01

    with pytest.raises(TokenDecryptionFailed):
        box.open(replace(sealed, ciphertext=bytes(flipped)), connection_id=CONNECTION_ID, realm_id=REALM_ID)


def test_a_corrupted_data_key_does_not_open(stack, kms, key_id):
    sealed = vault(stack, kms, key_id).seal(pair(stack), connection_id=CONNECTION_ID, realm_id=REALM_ID)
    broken_key = bytes(byte ^ 0xFF for byte in sealed.encrypted_data_key)

    with pytest.raises(TokenDecryptionFailed):
        vault(stack, kms, key_id).open(
            replace(sealed, encrypted_data_key=broken_key), connection_id=CONNECTION_ID, realm_id=REALM_ID
        )


def test_a_vault_with_a_different_kms_key_cannot_open(stack, kms, key_id):
    other_key = kms.create_key(Description="some other service's key")["KeyMetadata"]["KeyId"]
    sealed = vault(stack, kms, key_id).seal(pair(stack), connection_id=CONNECTION_ID, realm_id=REALM_ID)

    with pytest.raises(TokenDecryptionFailed):
        vault(stack, kms, other_key).open(sealed, connection_id=CONNECTION_ID, realm_id=REALM_ID)


# ---------------------------------------------------------------------------------------------- secrecy


def test_token_values_never_appear_in_sealed_bytes_or_reprs(stack, kms, key_id):
    tokens = pair(stack)
    sealed = vault(stack, kms, key_id).seal(tokens, connection_id=CONNECTION_ID, realm_id=REALM_ID)
    connection = Connection(
        CONNECTION_ID, "tenant-1", REALM_ID, ConnectionState.HEALTHY, sealed_tokens=sealed
    )
    opened = vault(stack, kms, key_id).open(sealed, connection_id=CONNECTION_ID, realm_id=REALM_ID)

    texts = [
        repr(tokens),
        str(tokens),
        f"{tokens}",
        repr(opened),
        repr(sealed),
        str(sealed),
        repr(connection),
    ]
    blobs = [sealed.ciphertext, sealed.encrypted_data_key, sealed.key_id.encode()]
    for secret in (tokens.access_token, tokens.refresh_token):
        for fragment in (secret, secret[:12], secret[-12:]):
            assert not any(fragment in text for text in texts), fragment
            assert not any(fragment.encode() in blob for blob in blobs), fragment


def test_a_failed_open_does_not_reveal_tokens(stack, kms, key_id):
    tokens = pair(stack)
    sealed = vault(stack, kms, key_id).seal(tokens, connection_id=CONNECTION_ID, realm_id=REALM_ID)

    with pytest.raises(TokenDecryptionFailed) as raised:
        vault(stack, kms, key_id).open(sealed, connection_id="conn-2", realm_id=REALM_ID)

    assert tokens.refresh_token not in str(raised.value)
    assert tokens.access_token not in str(raised.value)


def test_sealing_the_same_pair_twice_gives_different_ciphertexts(stack, kms, key_id):
    box = vault(stack, kms, key_id)

    first = box.seal(pair(stack), connection_id=CONNECTION_ID, realm_id=REALM_ID)
    second = box.seal(pair(stack), connection_id=CONNECTION_ID, realm_id=REALM_ID)

    assert first.ciphertext != second.ciphertext
    assert first.encrypted_data_key == second.encrypted_data_key  # one data key, fresh nonces


# ---------------------------------------------------------------------------------------------- KMS cost


def test_a_thousand_pairs_cost_one_data_key_to_seal_and_one_decrypt_to_open_cold(stack, kms, key_id):
    sealer = vault(stack, kms, key_id)
    tokens = [pair(stack, n) for n in range(1000)]

    sealed = [sealer.seal(p, connection_id=f"conn-{n}", realm_id=REALM_ID) for n, p in enumerate(tokens)]
    assert kms.calls == Counter({"GenerateDataKey": 1})

    kms.calls.clear()
    cold = vault(stack, kms, key_id)
    opened = [cold.open(s, connection_id=f"conn-{n}", realm_id=REALM_ID) for n, s in enumerate(sealed)]

    assert opened == tokens
    assert kms.calls == Counter({"Decrypt": 1})


def test_the_sealing_vault_opens_its_own_tokens_without_calling_kms_again(stack, kms, key_id):
    box = vault(stack, kms, key_id)
    sealed = box.seal(pair(stack), connection_id=CONNECTION_ID, realm_id=REALM_ID)

    box.open(sealed, connection_id=CONNECTION_ID, realm_id=REALM_ID)

    assert kms.calls == Counter({"GenerateDataKey": 1})


def test_the_data_key_is_replaced_once_it_is_max_age_old_by_the_clock(stack, kms, key_id):
    box = vault(stack, kms, key_id, max_age_seconds=300)
    first = box.seal(pair(stack, 1), connection_id=CONNECTION_ID, realm_id=REALM_ID)

    stack.clock.advance(timedelta(seconds=299))
    still = box.seal(pair(stack, 2), connection_id=CONNECTION_ID, realm_id=REALM_ID)
    assert kms.calls["GenerateDataKey"] == 1
    assert still.encrypted_data_key == first.encrypted_data_key

    stack.clock.advance(timedelta(seconds=1))
    fresh = box.seal(pair(stack, 3), connection_id=CONNECTION_ID, realm_id=REALM_ID)
    assert kms.calls["GenerateDataKey"] == 2
    assert fresh.encrypted_data_key != first.encrypted_data_key

    for n, sealed in ((1, first), (3, fresh)):  # tokens sealed under the old key still open
        assert box.open(sealed, connection_id=CONNECTION_ID, realm_id=REALM_ID).access_token.endswith(
            f"access-{n:04d}.QBO-ACCESS-SECRET"
        )


def test_the_data_key_is_replaced_after_max_uses(stack, kms, key_id):
    box = vault(stack, kms, key_id, max_uses=3)

    sealed = [box.seal(pair(stack, n), connection_id=f"conn-{n}", realm_id=REALM_ID) for n in range(7)]

    assert kms.calls["GenerateDataKey"] == 3
    data_keys = [s.encrypted_data_key for s in sealed]
    assert data_keys[0] == data_keys[1] == data_keys[2]
    assert data_keys[3] == data_keys[4] == data_keys[5]
    assert len(set(data_keys)) == 3
    cold = vault(stack, kms, key_id)
    assert [cold.open(s, connection_id=f"conn-{n}", realm_id=REALM_ID) for n, s in enumerate(sealed)] == [
        pair(stack, n) for n in range(7)
    ]
    assert kms.calls["Decrypt"] == 3


def test_a_decrypted_data_key_is_forgotten_after_max_age(stack, kms, key_id):
    sealed = vault(stack, kms, key_id).seal(pair(stack), connection_id=CONNECTION_ID, realm_id=REALM_ID)
    cold = vault(stack, kms, key_id, max_age_seconds=60)

    cold.open(sealed, connection_id=CONNECTION_ID, realm_id=REALM_ID)
    stack.clock.advance(timedelta(seconds=59))
    cold.open(sealed, connection_id=CONNECTION_ID, realm_id=REALM_ID)
    assert kms.calls["Decrypt"] == 1

    stack.clock.advance(timedelta(seconds=1))
    cold.open(sealed, connection_id=CONNECTION_ID, realm_id=REALM_ID)
    assert kms.calls["Decrypt"] == 2


def test_threads_opening_at_once_on_a_cold_vault_make_one_kms_call(stack, kms, key_id):
    sealer = vault(stack, kms, key_id)
    sealed = [sealer.seal(pair(stack, n), connection_id=f"conn-{n}", realm_id=REALM_ID) for n in range(16)]
    kms.calls.clear()
    cold = vault(stack, kms, key_id)
    start = threading.Barrier(16)

    def open_one(n: int) -> TokenPair:
        start.wait()
        return cold.open(sealed[n], connection_id=f"conn-{n}", realm_id=REALM_ID)

    with ThreadPoolExecutor(max_workers=16) as pool:
        opened = list(pool.map(open_one, range(16)))

    assert opened == [pair(stack, n) for n in range(16)]
    assert kms.calls == Counter({"Decrypt": 1})
