"""A small HTTP client of the API (requests); every failure becomes a CliError."""

from __future__ import annotations

import datetime
import json
from typing import Any
from urllib.parse import quote

import requests

from service import __version__
from service.cli.errors import CliError
from service.cli.exit_codes import ExitCode
from service.retry import Policy

#: Statuses worth another try for a request that changes nothing (GET).
_RETRY_STATUSES = frozenset({502, 503, 504})


class _Busy(Exception):
    """A 502, 503 or 504 answer: worth another try of a GET."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _retry_after(error: BaseException) -> float | None:
    """The wait a busy answer asks for (Retry-After, in seconds), if it asks for one."""
    if not isinstance(error, _Busy):
        return None
    try:
        return float(error.response.headers.get("Retry-After", ""))
    except ValueError:
        return None


#: A GET (it changes nothing) is tried 3 times on a connection error, a timeout or a busy
#: answer: 0.5 s, then 1 s apart, or as long as Retry-After asks (10 s at most).
GET_RETRY = Policy(
    "GET request",
    base_delay=0.5,
    max_delay=10.0,
    attempts=3,
    retry_on=(requests.ConnectionError, requests.Timeout, _Busy),
    hint=_retry_after,
)


def _plain(value: Any) -> Any:
    """JSON for what YAML reads but JSON lacks (dates)."""
    if isinstance(value, datetime.date | datetime.datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON: {value!r}")


class ApiClient:
    """Calls the API at ``base_url``, with ``Authorization: Bearer <token>`` where given.

    Args:
        base_url: The service, e.g. ``http://finetune.internal:8080``.
        token: Bearer token (``FINETUNE_TOKEN``); None sends no Authorization header.
        timeout: Seconds per HTTP request.
        get_retry: How a GET is retried; other methods are tried once.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 30.0,
        get_retry: Policy = GET_RETRY,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.get_retry = get_retry
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"finetune-cli/{__version__}"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    # endpoints -------------------------------------------------------------------------
    def submit(
        self, spec: dict[str, Any], idempotency_key: str | None = None, dry_run_first: bool = False
    ) -> dict[str, Any]:
        """POST /v1/jobs (``?validate=true`` with ``dry_run_first``)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        params = {"validate": "true"} if dry_run_first else None
        return self._call("POST", "/v1/jobs", body=spec, headers=headers, params=params)

    def validate(self, spec: dict[str, Any]) -> dict[str, Any]:
        """POST /v1/jobs/validate (the dry run)."""
        return self._call("POST", "/v1/jobs/validate", body=spec)

    def job(self, job_id: str) -> dict[str, Any]:
        """GET /v1/jobs/{id}."""
        return self._call("GET", f"/v1/jobs/{_path(job_id)}")

    def cancel(self, job_id: str) -> dict[str, Any]:
        """POST /v1/jobs/{id}/cancel."""
        return self._call("POST", f"/v1/jobs/{_path(job_id)}/cancel")

    def events(self, job_id: str, after: int = 0) -> list[dict[str, Any]]:
        """GET /v1/jobs/{id}/events?after=."""
        body = self._call("GET", f"/v1/jobs/{_path(job_id)}/events", params={"after": after})
        events: list[dict[str, Any]] = body.get("events", [])
        return events

    def jobs(self, **params: Any) -> dict[str, Any]:
        """GET /v1/jobs with ``status``, ``label``, ``limit``, ``cursor``."""
        query = {name: value for name, value in params.items() if value is not None}
        return self._call("GET", "/v1/jobs", params=query)

    def alias(self, uri: str) -> dict[str, Any]:
        """GET /v1/aliases?uri=."""
        return self._call("GET", "/v1/aliases", params={"uri": uri})

    def rollback_alias(self, uri: str, version: int | None = None) -> dict[str, Any]:
        """POST /v1/aliases/rollback."""
        body: dict[str, Any] = {"uri": uri}
        if version is not None:
            body["version"] = version
        return self._call("POST", "/v1/aliases/rollback", body=body)

    # plumbing --------------------------------------------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        url = self.base_url + path
        data = None
        send_headers = dict(headers or {})
        if body is not None:
            try:
                data = json.dumps(body, default=_plain).encode()
            except TypeError as exc:
                raise CliError(f"The spec holds a value that is not JSON: {exc}.") from exc
            send_headers["Content-Type"] = "application/json"

        def send() -> requests.Response:
            response = self.session.request(
                method, url, data=data, params=params, headers=send_headers, timeout=self.timeout
            )
            if method == "GET" and response.status_code in _RETRY_STATUSES:
                raise _Busy(response)
            return response

        try:
            response = self.get_retry.call(send) if method == "GET" else send()
        except _Busy as busy:
            response = busy.response
        except requests.ConnectionError as exc:
            raise CliError(
                f"Cannot reach the service at {self.base_url} ({_reason(exc)}). "
                "Check FINETUNE_URL or --url."
            ) from exc
        except requests.Timeout as exc:
            raise CliError(
                f"The service at {self.base_url} did not answer within {self.timeout:g} s.",
                ExitCode.SERVICE_ERROR,
            ) from exc
        except requests.RequestException as exc:
            raise CliError(f"Request to {url} failed: {exc}.") from exc
        return _answer(response)


def _path(job_id: str) -> str:
    return quote(job_id, safe="")


def _reason(exc: requests.ConnectionError) -> str:
    text = str(exc)
    for known in ("Connection refused", "Name or service not known", "No route to host"):
        if known in text:
            return known.lower()
    return "connection failed"


def _answer(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.ok:
        if not isinstance(body, dict):
            raise CliError(
                f"The service answered {response.status_code} without a JSON object; "
                "is FINETUNE_URL the fine-tuning service?",
                ExitCode.SERVICE_ERROR,
            )
        return body
    error = body if isinstance(body, dict) else None
    message = (error or {}).get("message") or response.reason or "error"
    text = f"HTTP {response.status_code}: {message}"
    details = format_field_errors((error or {}).get("errors"))
    if details:
        text += "\n" + "\n".join(f"  {line}" for line in details)
    if response.status_code == 401:
        text += "\n  Set FINETUNE_TOKEN to a token this service accepts."
    code = ExitCode.SERVICE_ERROR if response.status_code >= 500 else ExitCode.CLIENT_ERROR
    raise CliError(text, code, error)


def format_field_errors(errors: Any, prefix: str = "") -> list[str]:
    """``{"json": {"training": {"epochs": ["..."]}}}`` as ``training.epochs: ...`` lines."""
    if isinstance(errors, dict):
        lines: list[str] = []
        for key, value in errors.items():
            name = prefix if key in ("json", "query") and not prefix else _join(prefix, str(key))
            lines.extend(format_field_errors(value, name))
        return lines
    if isinstance(errors, list):
        if all(isinstance(item, str) for item in errors):
            return [f"{prefix or '(body)'}: {' '.join(errors)}"]
        lines = []
        for item in errors:
            lines.extend(format_field_errors(item, prefix))
        return lines
    if errors is None:
        return []
    return [f"{prefix or '(body)'}: {errors}"]


def _join(prefix: str, key: str) -> str:
    if key.isdigit():
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else key
