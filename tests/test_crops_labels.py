"""Labels from the first folder under the root, or from a CSV with optional location, datetime and sequence."""

from datetime import datetime

import pytest

from bench.crops.labels import ImageLabel, labels_from_folders, read_labels_csv
from bench.data import DataError


def test_first_folder_is_the_class_and_root_files_have_none():
    table = labels_from_folders(["roe-deer/cam03/IMG_0001.JPG", "fox/a.jpg", "loose.jpg", "./boar/x/y.jpg"])
    assert table.images == {
        "roe-deer/cam03/IMG_0001.JPG": ImageLabel("roe-deer"),
        "fox/a.jpg": ImageLabel("fox"),
        "boar/x/y.jpg": ImageLabel("boar"),
    }
    assert table.get("loose.jpg") is None and table.get("fox\\a.jpg") == ImageLabel("fox")
    assert table.columns == ("file", "label")


def test_csv_with_every_column(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(
        "file,label,location,datetime,sequence\n"
        "cam1/a.jpg,deer,site-1,2024:05:01 06:30:07,s1\n"
        "./cam1/b.jpg,deer,site-1,2024-05-01T06:30:09,\n"
        "cam2/c.jpg,,site-2,,\n"
        "cam2/d.jpg, fox ,,,\n"
    )
    table = read_labels_csv(path)
    assert table.columns == ("file", "label", "location", "datetime", "sequence")
    assert table.images == {
        "cam1/a.jpg": ImageLabel("deer", "site-1", datetime(2024, 5, 1, 6, 30, 7), "s1"),
        "cam1/b.jpg": ImageLabel("deer", "site-1", datetime(2024, 5, 1, 6, 30, 9), None),
        "cam2/d.jpg": ImageLabel("fox"),
    }


def test_csv_with_file_and_label_only(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("label,file\nlynx,a.jpg\n")
    table = read_labels_csv(path)
    assert table.images == {"a.jpg": ImageLabel("lynx")} and table.columns == ("label", "file")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file,label,camera\na.jpg,deer,1\n", "unknown column 'camera'; columns: file,label and optionally"),
        ("file,location\na.jpg,x\n", "needs the columns file and label"),
        ("file,label\na.jpg,deer\na.jpg,fox\n", "line 3: 'a.jpg' is listed twice"),
        ("file,label\na.jpg,\na.jpg,fox\n", "line 3: 'a.jpg' is listed twice"),
        ("file,label\n,deer\n", "line 2: empty file"),
        ("file,label\na.jpg,red/deer\n", "line 2: label 'red/deer' cannot name a class folder"),
        ("file,label,datetime\na.jpg,deer,noon\n", "line 2: datetime 'noon' is neither"),
    ],
)
def test_bad_csv_gives_one_line(tmp_path, text, message):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as caught:
        read_labels_csv(path)
    assert "\n" not in str(caught.value)


def test_missing_csv(tmp_path):
    with pytest.raises(DataError, match="cannot read labels file"):
        read_labels_csv(tmp_path / "missing.csv")
