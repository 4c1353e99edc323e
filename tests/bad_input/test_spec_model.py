"""Entry point 1: ``UpgradeSpec`` itself refuses every case, naming the field and the fix."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from istio_upgrade.models import UpgradeSpec
from tests.bad_input.conftest import assert_explains
from tests.bad_input.corpus import BASE_SPEC, SPEC_CASES, Case, param

pytestmark = pytest.mark.bad_input


def test_the_base_of_every_case_is_a_valid_spec() -> None:
    spec = UpgradeSpec.model_validate(BASE_SPEC)
    assert spec.target_revision == "1-24-2" and not spec.dry_run


@pytest.mark.parametrize("case", [param(c) for c in SPEC_CASES])
def test_the_model_refuses(case: Case) -> None:
    with pytest.raises(ValidationError) as info:
        UpgradeSpec.model_validate(case.doc)
    assert_explains(str(info.value), case)
