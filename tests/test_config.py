"""Configuration loading, precedence and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtrec.config import Config, load_config
from rtrec.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_default_toml_equals_embedded_defaults(rtrec_home: Path) -> None:
    from_file = load_config(ROOT / "configs" / "default.toml")
    assert from_file == load_config()
    assert from_file.to_dict() == {**Config(home=rtrec_home).to_dict()}


def test_precedence_flag_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text('[learner]\nbatch_size = 64\nlr = 0.2\n[serve]\ntoken = "file"\n')
    monkeypatch.setenv("RTREC_CONFIG", str(cfg_file))
    monkeypatch.setenv("RTREC_TOKEN", "env")
    cfg = load_config(overrides={"learner": {"batch_size": 8}})
    assert cfg.learner.batch_size == 8
    assert cfg.learner.lr == 0.2
    assert cfg.serve.token == "env"
    assert cfg.home == Path(str(tmp_path / "rtrec-home"))


def test_read_token_comes_from_the_environment_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTREC_TOKEN", "full")
    monkeypatch.setenv("RTREC_READ_TOKEN", "reader")
    cfg = load_config()
    assert (cfg.serve.token, cfg.serve.read_token) == ("full", "reader")
    monkeypatch.delenv("RTREC_TOKEN")
    with pytest.raises(ConfigError, match=r"serve\.read_token is set without serve\.token") as exc:
        load_config()
    assert "serve.token" in (exc.value.hint or "")


def test_home_config_file_is_read(rtrec_home: Path) -> None:
    rtrec_home.mkdir(parents=True)
    (rtrec_home / "config.toml").write_text("[features]\nbits = 12\n")
    assert load_config().features.bits == 12
    assert load_config().db_path == rtrec_home / "rtrec.duckdb"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[learner]\nbatchsize = 3\n", "unknown config key 'batchsize' in \\[learner\\]"),
        ("[nope]\n", "unknown config key 'nope'"),
        ("[learner]\nbatch_size = 'big'\n", "learner.batch_size must be an integer"),
        ("[features]\nbits = 40\n", "features.bits must be less than or equal to 32, got 40"),
        ("[learner]\nlr = true\n", "learner.lr must be a number, got True"),
        ("[learner]\nmlp_hidden = [32, 0]\n", "learner.mlp_hidden.1 must be greater than or equal to 1"),
        ("[serve]\nexploration = 'greedy'\n", "serve.exploration must be 'none', 'epsilon', 'softmax' or 'thompson'"),
        ("[labels]\npositive = { click = 'a lot' }\n", "labels.positive.click must be a number"),
        ("[serve]\nepsilon = 1.5\n", "serve.epsilon must be less than or equal to 1"),
        ("learner = 3\n", "config key learner must be a table"),
        ("[features]\ncrosses = [['user', 'zzz']]\n", "crosses names 'zzz'"),
        ("[labels]\npositive = { clik = 1.0 }\n", "unknown event type 'clik'"),
        ("[text]\nenabled = 'yes'\n", "text.enabled must be true or false"),
        ("[learner\n", "not valid TOML"),
        ("[serve]\nread_token = 'r'\n", "serve.read_token is set without serve.token: the write routes would be open"),
        ("[serve]\ntoken = 't'\nread_token = 't'\n", "serve.read_token equals serve.token"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, match: str) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(p)


def test_values_are_coerced_to_their_declared_types(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[learner]\nlr = 1\nmlp_hidden = [8, 4]\n[features]\ncrosses = [['user', 'item']]\n")
    cfg = load_config(p)
    assert cfg.learner.lr == 1.0 and isinstance(cfg.learner.lr, float)
    assert cfg.learner.mlp_hidden == (8, 4)
    assert cfg.features.crosses == (("user", "item"),)


def test_a_renamed_key_says_its_new_name(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[learner]\nwide_blend = 0.2\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert "wide_blend" in str(exc.value) and exc.value.hint == "renamed to learner.linear_blend"


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_config_is_frozen() -> None:
    cfg = load_config()
    with pytest.raises(AttributeError):
        cfg.learner.lr = 1.0  # type: ignore[misc]


def test_a_home_given_as_an_override_is_the_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RTREC_HOME", raising=False)
    cfg = load_config(overrides={"home": str(tmp_path / "h")})
    assert cfg.home == tmp_path / "h" and cfg.db_path == tmp_path / "h" / "rtrec.duckdb"
    assert load_config(home=tmp_path / "flag", overrides={"home": str(tmp_path / "h")}).home == tmp_path / "flag"
