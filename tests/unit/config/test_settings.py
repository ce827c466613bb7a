"""Settings from ADAPTIVE_* variables: unknown names and bad values fail start-up, naming the variable."""

from __future__ import annotations

import base64
import os
from decimal import Decimal
from pathlib import Path

import pytest

from adaptive_plugin.config import Settings
from adaptive_plugin.errors import ConfigError

KEY = Settings.generate_master_key()


def settings(**env: str) -> Settings:
    return Settings.from_env({"ADAPTIVE_MASTER_KEYS": KEY, **env})


def test_defaults() -> None:
    s = settings()
    assert s.overhead_input_usd_per_mtok == Decimal("0.10")
    assert s.overhead_output_usd_per_mtok == Decimal("0.20")
    assert s.cache_hit_fee_discount == Decimal("0.5")
    assert s.cache_enabled is True and s.auto_model_name == "auto"
    assert s.database_url is None
    assert s.state_dir == Path.home() / ".local" / "state" / "adaptive-plugin"  # no HOME in the mapping
    assert s.resolved_database_url() == f"sqlite:///{(s.state_dir / 'adaptive.db').resolve()}"


def test_default_state_dir_does_not_depend_on_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from a subfolder, the CLI used to open a new, empty database in ./.adaptive."""
    env = {"ADAPTIVE_MASTER_KEYS": KEY, "HOME": str(tmp_path / "home")}
    first = Settings.from_env(env)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert Settings.from_env(env).resolved_database_url() == first.resolved_database_url()
    assert first.state_dir == tmp_path / "home" / ".local" / "state" / "adaptive-plugin"
    assert Settings.from_env({**env, "XDG_STATE_HOME": str(tmp_path / "xdg")}).state_dir == tmp_path / "xdg" / "adaptive-plugin"


def test_values_are_parsed_and_typed() -> None:
    s = settings(
        ADAPTIVE_STATE_DIR="/var/lib/adaptive",
        ADAPTIVE_CACHE_ENABLED="false",
        ADAPTIVE_CACHE_TTL_SECONDS="60",
        ADAPTIVE_OVERHEAD_INPUT_USD_PER_MTOK="0.15",
        ADAPTIVE_CACHE_SIMILARITY_THRESHOLD="0.93",
        ADAPTIVE_DATABASE_URL="postgresql://u:pw@db/adaptive",
    )
    assert s.state_dir == Path("/var/lib/adaptive")
    assert s.cache_enabled is False and s.cache_ttl_seconds == 60
    assert s.overhead_input_usd_per_mtok == Decimal("0.15")
    assert s.cache_similarity_threshold == 0.93
    assert s.resolved_database_url() == "postgresql://u:pw@db/adaptive"


def test_variable_names_are_case_insensitive() -> None:
    assert settings(adaptive_cache_ttl_seconds="7").cache_ttl_seconds == 7


def test_from_env_reads_os_environ_by_default() -> None:
    os.environ["ADAPTIVE_CACHE_TTL_SECONDS"] = "9"
    assert Settings.from_env().cache_ttl_seconds == 9


def test_an_explicit_mapping_ignores_os_environ() -> None:
    os.environ["ADAPTIVE_CACHE_TTL_SECONDS"] = "9"
    os.environ["ADAPTIVE_NOT_A_SETTING"] = "1"
    assert settings().cache_ttl_seconds == 86400


def test_unrelated_variables_are_ignored() -> None:
    assert settings(PATH="/bin", LITELLM_MASTER_KEY="sk-1", ADAPTIVE_CONFIG_CHECKSUM="abc").cache_enabled


def test_unknown_setting_names_it_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        settings(ADAPTIVE_CACHE_TTL="5")
    assert str(info.value) == "unknown setting ADAPTIVE_CACHE_TTL (did you mean ADAPTIVE_CACHE_TTL_SECONDS?)"


def test_unknown_setting_without_a_close_match() -> None:
    with pytest.raises(ConfigError, match="^unknown setting ADAPTIVE_ZZZ$"):
        settings(ADAPTIVE_ZZZ="1")


@pytest.mark.parametrize(
    "name, value",
    [
        ("ADAPTIVE_CACHE_TTL_SECONDS", "abc"),
        ("ADAPTIVE_CACHE_TTL_SECONDS", "0"),
        ("ADAPTIVE_CACHE_ENABLED", "maybe"),
        ("ADAPTIVE_CACHE_HIT_FEE_DISCOUNT", "1.5"),
        ("ADAPTIVE_OVERHEAD_OUTPUT_USD_PER_MTOK", "-1"),
        ("ADAPTIVE_DEFAULT_COST_BIAS", "2"),
        ("ADAPTIVE_CACHE_MAX_TEMPERATURE", "hot"),
        ("ADAPTIVE_AUTO_MODEL_NAME", ""),
        ("ADAPTIVE_LEDGER_BATCH_SIZE", "-3"),
    ],
)
def test_bad_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^invalid setting {name}: ") as info:
        settings(**{name: value})
    assert info.value.status_code == 500 and info.value.code == "config_invalid"


@pytest.mark.parametrize(
    "value, detail",
    [
        ("not base64!", "key #1 is not valid base64"),
        (base64.b64encode(b"x" * 16).decode(), "key #1 decodes to 16 bytes; AES-256 needs 32"),
        (f"{KEY},{base64.b64encode(b'y' * 31).decode()}", "key #2 decodes to 31 bytes"),
    ],
)
def test_bad_master_key_names_which_one_but_not_its_value(value: str, detail: str) -> None:
    with pytest.raises(ConfigError, match="invalid setting ADAPTIVE_MASTER_KEYS") as info:
        Settings.from_env({"ADAPTIVE_MASTER_KEYS": value})
    assert detail in str(info.value)
    assert KEY not in str(info.value)


def test_missing_master_key_explains_how_to_make_one() -> None:
    s = Settings.from_env({})
    with pytest.raises(ConfigError, match="missing setting ADAPTIVE_MASTER_KEYS") as info:
        s.master_key_bytes()
    assert "adaptive-plugin keys generate-master-key" in str(info.value)


def test_master_keys_newest_first() -> None:
    second = Settings.generate_master_key()
    s = settings(ADAPTIVE_MASTER_KEYS=f"{KEY}, {second}")
    assert s.master_key_bytes() == [base64.b64decode(KEY), base64.b64decode(second)]
    assert all(len(k) == 32 for k in s.master_key_bytes())
    assert Settings.generate_master_key() != Settings.generate_master_key()


def test_model_dir_and_model_name_exclude_each_other() -> None:
    with pytest.raises(ConfigError, match="set only one of embedding_model_dir and embedding_model_name"):
        settings(ADAPTIVE_EMBEDDING_MODEL_DIR="/models", ADAPTIVE_EMBEDDING_MODEL_NAME="BAAI/bge-small-en-v1.5")


def test_settings_are_frozen() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        settings().cache_enabled = False  # type: ignore[misc]


def test_redacted_hides_secrets() -> None:
    s = settings(ADAPTIVE_DATABASE_URL="postgresql://admin:hunter2@db/adaptive")
    view = s.redacted()
    assert set(view) == set(Settings.model_fields)
    assert view["master_keys"] == "***" and view["database_url"] == "***"
    assert view["cache_ttl_seconds"] == 86400
    assert view["overhead_input_usd_per_mtok"] == "0.10" and view["state_dir"] == str(s.state_dir)
    text = repr(view) + repr(s) + str(s)
    assert "hunter2" not in text and KEY not in text


def test_redacted_shows_unset_secrets_as_none() -> None:
    view = Settings.from_env({}).redacted()
    assert view["master_keys"] is None and view["database_url"] is None


def test_every_field_is_described_and_defaulted() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, name
        assert not field.is_required(), name


def test_redis_password_is_url_encoded_into_the_url_and_never_shown() -> None:
    from adaptive_plugin.config import Settings

    base = {"ADAPTIVE_MASTER_KEYS": Settings.generate_master_key()}
    s = Settings.from_env({**base, "ADAPTIVE_REDIS_URL": "redis://cache.internal:6380/2",
                           "ADAPTIVE_REDIS_PASSWORD": "p@ss:w/rd?#"})
    assert s.resolved_redis_url() == "redis://:p%40ss%3Aw%2Frd%3F%23@cache.internal:6380/2"
    assert s.redacted()["redis_password"] == "***" and "p@ss" not in str(s.redacted())
    inline = Settings.from_env({**base, "ADAPTIVE_REDIS_URL": "redis://:old@cache:6379/0", "ADAPTIVE_REDIS_PASSWORD": "new"})
    assert inline.resolved_redis_url() == "redis://:new@cache:6379/0"
    assert Settings.from_env(base).resolved_redis_url() is None


def test_a_redis_password_without_a_redis_url_is_a_startup_error() -> None:
    import pytest

    from adaptive_plugin.config import Settings
    from adaptive_plugin.errors import ConfigError

    with pytest.raises(ConfigError, match="redis_password is set but redis_url is not"):
        Settings.from_env({"ADAPTIVE_MASTER_KEYS": Settings.generate_master_key(), "ADAPTIVE_REDIS_PASSWORD": "x"})
