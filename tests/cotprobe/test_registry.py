import pytest

from cotprobe.registry import Registry, UnknownPluginError


class Plugin:
    version = 3


def test_register_get_and_version():
    reg = Registry("widget")
    reg.register("plain", Plugin)
    reg.register("lazy", target="cotprobe.registry:Registry")
    assert reg.get("plain") is Plugin and reg.version("plain") == 3
    assert reg.get("lazy") is Registry
    assert reg.names() == ["lazy", "plain"] and "plain" in reg


def test_unknown_name_suggests_the_closest():
    reg = Registry("judge")
    reg.register("rule", Plugin)
    with pytest.raises(
        UnknownPluginError, match=r"unknown judge 'rules'\. Did you mean 'rule'\? Known: rule"
    ):
        reg.get("rules")


def test_double_registration_is_an_error():
    reg = Registry("judge")
    reg.register("rule", Plugin)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("rule", Registry)
