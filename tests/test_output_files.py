"""What the commands write with -o: the format the file's ending names, and one clear error
line, naming the path the user gave, when the path cannot be written.

Before: `derive -o w5.pdf` wrote UTF-8 text into w5.pdf, `--format html -o x.pdf` HTML; a
parent that is a file gave "[Errno 17] File exists", a folder as the output or a folder
where no file can be made named graphnn's hidden temporary file instead of the user's path.
"""
from __future__ import annotations

import pytest

import graphnn as gn
from graphnn import files
from graphnn.cli import main
from graphnn.models import get_model


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- A: the format follows the file's ending ---------------------------------------------------


@pytest.mark.parametrize("name, starts", [("w5.html", "<!DOCTYPE html"), ("w5.tex", r"\documentclass"),
                                          ("w5.md", "# Backpropagation"), ("w5.txt", "Backpropagation")])
def test_derive_infers_the_format_from_the_ending(tmp_path, capsys, name, starts):
    code, _, err = run_cli(capsys, "derive", "mazur", "--wrt", "w5", "-o", tmp_path / name)
    assert code == 0, err
    assert (tmp_path / name).read_text().startswith(starts)


def test_derive_pdf_ending_writes_a_pdf_or_says_why_not(tmp_path, capsys):
    import shutil
    code, _, err = run_cli(capsys, "derive", "mazur", "--wrt", "w5", "-o", tmp_path / "w5.pdf")
    if shutil.which("pdflatex"):
        assert code == 0 and (tmp_path / "w5.pdf").read_bytes()[:5] == b"%PDF-"
    else:   # never text in a .pdf
        assert code == 2 and "pdflatex" in one_error_line(err) and not (tmp_path / "w5.pdf").exists()


@pytest.mark.parametrize("fmt, name", [("html", "x.pdf"), ("text", "x.html"), ("pdf", "x.tex"),
                                       ("markdown", "x.txt"), ("latex", "x.md")])
def test_derive_format_clashing_with_the_ending_is_one_error(tmp_path, capsys, fmt, name):
    code, _, err = run_cli(capsys, "derive", "mazur", "--wrt", "w5", "--format", fmt, "-o", tmp_path / name)
    line = one_error_line(err)
    assert code == 2 and f"--format {fmt}" in line and name in line
    assert not (tmp_path / name).exists()


def test_derive_unknown_ending_without_format_is_one_error(tmp_path, capsys):
    code, _, err = run_cli(capsys, "derive", "mazur", "--wrt", "w5", "-o", tmp_path / "w5.jpg")
    line = one_error_line(err)
    assert code == 2 and "w5.jpg" in line and ".html" in line and "--format" in line
    # named explicitly, an ending graphnn does not know is the user's choice
    code, _, err = run_cli(capsys, "derive", "mazur", "--wrt", "w5", "--format", "markdown",
                           "-o", tmp_path / "w5.notes")
    assert code == 0 and (tmp_path / "w5.notes").read_text().startswith("# Backpropagation")


def test_derive_formats_that_share_an_ending(tmp_path, capsys):
    """latex and beamer both write .tex; beamer compiles to .pdf; no --format prints text."""
    for fmt, name, starts in (("latex", "a.tex", r"\documentclass"), ("beamer", "b.tex", r"\documentclass")):
        code, _, err = run_cli(capsys, "derive", "mazur", "--wrt", "w5", "--format", fmt, "-o", tmp_path / name)
        assert code == 0 and (tmp_path / name).read_text().startswith(starts), err
    assert "beamer" in (tmp_path / "b.tex").read_text()
    code, out, _ = run_cli(capsys, "derive", "mazur", "--wrt", "w5")
    assert code == 0 and out.startswith("Backpropagation: ")


def test_derivation_save_refuses_what_it_cannot_tell_or_that_clashes(tmp_path):
    d = gn.derive(get_model("mazur"), "w5")
    with pytest.raises(ValueError, match="x.jpg"):
        d.save(tmp_path / "x.jpg")
    with pytest.raises(ValueError, match="html.*x.pdf"):
        d.save(tmp_path / "x.pdf", fmt="html")
    assert d.save(tmp_path / "x.html").read_text().startswith("<!DOCTYPE html")


def test_lecture_writes_only_html(tmp_path, capsys):
    code, _, err = run_cli(capsys, "lecture", "mazur", "-o", tmp_path / "page.pdf")
    line = one_error_line(err)
    assert code == 2 and "page.pdf" in line and ".html" in line
    assert not (tmp_path / "page.pdf").exists()


# -- B: a path that cannot be written is one line naming it ------------------------------------


def _bad_paths(tmp_path):
    (tmp_path / "afile").write_text("a file, not a folder")
    (tmp_path / "folder").mkdir()
    return {"parent is a file": (tmp_path / "afile" / "x.{ext}", "afile", "not a folder"),
            "grandparent is a file": (tmp_path / "afile" / "sub" / "x.{ext}", "afile", "not a folder"),
            "output is a folder": (tmp_path / "folder", "folder", "is a folder")}


@pytest.mark.parametrize("case", ["parent is a file", "grandparent is a file", "output is a folder"])
@pytest.mark.parametrize("command", [("derive", "mazur", "--wrt", "w5", "--format", "text"),
                                     ("draw", "mazur", "--view", "neurons"),
                                     ("lecture", "mazur")])
def test_bad_output_path_is_one_line_naming_it(tmp_path, capsys, case, command):
    path, culprit, what = _bad_paths(tmp_path)[case]
    ext = {"derive": "txt", "draw": "dot", "lecture": "html"}[command[0]]
    path = str(path).format(ext=ext)
    if case == "output is a folder" and command[0] == "draw":
        path = str(tmp_path / "folder.dot")
        (tmp_path / "folder.dot").mkdir()
        culprit = "folder.dot"
    if command[0] == "lecture":
        path = path if path.endswith(".html") else path + ".html"
        if case == "output is a folder":
            (tmp_path / "folder.html").mkdir()
            culprit = "folder.html"
    code, _, err = run_cli(capsys, *command, "-o", path)
    line = one_error_line(err)
    assert code == 2, err
    assert f"cannot write '{path}'" in line and culprit in line and what in line, line
    assert ".tmp" not in line and "Errno" not in line, line


def test_writer_names_the_users_path_not_its_temporary(tmp_path):
    (tmp_path / "afile").write_text("")
    with pytest.raises(OSError) as e:
        files.write_text(tmp_path / "afile" / "x.txt", "text")
    assert str(e.value) == f"cannot write '{tmp_path / 'afile' / 'x.txt'}': '{tmp_path / 'afile'}' is not a folder"
    with pytest.raises(OSError) as e:
        files.write_text(tmp_path, "text")
    assert str(e.value) == f"cannot write '{tmp_path}': it is a folder"
    assert not list(tmp_path.parent.glob(f".{tmp_path.name}.*.tmp"))


def test_a_folder_where_no_file_can_be_made(tmp_path):
    """/proc takes no new files: the error says where and why, not the temporary's name."""
    with pytest.raises(OSError) as e:
        files.write_text("/proc/x.tex", "text")
    message = str(e.value)
    assert message.startswith("cannot write '/proc/x.tex': ") and "'/proc'" in message
    assert ".tmp" not in message and "Errno" not in message


def test_missing_folders_are_made_and_help_says_so(tmp_path, capsys):
    for command in (("derive", "mazur", "--wrt", "w5", "--format", "text"), ("draw", "mazur"), ("lecture", "mazur")):
        with pytest.raises(SystemExit):
            main([command[0], "--help"])
        out = capsys.readouterr().out
        assert "missing folders are made" in " ".join(out.split()), command[0]
    path = tmp_path / "new" / "deeper" / "x.dot"
    code, _, err = run_cli(capsys, "draw", "mazur", "-o", path)
    assert code == 0 and path.exists(), err


@pytest.mark.parametrize("fmt", ["pdf", "beamer"])
def test_the_same_derivation_gives_the_same_pdf_bytes(tmp_path, capsys, fmt):
    """pdflatex wrote the run's time as the PDF's dates and file ID: every run a different
    file (a diff in a course repository, a rebuild that never settles)."""
    import time

    from conftest import require_program
    require_program("pdflatex")
    outs = []
    for k in range(2):
        outs.append(tmp_path / f"{k}.pdf")
        assert main(["derive", "mazur", "--wrt", "w5", "--values", "--format", fmt, "-o", str(outs[-1])]) == 0
        time.sleep(1.1)                     # PDF dates count seconds
    assert outs[0].read_bytes() == outs[1].read_bytes()


def test_the_same_lecture_gives_the_same_page(tmp_path):
    """matplotlib named the training plot's clip paths and markers by a random hash: the
    same lecture page differed every run."""
    from conftest import require_program
    require_program("dot")
    pages = [gn.lecture(get_model("mazur"), tmp_path / f"{k}.html", train_steps=20) for k in range(2)]
    assert (tmp_path / "0.html").read_bytes() == (tmp_path / "1.html").read_bytes(), pages


def test_keep_earlier_renames_to_the_first_free_number(tmp_path):
    path = tmp_path / "run.npz"
    assert files.keep_earlier(path) is None                  # nothing there: nothing moved
    for n in (1, 2):
        path.write_text(f"run {n}")
        assert files.keep_earlier(path) == tmp_path / f"run.{n}.npz"
    assert not path.exists() and (tmp_path / "run.1.npz").read_text() == "run 1"


@pytest.mark.parametrize("argv, default", [(["gan", "--epochs", "1"], "gan.png"),
                                           (["transformer", "--steps", "1"], "transformer.npz")])
def test_a_default_output_never_replaces_an_earlier_runs(argv, default, tmp_path, monkeypatch, capsys):
    """The language model's checkpoint and the GAN's picture go to MODEL.npz / MODEL.png when no
    file is named: a second run overwrote the first run's (a long training lost to a quick try)."""
    monkeypatch.chdir(tmp_path)
    earlier = tmp_path / default
    earlier.write_bytes(b"an earlier run's file")
    assert main(["train", *argv, "--no-progress"]) == 0
    stem, suffix = default.rsplit(".", 1)
    kept = tmp_path / f"{stem}.1.{suffix}"
    assert kept.read_bytes() == b"an earlier run's file"
    assert earlier.exists() and earlier.read_bytes() != b"an earlier run's file"
    assert f"(the earlier {default} is kept as {stem}.1.{suffix})" in capsys.readouterr().out


@pytest.mark.parametrize("name, fmt", [("curves.svg", b"<?xml"), ("curves.pdf", b"%PDF"), ("curves.png", b"\x89PNG")])
def test_plot_writes_the_format_its_ending_names(name, fmt, tmp_path):
    assert main(["train", "xor", "--steps", "2", "--no-progress", "--plot", str(tmp_path / name)]) == 0
    assert (tmp_path / name).read_bytes().startswith(fmt)


@pytest.mark.parametrize("name", ["curves.txt", "curves"])
def test_plot_to_another_ending_is_refused_before_training(name, tmp_path, capsys):
    """A PNG was written into curves.svg, curves.txt or a file with no ending, exit 0."""
    assert main(["train", "xor", "--steps", "2", "--no-progress", "--plot", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--plot" in err[0] and "a figure is written as .png, .svg or .pdf" in err[0]
    assert not (tmp_path / name).exists()
