"""Signing: Pilbox's vector, tampering, placement, key rotation, and the CLI."""

import subprocess
import sys

from imgproxy import signature

KEY = "abcdef"
VECTOR = "c9516346abf62876b6345817dba2f9a0c797ef26"


def test_known_vector():
    assert signature.derive_signature(KEY, "x=1&y=2&z=3") == VECTOR
    assert signature.sign(KEY, "x=1&y=2&z=3") == f"x=1&y=2&z=3&sig={VECTOR}"


def test_verify_accepts_only_a_final_single_valid_sig():
    q = "x=1&y=2&z=3"
    assert signature.verify([KEY], f"{q}&sig={VECTOR}")
    assert signature.verify([KEY], f"{q}&sig={VECTOR.upper()}")
    assert not signature.verify([KEY], f"x=1&y=2&z=4&sig={VECTOR}")  # tampered
    assert not signature.verify(["other"], f"{q}&sig={VECTOR}")  # wrong key
    assert not signature.verify([KEY], f"sig={VECTOR}&{q}")  # not last
    assert not signature.verify([KEY], f"{q}&sig={VECTOR}&w=5")  # not last
    assert not signature.verify([KEY], f"{q}&sig={VECTOR}&sig={VECTOR}")  # twice
    assert not signature.verify([KEY], f"{q}&sig={VECTOR[:-1]}")  # malformed
    assert not signature.verify([KEY], f"{q}&sig={VECTOR}0")
    assert not signature.verify([KEY], q)  # missing


def test_sig_smuggled_in_a_value_does_not_count():
    signed = signature.sign(KEY, "url=http%3A%2F%2Fa.com%2Fx.jpg%3Fsig%3D1&w=1")
    assert signature.verify([KEY], signed)
    # A query whose only sig is inside the url value is unsigned.
    smuggled = f"w=1&url=http%3A%2F%2Fa.com%2Fx.jpg&sig%3D{VECTOR}"
    assert not signature.verify([KEY], smuggled)


def test_key_rotation():
    signed = signature.sign("new", "x=1")
    assert signature.verify(["old", "new"], signed)
    assert not signature.verify(["old"], signed)


def test_cli_prints_pilbox_lines():
    out = subprocess.run([sys.executable, "-m", "imgproxy.cli.sign", f"--key={KEY}", "x=1&y=2&z=3"],
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [
        "Query String: x=1&y=2&z=3",
        f"Signature: {VECTOR}",
        f"Signed Query String: x=1&y=2&z=3&sig={VECTOR}",
    ]


def test_cli_without_key_is_a_usage_error():
    r = subprocess.run([sys.executable, "-m", "imgproxy.cli.sign", "x=1"], capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr
