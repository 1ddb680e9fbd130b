"""Migration cases are named for how the data moves; flows persisted under old names resume."""

import pytest

from volmigrate.flows import cases
from volmigrate.flows import constants as c


def _atoms(flow) -> list[str]:
    return sorted(node.name for node, _ in flow.iter_nodes())


@pytest.mark.parametrize("old, new", sorted(c.OLD_CASE_NAMES.items()))
def test_a_flow_persisted_under_an_old_case_name_is_rebuilt_as_the_new_case(old, new):
    # TaskFlow rebuilds a persisted flow by calling the factory with the
    # arguments it recorded, which name the case as it was called then.
    assert _atoms(cases.get_flow(old)) == _atoms(cases.get_flow(new))
    assert cases.get_flow(old).name == cases.get_flow(new).name


def test_no_case_is_named_for_a_tool():
    assert set(cases.CASES) == {"host-copy-paths", "host-copy-file-io", "driver-assisted"}


def test_an_unknown_case_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="unknown migration case 'nope' .*host-copy-paths"):
        cases.get_flow("nope")
