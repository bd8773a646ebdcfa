import torch

from cdrepro.methods import build_method


def _add_simclr(params):
    params["variants"]["simclr"] = {"method": "simclr"}


def test_simclr_is_cd_without_its_head(settings_of):
    """The same layers in the same order from the same seed, and the same loss: CD's no_head
    ablation (Table 6) and the simclr method are one model under two names."""
    simclr_settings = settings_of("simclr", edit=_add_simclr)
    no_head_settings = settings_of("no_head")
    torch.manual_seed(3)
    simclr = build_method(simclr_settings, 10)
    torch.manual_seed(3)
    no_head = build_method(no_head_settings, 10)
    assert simclr.state_dict().keys() == no_head.state_dict().keys()
    assert all(
        torch.equal(a, b) for a, b in zip(simclr.state_dict().values(), no_head.state_dict().values(), strict=True)
    )
    x1, x2 = torch.rand(6, 3, 32, 32), torch.rand(6, 3, 32, 32)
    terms_a = simclr.loss(simclr(x1), simclr(x2))
    terms_b = no_head.loss(no_head(x1), no_head(x2))
    assert terms_a.keys() == terms_b.keys() == {"instance", "loss"}
    assert torch.equal(terms_a["loss"], terms_b["loss"])
    assert simclr.stages() == no_head.stages()


def test_simclr_settings_name_their_method(settings_of):
    settings = settings_of("simclr", edit=_add_simclr)
    assert settings.method == "simclr" and settings.options == {}
    assert settings.to_dict()["method"] == "simclr"
    assert "method" not in settings_of("no_head").to_dict()  # CD's settings as before methods
