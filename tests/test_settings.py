"""The settings tables: read once from the environment, checked at start-up, and documented
in the README from the same rows."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from service import settings
from service.__main__ import markdown_tables
from service.cli.settings import CliSettings
from service.config import Config
from service.settings import SettingError

REPO = Path(__file__).resolve().parents[1]
TABLES: tuple[type[Any], ...] = (Config, CliSettings)

#: The modules that may touch os.environ, and why; none of them reads a setting of ours.
ENVIRONMENT_USERS = {
    "service/settings.py": "the one reader of the settings tables",
    "service/storage/client.py": "boto3's endpoint variables choose the addressing style",
    "service/metrics/multiprocess.py": "PROMETHEUS_MULTIPROC_DIR is set for prometheus_client",
    "service/metrics/api.py": "PROMETHEUS_MULTIPROC_DIR is prometheus_client's variable",
    "service/__main__.py": "the worker's environment leaves out the API's metrics directory",
    "service/security/redaction.py": "the values of secret variables, to redact them",
    "service/worker/child_runner.py": "the trainer child's environment: an allow-list of this one",
    "service/trainer/child.py": "TF_CPP_MIN_LOG_LEVEL for TensorFlow's own logging",
}


def _rows() -> list[settings.Setting]:
    return [row for table in TABLES for _, row in settings.rows(table)]


def _readme_block(name: str) -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(rf"<!-- settings:{name}:[^\n]*-->\n(.*?)<!-- settings:end -->", text, re.S)
    assert match, f"README.md has no generated settings:{name} table"
    return match.group(1)


@pytest.mark.parametrize("name", ["service", "cli"])
def test_the_readme_tables_are_the_generated_ones(name: str) -> None:
    # Regenerate with: python -m service settings --markdown [--table cli]
    assert _readme_block(name) == markdown_tables()[name]


def test_every_setting_is_a_row_with_one_variable_each() -> None:
    for table in TABLES:
        assert [f for f in table.__dataclass_fields__] == [n for n, _ in settings.rows(table)]
    names = [row.env for row in _rows()]
    assert len(names) == len(set(names))
    assert all(name.startswith("FINETUNE_") for name in names)


def test_unset_and_empty_variables_keep_the_defaults() -> None:
    assert Config.from_env({}) == Config()
    empty = {row.env: "" for _, row in settings.rows(Config) if not row.prefix}
    assert Config.from_env(empty) == Config()
    assert CliSettings.from_env({}) == CliSettings()


def test_values_are_parsed_into_their_types() -> None:
    config = Config.from_env(
        {
            "FINETUNE_STATE_URI": "s3://state/prefix",
            "FINETUNE_LEASE_SECONDS": "3",
            "FINETUNE_MAX_ARCHIVE_FILES": "12",
            "FINETUNE_WARM_TRAINER": "0",
            "FINETUNE_WEBHOOK_ALLOW_PRIVATE": "1",
            "FINETUNE_AUTH_FILE": "/etc/finetune/auth.json",
            "FINETUNE_WORKER_METRICS_PORT": "9100",
            "FINETUNE_LOG_LEVEL": "debug",
            "FINETUNE_LOG_FORMAT": "JSON",
            "FINETUNE_DATA_CACHE_MB": "1.5",
            "FINETUNE_FLASK_DEBUG": "false",
            "FINETUNE_FLASK_SESSION__NAME": "kept as text",
        }
    )
    assert config.lease_seconds == 3.0 and config.max_archive_files == 12
    assert config.warm_trainer is False and config.webhook_allow_private is True
    assert config.auth_file == Path("/etc/finetune/auth.json")
    assert config.worker_metrics_port == 9100
    assert (config.log_level, config.log_format) == ("DEBUG", "json")
    assert config.data_cache_mb == 1.5
    assert config.flask == {"DEBUG": False, "SESSION__NAME": "kept as text"}


def test_local_storage_is_allowed_by_default_only_where_the_state_is_local() -> None:
    assert Config.from_env({"FINETUNE_STATE_URI": "file:///srv/state"}).allow_local_storage
    remote = {"FINETUNE_STATE_URI": "s3://state/prefix"}
    assert not Config.from_env(remote).allow_local_storage
    assert Config.from_env({**remote, "FINETUNE_ALLOW_LOCAL_STORAGE": "1"}).allow_local_storage


@pytest.mark.parametrize(
    ("variable", "value", "form"),
    [
        ("FINETUNE_LEASE_SECONDS", "soon", "a number of seconds greater than 0"),
        ("FINETUNE_POLL_SECONDS", "0", "a number of seconds greater than 0"),
        ("FINETUNE_SHUTDOWN_GRACE_SECONDS", "-1", "a number of seconds at least 0"),
        ("FINETUNE_HEARTBEAT_SECONDS", "nan", "a number of seconds greater than 0"),
        ("FINETUNE_MAX_BODY_BYTES", "1e6", "a whole number of bytes at least 1"),
        ("FINETUNE_WORKER_METRICS_PORT", "70000", "a whole number from 1 to 65535"),
        ("FINETUNE_WARM_TRAINER", "false", "1 (on) or 0 (off)"),
        ("FINETUNE_WEBHOOK_ALLOW_PRIVATE", "yes", "1 (on) or 0 (off)"),
        ("FINETUNE_LOG_FORMAT", "xml", "one of text, json"),
        ("FINETUNE_LOG_LEVEL", "loud", "one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("FINETUNE_S3_ADDRESSING_STYLE", "sideways", "one of auto, path, virtual"),
        ("FINETUNE_DATA_CACHE_MB", "lots", "a number of megabytes at least 0"),
    ],
)
def test_an_invalid_value_names_the_variable_and_the_accepted_form(
    variable: str, value: str, form: str
) -> None:
    with pytest.raises(SettingError) as caught:
        Config.from_env({variable: value})
    assert str(caught.value) == f"{variable} must be {form}. Received: {value!r}"


def test_a_secret_is_neither_shown_in_errors_nor_in_the_repr() -> None:
    config = Config.from_env({"FINETUNE_WEBHOOK_SECRET": "hook-secret-value"})
    assert config.webhook_secret == "hook-secret-value"
    assert "hook-secret-value" not in repr(config)
    cli = CliSettings.from_env({"FINETUNE_TOKEN": "ftk_token-value"})
    assert cli.token == "ftk_token-value" and "ftk_token-value" not in repr(cli)


def test_the_service_refuses_to_start_on_an_invalid_value() -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "FINETUNE_SWEEP_SECONDS": "often"}
    done = subprocess.run(
        [sys.executable, "-m", "service", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "error: FINETUNE_SWEEP_SECONDS must be a number of seconds greater than 0. "
        "Received: 'often'\n"
    )


def test_names_in_the_code_are_rows_of_a_table() -> None:
    prefixes = [row.env for row in _rows() if row.prefix]
    plain = {row.env for row in _rows() if not row.prefix}
    for source in sorted((REPO / "service").rglob("*.py")):
        for name in re.findall(r"FINETUNE_[A-Z0-9_]*[A-Z0-9]", source.read_text()):
            known = name in plain or any(name.startswith(p) or p == name + "_" for p in prefixes)
            assert known, f"{source.relative_to(REPO)} names {name}, which no table has"


def test_only_the_listed_modules_touch_the_environment() -> None:
    for source in sorted((REPO / "service").rglob("*.py")):
        relative = str(source.relative_to(REPO))
        tree = ast.parse(source.read_text())
        touches = any(
            isinstance(node, ast.Attribute)
            and node.attr in ("environ", "getenv", "environb")
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            for node in ast.walk(tree)
        )
        assert not touches or relative in ENVIRONMENT_USERS, (
            f"{relative} touches os.environ: read settings through service/settings.py"
        )
