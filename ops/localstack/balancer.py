"""The local load balancer of ``./ops/stack up --instances N``: nginx in front of N BFF processes.

Why nginx: it is what Debian ships, it runs as a normal user from a config we write (no system
service, nothing under /etc touched), and it does what the desktop's traffic needs from a
balancer: HTTP/1.1 keep-alive to the instances, SSE streams passed through unbuffered and held
open, and spreading long-lived streams by ``least_conn`` (round robin would pile streams up on
whichever instance the counter happened to favour).

Everything nginx writes (pid, temp files, logs) lives under the stack's state folder, and it runs
in the foreground (``daemon off``) as a child the stack records and stops like the others.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ops.localstack.deps import MissingDependency, apt_install
from ops.localstack.procs import LOGS, STATE, say

SSE_PREFIX = "/bff/backoffice/v1/sse/"
PACKAGES = ("nginx-light", "nginx")  # Debian 13 has no nginx-light any more: then plain nginx
SEARCH_PATH = ("/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin")  # not on a user's PATH
SSE_READ_TIMEOUT_S = 3600  # a stream stays silent at most one keep-alive period; be generous
DEFAULT_KEEPALIVE_S = 5.0  # BFF_KEEPALIVE_TIMEOUT_S's default (edge/settings.py)
DEFAULT_MAX_BODY = 262_144  # BFF_MAX_BODY_BYTES's default


def find_nginx() -> str | None:
    """The nginx binary: on PATH, else where Debian puts it (``/usr/sbin`` is often not on a
    normal user's PATH)."""
    found = shutil.which("nginx")
    if found:
        return found
    for folder in SEARCH_PATH:
        candidate = Path(folder) / "nginx"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def ensure_nginx() -> str:
    """The nginx binary, installed with apt-get when missing and running as root; otherwise
    ``MissingDependency`` with the command to run (the stack says it and stops)."""
    found = find_nginx()
    if found:
        return found
    if os.geteuid() != 0:
        raise MissingDependency(
            f"--instances needs nginx as the load balancer: run: sudo apt-get install -y"
            f" {PACKAGES[0]} (or {PACKAGES[1]})"
        )
    for package in PACKAGES:
        try:
            apt_install(package)
        except subprocess.CalledProcessError:
            say(f"apt-get could not install {package}")  # not on this release: try the next
            continue
        found = find_nginx()
        if found:
            return found
    raise MissingDependency(f"could not install nginx ({' or '.join(PACKAGES)}) with apt-get")


@dataclass(frozen=True)
class BalancerConfig:
    """What the nginx config says: where it listens, the instances behind it, and the limits
    that must agree with the BFF's own (body size, keep-alive)."""

    listen_host: str
    listen_port: int
    upstream_ports: tuple[int, ...]
    max_body_bytes: int = DEFAULT_MAX_BODY
    bff_keepalive_s: float = DEFAULT_KEEPALIVE_S
    run_as_root: bool = False

    @property
    def upstream_idle_ms(self) -> int:
        """How long nginx keeps an idle connection to an instance: shorter than the BFF's own
        keep-alive timeout, so nginx never reuses a connection the BFF is closing (that race
        turns a POST into a 502, as nginx does not retry non-idempotent requests)."""
        return max(500, int(self.bff_keepalive_s * 1000) - 1000)

    @property
    def client_max_body(self) -> int:
        """Bodies a little over the BFF's limit still reach it, so the desktop gets the BFF's
        own 413 envelope; far bigger ones stop here (with the same envelope shape)."""
        return self.max_body_bytes + 65_536


def error_json(code: str, message: str, retryable: bool) -> str:
    """The contract's error envelope as an nginx ``return`` string (``$request_id`` is nginx's
    own id; the header ``X-Request-Id`` carries it too)."""
    flag = "true" if retryable else "false"
    return (
        f'{{"error":{{"code":"{code}","message":"{message}",'
        f'"requestId":"$request_id","retryable":{flag}}}}}'
    )


def render(config: BalancerConfig, prefix: Path) -> str:
    """The whole nginx.conf for ``config``, with every path under ``prefix`` (the state dir)."""
    servers = "\n".join(
        f"        server 127.0.0.1:{port} max_fails=1 fail_timeout=2s;"
        for port in config.upstream_ports
    )
    temp = {kind: prefix / f"{kind}_temp" for kind in ("client_body", "proxy", "fastcgi")}
    temp |= {kind: prefix / f"{kind}_temp" for kind in ("uwsgi", "scgi")}
    # As root nginx would hand its workers to "nobody", who may not enter the state folder
    # (e.g. under /root); the BFF processes it fronts run as root too.
    user = "user root;\n" if config.run_as_root else ""
    unavailable = error_json("SERVICE_UNAVAILABLE", "no BFF instance answered", True)
    too_large = error_json("PAYLOAD_TOO_LARGE", "request body too large", False)
    return f"""# Written by ./ops/stack up --instances {len(config.upstream_ports)} (on every up).
{user}worker_processes 1;
pid {prefix / "nginx.pid"};
error_log stderr warn;

events {{
    worker_connections 4096;
}}

http {{
    client_body_temp_path {temp["client_body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    log_format balancer '$remote_addr "$request" $status $body_bytes_sent '
                        'upstream=$upstream_addr rt=$request_time id=$request_id';
    access_log {LOGS / "balancer-access.log"} balancer;
    server_tokens off;
    client_max_body_size {config.client_max_body};
    client_body_buffer_size {config.client_max_body};

    upstream bff {{
        least_conn;
{servers}
        keepalive 64;
        keepalive_timeout {config.upstream_idle_ms}ms;
    }}

    server {{
        listen {config.listen_host}:{config.listen_port};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_connect_timeout 2s;
        # which instance answered: for people reading responses and for the stack's tests
        add_header X-Bff-Upstream $upstream_addr always;
        error_page 502 503 504 = @unavailable;
        error_page 413 = @too_large;

        location {SSE_PREFIX} {{
            proxy_pass http://bff;
            proxy_buffering off;
            proxy_cache off;
            proxy_read_timeout {SSE_READ_TIMEOUT_S}s;
            proxy_send_timeout {SSE_READ_TIMEOUT_S}s;
        }}

        location / {{
            proxy_pass http://bff;
            proxy_read_timeout 60s;
        }}

        location @unavailable {{
            default_type "application/json; charset=utf-8";
            add_header X-Request-Id $request_id always;
            add_header Retry-After 1 always;
            return 503 '{unavailable}';
        }}

        location @too_large {{
            default_type "application/json; charset=utf-8";
            add_header X-Request-Id $request_id always;
            return 413 '{too_large}';
        }}
    }}
}}
"""


def write_config(config: BalancerConfig, prefix: Path | None = None) -> Path:
    """Render the config into ``prefix`` (default: the state folder's ``balancer/``); return
    the config file's path."""
    prefix = prefix or STATE / "balancer"
    prefix.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(render(config, prefix))
    return conf


def argv(nginx: str, conf: Path) -> list[str]:
    """nginx in the foreground with everything under the config's folder; ``-e`` moves the
    error log nginx opens before it reads the config (/var/log/nginx: not writable by a user)."""
    prefix = conf.parent
    return [
        nginx,
        "-p",
        str(prefix),
        "-e",
        "stderr",
        "-c",
        str(conf),
        "-g",
        "daemon off;",
    ]


def check_argv(nginx: str, conf: Path) -> list[str]:
    """``nginx -t``: check the rendered config without starting anything."""
    return [*argv(nginx, conf)[:-2], "-t"]
