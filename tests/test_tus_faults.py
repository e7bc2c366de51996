"""Resumable uploads under faults, with tuspy: a connection cut in the middle of a chunk, a web
process SIGKILLed and restarted mid-upload, and chunks sent to a second process. Each time the
bytes that arrived are kept and tuspy re-sends at most one chunk."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
import asyncpg
import pytest
from yarl import URL

from reelwire.app import create_app
from reelwire.settings import Settings
from tests.conftest import Api, Backends
from tests.media import Media
from tests.test_realtime_processes import server_env
from tests.test_serve import Server
from tests.tusclient import TUS, CuttingProxy, resent, uploader

pytestmark = pytest.mark.usefixtures("reset")
MIB = 1024 * 1024


def original(home: Path, video_id: str) -> bytes:
    return (home / "media" / "videos" / video_id / "original").read_bytes()


async def test_a_chunk_cut_off_mid_body_keeps_what_arrived_and_tuspy_resumes(
    aiohttp_client: Any, settings: Settings, media: Media
) -> None:
    api = Api(await aiohttp_client(create_app(settings)))
    user = await api.register("tunnel")
    data = await asyncio.to_thread(media.video_1080.read_bytes)
    chunk = MIB
    # Cut inside the third chunk's body (the requests before it carry headers too).
    proxy = CuttingProxy((api.client.host, api.client.port), cut_after=2 * chunk + chunk // 2)
    async with proxy.running():

        def run() -> Any:
            with media.video_1080.open("rb") as stream:
                made = uploader(
                    f"{proxy.url}/api/uploads/",
                    user["token"],
                    stream,
                    chunk_size=chunk,
                    metadata={"filename": "v1080.mp4"},
                    retries=3,
                    retry_delay=1,
                )
                made.upload()
                return made

        made = await asyncio.to_thread(run)
    assert proxy.cut
    starts = [offset for offset, _ in made.sent]
    # The cut chunk's bytes that arrived were kept: the retry starts where they ended.
    assert any(offset % chunk for offset in starts), made.sent
    assert 0 < resent(made, len(data)) <= chunk, made.sent
    state = await api.client.head(URL(made.url).path, headers={**TUS, **api.auth(user["token"])})
    assert state.headers["Upload-Offset"] == str(len(data))
    video_id = state.headers["Reelwire-Video-Id"]
    assert await asyncio.to_thread(original, settings.home, video_id) == data


@pytest.mark.timeout(240)
async def test_a_second_process_and_a_killed_one_lose_nothing_tuspy_sent(
    tmp_path: Path, backends: Backends, media: Media, db: asyncpg.Connection
) -> None:
    home = tmp_path / "home"  # both processes: the part files are under the data dir
    env = server_env(backends)
    first, second = Server(home, env), Server(home, env)
    restarted: Server | None = None
    path = media.video_1080
    data = await asyncio.to_thread(path.read_bytes)
    try:
        first.wait_healthy()
        second.wait_healthy()
        async with aiohttp.ClientSession() as http:
            body = {"username": "mover", "email": "mover@example.com", "password": "Passw0rd!"}
            async with http.post(f"{first.url}/api/auth/register", json=body) as resp:
                token = (await resp.json())["tokens"]["access_token"]

        # The chunk at 8 MiB waits until its process was killed (then it fails, and tuspy
        # tries it again until the restarted process answers).
        reached, killed = threading.Event(), threading.Event()

        def gate(offset: int) -> None:
            if offset == 8 * MIB and not reached.is_set():
                reached.set()
                killed.wait(60)

        def send(server: Server, stop_at: int | None, url: str | None, **options: Any) -> Any:
            with path.open("rb") as stream:
                made = uploader(
                    f"{server.url}/api/uploads/",
                    token,
                    stream,
                    chunk_size=MIB,
                    url=url,
                    metadata={"filename": "v1080.mp4", "title": "moved around"},
                    **options,
                )
                made.gate = gate
                made.upload(stop_at=stop_at)
                return made

        made = await asyncio.to_thread(send, first, 3 * MIB, None)
        upload_path = URL(made.url).path
        made = await asyncio.to_thread(send, second, 6 * MIB, second.url + upload_path)
        assert made.sent == [(3 * MIB, MIB), (4 * MIB, MIB), (5 * MIB, MIB)]

        # The rest to the second process, which is SIGKILLed mid-upload and started again.
        rest = asyncio.create_task(
            asyncio.to_thread(
                send, second, None, second.url + upload_path, retries=60, retry_delay=0.5
            )
        )
        assert await asyncio.to_thread(reached.wait, 60), "the upload never reached 8 MiB"
        killed_at = await db.fetchval("SELECT upload_offset FROM resumable_uploads")
        second.stop()
        killed.set()
        restarted = Server(home, env, port=second.port)
        restarted.wait_healthy()
        made = await asyncio.wait_for(rest, 120)
        assert killed_at == 8 * MIB, killed_at  # killed with the upload two thirds done
        starts = [offset for offset, _ in made.sent]
        assert len(set(starts)) < len(starts), f"no chunk was retried: {made.sent}"
        assert resent(made, len(data) - 6 * MIB) <= MIB, made.sent
        async with (
            aiohttp.ClientSession() as http,
            http.head(
                first.url + upload_path,
                headers={**TUS, "Authorization": f"Bearer {token}"},
            ) as state,
        ):
            assert state.headers["Upload-Offset"] == str(len(data))
            video_id = state.headers["Reelwire-Video-Id"]
        assert await asyncio.to_thread(original, home, video_id) == data
        status = await db.fetchval("SELECT status FROM videos WHERE id = $1", UUID(video_id))
        assert status == "pending"  # queued: these servers run no transcoder
    finally:
        for server in (first, second, restarted):
            if server is not None:
                server.stop()
    for server in (first, restarted):
        assert server is not None and "Traceback" not in server.output(), server.output()
