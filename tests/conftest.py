import pytest

from aims_kit import runner


@pytest.fixture(scope="session")
def smoke_session(tmp_path_factory):
    """One papermill run of every notebook on the smoke profile, shared by the tests that read it."""
    out = tmp_path_factory.mktemp("smoke")
    return runner.run_all("smoke", out=out, log=lambda _: None)
