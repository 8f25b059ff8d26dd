"""Golden regression: features of the tiny seeded backbones and a tiny trained decoder's outputs equal the committed
values in tests/golden/*.json (within float noise). Regenerate deliberately with ``python -m tests.golden --update``
and review the diff."""
import pytest

from tests.golden import COMPUTE, check


@pytest.mark.regression
@pytest.mark.parametrize("name", list(COMPUTE))
def test_matches_committed_values(name):
    diffs = check(name)
    assert not diffs, f"{len(diffs)} golden values changed (first: {diffs[:5]}); if intended, run " \
                      "`python -m tests.golden --update` and commit the reviewed diff"
