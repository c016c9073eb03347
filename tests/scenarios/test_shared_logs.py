"""Two sites behind one nginx, one error log (nginx's default): each site's verdict comes
from its own lines, whatever the other site's users are going through."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import httpx
import pytest

from badgateway.checks.model import Cause, Diagnosis
from badgateway.checks.runner import diagnose
from badgateway.checks.settings import LogSource, Settings, Site
from tests.lab.shared_nginx import SharedNginx, running_shared_nginx


def settings_for(ngx: SharedNginx, upstreams: dict[str, str], with_upstreams: bool) -> Settings:
    # The bot's names for the sites differ from nginx's server_name on purpose: lines are
    # told apart by what nginx writes (Host, upstream), not by a lucky name.
    sites = tuple(
        Site(
            name=f"{name}-site",
            url=ngx.url(name),
            upstreams=(address,) if with_upstreams else (),
            logs=(LogSource(str(ngx.error_log)),),
        )
        for name, address in upstreams.items()
    )
    return Settings(
        allow_networks=(ip_network("127.0.0.0/8"),),
        sites=sites,
        reload_attempts=2,
        reload_spacing_s=0.1,
        timeout_s=3,
        log_window_s=300,
    )


def users_get(url: str) -> int:
    return httpx.get(url, timeout=5).status_code


def log_findings(diagnosis: Diagnosis) -> dict[str, Any]:
    logs = next(s for s in diagnosis.steps if s.name == "logs")
    return {f.code: f for f in logs.findings}


@pytest.mark.parametrize("with_upstreams", [True, False], ids=["upstreams", "logs-only"])
async def test_each_site_is_judged_by_its_own_lines(
    tmp_path: Path, upstream: Callable[..., Any], with_upstreams: bool
) -> None:
    slow, down = upstream("slow", delay_s=4), upstream("refused")
    upstreams = {"slow": slow.address, "down": down.address}
    with running_shared_nginx(tmp_path, upstreams) as ngx:
        settings = settings_for(ngx, upstreams, with_upstreams)
        for _ in range(3):  # the other site's users, failing all along
            assert users_get(ngx.url("down")) == 502

        slow_verdict = await diagnose("slow-site", settings)
        assert slow_verdict.site == "slow-site"
        assert slow_verdict.verdict.cause is Cause.UPSTREAM_TIMEOUT, slow_verdict.verdict.summary
        assert down.address not in " ".join(slow_verdict.verdict.next_steps)
        others = log_findings(slow_verdict)["log_other_sites"]
        assert "down-site" in others.message and "upstream_refused" in others.message
        assert "log_upstream_refused" not in log_findings(slow_verdict)

        down_verdict = await diagnose("down-site", settings)
        assert down_verdict.verdict.cause is Cause.UPSTREAM_REFUSED, down_verdict.verdict.summary
        refused = log_findings(down_verdict)["log_upstream_refused"]
        # Ours and the users' lines, apart; the slow site's timeouts are not this site's.
        assert refused.data["own"] >= 2 and refused.data["users"] == 3
        assert "log_upstream_timeout" not in log_findings(down_verdict)
        assert "slow-site" in log_findings(down_verdict)["log_other_sites"].message


async def test_a_site_refused_by_its_own_proxy_is_blocked_not_healthy(
    tmp_path: Path, upstream: Callable[..., Any]
) -> None:
    app = upstream("ok")
    upstreams = {"private": app.address, "public": app.address}
    with running_shared_nginx(tmp_path, upstreams, deny=("private",)) as ngx:
        settings = settings_for(ngx, upstreams, with_upstreams=True)
        private = await diagnose("private-site", settings)
        assert private.verdict.cause is Cause.BLOCKED, private.verdict.summary
        assert "403" in private.verdict.summary and "nginx" in private.verdict.summary
        public = await diagnose("public-site", settings)
        assert public.verdict.cause is Cause.HEALTHY, public.verdict.summary
