"""The root CLI: version and usage errors."""

from typer.testing import CliRunner

from startgate.cli import app


def test_version_prints_the_package_version() -> None:
    """`startgate --version` prints the version and exits 0."""
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("startgate ")
