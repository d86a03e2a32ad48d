"""Secrets are AES-256-GCM sealed, bound to the Redis key they live under, with a 0600 key file."""

from __future__ import annotations

import base64
import os
import stat
import threading
from pathlib import Path

import pytest

from kubeboot.config.settings import Settings
from kubeboot.tasks.state.secrets import NONCE_BYTES, SecretBox, SecretError, box_from_settings, load_or_create_key

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))
AAD = "kubeboot:run:r-1:secret:bootstrap-token"
TOKEN = b"abcdef.0123456789abcdef"


def test_a_sealed_value_opens_with_the_same_key_and_name() -> None:
    box = SecretBox(KEY_A)
    assert box.decrypt(box.encrypt(TOKEN, aad=AAD), aad=AAD) == TOKEN


def test_the_sealed_form_is_nonce_then_ciphertext_and_tag() -> None:
    blob = base64.b64decode(SecretBox(KEY_A).encrypt(TOKEN, aad=AAD))
    assert len(blob) == NONCE_BYTES + len(TOKEN) + 16
    assert TOKEN not in blob


def test_sealing_twice_gives_different_ciphertexts() -> None:
    box = SecretBox(KEY_A)
    assert box.encrypt(TOKEN, aad=AAD) != box.encrypt(TOKEN, aad=AAD)


@pytest.mark.parametrize(
    ("key", "aad", "mangle"),
    [
        pytest.param(KEY_B, AAD, lambda b: b, id="another key fails"),
        pytest.param(KEY_A, "kubeboot:run:r-2:secret:bootstrap-token", lambda b: b,
                     id="a value copied under another key name fails"),
        pytest.param(KEY_A, AAD, lambda b: b[:-1] + bytes([b[-1] ^ 1]), id="a flipped tag bit fails"),
        pytest.param(KEY_A, AAD, lambda b: b[:NONCE_BYTES] + bytes([b[NONCE_BYTES] ^ 1]) + b[NONCE_BYTES + 1:],
                     id="a flipped ciphertext bit fails"),
        pytest.param(KEY_A, AAD, lambda b: b[:NONCE_BYTES], id="a bare nonce fails"),
    ],
)
def test_anything_but_the_exact_key_name_and_bytes_fails_to_open(key: bytes, aad: str, mangle: object) -> None:
    sealed = base64.b64decode(SecretBox(KEY_A).encrypt(TOKEN, aad=AAD))
    tampered = base64.b64encode(mangle(sealed)).decode()  # type: ignore[operator]
    with pytest.raises(SecretError) as err:
        SecretBox(key).decrypt(tampered, aad=aad)
    assert TOKEN.decode() not in str(err.value)


def test_a_value_that_is_not_base64_is_refused() -> None:
    with pytest.raises(SecretError, match="not a sealed secret"):
        SecretBox(KEY_A).decrypt("plain text!", aad=AAD)


def test_a_key_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        SecretBox(b"short")


def test_the_repr_of_a_box_hides_the_key() -> None:
    assert KEY_A.hex() not in repr(SecretBox(KEY_A))
    assert repr(KEY_A) not in repr(SecretBox(KEY_A))


def test_the_key_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = load_or_create_key(Settings(state_dir=state))
    path = state / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert base64.b64decode(path.read_text()) == first
    assert len(first) == 32
    assert load_or_create_key(Settings(state_dir=state)) == first
    assert [p.name for p in state.iterdir()] == ["secret.key"]  # no temporary file left behind


def test_concurrent_first_runs_agree_on_one_key(tmp_path: Path) -> None:
    keys: list[bytes] = []
    barrier = threading.Barrier(8)

    def create() -> None:
        barrier.wait()
        keys.append(load_or_create_key(Settings(state_dir=tmp_path)))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8
    assert len(set(keys)) == 1


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    load_or_create_key(Settings(state_dir=tmp_path))
    os.chmod(tmp_path / "secret.key", 0o644)
    with pytest.raises(SecretError, match="chmod 600"):
        load_or_create_key(Settings(state_dir=tmp_path))


def test_a_configured_key_is_used_and_no_key_file_is_written(tmp_path: Path) -> None:
    box = box_from_settings(Settings(state_dir=tmp_path, secret_key=KEY_A))
    assert SecretBox(KEY_A).decrypt(box.encrypt(TOKEN, aad=AAD), aad=AAD) == TOKEN
    assert not (tmp_path / "secret.key").exists()


def test_without_a_configured_key_the_state_dir_key_is_used(tmp_path: Path) -> None:
    box = box_from_settings(Settings(state_dir=tmp_path))
    key = load_or_create_key(Settings(state_dir=tmp_path))
    assert SecretBox(key).decrypt(box.encrypt(TOKEN, aad=AAD), aad=AAD) == TOKEN
