"""A TFX filesystem plugin for ``objstore://<local path>`` that behaves like an object store where it
matters to a push: "rename" is copy-then-delete (not atomic), directories are only prefixes, an
object appears whole when its writer closes it, and, with ``OBJSTORE_KILL_AFTER_HALF=<file name>``,
the process is SIGKILLed after writing half of the first file of that name straight into place (a
job killed mid-copy, on a medium where even one file can be seen half-written, as through a FUSE
mount). Importing this module registers it."""
import os
import shutil
import signal

from tfx.dsl.io import filesystem, filesystem_registry
from tfx.dsl.io.plugins.local import LocalFilesystem

SCHEME = "objstore://"


def local(path) -> str:
    path = path.decode() if isinstance(path, bytes) else path
    return path[len(SCHEME):] if path.startswith(SCHEME) else path


class _Killing:
    """A file that kills the process after half of what is written to it."""

    def __init__(self, f):
        self.f = f

    def write(self, data):
        self.f.write(data[:len(data) // 2])
        self.f.flush()
        os.fsync(self.f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


class _Object:
    """Written to a temporary name, in place at close: objects appear whole."""

    def __init__(self, path, mode):
        self.path, self.tmp = path, f"{path}.{os.getpid()}.{id(self)}.uploading"
        self.f = open(self.tmp, mode)

    def write(self, data):
        self.f.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()
        os.replace(self.tmp, self.path)

    def close(self):
        self.__exit__()


class ObjectStoreFilesystem(filesystem.Filesystem):
    SUPPORTED_SCHEMES = [SCHEME]

    @staticmethod
    def open(name, mode="r"):
        if "w" in mode:
            os.makedirs(os.path.dirname(local(name)), exist_ok=True)  # prefixes, not directories
            if os.path.basename(local(name)) == os.environ.get("OBJSTORE_KILL_AFTER_HALF"):
                return _Killing(open(local(name), mode))
            return _Object(local(name), mode)
        return LocalFilesystem.open(local(name), mode)

    @staticmethod
    def copy(src, dst, overwrite=False):
        with ObjectStoreFilesystem.open(src, "rb") as f:
            data = f.read()
        with ObjectStoreFilesystem.open(dst, "wb") as f:
            f.write(data)

    @staticmethod
    def rename(src, dst, overwrite=False):
        """Copy-then-delete, file by file, as gsutil/gfile do on object stores."""
        if os.path.isfile(local(src)):
            ObjectStoreFilesystem.copy(src, dst)
            os.remove(local(src))
            return
        for dirpath, _, names in os.walk(local(src)):
            for n in names:
                s = os.path.join(dirpath, n)
                ObjectStoreFilesystem.copy(s, os.path.join(local(dst),
                                                           os.path.relpath(s, local(src))))
        shutil.rmtree(local(src))

    @staticmethod
    def walk(top, topdown=True, onerror=None):
        for dirpath, dirs, names in os.walk(local(top), topdown=topdown, onerror=onerror):
            yield SCHEME + dirpath, dirs, names

    @staticmethod
    def glob(pattern):
        return [SCHEME + p for p in LocalFilesystem.glob(local(pattern))]


    @staticmethod
    def remove(path):
        """An object deleted; a prefix with no object left under it is gone with it."""
        os.remove(local(path))
        parent = os.path.dirname(local(path))
        if not os.listdir(parent):
            os.rmdir(parent)


for _name in ("exists", "isdir", "listdir", "makedirs", "mkdir", "rmtree", "stat"):
    setattr(ObjectStoreFilesystem, _name,
            staticmethod(lambda path, _f=getattr(LocalFilesystem, _name): _f(local(path))))

filesystem_registry.DEFAULT_FILESYSTEM_REGISTRY.register(ObjectStoreFilesystem, priority=0)
