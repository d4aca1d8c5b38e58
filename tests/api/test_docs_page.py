"""``/docs``: Swagger UI served entirely by the service, rendered in a real headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tests.helpers.net import free_port
from tests.helpers.processes import gunicorn_api

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
#: Flags that work on this kind of machine (root, no display, no GPU, no outside network).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    # Any host but loopback fails to resolve: the page must need nothing from outside.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)


def test_docs_page_references_only_local_assets(client: FlaskClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets, html
    for asset in assets:
        assert asset.startswith("/docs/assets/"), f"{asset} is not served by the service"
        answer = client.get(asset)
        assert answer.status_code == 200 and len(answer.data) > 1000, asset
    assert '"validatorUrl": null' in html, "Swagger UI must not call the public validator"
    assert "https://" not in html and "http://" not in html
    assert client.get("/docs/assets/../../app.py").status_code == 404
    assert client.get("/docs/assets/LICENSE").status_code == 404, "only the allow-listed assets"


def _chromium() -> str:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    message = (
        "CHROMIUM IS NOT INSTALLED: the /docs browser test did not run. Install it with "
        "`apt-get install -y chromium` (.ci/run does so)."
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API under real gunicorn on local storage."""
    root = tmp_path_factory.mktemp("docs-api")
    env = {"FINETUNE_STATE_URI": f"file://{root / 'state'}", "FINETUNE_WORK_DIR": str(root)}
    port = free_port()
    api = gunicorn_api(port, env, root, workers=1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        api.stop()


def test_docs_page_renders_the_job_endpoints_in_a_browser(api_url: str, tmp_path: Path) -> None:
    chromium = _chromium()
    profile = tmp_path / "profile"
    profile.mkdir()
    base = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1280,1800"]
    dom = subprocess.run(
        [*base, "--virtual-time-budget=15000", "--dump-dom", f"{api_url}/docs"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert dom.returncode == 0, dom.stderr[-3000:]
    html = dom.stdout
    # Swagger UI built these from /openapi.json: they are not in the served HTML.
    assert 'class="swagger-ui"' in html, html[:2000]
    assert "Keras fine-tuning service" in html
    for path in (
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/cancel",
        "/v1/jobs/{job_id}/events",
    ):
        assert f'data-path="{path}"' in html, f"{path} is not on the rendered page"
    operations = re.findall(r'class="opblock opblock-(get|post)', html)
    assert operations.count("post") >= 2 and operations.count("get") >= 3, operations

    screenshot = tmp_path / "docs.png"
    shot = subprocess.run(
        [*base, "--virtual-time-budget=15000", f"--screenshot={screenshot}", f"{api_url}/docs"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert shot.returncode == 0, shot.stderr[-3000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 20_000, "a blank page would be a few kB"
