"""`nas search` and the library call behind it: one set of options, parsed once."""

from __future__ import annotations

import argparse
import shlex
from dataclasses import fields

import pytest

from nas.commands import search as search_command
from nas.commands.search import search_options
from nas.search.run import SearchJob


def parsed(*words: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    search_command.add_parser(parser.add_subparsers())
    return parser.parse_args(["search", *words])


def test_every_option_is_a_field_of_the_job() -> None:
    # an option added to the command but not to SearchJob would be dropped without a word
    options = set(vars(parsed())) - {"quiet"}  # how much is shown is the caller's, not the job's
    assert options == {f.name for f in fields(SearchJob)}


def test_the_job_says_the_command_that_asks_for_it() -> None:
    job = SearchJob.from_options(parsed("--space", "tiny", "--budget", "7", "--no-asha", "--seed", "3",
                                        "--test-fraction", "0.2", "--name", "x"))
    words = shlex.split(job.command_line())[2:]  # after "nas search"
    assert SearchJob.from_options(parsed(*words)) == job


def test_search_args_keep_only_what_they_give() -> None:
    assert search_options(["--device", "auto", "--no-asha", "--epochs", "3", "--quiet"]) == {
        "device": "auto", "no_asha": True, "epochs": 3}  # auto is the default, but it was given
    assert search_options([]) == {}


def test_a_bad_search_arg_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        search_options(["--epochs", "x"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--epochs: must be a positive integer, but got 'x'" in err


def test_resume_needs_a_name() -> None:
    from nas.spec.errors import ConfigError

    with pytest.raises(ConfigError, match="--resume needs --name"):
        SearchJob(resume=True).named()
    assert SearchJob(space="tiny").named().name.startswith("tiny-")
