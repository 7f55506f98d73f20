from pathlib import Path

import pytest

from tests.helpers.site_base import writer


@pytest.fixture
def write(tmp_path: Path):
    return writer(tmp_path)
