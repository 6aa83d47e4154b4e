import pytest

from gancore.families import Family, get_family, list_families, register_family
from gancore.families.base import ConfigError, Phase


def test_builtin_families_are_found_by_name():
    families = list_families()
    assert {"dcgan", "wgan-gp"} <= set(families)
    assert get_family("WGAN_GP") is get_family("wgan-gp")


def test_unknown_family_suggests_a_close_name():
    with pytest.raises(ConfigError, match="did you mean 'wgan-gp'"):
        get_family("wgangp")


def test_a_name_cannot_be_taken_twice():
    class Impostor(Family):
        name = "dcgan"

    with pytest.raises(ValueError, match="taken"):
        register_family(Impostor)


def test_phase_intervals():
    phase = Phase("G", "G", loss=lambda ctx: {}, every=5)
    assert [s for s in range(12) if phase.due(s)] == [4, 9]
