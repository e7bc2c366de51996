"""tus clients for tests: tuspy (the real one, run in a thread: it blocks), a record of every
chunk it sent, raw requests for what a well-behaved client never sends, and a TCP proxy that
cuts one request off in the middle of its body."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from tusclient import client as tus_client
from tusclient.uploader import Uploader

TUS = {"Tus-Resumable": "1.0.0"}


class RecordingUploader(Uploader):  # type: ignore[misc]
    """tuspy's uploader, remembering (offset, length) of every PATCH it starts."""

    sent: list[tuple[int, int]]
    gate: Callable[[int], None] | None = None  # called with each PATCH's offset before it goes

    def _do_request(self) -> None:
        self.sent.append((self.offset, self.get_request_length()))
        if self.gate is not None:
            self.gate(self.offset)
        super()._do_request()


def uploader(
    endpoint: str,
    token: str,
    stream: BinaryIO,
    *,
    chunk_size: int,
    url: str | None = None,
    **options: Any,
) -> RecordingUploader:
    """A tuspy uploader reading `stream` (an existing upload when `url` is given: tuspy asks
    its offset with HEAD at once, so call this in a thread too)."""
    client = tus_client.TusClient(endpoint, headers={"Authorization": f"Bearer {token}"})
    made = RecordingUploader(
        file_stream=stream, client=client, url=url, chunk_size=chunk_size, **options
    )
    made.sent = []
    return made


async def upload(
    endpoint: str, token: str, path: Path, *, chunk_size: int, **options: Any
) -> RecordingUploader:
    """A whole upload with tuspy, in a thread; the uploader knows its URL and what it sent."""

    def run() -> RecordingUploader:
        with path.open("rb") as stream:
            made = uploader(endpoint, token, stream, chunk_size=chunk_size, **options)
            made.upload()
            return made

    return await asyncio.to_thread(run)


def metadata(**values: str) -> str:
    """An Upload-Metadata header."""
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def resent(made: RecordingUploader, size: int) -> int:
    """Bytes sent more than once (what the PATCHes carried beyond the file's size)."""
    return sum(length for _, length in made.sent) - size


@dataclass
class CuttingProxy:
    """Forwards TCP to `target`. The first request whose bytes pass `cut_after` (counted over
    everything clients sent; None: never) is cut there: nothing more is forwarded, and half a
    second later both sides are torn down, mid-body. `cut_now()` tears down every connection
    open at that moment, wherever its bytes are."""

    target: tuple[str, int]
    cut_after: int | None = None
    sent: int = 0
    cut: bool = False
    port: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    open: set[asyncio.StreamWriter] = field(default_factory=set)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[CuttingProxy]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            await server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut_now(self) -> int:
        """Abort every open connection (both sides); how many there were."""
        writers = list(self.open)
        for writer in writers:
            writer.transport.abort()
        self.cut = True
        return len(writers) // 2

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.open |= {writer, up_writer}
        back = asyncio.create_task(self._pipe(up_reader, writer, count=False))
        try:
            await self._pipe(reader, up_writer, count=True)
        except OSError:
            pass
        finally:
            back.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await back
            for side in (writer, up_writer):
                side.transport.abort()
            self.open -= {writer, up_writer}
            self.tasks.discard(task)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, count: bool
    ) -> None:
        while data := await reader.read(65536):
            limit = self.cut_after
            if count and limit is not None and not self.cut and self.sent + len(data) > limit:
                writer.write(data[: limit - self.sent])
                await writer.drain()
                self.sent, self.cut = limit, True
                # The link goes dead in the middle of the body: the server has been reading it
                # for a while when the connection is finally torn down.
                await asyncio.sleep(0.5)
                return  # the caller aborts both sides
            if count:
                self.sent += len(data)
            writer.write(data)
            await writer.drain()
