import pytest

from beexbench.config import load_config, suite_names
from beexbench.errors import BeexError, UnknownNameError


def test_builtin_suites_parse():
    assert {"smoke", "default"} <= set(suite_names())
    cfg = load_config("smoke")
    assert cfg.suite == "smoke" and cfg.limit == 400 and cfg.model["encoder"]["d_model"] == 32
    assert cfg.latency.batch_sizes == [1, 4]


def test_flags_override_the_suite():
    cfg = load_config("smoke", models=["fp32"], seeds=[1, 2], latency_batch_sizes=[1, 16], threads=1)
    assert cfg.models == ["fp32"] and cfg.seeds == [1, 2] and cfg.latency.batch_sizes == [1, 16] and cfg.threads == 1


def test_unknown_key_is_named(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('models = ["fp32"]\nmodles = ["x"]\n')
    with pytest.raises(BeexError, match="unknown config key 'modles'"):
        load_config(config_file=p)
    p.write_text("[latency]\nwarmpu = 3\n")
    with pytest.raises(BeexError, match="'latency.warmpu'"):
        load_config(config_file=p)


def test_wrong_type_is_named(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('seeds = "0"\n')
    with pytest.raises(BeexError, match="'seeds' has the wrong type"):
        load_config(config_file=p)
    p.write_text("[latency]\nmin_iters = 2.5\n")
    with pytest.raises(BeexError, match="'latency.min_iters'"):
        load_config(config_file=p)


def test_bad_toml_and_unknown_suite(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text("models = [\n")
    with pytest.raises(BeexError, match="not valid TOML"):
        load_config(config_file=p)
    with pytest.raises(UnknownNameError, match="did you mean smoke"):
        load_config("smoek")
