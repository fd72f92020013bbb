"""examples/production/nginx.conf passes nginx's own configuration test (`nginx -t`), with
a throw-away certificate in place of the real one, and sends each public name to the port it
is meant for."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from connectors.core.connections import free_port
from hub.runtime.settings import Settings

CONF = Path(__file__).resolve().parent.parent / "examples" / "production" / "nginx.conf"

needs_nginx = pytest.mark.skipif(
    shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists(),
    reason="nginx is not installed (.ci/run installs it)",
)


@needs_nginx
def test_nginx_accepts_the_example(tmp_path: Path) -> None:
    key, cert = tmp_path / "privkey.pem", tmp_path / "fullchain.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=ill.example.org", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    text = (
        CONF.read_text()
        .replace("/etc/ssl/rshub/fullchain.pem", str(cert))
        .replace("/etc/ssl/rshub/privkey.pem", str(key))
        .replace("/run/nginx-rshub.pid", str(tmp_path / "nginx.pid"))
        .replace("access_log /dev/stdout;", f"access_log {tmp_path / 'access.log'};")
    )
    if os.geteuid() != 0:  # `nginx -t` binds the ports: a user may not bind below 1024
        for port in ("80", "443"):
            text = re.sub(rf"listen (\[::\]:)?{port}\b", rf"listen \g<1>{free_port()}", text)
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    done = subprocess.run(
        [nginx, "-t", "-c", str(conf), "-p", str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


def test_the_upstreams_are_rshubs_default_ports() -> None:
    settings = Settings()
    text = CONF.read_text()
    upstreams = dict(re.findall(r"upstream (\w+) \{\s*server [\d.]+:(\d+);", text))
    assert upstreams == {
        "rshub_http": str(settings.http_port),
        "rshub_console": str(settings.console_port),
    }
