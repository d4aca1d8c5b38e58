"""Reading a job spec from a YAML or JSON file (or ``-`` for standard input)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from service.cli.errors import CliError

MAX_SPEC_BYTES = 1024 * 1024


class _SpecLoader(yaml.SafeLoader):
    """``safe_load``, but ``1e-4`` is a number, as in JSON and YAML 1.2.

    PyYAML follows YAML 1.1, where a float needs a dot: ``learning_rate: 1e-4`` would be the
    string "1e-4", which the service refuses where a number is due.
    """


_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_spec(path: str) -> dict[str, Any]:
    """The spec in ``path``: JSON for ``.json``, YAML otherwise (YAML is a superset of JSON).

    YAML is read as ``safe_load`` reads it (plain data only, no tags that build Python
    objects), except that ``1e-4`` is a number.

    Raises:
        CliError: The file is missing, too large, not YAML/JSON, or not a mapping.
    """
    if path == "-":
        text = sys.stdin.read(MAX_SPEC_BYTES + 1)
        name = "standard input"
    else:
        file = Path(path)
        name = str(file)
        try:
            if file.stat().st_size > MAX_SPEC_BYTES:
                raise CliError(f"{name}: larger than {MAX_SPEC_BYTES} bytes; is it a job spec?")
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise CliError(f"{name}: no such file.") from exc
        except IsADirectoryError as exc:
            raise CliError(f"{name}: is a directory, not a spec file.") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"{name}: cannot read it: {exc}.") from exc
    if len(text) > MAX_SPEC_BYTES:
        raise CliError(f"{name}: larger than {MAX_SPEC_BYTES} bytes; is it a job spec?")
    try:
        spec = json.loads(text) if path.endswith(".json") else yaml.load(text, _SpecLoader)
    except json.JSONDecodeError as exc:
        raise CliError(f"{name}: not valid JSON: {exc}.") from exc
    except yaml.YAMLError as exc:
        raise CliError(f"{name}: not valid YAML: {exc}") from exc
    if not isinstance(spec, dict):
        raise CliError(
            f"{name}: a job spec is a mapping (base_model, dataset, output, ...), "
            f"not {type(spec).__name__}."
        )
    return spec
