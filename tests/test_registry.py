import pytest

from modelsteal._registry import Registry
from modelsteal.errors import InvalidParameterError, UnknownNameError
from modelsteal.registries import REGISTRIES


def test_register_get_and_duplicates():
    reg: Registry[int] = Registry("widget")
    reg.register("a", 1)

    @reg.register("b")
    def b():
        return 2

    assert reg.get("a") == 1 and reg.get("b") is b
    assert reg.names() == ["a", "b"] and "a" in reg and len(reg) == 2
    with pytest.raises(InvalidParameterError, match="already registered.*force=True"):
        reg.register("a", 3)
    reg.register("a", 3, force=True)
    assert reg.get("a") == 3


def test_unknown_name_lists_known_names():
    reg: Registry[int] = Registry("widget")
    reg.register("alpha", 1)
    reg.register("beta", 2)
    with pytest.raises(
        UnknownNameError, match=r"Unknown widget 'gamma'\. Known widgets: alpha, beta"
    ):
        reg.get("gamma")


@pytest.mark.parametrize("bad", ["", " x", 3])
def test_bad_names_rejected(bad):
    with pytest.raises(InvalidParameterError, match="non-empty string"):
        Registry("widget").register(bad, 1)


def test_every_registry_is_populated():
    for name in REGISTRIES:
        assert len(REGISTRIES.get(name)) > 0, name
