"""A descriptor Python hands the native core becomes the core's only once it is known to be an open socket."""

import os

import pytest

from anysio._native import EngineCore


@pytest.mark.parametrize("method", ["adopt", "listen_fd"])
def test_a_descriptor_that_is_no_socket_is_refused_and_left_open(method: str) -> None:
    core = EngineCore()
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(OSError, match="not a socket"):
            getattr(core, method)(read_end)
        os.fstat(read_end)  # still open: refusing it did not close the caller's descriptor
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_closed_descriptor_is_refused() -> None:
    core = EngineCore()  # first: its own descriptors would take the numbers closed below
    read_end, write_end = os.pipe()
    os.close(read_end)
    os.close(write_end)
    with pytest.raises(OSError, match="Bad file descriptor"):
        core.adopt(read_end)
