"""Optional audio for loudspeakers: a WAV of the spoken script, made offline by espeak-ng when it is installed.

Terminals with their own TTS read the text; terminals that play audio files fetch the WAV
(``GET /api/v1/audio/<name>``, or ``audio_url`` in the MQTT command). Files are named by a hash of the text,
voice and speed, so one script is rendered once however many terminals play it, and a re-render after a crash
finds the file already there. Without espeak-ng nothing changes: text only.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import shutil
from pathlib import Path

from warnd.config import AudioSettings

log = logging.getLogger("warnd.audio")
NAME = re.compile(r"^[0-9a-f]{24}\.wav$")  # what GET /api/v1/audio/<name> accepts


class Speech:
    def __init__(self, settings: AudioSettings, directory: Path):
        self.settings = settings
        self.directory = directory
        self.executable = shutil.which(settings.command) if settings.enabled else None

    @property
    def available(self) -> bool:
        return self.executable is not None

    def voice(self, language: str) -> str:
        primary = language.split("-")[0].lower()
        return self.settings.voices.get(language) or self.settings.voices.get(primary) or primary

    def path(self, name: str) -> Path | None:
        """The file for a name from a URL, or None if the name is not one of ours or the file is missing."""
        if not NAME.match(name):
            return None
        path = self.directory / name
        return path if path.is_file() else None

    async def render(self, text: str, language: str) -> Path | None:
        """The WAV of ``text`` (rendered now if it is not there yet); None if no TTS or it failed."""
        if self.executable is None or not text.strip():
            return None
        voice = self.voice(language)
        digest = hashlib.sha256(f"{voice}|{self.settings.speed}|{text}".encode()).hexdigest()[:24]
        target = self.directory / f"{digest}.wav"
        if target.is_file():
            return target
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.part")
        process = await asyncio.create_subprocess_exec(
            self.executable,
            "-v",
            voice,
            "-s",
            str(self.settings.speed),
            "-w",
            str(partial),
            "--",  # the script is text, never options
            text,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, stderr = await asyncio.wait_for(process.communicate(), self.settings.timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            log.warning("TTS took longer than %ss; text only", self.settings.timeout)
            partial.unlink(missing_ok=True)
            return None
        if process.returncode != 0 or not partial.is_file() or partial.stat().st_size == 0:
            log.warning(
                "TTS failed (%s): %s; text only", process.returncode, stderr.decode(errors="replace")[:200]
            )
            partial.unlink(missing_ok=True)
            return None
        partial.replace(target)  # atomic: a reader never sees half a file
        return target
