from whitebox_hf.cli import main


def test_presets_lists_book_sizes(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "crate-tiny" in out and "6,090,856" in out and "crate-alpha-base" in out and "72,328,936" in out


def test_fetch_from_a_folder_without_the_files_fails_clearly(tmp_path, capsys):
    assert main(["data", "fetch", "fashion-mnist", "--data-dir", str(tmp_path)]) == 1
    assert "whitebox-hf data fetch fashion-mnist" in capsys.readouterr().err
