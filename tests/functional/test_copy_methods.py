"""Each copy method against each kind of source and destination it claims.

Sources have holes at the start, in the middle and at the end, and a size
that is not a whole number of blocks; the copies must be byte-identical, no
more allocated than the source, report a rising position that ends at the
size, and resume from a checkpoint inside a hole or inside a data extent.
"""

import hashlib
import os
import subprocess
import threading

import pytest

from vmtest import HAS_LOOP, PATIENCE, MiB
from volmigrate.flows.datamover import DdCopy, FileCopy, KernelCopy, data_extents

BLOCK = MiB
SIZE = 16 * MiB + 512  # the last block is partial
EXTENTS = [(3 * MiB, 2 * MiB), (8 * MiB + 4096, 3 * MiB), (13 * MiB, 1 * MiB)]
# holes: [0, 3M) at the start, [5M, 8M+4K) and [11M+4K, 13M) in the middle, [14M, end)


def sha256(path: str, size: int = SIZE) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read(size)).hexdigest()


def make_source(tmp_path, extents=EXTENTS, size: int = SIZE, name: str = "source") -> str:
    path = str(tmp_path / name)
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, length in extents:
            f.seek(offset)
            f.write(os.urandom(length))
    return path


def make_dest(tmp_path, name="dest", size: int = SIZE) -> str:
    path = str(tmp_path / name)
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def allocated(path: str) -> int:
    return os.stat(path).st_blocks * 512


@pytest.fixture
def loop_dest(tmp_path):
    if not HAS_LOOP:
        pytest.skip("loop devices need root and /dev/loop-control")
    backing = make_dest(tmp_path, "loop-backing")
    device = subprocess.run(["losetup", "--find", "--show", backing], check=True,
                            capture_output=True, text=True).stdout.strip()
    yield device, backing
    subprocess.run(["losetup", "--detach", device], check=True)


def run_copy(method, source, dest, **kwargs):
    kwargs.setdefault("checkpoint_bytes", 4 * MiB)
    durable = []
    if method is FileCopy:
        with open(source, "rb") as src, open(dest, "r+b") as dst:
            copier = FileCopy(src, dst, SIZE, BLOCK, kwargs.pop("bps_limit", 0),
                              threading.Event(), on_checkpoint=durable.append, **kwargs)
            return copier, copier.run(), durable
    copier = method(source, dest, SIZE, BLOCK, kwargs.pop("bps_limit", 0), threading.Event(),
                    on_checkpoint=durable.append, **kwargs)
    return copier, copier.run(), durable


METHODS = [DdCopy, KernelCopy, FileCopy]


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.__name__)
def test_sparse_file_to_sparse_file(tmp_path, method):
    source, dest = make_source(tmp_path), make_dest(tmp_path)
    _, written, durable = run_copy(method, source, dest)
    assert sha256(dest) == sha256(source)
    assert os.path.getsize(dest) == SIZE
    assert allocated(dest) <= allocated(source)
    assert written == SIZE and durable[-1] == SIZE and durable == sorted(durable)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.__name__)
def test_data_up_to_the_last_partial_block(tmp_path, method):
    """No hole at the end: the last extent ends with the volume, inside a partial block."""
    source = make_source(tmp_path, [(2 * MiB, MiB), (SIZE - MiB - 512, MiB + 512)])
    dest = make_dest(tmp_path)
    run_copy(method, source, dest)
    assert sha256(dest) == sha256(source)
    assert allocated(dest) <= allocated(source)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.__name__)
def test_dense_file(tmp_path, method):
    source = make_source(tmp_path, [(0, SIZE)])
    dest = make_dest(tmp_path)
    run_copy(method, source, dest)
    assert sha256(dest) == sha256(source)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.__name__)
def test_to_a_loop_block_device_that_holds_old_data(tmp_path, loop_dest, method):
    device, backing = loop_dest
    with open(backing, "r+b") as f:  # stale data: the holes must be written as zeros
        f.write(os.urandom(SIZE))
    source = make_source(tmp_path)
    run_copy(method, source, device, sparse=False)
    assert sha256(backing) == sha256(source)


class _LookedAtBetweenSteps(threading.Event):
    """An abort switch, never set, at which the copy waits before each of its steps
    until the sampler has looked at its position once more: the sampler sees
    every step, however the machine schedules the two threads."""

    def __init__(self) -> None:
        super().__init__()
        self._looks = 0
        self._looked = threading.Condition()

    def looked(self) -> None:
        with self._looked:
            self._looks += 1
            self._looked.notify_all()

    def is_set(self) -> bool:
        with self._looked:
            wanted = self._looks + 1
            assert self._looked.wait_for(lambda: self._looks >= wanted, timeout=PATIENCE)
        return super().is_set()


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.__name__)
def test_progress_rises_to_the_size(tmp_path, method):
    source, dest = make_source(tmp_path), make_dest(tmp_path)
    seen = []
    copier_box = {}
    event = _LookedAtBetweenSteps()

    def sample():
        while "done" not in copier_box:
            copier = copier_box.get("copier")
            if copier is not None:
                seen.append(copier.position())
                event.looked()
            threading.Event().wait(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        if method is FileCopy:
            with open(source, "rb") as src, open(dest, "r+b") as dst:
                copier = copier_box["copier"] = FileCopy(src, dst, SIZE, BLOCK, 32 * MiB, event)
                copier.run()
        else:
            copier = copier_box["copier"] = method(source, dest, SIZE, BLOCK, 32 * MiB, event)
            copier.run()
    finally:
        copier_box["done"] = True
        sampler.join()
    seen.append(copier.position())
    assert seen == sorted(seen), "the position went back"
    assert len(set(seen)) >= 4  # it moved while it ran
    assert seen[-1] == SIZE


@pytest.mark.parametrize("where", ["hole", "extent"])
@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.__name__)
def test_resume_from_a_checkpoint(tmp_path, method, where):
    source, dest = make_source(tmp_path), make_dest(tmp_path)
    start = 6 * MiB if where == "hole" else 9 * MiB  # inside [5M, 8M+4K) / [8M+4K, 11M+4K)
    with open(source, "rb") as src, open(dest, "r+b") as dst:
        # What the interrupted run made durable, and some of what it wrote after its
        # last checkpoint (the source's own bytes, not recorded as done).
        dst.write(src.read(start + MiB // 2))
    run_copy(method, source, dest, start=start)
    assert sha256(dest) == sha256(source)


def test_kernel_copy_checkpoints_by_data_written_not_holes_crossed(tmp_path):
    """A thin volume gets a sync per checkpoint of data, not per checkpoint of holes,
    and a crash still re-sends at most one checkpoint of data."""
    size, every = 64 * MiB, 2 * MiB
    extents = [(i * 8 * MiB, MiB) for i in range(8)]  # 8 MiB of data, a MiB every 8 MiB
    source = make_source(tmp_path, extents, size, "thin")
    dest = make_dest(tmp_path, "thin-dest", size)
    checkpoints = []
    KernelCopy(source, dest, size, BLOCK, 0, threading.Event(), checkpoint_bytes=every,
               on_checkpoint=checkpoints.append).run()
    assert sha256(dest, size) == sha256(source, size)
    assert checkpoints == sorted(checkpoints) and checkpoints[-1] == size
    # One per 2 MiB of data (after the 2nd, 4th, 6th and 8th extent) and the end;
    # counting the holes crossed synced after every extent.
    assert len(checkpoints) == 5
    marks = [0] + checkpoints
    for before, after in zip(marks, marks[1:]):
        data = sum(max(0, min(o + n, after) - max(o, before)) for o, n in extents)
        assert data <= every


def test_data_extents_follow_the_file_system(tmp_path):
    source = make_source(tmp_path)
    fd = os.open(source, os.O_RDONLY)
    try:
        found = list(data_extents(fd, 0, SIZE))
    finally:
        os.close(fd)
    covered = sum(length for _, length in found)
    data = sum(length for _, length in EXTENTS)
    assert data <= covered <= data + len(EXTENTS) * 2 * 4096  # file-system block rounding
    for offset, length in EXTENTS:
        assert any(o <= offset and offset + length <= o + n for o, n in found)


# -- verification (migration_verify = checksum) ----------------------------------
def test_checksum_verification_passes_a_good_copy(make_service, tmp_path):
    from vmtest import fill_random, host, sha256_of
    svc = make_service(migration_verify="checksum")
    volume = svc.create_volume(24 * MiB, host("a"))
    before = fill_random(volume["provider_location"], 24 * MiB)
    migration = svc.wait(svc.migrate_volume(volume["id"], host("b")).migration_id, PATIENCE)
    assert migration["state"] == "success", migration["error"]
    assert sha256_of(svc.get_volume(volume["id"])["provider_location"]) == before


def test_checksum_verification_catches_a_corrupting_destination(make_service, tmp_path):
    from vmtest import fill_random, host, notifications, sha256_of
    svc = make_service(migration_verify="checksum", backends={
        "a": {}, "b": {"volume_driver": "vmtest_faulty:FaultyLocalDriver",
                       "local_access": "stream", "flip_byte_at": str(5 * MiB + 7)}})
    volume = svc.create_volume(24 * MiB, host("a"))
    before = fill_random(volume["provider_location"], 24 * MiB)
    migration = svc.wait(svc.migrate_volume(volume["id"], host("b")).migration_id, PATIENCE)
    assert migration["state"] == "error"
    assert "verification failed: the copy differs from the source" in migration["error"]
    assert "the source is kept" in migration["error"]
    after = svc.get_volume(volume["id"])
    assert after["host"] == volume["host"] and after["migration_status"] == "error"
    assert sha256_of(after["provider_location"]) == before
    assert [v["id"] for v in svc.list_volumes(include_hidden=True)] == [volume["id"]]
    assert os.listdir(tmp_path / "state" / "volumes" / "b") == []  # destination removed
    assert len(notifications("volume.migration.error")) == 1


def test_without_verification_the_corruption_goes_through(make_service, tmp_path):
    """The control case: the flipped byte is real, and only the check catches it."""
    from vmtest import fill_random, host, sha256_of
    svc = make_service(backends={
        "a": {}, "b": {"volume_driver": "vmtest_faulty:FaultyLocalDriver",
                       "local_access": "stream", "flip_byte_at": str(5 * MiB + 7)}})
    volume = svc.create_volume(24 * MiB, host("a"))
    before = fill_random(volume["provider_location"], 24 * MiB)
    migration = svc.wait(svc.migrate_volume(volume["id"], host("b")).migration_id, PATIENCE)
    assert migration["state"] == "success"
    assert sha256_of(svc.get_volume(volume["id"])["provider_location"]) != before


def test_kernel_copy_skips_the_holes_of_a_loop_device_backing_file(tmp_path):
    """A loop block device cannot tell its holes; its backing file can."""
    if not HAS_LOOP:
        pytest.skip("loop devices need root and /dev/loop-control")
    backing = make_source(tmp_path)
    device = subprocess.run(["losetup", "--find", "--show", "--read-only", backing],
                            check=True, capture_output=True, text=True).stdout.strip()
    try:
        dest = make_dest(tmp_path, "from-loop")
        KernelCopy(device, dest, SIZE, BLOCK, 0, threading.Event(), hole_map=backing).run()
        assert sha256(dest) == sha256(backing)
        assert allocated(dest) <= allocated(backing)
        whole = make_dest(tmp_path, "without-map")
        KernelCopy(device, whole, SIZE, BLOCK, 0, threading.Event()).run()
        assert sha256(whole) == sha256(backing)
    finally:
        subprocess.run(["losetup", "--detach", device], check=True)


class _FailingRead:
    """A destination whose storage fails on the first read."""

    def seek(self, offset):
        pass

    def read(self, size):
        raise OSError(5, "Input/output error")


class _CountingRead:
    """A slow source: 10 reads take half a second, time enough for the failing
    destination's thread to tell it to stop on a loaded machine."""

    def __init__(self):
        self.reads = 0

    def seek(self, offset):
        pass

    def read(self, size):
        self.reads += 1
        threading.Event().wait(0.05)
        return b"\0" * size


def test_verification_stops_reading_the_source_when_the_destination_fails():
    from volmigrate.flows.datamover import verify
    source = _CountingRead()
    with pytest.raises(OSError, match="Input/output error"):
        verify.digests(source, _FailingRead(), [(0, 1024 * verify.CHUNK)],
                       threading.Event(), lambda: "aborted")
    assert source.reads < 10
