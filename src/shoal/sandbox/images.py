"""The busybox image for sandbox nodes: built once from busybox-static, cached as a tarball."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile

from shoal.sandbox.procs import Result, SandboxError, run

CACHE_DIR = "/var/cache/shoal-sandbox"
BUSYBOX_BIN = "/bin/busybox"
IMAGE = "busybox:latest"

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
    "www-data:x:33:33:www-data:/var/www:/bin/false\n"
    "nobody:x:65534:65534:nobody:/home:/bin/false\n"
)
GROUP = "root:x:0:\ndaemon:x:1:\nwww-data:x:33:\nnogroup:x:65534:\n"


def docker_bin() -> str:
    """The engine's own CLI version (20.10) when present, else whatever docker is on PATH."""
    if os.path.exists("/usr/bin/docker"):
        return "/usr/bin/docker"
    found = shutil.which("docker")
    if found is None:
        raise SandboxError("no docker CLI found")
    return found


async def docker(
    host: str, *args: str, timeout: float = 120, check: bool = True
) -> Result:
    """Run the docker CLI against HOST (a DOCKER_HOST value)."""
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
           "DOCKER_HOST": host, "HOME": os.environ.get("HOME", "/root")}
    return await run(docker_bin(), *args, timeout=timeout, env=env, check=check)


def _build_rootfs_tar(dest: str) -> None:
    """A busybox rootfs tar: every applet symlinked, passwd/group, a sticky /tmp."""
    with tempfile.TemporaryDirectory(prefix="shoal-busybox-") as root:
        for d in ("bin", "etc", "tmp", "root", "var/www", "home"):
            os.makedirs(os.path.join(root, d), exist_ok=True)
        os.chmod(os.path.join(root, "tmp"), 0o1777)
        shutil.copy2(BUSYBOX_BIN, os.path.join(root, "bin/busybox"))
        applets = subprocess.run([BUSYBOX_BIN, "--list"], capture_output=True, text=True,
                                 check=True).stdout.split()
        for applet in applets:
            link = os.path.join(root, "bin", applet)
            if applet != "busybox" and not os.path.exists(link):
                os.symlink("busybox", link)
        with open(os.path.join(root, "etc/passwd"), "w") as f:
            f.write(PASSWD)
        with open(os.path.join(root, "etc/group"), "w") as f:
            f.write(GROUP)
        subprocess.run(["tar", "-C", root, "-cf", dest, "."], check=True)


def cache_path() -> str:
    return os.path.join(CACHE_DIR, "busybox.tar")


async def ensure_busybox(first_host: str) -> str:
    """Return the cached `docker save` tarball, creating it through FIRST_HOST if missing.

    When it has to be created, FIRST_HOST ends up with busybox:latest already.
    """
    path = cache_path()
    if await asyncio.to_thread(os.path.exists, path):
        return path
    await asyncio.to_thread(os.makedirs, CACHE_DIR, exist_ok=True)
    fd, rootfs = tempfile.mkstemp(prefix="rootfs-", suffix=".tar", dir=CACHE_DIR)
    os.close(fd)
    try:
        await asyncio.to_thread(_build_rootfs_tar, rootfs)
        await docker(first_host, "import", "-c", 'CMD ["sh"]', rootfs, IMAGE)
        tmp = f"{path}.{os.getpid()}.tmp"
        await docker(first_host, "save", "-o", tmp, IMAGE)
        os.replace(tmp, path)  # atomic: concurrent sandboxes never see half a tarball
    finally:
        await asyncio.to_thread(_unlink, rootfs)
    return path


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


async def load_busybox(host: str, tarball: str) -> None:
    await docker(host, "load", "-q", "-i", tarball)
