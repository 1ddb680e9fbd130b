import pytest

from volmigrate.common.hosts import Host, parse_host
from volmigrate.common.units import parse_size, parse_volume_size


@pytest.mark.parametrize("text,value", [
    ("64M", 64 << 20), ("10G", 10 << 30), ("1.5G", 3 << 29), ("512", 512), ("4k", 4096),
    ("2GiB", 2 << 30), ("1T", 1 << 40), (" 8 M ", 8 << 20), (1024, 1024),
])
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "M", "-1", "0", "1.1", "12Q", "1e3", True, "1,5G"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_volume_size_is_whole_sectors():
    assert parse_volume_size("1536") == 1536
    with pytest.raises(ValueError, match="multiple of 512"):
        parse_volume_size("1000")


def test_parse_host():
    assert parse_host("n@b#p") == Host("n", "b", "p")
    assert parse_host("n.example@lvm-1") == Host("n.example", "lvm-1", None)
    assert str(parse_host("n@b").with_pool("p")) == "n@b#p"
    for bad in ("n", "n@", "@b", "n@b#", "n@b#p#q", "n@b@c", "n b@c", None, 5):
        with pytest.raises(ValueError, match="malformed"):
            parse_host(bad)
