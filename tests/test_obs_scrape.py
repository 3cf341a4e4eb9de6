"""A worker's scrape while one of its children is creating a metrics file: the samples of
the other files are served, not a 500 (the files are prometheus-client's own, written by its
MmapedDict as a child writes them)."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

from syncworker.observe.exporter import WorkersCollector

NAME = "syncworker_images_total"


def test_a_file_being_created_is_left_out_of_the_scrape(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    written = MmapedDict(str(tmp_path / "counter_101.db"))
    labels = {"registry": "r", "outcome": "copied"}
    written.write_value(
        mmap_key("syncworker_images", NAME, list(labels), list(labels.values()), "Images"), 3.0, 0.0
    )
    written.close()
    # A child between creating its file and sizing it: empty.
    (tmp_path / "gauge_mostrecent_102.db").touch()
    with pytest.raises(struct.error):  # what prometheus-client's own collector does with it
        list(MultiProcessCollector(None, str(tmp_path)).collect())

    with caplog.at_level(logging.WARNING):
        [family] = list(WorkersCollector(str(tmp_path)).collect())
    assert family.name == "syncworker_images"
    assert [(s.name, s.labels, s.value) for s in family.samples] == [(NAME, labels, 3.0)]
    assert "gauge_mostrecent_102.db" in caplog.text and "left out" in caplog.text
