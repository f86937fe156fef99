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


def _sign_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imgproxy.cli.sign", *args], capture_output=True, text=True)


def test_cli_unknown_option_is_a_usage_error_not_a_query():
    r = _sign_cli("--bogus", f"--key={KEY}", "x=1")
    assert r.returncode == 2 and r.stdout == ""
    assert "--bogus" in r.stderr and "usage" in r.stderr


def test_cli_query_with_leading_question_mark_fails_on_stderr():
    r = _sign_cli(f"--key={KEY}", "?x=1")
    assert r.returncode == 2 and r.stdout == ""
    assert "leading '?'" in r.stderr


def test_cli_prints_nothing_when_any_query_is_invalid():
    r = _sign_cli(f"--key={KEY}", "x=1&y=2&z=3", "?x=1")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "'?x=1'" in r.stderr


def test_cli_separates_several_queries_and_takes_key_as_next_argument():
    r = _sign_cli("--key", KEY, "x=1&y=2&z=3", "a=b")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:3] == ["Query String: x=1&y=2&z=3", f"Signature: {VECTOR}",
                         f"Signed Query String: x=1&y=2&z=3&sig={VECTOR}"]
    assert lines[3] == "=" * 78 and lines[4] == "Query String: a=b" and len(lines) == 7


def test_cli_help_describes_invalid_queries():
    r = _sign_cli("--help")
    assert r.returncode == 0 and "--key" in r.stdout and "leading '?'" in r.stdout


def test_cli_key_may_come_between_queries():
    r = _sign_cli("a=b", f"--key={KEY}", "x=1&y=2&z=3")
    assert r.returncode == 0, r.stderr
    assert f"Signed Query String: x=1&y=2&z=3&sig={VECTOR}" in r.stdout.splitlines()


def test_cli_signs_a_path_url_as_the_server_checks_it():
    import contextlib
    import io

    from imgproxy.cli.sign import main as sign_main
    from imgproxy.signature import verify_path
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert sign_main([f"--key={KEY}", "/220x220/a.jpg?fmt=webp", "/64x64!/b.png"]) == 0
    signed = [line.split(": ", 1)[1] for line in out.getvalue().splitlines() if line.startswith("Signed Path")]
    assert signed[0].startswith("/220x220/a.jpg?fmt=webp&sig=") and signed[1].startswith("/64x64!/b.png?sig=")
    for url in signed:
        path, _, query = url.partition("?")
        assert verify_path([KEY], path, query)
        assert not verify_path(["other"], path, query)
    assert not verify_path([KEY], "/220x220/a.jpg", signed[0].partition("?")[2].replace("webp", "png"))


def test_cli_signs_job_bodies_and_status_paths(tmp_path):
    import contextlib
    import io

    from imgproxy.cli.sign import main as sign_main
    from imgproxy.signature import job_signature, verify_job
    body = b'{"operationType": "resize"}'
    (tmp_path / "job.json").write_bytes(body)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert sign_main(["--key=k", "--job", str(tmp_path / "job.json")]) == 0
        assert sign_main(["--key=k", "--job-path", "/jobs/" + "a" * 32]) == 0
    first, second = out.getvalue().split()
    assert first == job_signature("k", body) and verify_job("k", body, first)
    assert verify_job("k", "/jobs/" + "a" * 32, second) and not verify_job("k", body + b" ", first)
