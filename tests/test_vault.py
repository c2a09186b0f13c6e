"""The reversible vault: restore, isolation between requests and identities, expiry, streaming."""

from __future__ import annotations

import pytest

from vallum.core.types import Finding, Identity, Severity, Span
from vallum.redaction import redact
from vallum.vault import Vault, VaultError, VaultStore

TEXT = "Email bob@example.com and call +1 212 555 0199."
FINDINGS = [
    Finding("pii", "pii", Severity.ERROR, 0.95, Span(6, 21), subtype="EMAIL"),
    Finding("pii", "pii", Severity.ERROR, 0.8, Span(31, 46), subtype="PHONE_NUMBER"),
]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("strategy", ["placeholder", "synthetic", "hash"])
def test_restore_brings_back_the_originals(strategy: str) -> None:
    vault = Vault()
    redacted = redact(TEXT, FINDINGS, strategy, vault).text
    assert "bob@example.com" not in redacted
    assert vault.restore(f"Sure. {redacted}") == f"Sure. {TEXT}"


def test_repr_and_str_never_show_values() -> None:
    vault = Vault()
    redact(TEXT, FINDINGS, "placeholder", vault)
    assert "bob@" not in repr(vault) and "bob@" not in str(vault) and "<EMAIL_1>" not in repr(vault)


def test_placeholder_from_one_request_never_restores_in_another() -> None:
    a, b = Vault(), Vault()
    redacted_a = redact(TEXT, FINDINGS, "placeholder", a).text
    other = Finding("pii", "pii", Severity.ERROR, 0.9, Span(6, 21), subtype="EMAIL")
    redact("Email amy@example.org", [other], "placeholder", b)
    assert a.request_id != b.request_id
    assert "bob@example.com" not in b.restore(redacted_a)
    assert a.restore("<EMAIL_1>") == "bob@example.com"


def test_vault_store_refuses_another_identity() -> None:
    store = VaultStore()
    alice, mallory = Identity(tenant="t", user="alice"), Identity(tenant="t", user="mallory")
    vault = store.open(alice)
    assert store.get(vault.request_id, alice) is vault
    with pytest.raises(VaultError):
        store.get(vault.request_id, mallory)
    with pytest.raises(VaultError):
        store.get("guessed-request-id", alice)


def test_vault_expires_and_forgets_its_values() -> None:
    clock = FakeClock()
    vault = Vault(ttl_seconds=60, clock=clock)
    redacted = redact(TEXT, FINDINGS, "placeholder", vault).text
    clock.now += 59
    assert vault.restore(redacted) == TEXT
    clock.now += 1
    with pytest.raises(VaultError, match="expired"):
        vault.restore(redacted)
    assert len(vault) == 0


def test_store_purges_expired_vaults() -> None:
    clock = FakeClock()
    store = VaultStore(ttl_seconds=10, clock=clock)
    vault = store.open()
    clock.now += 11
    assert store.purge() == 1
    with pytest.raises(VaultError):
        store.get(vault.request_id)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8])
def test_stream_restore_handles_placeholders_split_across_chunks(size: int) -> None:
    vault = Vault()
    redacted = redact(TEXT, FINDINGS, "placeholder", vault).text
    restorer = vault.stream_restorer()
    chunks = [redacted[i : i + size] for i in range(0, len(redacted), size)]
    assert "".join(restorer.feed(c) for c in chunks) + restorer.flush() == TEXT


def test_stream_restore_never_emits_half_a_placeholder() -> None:
    vault = Vault()
    vault.placeholder("EMAIL", "bob@example.com")
    restorer = vault.stream_restorer()
    assert restorer.feed("Hi <EMA") == "Hi "
    assert restorer.feed("IL_1>!") == "bob@example.com!"


def test_stream_hold_back_is_bounded_and_released_when_not_a_placeholder() -> None:
    vault = Vault()
    vault.placeholder("EMAIL", "bob@example.com")
    restorer = vault.stream_restorer()
    assert restorer.feed("a < b") == "a < b"
    assert restorer.feed(" and <EMAIL_") == " and "
    assert restorer.feed("9> x") == "<EMAIL_9> x"
    assert restorer.flush() == ""


def test_a_successor_numbers_on_and_its_placeholders_are_not_restored_by_its_predecessor() -> None:
    request = Vault()
    first = request.placeholder("EMAIL", "a@example.com")
    answer = request.successor()
    second = answer.placeholder("EMAIL", "b@example.com")
    assert (first, second) == ("<EMAIL_1>", "<EMAIL_2>")
    assert request.restore(f"{first} {second}") == "a@example.com <EMAIL_2>"
