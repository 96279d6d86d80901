"""An invalid policy fails the Worker build (the wasm32 release build worker-build runs), with a
message naming the file, the route or provider, and the field."""

import os
import subprocess

import pytest
from conftest import ROOT

CASES = [
    ("public-with-extras", 'route "r": field "scopes": a public route verifies no token'),
    ("ambiguous-same-shape", "are ambiguous"),
    ("unknown-provider-require", 'field "require"'),
    ("toml-syntax", "policy.toml"),
]


@pytest.mark.parametrize("case,expected", CASES)
def test_invalid_policy_fails_the_worker_build(built, case, expected):
    # `built` first: the real build is done, so this only reruns the policy build script.
    folder = ROOT / "tests" / "policies" / "invalid" / case
    assert folder.is_dir(), folder
    env = dict(os.environ, ATTESTGATE_POLICY_DIR=str(folder))
    result = subprocess.run(
        ["cargo", "build", "--release", "--lib", "--target", "wasm32-unknown-unknown"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=600,
    )
    output = result.stdout.decode(errors="replace")
    assert result.returncode != 0, "an invalid policy must fail the build"
    assert "policy error" in output and expected in output, output[-3000:]
    assert str(folder.relative_to(ROOT)) in output or case in output
